//! Storage operations on a node's disk, and what each storage fault does to them: failed
//! writes write nothing, torn writes leave a prefix of the new value over the old one,
//! misdirected writes overwrite another key, corrupted reads flip a bit, a lost fsync reports
//! success and persists nothing, a crash during a commit applies it all or nothing and kills
//! the node. Every operation is traced once, with its outcome.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, MutexGuard};
use std::time::Duration;

use crate::error::StorageError;
use crate::fault::{FaultKind, Fired, OpKind};
use crate::ids::NodeId;
use crate::trace::{stable_hash, EventKind, TraceEvent};

use super::disk::Key;
use super::nodes::NodeStatus;
use super::{State, World};

/// A scan's result: keys with their values, in key order.
pub(crate) type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Faults decided for one storage operation.
pub(crate) struct Decided {
    fired: Vec<Fired>,
    /// The virtual time of the decision in nanoseconds while it is still now (no latency
    /// waited out since; [`Decided::UNREAD`] if none was read): the operation's event is at
    /// that time, and the clock need not be read again. A plain integer keeps every storage
    /// operation's future as small as it was.
    at_ns: u64,
}

impl Decided {
    const UNREAD: u64 = u64::MAX;

    /// The operation's virtual time: the decision's, or the clock's after a wait.
    fn at(&self, world: &World) -> Duration {
        match self.at_ns {
            Decided::UNREAD => world.elapsed(),
            ns => Duration::from_nanos(ns),
        }
    }

    /// The index of the declared fault of `kind` that fired, if one did.
    fn has(&self, kind: FaultKind) -> Option<usize> {
        self.fired
            .iter()
            .find(|f| f.spec.kind() == kind)
            .map(|f| f.index)
    }

    /// The error a failed write reports, if a fault made it fail.
    fn write_error(&self) -> Option<StorageError> {
        if self.has(FaultKind::StorageWriteFail).is_some() {
            Some(StorageError::Io { op: "write" })
        } else if self.has(FaultKind::DiskFull).is_some() {
            Some(StorageError::DiskFull)
        } else {
            None
        }
    }
}

/// The key of events about no key (sync, commit): one shared empty key.
fn no_key() -> Key {
    static EMPTY: LazyLock<Key> = LazyLock::new(|| Key::from(&b""[..]));
    EMPTY.clone()
}

impl State {
    /// `key` as a [`Key`]: `node`'s disk's own if it has the key, else a new one.
    fn key_of(&self, node: NodeId, key: &[u8]) -> Key {
        self.disks[node.index()]
            .key(key)
            .unwrap_or_else(|| Key::from(key))
    }

    /// Records a storage event at `at`. `key` is shared with the disk when the disk has it.
    #[inline]
    fn trace_storage(
        &mut self,
        at: Duration,
        node: NodeId,
        op: OpKind,
        key: Key,
        value: Option<&[u8]>,
        ok: bool,
    ) {
        let value = value.map_or(0, |v| stable_hash(v) | 1);
        let kind = EventKind::Storage { op, key, value, ok };
        self.trace.record(TraceEvent { at, node, kind });
    }
}

impl World {
    /// Decides the faults of one storage operation and waits out any injected latency.
    pub(crate) async fn storage_begin(
        self: &Arc<Self>,
        node: NodeId,
        op: OpKind,
        key: Option<&[u8]>,
    ) -> Decided {
        self.catch_up();
        let (fired, at) = self.decide(op, node, key);
        // Nanoseconds fit a u64 for 584 years of virtual time.
        let at_ns = at.map_or(Decided::UNREAD, |t| t.as_nanos() as u64);
        let mut d = Decided { fired, at_ns };
        if let Some(i) = d.has(FaultKind::StorageLatency) {
            let max = self.fault_param(i, "max_ms").unwrap_or(1).max(1);
            let ns = self.draw(i, 1..max * 1_000_000 + 1);
            madsim::time::sleep(Duration::from_nanos(ns)).await;
            d.at_ns = Decided::UNREAD;
        }
        d
    }

