//! [`FaultSchedule`]: which firings a replay allows (for shrinking a failing schedule).

use std::collections::BTreeSet;
use std::fmt;

/// Which of a run's fault firings may happen, for replaying a shrunk schedule.
///
/// Each firing is named by the declared fault's index and its ordinal among the times that
/// fault's stream said "fire" (`2:3` is the third firing of the third declared fault). Under a
/// schedule, a firing that is not listed is suppressed; the fault's stream still advances, so
/// the decisions of every fault keep their positions.
///
/// ```
/// use kelpie_sim::FaultSchedule;
/// let s: FaultSchedule = "0:1,2:3".parse().unwrap();
/// assert!(s.allows(2, 3) && !s.allows(0, 2));
/// assert_eq!(s.to_string(), "0:1,2:3");
/// assert!("0-1".parse::<FaultSchedule>().is_err());
/// assert_eq!("none".parse::<FaultSchedule>().unwrap(), FaultSchedule::default());
/// assert_eq!(FaultSchedule::default().to_string(), "none");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultSchedule {
    allowed: BTreeSet<(usize, u64)>,
}

impl FaultSchedule {
    /// A schedule allowing exactly these `(fault index, ordinal)` firings.
    pub fn new(firings: impl IntoIterator<Item = (usize, u64)>) -> Self {
        FaultSchedule {
            allowed: firings.into_iter().collect(),
        }
    }

    /// Whether the `ordinal`-th firing of fault `index` may happen.
    pub fn allows(&self, index: usize, ordinal: u64) -> bool {
        self.allowed.contains(&(index, ordinal))
    }

    /// The allowed firings, in order.
    pub fn firings(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.allowed.iter().copied()
    }

    /// Number of allowed firings.
    pub fn len(&self) -> usize {
        self.allowed.len()
    }

    /// Whether no firing is allowed.
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }
}

/// `none` for the empty schedule (no fault fires), else `index:ordinal` pairs.
impl fmt::Display for FaultSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allowed.is_empty() {
            return write!(f, "none");
        }
        for (n, (i, k)) in self.allowed.iter().enumerate() {
            if n > 0 {
                write!(f, ",")?;
            }
            write!(f, "{i}:{k}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FaultSchedule {
    type Err = String;

    /// Parses `index:ordinal` pairs separated by commas (`0:1,2:3`), or `none`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut allowed = BTreeSet::new();
        if s.trim().eq_ignore_ascii_case("none") {
            return Ok(FaultSchedule { allowed });
        }
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = part
                .split_once(':')
                .and_then(|(i, k)| Some((i.parse::<usize>().ok()?, k.parse::<u64>().ok()?)));
            match parsed {
                Some((i, k)) if k >= 1 => allowed.insert((i, k)),
                _ => return Err(format!("`{part}` is not `fault:ordinal` (e.g. `0:1`)")),
            };
        }
        Ok(FaultSchedule { allowed })
    }
}
