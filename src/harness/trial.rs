//! One trial per (test, seed): which seeds run, how one seed runs, and what its outcome means.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Failed, Trial};

use crate::harness::stream::{self, Pending};

use crate::harness::env::EnvConfig;
use crate::harness::registry::{DstTest, SeedSet};
use crate::harness::report::{failure_message, Invocation, RunFacts};
use crate::harness::running;
use crate::harness::session::Session;
use kelpie_sim::LogConfig;
use kelpie_sim::{swarm_plan, FaultSchedule};
use kelpie_sim::{Failure, SimError};
use kelpie_sim::{RunReport, SimConfig, SimEnv, Simulation};

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
    /// Swarm mode (the attribute or `KELPIE_SWARM=1`).
    pub(crate) swarm: bool,
    /// A replayed schedule (`KELPIE_FAULT_SCHEDULE`).
    pub(crate) schedule: Option<FaultSchedule>,
    /// Shrink a failing seed's schedule (on unless `KELPIE_SHRINK=0`).
    pub(crate) shrink: bool,
    /// A seed from the regression file, not from the test's range.
    pub(crate) regression: bool,
    /// What each seed captures from `tracing` (`KELPIE_LOG`, `KELPIE_LOG_LINES`, `--nocapture`).
    pub(crate) log: LogConfig,
}

/// The trial name of `seed` of `test`: `lease_dst::lease_is_unique::seed_3`.
pub(crate) fn trial_name(test: &DstTest, seed: u64) -> String {
    format!("{}::seed_{seed}", test.path())
}

/// The seeds of one test this run selects, in order and without repeats.
#[derive(Debug, Clone)]
enum Seeds {
    /// A test's `seeds = a..b`.
    Range(std::ops::Range<u64>),
    /// `KELPIE_SEEDS=a..=b` (or `KELPIE_SEED`, a range of one).
    Inclusive(std::ops::RangeInclusive<u64>),
    /// A test's `seeds = [..]`, repeats dropped.
    List(Vec<u64>),
}

