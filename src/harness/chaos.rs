//! Chaos tests: `#[kelpie::chaos_test]` functions, run on the wall clock and real tokio.
//!
//! A chaos test is the honest name for a test that cannot be deterministic: it talks to real
//! sockets or binaries, or exercises the system on real tokio. It lives in a `*_chaos.rs` file.
//! Each one is a single trial, `chaos::<module>::<test>`, run on a fresh OS thread with its own
//! tokio current-thread runtime (`enable_all`: timers, and I/O where the build has tokio's `net`).
//! It has no seeds, no fault plan and no trace hash; the runner never counts it among the
//! deterministic seeds, and its failure message says that it cannot be replayed.
//!
//! Why real tokio works in a `--cfg madsim` build: the workspace's `tokio` is tokio itself, not
//! madsim-tokio, so the cfg does not change it; madsim's overrides of the clock, randomness and
//! thread spawning apply only inside a simulation, and a chaos test runs outside any. The
//! chaos test of `tests/actors_chaos.rs` checks this on every run: real time passes, and an OS
//! thread starts.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;

use crate::harness::registry::TestFuture;
use crate::harness::report::Invocation;
use crate::harness::stream::Pending;

/// The future a chaos test's body returns (the same shape as a DST test's).
pub type ChaosFuture = TestFuture;

/// One `#[kelpie::chaos_test]` function, as registered by the attribute.
#[derive(Debug)]
pub struct ChaosTest {
    /// The function's name.
    pub name: &'static str,
    /// `module_path!()` at the function.
    pub module_path: &'static str,
    /// `file!()` at the function.
    pub file: &'static str,
    /// `line!()` at the function.
    pub line: u32,
    /// Wall-clock limit in milliseconds (`timeout = "30s"`); `None`: no limit.
    pub timeout_ms: Option<u64>,
    /// Run only with `--ignored` or `--include-ignored` (`ignore`).
    pub ignore: bool,
    /// Runs the body.
    pub run: fn() -> ChaosFuture,
}

impl ChaosTest {
    /// The test's path without the crate name: `actors_chaos::activation_on_real_tokio`.
    pub fn path(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_crate, module)) if !module.is_empty() => format!("{module}::{}", self.name),
            _ => self.name.to_string(),
        }
    }

    /// Its trial name: `chaos::` and its path.
    pub fn trial_name(&self) -> String {
        format!("chaos::{}", self.path())
    }
}

inventory::collect!(ChaosTest);

/// Every registered chaos test, sorted by path.
pub fn registered_chaos() -> Vec<&'static ChaosTest> {
    let mut tests: Vec<&'static ChaosTest> = inventory::iter::<ChaosTest>.into_iter().collect();
    tests.sort_by_key(|t| t.path());
    tests
}

/// One trial per registered chaos test.
pub(crate) fn chaos_trials(invocation: &Arc<Invocation>) -> Vec<Pending> {
    registered_chaos()
        .into_iter()
        .map(|test| {
            let invocation = invocation.clone();
            Pending::test(test.trial_name(), move || {
                run(test).map_err(|why| {
                    let reproduce = invocation.command(&[], &test.trial_name(), test.ignore);
                    Failed::from(failure_message(test, &why, &reproduce))
                })
            })
            .with_ignored_flag(test.ignore)
        })
        .collect()
}

/// The failure message: what failed, where the test is, and that it is not a seed.
fn failure_message(test: &ChaosTest, why: &str, reproduce: &str) -> String {
    format!(
        "{why}\n  chaos test {} ({}:{}), on the wall clock and real tokio: not deterministic, \
         no seed or trace to replay; a rerun may pass\n  rerun: {reproduce}",
        test.path(),
        test.file,
        test.line
    )
}

/// Runs one chaos test on a fresh thread with its own runtime; `Err` is why it failed.
fn run(test: &'static ChaosTest) -> Result<(), String> {
    let (done, outcome) = mpsc::channel();
    let started = Instant::now();
    std::thread::Builder::new()
        .name(format!("chaos::{}", test.name))
        .spawn(move || {
            let result = std::panic::catch_unwind(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot build the tokio runtime: {e}"))?;
                runtime.block_on((test.run)())
            })
            .unwrap_or_else(|panic| {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_string());
                Err(format!("panicked: {text}"))
            });
            let _ = done.send(result);
        })
        .map_err(|e| format!("cannot start the test's thread: {e}"))?;
    match test.timeout_ms {
        Some(ms) => match outcome.recv_timeout(Duration::from_millis(ms)) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "still running after its timeout of {ms} ms (wall clock); its thread is left \
                 behind"
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err("its thread ended without a result".to_string())
            }
        },
        None => outcome
            .recv()
            .unwrap_or_else(|_| Err("its thread ended without a result".to_string())),
    }
    .map_err(|why| format!("{why} (after {:.1?})", started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &'static str, run: fn() -> ChaosFuture, timeout_ms: Option<u64>) -> ChaosTest {
        ChaosTest {
            name,
            module_path: "my_crate::net_chaos",
            file: "tests/net_chaos.rs",
            line: 7,
            timeout_ms,
            ignore: false,
            run,
        }
    }

    #[test]
    fn trial_names_carry_the_chaos_prefix() {
        let test = sample("t", || Box::pin(async { Ok(()) }), None);
        assert_eq!(test.trial_name(), "chaos::net_chaos::t");
    }

    #[test]
    fn a_chaos_test_runs_on_real_time_and_reports_errors_panics_and_timeouts() {
        // Real tokio timers on the wall clock: 30 ms of sleep take at least 30 ms.
        let slept: &'static ChaosTest = Box::leak(Box::new(sample(
            "sleeps",
            || {
                Box::pin(async {
                    let start = Instant::now();
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    let took = start.elapsed();
                    if took >= Duration::from_millis(30) {
                        Ok(())
                    } else {
                        Err(format!("slept only {took:?}"))
                    }
                })
            },
            None,
        )));
        assert_eq!(run(slept), Ok(()));
        let failing: &'static ChaosTest = Box::leak(Box::new(sample(
            "fails",
            || Box::pin(async { Err("connection refused".to_string()) }),
            None,
        )));
        let why = run(failing).unwrap_err();
        assert!(why.starts_with("connection refused (after "), "{why}");
        let message = failure_message(
            failing,
            &why,
            "cargo test -- --exact chaos::net_chaos::fails",
        );
        assert!(
            message.contains("not deterministic, no seed or trace to replay"),
            "{message}"
        );
        let panics: &'static ChaosTest = Box::leak(Box::new(sample(
            "panics",
            || Box::pin(async { panic!("boom") }),
            None,
        )));
        assert!(run(panics).unwrap_err().starts_with("panicked: boom"));
        let slow: &'static ChaosTest = Box::leak(Box::new(sample(
            "slow",
            || {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(())
                })
            },
            Some(50),
        )));
        let why = run(slow).unwrap_err();
        assert!(
            why.starts_with("still running after its timeout of 50 ms"),
            "{why}"
        );
    }
}
