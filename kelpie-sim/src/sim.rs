//! The simulation: configuration, the per-run world, [`SimEnv`] and [`Simulation::run`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::error::{ConfigError, FailedRun, Failure, SimError};
use crate::fault::{
    FaultInjector, FaultKind, FaultSchedule, FaultSpec, FaultStats, Fired, OpKind, MAX_FAULTS,
};
use crate::log::LogConfig;
use crate::net::NetState;
use crate::node::{NodeId, NodeState};
use crate::rng::{RngHandle, SimRng};
use crate::seed_thread::SeedThread;
use crate::storage::Disk;
use crate::trace::{first_divergence, EventKind, Trace, TraceEvent, TraceMode, TraceSummary};

/// Settings of one simulation run. Every field has a default ([`SimConfig::default`]):
///
/// | field | default |
/// |---|---|
/// | `seed` | `0` |
/// | `max_time` | 600 s of virtual time |
/// | `wall_timeout` | 60 s of wall-clock time |
/// | `fault_tick` | 10 ms of virtual time |
/// | `net_latency` | 1 ms..10 ms |
/// | `trace` | [`TraceMode::Tail`] |
/// | `trace_tail` | 32 events |
/// | `log` | off; with a filter, the last 200 lines ([`LogConfig`]) |
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimConfig {
    /// The run's root seed: madsim's scheduler and every random stream derive from it.
    pub seed: u64,
    /// Virtual-time limit; exceeding it fails the run with [`Failure::VirtualTimeLimit`].
    pub max_time: Duration,
    /// Wall-clock watchdog; a run still going after this fails with [`Failure::WallTimeout`].
    pub wall_timeout: Duration,
    /// Interval at which node, clock and partition faults are considered.
    pub fault_tick: Duration,
    /// Base one-way message latency, drawn uniformly from this range.
    pub net_latency: Range<Duration>,
    /// How much of the trace to keep besides its hash.
    pub trace: TraceMode,
    /// How many of the last events a failure report shows.
    pub trace_tail: usize,
    /// What the run captures from `tracing` for its report.
    pub log: LogConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            max_time: Duration::from_secs(600),
            wall_timeout: Duration::from_secs(60),
            fault_tick: Duration::from_millis(10),
            net_latency: Duration::from_millis(1)..Duration::from_millis(10),
            trace: TraceMode::Tail,
            trace_tail: 32,
            log: LogConfig::default(),
        }
    }
}

impl SimConfig {
    /// The default config with `seed`.
    pub fn with_seed(seed: u64) -> Self {
        SimConfig {
            seed,
            ..SimConfig::default()
        }
    }

    /// Rejects settings that make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (setting, d) in [
            ("max_time", self.max_time),
            ("wall_timeout", self.wall_timeout),
            ("fault_tick", self.fault_tick),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration { setting });
            }
        }
        if let Err(reason) = self.log.validate() {
            return Err(ConfigError::LogFilter {
                filter: self.log.filter.clone(),
                reason,
            });
        }
        if self.net_latency.start >= self.net_latency.end {
            return Err(ConfigError::EmptyLatency {
                start: self.net_latency.start,
                end: self.net_latency.end,
            });
        }
        Ok(())
    }
}

/// Mutable state of one run, behind one lock (the simulation is single-threaded; the lock is
/// never contended and never held across an await).
pub(crate) struct State {
    pub(crate) trace: Trace,
    pub(crate) faults: FaultInjector,
    pub(crate) nodes: Vec<NodeState>,
    pub(crate) disks: Vec<Disk>,
    pub(crate) net: NetState,
    pub(crate) next_task: u64,
    /// Virtual time of the next fault tick, and whether one is being processed.
    pub(crate) next_tick: Duration,
    pub(crate) ticking: bool,
    /// `sometimes!` sites: how often each was evaluated and how often it was true.
    pub(crate) sometimes: BTreeMap<&'static str, SometimesStat>,
    /// Virtual time at which the body finished.
    pub(crate) ended_at: Option<Duration>,
    /// Tasks spawned through `SimEnv::spawn`, to be cancelled when the run ends (see
    /// `World::reap`): the supervisor's cannot be killed, and a task spawned on a node after
    /// the node was killed never runs, so killing nodes alone does not reach them.
    pub(crate) tasks: Vec<madsim::task::AbortHandle>,
}

