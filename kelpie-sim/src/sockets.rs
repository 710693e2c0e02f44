//! Where `tokio::net` sockets meet a Kelpie run: the hooks the `kelpie-tokio` facade calls
//! at each socket boundary. A service never calls these itself; it depends on
//! `tokio = { package = "kelpie-tokio", … }` and keeps its `tokio::net` code unchanged.
//!
//! Each hook is a no-op (and lets the traffic through) outside a Kelpie run, and on a madsim
//! node that Kelpie did not make: on raw madsim the facade is plain madsim-tokio.
//!
//! ```
//! use std::net::SocketAddr;
//! use kelpie_sim::{sockets, EventKind, SimConfig, Simulation, SocketOp};
//!
//! let peer: SocketAddr = "10.0.0.2:7000".parse().unwrap();
//! let report = Simulation::new(SimConfig::with_seed(1))
//!     .run(move |_env| async move {
//!         let node = sockets::current_node().expect("the supervisor is a Kelpie node");
//!         sockets::event(node, SocketOp::Connect, peer, &[]);
//!         let local: SocketAddr = "10.0.0.1:1".parse().unwrap();
//!         sockets::stream_segment(node, local, peer, b"PING\r\n")
//!     })
//!     .unwrap();
//! assert_eq!(report.output, std::time::Duration::ZERO); // no fault declared: no hold
//! assert_eq!(report.trace.len, 2);
//! assert!(matches!(
//!     report.trace.tail[1].kind,
//!     EventKind::Socket { op: SocketOp::Write, len: 6, .. }
//! ));
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use crate::ids::NodeId;
use crate::trace::SocketOp;
use crate::world::World;

pub use crate::world::flows::Readable;
pub use crate::world::socket_traffic::{DatagramFate, RETRANSMIT};

/// The Kelpie node the running task belongs to, if it runs in a Kelpie run on a node Kelpie
/// made (the supervisor included).
pub fn current_node() -> Option<NodeId> {
    World::with_current(World::current_node).flatten()
}

/// Traces `op` at a socket of `node` whose other end is `peer`, with the bytes it moved
/// (their size and hash go into the trace).
pub fn event(node: NodeId, op: SocketOp, peer: SocketAddr, bytes: &[u8]) {
    World::with_current_arc(|w| w.socket_event(node, op, peer, bytes));
}

/// Traces the close of `node`'s stream from `local` to `peer` (called from a stream's `Drop`:
/// skipped while the run itself is dropping tasks), and forgets the flow it read.
pub fn closed(node: NodeId, local: SocketAddr, peer: SocketAddr) {
    World::with_current(|w| w.socket_closed(node, local, peer));
}

/// A stream segment (the bytes of one flush) that `node` writes from `local` to `peer` (the
/// addresses as the peer's stream names them the other way round): traced, and the loss and
/// delay faults decided on it. Returns how long the reader will wait for it beyond the
/// network's latency; the writer does not wait.
pub fn stream_segment(node: NodeId, local: SocketAddr, peer: SocketAddr, bytes: &[u8]) -> Duration {
    World::with_current_arc(|w| w.stream_segment(node, local, peer, bytes)).unwrap_or_default()
}

/// Whether a fault can hold a stream segment in the current run (a fault on sends is
/// declared); fixed for the run. A stream that asks once at its start can skip
/// [`stream_readable`] when not.
pub fn streams_may_be_held() -> bool {
    World::with_current(World::streams_may_be_held).unwrap_or(false)
}

/// How far the reader at `local` of the stream from `peer`, having read `read` bytes so far,
/// may read now: a fault may hold a segment (and every byte behind it).
pub fn stream_readable(local: SocketAddr, peer: SocketAddr, read: u64) -> Readable {
    World::with_current(|w| w.stream_readable(local, peer, read))
        .unwrap_or(Readable::Upto(u64::MAX))
}

/// A datagram from `node` to `peer`: traced, and the network faults decided on it.
pub fn datagram(node: NodeId, peer: SocketAddr, bytes: &[u8]) -> DatagramFate {
    World::with_current_arc(|w| w.datagram(node, peer, bytes)).unwrap_or(DatagramFate::UNTOUCHED)
}
