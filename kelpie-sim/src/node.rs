//! Simulated nodes: creation, kill and restart, pause and resume, per-node clocks, and the
//! fault tick that injects node, clock and partition faults.

use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::fault::{FaultKind, FaultSpec, OpKind};
use crate::sim::{SimEnv, World};
use crate::storage::Disk;
use crate::trace::{EventKind, NodeAction, TraceEvent};

/// Identifies a simulated node within one run. [`NodeId::MAIN`] is the supervisor that runs the
/// test body; nodes made with [`SimEnv::create_node`] are numbered from 1 in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct NodeId(u32);

impl NodeId {
    /// The supervisor node running the test body. Faults never crash, pause or skew it.
    pub const MAIN: NodeId = NodeId(0);

    pub(crate) const fn from_index(i: usize) -> NodeId {
        NodeId(i as u32)
    }

    /// The node's index (0 for [`NodeId::MAIN`]).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == NodeId::MAIN {
            write!(f, "main")
        } else {
            write!(f, "n{}", self.0)
        }
    }
}

/// Whether a node is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum NodeStatus {
    /// Running its tasks.
    Up,
    /// Killed: tasks dropped, volatile storage lost; [`SimEnv::restart`] brings it back.
    Down,
    /// Paused: tasks kept but not polled until [`SimEnv::resume`].
    Paused,
}

pub(crate) type InitFn =
    Arc<dyn Fn(SimEnv) -> std::pin::Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

pub(crate) struct NodeState {
    pub(crate) name: Arc<str>,
    /// `None` for the supervisor, which madsim does not let us address.
    pub(crate) madsim: Option<madsim::runtime::NodeHandle>,
    pub(crate) status: NodeStatus,
    /// Incremented at every kill, restart, pause and resume, so that a delayed fault action
    /// (restart after a crash, resume after a pause) applies only to the state it created.
    pub(crate) epoch: u64,
    pub(crate) clock_offset_ns: i64,
    /// The node's init closure. The world owns it (madsim's copy holds only a weak reference
    /// to the world), so that the world is freed when the run ends even if the closure holds
    /// an env: a closure stored in madsim's node table would form a cycle through the world's
    /// madsim handles.
    pub(crate) init: Option<InitFn>,
}

impl NodeState {
    pub(crate) fn main() -> Self {
        NodeState {
            name: "main".into(),
            madsim: None,
            status: NodeStatus::Up,
            epoch: 0,
            clock_offset_ns: 0,
            init: None,
        }
    }
}

/// Builds a node; see [`SimEnv::create_node`].
#[must_use = "a node is created by `build()`"]
pub struct NodeBuilder<'a> {
    env: &'a SimEnv,
    name: String,
    init: Option<InitFn>,
}

impl NodeBuilder<'_> {
    /// The node's main task, started now and re-run by every restart with the node's env.
    /// Volatile state (everything not in durable storage) is lost between runs. The node stays
    /// up when the task returns (tasks it spawned keep running).
    pub fn init<F, Fut>(mut self, init: F) -> Self
    where
        F: Fn(SimEnv) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.init = Some(Arc::new(move |env| Box::pin(init(env))));
        self
    }

    /// Creates the node and returns its env.
    pub fn build(self) -> SimEnv {
        let world = &self.env.world;
        let id = {
            let mut st = world.lock();
            let id = NodeId(st.nodes.len() as u32);
            st.nodes.push(NodeState {
                name: self.name.as_str().into(),
                madsim: None,
                status: NodeStatus::Up,
                epoch: 0,
                clock_offset_ns: 0,
                init: self.init.clone(),
            });
            st.disks.push(Disk::new());
            id
        };
        let env = SimEnv {
            world: world.clone(),
            node: id,
        };
        let mut builder = world.handle.create_node().name(self.name);
        if self.init.is_some() {
            let weak = Arc::downgrade(world);
            // madsim calls this closure inside `restart`, holding its node table; the user's
            // closure runs on the init task's first poll instead, where it may do anything.
            // The node stays up when the init future returns (madsim would exit it).
            builder = builder.init(move || {
                let weak = weak.clone();
                async move {
                    let Some(world) = weak.upgrade() else { return };
                    let init = world.lock().nodes[id.index()].init.clone();
                    if let Some(init) = init {
                        init(SimEnv { world, node: id }).await;
                    }
                    std::future::pending::<()>().await;
                }
            });
        }
        // Record before building: building spawns the init task.
        world.record(
            id,
            EventKind::Node {
                action: NodeAction::Create,
            },
        );
        let handle = builder.build();
        world.lock().nodes[id.index()].madsim = Some(handle);
        env
    }
}