impl State {
    /// The trace's summary with the nodes' names.
    pub(crate) fn summary(&self) -> TraceSummary {
        let mut summary = self.trace.summary();
        summary.nodes = self.nodes.iter().map(|n| n.name.to_string()).collect();
        summary
    }

    /// Keeps `task`'s abort handle for `World::reap`.
    pub(crate) fn track<T>(&mut self, task: &madsim::task::JoinHandle<T>) {
        if self.tasks.capacity() == 0 {
            self.tasks.reserve(16);
        } else if self.tasks.len() == self.tasks.capacity() {
            self.tasks.retain(|t| !t.is_finished());
        }
        self.tasks.push(task.abort_handle());
    }

    /// The summary, moving the recorded events out (for a finished run).
    fn take_summary(&mut self) -> TraceSummary {
        let mut summary = self.trace.take_summary();
        summary.nodes = self.nodes.iter().map(|n| n.name.to_string()).collect();
        summary
    }
}

/// Everything one run shares: its seed, config, madsim handle and state.
pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) config: SimConfig,
    pub(crate) plan: Vec<FaultSpec>,
    pub(crate) handle: madsim::runtime::Handle,
    /// madsim's clock, read directly (cheaper than `Instant::now()` through libc), and its
    /// reading when the run started.
    time: madsim::time::TimeHandle,
    time_start: Duration,
    /// Whether node, clock or partition faults are declared (else `catch_up` has nothing to do).
    pub(crate) ticks: bool,
    /// `State::next_tick` in nanoseconds, readable without the lock (`catch_up` runs before
    /// every operation and is nearly always early).
    pub(crate) next_tick_ns: AtomicU64,
    /// Bit `op` is set if a declared fault applies to operation `op` (faults are never added
    /// during a run, so a clear bit means none can fire: no lock needed to know it).
    fault_ops: u32,
    /// A node of our own that is never killed, for message delivery and delayed fault actions;
    /// created on first use, so runs that need neither pay nothing for it.
    sys: OnceLock<madsim::runtime::NodeHandle>,
    abort: AtomicBool,
    user_rng: RngHandle,
    state: Mutex<State>,
}

impl World {
    fn new(config: SimConfig, plan: Vec<FaultSpec>, schedule: Option<FaultSchedule>) -> Arc<World> {
        let seed = config.seed;
        let mut faults = FaultInjector::new(seed, &plan);
        faults.set_schedule(schedule);
        let state = State {
            trace: Trace::new(config.trace, config.trace_tail),
            faults,
            nodes: vec![NodeState::main()],
            disks: vec![Disk::new()],
            net: NetState::new(seed, &config.net_latency),
            next_task: 0,
            ended_at: None,
            next_tick: config.fault_tick,
            ticking: false,
            sometimes: BTreeMap::new(),
            tasks: Vec::new(),
        };
        let handle = madsim::runtime::Handle::current();
        let time = madsim::time::TimeHandle::current();
        let ticks = state.faults.any_for(OpKind::Tick);
        let fault_ops = crate::fault::OP_TABLE
            .iter()
            .filter(|(_, op)| state.faults.any_for(*op))
            .fold(0, |bits, (_, op)| bits | 1 << *op as u32);
        Arc::new(World {
            sys: OnceLock::new(),
            seed,
            plan,
            handle,
            time_start: time.elapsed(),
            time,
            ticks,
            fault_ops,
            next_tick_ns: AtomicU64::new(nanos(config.fault_tick)),
            abort: AtomicBool::new(false),
            user_rng: RngHandle::new(SimRng::stream(seed, "env", 0)),
            state: Mutex::new(state),
            config,
        })
    }

    /// The system node, for tasks that must survive node kills.
    pub(crate) fn sys(&self) -> &madsim::runtime::NodeHandle {
        self.sys
            .get_or_init(|| self.handle.create_node().name("kelpie-sys").build())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        if self.abort.load(Ordering::Relaxed) {
            panic!("kelpie: run aborted by the wall-clock watchdog");
        }
        lock(&self.state)
    }

