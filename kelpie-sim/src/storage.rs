//! A byte-level key-value disk per node, with a durable and a volatile layer.
//!
//! [`SimStorage::set`] and [`SimStorage::delete`] land in the volatile layer, visible to reads at
//! once; [`SimStorage::sync`] makes them durable. A crash ([`SimEnv::kill`],
//! [`FaultKind::NodeCrash`]) loses exactly the unsynced writes. [`Transaction`]s are optimistic:
//! reads record versions, [`Transaction::commit`] fails with [`StorageError::Conflict`] if a key
//! read or written changed since, and applies its writes durably and atomically otherwise.
//! Storage faults act the way a real disk shows them: failed writes write nothing, torn writes
//! leave a prefix of the new value over the old one, misdirected writes overwrite another key,
//! corrupted reads flip a bit, a lost fsync reports success and persists nothing.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use crate::fault::{FaultKind, OpKind};
use crate::node::{NodeId, NodeStatus};
use crate::sim::{SimEnv, State, World};
use crate::trace::{stable_hash, EventKind, TraceEvent};

/// Errors of storage operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O error (injected by [`FaultKind::StorageWriteFail`] or
    /// [`FaultKind::StorageReadFail`]).
    #[error("i/o error during {op}")]
    Io {
        /// The operation (`get`, `set`, ...).
        op: &'static str,
    },
    /// The disk is full ([`FaultKind::DiskFull`]); nothing was written.
    #[error("disk full")]
    DiskFull,
    /// A transaction's key changed between its read and its commit.
    #[error("transaction conflict on key {key:?}")]
    Conflict {
        /// The first conflicting key (lossy UTF-8).
        key: String,
    },
    /// The node crashed during the commit ([`FaultKind::CrashDuringTransaction`]); the
    /// transaction was applied entirely or not at all.
    #[error("node crashed during commit")]
    Crashed,
    /// The disk's node is down.
    #[error("node is down")]
    NodeDown,
}

/// A key as the disk stores it, shared with the trace events that name it (one allocation
/// per key, not one per write and event).
pub(crate) type Key = Arc<[u8]>;

/// One key's state on a disk.
#[derive(Default)]
struct Slot {
    /// The synced value.
    durable: Option<Vec<u8>>,
    /// An unsynced write; `Some(None)` is an unsynced delete.
    volatile: Option<Option<Vec<u8>>>,
    /// Version of the last write (for optimistic transactions). Kept after a delete, so that
    /// a delete and a re-create between a read and a commit still conflict.
    version: u64,
}

impl Slot {
    fn visible(&self) -> Option<&Vec<u8>> {
        match &self.volatile {
            Some(v) => v.as_ref(),
            None => self.durable.as_ref(),
        }
    }
}

/// One node's disk: one ordered map of keys to their durable value, unsynced write and
/// version.
#[derive(Default)]
pub(crate) struct Disk {
    slots: BTreeMap<Key, Slot>,
    /// Keys written since the last sync or crash (a key at most once while its write is
    /// unsynced; a transaction may since have made it durable).
    dirty: Vec<Key>,
    version: u64,
}

impl Disk {
    pub(crate) fn new() -> Self {
        Disk::default()
    }

    /// A crash: the unsynced writes are lost.
    pub(crate) fn crash(&mut self) {
        for k in self.dirty.drain(..) {
            if let Some(slot) = self.slots.get_mut(&*k) {
                slot.volatile = None;
            }
        }
    }

    /// The stored key equal to `key`, if any (to share it, not copy it).
    fn key(&self, key: &[u8]) -> Option<Key> {
        self.slots.get_key_value(key).map(|(k, _)| k.clone())
    }

    /// The slot of `key`, created if new; with the stored key.
    fn slot(&mut self, key: &[u8]) -> (Key, &mut Slot) {
        let k = self.key(key).unwrap_or_else(|| Key::from(key));
        let slot = self.slots.entry(k.clone()).or_default();
        (k, slot)
    }

    fn read(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.slots.get(key).and_then(Slot::visible).cloned()
    }

    /// An unsynced write (`None` deletes); returns the stored key.
    fn write(&mut self, key: &[u8], value: Option<Vec<u8>>) -> Key {
        self.version += 1;
        let version = self.version;
        let (k, slot) = self.slot(key);
        slot.version = version;
        if slot.volatile.replace(value).is_none() {
            if self.dirty.capacity() == 0 {
                self.dirty.reserve(16);
            }
            self.dirty.push(k.clone());
        }
        k
    }

    fn write_durable(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.version += 1;
        let version = self.version;
        let (_, slot) = self.slot(key);
        slot.version = version;
        slot.volatile = None;
        slot.durable = value;
    }

    fn version_of(&self, key: &[u8]) -> u64 {
        self.slots.get(key).map_or(0, |s| s.version)
    }

    fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.slots
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, slot)| slot.visible().map(|v| (k.to_vec(), v.clone())))
            .collect()
    }

    fn sync(&mut self) {
        for k in self.dirty.drain(..) {
            if let Some(slot) = self.slots.get_mut(&*k) {
                if let Some(v) = slot.volatile.take() {
                    slot.durable = v;
                }
            }
        }
    }

    fn unsynced_len(&self) -> usize {
        self.slots.values().filter(|s| s.volatile.is_some()).count()
    }

    /// Keys with any value, in order (targets of misdirected writes).
    fn keys(&self) -> Vec<Key> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.visible().is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// A node's disk, as seen from that node; see [`SimEnv::storage`].
#[derive(Clone, Debug)]
pub struct SimStorage {
    env: SimEnv,
}

impl SimEnv {
    /// This env's node's disk.
    pub fn storage(&self) -> SimStorage {
        SimStorage { env: self.clone() }
    }
}

/// Faults decided for one storage operation.
struct Decided {
    fired: Vec<crate::fault::Fired>,
}

impl Decided {
    fn has(&self, kind: FaultKind) -> Option<usize> {
        self.fired
            .iter()
            .find(|f| f.spec.kind() == kind)
            .map(|f| f.index)
    }
}

impl SimStorage {
    fn world(&self) -> &World {
        &self.env.world
    }

    fn node(&self) -> NodeId {
        self.env.node
    }

    /// Decides the faults of one operation and waits out any injected latency.
    async fn begin(&self, op: OpKind, key: Option<&[u8]>) -> Result<Decided, StorageError> {
        crate::node::catch_up(&self.env.world);
        let d = Decided {
            fired: self.world().decide(op, self.node(), key),
        };
        if let Some(i) = d.has(FaultKind::StorageLatency) {
            let max = self.env.world.plan[i].param("max_ms").unwrap_or(1).max(1);
            let ns = self.world().lock().faults.draw(i, 1..max * 1_000_000 + 1);
            madsim::time::sleep(Duration::from_nanos(ns)).await;
        }
        Ok(d)
    }

