//! A node's disk as the test sees it: [`SimStorage`] and optimistic [`Transaction`]s.
//!
//! [`SimStorage::set`] and [`SimStorage::delete`] land in the volatile layer, visible to reads at
//! once; [`SimStorage::sync`] makes them durable. A crash ([`SimEnv::kill`],
//! [`FaultKind::NodeCrash`](crate::FaultKind::NodeCrash)) loses exactly the unsynced writes.
//! [`Transaction`]s are optimistic: reads record versions, [`Transaction::commit`] fails with
//! [`StorageError::Conflict`] if a key read or written changed since, and applies its writes
//! durably and atomically otherwise. Storage faults act the way a real disk shows them (see the
//! fault table).

use std::collections::BTreeMap;

use crate::error::StorageError;
use crate::fault::OpKind;

use super::SimEnv;

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

impl SimStorage {
    /// Reads `key` (unsynced writes included).
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StorageError> {
        let (world, node, key) = (&self.env.world, self.env.node, key.as_ref());
        world
            .storage_op(node, OpKind::Get, Some(key), |st, d, at| {
                st.storage_get(node, key, d, at)
            })
            .await
    }

    /// Writes `key` to the volatile layer (durable after [`SimStorage::sync`]).
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), StorageError> {
        let (world, node) = (&self.env.world, self.env.node);
        let (key, value) = (key.as_ref(), value.as_ref());
        world
            .storage_op(node, OpKind::Set, Some(key), |st, d, at| {
                st.storage_set(node, key, value, d, at)
            })
            .await
    }

    /// Deletes `key` in the volatile layer (durable after [`SimStorage::sync`]).
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<(), StorageError> {
        let (world, node, key) = (&self.env.world, self.env.node, key.as_ref());
        world
            .storage_op(node, OpKind::Delete, Some(key), |st, d, at| {
                st.storage_delete(node, key, d, at)
            })
            .await
    }

    /// Every key starting with `prefix`, with its value, in key order.
    pub async fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        let (world, node, prefix) = (&self.env.world, self.env.node, prefix.as_ref());
        world
            .storage_op(node, OpKind::Scan, Some(prefix), |st, d, at| {
                st.storage_scan(node, prefix, d, at)
            })
            .await
    }

    /// Makes every earlier write durable (unless a
    /// [`FaultKind::StorageFsyncLoss`](crate::FaultKind::StorageFsyncLoss) fault silently
    /// drops the sync).
    pub async fn sync(&self) -> Result<(), StorageError> {
        let (world, node) = (&self.env.world, self.env.node);
        world
            .storage_op(node, OpKind::Sync, None, |st, d, at| {
                st.storage_sync(node, d, at)
            })
            .await
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
        self.env.world.unsynced_len(self.env.node)
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
        let env = &self.storage.env;
        let version = env.world.storage_version(env.node, key);
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
    /// atomically. Under [`FaultKind::CrashDuringTransaction`](crate::FaultKind::CrashDuringTransaction)
    /// the node crashes mid-commit: the writes are applied all or nothing, and the commit
    /// returns [`StorageError::Crashed`].
    pub async fn commit(self) -> Result<(), StorageError> {
        let (world, node) = (&self.storage.env.world, self.storage.env.node);
        let (reads, writes) = (&self.reads, self.writes);
        let crashed = world
            .storage_op(node, OpKind::Commit, None, |st, d, at| {
                st.storage_commit(node, reads, writes, d, at)
            })
            .await?;
        if crashed {
            world.crash_after_commit(node);
            return Err(StorageError::Crashed);
        }
        Ok(())
    }
}
