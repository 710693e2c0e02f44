//! Invariant checkers, reusable by users' tests: each records what the system did and reports
//! the first violation with the facts needed to understand it.

mod cluster;
mod durability;
pub use cluster::{
    CheckerStats, Clocks, ClusterChecker, ClusterInvariant, ClusterViolation, FenceBreach,
    FencingTokenMonotonic, Holding, LeaseBoundActivity, LeaseBreach, LeaseUniqueness,
    MigrationAtomicity, MigrationBreach, NoSplitBrain, SingleActivation,
};
pub use durability::{
    AgentSnapshot, Cycle, CycleStep, Dependency, IsolationReport, IsolationViolation,
    MessageDurability, MessageTally, MessageViolation, RecordingTxn, SerializableIsolation, TxnId,
    TxnOutcome, WalDurability, WalReport, WalViolation,
};
