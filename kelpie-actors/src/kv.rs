//! The byte-level store actors persist to: [`ActorKV`], optimistic [`KvTransaction`]s, actor
//! ids and scoped keys, and [`MemoryKv`], the in-memory store for plain tokio use and tests.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::error::{ActorError, KvError};

/// Key-value pairs in key order, as a prefix scan returns them.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A byte-level key-value store. A write that returns `Ok` is durable; [`ActorKV::transaction`]
/// gives optimistic, atomic multi-key writes.
pub trait ActorKV: Clone + Send + Sync + 'static {
    /// The store's transaction type.
    type Txn: KvTransaction;

    /// Reads `key`.
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, KvError>> + Send;

    /// Writes `key` durably.
    fn set(&self, key: &[u8], value: &[u8]) -> impl Future<Output = Result<(), KvError>> + Send;

    /// Deletes `key` durably.
    fn delete(&self, key: &[u8]) -> impl Future<Output = Result<(), KvError>> + Send;

    /// Every key with `prefix` and its value, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> impl Future<Output = Result<KvPairs, KvError>> + Send;

    /// Starts an optimistic transaction.
    fn transaction(&self) -> Self::Txn;
}

/// An optimistic transaction: reads record what they saw, writes are buffered, `commit`
/// fails with [`KvError::Conflict`] if anything read (or written) changed meanwhile.
pub trait KvTransaction: Send + 'static {
    /// Reads `key` (this transaction's own write if any).
    fn get(&mut self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, KvError>> + Send;

    /// Buffers a write.
    fn set(&mut self, key: &[u8], value: &[u8]);

    /// Buffers a delete.
    fn delete(&mut self, key: &[u8]);

    /// Validates and applies every buffered write atomically and durably.
    fn commit(self) -> impl Future<Output = Result<(), KvError>> + Send;
}

/// An actor's identity: a namespace and an id, each 1 to 128 characters of
/// `[A-Za-z0-9_.:-]`.
///
/// ```
/// use kelpie_actors::ActorId;
/// let id = ActorId::new("agents", "alice").unwrap();
/// assert_eq!(id.to_string(), "agents/alice");
/// assert!(ActorId::new("agents", "a/b").is_err());
/// ```
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ActorId {
    namespace: String,
    id: String,
}

const MAX_ID_LEN: usize = 128;

fn check_part(part: &str) -> Result<(), &'static str> {
    if part.is_empty() {
        return Err("must not be empty");
    }
    if part.len() > MAX_ID_LEN {
        return Err("must be at most 128 characters");
    }
    if !part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
    {
        return Err("may contain only ASCII letters, digits, `_`, `.`, `:` and `-`");
    }
    Ok(())
}

impl ActorId {
    /// Validates and builds an id.
    pub fn new(namespace: impl Into<String>, id: impl Into<String>) -> Result<Self, ActorError> {
        let (namespace, id) = (namespace.into(), id.into());
        if let Err(reason) = check_part(&namespace).and_then(|()| check_part(&id)) {
            return Err(ActorError::InvalidActorId {
                namespace,
                id,
                reason,
            });
        }
        Ok(ActorId { namespace, id })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The id within the namespace.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key under which this actor's `suffix` lives: `actors/{namespace}/{id}/{suffix}`.
    pub fn key(&self, suffix: &str) -> Vec<u8> {
        format!("actors/{}/{}/{suffix}", self.namespace, self.id).into_bytes()
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.id)
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    versions: BTreeMap<Vec<u8>, u64>,
    version: u64,
}

impl MemoryState {
    fn write(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.version += 1;
        self.versions.insert(key.to_vec(), self.version);
        match value {
            Some(v) => self.data.insert(key.to_vec(), v),
            None => self.data.remove(key),
        };
    }

    fn version_of(&self, key: &[u8]) -> u64 {
        self.versions.get(key).copied().unwrap_or(0)
    }
}

/// An in-memory [`ActorKV`]: for running the runtime on plain tokio, and for tests. Clones
/// share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryKv {
    state: Arc<Mutex<MemoryState>>,
    #[cfg(feature = "canaries")]
    bug: Option<MemoryKvBug>,
}

