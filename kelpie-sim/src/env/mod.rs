//! The handles a test holds: [`SimEnv`] and, through it, a node's storage, network and node
//! builder. Each handle names one node and calls the world's operations; none of them keeps
//! state of its own or touches the world's.

mod net;
mod node;
mod points;
mod storage;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::SimConfig;
use crate::fault::FaultStats;
use crate::ids::NodeId;
use crate::rng::RngHandle;
use crate::trace::{EventKind, TraceSummary};
use crate::world::World;

pub use net::{Endpoint, SimNetwork};
pub use node::NodeBuilder;
pub use points::PointStats;
pub use storage::{SimStorage, Transaction};

/// The handle a test body (and every task and node init closure) gets: seeded randomness,
/// virtual time, tasks, nodes, storage, network, faults and the trace.
///
/// A `SimEnv` acts as one node: [`SimEnv::spawn`], [`SimEnv::storage`] and
/// [`SimEnv::network`] belong to [`SimEnv::node`]. The body's env acts as the supervisor node
/// [`NodeId::MAIN`], which faults never crash; [`SimEnv::create_node`] returns the env of a
/// new node. Cloning is cheap.
#[derive(Clone)]
pub struct SimEnv {
    world: Arc<World>,
    node: NodeId,
}

impl std::fmt::Debug for SimEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimEnv")
            .field("seed", &self.world.seed())
            .field("node", &self.node)
            .finish()
    }
}

impl SimEnv {
    /// The env of `node` in `world`.
    pub(crate) fn new(world: Arc<World>, node: NodeId) -> SimEnv {
        SimEnv { world, node }
    }

    /// The run's root seed.
    pub fn seed(&self) -> u64 {
        self.world.seed()
    }

    /// The run's config.
    pub fn config(&self) -> &SimConfig {
        self.world.config()
    }

    /// The test's own random stream (independent of the faults' and the scheduler's). All
    /// clones and all nodes' envs share this one stream.
    pub fn rng(&self) -> RngHandle {
        self.world.user_rng().clone()
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
        self.world.sleep(duration).await;
        self.world.catch_up();
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

    /// Spawns a task on this env's node (traced). Killing the node drops the task; after a
    /// restart, tasks spawned through the env run on the node's new incarnation.
    ///
    /// On the supervisor env ([`NodeId::MAIN`]) the task runs on the node of the calling
    /// task, which is the supervisor when called from the test body.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> madsim::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.world.spawn(self.node, future)
    }

    /// Asks for the custom fault named `name` (declared as `Custom("name", p)`): `true` if it
    /// fires now. Undeclared names never fire.
    pub fn fault(&self, name: &str) -> bool {
        self.world.custom_fault(self.node, name)
    }

    /// How often each declared fault was considered and fired so far.
    pub fn faults(&self) -> FaultStats {
        self.world.fault_stats()
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
        self.world.trace_summary()
    }
}

/// Records whether `condition` holds at the site `name` (use [`kelpie::sometimes!`]). The
/// runner fails a test if a site it evaluated was never true across the test's seeds: a
/// property the test claims to reach, but never does. Outside a simulation it does nothing.
///
/// [`kelpie::sometimes!`]: https://docs.rs/kelpie
pub fn sometimes(condition: bool, name: &'static str) {
    World::with_current(|world| world.sometimes(name, condition));
}
