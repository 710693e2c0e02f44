//! One seed's run, on its own thread: the madsim runtime, the world, the body, what the
//! failure was, the report, and the teardown that frees the run's tasks and world.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::config::SimConfig;
use crate::env::SimEnv;
use crate::error::{FailedRun, Failure};
use crate::fault::{FaultSchedule, FaultSpec};
use crate::ids::NodeId;
use crate::sync::lock;
use crate::world::{current_elapsed, World};

use super::panic::{self, CatchUnwind};
use super::report::{self, RunReport};

const DEADLOCK_PANIC: &str = "no events, all tasks will block forever";
const TIME_LIMIT_PANIC: &str = "time limit exceeded";

/// What a seed thread hands its caller: the world while it runs (for the watchdog; weak, so
/// that the world is dropped on the seed thread, where freeing is cheaper) and the outcome,
/// left before the thread exits (the caller reads it once the thread is joined, so it wakes
/// once per run; see `seed_thread`).
pub(super) struct Handover<T> {
    pub(super) world: Mutex<Option<Weak<World>>>,
    pub(super) outcome: Mutex<Option<Outcome<T>>>,
}

impl<T> Handover<T> {
    pub(super) fn new() -> Self {
        Handover {
            world: Mutex::new(None),
            outcome: Mutex::new(None),
        }
    }
}

/// How a seed thread's run ended.
pub(super) enum Outcome<T> {
    /// The finished run, built on the seed thread; the caller adds the wall time.
    Done(Result<RunReport<T>, Box<FailedRun>>),
    /// The runtime failed before the world existed.
    Unstarted(Box<Failure>),
}

/// What one seed runs with.
pub(super) struct SeedRun {
    pub(super) config: SimConfig,
    pub(super) plan: Vec<FaultSpec>,
    pub(super) schedule: Option<FaultSchedule>,
}

impl SeedRun {
    /// Runs `body` on this (fresh) thread and leaves the outcome in `handover`.
    pub(super) fn execute<F, Fut, T>(self, body: F, handover: &Arc<Handover<T>>)
    where
        F: FnOnce(SimEnv) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        panic::mark_seed_thread();
        // Installed before the runtime, so that madsim's node and task spans are ours.
        let log = crate::log::install(&self.config.log, current_elapsed);
        let max_time = self.config.max_time;
        let mut rt = madsim::runtime::Runtime::with_seed_and_config(
            self.config.seed,
            madsim::Config::default(),
        );
        // madsim's own limit, not a `timeout` future: a pending timeout timer would keep
        // madsim from ever seeing that every task is blocked (a deadlock).
        rt.set_time_limit(max_time);
        let outcome = self.run_body(&rt, body, handover);
        let world = World::set_current(None);
        let result = outcome.map_err(|payload| classify(payload, &rt, world.as_deref(), max_time));
        let log = log
            .as_ref()
            .map(|(capture, _)| capture.take())
            .unwrap_or_default();
        let outcome = match world.as_deref() {
            Some(world) => Outcome::Done(conclude(world, result, log)),
            // Only if the runtime failed before the body's first poll.
            None => Outcome::Unstarted(Box::new(match result {
                Ok(_) => Failure::Panic {
                    message: "the run ended before it started".to_string(),
                },
                Err(failure) => failure,
            })),
        };
        teardown(rt, world);
        // The last weak reference too: the world's memory is freed here, not by the caller.
        lock(&handover.world).take();
        *lock(&handover.outcome) = Some(outcome);
    }

    /// Runs the body on `rt`: `Err` with the panic's payload if it (or madsim) panicked.
    fn run_body<F, Fut, T>(
        self,
        rt: &madsim::runtime::Runtime,
        body: F,
        handover: &Arc<Handover<T>>,
    ) -> std::thread::Result<T>
    where
        F: FnOnce(SimEnv) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let handover = handover.clone();
        let SeedRun {
            config,
            plan,
            schedule,
        } = self;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async move {
                let world = World::new(config, plan, schedule);
                World::set_current(Some(world.clone()));
                *lock(&handover.world) = Some(Arc::downgrade(&world));
                let env = SimEnv::new(world.clone(), NodeId::MAIN);
                // A panic of the body is caught here, inside the task, so that madsim
                // does not print its own context line for it; it is reported below.
                let out = CatchUnwind(Box::pin(body(env))).await;
                world.body_ended();
                out
            })
        }));
        outcome.and_then(|inner| inner)
    }
}

