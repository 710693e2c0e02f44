//! The recorder behind a run's trace (running hash, tail ring, optional full list) and the
//! [`TraceSummary`] a run ends with.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::{StableHasher, TraceEvent};

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

    #[inline(always)]
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
