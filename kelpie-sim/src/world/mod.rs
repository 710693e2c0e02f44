//! The world: the one owner of a run's state.
//!
//! [`World`] holds what a run shares (seed, config, madsim handle, clock) and, behind one lock,
//! its mutable [`State`]: the trace, the fault injector, the node table, the disks, the network,
//! the tasks and the `sometimes!` sites. The subsystems are plain values that never name the
//! world ([`nodes`], [`disk`], [`net`], [`tasks`]); every rule that touches several of them
//! lives in one file here, as a method of `World`:
//!
//! - [`decide`]: a fault decision together with its trace event;
//! - [`lifecycle`]: creating, killing, restarting, pausing and resuming nodes, clock offsets,
//!   partitions and heals, delayed fault actions;
//! - [`ticks`]: the fault tick (node, clock and partition faults);
//! - [`storage`]: storage operations and what each storage fault does to them;
//! - [`messaging`]: sending, the delivery pump;
//! - [`spawn`]: a test's tasks on their node;
//! - [`sockets`]: the nodes' addresses and links in madsim's network (`tokio::net` sockets);
//! - [`socket_traffic`]: what those sockets report (trace events) and the network faults'
//!   decisions on their segments and datagrams; [`flows`], the streams' byte flows and the
//!   segments those decisions hold;
//! - [`end`]: the end of a run (reaping tasks, the facts for its report).
//!
//! The handles in `env/` call these methods; they never touch the state themselves.

mod decide;
pub(crate) mod disk;
mod end;
pub(crate) mod flows;
mod lifecycle;
mod messaging;
pub(crate) mod net;
pub(crate) mod nodes;
pub(crate) mod points;
pub(crate) mod socket_traffic;
mod sockets;
mod spawn;
mod storage;
pub(crate) mod tasks;
mod ticks;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::config::SimConfig;
use crate::fault::{FaultInjector, FaultSchedule, FaultSpec, OpKind, OP_TABLE};
use crate::ids::NodeId;
use crate::rng::{RngHandle, SimRng};
use crate::sometimes::SometimesTable;
use crate::sync::lock;
use crate::time::nanos;
use crate::trace::{EventKind, Trace, TraceEvent, TraceSummary};

pub(crate) use end::Facts;

use disk::Disk;
use net::Network;
use nodes::NodeTable;
use tasks::Tasks;

/// A node's init closure, as the world stores it: called with the world and the node's id
/// (the env layer wraps the user's closure, which takes the node's env).
pub(crate) type InitFn =
    Arc<dyn Fn(Arc<World>, NodeId) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

/// Mutable state of one run, behind one lock (the simulation is single-threaded; the lock is
/// never contended and never held across an await). Its fields are the world's alone.
pub(crate) struct State {
    trace: Trace,
    faults: FaultInjector,
    /// The node table. Its init closures belong to the world, not to madsim's node table
    /// (madsim's copy holds only a weak reference to the world), so that the world is freed
    /// when the run ends even if a closure holds an env.
    nodes: NodeTable<InitFn>,
    /// One disk per node, by index.
    disks: Vec<Disk>,
    net: Network,
    tasks: Tasks,
    /// Virtual time of the next fault tick, and whether one is being processed.
    next_tick: Duration,
    ticking: bool,
    /// `sometimes!` sites: how often each was evaluated and how often it was true.
    sometimes: SometimesTable,
    /// Virtual time at which the body finished.
    ended_at: Option<Duration>,
    /// Socket events reported through [`crate::sockets`] (kelpie-tokio's sockets).
    socket_reports: u64,
    /// The TCP byte flows of kelpie-tokio's streams and the segments faults hold.
    flows: flows::Flows,
}

impl State {
    /// The trace's summary with the nodes' names.
    fn summary(&self) -> TraceSummary {
        let mut summary = self.trace.summary();
        summary.nodes = self.nodes.names();
        summary
    }
}

