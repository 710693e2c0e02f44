//! What the runtime needs from the world it runs in: a node name, the shared store, the node's
//! clock, timers, task spawning and randomness. [`TokioPlatform`] is the production platform;
//! in simulation builds (`cfg(madsim)`), [`SimPlatform`] runs the same code on kelpie-sim, where
//! every fault reaches it.

use std::future::Future;
use std::time::Duration;

use crate::kv::{ActorKV, MemoryKv};

/// The environment one node of the runtime runs in.
pub trait Platform: Clone + Send + Sync + 'static {
    /// The shared store.
    type Kv: ActorKV;

    /// This node's name.
    fn node(&self) -> &str;

    /// The shared store (every node sees the same data).
    fn kv(&self) -> Self::Kv;

    /// This node's clock, from an arbitrary epoch. Clocks of different nodes may disagree
    /// (skew, jumps): never compare one node's reading with another's.
    fn now(&self) -> Duration;

    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static;

    /// Runs `task` in the background on this node.
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F);

    /// A random number (jitter, ids).
    fn random(&self) -> u64;

    /// A named fault point (FoundationDB's `buggify`): the runtime calls it at the places
    /// where a crash, a pause or a failure makes a rare interleaving (`lease.release`,
    /// `activation.handle`, ...). Resolves to `true` if the operation that follows must fail.
    /// On a production platform it does nothing (`false` at once); in a simulation a test
    /// arms it to crash, pause, delay or fail the node there.
    fn fault_point(&self, name: &'static str) -> impl Future<Output = bool> + Send + 'static {
        let _ = name;
        std::future::ready(false)
    }
}

/// The production platform: tokio timers and tasks, the system clock, a [`MemoryKv`] (or any
/// store) shared by the nodes of one process.
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the production platform is the one place that reaches tokio, the clock and randomness (kelpie-actors/clippy.toml)"
)]
#[derive(Debug, Clone)]
pub struct TokioPlatform<K = MemoryKv> {
    node: String,
    kv: K,
    epoch: std::time::Instant,
}

#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the production platform is the one place that reaches tokio, the clock and randomness (kelpie-actors/clippy.toml)"
)]
impl<K: ActorKV> TokioPlatform<K> {
    /// A node named `node` using `kv`.
    pub fn new(node: impl Into<String>, kv: K) -> Self {
        TokioPlatform {
            node: node.into(),
            kv,
            epoch: std::time::Instant::now(),
        }
    }
}

#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "the production platform is the one place that reaches tokio, the clock and randomness (kelpie-actors/clippy.toml)"
)]
impl<K: ActorKV> Platform for TokioPlatform<K> {
    type Kv = K;

    fn node(&self) -> &str {
        &self.node
    }

    fn kv(&self) -> K {
        self.kv.clone()
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep(duration)
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        tokio::spawn(task);
    }

    fn random(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(self.epoch.elapsed().as_nanos());
        h.finish()
    }
}

#[cfg(madsim)]
pub use sim::{SimKv, SimKvTxn, SimPlatform};

#[cfg(madsim)]
mod sim {
    use std::future::Future;
    use std::time::Duration;

    use kelpie_sim::{SimEnv, SimStorage, StorageError};

    use super::Platform;
    use crate::error::KvError;
    use crate::kv::{ActorKV, KvTransaction};

    fn kv_error(e: StorageError) -> KvError {
        match e {
            StorageError::Conflict { key } => KvError::Conflict { key },
            StorageError::Crashed => KvError::OutcomeUnknown,
            other => KvError::Unavailable(other.to_string()),
        }
    }

    /// [`ActorKV`] over a simulated disk: writes go through `set` + `sync` (so write, torn,
    /// misdirected and fsync faults reach it), transactions through the disk's optimistic
    /// transactions (commit and crash-during-transaction faults).
    #[derive(Debug, Clone)]
    pub struct SimKv {
        storage: SimStorage,
    }

    impl SimKv {
        /// The store on `node`'s disk (typically a dedicated database node).
        pub fn new(node: &SimEnv) -> Self {
            SimKv {
                storage: node.storage(),
            }
        }

        async fn write(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), KvError> {
            match value {
                Some(v) => self.storage.set(key, v).await.map_err(kv_error)?,
                None => self.storage.delete(key).await.map_err(kv_error)?,
            }
            // The write happened but may not be durable: if the sync fails, the caller cannot
            // know whether it survives.
            self.storage
                .sync()
                .await
                .map_err(|_| KvError::OutcomeUnknown)?;
            // A sync succeeds on a database node that crashed and restarted after the write
            // (the unsynced write is gone, and the new incarnation has nothing to sync): read
            // the key back, and report an unknown outcome unless it holds what was written
            // (found by the store contract, `sim_kv_survives_crashes` seed 87: an
            // acknowledged write lost).
            match self.storage.get(key).await {
                Ok(found) if found.as_deref() == value => Ok(()),
                _ => Err(KvError::OutcomeUnknown),
            }
        }
    }

    impl ActorKV for SimKv {
        type Txn = SimKvTxn;

        async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
            self.storage.get(key).await.map_err(kv_error)
        }

        async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
            self.write(key, Some(value)).await
        }

        async fn delete(&self, key: &[u8]) -> Result<(), KvError> {
            self.write(key, None).await
        }

        async fn scan_prefix(&self, prefix: &[u8]) -> Result<crate::kv::KvPairs, KvError> {
            self.storage.scan_prefix(prefix).await.map_err(kv_error)
        }

        fn transaction(&self) -> SimKvTxn {
            SimKvTxn {
                txn: self.storage.transaction(),
            }
        }
    }

    /// A [`SimKv`] transaction.
    #[derive(Debug)]
    pub struct SimKvTxn {
        txn: kelpie_sim::Transaction,
    }

    impl KvTransaction for SimKvTxn {
        async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
            self.txn.get(key).await.map_err(kv_error)
        }

        fn set(&mut self, key: &[u8], value: &[u8]) {
            self.txn.set(key, value);
        }

        fn delete(&mut self, key: &[u8]) {
            self.txn.delete(key);
        }

        async fn commit(self) -> Result<(), KvError> {
            self.txn.commit().await.map_err(kv_error)
        }
    }

    /// The simulation platform: one simulated node (its env), sharing a [`SimKv`].
    #[derive(Debug, Clone)]
    pub struct SimPlatform {
        env: SimEnv,
        name: String,
        kv: SimKv,
    }

    impl SimPlatform {
        /// The platform of the node `env` acts as, using `kv`.
        pub fn new(env: SimEnv, kv: SimKv) -> Self {
            SimPlatform {
                name: env.node_name(),
                env,
                kv,
            }
        }

        /// The node's env.
        pub fn env(&self) -> &SimEnv {
            &self.env
        }
    }

    impl Platform for SimPlatform {
        type Kv = SimKv;

        fn node(&self) -> &str {
            &self.name
        }

        fn kv(&self) -> SimKv {
            self.kv.clone()
        }

        fn now(&self) -> Duration {
            self.env.local_time()
        }

        fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
            let env = self.env.clone();
            async move { env.sleep(duration).await }
        }

        fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
            drop(self.env.spawn(task));
        }

        fn random(&self) -> u64 {
            self.env.rng().next_u64()
        }

        fn fault_point(&self, name: &'static str) -> impl Future<Output = bool> + Send + 'static {
            let env = self.env.clone();
            async move { env.reach_point(name).await }
        }
    }
}
