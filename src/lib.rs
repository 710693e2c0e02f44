//! Kelpie DST: deterministic simulation testing for async, distributed actor systems.
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

pub use kelpie_macros::dst_test;
pub use kelpie_sim::{
    first_divergence, stable_hash, swarm_plan, Category, ConfigError, DropReason, Endpoint,
    EventKind, FailedRun, Failure, FaultInfo, FaultKind, FaultSchedule, FaultSpec, FaultStat,
    FaultStats, JoinHandle, LivenessError, NodeAction, NodeBuilder, NodeId, NodeStatus, OpKind,
    OptionInfo, ParamInfo, ParamKind, RngHandle, RunReport, SimConfig, SimEnv, SimError,
    SimNetwork, SimRng, SimStorage, Simulation, SometimesStat, StableHasher, StorageError,
    TraceEvent, TraceMode, TraceSummary, Transaction, FAULT_OPTIONS, FAULT_TABLE, MAX_FAULTS,
    OP_TABLE,
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

/// The `dst_harness` runner: `fn main() -> ExitCode { kelpie::harness::main() }`.
pub mod harness {
    pub use kelpie_sim::runner::*;
}

pub use kelpie_sim::history;
/// The nondeterminism lint: one forbidden-API table shared with `#[kelpie::dst_test]`.
pub use kelpie_sim::lint;

/// What `#[kelpie::dst_test]` expands to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use kelpie_sim::runner::inventory;
    pub use kelpie_sim::runner::{DstTest, IntoTestResult, SeedSet, TestFuture, TestOptions};
    pub use kelpie_sim::{sometimes, FaultKind, FaultSpec, OpKind, SimEnv};
}
