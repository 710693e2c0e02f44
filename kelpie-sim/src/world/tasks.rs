//! The task table: every task spawned through the simulation (by a test through
//! `SimEnv::spawn`, or by the world itself), with its node and spawn site, so that the end of
//! the run can cancel those still alive and a deadlock report can name them. A plain value.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::Location;

use crate::ids::NodeId;

/// A tracked task.
struct Entry {
    abort: madsim::task::AbortHandle,
    /// `None` for the simulator's own tasks (on the supervisor's node).
    node: Option<NodeId>,
    site: &'static Location<'static>,
}

/// The tasks spawned in a run that may still be alive.
#[derive(Default)]
pub(crate) struct Tasks {
    /// Sequence number of the last task spawned through `SimEnv::spawn`.
    last: u64,
    tracked: Vec<Entry>,
}

impl Tasks {
    /// Numbers a task spawned through `SimEnv::spawn` (for its trace event).
    pub(crate) fn next_number(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    /// Keeps `task`'s abort handle, its node and spawn site (forgetting finished tasks when
    /// the table is full, so that it stays as large as the most tasks alive at once).
    pub(crate) fn track<T>(
        &mut self,
        task: &madsim::task::JoinHandle<T>,
        node: Option<NodeId>,
        site: &'static Location<'static>,
    ) {
        if self.tracked.capacity() == 0 {
            self.tracked.reserve(16);
        } else if self.tracked.len() == self.tracked.capacity() {
            self.tracked.retain(|t| !t.abort.is_finished());
        }
        self.tracked.push(Entry {
            abort: task.abort_handle(),
            node,
            site,
        });
    }

    /// Removes every tracked task that has not finished, for cancelling.
    pub(crate) fn take_pending(&mut self) -> Vec<madsim::task::AbortHandle> {
        std::mem::take(&mut self.tracked)
            .into_iter()
            .map(|t| t.abort)
            .filter(|t| !t.is_finished())
            .collect()
    }

    /// The tasks still alive, counted by node and spawn site, one line each:
    /// `  n1 (name)  src/lib.rs:10:5  x2`. `name` gives a node's name.
    pub(crate) fn alive_report(&self, name: impl Fn(NodeId) -> String) -> String {
        let mut count: BTreeMap<(Option<NodeId>, String), usize> = BTreeMap::new();
        for t in self.tracked.iter().filter(|t| !t.abort.is_finished()) {
            *count.entry((t.node, t.site.to_string())).or_default() += 1;
        }
        let mut out = String::new();
        for ((node, site), n) in count {
            let node = match node {
                Some(node) => format!("{node} ({})", name(node)),
                None => "kelpie (the simulator's own tasks)".to_string(),
            };
            let _ = writeln!(out, "  {node}  {site}  x{n}");
        }
        out
    }
}
