//! A store on which every commit conflicts while it is armed, as if another writer always got
//! there first, and a platform on it: the fact a retry bound is judged from is the number of
//! commits the store refused, which it counts. Past [`AlwaysConflicting::CAP`] commits it answers `Unavailable`
//! instead, so that an unbounded retry loop ends with a named failure rather than a hang.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie_actors::{ActorKV, KvError, KvPairs, KvTransaction, Platform, SimKv, SimPlatform};

/// The store: reads and plain writes go to `inner`; while armed (from the start), every
/// transaction's commit is refused.
#[derive(Clone)]
pub(crate) struct AlwaysConflicting {
    inner: SimKv,
    commits: Arc<Mutex<u64>>,
    armed: Arc<AtomicBool>,
}

impl AlwaysConflicting {
    /// Commits refused with a conflict before the store answers `Unavailable`.
    pub const CAP: u64 = 1_000;

    /// Over `inner`.
    pub fn new(inner: SimKv) -> Self {
        AlwaysConflicting {
            inner,
            commits: Arc::new(Mutex::new(0)),
            armed: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether commits are refused from now on.
    pub fn set_armed(&self, armed: bool) {
        self.armed.store(armed, Ordering::Relaxed);
    }

    /// The store underneath, to read what was (not) written.
    pub fn inner(&self) -> &SimKv {
        &self.inner
    }

    /// Commits refused so far.
    pub fn commits(&self) -> u64 {
        *self.commits.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// [`AlwaysConflicting`]'s transaction: reads and buffers as the store's own, refuses commits
/// while the store is armed.
pub(crate) struct ConflictingTxn {
    inner: <SimKv as ActorKV>::Txn,
    commits: Arc<Mutex<u64>>,
    armed: Arc<AtomicBool>,
}

impl ActorKV for AlwaysConflicting {
    type Txn = ConflictingTxn;

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(key).await
    }

    async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.inner.set(key, value).await
    }

    async fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        self.inner.delete(key).await
    }

    async fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, KvError> {
        self.inner.scan_prefix(prefix).await
    }

    fn transaction(&self) -> ConflictingTxn {
        ConflictingTxn {
            inner: self.inner.transaction(),
            commits: self.commits.clone(),
            armed: self.armed.clone(),
        }
    }
}

impl KvTransaction for ConflictingTxn {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(key).await
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.inner.set(key, value);
    }

    fn delete(&mut self, key: &[u8]) {
        self.inner.delete(key);
    }

    async fn commit(self) -> Result<(), KvError> {
        if !self.armed.load(Ordering::Relaxed) {
            return self.inner.commit().await;
        }
        let refused = {
            let mut commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
            *commits += 1;
            *commits
        };
        if refused > AlwaysConflicting::CAP {
            return Err(KvError::Unavailable(format!(
                "{} commits refused: the caller retries without bound",
                AlwaysConflicting::CAP
            )));
        }
        Err(KvError::Conflict {
            key: "(every key)".into(),
        })
    }
}

/// A node's [`SimPlatform`] whose store is an [`AlwaysConflicting`] one.
#[derive(Clone)]
pub(crate) struct ConflictingPlatform {
    /// The node's own platform (clock, timers, tasks).
    pub node: SimPlatform,
    /// The store.
    pub kv: AlwaysConflicting,
}

impl Platform for ConflictingPlatform {
    type Kv = AlwaysConflicting;

    fn node(&self) -> &str {
        self.node.node()
    }

    fn kv(&self) -> AlwaysConflicting {
        self.kv.clone()
    }

    fn now(&self) -> Duration {
        self.node.now()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        self.node.sleep(duration)
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        self.node.spawn(task)
    }

    fn random(&self) -> u64 {
        self.node.random()
    }
}
