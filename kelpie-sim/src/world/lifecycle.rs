//! Node lifecycle and partitions: what creating, killing, restarting, pausing and resuming a
//! node does, clock offsets, cutting and healing links, the end of the fault phase, and fault
//! actions that happen later (a restart after a crash, a heal after a partition).
//!
//! A kill is the one rule for "what a crash does": the node table marks the node down, each
//! subsystem's node-kill hook runs ([`Disk::crash`](super::disk::Disk::crash) loses the
//! unsynced writes, [`Network::reset_node`](super::net::Network::reset_node) closes the node's
//! endpoints), the trace records it and madsim drops the node's tasks.

use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::ids::NodeId;
use crate::trace::{EventKind, NodeAction};

use super::disk::Disk;
use super::nodes::NodeStatus;
use super::{InitFn, State, World};

impl State {
    /// The node-kill hooks of every subsystem that keeps per-node state.
    fn reset_node(&mut self, node: NodeId) {
        self.disks[node.index()].crash();
        self.net.reset_node(node);
    }
}

impl World {
    /// Creates a node named `name` (with a disk of its own) whose init, if any, madsim runs
    /// now and at every restart.
    pub(crate) fn create_node(self: &Arc<Self>, name: String, init: Option<InitFn>) -> NodeId {
        let has_init = init.is_some();
        let id = {
            let mut st = self.lock();
            let id = st.nodes.add(name.as_str().into(), init);
            st.disks.push(Disk::new());
            id
        };
        // Its address in madsim's network, kept across restarts (see `sockets`).
        let mut builder = self.handle.create_node().name(name).ip(id.ip());
        if has_init {
            let weak = Arc::downgrade(self);
            // madsim calls this closure inside `restart`, holding its node table; the user's
            // closure runs on the init task's first poll instead, where it may do anything.
            // The node stays up when the init future returns (madsim would exit it).
            builder = builder.init(move || {
                let weak = weak.clone();
                async move {
                    let Some(world) = weak.upgrade() else { return };
                    let init = world.lock().nodes.init(id);
                    if let Some(init) = init {
                        init(world, id).await;
                    }
                    std::future::pending::<()>().await;
                }
            });
        }
        // Record before building: building spawns the init task.
        self.record(
            id,
            EventKind::Node {
                action: NodeAction::Create,
            },
        );
        let handle = builder.build();
        self.lock().nodes.set_madsim(id, Some(handle));
        id
    }

    /// Number of nodes, the supervisor included.
    pub(crate) fn node_count(&self) -> usize {
        self.lock().nodes.len()
    }

    pub(crate) fn node_name(&self, node: NodeId) -> String {
        self.lock().nodes.name(node).to_string()
    }

    pub(crate) fn node_status(&self, node: NodeId) -> NodeStatus {
        self.lock().nodes.status(node)
    }

    /// `node`'s clock offset from virtual time, in nanoseconds.
    pub(crate) fn clock_offset(&self, node: NodeId) -> i64 {
        self.lock().nodes.clock_offset(node)
    }

    /// Sets `node`'s clock offset (traced).
    pub(crate) fn set_clock_offset(&self, node: NodeId, offset_ns: i64) {
        self.lock().nodes.set_clock_offset(node, offset_ns);
        self.record(node, EventKind::Clock { offset_ns });
    }

    /// Kills `node`: its tasks are dropped, its disk loses unsynced writes, its endpoints and
    /// their queued messages are lost. A no-op on a node already down and on the supervisor.
    pub(crate) fn kill(&self, node: NodeId) {
        let handle = {
            let mut st = self.lock();
            if !st.nodes.mark_down(node) {
                return;
            }
            let handle = st.nodes.madsim(node).cloned();
            st.reset_node(node);
            let at = self.elapsed();
            let kind = EventKind::Node {
                action: NodeAction::Kill,
            };
            st.trace.record(crate::trace::TraceEvent { at, node, kind });
            handle
        };
        if let Some(h) = handle {
            self.handle.kill(h.id());
        }
    }

    /// Restarts `node` (killing it first if it is up): madsim re-runs its init.
    pub(crate) fn restart(&self, node: NodeId) {
        if node == NodeId::MAIN {
            return;
        }
        self.kill(node);
        let handle = {
            let mut st = self.lock();
            st.nodes.mark_up(node);
            st.nodes.madsim(node).cloned()
        };
        self.record(
            node,
            EventKind::Node {
                action: NodeAction::Restart,
            },
        );
        if let Some(h) = handle {
            self.handle.restart(h.id());
            // madsim's restart replaces the node's internals: spawn through the new incarnation.
            let fresh = self.handle.get_node(h.id());
            self.lock().nodes.set_madsim(node, fresh);
        }
    }

    /// Pauses `node`: its tasks are kept but not polled. A no-op unless it is up.
    pub(crate) fn pause(&self, node: NodeId) {
        let handle = {
            let mut st = self.lock();
            if !st.nodes.mark_paused(node) {
                return;
            }
            st.nodes.madsim(node).cloned()
        };
        self.record(
            node,
            EventKind::Node {
                action: NodeAction::Pause,
            },
        );
        if let Some(h) = handle {
            self.handle.pause(h.id());
        }
    }

