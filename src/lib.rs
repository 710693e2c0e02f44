//! Kelpie DST: deterministic simulation testing for async, distributed Rust systems.
//!
//! Write a test with [`dst_test`]; it runs once per seed on madsim's deterministic executor
//! with virtual time, seeded scheduling and the faults you declare, and every failure prints
//! its seed, its fault plan and a one-line command that reproduces it.
//!
//! ```
//! use kelpie::{FaultKind, FaultSpec, SimConfig, Simulation};
//!
//! let report = Simulation::new(SimConfig::with_seed(3))
//!     .with_fault(FaultSpec::new(FaultKind::StorageWriteFail, 1.0))
//!     .run(|env| async move { env.storage().set(b"k", b"v").await.is_err() })
//!     .unwrap();
//! assert!(report.output);
//! ```
//!
//! In a test target with `harness = false` (conventionally `tests/dst_harness.rs`):
//!
//! ```ignore
//! #[kelpie::dst_test(seeds = 0..100, faults = [StorageWriteFail(0.02), NetworkPartition(0.01)])]
//! async fn lease_is_unique(env: kelpie::SimEnv) { /* drive the system, assert invariants */ }
//!
//! fn main() -> std::process::ExitCode { kelpie::harness::main() }
//! ```
//!
//! What lives where: the root holds what nearly every test names (the attribute, the
//! environment, a simulation and its outcome, the fault kinds); the modules hold the rest by
//! subject — [`faults`], [`trace`], [`storage`], [`net`], [`node`], [`rng`], [`error`],
//! [`history`] (the linearizability checker), [`harness`] (the test runner) and [`lint`] (the
//! nondeterminism lint).

#![deny(unsafe_code)]

pub use kelpie_macros::{chaos_test, dst_test};
pub use kelpie_sim::{
    Endpoint, Failure, FaultKind, FaultSpec, JoinHandle, LogConfig, NodeId, NodeStatus, RunReport,
    SimConfig, SimEnv, SimError, SimNetwork, SimStorage, Simulation, SometimesStat, StorageError,
};

/// Records whether `condition` holds here, under a name: `kelpie::sometimes!(leader.is_some(),
/// "a leader is elected")`. The harness fails a test if a site it evaluated was never true
/// across the test's seeds: a state the test claims to reach but never does (the "sometimes"
/// assertions of FoundationDB and Antithesis). Outside a simulation it does nothing.
#[macro_export]
macro_rules! sometimes {
    ($condition:expr, $name:literal $(,)?) => {
        $crate::__private::sometimes($condition, $name)
    };
}

pub mod harness;
pub mod lint;

/// Faults: the kinds and their table, a declared fault, per-run statistics, replayable
/// schedules and swarm plans.
pub mod faults {
    pub use kelpie_sim::{
        swarm_plan, Category, FaultInfo, FaultKind, FaultSchedule, FaultSpec, FaultStat,
        FaultStats, OpKind, OptionInfo, ParamInfo, ParamKind, FAULT_OPTIONS, FAULT_TABLE,
        MAX_FAULTS, OP_TABLE,
    };
}

/// The per-run event trace whose hash proves that a seed replays exactly.
pub mod trace {
    pub use kelpie_sim::{
        first_divergence, stable_hash, DropReason, EventKind, NodeAction, SocketOp, StableHasher,
        TraceEvent, TraceMode, TraceSummary,
    };
}

/// A node's simulated disk: reads, writes, scans, syncs and optimistic transactions.
pub mod storage {
    pub use kelpie_sim::{SimStorage, StorageError, Transaction};
}

/// The simulated network: typed endpoints, partitions and heals; and `sockets`, where
/// `tokio::net` sockets (kelpie-tokio) meet the run.
pub mod net {
    pub use kelpie_sim::{sockets, Endpoint, SimNetwork};
}

/// Simulated nodes: building, crashing, restarting, pausing, and the liveness phase.
pub mod node {
    pub use kelpie_sim::{LivenessError, NodeBuilder, NodeId, NodeStatus};
}

/// The run's seeded random streams.
pub mod rng {
    pub use kelpie_sim::{RngHandle, SimRng};
}

/// What a run can end with: a failure with its facts, or a rejected configuration.
pub mod error {
    pub use kelpie_sim::{ConfigError, FailedRun, Failure, SimError};
}

pub use kelpie_sim::history;

/// Fault points: named places in the code under test where a test crashes, pauses, delays or
/// fails a node ([`SimEnv::arm_point`], [`SimEnv::reach_point`]).
pub mod points {
    pub use kelpie_sim::{PointAction, PointStats};
}

/// Generators of adversarial ids, keys and payloads (prefixes of each other, empty, maximal,
/// unicode, duplicates), drawn from a run's seeded stream.
pub mod gen {
    pub use kelpie_sim::gen::{shuffle, Alphabet, BytesGen, IdGen};
}

/// What `#[kelpie::dst_test]` expands to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::harness::{
        ChaosFuture, ChaosTest, DstTest, IntoTestResult, SeedSet, TestFuture, TestOptions,
    };
    pub use inventory;
    pub use kelpie_sim::{sometimes, FaultKind, FaultSpec, OpKind, SimEnv};
}
