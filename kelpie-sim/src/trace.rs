//! The per-run event trace: every scheduling-relevant event, hashed into one stable value.
//!
//! Two runs of the same seed must produce the same sequence of events and therefore the same
//! [`TraceSummary::hash`]. Unlike madsim's own determinism check (which compares only random
//! draws), the trace includes *what* happened: which key was written with which value, which
//! message was sent to whom. A divergence that touches no random draw is still caught, and
//! [`first_divergence`] names the first event where two runs differ.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::fault::{FaultKind, OpKind};
use crate::ids::NodeId;
use crate::rng::mix64;

/// A stable 64-bit hasher (word-at-a-time multiply-mix, SplitMix64 finalizer). Unlike
/// `DefaultHasher`, its keys are fixed, so a value hashes the same in every run and thread.
#[derive(Debug, Clone)]
pub struct StableHasher {
    state: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher {
            state: 0x243f_6a88_85a3_08d3,
        }
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        mix64(self.state)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.state = (self.state ^ v)
            .wrapping_mul(0x9fb2_1c65_1e98_df25)
            .rotate_left(29);
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// Hashes `value` with [`StableHasher`].
pub fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = StableHasher::default();
    value.hash(&mut h);
    h.finish()
}

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

/// What a traced event was.
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
}

/// One event of a run's trace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceEvent {
    /// Virtual time since the start of the run.
    pub at: Duration,
    /// The node it happened on.
    pub node: NodeId,
    /// What happened.
    pub kind: EventKind,
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
            EventKind::User { label } => write!(f, "user: {label}"),
        }
    }
}

/// How much of the trace a run keeps besides its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum TraceMode {
    /// The hash, the count and the last events (for failure reports). The default.
    #[default]
    Tail,
    /// Every event, for the determinism check and debugging.
    Full,
}

/// The recorder behind a run's trace.
#[derive(Debug)]
pub(crate) struct Trace {
    /// Every event so far, fed into one running hasher (each event's `Hash` writes its
    /// variant and the lengths of its variable parts, so the stream is unambiguous).
    hasher: StableHasher,
    len: u64,
    /// The last `tail_cap` events, a ring: once full, `oldest` is the next slot overwritten.
    tail: Vec<TraceEvent>,
    oldest: usize,
    tail_cap: usize,
    full: Option<Vec<TraceEvent>>,
}

impl Trace {
    pub(crate) fn new(mode: TraceMode, tail_cap: usize) -> Self {
        Trace {
            hasher: StableHasher::default(),
            len: 0,
            tail: match mode {
                TraceMode::Tail => Vec::with_capacity(tail_cap),
                TraceMode::Full => Vec::new(),
            },
            oldest: 0,
            tail_cap,
            full: (mode == TraceMode::Full).then(Vec::new),
        }
    }

    pub(crate) fn record(&mut self, event: TraceEvent) {
        event.hash(&mut self.hasher);
        self.len += 1;
        if let Some(full) = &mut self.full {
            // The tail is the end of `full`, taken when the summary is made.
            full.push(event);
        } else if self.tail.len() < self.tail_cap {
            self.tail.push(event);
        } else if self.tail_cap > 0 {
            self.tail[self.oldest] = event;
            self.oldest += 1;
            if self.oldest == self.tail_cap {
                self.oldest = 0;
            }
        }
    }

    /// Virtual time of the last event (zero if none).
    pub(crate) fn last_time(&self) -> Duration {
        let newest = match (&self.full, self.oldest) {
            (Some(full), _) => full.last(),
            (None, 0) => self.tail.last(),
            (None, i) => self.tail.get(i - 1),
        };
        newest.map_or(Duration::ZERO, |e| e.at)
    }

    /// The last `tail_cap` events, oldest first.
    fn tail(&self) -> Vec<TraceEvent> {
        if let Some(full) = &self.full {
            return full[full.len().saturating_sub(self.tail_cap)..].to_vec();
        }
        let (newer, older) = self.tail.split_at(self.oldest);
        older.iter().chain(newer).cloned().collect()
    }

    /// The summary; node names are filled in by the caller, which knows them.
    pub(crate) fn summary(&self) -> TraceSummary {
        TraceSummary {
            nodes: Vec::new(),
            hash: self.hasher.finish(),
            len: self.len,
            tail: self.tail(),
            full: self.full.clone(),
        }
    }

    /// The summary, moving the events out (the recorder is left empty).
    pub(crate) fn take_summary(&mut self) -> TraceSummary {
        let tail = if self.full.is_some() {
            self.tail()
        } else {
            let mut tail = std::mem::take(&mut self.tail);
            tail.rotate_left(std::mem::take(&mut self.oldest));
            tail
        };
        TraceSummary {
            nodes: Vec::new(),
            hash: self.hasher.finish(),
            len: self.len,
            tail,
            full: self.full.take(),
        }
    }
}

