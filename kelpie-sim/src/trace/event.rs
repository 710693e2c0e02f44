//! What a trace records: [`TraceEvent`]s and their kinds, and how they print.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::fault::{FaultKind, OpKind};
use crate::ids::NodeId;

/// What a node did, for [`EventKind::Node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeAction {
    /// The node was created.
    Create,
    /// The node was killed: tasks dropped, volatile state lost.
    Kill,
    /// The node was restarted (its init closure re-run).
    Restart,
    /// The node stopped running tasks.
    Pause,
    /// The node resumed.
    Resume,
}

/// Why a message was not delivered, for [`EventKind::Drop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A [`FaultKind::PacketLoss`] fault.
    Loss,
    /// A partition between sender and receiver.
    Partition,
    /// The receiver is down (killed) or has no endpoint for the message's type.
    Unreachable,
}

/// What a `tokio::net` socket did, for [`EventKind::Socket`] (sockets of the `kelpie-tokio`
/// facade; madsim-tokio's own sockets are not seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketOp {
    /// A TCP connect to the peer succeeded.
    Connect,
    /// A TCP connect to the peer failed (refused, unreachable).
    ConnectFailed,
    /// A listener accepted a connection from the peer.
    Accept,
    /// A TCP stream to the peer was closed (dropped), by its task or by a crash.
    Close,
    /// Bytes written to a stream went on the wire (a flush); `len` and `content` describe them.
    Write,
    /// Bytes were read from a stream.
    Read,
    /// A datagram was sent to the peer.
    SendTo,
    /// A datagram was received from the peer.
    RecvFrom,
}

/// What a traced event was.
///
/// New variants go last: the derived `Hash` writes a variant's index into the trace hash, so a
/// variant inserted earlier would change the hash of every trace holding a later one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A task was spawned through [`SimEnv::spawn`](crate::SimEnv::spawn).
    Spawn {
        /// The task's sequence number in this run.
        task: u64,
    },
    /// A [`SimEnv::sleep`](crate::SimEnv::sleep) timer fired.
    Timer {
        /// How long the task slept.
        slept: Duration,
    },
    /// A fault fired.
    Fault {
        /// Which fault.
        fault: FaultKind,
        /// Its display name (a custom fault's own name).
        name: Arc<str>,
        /// The operation it fired on.
        op: OpKind,
    },
    /// A storage operation completed.
    Storage {
        /// Which operation.
        op: OpKind,
        /// The key (or prefix, for a scan; empty for commit and sync), shared with the disk.
        key: Arc<[u8]>,
        /// Hash of the value written or read (`0` for none).
        value: u64,
        /// Whether it succeeded.
        ok: bool,
    },
    /// A message was sent.
    Send {
        /// Receiver.
        to: NodeId,
        /// Message sequence number in this run.
        msg: u64,
        /// Stable hash of the message's content.
        content: u64,
    },
    /// A message was delivered to its receiver.
    Deliver {
        /// Sender.
        from: NodeId,
        /// Message sequence number.
        msg: u64,
    },
    /// A message was dropped.
    Drop {
        /// Receiver.
        to: NodeId,
        /// Message sequence number.
        msg: u64,
        /// Why.
        reason: DropReason,
    },
    /// A network partition was created or healed.
    Partition {
        /// The other side (the event's node is one side).
        peer: NodeId,
        /// `true` if only traffic from the event's node to `peer` is cut.
        one_way: bool,
        /// `true` when created, `false` when healed.
        cut: bool,
    },
    /// A node lifecycle change.
    Node {
        /// What happened.
        action: NodeAction,
    },
    /// A node's clock offset changed.
    Clock {
        /// New offset from virtual time, in nanoseconds (may be negative).
        offset_ns: i64,
    },
    /// An event the test recorded with [`SimEnv::trace`](crate::SimEnv::trace).
    User {
        /// The test's label.
        label: String,
    },
    /// Traffic at a socket boundary: a connect, an accept, a close, or bytes written, read,
    /// sent or received (their size and a hash, not the bytes).
    Socket {
        /// What happened.
        op: SocketOp,
        /// The other end's address (an IPv6 peer, which Kelpie's nodes never are, is
        /// recorded as `0.0.0.0` with its port: the variant stays as small as the others).
        peer: std::net::SocketAddrV4,
        /// How many bytes (0 for connects, accepts and closes; saturated at `u32::MAX`).
        len: u32,
        /// Stable hash of the bytes (0 for none).
        content: u64,
    },
}

/// One event of a run's trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Virtual time since the start of the run.
    pub at: Duration,
    /// The node it happened on.
    pub node: NodeId,
    /// What happened.
    pub kind: EventKind,
}

