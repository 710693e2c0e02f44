//! One trial per (test, seed): which seeds run, how one seed runs, and what its outcome means.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Failed, Trial};

use crate::error::{Failure, SimError};
use crate::runner::env::EnvConfig;
use crate::runner::registry::DstTest;
use crate::runner::report::{failure_message, Invocation, RunFacts};
use crate::sim::{RunReport, SimConfig, SimEnv, Simulation};

/// Whether a trial checks determinism, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// One run per seed.
    Off,
    /// The test declares `check_determinism`.
    Declared,
    /// Only `KELPIE_CHECK_DETERMINISM=1` asked for it.
    FromEnv,
}

/// One seed of one registered test.
#[derive(Debug, Clone)]
pub(crate) struct SeedTrial {
    /// `<test path>::seed_<N>`.
    pub(crate) name: String,
    pub(crate) test: &'static DstTest,
    pub(crate) seed: u64,
    pub(crate) check: Check,
}

/// The trial name of `seed` of `test`: `lease_dst::lease_is_unique::seed_3`.
pub(crate) fn trial_name(test: &DstTest, seed: u64) -> String {
    format!("{}::seed_{seed}", test.path())
}

/// Every (test, seed) to run, in test order then seed order. `KELPIE_SEED` selects one seed of
/// every test; otherwise `KELPIE_SEEDS` replaces every test's seeds.
pub(crate) fn seed_trials(tests: &[&'static DstTest], env: &EnvConfig) -> Vec<SeedTrial> {
    let mut trials = Vec::new();
    for &test in tests.iter().filter(|t| !t.options.canary) {
        let seeds = selected_seeds(test, env);
        let check = if test.options.check_determinism {
            Check::Declared
        } else if env.check_determinism {
            Check::FromEnv
        } else {
            Check::Off
        };
        let mut seen = BTreeSet::new();
        for seed in seeds.into_iter().filter(|s| seen.insert(*s)) {
            trials.push(SeedTrial {
                name: trial_name(test, seed),
                test,
                seed,
                check,
            });
        }
    }
    trials
}

/// The seeds of `test` this run selects: `KELPIE_SEED`, else `KELPIE_SEEDS`, else the test's.
fn selected_seeds(test: &DstTest, env: &EnvConfig) -> Vec<u64> {
    match (env.seed, &env.seeds) {
        (Some(seed), _) => vec![seed],
        (None, Some(range)) => range.clone().collect(),
        (None, None) => test.seeds.to_vec(),
    }
}

/// A `canary` test: one trial over all its seeds that passes iff some seed fails.
#[derive(Debug, Clone)]
pub(crate) struct CanaryTrial {
    /// `<test path>::canary`.
    pub(crate) name: String,
    pub(crate) test: &'static DstTest,
    pub(crate) seeds: Vec<u64>,
}

/// One trial per `canary` test.
pub(crate) fn canary_trials(tests: &[&'static DstTest], env: &EnvConfig) -> Vec<CanaryTrial> {
    tests
        .iter()
        .filter(|t| t.options.canary)
        .map(|&test| CanaryTrial {
            name: format!("{}::canary", test.path()),
            test,
            seeds: selected_seeds(test, env),
        })
        .collect()
}

impl CanaryTrial {
    /// Runs seeds in order until one fails. `Ok` carries the report of the seed that found the
    /// bug (printed by the trial, since a passing trial's message is not shown otherwise);
    /// `Err` says the planted bug was not found.
    pub(crate) fn run(&self, invocation: &Invocation) -> Result<String, String> {
        if self.test.options.should_fail {
            return Err(
                "`canary` and `should_fail` contradict each other: a canary passes when \
                        some seed fails"
                    .to_string(),
            );
        }
        for (i, &seed) in self.seeds.iter().enumerate() {
            let trial = SeedTrial {
                name: self.name.clone(),
                test: self.test,
                seed,
                check: Check::Off,
            };
            let sim = trial.simulation();
            let plan: Vec<String> = sim.faults().iter().map(ToString::to_string).collect();
            let (headline, facts) = match trial.run_once(&sim) {
                RunOutcome::Passed(_) => continue,
                RunOutcome::Failed { failure, facts } => (failure.to_string(), Some(facts)),
                RunOutcome::Config(message) => return Err(message),
            };
            let env = [format!("KELPIE_SEED={seed}")];
            let reproduce = invocation.command(&env, &self.name, self.test.options.ignore);
            let report = failure_message(&headline, seed, &plan, facts.as_ref(), &reproduce);
            return Ok(format!(
                "canary {}: the planted bug was found at seed {seed}, after {} of {} seeds\n{report}",
                self.test.path(),
                i + 1,
                self.seeds.len()
            ));
        }
        Err(format!(
            "canary not found: all {} seeds passed, so the checks did not catch the planted bug \
             (seeds {}..={})",
            self.seeds.len(),
            self.seeds.first().copied().unwrap_or(0),
            self.seeds.last().copied().unwrap_or(0)
        ))
    }

    /// The libtest-mimic trial; on success it prints which seed found the bug.
    pub(crate) fn into_trial(self, invocation: Arc<Invocation>) -> Trial {
        let ignored = self.test.options.ignore;
        Trial::test(self.name.clone(), move || match self.run(&invocation) {
            Ok(found) => {
                println!("{found}");
                Ok(())
            }
            Err(message) => Err(Failed::from(message)),
        })
        .with_ignored_flag(ignored)
    }
}

/// How a seed's run ended, before `should_fail` is applied.
enum RunOutcome {
    Passed(RunReport<Result<(), String>>),
    Failed { failure: Failure, facts: RunFacts },
    Config(String),
}

impl SeedTrial {
    /// The simulation this trial runs: the seed, the test's limits and its faults.
    pub(crate) fn simulation(&self) -> Simulation {
        let options = &self.test.options;
        let mut config = SimConfig::with_seed(self.seed);
        if let Some(ms) = options.max_time_ms {
            config.max_time = Duration::from_millis(ms);
        }
        if let Some(ms) = options.wall_timeout_ms {
            config.wall_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = options.fault_tick_ms {
            config.fault_tick = Duration::from_millis(ms);
        }
        Simulation::new(config).with_faults((self.test.faults)())
    }

    fn run_once(&self, sim: &Simulation) -> RunOutcome {
        let run = self.test.run;
        let nodes = self.test.options.nodes;
        // Nodes `n1`..`nN` (their `NodeId`s print the same), created before the body runs.
        let body = move |env: SimEnv| {
            for i in 1..=nodes {
                env.create_node(format!("n{i}")).build();
            }
            run(env)
        };
        let result = match self.check {
            Check::Off => sim.run(body),
            Check::Declared | Check::FromEnv => sim.check_determinism(body),
        };
        match result {
            Ok(report) => match &report.output {
                Ok(()) => RunOutcome::Passed(report),
                Err(message) => RunOutcome::Failed {
                    failure: Failure::Error {
                        message: message.clone(),
                    },
                    facts: RunFacts {
                        faults: report.faults,
                        virtual_time: report.virtual_time,
                        trace: report.trace,
                    },
                },
            },
            Err(SimError::Failed(run)) => RunOutcome::Failed {
                failure: run.failure,
                facts: RunFacts {
                    faults: run.faults,
                    virtual_time: run.virtual_time,
                    trace: run.trace,
                },
            },
            Err(e @ SimError::Config(_)) => RunOutcome::Config(e.to_string()),
        }
    }

    /// Runs the seed. `Err` is the trial's failure message.
    ///
    /// With `should_fail` the trial passes iff the run fails; a determinism violation or a
    /// rejected config fails it either way.
    pub(crate) fn run(&self, invocation: &Invocation) -> Result<(), String> {
        let sim = self.simulation();
        let plan: Vec<String> = sim.faults().iter().map(ToString::to_string).collect();
        let should_fail = self.test.options.should_fail;
        let (headline, facts, nondeterministic) = match self.run_once(&sim) {
            RunOutcome::Passed(_) if !should_fail => return Ok(()),
            RunOutcome::Passed(report) => (
                "expected this seed to fail, but it passed".to_string(),
                Some(RunFacts {
                    faults: report.faults,
                    virtual_time: report.virtual_time,
                    trace: report.trace,
                }),
                false,
            ),
            RunOutcome::Failed { failure, facts } => {
                let nondeterministic = matches!(failure, Failure::Nondeterministic { .. });
                if should_fail && !nondeterministic {
                    return Ok(());
                }
                (failure.to_string(), Some(facts), nondeterministic)
            }
            RunOutcome::Config(message) => (message, None, false),
        };
        let mut env = vec![format!("KELPIE_SEED={}", self.seed)];
        if nondeterministic && self.check == Check::FromEnv {
            env.push("KELPIE_CHECK_DETERMINISM=1".to_string());
        }
        let reproduce = invocation.command(&env, &self.name, self.test.options.ignore);
        Err(failure_message(
            &headline,
            self.seed,
            &plan,
            facts.as_ref(),
            &reproduce,
        ))
    }

    /// The libtest-mimic trial.
    pub(crate) fn into_trial(self, invocation: Arc<Invocation>) -> Trial {
        let ignored = self.test.options.ignore;
        Trial::test(self.name.clone(), move || {
            self.run(&invocation).map_err(Failed::from)
        })
        .with_ignored_flag(ignored)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::fault::{FaultKind, FaultSpec};
    use crate::runner::registry::{SeedSet, TestFuture, TestOptions};
    use crate::runner::report::Target;

    fn no_faults() -> Vec<FaultSpec> {
        Vec::new()
    }

    fn write_fault() -> Vec<FaultSpec> {
        vec![FaultSpec::new(FaultKind::StorageWriteFail, 1.0)]
    }

    fn bad_fault() -> Vec<FaultSpec> {
        vec![FaultSpec::new(FaultKind::StorageWriteFail, 1.5)]
    }

    /// Panics for odd seeds, after tracing something.
    fn odd_panics(env: SimEnv) -> TestFuture {
        Box::pin(async move {
            env.trace(format!("seed {}", env.seed()));
            env.sleep(Duration::from_millis(5)).await;
            assert!(env.seed() % 2 == 0, "odd seed {}", env.seed());
            Ok(())
        })
    }

    /// Writes once; returns the write's error.
    fn writes(env: SimEnv) -> TestFuture {
        Box::pin(async move {
            env.storage()
                .set(b"k", b"v")
                .await
                .map_err(|e| e.to_string())
        })
    }

    /// Checks the nodes the runner created.
    fn counts_nodes(env: SimEnv) -> TestFuture {
        Box::pin(async move {
            let names: Vec<String> = env
                .nodes()
                .into_iter()
                .map(|n| env.on(n).node_name())
                .collect();
            if names == ["n1", "n2", "n3"] {
                Ok(())
            } else {
                Err(format!("nodes: {names:?}"))
            }
        })
    }

    static COUNTER: AtomicU64 = AtomicU64::new(0);

    /// Traces a different label every run.
    fn nondeterministic(env: SimEnv) -> TestFuture {
        Box::pin(async move {
            env.trace(format!("run {}", COUNTER.fetch_add(1, Ordering::Relaxed)));
            Ok(())
        })
    }

    const fn test(
        name: &'static str,
        seeds: SeedSet,
        faults: fn() -> Vec<FaultSpec>,
        options: TestOptions,
        run: fn(SimEnv) -> TestFuture,
    ) -> DstTest {
        DstTest {
            name,
            module_path: "kelpie::lease_dst",
            file: "tests/lease_dst.rs",
            line: 1,
            seeds,
            faults,
            options,
            run,
        }
    }

    static ODD: DstTest = test(
        "odd_panics",
        SeedSet::Range { start: 0, end: 4 },
        no_faults,
        TestOptions::DEFAULT,
        odd_panics,
    );
    static ODD_SHOULD_FAIL: DstTest = test(
        "odd_should_fail",
        SeedSet::List(&[1, 2, 1]),
        no_faults,
        TestOptions {
            should_fail: true,
            ignore: true,
            ..TestOptions::DEFAULT
        },
        odd_panics,
    );
    static WRITES: DstTest = test(
        "writes",
        SeedSet::List(&[7]),
        write_fault,
        TestOptions::DEFAULT,
        writes,
    );
    static BAD_CONFIG: DstTest = test(
        "bad_config",
        SeedSet::List(&[0]),
        bad_fault,
        TestOptions::DEFAULT,
        writes,
    );
    static NODES: DstTest = test(
        "nodes",
        SeedSet::List(&[0]),
        no_faults,
        TestOptions {
            nodes: 3,
            ..TestOptions::DEFAULT
        },
        counts_nodes,
    );
    static NONDET: DstTest = test(
        "nondet",
        SeedSet::List(&[5]),
        no_faults,
        TestOptions::DEFAULT,
        nondeterministic,
    );
    static NONDET_DECLARED: DstTest = test(
        "nondet_declared",
        SeedSet::List(&[5]),
        no_faults,
        TestOptions {
            check_determinism: true,
            ..TestOptions::DEFAULT
        },
        nondeterministic,
    );

    fn invocation() -> Invocation {
        Invocation {
            package: Some("kelpie".into()),
            target: Some(Target::Test("dst_harness".into())),
        }
    }

    fn names(trials: &[SeedTrial]) -> Vec<&str> {
        trials.iter().map(|t| t.name.as_str()).collect()
    }

    fn only(test: &'static DstTest, env: &EnvConfig) -> SeedTrial {
        let mut trials = seed_trials(&[test], env);
        assert_eq!(trials.len(), 1);
        trials.remove(0)
    }

    #[test]
    fn one_trial_per_test_and_seed() {
        let trials = seed_trials(&[&ODD, &ODD_SHOULD_FAIL], &EnvConfig::default());
        assert_eq!(
            names(&trials),
            [
                "lease_dst::odd_panics::seed_0",
                "lease_dst::odd_panics::seed_1",
                "lease_dst::odd_panics::seed_2",
                "lease_dst::odd_panics::seed_3",
                "lease_dst::odd_should_fail::seed_1",
                "lease_dst::odd_should_fail::seed_2",
            ]
        );
    }

    #[test]
    fn env_overrides_seeds() {
        let seed = EnvConfig {
            seed: Some(42),
            seeds: Some(0..=9),
            ..EnvConfig::default()
        };
        let trials = seed_trials(&[&ODD, &WRITES], &seed);
        assert_eq!(
            names(&trials),
            [
                "lease_dst::odd_panics::seed_42",
                "lease_dst::writes::seed_42"
            ]
        );
        assert_eq!(trials[0].seed, 42);
        let range = EnvConfig {
            seeds: Some(10..=11),
            ..EnvConfig::default()
        };
        assert_eq!(
            names(&seed_trials(&[&WRITES], &range)),
            ["lease_dst::writes::seed_10", "lease_dst::writes::seed_11"]
        );
    }

    #[test]
    fn check_determinism_source() {
        let on = EnvConfig {
            check_determinism: true,
            ..EnvConfig::default()
        };
        assert_eq!(only(&WRITES, &EnvConfig::default()).check, Check::Off);
        assert_eq!(only(&WRITES, &on).check, Check::FromEnv);
        assert_eq!(
            only(&NONDET_DECLARED, &EnvConfig::default()).check,
            Check::Declared
        );
        assert_eq!(only(&NONDET_DECLARED, &on).check, Check::Declared);
    }

    #[test]
    fn even_seeds_pass_odd_seeds_fail_with_the_facts() {
        let trials = seed_trials(&[&ODD], &EnvConfig::default());
        assert_eq!(trials[0].run(&invocation()), Ok(()));
        let msg = trials[3].run(&invocation()).unwrap_err();
        let lines: Vec<&str> = msg.lines().collect();
        assert!(lines[0].starts_with("panicked: odd seed 3 (at "), "{msg}");
        assert!(lines.contains(&"seed: 3"), "{msg}");
        assert!(lines.contains(&"fault plan: []"), "{msg}");
        assert!(
            lines.contains(&"faults fired: (no faults declared)"),
            "{msg}"
        );
        // madsim's timers add a few microseconds.
        assert!(
            lines.iter().any(|l| l.starts_with("virtual time: 5.")),
            "{msg}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("trace: hash 0x") && l.ends_with(" events")),
            "{msg}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("    [") && l.ends_with("main user: seed 3")),
            "{msg}"
        );
        assert_eq!(
            lines.last(),
            Some(&"reproduce: KELPIE_SEED=3 cargo test -p kelpie --test dst_harness -- --exact lease_dst::odd_panics::seed_3")
        );
    }

    #[test]
    fn a_returned_error_fails_with_plan_and_fired_faults() {
        let msg = only(&WRITES, &EnvConfig::default())
            .run(&invocation())
            .unwrap_err();
        let lines: Vec<&str> = msg.lines().collect();
        assert!(lines[0].starts_with("returned an error: "), "{msg}");
        assert!(lines.contains(&"seed: 7"), "{msg}");
        assert!(
            lines.contains(&"fault plan: [StorageWriteFail(1)]"),
            "{msg}"
        );
        assert!(
            lines.contains(&"faults fired: StorageWriteFail(1) fired 1/1"),
            "{msg}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("FAULT StorageWriteFail on set")),
            "{msg}"
        );
        assert!(
            msg.contains("\nreproduce: KELPIE_SEED=7 cargo test "),
            "{msg}"
        );
    }

    #[test]
    fn should_fail_inverts_and_ignored_tests_reproduce_with_include_ignored() {
        let trials = seed_trials(&[&ODD_SHOULD_FAIL], &EnvConfig::default());
        assert_eq!(trials[0].run(&invocation()), Ok(()));
        let msg = trials[1].run(&invocation()).unwrap_err();
        assert!(
            msg.starts_with("expected this seed to fail, but it passed\nseed: 2\n"),
            "{msg}"
        );
        assert!(msg.contains("\nlast 2 trace events:\n"), "{msg}");
        assert!(
            msg.ends_with(
                "reproduce: KELPIE_SEED=2 cargo test -p kelpie --test dst_harness -- --include-ignored \
                 --exact lease_dst::odd_should_fail::seed_2"
            ),
            "{msg}"
        );
    }

    #[test]
    fn a_rejected_config_fails_clearly() {
        let msg = only(&BAD_CONFIG, &EnvConfig::default())
            .run(&invocation())
            .unwrap_err();
        assert_eq!(
            msg,
            "invalid simulation config: fault `StorageWriteFail`: probability 1.5 is outside 0.0..=1.0\n\
             seed: 0\n\
             fault plan: [StorageWriteFail(1.5)]\n\
             reproduce: KELPIE_SEED=0 cargo test -p kelpie --test dst_harness -- --exact lease_dst::bad_config::seed_0"
        );
    }

    #[test]
    fn nodes_are_created_before_the_body() {
        assert_eq!(
            only(&NODES, &EnvConfig::default()).run(&invocation()),
            Ok(())
        );
    }

    #[test]
    fn determinism_failures_say_how_they_were_enabled() {
        assert_eq!(
            only(&NONDET, &EnvConfig::default()).run(&invocation()),
            Ok(())
        );
        let on = EnvConfig {
            check_determinism: true,
            ..EnvConfig::default()
        };
        let msg = only(&NONDET, &on).run(&invocation()).unwrap_err();
        assert!(
            msg.starts_with("not deterministic: the two runs diverge at event #0:"),
            "{msg}"
        );
        assert!(
            msg.ends_with(
                "reproduce: KELPIE_SEED=5 KELPIE_CHECK_DETERMINISM=1 cargo test -p kelpie --test \
                 dst_harness -- --exact lease_dst::nondet::seed_5"
            ),
            "{msg}"
        );
        let msg = only(&NONDET_DECLARED, &EnvConfig::default())
            .run(&invocation())
            .unwrap_err();
        assert!(msg.starts_with("not deterministic: "), "{msg}");
        assert!(msg.ends_with("reproduce: KELPIE_SEED=5 cargo test -p kelpie --test dst_harness -- --exact lease_dst::nondet_declared::seed_5"), "{msg}");
    }
}