/// Everything one run shares: its seed, config, madsim handle and state.
pub(crate) struct World {
    seed: u64,
    config: SimConfig,
    plan: Vec<FaultSpec>,
    handle: madsim::runtime::Handle,
    /// madsim's clock, read directly (cheaper than `Instant::now()` through libc), and its
    /// reading when the run started.
    time: madsim::time::TimeHandle,
    time_start: Duration,
    /// Whether node, clock or partition faults are declared (else `catch_up` has nothing to do).
    ticks: bool,
    /// Whether one of them can fire (with a probability above 0, or replayed by a schedule):
    /// then a ticker of our own processes the ticks on time.
    ticker: bool,
    /// `State::next_tick` in nanoseconds, readable without the lock (`catch_up` runs before
    /// every operation and is nearly always early).
    next_tick_ns: AtomicU64,
    /// Bit `op` is set if a declared fault applies to operation `op` (faults are never added
    /// during a run, so a clear bit means none can fire: no lock needed to know it).
    fault_ops: u32,
    /// madsim's network simulator (the `tokio::net` sockets of madsim-tokio), driven from our
    /// partitions ([`sockets`]), and the madsim id of the supervisor's node.
    netsim: Arc<madsim::net::NetSim>,
    main_madsim: madsim::task::NodeId,
    /// The supervisor's node handle, for the simulator's own tasks; looked up on first use.
    sys: OnceLock<madsim::runtime::NodeHandle>,
    abort: AtomicBool,
    user_rng: RngHandle,
    state: Mutex<State>,
    /// Fault points armed by the test (`points`), apart from `state`: reaching an unarmed
    /// point reads only `points_armed`.
    points: Mutex<points::PointTable>,
    points_armed: AtomicBool,
}

impl World {
    /// The world of a new run; call inside the run's madsim runtime.
    pub(crate) fn new(
        config: SimConfig,
        plan: Vec<FaultSpec>,
        schedule: Option<FaultSchedule>,
    ) -> Arc<World> {
        let seed = config.seed;
        // The ticker runs only if a tick could fire: a fault with probability 0 changes no trace.
        let ticker = schedule.is_some()
            || plan
                .iter()
                .any(|f| f.probability() > 0.0 && f.kind().ops().contains(&OpKind::Tick));
        let mut faults = FaultInjector::new(seed, &plan);
        faults.set_schedule(schedule);
        let state = State {
            trace: Trace::new(config.trace, config.trace_tail),
            faults,
            nodes: NodeTable::new(),
            disks: vec![Disk::new()],
            net: Network::new(seed, &config.net_latency),
            tasks: Tasks::default(),
            ended_at: None,
            socket_reports: 0,
            flows: flows::Flows::default(),
            next_tick: config.fault_tick,
            ticking: false,
            sometimes: SometimesTable::new(),
        };
        let handle = madsim::runtime::Handle::current();
        let time = madsim::time::TimeHandle::current();
        let netsim = madsim::net::NetSim::current();
        let main_madsim = madsim::plugin::node();
        sockets::init_network(&netsim, main_madsim, &config);
        let ticks = state.faults.any_for(OpKind::Tick);
        let fault_ops = OP_TABLE
            .iter()
            .filter(|(_, op)| state.faults.any_for(*op))
            .fold(0, |bits, (_, op)| bits | 1 << *op as u32);
        let world = Arc::new(World {
            netsim,
            main_madsim,
            sys: OnceLock::new(),
            seed,
            plan,
            handle,
            time_start: time.elapsed(),
            time,
            ticks,
            ticker,
            fault_ops,
            next_tick_ns: AtomicU64::new(nanos(config.fault_tick)),
            abort: AtomicBool::new(false),
            user_rng: RngHandle::new(SimRng::stream(seed, "env", 0)),
            state: Mutex::new(state),
            points: Mutex::default(),
            points_armed: AtomicBool::new(false),
            config,
        });
        world.start_ticker();
        world
    }

    /// The run's root seed.
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// The run's config.
    pub(crate) fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The run's resolved fault plan.
    pub(crate) fn plan(&self) -> &[FaultSpec] {
        &self.plan
    }

