//! What `#[kelpie::dst_test]` registers: one [`DstTest`] per annotated function, collected with
//! `inventory` from the test binary.

use std::future::Future;
use std::pin::Pin;

use kelpie_sim::FaultSpec;
use kelpie_sim::SimEnv;

/// The future a registered test body returns: `Ok(())` on success, the error's `Display` text
/// otherwise (a panic is caught separately).
pub type TestFuture = Pin<Box<dyn Future<Output = Result<(), String>> + 'static>>;

/// The seeds a test runs by default (`seeds = a..b` or `seeds = [1, 5, 9]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedSet {
    /// A half-open range `start..end`.
    Range {
        /// First seed.
        start: u64,
        /// One past the last seed.
        end: u64,
    },
    /// An explicit list of seeds.
    List(&'static [u64]),
}

impl SeedSet {
    /// The default seed range of `#[kelpie::dst_test]`: `0..100`.
    pub const DEFAULT: SeedSet = SeedSet::Range { start: 0, end: 100 };

    /// The seeds, in order.
    pub fn to_vec(self) -> Vec<u64> {
        match self {
            SeedSet::Range { start, end } => (start..end).collect(),
            SeedSet::List(list) => list.to_vec(),
        }
    }
}

/// Options of one registered test; every field has an attribute argument of the same name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestOptions {
    /// Virtual-time limit of one seed run, in milliseconds (`max_time = "60s"`); `None`: the
    /// [`SimConfig`](crate::SimConfig) default.
    pub max_time_ms: Option<u64>,
    /// Wall-clock watchdog of one seed run, in milliseconds (`wall_timeout = "30s"`).
    pub wall_timeout_ms: Option<u64>,
    /// Interval between fault ticks (node, clock and partition faults), in virtual ms.
    pub fault_tick_ms: Option<u64>,
    /// Number of nodes the environment creates before the body runs (`nodes = 3`).
    pub nodes: u32,
    /// Skipped unless `--ignored` or `--include-ignored` is given (`ignore`).
    pub ignore: bool,
    /// Each seed's trial passes only if that seed's run fails (`should_fail`), like libtest's
    /// `should_panic`.
    pub should_fail: bool,
    /// Run every seed twice and compare traces (`check_determinism`).
    pub check_determinism: bool,
    /// One trial over all seeds that passes iff some seed fails (`canary`): proves that a
    /// planted bug is found, and prints the first failing seed with its repro command.
    pub canary: bool,
    /// Swarm testing (`swarm`): each seed runs a random subset of the declared faults at
    /// random intensities up to the declared ones.
    pub swarm: bool,
    /// Don't fail the test when a declared fault never fired across its seeds
    /// (`allow_unfired`).
    pub allow_unfired: bool,
}

impl TestOptions {
    /// All defaults: no limits beyond the config defaults, no nodes, not ignored.
    pub const DEFAULT: TestOptions = TestOptions {
        max_time_ms: None,
        wall_timeout_ms: None,
        fault_tick_ms: None,
        nodes: 0,
        ignore: false,
        should_fail: false,
        check_determinism: false,
        canary: false,
        swarm: false,
        allow_unfired: false,
    };
}

/// One `#[kelpie::dst_test]` function, as registered by the macro.
#[derive(Debug)]
pub struct DstTest {
    /// The function's name.
    pub name: &'static str,
    /// `module_path!()` at the function.
    pub module_path: &'static str,
    /// `file!()` at the function.
    pub file: &'static str,
    /// `line!()` at the function.
    pub line: u32,
    /// Default seeds.
    pub seeds: SeedSet,
    /// The declared faults (a function, since a `static` cannot allocate).
    pub faults: fn() -> Vec<FaultSpec>,
    /// Options from the attribute.
    pub options: TestOptions,
    /// Runs the body for one seed.
    pub run: fn(SimEnv) -> TestFuture,
}

impl DstTest {
    /// The test's path without the crate name: `lease_dst::lease_is_unique`.
    pub fn path(&self) -> String {
        let module = match self.module_path.split_once("::") {
            Some((_crate, rest)) => rest,
            None => "",
        };
        if module.is_empty() {
            self.name.to_string()
        } else {
            format!("{module}::{}", self.name)
        }
    }
}

inventory::collect!(DstTest);

/// Every registered test, sorted by path.
pub fn registered() -> Vec<&'static DstTest> {
    let mut tests: Vec<&'static DstTest> = inventory::iter::<DstTest>.into_iter().collect();
    tests.sort_by_key(|t| t.path());
    tests
}

/// Converts what a test body returns into the runner's result.
pub trait IntoTestResult {
    /// `Ok(())` on success, the error's text otherwise.
    fn into_test_result(self) -> Result<(), String>;
}

impl IntoTestResult for () {
    fn into_test_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display> IntoTestResult for Result<(), E> {
    fn into_test_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}