    /// Virtual time since the run started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.time.elapsed().saturating_sub(self.time_start)
    }

    /// Appends an event to the trace.
    pub(crate) fn record(&self, node: NodeId, kind: EventKind) {
        let at = self.elapsed();
        self.lock().trace.record(TraceEvent { at, node, kind });
    }

    /// madsim's clock now (to arm a madsim timer for a virtual time from [`World::elapsed`]).
    pub(crate) fn now_instant(&self) -> std::time::Instant {
        self.time.now_instant()
    }

    /// A madsim timer, to be [`reset`](madsim::time::Sleep::reset) before it is polled.
    pub(crate) fn timer(&self) -> madsim::time::Sleep {
        self.time.sleep(Duration::from_secs(1 << 32))
    }

    /// Considers the faults that apply to `op` on `node` and traces those that fired.
    pub(crate) fn decide(&self, op: OpKind, node: NodeId, key: Option<&[u8]>) -> Vec<Fired> {
        if self.fault_ops & (1 << op as u32) == 0 {
            return Vec::new();
        }
        let at = self.elapsed();
        self.decide_locked(&mut self.lock(), at, op, node, key)
    }

    /// [`World::decide`] under a lock the caller holds, at virtual time `at`.
    pub(crate) fn decide_locked(
        &self,
        st: &mut State,
        at: Duration,
        op: OpKind,
        node: NodeId,
        key: Option<&[u8]>,
    ) -> Vec<Fired> {
        if !st.faults.any_for(op) {
            return Vec::new();
        }
        let name = st.nodes[node.index()].name.clone();
        let fired = st.faults.decide(op, &name, key, None, at);
        for f in &fired {
            let kind = EventKind::Fault {
                fault: f.spec.kind(),
                name: f.name.clone(),
                op,
            };
            st.trace.record(TraceEvent { at, node, kind });
        }
        fired
    }

    /// Cancels every task still alive at the end of the run — those we spawned (tracked in
    /// `State::tasks`) and init tasks (by killing their nodes) — and lets madsim drop them.
    fn reap(&self, rt: &madsim::runtime::Runtime) {
        let (nodes, tasks) = {
            let mut st = lock(&self.state);
            // Only a node's init task is spawned by madsim rather than through us (and so is
            // not in `tasks`): killing the nodes that have one reaches it and its children.
            let nodes: Vec<_> = (st.nodes.iter())
                .filter(|n| n.init.is_some())
                .filter_map(|n| n.madsim.clone())
                .collect();
            (nodes, std::mem::take(&mut st.tasks))
        };
        let pending: Vec<_> = tasks.into_iter().filter(|t| !t.is_finished()).collect();
        if nodes.is_empty() && pending.is_empty() {
            return;
        }
        for node in &nodes {
            self.handle.kill(node.id());
        }
        pending.iter().for_each(madsim::task::AbortHandle::abort);
        // One more turn of the executor: it drops every cancelled task's future.
        rt.block_on(async {});
        // What the world holds that may hold the world: init closures (they often capture an
        // env), messages in flight and queued.
        let mut st = lock(&self.state);
        st.nodes.iter_mut().for_each(|n| n.init = None);
        st.net.clear();
    }

    /// The report of the finished run, built on the seed thread (the trace's events are
    /// moved out, not copied: the run is over). The caller fills in the wall time.
    fn finish<T>(
        &self,
        result: Result<T, Failure>,
        log: Vec<String>,
    ) -> Result<RunReport<T>, Box<FailedRun>> {
        let mut st = lock(&self.state);
        match result {
            Ok(output) => Ok(RunReport {
                output,
                seed: self.seed,
                virtual_time: last_event_time(&st),
                trace: st.take_summary(),
                faults: st.faults.stats(),
                wall_time: Duration::ZERO,
                sometimes: std::mem::take(&mut st.sometimes),
                log,
            }),
            Err(failure) => {
                let mut run = self.snapshot(failure, Some(&st));
                run.log = log;
                Err(Box::new(run))
            }
        }
    }

    fn snapshot(&self, failure: Failure, st: Option<&State>) -> FailedRun {
        FailedRun {
            seed: self.seed,
            failure,
            virtual_time: st.map(last_event_time).unwrap_or_default(),
            trace: st.map(State::summary).unwrap_or_else(empty_summary),
            plan: self.plan.iter().map(ToString::to_string).collect(),
            faults: st.map(|s| s.faults.stats()).unwrap_or_default(),
            sometimes: st.map(|s| s.sometimes.clone()).unwrap_or_default(),
            log: Vec::new(),
        }
    }
}

fn empty_summary() -> TraceSummary {
    TraceSummary {
        nodes: Vec::new(),
        hash: 0,
        len: 0,
        tail: Vec::new(),
        full: None,
    }
}

