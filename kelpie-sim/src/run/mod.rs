//! Running a simulation: [`Simulation`] (config plus declared faults), one seed per fresh OS
//! thread with a wall-clock watchdog, and the determinism check.
//!
//! - `seed.rs`: what runs on the seed thread (runtime, world, body, report, teardown);
//! - `seed_thread.rs`: the thread itself, joined with a deadline (with `os_random.rs`, the crate's only `unsafe`);
//! - `panic.rs`: capturing panics on seed threads;
//! - `report.rs`: [`RunReport`] and the facts of a failed run.

mod panic;
mod report;
mod seed;
#[allow(unsafe_code)]
mod seed_thread;

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::config::SimConfig;
use crate::env::SimEnv;
use crate::error::{ConfigError, FailedRun, Failure, SimError};
use crate::fault::{FaultSchedule, FaultSpec, MAX_FAULTS};
use crate::sync::lock;
use crate::trace::{first_divergence, TraceEvent, TraceMode, TraceSummary};

pub use report::RunReport;

use seed::{Handover, Outcome, SeedRun};
use seed_thread::SeedThread;

/// How long the watchdog waits for a flagged seed thread to unwind.
const WATCHDOG_GRACE: Duration = Duration::from_secs(1);

/// One simulation: a config plus declared faults, run on madsim with a fresh OS thread per run.
///
/// ```
/// use kelpie_sim::{FaultKind, FaultSpec, SimConfig, Simulation};
/// use std::time::Duration;
///
/// let sim = Simulation::new(SimConfig::with_seed(7))
///     .with_fault(FaultSpec::new(FaultKind::StorageWriteFail, 0.5));
/// let report = sim
///     .run(|env| async move {
///         env.sleep(Duration::from_secs(1)).await;
///         env.storage().set(b"k", b"v").await.is_ok()
///     })
///     .unwrap();
/// assert!(report.virtual_time >= Duration::from_secs(1));
/// // Same seed, same trace.
/// let again = sim.run(|env| async move {
///     env.sleep(Duration::from_secs(1)).await;
///     env.storage().set(b"k", b"v").await.is_ok()
/// }).unwrap();
/// assert_eq!(report.trace.hash, again.trace.hash);
/// assert_eq!(report.output, again.output);
/// ```
#[derive(Debug, Clone)]
pub struct Simulation {
    config: SimConfig,
    faults: Vec<FaultSpec>,
    schedule: Option<FaultSchedule>,
}

impl Simulation {
    /// A simulation with `config` and no faults.
    pub fn new(config: SimConfig) -> Self {
        Simulation {
            config,
            faults: Vec::new(),
            schedule: None,
        }
    }

    /// Declares a fault.
    pub fn with_fault(mut self, fault: FaultSpec) -> Self {
        self.faults.push(fault);
        self
    }

    /// Declares several faults.
    pub fn with_faults(mut self, faults: impl IntoIterator<Item = FaultSpec>) -> Self {
        self.faults.extend(faults);
        self
    }

    /// Replays only the fault firings `schedule` allows (see [`FaultSchedule`]).
    pub fn with_schedule(mut self, schedule: FaultSchedule) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// The fault schedule, if one restricts the firings.
    pub fn schedule(&self) -> Option<&FaultSchedule> {
        self.schedule.as_ref()
    }

    /// The config.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Mutable access to the config.
    pub fn config_mut(&mut self) -> &mut SimConfig {
        &mut self.config
    }

    /// The declared faults.
    pub fn faults(&self) -> &[FaultSpec] {
        &self.faults
    }