/// A finished run's trace: its hash, its length, its last events, and (in
/// [`TraceMode::Full`]) every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSummary {
    /// Stable hash of the whole event sequence.
    pub hash: u64,
    /// Number of events.
    pub len: u64,
    /// The last events, oldest first.
    pub tail: Vec<TraceEvent>,
    /// Every event, if the run kept them.
    pub full: Option<Vec<TraceEvent>>,
    /// The name of each node by index (`n3` in an event is `nodes[3]`); `main` first.
    pub nodes: Vec<String>,
}

/// The index of the first event at which two traces differ (`None` if they are equal). If one
/// is a prefix of the other, that is the length of the shorter one.
pub fn first_divergence(a: &[TraceEvent], b: &[TraceEvent]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at: u64, label: &str) -> TraceEvent {
        TraceEvent {
            at: Duration::from_millis(at),
            node: NodeId::MAIN,
            kind: EventKind::User {
                label: label.into(),
            },
        }
    }

    #[test]
    fn hash_depends_on_content_and_order() {
        let run = |labels: &[&str]| {
            let mut t = Trace::new(TraceMode::Tail, 4);
            for (i, l) in labels.iter().enumerate() {
                t.record(ev(i as u64, l));
            }
            t.summary().hash
        };
        assert_eq!(run(&["a", "b"]), run(&["a", "b"]));
        assert_ne!(run(&["a", "b"]), run(&["b", "a"]));
        assert_ne!(run(&["a", "b"]), run(&["a", "c"]));
        assert_ne!(run(&["a"]), run(&["a", "a"]));
    }

    fn t_tail(at: &[u64]) -> Vec<TraceEvent> {
        at.iter().map(|&i| ev(i, "x")).collect()
    }

    #[test]
    fn tail_keeps_the_last_events() {
        let mut t = Trace::new(TraceMode::Tail, 2);
        for i in 0..5 {
            t.record(ev(i, "x"));
        }
        let s = t.summary();
        assert_eq!(s.len, 5);
        assert_eq!(
            s.tail.iter().map(|e| e.at.as_millis()).collect::<Vec<_>>(),
            [3, 4]
        );
        assert!(s.full.is_none());
        assert_eq!(t.last_time(), Duration::from_millis(4));
        for i in 5..8 {
            t.record(ev(i, "x"));
            let newest = t
                .summary()
                .tail
                .iter()
                .map(|e| e.at.as_millis())
                .collect::<Vec<_>>();
            assert_eq!(newest, [i as u128 - 1, i as u128]);
            assert_eq!(t.last_time(), Duration::from_millis(i));
        }
        assert_eq!(t.take_summary().tail, t_tail(&[6, 7]));
        assert!(Trace::new(TraceMode::Tail, 0).summary().tail.is_empty());
    }

    #[test]
    fn full_mode_keeps_every_event_and_the_same_tail_and_hash() {
        let (mut tail, mut full) = (
            Trace::new(TraceMode::Tail, 3),
            Trace::new(TraceMode::Full, 3),
        );
        for i in 0..7 {
            tail.record(ev(i, "x"));
            full.record(ev(i, "x"));
            assert_eq!(full.last_time(), tail.last_time());
            assert_eq!(full.summary().tail, tail.summary().tail);
        }
        let (t, f) = (tail.take_summary(), full.take_summary());
        assert_eq!(
            (f.hash, f.len, &f.tail),
            (t.hash, t.len, &t_tail(&[4, 5, 6]))
        );
        assert_eq!(f.full.unwrap(), t_tail(&[0, 1, 2, 3, 4, 5, 6]));
        assert!(t.full.is_none());
    }

    #[test]
    fn first_divergence_names_the_index() {
        let a = vec![ev(0, "a"), ev(1, "b"), ev(2, "c")];
        let mut b = a.clone();
        assert_eq!(first_divergence(&a, &b), None);
        b[1] = ev(1, "B");
        assert_eq!(first_divergence(&a, &b), Some(1));
        assert_eq!(first_divergence(&a, &a[..2]), Some(2));
    }

    #[test]
    fn stable_hasher_is_stable() {
        // Fixed expectations: a changed hasher would silently invalidate stored trace hashes.
        assert_eq!(stable_hash(&0u64), stable_hash(&0u64));
        assert_ne!(
            stable_hash(&[1u8, 2, 3][..]),
            stable_hash(&[1u8, 2, 3, 0][..])
        );
        assert_ne!(stable_hash("ab"), stable_hash("ba"));
    }
}