impl SimEnv {
    /// The node this env acts as.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The name of this env's node.
    pub fn node_name(&self) -> String {
        self.world.lock().nodes[self.node.index()].name.to_string()
    }

    /// Starts building a node named `name`; `build()` returns the new node's env.
    ///
    /// ```
    /// # use kelpie_sim::{SimConfig, Simulation, NodeStatus};
    /// Simulation::new(SimConfig::default()).run(|env| async move {
    ///     let n1 = env.create_node("n1").init(|env| async move {
    ///         env.storage().set(b"booted", b"yes").await.unwrap();
    ///     }).build();
    ///     env.sleep(std::time::Duration::from_millis(1)).await;
    ///     env.kill(n1.node());
    ///     assert_eq!(env.node_status(n1.node()), NodeStatus::Down);
    ///     env.restart(n1.node());
    ///     assert_eq!(env.node_status(n1.node()), NodeStatus::Up);
    /// }).unwrap();
    /// ```
    pub fn create_node(&self, name: impl Into<String>) -> NodeBuilder<'_> {
        NodeBuilder {
            env: self,
            name: name.into(),
            init: None,
        }
    }

    /// The env of another node of this run.
    ///
    /// # Panics
    /// If `node` does not belong to this run (a bug in the test).
    pub fn on(&self, node: NodeId) -> SimEnv {
        assert!(
            node.index() < self.world.lock().nodes.len(),
            "node {node} does not exist in this run"
        );
        SimEnv {
            world: self.world.clone(),
            node,
        }
    }

    /// Every node created with [`SimEnv::create_node`], in creation order (not the supervisor).
    pub fn nodes(&self) -> Vec<NodeId> {
        let n = self.world.lock().nodes.len();
        (1..n as u32).map(NodeId).collect()
    }

    /// Whether `node` is up, down or paused.
    pub fn node_status(&self, node: NodeId) -> NodeStatus {
        self.world.lock().nodes[node.index()].status
    }

    /// Kills `node`: its tasks are dropped, its storage loses unsynced writes and its
    /// undelivered messages are lost. A no-op on a node that is already down, and on the
    /// supervisor.
    pub fn kill(&self, node: NodeId) {
        kill(&self.world, node);
    }

    /// Restarts `node` (killing it first if it is up): its init closure runs again.
    pub fn restart(&self, node: NodeId) {
        restart(&self.world, node);
    }

    /// Pauses `node`: its tasks are not polled until [`SimEnv::resume`].
    pub fn pause(&self, node: NodeId) {
        pause(&self.world, node);
    }

    /// Resumes a paused node.
    pub fn resume(&self, node: NodeId) {
        resume(&self.world, node);
    }

    /// This node's local clock: virtual time since the start, shifted by the node's offset
    /// ([`FaultKind::ClockSkew`], [`FaultKind::ClockJump`]); never negative. Code that keeps
    /// time per node (leases, timeouts) should read this, not the global clock.
    pub fn local_time(&self) -> Duration {
        let offset = self.world.lock().nodes[self.node.index()].clock_offset_ns;
        shift(self.world.elapsed(), offset)
    }

    /// This node's clock offset from virtual time, in nanoseconds.
    pub fn clock_offset_ns(&self) -> i64 {
        self.world.lock().nodes[self.node.index()].clock_offset_ns
    }

    /// Sets this node's clock offset (as a clock fault would).
    pub fn set_clock_offset(&self, offset: Duration, ahead: bool) {
        let ns = i64::try_from(offset.as_nanos()).unwrap_or(i64::MAX);
        set_offset(&self.world, self.node, if ahead { ns } else { -ns });
    }
}

