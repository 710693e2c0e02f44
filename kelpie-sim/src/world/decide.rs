//! Fault decisions, each traced with the event of the fault that fired.

use std::time::Duration;

use crate::fault::{FaultKind, FaultStats, Fired, OpKind};
use crate::ids::NodeId;
use crate::trace::{EventKind, TraceEvent};

use super::{State, World};

impl World {
    /// Considers the faults that apply to `op` on `node`, under a lock the caller holds, at
    /// virtual time `at`, and traces those that fired.
    pub(super) fn decide_locked(
        &self,
        st: &mut State,
        at: Duration,
        op: OpKind,
        node: NodeId,
        key: Option<&[u8]>,
    ) -> Vec<Fired> {
        decide_traced(st, at, op, node, |faults, name| {
            faults.decide(op, name, key, None, at)
        })
    }

    /// [`World::decide_locked`] for a send that only the faults `keep` accepts can act on (a
    /// stream segment: loss and delay, not reordering or duplication).
    pub(super) fn decide_send_if(
        &self,
        st: &mut State,
        at: Duration,
        node: NodeId,
        keep: impl Fn(&crate::fault::FaultSpec) -> bool,
    ) -> Vec<Fired> {
        decide_traced(st, at, OpKind::Send, node, |faults, name| {
            faults.decide_if(OpKind::Send, name, at, keep)
        })
    }

    /// Whether the custom fault named `name` fires now on `node` (traced if it does).
    pub(crate) fn custom_fault(self: &std::sync::Arc<Self>, node: NodeId, name: &str) -> bool {
        self.catch_up();
        let at = self.elapsed();
        let mut st = self.lock();
        if !st.faults.any_for(OpKind::Custom) {
            return false;
        }
        let node_name = st.nodes.name(node).clone();
        let fired = st
            .faults
            .decide(OpKind::Custom, &node_name, None, Some(name), at);
        for f in &fired {
            let kind = EventKind::Fault {
                fault: FaultKind::Custom,
                name: f.name.clone(),
                op: OpKind::Custom,
            };
            st.trace.record(TraceEvent { at, node, kind });
        }
        !fired.is_empty()
    }

    /// Declared fault `index`'s millisecond parameter `name` (or its default).
    pub(crate) fn fault_param(&self, index: usize, name: &str) -> Option<u64> {
        self.plan[index].param(name)
    }

    /// How often each declared fault was considered and fired so far.
    pub(crate) fn fault_stats(&self) -> FaultStats {
        self.lock().faults.stats()
    }
}

/// Runs `decide` (an injector's decision on `op` at `node`, given the node's name) if any fault
/// applies to `op`, and traces each fault that fired. Always inlined: it is the body of every
/// fault decision, and a call here measurably slowed the faulted benchmarks.
#[inline(always)]
fn decide_traced(
    st: &mut State,
    at: Duration,
    op: OpKind,
    node: NodeId,
    decide: impl FnOnce(&mut crate::fault::FaultInjector, &str) -> Vec<Fired>,
) -> Vec<Fired> {
    if !st.faults.any_for(op) {
        return Vec::new();
    }
    // The node's name is borrowed beside the injector (no reference count taken per decision).
    let fired = decide(&mut st.faults, st.nodes.name(node));
    for f in &fired {
        let kind = EventKind::Fault {
            fault: f.spec.kind(),
            name: f.name.clone(),
            op,
        };
        st.trace.record(TraceEvent { at, node, kind });
    }
    fired
}