impl Seeds {
    /// `KELPIE_SEED`, else `KELPIE_SEEDS`, else the test's own seeds.
    fn selected(test: &DstTest, env: &EnvConfig) -> Seeds {
        match (env.seed, &env.seeds) {
            (Some(seed), _) => Seeds::Inclusive(seed..=seed),
            (None, Some(range)) => Seeds::Inclusive(range.clone()),
            (None, None) => match test.seeds {
                SeedSet::Range { start, end } => Seeds::Range(start..end),
                SeedSet::List(list) => {
                    let mut seen = BTreeSet::new();
                    Seeds::List(list.iter().copied().filter(|s| seen.insert(*s)).collect())
                }
            },
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = u64> + Send + '_> {
        match self {
            Seeds::Range(r) => Box::new(r.clone()),
            Seeds::Inclusive(r) => Box::new(r.clone()),
            Seeds::List(l) => Box::new(l.iter().copied()),
        }
    }

    fn contains(&self, seed: u64) -> bool {
        match self {
            Seeds::Range(r) => r.contains(&seed),
            Seeds::Inclusive(r) => r.contains(&seed),
            Seeds::List(l) => l.contains(&seed),
        }
    }

    fn len(&self) -> usize {
        match self {
            Seeds::Range(r) => r.end.saturating_sub(r.start) as usize,
            Seeds::Inclusive(r) if r.is_empty() => 0,
            Seeds::Inclusive(r) => (r.end() - r.start()) as usize + 1,
            Seeds::List(l) => l.len(),
        }
    }
}

/// What the environment sets for every seed trial.
#[derive(Debug, Clone)]
struct Template {
    check_determinism: bool,
    swarm: bool,
    schedule: Option<FaultSchedule>,
    shrink: bool,
    log: LogConfig,
}

/// One trial of a [`SeedPlan`], before it is made.
#[derive(Debug, Clone, Copy)]
enum Key {
    /// The plan's `first[i]`.
    First(usize),
    /// Seed `seed` of the plan's `tests[i]`.
    Seed(usize, u64),
}

/// Every seed trial of one harness run, made one at a time: regression seeds first, then every
/// other selected seed of every test, in test order then seed order. The plan holds each test's
/// seed range, not its trials, so its size does not grow with the seed count.
///
/// Each (test, seed) runs once: a regression-file entry whose seed is in the test's range moves
/// that seed's trial to the front under its usual name (`<test>::seed_N`); an entry outside the
/// range is a trial of its own, `<test>::regression_seed_N`. With `KELPIE_SEED` (a
/// reproduction) the file is not replayed. An entry naming a test this harness does not
/// register is a warning.
#[derive(Debug)]
pub(crate) struct SeedPlan {
    /// The regression-file entries, run first.
    first: Vec<SeedTrial>,
    /// Every test that is not a canary (with `KELPIE_SEED`, every test), with the seeds this
    /// run selects.
    tests: Vec<(&'static DstTest, Seeds)>,
    /// Each of `tests`' path (`DstTest::path`), formatted once.
    paths: Vec<String>,
    /// `(test index, seed)` of the in-range seeds that `first` runs.
    moved: BTreeSet<(usize, u64)>,
    template: Template,
    /// Regression entries that cannot run.
    pub(crate) warnings: Vec<String>,
}

impl SeedPlan {
    /// The plan for `tests`, the regression-file `entries` and the environment.
    pub(crate) fn new(
        tests: &[&'static DstTest],
        entries: &[(String, u64)],
        env: &EnvConfig,
    ) -> SeedPlan {
        // `KELPIE_SEED` selects one seed of every test, canaries included (a canary's
        // `reproduce:` line names its failing seed's trial); otherwise a canary runs as one
        // trial over its seeds ([`canary_trials`]).
        let reproducing = env.seed.is_some();
        let tests_seeds: Vec<(&'static DstTest, Seeds)> = tests
            .iter()
            .filter(|t| reproducing || !t.options.canary)
            .map(|&t| (t, Seeds::selected(t, env)))
            .collect();
        let mut plan = SeedPlan {
            first: Vec::new(),
            paths: tests_seeds.iter().map(|(t, _)| t.path()).collect(),
            tests: tests_seeds,
            moved: BTreeSet::new(),
            template: Template {
                check_determinism: env.check_determinism,
                swarm: env.swarm,
                schedule: env.schedule.clone(),
                shrink: !env.no_shrink,
                log: log_config(env),
            },
            warnings: Vec::new(),
        };
        if env.seed.is_some() {
            return plan;
        }
        for (path, seed) in entries {
            let Some(&test) = tests.iter().find(|t| t.path() == *path) else {
                plan.warnings.push(format!(
                    "warning: regression entry `{path} {seed}`: no registered test is named \
                     `{path}` (renamed or removed?); the entry is skipped"
                ));
                continue;
            };
            if test.options.canary || test.options.should_fail {
                continue;
            }
            let index = plan.tests.iter().position(|(t, _)| std::ptr::eq(*t, test));
            if let Some(i) = index {
                if plan.tests[i].1.contains(*seed) && plan.moved.insert((i, *seed)) {
                    let mut trial = plan.make(Key::Seed(i, *seed));
                    trial.regression = true;
                    plan.first.push(trial);
                    continue;
                }
            }
            plan.first.push(SeedTrial {
                name: format!("{path}::regression_seed_{seed}"),
                test,
                seed: *seed,
                check: if test.options.check_determinism {
                    Check::Declared
                } else {
                    Check::Off
                },
                swarm: test.options.swarm || env.swarm,
                schedule: None,
                shrink: !env.no_shrink,
                regression: true,
                log: log_config(env),
            });
        }
        plan
    }

    fn keys(&self) -> impl Iterator<Item = Key> + Send + '_ {
        let first = (0..self.first.len()).map(Key::First);
        let rest = self
            .tests
            .iter()
            .enumerate()
            .flat_map(move |(i, (_, seeds))| {
                seeds
                    .iter()
                    .filter(move |s| self.moved.is_empty() || !self.moved.contains(&(i, *s)))
                    .map(move |s| Key::Seed(i, s))
            });
        first.chain(rest)
    }

    fn make(&self, key: Key) -> SeedTrial {
        match key {
            Key::First(i) => self.first[i].clone(),
            Key::Seed(i, seed) => {
                let test = self.tests[i].0;
                let t = &self.template;
                SeedTrial {
                    name: format!("{}::seed_{seed}", self.paths[i]),
                    test,
                    seed,
                    check: if test.options.check_determinism {
                        Check::Declared
                    } else if t.check_determinism {
                        Check::FromEnv
                    } else {
                        Check::Off
                    },
                    swarm: test.options.swarm || t.swarm,
                    schedule: t.schedule.clone(),
                    shrink: t.shrink,
                    regression: false,
                    log: t.log.clone(),
                }
            }
        }
    }

    /// Every trial, made one at a time.
    pub(crate) fn trials(&self) -> impl Iterator<Item = SeedTrial> + Send + '_ {
        self.keys().map(|k| self.make(k))
    }

