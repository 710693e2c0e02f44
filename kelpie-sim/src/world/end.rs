//! The end of a run: cancelling the tasks still alive, and the facts its report is made of.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::fault::FaultStats;
use crate::sometimes::SometimesTable;
use crate::sync::lock;
use crate::trace::TraceSummary;

use super::{State, World};

/// What a run leaves for its report.
pub(crate) struct Facts {
    /// Virtual time when the body finished, else of the last event.
    pub(crate) virtual_time: Duration,
    pub(crate) trace: TraceSummary,
    pub(crate) faults: FaultStats,
    pub(crate) sometimes: SometimesTable,
}

impl State {
    fn last_event_time(&self) -> Duration {
        self.ended_at.unwrap_or_else(|| self.trace.last_time())
    }

    fn facts(&self) -> Facts {
        Facts {
            virtual_time: self.last_event_time(),
            trace: self.summary(),
            faults: self.faults.stats(),
            sometimes: self.sometimes.clone(),
        }
    }
}

impl World {
    /// The facts of the finished run, moving the trace's events out (the run is over).
    pub(crate) fn take_facts(&self) -> Facts {
        let mut st = lock(&self.state);
        let virtual_time = st.last_event_time();
        let mut trace = st.trace.take_summary();
        trace.nodes = st.nodes.names();
        let mut faults = st.faults.stats();
        faults.unreported_socket_messages = self.unreported_socket_messages(st.socket_reports);
        Facts {
            virtual_time,
            trace,
            faults,
            sometimes: std::mem::take(&mut st.sometimes),
        }
    }

    /// The facts so far, if the state can be read: waiting for its lock if `wait`, else only
    /// if it is free (a stuck seed thread may hold it).
    pub(crate) fn facts_so_far(&self, wait: bool) -> Option<Facts> {
        if wait {
            Some(lock(&self.state).facts())
        } else {
            self.state.try_lock().ok().map(|st| st.facts())
        }
    }

    /// Flags the run as aborted by the watchdog: the seed thread panics at its next call into
    /// the simulation.
    pub(crate) fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
    }

    /// The tasks spawned through the simulation that are still alive, by node and spawn site,
    /// and the init task of every node that is not down; one line each.
    pub(crate) fn alive_tasks(&self) -> String {
        let st = lock(&self.state);
        let name = |node| st.nodes.name(node).to_string();
        let mut out = st.tasks.alive_report(name);
        for node in st.nodes.running_inits() {
            let _ = writeln!(out, "  {node} ({})  its init task  x1", name(node));
        }
        out
    }

    /// Cancels every task still alive at the end of the run — those spawned through us
    /// (tracked in the task table) and init tasks (by killing their nodes) — and lets madsim
    /// drop them.
    pub(crate) fn reap(&self, rt: &madsim::runtime::Runtime) {
        let (nodes, pending) = {
            let mut st = lock(&self.state);
            // Only a node's init task is spawned by madsim rather than through us (and so is
            // not in the task table): killing the nodes that have one reaches it and its
            // children.
            (st.nodes.with_init(), st.tasks.take_pending())
        };
        if nodes.is_empty() && pending.is_empty() {
            return;
        }
        for node in &nodes {
            self.handle.kill(node.id());
        }
        pending.iter().for_each(madsim::task::AbortHandle::abort);
        // One more turn of the executor: it drops every cancelled task's future.
        rt.block_on(async {});
        // What the world holds that may hold the world: init closures (they often capture an
        // env), messages in flight and queued.
        let mut st = lock(&self.state);
        st.nodes.drop_inits();
        st.net.clear();
    }
}