/// The liveness phase's property did not hold in time; see [`SimEnv::eventually`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("liveness: `{property}` did not hold within {budget:?} (checked from {since:?} of virtual time on)")]
pub struct LivenessError {
    /// The property's name.
    pub property: String,
    /// The virtual-time budget it had.
    pub budget: Duration,
    /// Virtual time at which checking started.
    pub since: Duration,
}

impl SimEnv {
    /// Ends the fault phase: no fault is considered any more, every partition heals, clock
    /// offsets return to zero, paused nodes resume and crashed nodes restart. Follow it with
    /// [`SimEnv::eventually`] to check that the system recovers (safety → heal → liveness).
    pub fn heal_all(&self) {
        let world = &self.world;
        let (down, paused, skewed) = {
            let mut st = world.lock();
            st.faults.stop();
            let of = |status: NodeStatus, st: &crate::sim::State| -> Vec<NodeId> {
                (1..st.nodes.len())
                    .filter(|&i| st.nodes[i].status == status)
                    .map(NodeId::from_index)
                    .collect()
            };
            let skewed: Vec<NodeId> = (1..st.nodes.len())
                .filter(|&i| st.nodes[i].clock_offset_ns != 0)
                .map(NodeId::from_index)
                .collect();
            (
                of(NodeStatus::Down, &st),
                of(NodeStatus::Paused, &st),
                skewed,
            )
        };
        world.record(
            self.node,
            EventKind::User {
                label: "heal_all: faults stopped".into(),
            },
        );
        crate::net::heal_all(world);
        for n in skewed {
            set_offset(world, n, 0);
        }
        for n in paused {
            resume(world, n);
        }
        for n in down {
            restart(world, n);
        }
    }

    /// Polls `check` until it returns `true`, within `budget` of virtual time (about a hundred
    /// polls); `Err` names the property if it never held.
    pub async fn eventually<F, Fut>(
        &self,
        property: &str,
        budget: Duration,
        mut check: F,
    ) -> Result<(), LivenessError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let since = self.elapsed();
        let poll = (budget / 100).max(Duration::from_millis(1));
        loop {
            if check().await {
                self.trace(format!("liveness: `{property}` holds"));
                return Ok(());
            }
            if self.elapsed().saturating_sub(since) >= budget {
                return Err(LivenessError {
                    property: property.to_string(),
                    budget,
                    since,
                });
            }
            self.sleep(poll).await;
        }
    }
}

fn shift(t: Duration, offset_ns: i64) -> Duration {
    if offset_ns >= 0 {
        t + Duration::from_nanos(offset_ns as u64)
    } else {
        t.saturating_sub(Duration::from_nanos(offset_ns.unsigned_abs()))
    }
}

fn set_offset(world: &World, node: NodeId, offset_ns: i64) {
    world.lock().nodes[node.index()].clock_offset_ns = offset_ns;
    world.record(node, EventKind::Clock { offset_ns });
}

pub(crate) fn kill(world: &World, node: NodeId) {
    let handle = {
        let mut st = world.lock();
        let n = &mut st.nodes[node.index()];
        if node == NodeId::MAIN || n.status == NodeStatus::Down {
            return;
        }
        n.status = NodeStatus::Down;
        n.epoch += 1;
        let handle = n.madsim.clone();
        st.disks[node.index()].crash();
        st.net.reset_node(node);
        let at = world.elapsed();
        st.trace.record(TraceEvent {
            at,
            node,
            kind: EventKind::Node {
                action: NodeAction::Kill,
            },
        });
        handle
    };
    if let Some(h) = handle {
        world.handle.kill(h.id());
    }
}