/// Hashes exactly as `#[derive(Hash)]` would (fields in order, then the kind with its variant
/// index written as an `isize`; a test checks each variant written out here against
/// `EventKind`'s derived hash), but always inlined: where an event is built and recorded, its
/// variant is known, so hashing a timer, a spawn, a storage operation, a message or a socket's
/// traffic is
/// straight-line code instead of a call and a jump over every variant. The other variants go
/// through the derived hash.
impl Hash for TraceEvent {
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.at.hash(state);
        self.node.hash(state);
        match &self.kind {
            EventKind::Spawn { task } => {
                state.write_isize(0);
                task.hash(state);
            }
            EventKind::Timer { slept } => {
                state.write_isize(1);
                slept.hash(state);
            }
            EventKind::Storage { op, key, value, ok } => {
                state.write_isize(3);
                op.hash(state);
                key.hash(state);
                value.hash(state);
                ok.hash(state);
            }
            EventKind::Send { to, msg, content } => {
                state.write_isize(4);
                to.hash(state);
                msg.hash(state);
                content.hash(state);
            }
            EventKind::Deliver { from, msg } => {
                state.write_isize(5);
                from.hash(state);
                msg.hash(state);
            }
            EventKind::Socket {
                op,
                peer,
                len,
                content,
            } => {
                state.write_isize(11);
                op.hash(state);
                peer.hash(state);
                len.hash(state);
                content.hash(state);
            }
            other => other.hash(state),
        }
    }
}

fn fmt_bytes(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    write!(f, "\"")?;
    for &b in bytes.iter().take(64) {
        if b.is_ascii_graphic() || b == b' ' {
            write!(f, "{}", b as char)?;
        } else {
            write!(f, "\\x{b:02x}")?;
        }
    }
    if bytes.len() > 64 {
        write!(f, "…")?;
    }
    write!(f, "\"")
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:>12.6}s] {} ", self.at.as_secs_f64(), self.node)?;
        match &self.kind {
            EventKind::Spawn { task } => write!(f, "spawn task#{task}"),
            EventKind::Timer { slept } => write!(f, "timer fired after {slept:?}"),
            EventKind::Fault { name, op, .. } => write!(f, "FAULT {name} on {}", op.name()),
            EventKind::Storage { op, key, value, ok } => {
                write!(f, "storage {} ", op.name())?;
                fmt_bytes(f, key)?;
                if *value != 0 {
                    write!(f, " value#{value:016x}")?;
                }
                write!(f, " -> {}", if *ok { "ok" } else { "err" })
            }
            EventKind::Send { to, msg, content } => {
                write!(f, "send msg#{msg} to {to} content#{content:016x}")
            }
            EventKind::Deliver { from, msg } => write!(f, "deliver msg#{msg} from {from}"),
            EventKind::Drop { to, msg, reason } => {
                write!(f, "drop msg#{msg} to {to} ({reason:?})")
            }
            EventKind::Partition { peer, one_way, cut } => {
                let arrow = if *one_way { "->" } else { "<->" };
                let what = if *cut { "partition" } else { "heal" };
                write!(f, "{what} {arrow} {peer}")
            }
            EventKind::Node { action } => write!(f, "node {action:?}"),
            EventKind::Clock { offset_ns } => {
                write!(f, "clock offset {:+.3}ms", *offset_ns as f64 / 1e6)
            }
            EventKind::Socket {
                op,
                peer,
                len,
                content,
            } => {
                write!(f, "socket {op:?} {peer}")?;
                if *len != 0 || *content != 0 {
                    write!(f, " {len} bytes content#{content:016x}")?;
                }
                Ok(())
            }
            EventKind::User { label } => write!(f, "user: {label}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::StableHasher;

    /// The hash `#[derive(Hash)]` on `TraceEvent` would give: its fields in order, the kind
    /// through `EventKind`'s derived hash.
    fn derived(e: &TraceEvent) -> u64 {
        let mut h = StableHasher::default();
        e.at.hash(&mut h);
        e.node.hash(&mut h);
        e.kind.hash(&mut h);
        h.finish()
    }

    #[test]
    fn the_inlined_hash_is_the_derived_one_for_every_variant() {
        let kinds = [
            EventKind::Spawn { task: 7 },
            EventKind::Timer {
                slept: Duration::from_nanos(1_234_567_891),
            },
            EventKind::Fault {
                fault: FaultKind::PacketLoss,
                name: "PacketLoss".into(),
                op: OpKind::Send,
            },
            EventKind::Storage {
                op: OpKind::Set,
                key: Arc::from(&b"key-of-eleven"[..]),
                value: 0xfeed,
                ok: true,
            },
            EventKind::Send {
                to: NodeId::from_index(2),
                msg: 9,
                content: 0xabc,
            },
            EventKind::Deliver {
                from: NodeId::from_index(3),
                msg: 9,
            },
            EventKind::Drop {
                to: NodeId::from_index(1),
                msg: 4,
                reason: DropReason::Partition,
            },
            EventKind::Partition {
                peer: NodeId::from_index(1),
                one_way: true,
                cut: false,
            },
            EventKind::Node {
                action: NodeAction::Restart,
            },
            EventKind::Clock { offset_ns: -5 },
            EventKind::User {
                label: "label".into(),
            },
            EventKind::Socket {
                op: SocketOp::Write,
                peer: "10.0.0.1:80".parse().unwrap(),
                len: 3,
                content: 0x77,
            },
        ];
        let mut seen = std::collections::HashSet::new();
        for kind in kinds {
            let e = TraceEvent {
                at: Duration::from_micros(1_500_001),
                node: NodeId::from_index(1),
                kind,
            };
            assert_eq!(crate::hash::stable_hash(&e), derived(&e), "{e}");
            assert!(seen.insert(derived(&e)), "two variants hash alike: {e}");
        }
    }
}
