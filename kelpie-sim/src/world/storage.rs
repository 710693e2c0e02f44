//! Storage operations on a node's disk, and what each storage fault does to them: failed
//! writes write nothing, torn writes leave a prefix of the new value over the old one,
//! misdirected writes overwrite another key, corrupted reads flip a bit, a lost fsync reports
//! success and persists nothing, a crash during a commit applies it all or nothing and kills
//! the node. Every operation is traced once, with its outcome.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
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
}

impl Decided {
    /// The index of the declared fault of `kind` that fired, if one did.
    #[inline]
    fn has(&self, kind: FaultKind) -> Option<usize> {
        self.fired
            .iter()
            .find(|f| f.spec.kind() == kind)
            .map(|f| f.index)
    }

    /// The error a failed write reports, if a fault made it fail.
    #[inline]
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
    /// `NodeDown` if `node` is down: a storage operation of a down node fails.
    fn node_up(&self, node: NodeId) -> Result<(), StorageError> {
        match self.nodes.status(node) {
            NodeStatus::Down => Err(StorageError::NodeDown),
            _ => Ok(()),
        }
    }

    /// `key` as a [`Key`]: `node`'s disk's own if it has the key, else a new one.
    fn key_of(&self, node: NodeId, key: &[u8]) -> Key {
        self.disks[node.index()]
            .key(key)
            .unwrap_or_else(|| Key::from(key))
    }

    /// Records a storage event at `at`. `key` is shared with the disk when the disk has it.
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
    /// Runs one storage operation of `node`: processes the ticks due, decides the operation's
    /// faults, waits out any injected latency, then runs `body` on the locked state at the
    /// operation's virtual time (`NodeDown` if the node is down by then). Without injected
    /// latency the decision and the operation share one lock and one clock reading.
    pub(crate) async fn storage_op<R>(
        self: &Arc<Self>,
        node: NodeId,
        op: OpKind,
        key: Option<&[u8]>,
        body: impl FnOnce(&mut State, &Decided, Duration) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        self.catch_up();
        // The lock is released before the latency is waited out (the block ends first).
        let (d, latency) = {
            let at = self.elapsed();
            let mut st = self.lock();
            let fired = if self.fault_ops & (1 << op as u32) != 0 {
                self.decide_locked(&mut st, at, op, node, key)
            } else {
                Vec::new()
            };
            let d = Decided { fired };
            let Some(i) = d.has(FaultKind::StorageLatency) else {
                st.node_up(node)?;
                return body(&mut st, &d, at);
            };
            let max = self.fault_param(i, "max_ms").unwrap_or(1).max(1);
            let ns = st.faults.draw(i, 1..max * 1_000_000 + 1);
            (d, Duration::from_nanos(ns))
        };
        // Boxed: the timer stays out of every storage operation's future (48 bytes more on
        // each, and a slower poll of every future that holds one), at one allocation per
        // injected latency.
        Box::pin(self.storage_op_later(node, d, latency, body)).await
    }

    /// [`World::storage_op`] once injected latency has passed: the operation runs then.
    async fn storage_op_later<R>(
        &self,
        node: NodeId,
        d: Decided,
        latency: Duration,
        body: impl FnOnce(&mut State, &Decided, Duration) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        madsim::time::sleep(latency).await;
        let at = self.elapsed();
        let mut st = self.lock();
        st.node_up(node)?;
        body(&mut st, &d, at)
    }

    /// The version of `key` on `node`'s disk (for optimistic transactions).
    pub(crate) fn storage_version(&self, node: NodeId, key: &[u8]) -> u64 {
        self.lock().disks[node.index()].version_of(key)
    }

    /// Number of unsynced writes on `node`'s disk.
    pub(crate) fn unsynced_len(&self, node: NodeId) -> usize {
        self.lock().disks[node.index()].unsynced_len()
    }

    /// A commit crashed `node` (see [`State::storage_commit`]): the node is killed and
    /// restarts 100 ms later; the supervisor only loses its unsynced writes.
    pub(crate) fn crash_after_commit(self: &Arc<Self>, node: NodeId) {
        if node == NodeId::MAIN {
            self.lock().disks[0].crash();
        } else {
            self.kill(node);
            self.delayed(Duration::from_millis(100), move |w| w.restart(node));
        }
    }
}