    /// The operation's lock on the world, once its faults are decided (and any injected
    /// latency waited out); `NodeDown` if the node went down meanwhile.
    fn lock_up(&self) -> Result<MutexGuard<'_, State>, StorageError> {
        let st = self.world().lock();
        if st.nodes[self.node().index()].status == NodeStatus::Down {
            return Err(StorageError::NodeDown);
        }
        Ok(st)
    }

    /// `key` as a [`Key`]: the disk's own if it has the key, else a new one.
    fn key_of(&self, st: &State, key: &[u8]) -> Key {
        st.disks[self.node().index()]
            .key(key)
            .unwrap_or_else(|| Key::from(key))
    }

    /// Records a storage event. `key` is shared with the disk when the disk has it.
    fn trace(&self, st: &mut State, op: OpKind, key: Key, value: Option<&[u8]>, ok: bool) {
        let at = self.world().elapsed();
        let value = value.map_or(0, |v| stable_hash(v) | 1);
        let kind = EventKind::Storage { op, key, value, ok };
        st.trace.record(TraceEvent {
            at,
            node: self.node(),
            kind,
        });
    }

    /// Reads `key` (unsynced writes included).
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StorageError> {
        let key = key.as_ref();
        let d = self.begin(OpKind::Get, Some(key)).await?;
        let mut st = self.lock_up()?;
        if d.has(FaultKind::StorageReadFail).is_some() {
            let k = self.key_of(&st, key);
            self.trace(&mut st, OpKind::Get, k, None, false);
            return Err(StorageError::Io { op: "get" });
        }
        let mut value = st.disks[self.node().index()].read(key);
        if let (Some(i), Some(v)) = (d.has(FaultKind::StorageCorruption), value.as_mut()) {
            if !v.is_empty() {
                let bit = st.faults.draw(i, 0..v.len() as u64 * 8);
                v[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
        }
        let k = self.key_of(&st, key);
        self.trace(&mut st, OpKind::Get, k, value.as_deref(), true);
        Ok(value)
    }

    /// Writes `key` to the volatile layer (durable after [`SimStorage::sync`]).
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), StorageError> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let d = self.begin(OpKind::Set, Some(key)).await?;
        let mut st = self.lock_up()?;
        if let Some(err) = write_error(&d) {
            let k = self.key_of(&st, key);
            self.trace(&mut st, OpKind::Set, k, Some(value), false);
            return Err(err);
        }
        let node = self.node().index();
        if let Some(i) = d.has(FaultKind::StorageMisdirectedWrite) {
            let others: Vec<Key> = st.disks[node]
                .keys()
                .into_iter()
                .filter(|k| **k != *key)
                .collect();
            if !others.is_empty() {
                let pick = st.faults.draw(i, 0..others.len() as u64) as usize;
                st.disks[node].write(&others[pick], Some(value.to_vec()));
            }
            // Reported as success: the disk believes it wrote `key`.
            let k = self.key_of(&st, key);
            self.trace(&mut st, OpKind::Set, k, Some(value), true);
            return Ok(());
        }
        let mut stored = value.to_vec();
        if let Some(i) = d.has(FaultKind::StoragePartialWrite) {
            let cut = st.faults.draw(i, 0..value.len().max(1) as u64) as usize;
            let old = st.disks[node].read(key).unwrap_or_default();
            stored.truncate(cut);
            if old.len() > cut {
                stored.extend_from_slice(&old[cut..]);
            }
        }
        let k = st.disks[node].write(key, Some(stored));
        self.trace(&mut st, OpKind::Set, k, Some(value), true);
        Ok(())
    }

    /// Deletes `key` in the volatile layer (durable after [`SimStorage::sync`]).
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<(), StorageError> {
        let key = key.as_ref();
        let d = self.begin(OpKind::Delete, Some(key)).await?;
        let mut st = self.lock_up()?;
        if let Some(err) = write_error(&d) {
            let k = self.key_of(&st, key);
            self.trace(&mut st, OpKind::Delete, k, None, false);
            return Err(err);
        }
        let k = st.disks[self.node().index()].write(key, None);
        self.trace(&mut st, OpKind::Delete, k, None, true);
        Ok(())
    }

    /// Every key starting with `prefix`, with its value, in key order.
    pub async fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        let prefix = prefix.as_ref();
        let d = self.begin(OpKind::Scan, Some(prefix)).await?;
        let mut st = self.lock_up()?;
        if d.has(FaultKind::StorageReadFail).is_some() {
            let k = self.key_of(&st, prefix);
            self.trace(&mut st, OpKind::Scan, k, None, false);
            return Err(StorageError::Io { op: "scan" });
        }
        let mut rows = st.disks[self.node().index()].scan(prefix);
        if let Some(i) = d.has(FaultKind::StorageCorruption) {
            let total: u64 = rows.iter().map(|(_, v)| v.len() as u64 * 8).sum();
            if total > 0 {
                let mut bit = st.faults.draw(i, 0..total);
                for (_, v) in rows.iter_mut() {
                    let bits = v.len() as u64 * 8;
                    if bit < bits {
                        v[(bit / 8) as usize] ^= 1 << (bit % 8);
                        break;
                    }
                    bit -= bits;
                }
            }
        }
        let digest = stable_hash(&rows);
        let k = self.key_of(&st, prefix);
        self.trace(&mut st, OpKind::Scan, k, Some(&digest.to_le_bytes()), true);
        Ok(rows)
    }

    /// Makes every earlier write durable (unless a [`FaultKind::StorageFsyncLoss`] fault
    /// silently drops the sync).
    pub async fn sync(&self) -> Result<(), StorageError> {
        let d = self.begin(OpKind::Sync, None).await?;
        let mut st = self.lock_up()?;
        if d.has(FaultKind::StorageFsyncLoss).is_none() {
            st.disks[self.node().index()].sync();
        }
        self.trace(&mut st, OpKind::Sync, no_key(), None, true);
        Ok(())
    }

    /// Starts an optimistic transaction.
    pub fn transaction(&self) -> Transaction {
        Transaction {
            storage: self.clone(),
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
        }
    }

    /// Number of writes not yet synced (for tests of crash semantics).
    pub fn unsynced_len(&self) -> usize {
        self.world().lock().disks[self.node().index()].unsynced_len()
    }
}

/// The key of events about no key (sync, commit): one shared empty key.
fn no_key() -> Key {
    static EMPTY: std::sync::LazyLock<Key> = std::sync::LazyLock::new(|| Key::from(&b""[..]));
    EMPTY.clone()
}

fn write_error(d: &Decided) -> Option<StorageError> {
    if d.has(FaultKind::StorageWriteFail).is_some() {
        Some(StorageError::Io { op: "write" })
    } else if d.has(FaultKind::DiskFull).is_some() {
        Some(StorageError::DiskFull)
    } else {
        None
    }
}

/// An optimistic transaction over one node's disk: reads record the version they saw, writes
/// are buffered, [`Transaction::commit`] validates and applies them atomically and durably.
#[derive(Debug)]
pub struct Transaction {
    storage: SimStorage,
    reads: BTreeMap<Vec<u8>, u64>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Transaction {
    /// Reads `key`: this transaction's own write if any, else the disk (recording the version).
    pub async fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StorageError> {
        let key = key.as_ref();
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        let version =
            self.storage.world().lock().disks[self.storage.node().index()].version_of(key);
        let value = self.storage.get(key).await?;
        self.reads.entry(key.to_vec()).or_insert(version);
        Ok(value)
    }

    /// Buffers a write of `key`.
    pub fn set(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.writes
            .insert(key.as_ref().to_vec(), Some(value.as_ref().to_vec()));
    }

    /// Buffers a delete of `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.writes.insert(key.as_ref().to_vec(), None);
    }

