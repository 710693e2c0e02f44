//! Traffic of `tokio::net` sockets, as the `kelpie-tokio` facade reports it: each connect,
//! accept, close, write, read and datagram becomes a trace event (size and hash, not bytes),
//! and the network faults are decided on each stream segment and each datagram, from the
//! faults' own streams, counted and traced as on our endpoints.
//!
//! What a fault does there (the stream model allows no silent loss):
//! - a stream segment (the bytes of one flush) that `PacketLoss` hits is retransmitted after
//!   [`RETRANSMIT`] (Linux's minimum retransmission timeout); `NetworkDelay` adds its delay;
//!   the reader waits for it, and for every later byte of the stream behind it
//!   ([`super::flows`]); the writer's flush returns at once, as the kernel's does.
//!   `MessageReorder` and `MessageDuplicate` are not considered: TCP delivers in order, once;
//! - a datagram that `PacketLoss` hits is dropped; `NetworkDelay` and `MessageReorder` send it
//!   late (later datagrams may overtake it); `MessageDuplicate` sends it twice.
//!
//! Partitions reach the same sockets through madsim's links ([`super::sockets`]).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use crate::fault::{FaultKind, OpKind};
use crate::ids::NodeId;
use crate::time::nanos;
use crate::trace::{stable_hash, EventKind, SocketOp, TraceEvent};

use super::flows::Readable;
use super::net::Outgoing;
use super::{State, World};

/// How long a stream segment that [`FaultKind::PacketLoss`] hits waits for its retransmission.
pub const RETRANSMIT: Duration = Duration::from_millis(200);

/// What the network faults do to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramFate {
    /// Dropped (`PacketLoss`).
    pub lost: bool,
    /// Sent this much later (`NetworkDelay`, `MessageReorder`).
    pub delay: Duration,
    /// How many copies go out (2 under `MessageDuplicate`).
    pub copies: u8,
}

impl DatagramFate {
    /// No fault: one copy, now.
    pub const UNTOUCHED: DatagramFate = DatagramFate {
        lost: false,
        delay: Duration::ZERO,
        copies: 1,
    };
}

impl World {
    /// The node the running madsim task belongs to: the supervisor, one of ours, or `None` (a
    /// node made outside Kelpie's builder).
    pub(crate) fn current_node(&self) -> Option<NodeId> {
        let id = madsim::plugin::node();
        if id == self.main_madsim {
            return Some(NodeId::MAIN);
        }
        self.lock().nodes.by_madsim(id)
    }

    /// Traces `op` at a socket of `node` whose other end is `peer`, with the bytes it moved.
    pub(crate) fn socket_event(
        self: &Arc<Self>,
        node: NodeId,
        op: SocketOp,
        peer: SocketAddr,
        bytes: &[u8],
    ) {
        let _traced = self.report(node, op, peer, bytes);
    }

    /// Processes the ticks due, then traces and counts one reported socket event; returns the
    /// locked state and the event's time, for the fault decisions that follow it. Always
    /// inlined: as a call (returning the guard) it cost about 40 instructions per socket event,
    /// 1.196x to 1.209x raw madsim in `tcp_roundtrips`.
    #[inline(always)]
    fn report(
        self: &Arc<Self>,
        node: NodeId,
        op: SocketOp,
        peer: SocketAddr,
        bytes: &[u8],
    ) -> (MutexGuard<'_, State>, Duration) {
        self.catch_up();
        let at = self.elapsed();
        let kind = socket_kind(op, peer, bytes);
        let mut st = self.lock();
        st.socket_reports += 1;
        st.trace.record(TraceEvent { at, node, kind });
        (st, at)
    }

    /// Traces the close of `node`'s stream from `local` to `peer`, and forgets the flow it
    /// read; unless the world is busy on this thread (a stream dropped while the world itself
    /// drops tasks, at the end of a run).
    pub(crate) fn socket_closed(&self, node: NodeId, local: SocketAddr, peer: SocketAddr) {
        let at = self.elapsed();
        if let Some(mut st) = self.try_lock() {
            let kind = socket_kind(SocketOp::Close, peer, &[]);
            st.trace.record(TraceEvent { at, node, kind });
            st.flows.close(peer, local);
        }
    }

