//! The fault tick: node, clock and partition faults, considered once per
//! [`SimConfig::fault_tick`](crate::SimConfig::fault_tick) of virtual time.
//!
//! Ticks are decided on virtual time whether or not the system under test ever calls Kelpie:
//! when such a fault is declared, a ticker task of our own (on the supervisor's node, which faults
//! never touch) wakes at every tick's time and processes it ([`World::start_ticker`]), so a
//! service written against `tokio` alone (madsim-tokio timers and sockets) is crashed, paused
//! and partitioned like one written against the env. Every call into the simulation (a storage
//! operation, a send, a timer, a spawn) also processes the ticks due by then first
//! ([`World::catch_up`]), so a tick is never late relative to the code's own steps. The ticker
//! stops when the fault phase ends ([`SimEnv::heal_all`](crate::SimEnv::heal_all)). A run
//! without such faults, or only with probability 0, has no ticker: such a fault changes no
//! trace. With
//! one, the ticker's timer keeps virtual time moving, so a system that is stuck ends at the
//! virtual-time limit rather than as a deadlock. A tick first decides (under the lock: which
//! faults fire, on which node, how much, each traced), then applies each decision through the
//! lifecycle rules.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::fault::{FaultKind, FaultSpec, OpKind};
use crate::ids::NodeId;
use crate::time::nanos;
use crate::trace::{EventKind, TraceEvent};

use super::nodes::NodeStatus;
use super::{State, World};

/// The tick's view of a node: id, name, status.
type NodeView = (NodeId, Arc<str>, NodeStatus);

/// One fault that fired at a tick, with its target and the amounts drawn for it.
struct Action {
    kind: FaultKind,
    target: NodeId,
    /// How long it lasts (a crash until the restart, a pause, a partition), or a clock jump.
    amount_ms: u64,
    /// The other side of a one-way partition.
    peer: Option<NodeId>,
    /// A clock skew, uniform in `-max_ms..=max_ms`, in nanoseconds.
    signed_ns: i64,
}

impl World {
    /// Runs the fault ticks that are due (see the module's docs). Inlined: without node, clock
    /// or partition faults (the common case) it is one test of a flag.
    #[inline]
    pub(crate) fn catch_up(self: &Arc<Self>) {
        if self.ticks {
            self.catch_up_ticks();
        }
    }

    /// [`World::catch_up`] when such faults are declared.
    fn catch_up_ticks(self: &Arc<Self>) {
        let now = self.elapsed();
        if nanos(now) < self.next_tick_ns.load(Ordering::Relaxed) {
            return;
        }
        loop {
            let due = {
                let mut st = self.lock();
                if st.ticking || !st.faults.any_for(OpKind::Tick) || st.next_tick > now {
                    return;
                }
                let due = st.next_tick;
                st.next_tick += self.config.fault_tick;
                let next = nanos(st.next_tick);
                self.next_tick_ns.store(next, Ordering::Relaxed);
                st.ticking = true;
                due
            };
            self.tick(due);
            self.lock().ticking = false;
        }
    }

    /// Starts the ticker (see the module's docs), if a node, clock or partition fault can fire.
    pub(crate) fn start_ticker(self: &Arc<Self>) {
        if !self.ticker {
            return;
        }
        let w = self.clone();
        self.spawn_sys(async move {
            loop {
                let next = Duration::from_nanos(w.next_tick_ns.load(Ordering::Relaxed));
                let now = w.elapsed();
                if next > now {
                    w.sleep(next - now).await;
                }
                w.catch_up();
                if !w.lock().faults.any_for(OpKind::Tick) {
                    return;
                }
            }
        });
    }

    /// One tick, due at virtual time `due`.
    fn tick(self: &Arc<Self>, due: Duration) {
        let at = self.elapsed();
        let actions = self.lock().decide_tick(at, due);
        for action in actions {
            self.apply(action);
        }
    }