    /// Validates the reads (no key read changed since) and applies every write durably and
    /// atomically. Under [`FaultKind::CrashDuringTransaction`] the node crashes mid-commit:
    /// the writes are applied all or nothing, and the commit returns [`StorageError::Crashed`].
    pub async fn commit(self) -> Result<(), StorageError> {
        let s = &self.storage;
        let d = s.begin(OpKind::Commit, None).await?;
        let node = s.node();
        let mut st = s.lock_up()?;
        if let Some(err) = write_error(&d) {
            s.trace(&mut st, OpKind::Commit, no_key(), None, false);
            return Err(err);
        }
        let disk = &st.disks[node.index()];
        if let Some((key, _)) = self.reads.iter().find(|(k, v)| disk.version_of(k) != **v) {
            let key = String::from_utf8_lossy(key).into_owned();
            s.trace(&mut st, OpKind::Commit, no_key(), None, false);
            return Err(StorageError::Conflict { key });
        }
        let crash = d.has(FaultKind::CrashDuringTransaction);
        let apply = match crash {
            Some(i) => st.faults.draw(i, 0..2) == 1,
            None => true,
        };
        let digest = stable_hash(&self.writes);
        if apply {
            for (k, v) in self.writes {
                st.disks[node.index()].write_durable(&k, v);
            }
        }
        s.trace(
            &mut st,
            OpKind::Commit,
            no_key(),
            Some(&digest.to_le_bytes()),
            crash.is_none(),
        );
        drop(st);
        if crash.is_some() {
            let world = s.env.world.clone();
            if node == NodeId::MAIN {
                world.lock().disks[0].crash();
            } else {
                crate::node::kill(&world, node);
                let restart_after = Duration::from_millis(100);
                crate::node::delayed(&world, restart_after, move |w| {
                    crate::node::restart(w, node)
                });
            }
            return Err(StorageError::Crashed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(v: &str) -> Option<Vec<u8>> {
        Some(v.as_bytes().to_vec())
    }

    #[test]
    fn crash_loses_exactly_the_unsynced_writes_and_deletes() {
        let mut d = Disk::new();
        d.write(b"a", val("1"));
        d.write(b"b", val("1"));
        d.sync();
        d.write(b"a", val("2"));
        d.write(b"b", None);
        d.write(b"c", val("1"));
        assert_eq!(d.unsynced_len(), 3);
        assert_eq!((d.read(b"a"), d.read(b"b")), (val("2"), None));
        d.crash();
        assert_eq!(d.unsynced_len(), 0);
        assert_eq!(
            (d.read(b"a"), d.read(b"b"), d.read(b"c")),
            (val("1"), val("1"), None)
        );
    }

    #[test]
    fn a_durable_write_between_unsynced_ones_is_counted_and_kept_once() {
        let mut d = Disk::new();
        d.write(b"k", val("1"));
        d.write_durable(b"k", val("2"));
        d.write(b"k", val("3"));
        assert_eq!(d.unsynced_len(), 1);
        d.crash();
        assert_eq!(d.read(b"k"), val("2"));
        d.write(b"k", val("4"));
        d.sync();
        d.crash();
        assert_eq!(d.read(b"k"), val("4"));
    }

    #[test]
    fn versions_survive_deletes_so_a_recreated_key_still_conflicts() {
        let mut d = Disk::new();
        d.write(b"k", val("1"));
        let seen = d.version_of(b"k");
        d.write(b"k", None);
        d.write(b"k", val("1"));
        assert_ne!(d.version_of(b"k"), seen);
        assert_eq!(d.version_of(b"never"), 0);
    }

    #[test]
    fn scan_shows_the_visible_values_under_the_prefix_in_order() {
        let mut d = Disk::new();
        for k in ["p/b", "p/a", "p/c", "q", "p"] {
            d.write(k.as_bytes(), val(k));
        }
        d.sync();
        d.write(b"p/c", None);
        d.write(b"p/a", val("new"));
        let keys: Vec<(String, String)> = d
            .scan(b"p/")
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            keys,
            [("p/a".into(), "new".into()), ("p/b".into(), "p/b".into())]
        );
        assert_eq!(d.keys().len(), 4, "deleted keys are not targets");
    }

    #[test]
    fn the_trace_shares_the_disk_key() {
        let mut d = Disk::new();
        let first = d.write(b"k", val("1"));
        let again = d.write(b"k", val("2"));
        assert!(Arc::ptr_eq(&first, &again));
    }
}
