//! Spawning a test's task on a node: traced, tracked, on the node's current incarnation.

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;

use crate::ids::NodeId;
use crate::trace::{EventKind, TraceEvent};

use super::World;

impl World {
    /// Spawns `future` on `node`'s current madsim incarnation (on the supervisor: on the
    /// calling task's node), traced and tracked for the end of the run and deadlock reports.
    #[track_caller]
    pub(crate) fn spawn<F>(
        self: &Arc<Self>,
        node: NodeId,
        future: F,
    ) -> madsim::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let site = Location::caller();
        self.catch_up();
        let at = self.elapsed();
        let mut st = self.lock();
        let task = st.tasks.next_number();
        st.trace.record(TraceEvent {
            at,
            node,
            kind: EventKind::Spawn { task },
        });
        // Spawning only queues the task (madsim polls it later), so the lock may be held.
        let task = match st.nodes.madsim(node) {
            Some(handle) => handle.spawn(future),
            None => madsim::task::spawn(future),
        };
        st.tasks.track(&task, Some(node), site);
        task
    }
}