    /// Every trial's name and ignored flag, as name-only libtest-mimic trials (for the
    /// command line's filter rules), without making the trials.
    pub(crate) fn probes(&self) -> impl Iterator<Item = Trial> + Send + '_ {
        self.keys().map(|k| {
            let (name, test) = match k {
                Key::First(i) => (self.first[i].name.clone(), self.first[i].test),
                Key::Seed(i, seed) => (format!("{}::seed_{seed}", self.paths[i]), self.tests[i].0),
            };
            stream::probe(name).with_ignored_flag(test.options.ignore)
        })
    }

    /// How many seed trials each test has (tests without any left out).
    pub(crate) fn per_test(&self) -> Vec<(&'static DstTest, usize)> {
        self.tests
            .iter()
            .map(|(test, seeds)| {
                let outside = self
                    .first
                    .iter()
                    .filter(|t| std::ptr::eq(t.test, *test) && !seeds.contains(t.seed))
                    .count();
                (*test, seeds.len() + outside)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Every (test, seed) to run, in test order then seed order (see [`SeedPlan`]).
#[cfg(test)]
pub(crate) fn seed_trials(tests: &[&'static DstTest], env: &EnvConfig) -> Vec<SeedTrial> {
    SeedPlan::new(tests, &[], env).trials().collect()
}

/// The log capture the environment asks for.
fn log_config(env: &EnvConfig) -> LogConfig {
    let default = LogConfig::info();
    LogConfig {
        filter: env.log_filter.clone().unwrap_or(default.filter),
        lines: env.log_lines.unwrap_or(default.lines),
        live: env.nocapture,
    }
}

/// A `canary` test: one trial over all its seeds that passes iff some seed fails.
#[derive(Debug, Clone)]
pub(crate) struct CanaryTrial {
    /// `<test path>::canary`.
    pub(crate) name: String,
    pub(crate) test: &'static DstTest,
    seeds: Seeds,
    swarm: bool,
    schedule: Option<FaultSchedule>,
    shrink: bool,
    log: LogConfig,
}

/// One trial per `canary` test.
pub(crate) fn canary_trials(tests: &[&'static DstTest], env: &EnvConfig) -> Vec<CanaryTrial> {
    tests
        .iter()
        .filter(|t| t.options.canary)
        .map(|&test| CanaryTrial {
            name: format!("{}::canary", test.path()),
            test,
            seeds: Seeds::selected(test, env),
            swarm: test.options.swarm || env.swarm,
            schedule: env.schedule.clone(),
            // Finding the bug is the canary's point; shrinking would only cost time.
            shrink: false,
            log: log_config(env),
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
        for (i, seed) in self.seeds.iter().enumerate() {
            let trial = SeedTrial {
                name: self.name.clone(),
                test: self.test,
                seed,
                check: Check::Off,
                swarm: self.swarm,
                schedule: self.schedule.clone(),
                shrink: self.shrink,
                regression: false,
                log: self.log.clone(),
            };
            let execution = trial.execute(invocation);
            match execution.verdict {
                Ok(()) => continue,
                Err(report) if execution.seed_failed => {
                    return Ok(format!(
                        "canary {}: the planted bug was found at seed {seed}, after {} of {} \
                         seeds\n{report}",
                        self.test.path(),
                        i + 1,
                        self.seeds.len()
                    ))
                }
                Err(config_error) => return Err(config_error),
            }
        }
        Err(format!(
            "canary not found: all {} seeds passed, so the checks did not catch the planted bug \
             (seeds {}..={})",
            self.seeds.len(),
            self.seeds.iter().next().unwrap_or(0),
            self.seeds.iter().last().unwrap_or(0)
        ))
    }

    /// The trial; on success it prints which seed found the bug.
    pub(crate) fn into_trial(self, invocation: Arc<Invocation>) -> Pending {
        let ignored = self.test.options.ignore;
        Pending::test(self.name.clone(), move || match self.run(&invocation) {
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
    Passed(RunFacts),
    Failed { failure: Failure, facts: RunFacts },
    Config(String),
}

fn facts_of<T>(report: RunReport<T>) -> RunFacts {
    RunFacts {
        faults: report.faults,
        virtual_time: report.virtual_time,
        trace: report.trace,
        sometimes: report.sometimes,
        log: report.log,
    }
}

/// What one trial run produced: its verdict and, if the seed ran, its facts (for coverage) and
/// whether the seed itself failed (for the regression file).
pub(crate) struct Execution {
    pub(crate) verdict: Result<(), String>,
    pub(crate) facts: Option<RunFacts>,
    /// The seed failed unexpectedly (not under `should_fail`): a regression to record.
    pub(crate) seed_failed: bool,
}

impl SeedTrial {
    /// The simulation this trial runs: the seed, the test's limits, its faults (resolved per
    /// seed in swarm mode) and the replayed schedule, if any.
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
        // Seeds run without a log subscriber (it would double their cost); a failing seed is
        // replayed with capture (see `execute`). `--nocapture` shows every seed's log live.
        if self.log.live {
            config.log = self.log.clone();
        }
        let declared = (self.test.faults)();
        let plan = if self.swarm {
            swarm_plan(self.seed, &declared)
        } else {
            declared
        };
        let sim = Simulation::new(config).with_faults(plan);
        match &self.schedule {
            Some(schedule) => sim.with_schedule(schedule.clone()),
            None => sim,
        }
    }

    /// The seed's wall-clock watchdog limit.
    fn wall_limit(&self) -> Duration {
        self.test
            .options
            .wall_timeout_ms
            .map_or_else(|| SimConfig::default().wall_timeout, Duration::from_millis)
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
            Ok(report) => match report.output.clone() {
                Ok(()) => RunOutcome::Passed(facts_of(report)),
                Err(message) => RunOutcome::Failed {
                    failure: Failure::Error { message },
                    facts: facts_of(report),
                },
            },
            Err(SimError::Failed(run)) => RunOutcome::Failed {
                failure: run.failure,
                facts: RunFacts {
                    faults: run.faults,
                    virtual_time: run.virtual_time,
                    trace: run.trace,
                    sometimes: run.sometimes,
                    log: run.log,
                },
            },
            // A rejected configuration (and any error kind a later kelpie-sim adds).
            Err(e) => RunOutcome::Config(e.to_string()),
        }
    }

    /// Runs the seed. `Err` is the trial's failure message.
    ///
    /// With `should_fail` the trial passes iff the run fails; a determinism violation or a
    /// rejected config fails it either way.
    #[cfg(test)]
    pub(crate) fn run(&self, invocation: &Invocation) -> Result<(), String> {
        self.execute(invocation).verdict
    }

    /// Runs the seed, shrinking its fault schedule if it failed.
    pub(crate) fn execute(&self, invocation: &Invocation) -> Execution {
        let sim = self.simulation();
        let plan: Vec<String> = sim.faults().iter().map(ToString::to_string).collect();
        let should_fail = self.test.options.should_fail;
        let first_started = std::time::Instant::now();
        let outcome = self.run_once(&sim);
        let first_run = first_started.elapsed();
        let original = match &outcome {
            RunOutcome::Failed { failure, .. } => Some(failure.clone()),
            _ => None,
        };
        let (headline, facts, nondeterministic) = match outcome {
            RunOutcome::Passed(facts) if !should_fail => {
                return Execution {
                    verdict: Ok(()),
                    facts: Some(facts),
                    seed_failed: false,
                }
            }
            RunOutcome::Passed(facts) => (
                "expected this seed to fail, but it passed".to_string(),
                Some(facts),
                false,
            ),
            RunOutcome::Failed { failure, facts } => {
                let nondeterministic = matches!(failure, Failure::Nondeterministic { .. });
                if should_fail && !nondeterministic {
                    // An expected failure: nothing to record as a regression.
                    return Execution {
                        verdict: Ok(()),
                        facts: Some(facts),
                        seed_failed: false,
                    };
                }
                (failure.to_string(), Some(facts), nondeterministic)
            }
            RunOutcome::Config(message) => (message, None, false),
        };
        let seed_failed = !should_fail && facts.is_some();
        let mut facts = facts;
        // A seed that hit the wall-clock watchdog is not replayed: it would hang as long again.
        let watchdog = matches!(original, Some(Failure::WallTimeout { .. }));
        let capture =
            seed_failed && !nondeterministic && !watchdog && !self.log.live && !self.log.is_off();
        let replay_note = match facts.as_mut() {
            Some(f) if capture => self.replay_for_log(&sim, f),
            _ => None,
        };
        let env = self.reproduce_env(nondeterministic);
        // Named by the seed alone (`<test>::seed_N`), which `KELPIE_SEED` always creates: a
        // regression trial's own name exists only where the regression file lists it.
        let repro_name = trial_name(self.test, self.seed);
        let reproduce = invocation.command(&env, &repro_name, self.test.options.ignore);
        let mut message = failure_message(&headline, self.seed, &plan, facts.as_ref(), &reproduce);
        if let Some(note) = replay_note {
            message.push('\n');
            message.push_str(&note);
        }
        // `shrink` declines a seed that hit the watchdog: each replay could hang as long again
        // (and leave another spinning thread behind).
        let shrinkable = seed_failed && !nondeterministic && self.shrink && self.schedule.is_none();
        if let (true, Some(f), Some(original)) = (shrinkable, &facts, &original) {
            if let Some(shrunk) = shrink(self, &sim, &f.faults, first_run, original) {
                let mut env = env.clone();
                env.push(format!("KELPIE_FAULT_SCHEDULE={}", shrunk.schedule));
                let cmd = invocation.command(&env, &repro_name, self.test.options.ignore);
                message.push_str(&format!(
                    "\n{}\nreproduce the shrunk schedule: {cmd}",
                    shrunk.describe(&plan)
                ));
            }
        }
        Execution {
            verdict: Err(message),
            facts,
            seed_failed,
        }
    }

    /// Replays a failing seed with log capture: deterministic, so the same failure, now with its
    /// log (moved into `facts`); a different trace means the test is not deterministic, which
    /// the returned note says.
    fn replay_for_log(&self, sim: &Simulation, facts: &mut RunFacts) -> Option<String> {
        let mut replay = sim.clone();
        replay.config_mut().log = self.log.clone();
        let (RunOutcome::Failed { facts: again, .. } | RunOutcome::Passed(again)) =
            self.run_once(&replay)
        else {
            return None;
        };
        if again.trace.hash == facts.trace.hash {
            facts.log = again.log;
            return None;
        }
        Some(format!(
            "warning: replaying this seed to capture its log gave another trace ({:#018x}, not \
             {:#018x}): the test is not deterministic",
            again.trace.hash, facts.trace.hash
        ))
    }

    /// The `VAR=value` assignments a reproduce line needs besides the seed's trial name.
    fn reproduce_env(&self, nondeterministic: bool) -> Vec<String> {
        let mut env = vec![format!("KELPIE_SEED={}", self.seed)];
        if self.swarm && !self.test.options.swarm {
            env.push("KELPIE_SWARM=1".to_string());
        }
        if let Some(schedule) = &self.schedule {
            env.push(format!("KELPIE_FAULT_SCHEDULE={schedule}"));
        }
        if nondeterministic && self.check == Check::FromEnv {
            env.push("KELPIE_CHECK_DETERMINISM=1".to_string());
        }
        env
    }

    /// The trial. With a session, the seed's fault and `sometimes!` coverage is recorded, and
    /// a failing seed is added to the regression file.
    pub(crate) fn into_trial(
        self,
        invocation: Arc<Invocation>,
        session: Option<Arc<Session>>,
    ) -> Pending {
        let ignored = self.test.options.ignore;
        Pending::test(self.name.clone(), move || {
            let started = std::time::Instant::now();
            let running = running::enter(&self.name, self.wall_limit());
            let execution = self.execute(&invocation);
            drop(running);
            if let Some(session) = &session {
                let virtual_time = execution
                    .facts
                    .as_ref()
                    .map_or(Duration::ZERO, |f| f.virtual_time);
                let failed = execution.verdict.is_err();
                session.finished(
                    self.test,
                    self.seed,
                    failed,
                    virtual_time,
                    started.elapsed(),
                );
                if let Some(facts) = &execution.facts {
                    session.record(self.test, &facts.faults, &facts.sometimes);
                    session.record_trace_hash(&self.name, facts.trace.hash);
                }
                // A canary's seed (run to reproduce it) fails by design: not a regression.
                let expected = self.test.options.canary;
                if execution.seed_failed && !self.regression && !expected && self.schedule.is_none()
                {
                    session.record_failure(self.test, self.seed);
                }
            }
            execution.verdict.map_err(Failed::from)
        })
        .with_ignored_flag(ignored)
    }
}

/// The smallest fault schedule found that still fails a seed.
struct Shrunk {
    schedule: FaultSchedule,
    original: usize,
    runs: usize,
}

impl Shrunk {
    fn describe(&self, plan: &[String]) -> String {
        let firings: Vec<String> = self
            .schedule
            .firings()
            .map(|(i, k)| format!("{} #{k}", plan.get(i).map_or("?", String::as_str)))
            .collect();
        let what = if firings.is_empty() {
            "no fault at all".to_string()
        } else {
            firings.join(", ")
        };
        format!(
            "shrunk fault schedule: {} of {} firings still fail ({} replays): {what}",
            self.schedule.len(),
            self.original,
            self.runs
        )
    }
}

/// Most replays one shrink may take, and its wall-clock budget.
const SHRINK_MAX_RUNS: usize = 200;
const SHRINK_BUDGET: Duration = Duration::from_secs(20);

/// Delta debugging (ddmin) over the firings of a failing seed: replays the seed allowing only
/// subsets of them, keeping any subset that still fails, until no single chunk can be removed
/// or the budget runs out. `None` if the seed fired no fault.
/// What must stay the same for a smaller schedule to count as "still failing": the kind of
/// failure and the first line of its message (a different failure is a different bug).
fn signature(failure: &Failure) -> (std::mem::Discriminant<Failure>, String) {
    let text = match failure {
        Failure::Panic { message } | Failure::Error { message } => message.clone(),
        _ => String::new(),
    };
    let first = text.lines().next().unwrap_or("");
    // A panic's location suffix stays; its position in the code is part of the bug.
    (std::mem::discriminant(failure), first.to_string())
}

fn shrink(
    trial: &SeedTrial,
    sim: &Simulation,
    stats: &kelpie_sim::FaultStats,
    first_run: Duration,
    original: &Failure,
) -> Option<Shrunk> {
    let target = signature(original);
    if matches!(
        original,
        Failure::WallTimeout { .. } | Failure::Nondeterministic { .. }
    ) {
        return None;
    }
    let all: Vec<(usize, u64)> = stats
        .faults
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (1..=s.fired).map(move |k| (i, k)))
        .collect();
    if all.is_empty() {
        return None;
    }
    let started = std::time::Instant::now();
    let runs = std::cell::Cell::new(0);
    // A replay may take somewhat longer than the original run, not the full watchdog budget.
    let mut bounded = sim.clone();
    let watchdog = (first_run * 4).max(Duration::from_secs(1));
    bounded.config_mut().wall_timeout = bounded.config().wall_timeout.min(watchdog);
    let fails = |subset: &[(usize, u64)]| -> bool {
        runs.set(runs.get() + 1);
        let replay = bounded
            .clone()
            .with_schedule(FaultSchedule::new(subset.iter().copied()));
        matches!(trial.run_once(&replay), RunOutcome::Failed { ref failure, .. }
            if signature(failure) == target)
    };
    let mut current = all.clone();
    if fails(&[]) {
        current.clear();
    }
    let mut n = 2;
    while current.len() >= 2 && runs.get() < SHRINK_MAX_RUNS && started.elapsed() < SHRINK_BUDGET {
        let chunk = current.len().div_ceil(n);
        let chunks: Vec<Vec<(usize, u64)>> = current.chunks(chunk).map(<[_]>::to_vec).collect();
        let mut reduced = false;
        for (c, part) in chunks.iter().enumerate() {
            if fails(part) {
                current = part.clone();
                n = 2;
                reduced = true;
                break;
            }
            let complement: Vec<(usize, u64)> = chunks
                .iter()
                .enumerate()
                .filter(|(o, _)| *o != c)
                .flat_map(|(_, p)| p.clone())
                .collect();
            if chunks.len() > 2 && fails(&complement) {
                current = complement;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if n >= current.len() {
                break;
            }
            n = (n * 2).min(current.len());
        }
    }
    if current.len() == 1 && fails(&[]) {
        current.clear();
    }
    Some(Shrunk {
        schedule: FaultSchedule::new(current),
        original: all.len(),
        runs: runs.get(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::harness::registry::{SeedSet, TestFuture, TestOptions};
    use crate::harness::report::Target;
    use kelpie_sim::{FaultKind, FaultSpec};

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
            assert!(env.seed().is_multiple_of(2), "odd seed {}", env.seed());
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

    /// Five faults declared; the bug needs two of them (a failed write *and* the custom fault
    /// `Flaky`) in the same seed.
    fn five_faults() -> Vec<FaultSpec> {
        vec![
            FaultSpec::new(FaultKind::StorageLatency, 0.3),
            FaultSpec::new(FaultKind::StorageWriteFail, 0.2),
            FaultSpec::new(FaultKind::DiskFull, 0.2),
            FaultSpec::custom("Flaky", 0.2),
            FaultSpec::new(FaultKind::StorageReadFail, 0.3),
        ]
    }

    fn needs_two_faults(env: SimEnv) -> TestFuture {
        Box::pin(async move {
            let (mut write_failed, mut flaky) = (false, false);
            for i in 0..20u8 {
                let s = env.storage();
                write_failed |=
                    matches!(s.set([i], [i]).await, Err(crate::StorageError::Io { .. }));
                let _ = s.get([i]).await;
                flaky |= env.fault("Flaky");
            }
            if write_failed && flaky {
                Err("a failed write and a flaky call in one run".to_string())
            } else {
                Ok(())
            }
        })
    }

    static TWO_FAULTS: DstTest = test(
        "two_faults",
        SeedSet::Range { start: 0, end: 40 },
        five_faults,
        TestOptions {
            swarm: true,
            ..TestOptions::DEFAULT
        },
        needs_two_faults,
    );

    fn schedule_in(message: &str) -> FaultSchedule {
        let line = message
            .lines()
            .find(|l| l.starts_with("reproduce the shrunk schedule: "))
            .expect("a shrunk repro line");
        let value = line.split("KELPIE_FAULT_SCHEDULE=").nth(1).unwrap();
        value.split_whitespace().next().unwrap().parse().unwrap()
    }

    #[test]
    fn swarm_finds_a_two_fault_bug_and_shrinking_keeps_just_those_two() {
        let trials = seed_trials(&[&TWO_FAULTS], &EnvConfig::default());
        let mut swarm_plans = BTreeSet::new();
        let failing = trials
            .iter()
            .find_map(|t| {
                swarm_plans.insert(t.simulation().faults().len());
                let e = t.execute(&invocation());
                e.verdict.err().map(|m| (t.seed, m))
            })
            .expect("swarm mode finds the bug within 40 seeds");
        assert!(swarm_plans.len() > 1, "swarm varies the plan per seed");
        let (seed, message) = failing;
        let schedule = schedule_in(&message);
        assert!(schedule.len() <= 2, "{message}");
        let plan = TWO_FAULTS.faults;
        let swarm = swarm_plan(seed, &plan());
        let kinds: BTreeSet<&str> = schedule.firings().map(|(i, _)| swarm[i].name()).collect();
        assert_eq!(
            kinds,
            BTreeSet::from(["StorageWriteFail", "Flaky"]),
            "{message}"
        );
        assert!(message.contains(&format!(
            "reproduce the shrunk schedule: KELPIE_SEED={seed} "
        )));
        // The shrunk repro reproduces: the same seed with only those firings still fails.
        let replay = EnvConfig {
            seed: Some(seed),
            schedule: Some(schedule),
            ..EnvConfig::default()
        };
        let again = only(&TWO_FAULTS, &replay).execute(&invocation());
        let err = again.verdict.expect_err("the shrunk schedule still fails");
        assert!(
            err.starts_with("returned an error: a failed write and a flaky call"),
            "{err}"
        );
        assert!(
            !err.contains("shrunk fault schedule"),
            "a replayed schedule is not shrunk again"
        );
        // And without any fault the seed passes.
        let none = EnvConfig {
            seed: Some(seed),
            schedule: Some(FaultSchedule::default()),
            ..EnvConfig::default()
        };
        assert!(only(&TWO_FAULTS, &none)
            .execute(&invocation())
            .verdict
            .is_ok());
    }

    #[test]
    fn regression_entries_run_once_first_and_unknown_tests_warn() {
        let entries = vec![
            ("lease_dst::writes".to_string(), 99),
            ("gone::test".to_string(), 1),
            ("lease_dst::odd_should_fail".to_string(), 3),
            ("lease_dst::writes".to_string(), 1),
        ];
        let env = EnvConfig {
            seeds: Some(0..=2),
            ..EnvConfig::default()
        };
        let planned = SeedPlan::new(&[&WRITES, &ODD_SHOULD_FAIL], &entries, &env);
        let trials: Vec<SeedTrial> = planned.trials().collect();
        assert_eq!(
            names(&trials),
            [
                "lease_dst::writes::regression_seed_99",
                // In the range: moved to the front under its usual name, not run twice.
                "lease_dst::writes::seed_1",
                "lease_dst::writes::seed_0",
                "lease_dst::writes::seed_2",
                "lease_dst::odd_should_fail::seed_0",
                "lease_dst::odd_should_fail::seed_1",
                "lease_dst::odd_should_fail::seed_2",
            ]
        );
        assert!(trials[0].regression && trials[1].regression);
        assert!(!trials[2].regression);
        // The probes name the same trials, in the same order, and the counts per test agree.
        let probes: Vec<String> = planned.probes().map(|p| p.name().to_string()).collect();
        assert_eq!(probes, names(&trials));
        assert_eq!(
            planned
                .per_test()
                .iter()
                .map(|(t, n)| (t.name, *n))
                .collect::<Vec<_>>(),
            [("writes", 4), ("odd_should_fail", 3)]
        );
        assert_eq!(planned.warnings.len(), 1);
        assert!(
            planned.warnings[0].contains("no registered test is named `gone::test`"),
            "{:?}",
            planned.warnings
        );
    }

    #[test]
    fn a_reproduction_runs_its_seed_alone_and_names_the_seed_trial() {
        let entries = vec![("lease_dst::writes".to_string(), 99)];
        let env = EnvConfig {
            seed: Some(99),
            ..EnvConfig::default()
        };
        let planned = SeedPlan::new(&[&WRITES], &entries, &env);
        let trials: Vec<SeedTrial> = planned.trials().collect();
        assert_eq!(names(&trials), ["lease_dst::writes::seed_99"]);
        // A regression trial's reproduce line names `seed_N`, which exists from the seed alone.
        let regression = SeedPlan::new(&[&WRITES], &entries, &EnvConfig::default());
        let first = regression.trials().next().unwrap();
        let message = first.run(&invocation()).unwrap_err();
        assert!(
            message.contains("KELPIE_SEED=99 cargo test")
                && message.contains("--exact lease_dst::writes::seed_99"),
            "{message}"
        );
    }
}