/// The operations, each run by [`World::storage_op`] on the locked state at its virtual time
/// `at`, with its decided faults `d`.
impl State {
    /// Reads `key` on `node`'s disk (unsynced writes included).
    pub(crate) fn storage_get(
        &mut self,
        node: NodeId,
        key: &[u8],
        d: &Decided,
        at: Duration,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        if d.has(FaultKind::StorageReadFail).is_some() {
            let k = self.key_of(node, key);
            self.trace_storage(at, node, OpKind::Get, k, None, false);
            return Err(StorageError::Io { op: "get" });
        }
        let mut value = self.disks[node.index()].read(key);
        if let (Some(i), Some(v)) = (d.has(FaultKind::StorageCorruption), value.as_mut()) {
            if !v.is_empty() {
                let bit = self.faults.draw(i, 0..v.len() as u64 * 8);
                v[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
        }
        let k = self.key_of(node, key);
        self.trace_storage(at, node, OpKind::Get, k, value.as_deref(), true);
        Ok(value)
    }

    /// Writes `key` on `node`'s disk, volatile until synced.
    pub(crate) fn storage_set(
        &mut self,
        node: NodeId,
        key: &[u8],
        value: &[u8],
        d: &Decided,
        at: Duration,
    ) -> Result<(), StorageError> {
        if let Some(err) = d.write_error() {
            let k = self.key_of(node, key);
            self.trace_storage(at, node, OpKind::Set, k, Some(value), false);
            return Err(err);
        }
        let disk = &mut self.disks[node.index()];
        let k = if let Some(i) = d.has(FaultKind::StorageMisdirectedWrite) {
            disk.write_misdirected(key, value, |n| self.faults.draw(i, 0..n));
            // Reported as success: the disk believes it wrote `key`.
            self.key_of(node, key)
        } else if let Some(i) = d.has(FaultKind::StoragePartialWrite) {
            let cut = self.faults.draw(i, 0..value.len().max(1) as u64) as usize;
            disk.write_torn(key, value, cut)
        } else {
            disk.write(key, Some(value))
        };
        self.trace_storage(at, node, OpKind::Set, k, Some(value), true);
        Ok(())
    }

    /// Deletes `key` on `node`'s disk, volatile until synced.
    pub(crate) fn storage_delete(
        &mut self,
        node: NodeId,
        key: &[u8],
        d: &Decided,
        at: Duration,
    ) -> Result<(), StorageError> {
        if let Some(err) = d.write_error() {
            let k = self.key_of(node, key);
            self.trace_storage(at, node, OpKind::Delete, k, None, false);
            return Err(err);
        }
        let k = self.disks[node.index()].write(key, None);
        self.trace_storage(at, node, OpKind::Delete, k, None, true);
        Ok(())
    }

    /// Every key starting with `prefix` on `node`'s disk, with its value, in key order.
    pub(crate) fn storage_scan(
        &mut self,
        node: NodeId,
        prefix: &[u8],
        d: &Decided,
        at: Duration,
    ) -> Result<Rows, StorageError> {
        if d.has(FaultKind::StorageReadFail).is_some() {
            let k = self.key_of(node, prefix);
            self.trace_storage(at, node, OpKind::Scan, k, None, false);
            return Err(StorageError::Io { op: "scan" });
        }
        let mut rows = self.disks[node.index()].scan(prefix);
        if let Some(i) = d.has(FaultKind::StorageCorruption) {
            let total: u64 = rows.iter().map(|(_, v)| v.len() as u64 * 8).sum();
            if total > 0 {
                let mut bit = self.faults.draw(i, 0..total);
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
        let k = self.key_of(node, prefix);
        let value = digest.to_le_bytes();
        self.trace_storage(at, node, OpKind::Scan, k, Some(&value), true);
        Ok(rows)
    }

    /// Makes every earlier write on `node`'s disk durable, unless a lost fsync drops it.
    pub(crate) fn storage_sync(
        &mut self,
        node: NodeId,
        d: &Decided,
        at: Duration,
    ) -> Result<(), StorageError> {
        if d.has(FaultKind::StorageFsyncLoss).is_none() {
            self.disks[node.index()].sync();
        }
        self.trace_storage(at, node, OpKind::Sync, no_key(), None, true);
        Ok(())
    }

    /// Commits a transaction on `node`'s disk: validates the versions `reads` saw, then
    /// applies `writes` durably and atomically. Under a crash during the commit the writes
    /// apply all or nothing, and `Ok(true)` says the node crashes
    /// ([`World::crash_after_commit`], outside the lock).
    pub(crate) fn storage_commit(
        &mut self,
        node: NodeId,
        reads: &BTreeMap<Vec<u8>, u64>,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        d: &Decided,
        at: Duration,
    ) -> Result<bool, StorageError> {
        if let Some(err) = d.write_error() {
            self.trace_storage(at, node, OpKind::Commit, no_key(), None, false);
            return Err(err);
        }
        let disk = &self.disks[node.index()];
        if let Some((key, _)) = reads.iter().find(|(k, v)| disk.version_of(k) != **v) {
            let key = String::from_utf8_lossy(key).into_owned();
            self.trace_storage(at, node, OpKind::Commit, no_key(), None, false);
            return Err(StorageError::Conflict { key });
        }
        let crash = d.has(FaultKind::CrashDuringTransaction);
        let apply = match crash {
            Some(i) => self.faults.draw(i, 0..2) == 1,
            None => true,
        };
        let digest = stable_hash(&writes);
        if apply {
            for (k, v) in writes {
                self.disks[node.index()].write_durable(&k, v);
            }
        }
        let value = digest.to_le_bytes();
        let ok = crash.is_none();
        self.trace_storage(at, node, OpKind::Commit, no_key(), Some(&value), ok);
        Ok(crash.is_some())
    }
}