/// The handle a test body (and every task and node init closure) gets: seeded randomness,
/// virtual time, tasks, nodes, storage, network, faults and the trace.
///
/// A `SimEnv` acts as one node: [`SimEnv::spawn`], [`SimEnv::storage`] and
/// [`SimEnv::network`] belong to [`SimEnv::node`]. The body's env acts as the supervisor node
/// [`NodeId::MAIN`], which faults never crash; [`SimEnv::create_node`] returns the env of a
/// new node. Cloning is cheap.
#[derive(Clone)]
pub struct SimEnv {
    pub(crate) world: Arc<World>,
    pub(crate) node: NodeId,
}

impl std::fmt::Debug for SimEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimEnv")
            .field("seed", &self.world.seed)
            .field("node", &self.node)
            .finish()
    }
}

impl SimEnv {
    /// The run's root seed.
    pub fn seed(&self) -> u64 {
        self.world.seed
    }

    /// The run's config.
    pub fn config(&self) -> &SimConfig {
        &self.world.config
    }

    /// The test's own random stream (independent of the faults' and the scheduler's). All
    /// clones and all nodes' envs share this one stream.
    pub fn rng(&self) -> RngHandle {
        self.world.user_rng.clone()
    }

    /// The current virtual instant (madsim's clock; `std::time::Instant::now()` agrees inside
    /// the simulation).
    pub fn now(&self) -> madsim::time::Instant {
        madsim::time::Instant::now()
    }

    /// Virtual time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.world.elapsed()
    }

    /// Sleeps for `duration` of virtual time; the timer firing is traced.
    pub async fn sleep(&self, duration: Duration) {
        self.world.time.sleep(duration).await;
        crate::node::catch_up(&self.world);
        self.world
            .record(self.node, EventKind::Timer { slept: duration });
    }

    /// Runs `future` with a virtual-time limit; `Err` if it did not finish in time.
    pub async fn timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> Result<F::Output, madsim::time::error::Elapsed> {
        madsim::time::timeout(duration, future).await
    }

    /// Spawns a task on this env's node (traced). Killing the node drops the task.
    ///
    /// On the supervisor env ([`NodeId::MAIN`]) the task runs on the node of the calling
    /// task, which is the supervisor when called from the test body.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> madsim::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        crate::node::catch_up(&self.world);
        let at = self.world.elapsed();
        let mut st = self.world.lock();
        st.next_task += 1;
        let task = st.next_task;
        st.trace.record(TraceEvent {
            at,
            node: self.node,
            kind: EventKind::Spawn { task },
        });
        // Spawning only queues the task (madsim polls it later), so the lock may be held.
        let task = match &st.nodes[self.node.index()].madsim {
            Some(node) => node.spawn(future),
            None => madsim::task::spawn(future),
        };
        st.track(&task);
        task
    }

    /// Asks for the custom fault named `name` (declared as `Custom("name", p)`): `true` if it
    /// fires now. Undeclared names never fire.
    pub fn fault(&self, name: &str) -> bool {
        crate::node::catch_up(&self.world);
        let at = self.world.elapsed();
        let mut st = self.world.lock();
        if !st.faults.any_for(OpKind::Custom) {
            return false;
        }
        let node = st.nodes[self.node.index()].name.clone();
        let fired = st
            .faults
            .decide(OpKind::Custom, &node, None, Some(name), at);
        for f in &fired {
            let kind = EventKind::Fault {
                fault: FaultKind::Custom,
                name: f.name.clone(),
                op: OpKind::Custom,
            };
            st.trace.record(TraceEvent {
                at,
                node: self.node,
                kind,
            });
        }
        !fired.is_empty()
    }

    /// How often each declared fault was considered and fired so far.
    pub fn faults(&self) -> FaultStats {
        self.world.lock().faults.stats()
    }

    /// Records a labelled event of the test's own in the trace.
    pub fn trace(&self, label: impl Into<String>) {
        self.world.record(
            self.node,
            EventKind::User {
                label: label.into(),
            },
        );
    }

    /// The trace so far: hash, length and last events.
    pub fn trace_summary(&self) -> TraceSummary {
        self.world.lock().summary()
    }
}

/// The result of a successful run.
#[derive(Debug, Clone)]
pub struct RunReport<T> {
    /// What the body returned.
    pub output: T,
    /// The seed.
    pub seed: u64,
    /// The trace: hash, length, last events (all events in [`TraceMode::Full`]).
    pub trace: TraceSummary,
    /// How often each declared fault was considered and fired.
    pub faults: FaultStats,
    /// Virtual time the run took.
    pub virtual_time: Duration,
    /// Wall-clock time the run took.
    pub wall_time: Duration,
    /// Every `sometimes!` site the run evaluated, by name.
    pub sometimes: BTreeMap<&'static str, SometimesStat>,
    /// The last captured `tracing` lines ([`SimConfig::log`]).
    pub log: Vec<String>,
}