    /// Checks the config and every fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.config.validate()?;
        if self.faults.len() > MAX_FAULTS {
            return Err(ConfigError::TooManyFaults {
                count: self.faults.len(),
                max: MAX_FAULTS,
            });
        }
        self.faults.iter().try_for_each(FaultSpec::validate)
    }

    /// Runs `body` for this config's seed on a fresh OS thread (each seed needs one: madsim
    /// seeds std's hash keys per thread) and a fresh madsim runtime. Panics, deadlocks, the
    /// virtual-time limit and the wall-clock watchdog become [`SimError::Failed`] with the
    /// facts of the run.
    pub fn run<F, Fut, T>(&self, body: F) -> Result<RunReport<T>, SimError>
    where
        F: FnOnce(SimEnv) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        self.validate()?;
        panic::install_hook();
        let wall_start = Instant::now();
        let handover = Arc::new(Handover::new());
        let seed_run = SeedRun {
            config: self.config.clone(),
            plan: self.faults.clone(),
            schedule: self.schedule.clone(),
        };
        let theirs = handover.clone();
        let mut thread = SeedThread::spawn(move || seed_run.execute(body, &theirs))
            .expect("failed to spawn a seed thread");
        let exited = thread.join_timeout(self.config.wall_timeout);
        let outcome = lock(&handover.outcome).take();
        let result = match outcome {
            Some(Outcome::Done(result)) => result,
            Some(Outcome::Unstarted(failure)) => Err(self.unstarted(*failure)),
            None if exited => Err(self.unstarted(Failure::Panic {
                message: "the seed thread died before reporting".to_string(),
            })),
            None => Err(self.watchdog(&handover, &mut thread)),
        };
        match result {
            Ok(mut report) => {
                report.wall_time = wall_start.elapsed();
                Ok(report)
            }
            Err(run) => Err(SimError::Failed(run)),
        }
    }

    /// The report of a seed thread that is stuck: flag it (our APIs panic once it calls
    /// them, which unwinds it) and give it a moment to unwind; a thread that never calls us
    /// again cannot be killed and is left behind. Reports what the world recorded so far.
    fn watchdog<T>(&self, handover: &Handover<T>, thread: &mut SeedThread) -> Box<FailedRun> {
        let failure = Failure::WallTimeout {
            limit: self.config.wall_timeout,
        };
        let world = lock(&handover.world).as_ref().and_then(Weak::upgrade);
        let Some(world) = world else {
            return self.unstarted(failure);
        };
        world.abort();
        let unwound = thread.join_timeout(WATCHDOG_GRACE);
        let facts = world.facts_so_far(unwound);
        Box::new(report::failed(
            self.config.seed,
            self.plan(),
            failure,
            facts,
            Vec::new(),
        ))
    }

    /// The report of a run whose world never existed (or is gone).
    fn unstarted(&self, failure: Failure) -> Box<FailedRun> {
        Box::new(report::failed(
            self.config.seed,
            self.plan(),
            failure,
            None,
            Vec::new(),
        ))
    }

    /// The declared faults in attribute syntax.
    fn plan(&self) -> Vec<String> {
        self.faults.iter().map(ToString::to_string).collect()
    }

    /// Runs `body` twice for this seed, keeping every trace event, and compares the traces. On a
    /// mismatch the error names the first divergent event of each run. Returns the first run's
    /// result otherwise.
    pub fn check_determinism<F, Fut, T>(&self, body: F) -> Result<RunReport<T>, SimError>
    where
        F: Fn(SimEnv) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let mut sim = self.clone();
        sim.config.trace = TraceMode::Full;
        let first = sim.run(body.clone());
        let second = sim.run(body);
        fn trace<T>(r: &Result<RunReport<T>, SimError>) -> Option<&TraceSummary> {
            match r {
                Ok(rep) => Some(&rep.trace),
                Err(SimError::Failed(f)) => Some(&f.trace),
                Err(SimError::Config(_)) => None,
            }
        }
        let (Some(a), Some(b)) = (trace(&first), trace(&second)) else {
            return first;
        };
        let same_outcome = first.is_ok() == second.is_ok();
        if a.hash == b.hash && same_outcome {
            return first;
        }
        let ea = a.full.as_deref().unwrap_or_default();
        let eb = b.full.as_deref().unwrap_or_default();
        let index = first_divergence(ea, eb).unwrap_or(ea.len());
        let show =
            |e: Option<&TraceEvent>| e.map_or("<end of trace>".to_string(), ToString::to_string);
        let failure = Failure::Nondeterministic {
            index: index as u64,
            first: show(ea.get(index)),
            second: show(eb.get(index)),
        };
        let base = match first {
            Ok(rep) => FailedRun {
                seed: rep.seed,
                failure,
                virtual_time: rep.virtual_time,
                plan: self.faults.iter().map(ToString::to_string).collect(),
                faults: rep.faults,
                sometimes: rep.sometimes,
                log: rep.log,
                trace: TraceSummary {
                    full: None,
                    ..rep.trace
                },
            },
            Err(SimError::Failed(mut f)) => {
                f.failure = failure;
                f.trace.full = None;
                *f
            }
            Err(e) => return Err(e),
        };
        Err(SimError::Failed(Box::new(base)))
    }
}
