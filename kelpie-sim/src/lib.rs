//! Deterministic simulation core of Kelpie DST.
//!
//! Every run executes on madsim's deterministic executor (virtual time, seeded scheduling),
//! with one root seed split into independent random streams, typed fault injection whose
//! decisions reach the simulated [storage](SimStorage) and [network](SimNetwork), simulated
//! nodes that crash and restart, and a per-run event [trace](TraceSummary) whose hash proves
//! that a seed replays exactly.
//!
//! ```
//! use kelpie_sim::{FaultKind, FaultSpec, SimConfig, Simulation};
//!
//! let sim = Simulation::new(SimConfig::with_seed(42))
//!     .with_fault(FaultSpec::new(FaultKind::StorageWriteFail, 1.0));
//! let report = sim
//!     .run(|env| async move { env.storage().set(b"key", b"value").await })
//!     .unwrap();
//! assert!(report.output.is_err()); // the fault reached the write
//! assert_eq!(report.faults.fired(FaultKind::StorageWriteFail), 1);
//! ```
//!
//! Layout: `config` (settings), `ids`, `rng` (seeded streams), `fault/` (fault specs and the
//! injector), `trace` (events and their hash), `world/` (the one owner of a run's state: node
//! table, disks, network, tasks as plain values, and every rule that touches several of
//! them), `env/` (the handles a test holds, which call the world), `run/` (`Simulation`, the
//! seed thread, reports), `log` (captured `tracing` lines), `sockets` (the hooks of `kelpie-tokio`'s sockets), `error`, `history/` (the
//! linearizability checker).

// The one exception is `run/seed_thread.rs`, which joins a seed thread with a deadline.
#![deny(unsafe_code)]

#[cfg(all(not(madsim), not(kelpie_rustflags_set)))]
compile_error!(
    "kelpie-sim must be built with `--cfg madsim` (it runs only on madsim's deterministic \
     executor). Add to `.cargo/config.toml` in your workspace root:\n\
     [target.'cfg(all())']\nrustflags = [\"--cfg\", \"madsim\"]\n[build]\nrustdocflags = [\"--cfg\", \"madsim\"]\n\
     or build with RUSTFLAGS=\"--cfg madsim\". (If you set RUSTFLAGS, even to an empty value, \
     cargo ignores the config's rustflags: put `--cfg madsim` into the variable.)"
);
#[cfg(all(not(madsim), kelpie_rustflags_set))]
compile_error!(
    "kelpie-sim must be built with `--cfg madsim`, and your `RUSTFLAGS` variable is why it was \
     not: when RUSTFLAGS is set (even to an empty value) cargo ignores the rustflags of \
     `.cargo/config.toml`, which set `--cfg madsim`. Put the cfg into your variable, \
     RUSTFLAGS=\"--cfg madsim <your flags>\", or unset it."
);

#[cfg(madsim)]
mod config;
#[cfg(madsim)]
mod env;
#[cfg(madsim)]
mod error;
#[cfg(madsim)]
mod fault;
#[cfg(madsim)]
pub mod gen;
mod hash;
pub mod history;
#[cfg(madsim)]
mod ids;
#[cfg(madsim)]
mod log;
#[cfg(all(madsim, target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod os_random;
#[cfg(madsim)]
mod rng;
#[cfg(madsim)]
mod run;
#[cfg(madsim)]
pub mod sockets;
#[cfg(madsim)]
mod sometimes;
#[cfg(madsim)]
mod sync;
#[cfg(madsim)]
mod time;
#[cfg(madsim)]
mod trace;
#[cfg(madsim)]
mod world;

#[cfg(madsim)]
pub use crate::{
    config::SimConfig,
    env::{
        sometimes, Endpoint, NodeBuilder, PointStats, SimEnv, SimNetwork, SimStorage, Transaction,
    },
    error::{ConfigError, FailedRun, Failure, LivenessError, SimError, StorageError},
    fault::{
        swarm_plan, Category, FaultInfo, FaultKind, FaultSchedule, FaultSpec, FaultStat,
        FaultStats, OpKind, OptionInfo, ParamInfo, ParamKind, FAULT_OPTIONS, FAULT_TABLE,
        MAX_FAULTS, OP_TABLE,
    },
    ids::NodeId,
    log::LogConfig,
    rng::{RngHandle, SimRng},
    run::{RunReport, Simulation},
    sometimes::SometimesStat,
    trace::{
        first_divergence, stable_hash, DropReason, EventKind, NodeAction, SocketOp, StableHasher,
        TraceEvent, TraceMode, TraceSummary,
    },
    world::{nodes::NodeStatus, points::PointAction},
};

/// madsim's join handle, returned by [`SimEnv::spawn`].
#[cfg(madsim)]
pub use madsim::task::JoinHandle;
