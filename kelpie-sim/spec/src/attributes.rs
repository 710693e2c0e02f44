//! The keys of `#[kelpie::dst_test(...)]`: the one table of names, value shapes and docs.
//!
//! `kelpie-macros` reads it for its parser and error messages; the runner's `KELPIE_HELP=1` text
//! and the README's table are derived from it too.

/// One key of the attribute.
#[derive(Debug, Clone, Copy)]
pub struct AttrKey {
    /// The key as written.
    pub name: &'static str,
    /// Whether it is a bare flag (`ignore`, or `ignore = true`).
    pub flag: bool,
    /// Its value's shape, as shown in help (`0..500 | [1, 7, 42]`).
    pub value: &'static str,
    /// What a compile error says belongs there.
    pub expected: &'static str,
    /// What it does, with its default.
    pub doc: &'static str,
}

/// Every key, in the order the docs list them.
pub const ATTRIBUTE_KEYS: &[AttrKey] = &[
    AttrKey {
        name: "seeds",
        flag: false,
        value: "0..500, 0..=9 or [1, 7, 42]",
        expected: "`seeds = 0..100`, `seeds = 0..=9` or `seeds = [1, 7, 42]`",
        doc: "the seeds to run; default 0..100",
    },
    AttrKey {
        name: "faults",
        flag: false,
        value: "[Fault(args), ...]",
        expected: "a list of faults, like `faults = [StorageWriteFail(0.01), NetworkDelay(0.1, 200)]`",
        doc: "faults to inject (see the fault table); default none",
    },
    AttrKey {
        name: "max_time",
        flag: false,
        value: "\"60s\"",
        expected: "a virtual-time budget, like `max_time = \"60s\"`",
        doc: "virtual-time budget of one seed; default 600s",
    },
    AttrKey {
        name: "wall_timeout",
        flag: false,
        value: "\"30s\"",
        expected: "a real-time limit per seed, like `wall_timeout = \"10s\"`",
        doc: "real-time limit of one seed; default 60s",
    },
    AttrKey {
        name: "fault_tick",
        flag: false,
        value: "\"10ms\"",
        expected: "the period of node, clock and partition faults, like `fault_tick = \"10ms\"`",
        doc: "period of node, clock and partition fault decisions; default 10ms",
    },
    AttrKey {
        name: "nodes",
        flag: false,
        value: "3",
        expected: "a number of nodes, like `nodes = 3`",
        doc: "nodes n1..nN created before the body runs; default none",
    },
    AttrKey {
        name: "ignore",
        flag: true,
        value: "flag",
        expected: "a bare `ignore` (or `ignore = true`)",
        doc: "run only with --ignored or --include-ignored",
    },
    AttrKey {
        name: "should_fail",
        flag: true,
        value: "flag",
        expected: "a bare `should_fail` (or `should_fail = true`)",
        doc: "each seed's trial passes only if that seed fails",
    },
    AttrKey {
        name: "check_determinism",
        flag: true,
        value: "flag",
        expected: "a bare `check_determinism` (or `check_determinism = true`)",
        doc: "run each seed twice and compare the event traces",
    },
    AttrKey {
        name: "canary",
        flag: true,
        value: "flag",
        expected: "a bare `canary` (or `canary = true`)",
        doc: "one trial over all seeds that passes iff some seed fails: proves a planted bug is found",
    },
    AttrKey {
        name: "swarm",
        flag: true,
        value: "flag",
        expected: "a bare `swarm` (or `swarm = true`)",
        doc: "each seed keeps a random subset of the faults at random intensities up to the declared ones",
    },
    AttrKey {
        name: "allow_unfired",
        flag: true,
        value: "flag",
        expected: "a bare `allow_unfired` (or `allow_unfired = true`)",
        doc: "do not fail the test when a declared fault never fires across its seeds",
    },
];