    /// The test's own random stream, shared by every env of the run.
    pub(crate) fn user_rng(&self) -> &RngHandle {
        &self.user_rng
    }

    /// The node the simulator's own tasks run on (message delivery, the fault ticker, delayed
    /// fault actions): the supervisor's, which faults never kill, pause or skew. A node of
    /// their own cost ~5,000 instructions per run that sends a message, and traced nothing.
    fn sys(&self) -> &madsim::runtime::NodeHandle {
        self.sys
            .get_or_init(|| self.handle.get_node(self.main_madsim).expect("main node"))
    }

    /// The state, locked. Panics once the watchdog has flagged the run (unwinding a stuck
    /// seed thread at its next call into the simulation).
    #[inline]
    fn lock(&self) -> MutexGuard<'_, State> {
        if self.abort.load(Ordering::Relaxed) {
            panic!("kelpie: run aborted by the wall-clock watchdog");
        }
        lock(&self.state)
    }

    /// The state, if no one holds it (on this single-threaded run: not this thread, up the
    /// stack).
    fn try_lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state.try_lock().ok()
    }

    /// Virtual time since the run started.
    #[inline]
    pub(crate) fn elapsed(&self) -> Duration {
        let now = self.time.elapsed();
        // Runs start at madsim's time zero, so there is usually no subtraction to make.
        if self.time_start.is_zero() {
            return now;
        }
        now.saturating_sub(self.time_start)
    }

    /// A madsim sleep of `duration` of virtual time.
    pub(crate) fn sleep(&self, duration: Duration) -> madsim::time::Sleep {
        self.time.sleep(duration)
    }

    /// Appends an event to the trace.
    pub(crate) fn record(&self, node: NodeId, kind: EventKind) {
        let at = self.elapsed();
        self.lock().trace.record(TraceEvent { at, node, kind });
    }

    /// madsim's clock now (to arm a madsim timer for a virtual time from [`World::elapsed`]).
    fn now_instant(&self) -> std::time::Instant {
        self.time.now_instant()
    }

    /// A madsim timer, to be [`reset`](madsim::time::Sleep::reset) before it is polled.
    fn timer(&self) -> madsim::time::Sleep {
        self.time.sleep(Duration::from_secs(1 << 32))
    }

    /// The trace so far: hash, length and last events.
    pub(crate) fn trace_summary(&self) -> TraceSummary {
        self.lock().summary()
    }

    /// Counts one evaluation of the `sometimes!` site `name`.
    pub(crate) fn sometimes(&self, name: &'static str, condition: bool) {
        crate::sometimes::record(&mut self.lock().sometimes, name, condition);
    }

    /// Notes that the body finished, now.
    pub(crate) fn body_ended(&self) {
        let at = self.elapsed();
        self.lock().ended_at = Some(at);
    }

    /// Makes this the world of the simulation running on this thread (`None`: no longer).
    pub(crate) fn set_current(world: Option<Arc<World>>) -> Option<Arc<World>> {
        CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), world))
    }

    /// Calls `f` with the world of the simulation running on this thread (as its `Arc`,
    /// borrowed, not cloned), if any.
    pub(crate) fn with_current_arc<R>(f: impl FnOnce(&Arc<World>) -> R) -> Option<R> {
        CURRENT.with(|c| c.borrow().as_ref().map(f))
    }

    /// Calls `f` with the world of the simulation running on this thread, if any.
    pub(crate) fn with_current<R>(f: impl FnOnce(&World) -> R) -> Option<R> {
        CURRENT.with(|c| c.borrow().as_deref().map(f))
    }
}

thread_local! {
    /// The world of the simulation running on this thread (seed threads only).
    static CURRENT: RefCell<Option<Arc<World>>> = const { RefCell::new(None) };
}

/// Virtual time since the start of the run on this thread, if a run is going on.
pub(crate) fn current_elapsed() -> Option<Duration> {
    World::with_current(World::elapsed)
}
