//! The byte flows of TCP connections, one per direction: how many bytes the writer has put on
//! the wire, and which of them a fault holds until when. A plain value: the world decides the
//! holds ([`super::socket_traffic`]); the reading side asks how far it may read.
//!
//! A held segment holds every later byte of its flow (TCP delivers in order), and only the
//! reader waits: the writer's flush returns at once, as the kernel's does.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// How far the reader of a flow may read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readable {
    /// Up to this many bytes (`u64::MAX`: as many as have arrived).
    Upto(u64),
    /// Nothing before this much more virtual time.
    Wait(Duration),
}

/// One held segment: bytes `start..end` of the flow, released at `release` (nanoseconds).
#[derive(Debug, Clone, Copy)]
struct Hold {
    start: u64,
    end: u64,
    release: u64,
}

/// One direction of a connection.
#[derive(Debug, Default)]
struct Flow {
    /// Bytes put on the wire so far.
    written: u64,
    /// Held segments, oldest first, their release times non-decreasing.
    holds: VecDeque<Hold>,
}

/// Every flow of a run, by (from, to) address as both ends see them.
#[derive(Debug, Default)]
pub(crate) struct Flows {
    flows: BTreeMap<(SocketAddr, SocketAddr), Flow>,
}

impl Flows {
    /// `len` more bytes written on `from → to`, held until `release` if `Some` (a later
    /// segment is never released before an earlier one).
    pub(crate) fn written(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        len: u64,
        release: Option<u64>,
    ) {
        let flow = self.flows.entry((from, to)).or_default();
        let start = flow.written;
        flow.written += len;
        if let Some(release) = release {
            let release = flow
                .holds
                .back()
                .map_or(release, |h| h.release.max(release));
            flow.holds.push_back(Hold {
                start,
                end: flow.written,
                release,
            });
        }
    }

    /// How far the reader of `from → to`, having read `read` bytes, may read at `now`
    /// (nanoseconds since the run started).
    pub(crate) fn readable(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        read: u64,
        now: u64,
    ) -> Readable {
        let Some(flow) = self.flows.get_mut(&(from, to)) else {
            return Readable::Upto(u64::MAX);
        };
        while let Some(h) = flow.holds.front() {
            if h.end <= read || h.release <= now {
                flow.holds.pop_front();
            } else if h.start <= read {
                return Readable::Wait(Duration::from_nanos(h.release - now));
            } else {
                return Readable::Upto(h.start - read);
            }
        }
        Readable::Upto(u64::MAX)
    }

    /// Forgets `from → to` (its reader is gone).
    pub(crate) fn close(&mut self, from: SocketAddr, to: SocketAddr) {
        self.flows.remove(&(from, to));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn a_held_segment_holds_itself_and_every_later_byte_until_its_release() {
        let (a, b) = (addr(1), addr(2));
        let mut f = Flows::default();
        f.written(a, b, 10, None);
        f.written(a, b, 5, Some(100));
        f.written(a, b, 7, None);
        f.written(a, b, 3, Some(50)); // released no earlier than the hold before it
        assert_eq!(f.readable(a, b, 0, 0), Readable::Upto(10));
        assert_eq!(
            f.readable(a, b, 10, 0),
            Readable::Wait(Duration::from_nanos(100))
        );
        assert_eq!(
            f.readable(a, b, 12, 99),
            Readable::Wait(Duration::from_nanos(1))
        );
        // Past the first held segment (time stands still): up to the second, which the
        // first's release holds too.
        assert_eq!(f.readable(a, b, 15, 99), Readable::Upto(7));
        assert_eq!(
            f.readable(a, b, 22, 99),
            Readable::Wait(Duration::from_nanos(1))
        );
        assert_eq!(f.readable(a, b, 22, 100), Readable::Upto(u64::MAX));
        // The other direction, and an unknown flow, are not held.
        assert_eq!(f.readable(b, a, 0, 0), Readable::Upto(u64::MAX));
        f.close(a, b);
        assert_eq!(f.readable(a, b, 0, 0), Readable::Upto(u64::MAX));
    }
}
