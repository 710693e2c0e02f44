//! Virtual-time arithmetic: durations as nanoseconds, clocks shifted by an offset.

use std::time::Duration;

/// A virtual time in nanoseconds (saturating: 584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `t` shifted by `offset_ns` (a node's clock offset); never below zero.
pub(crate) fn shift(t: Duration, offset_ns: i64) -> Duration {
    if offset_ns >= 0 {
        t + Duration::from_nanos(offset_ns as u64)
    } else {
        t.saturating_sub(Duration::from_nanos(offset_ns.unsigned_abs()))
    }
}