/// Planted bugs of [`MemoryKv`] (feature `canaries`), for the canary of the store contract.
#[cfg(feature = "canaries")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryKvBug {
    /// A commit validates only the keys the transaction writes, not those it only read: two
    /// transactions that each read both of two keys and write a different one both commit
    /// (write skew). Breaks serializability.
    ValidatesOnlyWrites,
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> Self {
        MemoryKv::default()
    }

    /// An empty store with a planted bug.
    #[cfg(feature = "canaries")]
    pub fn with_bug(bug: MemoryKvBug) -> Self {
        MemoryKv {
            bug: Some(bug),
            ..MemoryKv::default()
        }
    }

    /// Whether a commit must validate the key `key` it read.
    fn validates(&self, key: &[u8], writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> bool {
        #[cfg(feature = "canaries")]
        if self.bug == Some(MemoryKvBug::ValidatesOnlyWrites) {
            return writes.contains_key(key);
        }
        let _ = (key, writes);
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ActorKV for MemoryKv {
    type Txn = MemoryTxn;

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.lock().data.get(key).cloned())
    }

    async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.lock().write(key, Some(value.to_vec()));
        Ok(())
    }

    async fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        self.lock().write(key, None);
        Ok(())
    }

    async fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, KvError> {
        let st = self.lock();
        Ok(st
            .data
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn transaction(&self) -> MemoryTxn {
        MemoryTxn {
            kv: self.clone(),
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
        }
    }
}

/// A [`MemoryKv`] transaction.
#[derive(Debug)]
pub struct MemoryTxn {
    kv: MemoryKv,
    reads: BTreeMap<Vec<u8>, u64>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl KvTransaction for MemoryTxn {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        let st = self.kv.lock();
        self.reads
            .entry(key.to_vec())
            .or_insert_with(|| st.version_of(key));
        Ok(st.data.get(key).cloned())
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
    }

    fn delete(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    async fn commit(self) -> Result<(), KvError> {
        let mut st = self.kv.lock();
        let stale = self
            .reads
            .iter()
            .find(|(k, v)| st.version_of(k) != **v && self.kv.validates(k, &self.writes));
        if let Some((key, _)) = stale {
            return Err(KvError::Conflict {
                key: String::from_utf8_lossy(key).into_owned(),
            });
        }
        for (k, v) in self.writes {
            st.write(&k, v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn actor_ids_are_validated() {
        assert!(ActorId::new("", "x").is_err());
        assert!(ActorId::new("ns", "x".repeat(129)).is_err());
        assert!(ActorId::new("ns", "a b").is_err());
        let id = ActorId::new("ns", "a-b_c.d:e").unwrap();
        assert_eq!(id.key("state"), b"actors/ns/a-b_c.d:e/state".to_vec());
    }

    #[test]
    fn memory_kv_transactions_detect_conflicts() {
        block_on(async {
            let kv = MemoryKv::new();
            kv.set(b"x", b"0").await.unwrap();
            let mut t1 = kv.transaction();
            let mut t2 = kv.transaction();
            assert_eq!(t1.get(b"x").await.unwrap(), Some(b"0".to_vec()));
            assert_eq!(t2.get(b"x").await.unwrap(), Some(b"0".to_vec()));
            t1.set(b"x", b"1");
            t2.set(b"x", b"2");
            t1.commit().await.unwrap();
            assert!(matches!(t2.commit().await, Err(KvError::Conflict { .. })));
            assert_eq!(kv.get(b"x").await.unwrap(), Some(b"1".to_vec()));
            kv.set(b"x/a", b"1").await.unwrap();
            kv.set(b"y", b"1").await.unwrap();
            let keys: Vec<_> = kv
                .scan_prefix(b"x")
                .await
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(keys, vec![b"x".to_vec(), b"x/a".to_vec()]);
        });
    }

    /// Write skew: t1 and t2 both read `x` and `y`; t1 writes `x`, t2 writes `y`. Under
    /// serializable isolation the second commit must conflict (its read of `x` is stale).
    async fn write_skew(kv: &MemoryKv) -> (Result<(), KvError>, Result<(), KvError>) {
        kv.set(b"x", b"0").await.unwrap();
        kv.set(b"y", b"0").await.unwrap();
        let (mut t1, mut t2) = (kv.transaction(), kv.transaction());
        for t in [&mut t1, &mut t2] {
            t.get(b"x").await.unwrap();
            t.get(b"y").await.unwrap();
        }
        t1.set(b"x", b"1");
        t2.set(b"y", b"1");
        (t1.commit().await, t2.commit().await)
    }

    #[test]
    fn memory_kv_rejects_write_skew() {
        block_on(async {
            let (a, b) = write_skew(&MemoryKv::new()).await;
            assert!(a.is_ok());
            assert!(matches!(b, Err(KvError::Conflict { key }) if key == "x"));
        });
    }

    #[cfg(feature = "canaries")]
    #[test]
    fn the_planted_memory_kv_bug_allows_write_skew() {
        block_on(async {
            let (a, b) = write_skew(&MemoryKv::with_bug(MemoryKvBug::ValidatesOnlyWrites)).await;
            assert!(a.is_ok() && b.is_ok());
        });
    }
}