pub(crate) fn restart(world: &World, node: NodeId) {
    if node == NodeId::MAIN {
        return;
    }
    kill(world, node);
    let handle = {
        let mut st = world.lock();
        let n = &mut st.nodes[node.index()];
        n.status = NodeStatus::Up;
        n.epoch += 1;
        n.madsim.clone()
    };
    world.record(
        node,
        EventKind::Node {
            action: NodeAction::Restart,
        },
    );
    if let Some(h) = handle {
        world.handle.restart(h.id());
        // madsim's restart replaces the node's internals: spawn through the new incarnation.
        let fresh = world.handle.get_node(h.id());
        world.lock().nodes[node.index()].madsim = fresh;
    }
}

pub(crate) fn pause(world: &World, node: NodeId) {
    let handle = {
        let mut st = world.lock();
        let n = &mut st.nodes[node.index()];
        if node == NodeId::MAIN || n.status != NodeStatus::Up {
            return;
        }
        n.status = NodeStatus::Paused;
        n.epoch += 1;
        n.madsim.clone()
    };
    world.record(
        node,
        EventKind::Node {
            action: NodeAction::Pause,
        },
    );
    if let Some(h) = handle {
        world.handle.pause(h.id());
    }
}

pub(crate) fn resume(world: &World, node: NodeId) {
    let handle = {
        let mut st = world.lock();
        let n = &mut st.nodes[node.index()];
        if n.status != NodeStatus::Paused {
            return;
        }
        n.status = NodeStatus::Up;
        n.epoch += 1;
        n.madsim.clone()
    };
    world.record(
        node,
        EventKind::Node {
            action: NodeAction::Resume,
        },
    );
    if let Some(h) = handle {
        world.handle.resume(h.id());
    }
}

/// Whether `spec` has a target now; a fault without one is not considered (so its stats are
/// not inflated by ticks at which it could not have acted).
fn has_target(world_nodes: &[(NodeId, Arc<str>, NodeStatus)], spec: &FaultSpec) -> bool {
    let eligible = eligible(world_nodes, spec);
    match spec.kind() {
        FaultKind::NetworkPartition | FaultKind::NetworkPartitionOneWay => {
            !eligible.is_empty() && world_nodes.len() >= 2
        }
        _ => !eligible.is_empty(),
    }
}

fn eligible(nodes: &[(NodeId, Arc<str>, NodeStatus)], spec: &FaultSpec) -> Vec<NodeId> {
    let node_filter = spec_node(spec);
    nodes
        .iter()
        .filter(|(id, name, status)| {
            *id != NodeId::MAIN
                && node_filter.as_deref().is_none_or(|f| f == &**name)
                && match spec.kind() {
                    FaultKind::NodeCrash | FaultKind::NodePause => *status == NodeStatus::Up,
                    _ => true,
                }
        })
        .map(|(id, _, _)| *id)
        .collect()
}

fn spec_node(spec: &FaultSpec) -> Option<String> {
    spec.node_filter().map(str::to_string)
}

/// Runs the fault ticks that are due. Node, clock and partition faults are considered once per
/// [`SimConfig::fault_tick`](crate::SimConfig::fault_tick) of virtual time, lazily: whenever the
/// simulated system does something (a storage operation, a send, a timer, a spawn), every tick
/// due by then is processed first. No task of our own polls for ticks, so declaring such a fault
/// adds nothing to madsim's schedule: a fault that never fires changes no trace, and a system
/// that is stuck is still reported as a deadlock.
pub(crate) fn catch_up(world: &Arc<World>) {
    if !world.ticks {
        return;
    }
    let now = world.elapsed();
    if crate::sim::nanos(now) < world.next_tick_ns.load(Ordering::Relaxed) {
        return;
    }
    loop {
        let due = {
            let mut st = world.lock();
            if st.ticking || !st.faults.any_for(OpKind::Tick) || st.next_tick > now {
                return;
            }
            let due = st.next_tick;
            st.next_tick += world.config.fault_tick;
            let next = crate::sim::nanos(st.next_tick);
            world.next_tick_ns.store(next, Ordering::Relaxed);
            st.ticking = true;
            due
        };
        tick(world, due);
        world.lock().ticking = false;
    }
}