    /// Resumes a paused `node`.
    pub(crate) fn resume(&self, node: NodeId) {
        let handle = {
            let mut st = self.lock();
            if !st.nodes.mark_resumed(node) {
                return;
            }
            st.nodes.madsim(node).cloned()
        };
        self.record(
            node,
            EventKind::Node {
                action: NodeAction::Resume,
            },
        );
        if let Some(h) = handle {
            self.handle.resume(h.id());
        }
    }

    /// Ends the fault phase (asked by `by`): no fault is considered any more, every link
    /// heals, clock offsets return to zero, paused nodes resume and crashed nodes restart.
    pub(crate) fn heal_all(&self, by: NodeId) {
        let (down, paused, skewed) = {
            let mut st = self.lock();
            st.faults.stop();
            (
                st.nodes.created_where(|s, _| s == NodeStatus::Down),
                st.nodes.created_where(|s, _| s == NodeStatus::Paused),
                st.nodes.created_where(|_, offset| offset != 0),
            )
        };
        self.record(
            by,
            EventKind::User {
                label: "heal_all: faults stopped".into(),
            },
        );
        self.heal_all_links();
        for n in skewed {
            self.set_clock_offset(n, 0);
        }
        for n in paused {
            self.resume(n);
        }
        for n in down {
            self.restart(n);
        }
    }

    /// Whether messages from `from` to `to` are dropped by a partition.
    pub(crate) fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.lock().net.is_cut(from, to)
    }

    /// Cuts traffic from `a` to `b`, and back unless `one_way` (traced on `a`).
    pub(crate) fn cut_link(&self, a: NodeId, b: NodeId, one_way: bool) {
        {
            let mut st = self.lock();
            st.net.cut(a, b);
            self.sync_link(&st, a, b);
            if !one_way {
                st.net.cut(b, a);
                self.sync_link(&st, b, a);
            }
        }
        self.record(
            a,
            EventKind::Partition {
                peer: b,
                one_way,
                cut: true,
            },
        );
    }

    /// Cuts `node` off from every other node (both directions); returns the links cut.
    pub(crate) fn isolate(&self, node: NodeId) -> Vec<(NodeId, NodeId)> {
        let peers: Vec<NodeId> = (0..self.node_count())
            .map(NodeId::from_index)
            .filter(|p| *p != node)
            .collect();
        let mut links = Vec::new();
        for peer in peers {
            links.push((node, peer));
            links.push((peer, node));
            self.cut_link(node, peer, false);
        }
        links
    }

    /// Cuts traffic from `from` to `to`; returns the link cut.
    pub(crate) fn cut_one_way(&self, from: NodeId, to: NodeId) -> Vec<(NodeId, NodeId)> {
        self.cut_link(from, to, true);
        vec![(from, to)]
    }

    /// Heals every cut link (each traced).
    pub(crate) fn heal_all_links(&self) {
        let links = {
            let mut st = self.lock();
            let links = st.net.heal_all();
            for (a, b) in &links {
                self.sync_link(&st, *a, *b);
            }
            links
        };
        for (a, b) in links {
            self.record(
                a,
                EventKind::Partition {
                    peer: b,
                    one_way: true,
                    cut: false,
                },
            );
        }
    }

    /// Heals links cut earlier (each once); traced as one heal.
    pub(crate) fn heal_links(&self, links: &[(NodeId, NodeId)]) {
        let mut st = self.lock();
        for (a, b) in links {
            st.net.heal(*a, *b);
            self.sync_link(&st, *a, *b);
        }
        drop(st);
        if let Some((a, b)) = links.first() {
            let one_way = links.len() == 1;
            self.record(
                *a,
                EventKind::Partition {
                    peer: *b,
                    one_way,
                    cut: false,
                },
            );
        }
    }

    /// Runs `action` after `after` of virtual time, on the supervisor's node (unaffected by
    /// kills).
    #[track_caller]
    pub(crate) fn delayed(
        self: &Arc<Self>,
        after: Duration,
        action: impl FnOnce(&World) + Send + 'static,
    ) {
        let w = self.clone();
        self.spawn_sys(async move {
            madsim::time::sleep(after).await;
            action(&w);
        });
    }

    /// Spawns a task of our own on the supervisor's node (unaffected by kills), tracked for the end
    /// of the run.
    #[track_caller]
    pub(crate) fn spawn_sys(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let site = Location::caller();
        let task = self.sys().spawn(task);
        self.lock().tasks.track(&task, None, site);
    }

    /// Restarts `node` after `after`, unless something else restarted it meanwhile (it is no
    /// longer down, or was restarted and killed again).
    pub(crate) fn restart_later(self: &Arc<Self>, node: NodeId, after: Duration) {
        let epoch = self.lock().nodes.epoch(node);
        self.delayed(after, move |w| {
            let st = w.lock();
            let due = st.nodes.status(node) == NodeStatus::Down && st.nodes.epoch(node) == epoch;
            drop(st);
            if due {
                w.restart(node);
            }
        });
    }

    /// Resumes `node` after `after`, unless its state changed meanwhile.
    pub(crate) fn resume_later(self: &Arc<Self>, node: NodeId, after: Duration) {
        let epoch = self.lock().nodes.epoch(node);
        self.delayed(after, move |w| {
            let due = w.lock().nodes.epoch(node) == epoch;
            if due {
                w.resume(node);
            }
        });
    }
}