    /// The operation's lock on the world, once its faults are decided (and any injected
    /// latency waited out); `NodeDown` if the node went down meanwhile.
    fn lock_up(&self, node: NodeId) -> Result<MutexGuard<'_, State>, StorageError> {
        let st = self.lock();
        if st.nodes.status(node) == NodeStatus::Down {
            return Err(StorageError::NodeDown);
        }
        Ok(st)
    }

    /// Reads `key` on `node`'s disk (unsynced writes included).
    pub(crate) fn storage_get(
        &self,
        node: NodeId,
        key: &[u8],
        d: &Decided,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let mut st = self.lock_up(node)?;
        let at = d.at(self);
        if d.has(FaultKind::StorageReadFail).is_some() {
            let k = st.key_of(node, key);
            st.trace_storage(at, node, OpKind::Get, k, None, false);
            return Err(StorageError::Io { op: "get" });
        }
        let mut value = st.disks[node.index()].read(key);
        if let (Some(i), Some(v)) = (d.has(FaultKind::StorageCorruption), value.as_mut()) {
            if !v.is_empty() {
                let bit = st.faults.draw(i, 0..v.len() as u64 * 8);
                v[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
        }
        let k = st.key_of(node, key);
        st.trace_storage(at, node, OpKind::Get, k, value.as_deref(), true);
        Ok(value)
    }

    /// Writes `key` on `node`'s disk, volatile until synced.
    pub(crate) fn storage_set(
        &self,
        node: NodeId,
        key: &[u8],
        value: &[u8],
        d: &Decided,
    ) -> Result<(), StorageError> {
        let mut st = self.lock_up(node)?;
        let at = d.at(self);
        if let Some(err) = d.write_error() {
            let k = st.key_of(node, key);
            st.trace_storage(at, node, OpKind::Set, k, Some(value), false);
            return Err(err);
        }
        let st = &mut *st;
        let disk = &mut st.disks[node.index()];
        let k = if let Some(i) = d.has(FaultKind::StorageMisdirectedWrite) {
            disk.write_misdirected(key, value, |n| st.faults.draw(i, 0..n));
            // Reported as success: the disk believes it wrote `key`.
            st.key_of(node, key)
        } else if let Some(i) = d.has(FaultKind::StoragePartialWrite) {
            let cut = st.faults.draw(i, 0..value.len().max(1) as u64) as usize;
            disk.write_torn(key, value, cut)
        } else {
            disk.write(key, Some(value))
        };
        st.trace_storage(at, node, OpKind::Set, k, Some(value), true);
        Ok(())
    }

    /// Deletes `key` on `node`'s disk, volatile until synced.
    pub(crate) fn storage_delete(
        &self,
        node: NodeId,
        key: &[u8],
        d: &Decided,
    ) -> Result<(), StorageError> {
        let mut st = self.lock_up(node)?;
        let at = d.at(self);
        if let Some(err) = d.write_error() {
            let k = st.key_of(node, key);
            st.trace_storage(at, node, OpKind::Delete, k, None, false);
            return Err(err);
        }
        let k = st.disks[node.index()].write(key, None);
        st.trace_storage(at, node, OpKind::Delete, k, None, true);
        Ok(())
    }

    /// Every key starting with `prefix` on `node`'s disk, with its value, in key order.
    pub(crate) fn storage_scan(
        &self,
        node: NodeId,
        prefix: &[u8],
        d: &Decided,
    ) -> Result<Rows, StorageError> {
        let mut st = self.lock_up(node)?;
        let at = d.at(self);
        if d.has(FaultKind::StorageReadFail).is_some() {
            let k = st.key_of(node, prefix);
            st.trace_storage(at, node, OpKind::Scan, k, None, false);
            return Err(StorageError::Io { op: "scan" });
        }
        let mut rows = st.disks[node.index()].scan(prefix);
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
        let k = st.key_of(node, prefix);
        let value = digest.to_le_bytes();
        st.trace_storage(at, node, OpKind::Scan, k, Some(&value), true);
        Ok(rows)
    }

    /// Makes every earlier write on `node`'s disk durable, unless a lost fsync drops it.
    pub(crate) fn storage_sync(&self, node: NodeId, d: &Decided) -> Result<(), StorageError> {
        let mut st = self.lock_up(node)?;
        let at = d.at(self);
        if d.has(FaultKind::StorageFsyncLoss).is_none() {
            st.disks[node.index()].sync();
        }
        st.trace_storage(at, node, OpKind::Sync, no_key(), None, true);
        Ok(())
    }

    /// The version of `key` on `node`'s disk (for optimistic transactions).
    pub(crate) fn storage_version(&self, node: NodeId, key: &[u8]) -> u64 {
        self.lock().disks[node.index()].version_of(key)
    }

    /// Number of unsynced writes on `node`'s disk.
    pub(crate) fn unsynced_len(&self, node: NodeId) -> usize {
        self.lock().disks[node.index()].unsynced_len()
    }

    /// Commits a transaction on `node`'s disk: validates the versions `reads` saw, then
    /// applies `writes` durably and atomically. Under a crash during the commit the writes
    /// apply all or nothing and the node crashes (restarting 100 ms later; the supervisor
    /// only loses its unsynced writes).
    pub(crate) fn storage_commit(
        self: &Arc<Self>,
        node: NodeId,
        reads: &BTreeMap<Vec<u8>, u64>,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        d: &Decided,
    ) -> Result<(), StorageError> {
        let mut st = self.lock_up(node)?;
        let at = d.at(self);
        if let Some(err) = d.write_error() {
            st.trace_storage(at, node, OpKind::Commit, no_key(), None, false);
            return Err(err);
        }
        let disk = &st.disks[node.index()];
        if let Some((key, _)) = reads.iter().find(|(k, v)| disk.version_of(k) != **v) {
            let key = String::from_utf8_lossy(key).into_owned();
            st.trace_storage(at, node, OpKind::Commit, no_key(), None, false);
            return Err(StorageError::Conflict { key });
        }
        let crash = d.has(FaultKind::CrashDuringTransaction);
        let apply = match crash {
            Some(i) => st.faults.draw(i, 0..2) == 1,
            None => true,
        };
        let digest = stable_hash(&writes);
        if apply {
            for (k, v) in writes {
                st.disks[node.index()].write_durable(&k, v);
            }
        }
        let value = digest.to_le_bytes();
        let ok = crash.is_none();
        st.trace_storage(at, node, OpKind::Commit, no_key(), Some(&value), ok);
        drop(st);
        if crash.is_some() {
            if node == NodeId::MAIN {
                self.lock().disks[0].crash();
            } else {
                self.kill(node);
                self.delayed(Duration::from_millis(100), move |w| w.restart(node));
            }
            return Err(StorageError::Crashed);
        }
        Ok(())
    }
}