fn tick(world: &Arc<World>, due: Duration) {
    let at = world.elapsed();
    let fired = {
        let mut st = world.lock();
        let nodes: Vec<(NodeId, Arc<str>, NodeStatus)> = st
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (NodeId(i as u32), n.name.clone(), n.status))
            .collect();
        let fired = st
            .faults
            .decide_where(OpKind::Tick, due, |spec| has_target(&nodes, spec));
        let mut actions = Vec::new();
        for f in fired {
            let targets = eligible(&nodes, &f.spec);
            let pick = st.faults.draw(f.index, 0..targets.len() as u64) as usize;
            let target = targets[pick];
            let kind = EventKind::Fault {
                fault: f.spec.kind(),
                name: f.name.clone(),
                op: OpKind::Tick,
            };
            st.trace.record(TraceEvent {
                at,
                node: target,
                kind,
            });
            let max_ms = match f.spec.kind() {
                FaultKind::NetworkPartition | FaultKind::NetworkPartitionOneWay => {
                    f.spec.param("heal_ms")
                }
                FaultKind::NodeCrash => f.spec.param("restart_ms"),
                FaultKind::NodePause => f.spec.param("pause_ms"),
                _ => f.spec.param("max_ms"),
            }
            .unwrap_or(1)
            .max(1);
            let amount = st.faults.draw(f.index, 1..max_ms + 1);
            let peer = {
                let others: Vec<NodeId> = nodes
                    .iter()
                    .map(|n| n.0)
                    .filter(|id| *id != target)
                    .collect();
                let i = st.faults.draw(f.index, 0..others.len() as u64) as usize;
                others.get(i).copied()
            };
            let signed = {
                // For skew: uniform in -max..=max.
                let v = st.faults.draw(f.index, 0..2 * max_ms + 1) as i64 - max_ms as i64;
                v * 1_000_000
            };
            actions.push((f.spec.kind(), target, amount, peer, signed));
        }
        actions
    };
    for (kind, target, amount_ms, peer, signed_ns) in fired {
        let after = Duration::from_millis(amount_ms);
        match kind {
            FaultKind::NodeCrash => {
                kill(world, target);
                let epoch = world.lock().nodes[target.index()].epoch;
                delayed(world, after, move |w| {
                    let st = w.lock();
                    let n = &st.nodes[target.index()];
                    let due = n.status == NodeStatus::Down && n.epoch == epoch;
                    drop(st);
                    if due {
                        restart(w, target);
                    }
                });
            }
            FaultKind::NodePause => {
                pause(world, target);
                let epoch = world.lock().nodes[target.index()].epoch;
                delayed(world, after, move |w| {
                    let due = w.lock().nodes[target.index()].epoch == epoch;
                    if due {
                        resume(w, target);
                    }
                });
            }
            FaultKind::ClockSkew => set_offset(world, target, signed_ns),
            FaultKind::ClockJump => {
                let now = world.lock().nodes[target.index()].clock_offset_ns;
                set_offset(world, target, now.saturating_add(after.as_nanos() as i64));
            }
            FaultKind::NetworkPartition => {
                let links = crate::net::isolate(world, target);
                delayed(world, after, move |w| crate::net::heal_links(w, &links));
            }
            FaultKind::NetworkPartitionOneWay => {
                if let Some(peer) = peer {
                    let links = crate::net::cut_one_way(world, target, peer);
                    delayed(world, after, move |w| crate::net::heal_links(w, &links));
                }
            }
            _ => {}
        }
    }
}

/// Runs `action` after `after` of virtual time, on the system node (unaffected by kills).
pub(crate) fn delayed(
    world: &Arc<World>,
    after: Duration,
    action: impl FnOnce(&World) + Send + 'static,
) {
    let w = world.clone();
    let task = world.sys().spawn(async move {
        madsim::time::sleep(after).await;
        action(&w);
    });
    world.lock().track(&task);
}
