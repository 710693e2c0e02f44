//! A node as the test sees it: the [`NodeBuilder`], lifecycle calls, the node's clock, and the
//! liveness phase (heal everything, then wait for a property to hold).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::LivenessError;
use crate::ids::NodeId;
use crate::time::shift;
use crate::world::nodes::NodeStatus;
use crate::world::InitFn;

use super::SimEnv;

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
        self.init = Some(Arc::new(move |world, node| {
            Box::pin(init(SimEnv::new(world, node)))
        }));
        self
    }

    /// Creates the node and returns its env.
    pub fn build(self) -> SimEnv {
        let world = &self.env.world;
        let id = world.create_node(self.name, self.init);
        SimEnv::new(world.clone(), id)
    }
}

impl SimEnv {
    /// The node this env acts as.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// This env's node's IP address in the simulated network (see [`NodeId::ip`]): a
    /// `tokio::net` listener on the node (madsim-tokio) binds to it, or to `0.0.0.0`.
    pub fn ip(&self) -> std::net::IpAddr {
        self.world.node_ip(self.node)
    }

    /// `node`'s IP address in the simulated network, for a socket to connect to.
    pub fn node_ip(&self, node: NodeId) -> std::net::IpAddr {
        self.world.node_ip(node)
    }

    /// The name of this env's node.
    pub fn node_name(&self) -> String {
        self.world.node_name(self.node)
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
            node.index() < self.world.node_count(),
            "node {node} does not exist in this run"
        );
        SimEnv::new(self.world.clone(), node)
    }

    /// Every node created with [`SimEnv::create_node`], in creation order (not the supervisor).
    pub fn nodes(&self) -> Vec<NodeId> {
        (1..self.world.node_count())
            .map(NodeId::from_index)
            .collect()
    }

    /// Whether `node` is up, down or paused.
    pub fn node_status(&self, node: NodeId) -> NodeStatus {
        self.world.node_status(node)
    }

    /// Kills `node`: its tasks are dropped, its storage loses unsynced writes and its
    /// undelivered messages are lost. A no-op on a node that is already down, and on the
    /// supervisor.
    pub fn kill(&self, node: NodeId) {
        self.world.kill(node);
    }

    /// Restarts `node` (killing it first if it is up): its init closure runs again.
    pub fn restart(&self, node: NodeId) {
        self.world.restart(node);
    }

    /// Pauses `node`: its tasks are not polled until [`SimEnv::resume`].
    pub fn pause(&self, node: NodeId) {
        self.world.pause(node);
    }

    /// Resumes a paused node.
    pub fn resume(&self, node: NodeId) {
        self.world.resume(node);
    }

    /// This node's local clock: virtual time since the start, shifted by the node's offset
    /// ([`FaultKind::ClockSkew`](crate::FaultKind::ClockSkew),
    /// [`FaultKind::ClockJump`](crate::FaultKind::ClockJump)); never negative. Code that keeps
    /// time per node (leases, timeouts) should read this, not the global clock.
    pub fn local_time(&self) -> Duration {
        let offset = self.world.clock_offset(self.node);
        shift(self.world.elapsed(), offset)
    }

    /// This node's clock offset from virtual time, in nanoseconds.
    pub fn clock_offset_ns(&self) -> i64 {
        self.world.clock_offset(self.node)
    }

    /// Sets this node's clock offset (as a clock fault would).
    pub fn set_clock_offset(&self, offset: Duration, ahead: bool) {
        let ns = i64::try_from(offset.as_nanos()).unwrap_or(i64::MAX);
        self.world
            .set_clock_offset(self.node, if ahead { ns } else { -ns });
    }

    /// Ends the fault phase: no fault is considered any more, every partition heals, clock
    /// offsets return to zero, paused nodes resume and crashed nodes restart. Follow it with
    /// [`SimEnv::eventually`] to check that the system recovers (safety → heal → liveness).
    pub fn heal_all(&self) {
        self.world.heal_all(self.node);
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