/// What a panic out of the run means: madsim's time limit, a deadlock, or a panic.
fn classify(
    payload: Box<dyn Any + Send>,
    rt: &madsim::runtime::Runtime,
    world: Option<&World>,
    max_time: Duration,
) -> Failure {
    let message = panic::take_last().unwrap_or_else(|| panic::message(payload.as_ref()));
    if message.starts_with(TIME_LIMIT_PANIC) {
        Failure::VirtualTimeLimit { limit: max_time }
    } else if message.starts_with(DEADLOCK_PANIC) {
        Failure::Deadlock {
            waiting: deadlock_report(rt, world),
        }
    } else {
        Failure::Panic { message }
    }
}

/// Every live task by node and spawn site: ours (spawned through the simulation, on any node
/// including the supervisor, and node init tasks), then madsim's own count, which covers only
/// created nodes but also tasks spawned there without us (madsim or tokio directly).
fn deadlock_report(rt: &madsim::runtime::Runtime, world: Option<&World>) -> String {
    let mut out = world.map(World::alive_tasks).unwrap_or_default();
    let madsim = rt.handle().metrics().num_tasks_by_node_by_spawn();
    out.push_str("madsim's count of live tasks on created nodes, whoever spawned them:\n");
    for line in madsim.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The report of the finished run, built on the seed thread (the trace's events are moved
/// out, not copied: the run is over). The caller fills in the wall time.
fn conclude<T>(
    world: &World,
    result: Result<T, Failure>,
    log: Vec<String>,
) -> Result<RunReport<T>, Box<FailedRun>> {
    let plan = || world.plan().iter().map(ToString::to_string).collect();
    match result {
        Ok(output) => Ok(RunReport::passed(
            output,
            world.seed(),
            world.take_facts(),
            log,
        )),
        Err(failure) => {
            // The virtual time reached, not only that of the last event: a run may fail (a
            // time limit, a deadlock) long after anything was traced.
            let facts = world.facts_so_far(true).map(|mut facts| {
                facts.virtual_time = facts.virtual_time.max(world.elapsed());
                facts
            });
            let run = report::failed(world.seed(), plan(), failure, facts, log);
            Err(Box::new(run))
        }
    }
}

/// Frees the run: cancels the tasks still pending (madsim's runtime does not drop them, and
/// a task asleep on a timer holds the timer that holds its waker, so it and the world it
/// holds would never be freed), then the runtime and the world. A panic here is not ours.
fn teardown(rt: madsim::runtime::Runtime, world: Option<Arc<World>>) {
    if let Some(world) = world.as_deref() {
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| world.reap(&rt)));
    }
    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(rt)));
    drop(world);
}

#[cfg(test)]
mod tests {
    //! Why each seed needs a fresh OS thread (`seed_thread`): reusing one would be cheaper (no
    //! clone, no stack set-up, no join per seed), but std seeds its `HashMap` keys once per
    //! thread. madsim makes the first draw on a thread deterministic; the next map on the same
    //! thread takes the keys that follow, so a seed run after another on one thread iterates a
    //! `HashMap` in another order than the same seed on a fresh thread, and its trace differs.
    //! If this test ever fails on the `assert_ne`, thread reuse has become safe.

    use std::collections::HashMap;

    use super::*;

    /// The trace hash of `seed`, run on the current thread, for a body that traces the order
    /// of a std `HashMap`.
    fn hash_order_trace(seed: u64) -> u64 {
        let handover = Arc::new(Handover::new());
        let run = SeedRun {
            config: SimConfig::with_seed(seed),
            plan: Vec::new(),
            schedule: None,
        };
        run.execute(
            |env: SimEnv| async move {
                let map: HashMap<u32, u32> = (0..32).map(|i| (i, i)).collect();
                for k in map.keys() {
                    env.trace(k.to_string());
                }
            },
            &handover,
        );
        let outcome = lock(&handover.outcome).take();
        match outcome {
            Some(Outcome::Done(Ok(report))) => report.trace.hash,
            _ => panic!("the run did not finish"),
        }
    }

    #[test]
    fn a_reused_thread_gives_another_trace_than_a_fresh_one() {
        let fresh = std::thread::spawn(|| hash_order_trace(3)).join().unwrap();
        let fresh_again = std::thread::spawn(|| hash_order_trace(3)).join().unwrap();
        assert_eq!(
            fresh, fresh_again,
            "seed 3 on fresh threads is deterministic"
        );
        let reused = std::thread::spawn(|| {
            hash_order_trace(0);
            hash_order_trace(3)
        })
        .join()
        .unwrap();
        assert_ne!(
            fresh, reused,
            "seed 3 after seed 0 on one thread traced the same HashMap order as on a fresh \
             thread: std's per-thread hash keys no longer differ, thread reuse may be safe"
        );
    }
}