    /// Applies one fault the tick decided.
    fn apply(self: &Arc<Self>, a: Action) {
        let after = Duration::from_millis(a.amount_ms);
        let target = a.target;
        match a.kind {
            FaultKind::NodeCrash => {
                self.kill(target);
                self.restart_later(target, after);
            }
            FaultKind::NodePause => {
                self.pause(target);
                self.resume_later(target, after);
            }
            FaultKind::ClockSkew => self.set_clock_offset(target, a.signed_ns),
            FaultKind::ClockJump => {
                let now = self.clock_offset(target);
                let jumped = now.saturating_add(after.as_nanos() as i64);
                self.set_clock_offset(target, jumped);
            }
            FaultKind::NetworkPartition => {
                let links = self.isolate(target);
                self.delayed(after, move |w| w.heal_links(&links));
            }
            FaultKind::NetworkPartitionOneWay => {
                if let Some(peer) = a.peer {
                    let links = self.cut_one_way(target, peer);
                    self.delayed(after, move |w| w.heal_links(&links));
                }
            }
            _ => {}
        }
    }
}

impl State {
    /// Decides the tick due at `due` (now `at`): which faults fire, on which target, and the
    /// amounts, each drawn from the fault's own stream; every fault that fired is traced.
    fn decide_tick(&mut self, at: Duration, due: Duration) -> Vec<Action> {
        let nodes = self.nodes.snapshot();
        let fired = self
            .faults
            .decide_where(OpKind::Tick, due, |spec| has_target(&nodes, spec));
        let mut actions = Vec::new();
        for f in fired {
            let targets = eligible(&nodes, &f.spec);
            let pick = self.faults.draw(f.index, 0..targets.len() as u64) as usize;
            let target = targets[pick];
            let kind = EventKind::Fault {
                fault: f.spec.kind(),
                name: f.name.clone(),
                op: OpKind::Tick,
            };
            self.trace.record(TraceEvent {
                at,
                node: target,
                kind,
            });
            let max_ms = match f.spec.kind() {
                FaultKind::NetworkPartition | FaultKind::NetworkPartitionOneWay => {
                    f.spec.param("heal_ms")
                }
                FaultKind::NodeCrash => f.spec.param("restart_ms"),
                FaultKind::NodePause => f.spec.param("pause_ms"),
                _ => f.spec.param("max_ms"),
            }
            .unwrap_or(1)
            .max(1);
            let amount_ms = self.faults.draw(f.index, 1..max_ms + 1);
            let peer = {
                let others: Vec<NodeId> = nodes
                    .iter()
                    .map(|n| n.0)
                    .filter(|id| *id != target)
                    .collect();
                let i = self.faults.draw(f.index, 0..others.len() as u64) as usize;
                others.get(i).copied()
            };
            // For skew: uniform in -max..=max.
            let signed_ns =
                (self.faults.draw(f.index, 0..2 * max_ms + 1) as i64 - max_ms as i64) * 1_000_000;
            actions.push(Action {
                kind: f.spec.kind(),
                target,
                amount_ms,
                peer,
                signed_ns,
            });
        }
        actions
    }
}

/// Whether `spec` has a target now; a fault without one is not considered (so its stats are
/// not inflated by ticks at which it could not have acted).
fn has_target(nodes: &[NodeView], spec: &FaultSpec) -> bool {
    let eligible = eligible(nodes, spec);
    match spec.kind() {
        FaultKind::NetworkPartition | FaultKind::NetworkPartitionOneWay => {
            !eligible.is_empty() && nodes.len() >= 2
        }
        _ => !eligible.is_empty(),
    }
}

/// The nodes `spec` may act on: created nodes passing its node filter (up, for a crash or a
/// pause).
fn eligible(nodes: &[NodeView], spec: &FaultSpec) -> Vec<NodeId> {
    let node_filter = spec.node_filter();
    nodes
        .iter()
        .filter(|(id, name, status)| {
            *id != NodeId::MAIN
                && node_filter.is_none_or(|f| f == &**name)
                && match spec.kind() {
                    FaultKind::NodeCrash | FaultKind::NodePause => *status == NodeStatus::Up,
                    _ => true,
                }
        })
        .map(|(id, _, _)| *id)
        .collect()
}
