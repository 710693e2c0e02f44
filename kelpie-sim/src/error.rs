//! Errors of the simulation core: configuration, failed runs, storage operations, liveness.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fault::FaultStats;
use crate::sometimes::SometimesStat;
use crate::trace::TraceSummary;

/// A configuration that makes no sense; reported before any seed runs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A fault probability outside `0.0..=1.0` (or NaN).
    #[error("fault `{fault}`: probability {value} is outside 0.0..=1.0")]
    Probability {
        /// The fault's name.
        fault: String,
        /// The probability given.
        value: f64,
    },
    /// A parameter the fault table does not list for this fault.
    #[error("fault `{fault}` has no parameter `{param}`")]
    UnknownParam {
        /// The fault's name.
        fault: String,
        /// The parameter given.
        param: String,
    },
    /// An `op` filter naming an operation the fault never applies to.
    #[error("fault `{fault}` never applies to operation `{op}`")]
    OpNotApplicable {
        /// The fault's name.
        fault: String,
        /// The operation given.
        op: &'static str,
    },
    /// An active window that contains no instant.
    #[error("fault `{fault}`: empty active window {after:?}..{until:?}")]
    EmptyWindow {
        /// The fault's name.
        fault: String,
        /// Start of the window.
        after: Duration,
        /// End of the window.
        until: Duration,
    },
    /// `max = 0`: a fault that can never fire.
    #[error("fault `{fault}`: `max = 0` means it can never fire")]
    ZeroMaxTriggers {
        /// The fault's name.
        fault: String,
    },
    /// A custom fault without a name.
    #[error("a custom fault needs a non-empty name")]
    UnnamedCustomFault,
    /// More faults than one run supports.
    #[error("{count} faults declared; at most {max} are supported")]
    TooManyFaults {
        /// Faults declared.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A duration setting that must be positive is zero.
    #[error("`{setting}` must be greater than zero")]
    ZeroDuration {
        /// The setting's name.
        setting: &'static str,
    },
    /// A log filter that does not parse.
    #[error("log filter `{filter}`: {reason}")]
    LogFilter {
        /// The filter given.
        filter: String,
        /// The parser's message.
        reason: String,
    },
    /// An empty latency range.
    #[error("`net_latency` range {start:?}..{end:?} is empty")]
    EmptyLatency {
        /// Start of the range.
        start: Duration,
        /// End of the range.
        end: Duration,
    },
}

/// Why a seed run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The test body or a task panicked.
    #[error("panicked: {message}")]
    Panic {
        /// The panic message (and location, when known).
        message: String,
    },
    /// The test body returned an error.
    #[error("returned an error: {message}")]
    Error {
        /// The error's text.
        message: String,
    },
    /// Every task waits on something that can never happen.
    #[error("deadlock: all tasks are blocked forever; tasks still alive, by node and spawn site:\n{waiting}")]
    Deadlock {
        /// The live tasks, by node and spawn location.
        waiting: String,
    },
    /// The run exceeded its virtual-time limit.
    #[error("virtual-time limit of {limit:?} exceeded")]
    VirtualTimeLimit {
        /// The limit.
        limit: Duration,
    },
    /// The wall-clock watchdog fired: a task is stuck without awaiting (or the run is far too slow).
    #[error(
        "wall-clock watchdog fired after {limit:?}: a task is probably looping without awaiting"
    )]
    WallTimeout {
        /// The watchdog limit.
        limit: Duration,
    },
    /// Two runs of the same seed produced different traces.
    #[error("not deterministic: the two runs diverge at event #{index}:\n  first run:  {first}\n  second run: {second}")]
    Nondeterministic {
        /// Index of the first divergent event.
        index: u64,
        /// That event in the first run (or `<end of trace>`).
        first: String,
        /// That event in the second run (or `<end of trace>`).
        second: String,
    },
}

/// The facts of a failed run that a person needs to act on it.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRun {
    /// The seed.
    pub seed: u64,
    /// What went wrong.
    pub failure: Failure,
    /// Virtual time at the failure (as far as known).
    pub virtual_time: Duration,
    /// The trace so far: hash, length, last events.
    pub trace: TraceSummary,
    /// The resolved fault plan (attribute syntax, one entry per fault).
    pub plan: Vec<String>,
    /// Fault statistics so far.
    pub faults: FaultStats,
    /// The `sometimes!` sites evaluated so far.
    pub sometimes: BTreeMap<&'static str, SometimesStat>,
    /// The last captured `tracing` lines.
    pub log: Vec<String>,
}

/// Errors of [`Simulation::run`](crate::Simulation::run).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration was rejected before the run.
    #[error("invalid simulation config: {0}")]
    Config(#[from] ConfigError),
    /// The run failed.
    #[error("seed {}: {}", .0.seed, .0.failure)]
    Failed(Box<FailedRun>),
}

impl SimError {
    /// The failed run's facts, if the run got as far as starting.
    pub fn failed_run(&self) -> Option<&FailedRun> {
        match self {
            SimError::Failed(run) => Some(run),
            SimError::Config(_) => None,
        }
    }
}

/// Errors of storage operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O error (injected by [`FaultKind::StorageWriteFail`](crate::FaultKind::StorageWriteFail) or
    /// [`FaultKind::StorageReadFail`](crate::FaultKind::StorageReadFail)).
    #[error("i/o error during {op}")]
    Io {
        /// The operation (`get`, `set`, ...).
        op: &'static str,
    },
    /// The disk is full ([`FaultKind::DiskFull`](crate::FaultKind::DiskFull)); nothing was written.
    #[error("disk full")]
    DiskFull,
    /// A transaction's key changed between its read and its commit.
    #[error("transaction conflict on key {key:?}")]
    Conflict {
        /// The first conflicting key (lossy UTF-8).
        key: String,
    },
    /// The node crashed during the commit ([`FaultKind::CrashDuringTransaction`](crate::FaultKind::CrashDuringTransaction)); the
    /// transaction was applied entirely or not at all.
    #[error("node crashed during commit")]
    Crashed,
    /// The disk's node is down.
    #[error("node is down")]
    NodeDown,
}

/// The liveness phase's property did not hold in time; see [`SimEnv::eventually`](crate::SimEnv::eventually).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("liveness: `{property}` did not hold within {budget:?} (checked from {since:?} of virtual time on)")]
pub struct LivenessError {
    /// The property's name.
    pub property: String,
    /// The virtual-time budget it had.
    pub budget: Duration,
    /// Virtual time at which checking started.
    pub since: Duration,
}