/// How often a [`sometimes`] site was evaluated in a run, and how often its condition held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SometimesStat {
    /// Times evaluated.
    pub evaluated: u64,
    /// Times the condition was true.
    pub hit: u64,
}

thread_local! {
    /// The world of the simulation running on this thread (seed threads only).
    static CURRENT: RefCell<Option<Arc<World>>> = const { RefCell::new(None) };
}

/// Virtual time since the start of the run on this thread, if a run is going on.
pub(crate) fn current_elapsed() -> Option<Duration> {
    CURRENT.with(|c| c.borrow().as_ref().map(|w| w.elapsed()))
}

/// Records whether `condition` holds at the site `name` (use [`kelpie::sometimes!`]). The
/// runner fails a test if a site it evaluated was never true across the test's seeds: a
/// property the test claims to reach, but never does. Outside a simulation it does nothing.
///
/// [`kelpie::sometimes!`]: https://docs.rs/kelpie
pub fn sometimes(condition: bool, name: &'static str) {
    CURRENT.with(|c| {
        if let Some(world) = c.borrow().as_ref() {
            let mut st = world.lock();
            let stat = st.sometimes.entry(name).or_default();
            stat.evaluated += 1;
            stat.hit += u64::from(condition);
        }
    });
}

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

/// Locks a mutex whose data a panic cannot leave inconsistent (each holder makes its changes
/// in one go), recovering it if a panicking holder poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a seed thread hands its caller: the world while it runs (for the watchdog; weak, so
/// that the world is dropped on the seed thread, where freeing is cheaper) and the outcome,
/// left before the thread exits (the caller reads it once the thread is joined, so it wakes
/// once per run; see `seed_thread`).
struct Handover<T> {
    world: Mutex<Option<Weak<World>>>,
    outcome: Mutex<Option<Msg<T>>>,
}

enum Msg<T> {
    /// The finished run, built on the seed thread; the caller adds the wall time.
    Done(Result<RunReport<T>, Box<FailedRun>>),
    /// The runtime failed before the world existed.
    Unstarted(Box<Failure>),
}

thread_local! {
    /// The last panic on this seed thread: message and location, captured by our hook.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Whether this thread runs a seed (its panics are captured, not printed).
    static ON_SEED_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that captures panics of seed threads instead of printing them;
/// the runner reports them with the seed and the repro command. Other threads are unaffected.
fn install_panic_hook() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_seed_thread = ON_SEED_THREAD.get();
            if !on_seed_thread {
                return previous(info);
            }
            let message = panic_message(info.payload());
            let text = match info.location() {
                Some(l) => format!("{message} (at {}:{}:{})", l.file(), l.line(), l.column()),
                None => message,
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Polls a future, turning a panic during a poll into `Err(payload)`.
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    }
}

