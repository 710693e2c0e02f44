//! What the storage suites (`kv_dst`, `wal_dst`, `lifecycle_dst`) share: the platform of a
//! worker node.

use std::time::Duration;

use kelpie::SimEnv;
use kelpie_actors::{Platform, SimKv, SimPlatform};

/// A worker node's platform: [`SimPlatform`] for the store, clock, timers and randomness, but
/// tasks spawned on the node's *current* incarnation.
///
/// Why not `SimPlatform::spawn`: it goes through `SimEnv::spawn`, which keeps the madsim
/// handle of the node's first incarnation, so after a crash and restart its tasks never run
/// (madsim: "spawning task on a killed node"). `Handle::get_node` returns the current one. Only
/// spawn from a running task (the init future), never from the init closure itself, which the
/// simulator calls while it holds madsim's node table.
#[derive(Debug, Clone)]
pub struct NodePlatform(SimPlatform);

impl NodePlatform {
    /// The platform of the node `env` acts as, on `kv`.
    pub fn new(env: SimEnv, kv: SimKv) -> Self {
        NodePlatform(SimPlatform::new(env, kv))
    }
}

impl Platform for NodePlatform {
    type Kv = SimKv;

    fn node(&self) -> &str {
        self.0.node()
    }

    fn kv(&self) -> SimKv {
        self.0.kv()
    }

    fn now(&self) -> Duration {
        self.0.now()
    }

    fn sleep(&self, duration: Duration) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.0.sleep(duration)
    }

    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, task: F) {
        if let Some(node) = madsim::runtime::Handle::current().get_node(self.0.node()) {
            drop(node.spawn(task));
        }
    }

    fn random(&self) -> u64 {
        self.0.random()
    }
}
