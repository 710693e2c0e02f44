//! What a run returns: [`RunReport`] for a run that passed, [`FailedRun`] facts otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{FailedRun, Failure};
use crate::fault::FaultStats;
use crate::sometimes::SometimesStat;
use crate::trace::TraceSummary;
use crate::world::Facts;

/// The result of a successful run.
#[derive(Debug, Clone)]
pub struct RunReport<T> {
    /// What the body returned.
    pub output: T,
    /// The seed.
    pub seed: u64,
    /// The trace: hash, length, last events (all events in
    /// [`TraceMode::Full`](crate::TraceMode::Full)).
    pub trace: TraceSummary,
    /// How often each declared fault was considered and fired.
    pub faults: FaultStats,
    /// Virtual time the run took.
    pub virtual_time: Duration,
    /// Wall-clock time the run took.
    pub wall_time: Duration,
    /// Every `sometimes!` site the run evaluated, by name.
    pub sometimes: BTreeMap<&'static str, SometimesStat>,
    /// The last captured `tracing` lines ([`SimConfig::log`](crate::SimConfig::log)).
    pub log: Vec<String>,
}

impl<T> RunReport<T> {
    /// The report of a passed run; the caller fills in the wall time.
    pub(super) fn passed(output: T, seed: u64, facts: Facts, log: Vec<String>) -> Self {
        RunReport {
            output,
            seed,
            virtual_time: facts.virtual_time,
            trace: facts.trace,
            faults: facts.faults,
            wall_time: Duration::ZERO,
            sometimes: facts.sometimes,
            log,
        }
    }
}

/// The facts of a failed run (no facts: the world never existed or cannot be read).
pub(super) fn failed(
    seed: u64,
    plan: Vec<String>,
    failure: Failure,
    facts: Option<Facts>,
    log: Vec<String>,
) -> FailedRun {
    let facts = facts.unwrap_or_else(|| Facts {
        virtual_time: Duration::ZERO,
        trace: empty_summary(),
        faults: FaultStats::default(),
        sometimes: BTreeMap::new(),
    });
    FailedRun {
        seed,
        failure,
        virtual_time: facts.virtual_time,
        trace: facts.trace,
        plan,
        faults: facts.faults,
        sometimes: facts.sometimes,
        log,
    }
}

fn empty_summary() -> TraceSummary {
    TraceSummary {
        nodes: Vec::new(),
        hash: 0,
        len: 0,
        tail: Vec::new(),
        full: None,
    }
}