    /// A stream segment (the bytes of one flush) that `node` writes from `local` to `peer`:
    /// traced, and the loss and delay faults decided on it. Returns how long the reader will
    /// wait for it beyond the network's latency (zero if no fault fired).
    pub(crate) fn stream_segment(
        self: &Arc<Self>,
        node: NodeId,
        local: SocketAddr,
        peer: SocketAddr,
        bytes: &[u8],
    ) -> Duration {
        let (mut st, at) = self.report(node, SocketOp::Write, peer, bytes);
        let fired = self.decide_send_if(&mut st, at, node, |spec| {
            matches!(spec.kind(), FaultKind::PacketLoss | FaultKind::NetworkDelay)
        });
        let held = if fired.is_empty() {
            Duration::ZERO
        } else {
            let mut out = outgoing(node);
            let lost = st.apply_send_faults(&fired, &mut out);
            let retransmit = if lost { RETRANSMIT } else { Duration::ZERO };
            retransmit + Duration::from_nanos(out.latency_ns)
        };
        // Without a fault on sends nothing is ever held: the flows are not kept.
        if self.streams_may_be_held() {
            let release = (!held.is_zero()).then(|| nanos(at + held));
            st.flows.written(local, peer, bytes.len() as u64, release);
        }
        held
    }

    /// Whether a fault can hold a stream segment in this run (one applies to sends); fixed
    /// for the run, so a stream may ask once.
    pub(crate) fn streams_may_be_held(&self) -> bool {
        self.fault_ops & (1 << OpKind::Send as u32) != 0
    }

    /// How far the reader at `local` of the stream from `peer`, having read `read` bytes, may
    /// read now.
    pub(crate) fn stream_readable(
        &self,
        local: SocketAddr,
        peer: SocketAddr,
        read: u64,
    ) -> Readable {
        if !self.streams_may_be_held() {
            return Readable::Upto(u64::MAX);
        }
        let now = nanos(self.elapsed());
        self.lock().flows.readable(peer, local, read, now)
    }

    /// A datagram from `node` to `peer`: traced, and the network faults decided on it.
    pub(crate) fn datagram(
        self: &Arc<Self>,
        node: NodeId,
        peer: SocketAddr,
        bytes: &[u8],
    ) -> DatagramFate {
        let (mut st, at) = self.report(node, SocketOp::SendTo, peer, bytes);
        let fired = self.decide_send_if(&mut st, at, node, |_| true);
        let mut out = outgoing(node);
        let lost = st.apply_send_faults(&fired, &mut out);
        DatagramFate {
            lost,
            delay: Duration::from_nanos(out.latency_ns + out.hold_back_ns),
            copies: out.copies,
        }
    }

    /// Messages madsim's network carried while no socket reported to the run: sockets of
    /// madsim-tokio (or madsim-tonic's endpoints), which the network faults other than
    /// partitions never see. Zero once any kelpie-tokio socket reported.
    pub(super) fn unreported_socket_messages(&self, socket_reports: u64) -> u64 {
        if socket_reports > 0 {
            0
        } else {
            self.netsim.stat().msg_count
        }
    }
}

/// The trace event of `op` on `bytes` with `peer`.
fn socket_kind(op: SocketOp, peer: SocketAddr, bytes: &[u8]) -> EventKind {
    let peer = match peer {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(v6) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, v6.port()),
    };
    EventKind::Socket {
        op,
        peer,
        len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        content: if bytes.is_empty() {
            0
        } else {
            stable_hash(bytes)
        },
    }
}

/// A message record for the fault rules to fill in: no base latency (madsim's network adds
/// its own), nothing held, one copy.
fn outgoing(from: NodeId) -> Outgoing {
    Outgoing {
        from,
        to: from,
        id: 0,
        latency_ns: 0,
        hold_back_ns: 0,
        copies: 1,
    }
}
