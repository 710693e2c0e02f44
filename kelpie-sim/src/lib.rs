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
mod error;
#[cfg(madsim)]
mod fault;
pub mod history;
#[cfg(madsim)]
mod log;
#[cfg(madsim)]
mod net;
#[cfg(madsim)]
mod node;
#[cfg(madsim)]
mod rng;

mod seed_thread;
#[cfg(madsim)]
mod sim;
#[cfg(madsim)]
mod storage;
#[cfg(madsim)]
mod trace;

#[cfg(madsim)]
pub use crate::{
    error::{ConfigError, FailedRun, Failure, SimError},
    fault::{
        swarm_plan, Category, FaultInfo, FaultKind, FaultSchedule, FaultSpec, FaultStat,
        FaultStats, OpKind, OptionInfo, ParamInfo, ParamKind, FAULT_OPTIONS, FAULT_TABLE,
        MAX_FAULTS, OP_TABLE,
    },
    log::LogConfig,
    net::{Endpoint, SimNetwork},
    node::{LivenessError, NodeBuilder, NodeId, NodeStatus},
    rng::{RngHandle, SimRng},
    sim::{sometimes, RunReport, SimConfig, SimEnv, Simulation, SometimesStat},
    storage::{SimStorage, StorageError, Transaction},
    trace::{
        first_divergence, stable_hash, DropReason, EventKind, NodeAction, StableHasher, TraceEvent,
        TraceMode, TraceSummary,
    },
};

/// madsim's join handle, returned by [`SimEnv::spawn`].
#[cfg(madsim)]
pub use madsim::task::JoinHandle;