const DEADLOCK_PANIC: &str = "no events, all tasks will block forever";
/// How long the watchdog waits for a flagged seed thread to unwind.
const WATCHDOG_GRACE: Duration = Duration::from_secs(1);
const TIME_LIMIT_PANIC: &str = "time limit exceeded";

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
        install_panic_hook();
        let wall_start = Instant::now();
        let config = self.config.clone();
        let plan = self.faults.clone();
        let schedule = self.schedule.clone();
        let seed = config.seed;
        let max_time = config.max_time;
        let wall_timeout = config.wall_timeout;
        let shared: Arc<Handover<T>> = Arc::new(Handover {
            world: Mutex::new(None),
            outcome: Mutex::new(None),
        });
        let theirs = shared.clone();
        let mut thread = SeedThread::spawn(move || {
            ON_SEED_THREAD.set(true);
            // Installed before the runtime, so that madsim's node and task spans are ours.
            let log = crate::log::install(&config.log);
            let mut rt =
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            // madsim's own limit, not a `timeout` future: a pending timeout timer would keep
            // madsim from ever seeing that every task is blocked (a deadlock).
            rt.set_time_limit(max_time);
            let handover = theirs.clone();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(async move {
                    let world = World::new(config, plan, schedule);
                    CURRENT.with(|c| *c.borrow_mut() = Some(world.clone()));
                    *lock(&handover.world) = Some(Arc::downgrade(&world));
                    let env = SimEnv {
                        world: world.clone(),
                        node: NodeId::MAIN,
                    };
                    // A panic of the body is caught here, inside the task, so that madsim
                    // does not print its own context line for it; it is reported below.
                    let out = CatchUnwind(Box::pin(body(env))).await;
                    let at = world.elapsed();
                    world.lock().ended_at = Some(at);
                    out
                })
            }));
            let result = match outcome.and_then(|inner| inner) {
                Ok(value) => Ok(value),
                Err(payload) => {
                    let message = LAST_PANIC
                        .with(|p| p.borrow_mut().take())
                        .unwrap_or_else(|| panic_message(payload.as_ref()));
                    if message.starts_with(TIME_LIMIT_PANIC) {
                        Err(Failure::VirtualTimeLimit { limit: max_time })
                    } else if message.starts_with(DEADLOCK_PANIC) {
                        let waiting = rt.handle().metrics().num_tasks_by_node_by_spawn();
                        Err(Failure::Deadlock { waiting })
                    } else {
                        Err(Failure::Panic { message })
                    }
                }
            };
            let world = CURRENT.with(|c| c.borrow_mut().take());
            let log = log
                .as_ref()
                .map(|(capture, _)| capture.take())
                .unwrap_or_default();
            let msg = match world.as_deref() {
                Some(world) => Msg::Done(world.finish(result, log)),
                // Only if the runtime failed before the body's first poll.
                None => Msg::Unstarted(Box::new(match result {
                    Ok(_) => Failure::Panic {
                        message: "the run ended before it started".to_string(),
                    },
                    Err(failure) => failure,
                })),
            };
            // Tasks still pending when the body returns must be cancelled: madsim's runtime does
            // not drop them, and a task asleep on a timer holds the timer that holds its waker,
            // so it (and the world it holds) would never be freed. A panic here is not ours.
            if let Some(world) = world.as_deref() {
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| world.reap(&rt)));
            }
            let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(rt)));
            drop(world);
            // The last weak reference too: the world's memory is freed here, not by the caller.
            lock(&theirs.world).take();
            *lock(&theirs.outcome) = Some(msg);
        })
        .expect("failed to spawn a seed thread");

        let exited = thread.join_timeout(wall_timeout);
        let outcome = lock(&shared.outcome).take();
        let result = match outcome {
            Some(Msg::Done(result)) => Some(result),
            Some(Msg::Unstarted(failure)) => Some(Err(self.unstarted(*failure))),
            None if exited => Some(Err(self.unstarted(Failure::Panic {
                message: "the seed thread died before reporting".to_string(),
            }))),
            None => None,
        };
        let Some(result) = result else {
            // The seed thread is stuck: flag it (our APIs panic once it calls them, which
            // unwinds it) and give it a moment to unwind; a thread that never calls us again
            // cannot be killed and is left behind. Report what the world recorded so far.
            let failure = Failure::WallTimeout {
                limit: wall_timeout,
            };
            let world = lock(&shared.world).as_ref().and_then(Weak::upgrade);
            let run = match world {
                Some(w) => {
                    w.abort.store(true, Ordering::Relaxed);
                    let unwound = thread.join_timeout(WATCHDOG_GRACE);
                    let st = if unwound {
                        Some(lock(&w.state))
                    } else {
                        w.state.try_lock().ok()
                    };
                    w.snapshot(failure, st.as_deref())
                }
                None => *self.unstarted(failure),
            };
            return Err(SimError::Failed(Box::new(run)));
        };
        match result {
            Ok(mut report) => {
                report.wall_time = wall_start.elapsed();
                Ok(report)
            }
            Err(run) => Err(SimError::Failed(run)),
        }
    }

    /// The report of a run whose world never existed (or is gone).
    fn unstarted(&self, failure: Failure) -> Box<FailedRun> {
        Box::new(FailedRun {
            seed: self.config.seed,
            failure,
            virtual_time: Duration::ZERO,
            trace: empty_summary(),
            plan: self.faults.iter().map(ToString::to_string).collect(),
            faults: FaultStats::default(),
            sometimes: BTreeMap::new(),
            log: Vec::new(),
        })
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

/// A virtual time in nanoseconds (saturating: 584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn last_event_time(st: &State) -> Duration {
    st.ended_at.unwrap_or_else(|| st.trace.last_time())
}
