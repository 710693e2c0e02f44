//! How often each declared fault was considered and fired in a run.

use std::fmt;
use std::sync::Arc;

use super::{FaultKind, FaultSpec};

/// How often one declared fault was considered and fired in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultStat {
    /// The fault as declared; its `Display` is the attribute syntax.
    pub spec: FaultSpec,
    /// Its name: the table name, or a custom fault's own name.
    pub name: Arc<str>,
    /// Its kind.
    pub kind: FaultKind,
    /// Times it was considered (an operation it applies to happened).
    pub considered: u64,
    /// Times it fired.
    pub fired: u64,
}

/// Per-run statistics of every declared fault, in declaration order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultStats {
    /// One entry per declared fault.
    pub faults: Vec<FaultStat>,
    /// Messages madsim's network carried for sockets that never reported to the run (a
    /// service whose `tokio` is madsim-tokio, not kelpie-tokio): partitions reached them, the
    /// other network faults did not. Counted at the end of a run; zero once any kelpie-tokio
    /// socket reported.
    pub unreported_socket_messages: u64,
}

impl FaultStats {
    /// Times faults of `kind` fired.
    pub fn fired(&self, kind: FaultKind) -> u64 {
        self.faults
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.fired)
            .sum()
    }

    /// Times faults of `kind` were considered.
    pub fn considered(&self, kind: FaultKind) -> u64 {
        self.faults
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.considered)
            .sum()
    }

    /// Times the fault named `name` fired (custom faults by their own name).
    pub fn fired_named(&self, name: &str) -> u64 {
        self.faults
            .iter()
            .filter(|f| &*f.name == name)
            .map(|f| f.fired)
            .sum()
    }

    /// Total fires of all faults.
    pub fn total_fired(&self) -> u64 {
        self.faults.iter().map(|f| f.fired).sum()
    }
}

impl fmt::Display for FaultStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.faults.is_empty() {
            return write!(f, "(no faults declared)");
        }
        for (i, s) in self.faults.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{} fired {}/{}", s.spec, s.fired, s.considered)?;
        }
        Ok(())
    }
}
