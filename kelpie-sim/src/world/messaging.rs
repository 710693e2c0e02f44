//! Messages between nodes: binding endpoints, sending (the network faults' decisions and
//! their trace events), and the delivery pump that hands messages over at their time.

use std::hash::Hash;
use std::panic::Location;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::fault::{FaultKind, Fired, OpKind};
use crate::ids::NodeId;
use crate::time::nanos;
use crate::trace::{stable_hash, DropReason, EventKind, TraceEvent};

use super::net::{Enqueued, Outgoing, SharedMailbox};
use super::{State, World};

impl State {
    /// What the network faults that fired do to a message: a delay, a hold-back (reordering),
    /// a second copy, each amount drawn from the fault's own stream; `true` if it is lost.
    #[inline]
    pub(super) fn apply_send_faults(&mut self, fired: &[Fired], out: &mut Outgoing) -> bool {
        let mut lost = false;
        for f in fired {
            let max = Duration::from_millis(f.spec.param("max_ms").unwrap_or(0).max(1));
            let max_ns = max.as_nanos() as u64;
            let mut extra = || self.faults.draw(f.index, 1..max_ns + 1);
            match f.spec.kind() {
                FaultKind::PacketLoss => lost = true,
                FaultKind::NetworkDelay => out.latency_ns += extra(),
                FaultKind::MessageReorder => out.hold_back_ns += extra(),
                FaultKind::MessageDuplicate => out.copies = 2,
                _ => {}
            }
        }
        lost
    }
}

impl World {
    /// Binds `node`'s endpoint for messages of type `M`, replacing (and closing) an earlier
    /// binding.
    pub(crate) fn bind<M: Clone + Send + 'static>(&self, node: NodeId) -> SharedMailbox<M> {
        let (mailbox, old) = self.lock().net.bind::<M>(node);
        // Closed outside the world's lock: closing wakes the old endpoint's receivers.
        drop(old);
        mailbox
    }

    /// Sends `msg` from `from` to `to`'s endpoint for `M`, as the network faults and the
    /// partitions allow.
    pub(crate) fn send<M: Hash + Clone + Send + 'static>(
        self: &Arc<Self>,
        from: NodeId,
        to: NodeId,
        msg: M,
    ) {
        self.catch_up();
        let now = self.elapsed();
        let content = stable_hash(&msg);
        let mut guard = self.lock();
        let st = &mut *guard;
        // No call at all when no declared fault applies to sends (the common case).
        let fired = if self.fault_ops & (1 << OpKind::Send as u32) != 0 {
            self.decide_locked(st, now, OpKind::Send, from, None)
        } else {
            Vec::new()
        };
        let (id, latency_ns) = st.net.new_message();
        let mut out = Outgoing {
            from,
            to,
            id,
            latency_ns,
            hold_back_ns: 0,
            copies: 1,
        };
        let lost = st.apply_send_faults(&fired, &mut out);
        let at = now;
        st.trace.record(TraceEvent {
            at,
            node: from,
            kind: EventKind::Send {
                to,
                msg: id,
                content,
            },
        });
        if lost || st.net.is_cut(from, to) {
            let reason = if lost {
                DropReason::Loss
            } else {
                DropReason::Partition
            };
            let kind = EventKind::Drop {
                to,
                msg: id,
                reason,
            };
            st.trace.record(TraceEvent {
                at,
                node: from,
                kind,
            });
            return;
        }
        let now_ns = nanos(now);
        match st.net.enqueue(now_ns, out, msg) {
            Enqueued::Nothing => {}
            Enqueued::StartPump => {
                drop(guard);
                self.start_pump();
            }
            Enqueued::Earlier(at) => {
                let deadline = || self.now_instant() + Duration::from_nanos(at - now_ns);
                st.net.rearm(at, deadline, || self.timer());
            }
        }
    }

    /// The delivery pump: a task that never finishes; each time its timer wakes it, it
    /// delivers everything due, in order, and re-arms the timer for the next delivery. It is
    /// woken only by its timer: a send that brings the earliest delivery forward re-registers
    /// the timer itself.
    fn start_pump(self: &Arc<Self>) {
        let site = Location::caller();
        let w = self.clone();
        let task = self.sys().spawn(std::future::poll_fn(move |cx| {
            let now = w.elapsed();
            let now_ns = nanos(now);
            let mut guard = w.lock();
            let st = &mut *guard;
            let nodes = &st.nodes;
            let trace = &mut st.trace;
            st.net.pump(
                now_ns,
                cx,
                |to| nodes.is_down(to),
                |node, kind| {
                    trace.record(TraceEvent {
                        at: now,
                        node,
                        kind,
                    })
                },
                |at| w.now_instant() + Duration::from_nanos(at - now_ns),
                || w.timer(),
            );
            Poll::<()>::Pending
        }));
        self.lock().tasks.track(&task, None, site);
    }
}
