//! `sometimes!` sites: how often each was evaluated in a run and how often it held.

use std::collections::BTreeMap;

/// How often a [`sometimes`](crate::sometimes) site was evaluated in a run, and how often its
/// condition held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SometimesStat {
    /// Times evaluated.
    pub evaluated: u64,
    /// Times the condition was true.
    pub hit: u64,
}

/// Every site a run evaluated, by name.
pub(crate) type SometimesTable = BTreeMap<&'static str, SometimesStat>;

/// Counts one evaluation of site `name`.
pub(crate) fn record(table: &mut SometimesTable, name: &'static str, condition: bool) {
    let stat = table.entry(name).or_default();
    stat.evaluated += 1;
    stat.hit += u64::from(condition);
}
