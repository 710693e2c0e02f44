//! A write-ahead log with idempotency keys and crash replay: [`Wal`].

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::error::{ActorError, KvError};
use crate::kv::{ActorId, ActorKV, KvTransaction};
use crate::platform::Platform;

/// Whether an entry's effect has been applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalStatus {
    /// Logged, not yet applied.
    Pending,
    /// Applied (in the same transaction that set this status).
    Complete {
        /// What the apply step returned.
        result: serde_json::Value,
        /// When it was applied, in milliseconds of the applying node's clock.
        completed_ms: u64,
    },
}

/// One logged operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// The client's idempotency key.
    pub key: String,
    /// The operation.
    pub payload: serde_json::Value,
    /// Applied or not.
    pub status: WalStatus,
    /// When it was logged, in milliseconds of the appending node's clock.
    pub appended_ms: u64,
}

impl WalEntry {
    /// Whether the entry was applied.
    pub fn is_complete(&self) -> bool {
        matches!(self.status, WalStatus::Complete { .. })
    }
}

/// The outcome of [`Wal::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The entry's seq.
    pub seq: u64,
    /// `true` if the key was logged before (a retry): nothing new was written.
    pub existed: bool,
}

/// The outcome of [`Wal::complete`] and [`Wal::submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The entry's seq.
    pub seq: u64,
    /// What the apply step returned (now or the first time).
    pub result: serde_json::Value,
    /// `true` if the entry was already complete: nothing was applied now.
    pub already: bool,
}

/// What [`Wal::replay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayReport {
    /// Pending entries applied now.
    pub applied: u64,
    /// Pending entries found complete on a second look (another applier got there first).
    pub already: u64,
}

/// The effect of a log entry, applied inside the transaction that marks the entry complete.
/// It may run more than once (conflict retries, replays after a crash before the commit), but
/// only one run commits.
pub trait WalApply<T: KvTransaction>: Send + Sync {
    /// Reads and writes `txn` to apply `entry`; returns a result to store with the entry.
    fn apply(
        &self,
        entry: &WalEntry,
        txn: &mut T,
    ) -> impl Future<Output = Result<serde_json::Value, ActorError>> + Send;
}

/// Settings of a [`Wal`]. Defaults: `conflict_retries` 32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// How often an append or a complete retries after a [`KvError::Conflict`] (concurrent
    /// appends conflict on the seq counter) before returning it.
    pub conflict_retries: u32,
    /// A planted bug, for canary tests only; `None` by default.
    #[cfg(feature = "canaries")]
    pub bug: Option<WalBug>,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            conflict_retries: 32,
            #[cfg(feature = "canaries")]
            bug: None,
        }
    }
}

/// Planted bugs of [`Wal`] (feature `canaries`), each of which an invariant checker must
/// catch.
#[cfg(feature = "canaries")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalBug {
    /// `append` acknowledges at once and writes the entry `delay_ms` later from a background
    /// task: a crash in between loses an acknowledged entry.
    AckBeforeDurable {
        /// How long the write trails the acknowledgement.
        delay_ms: u64,
    },
    /// `complete` trusts its caller to call it only for pending entries: it applies the entry
    /// without looking at its status. A retry after an unknown outcome (the first attempt
    /// committed, its reply was lost) applies the entry a second time.
    CompleteSkipsStatusCheck,
}

/// A write-ahead log with idempotency keys and crash replay, on any [`Platform`]'s store.
///
/// The protocol: [`Wal::append`] durably logs an entry under the client's idempotency key
/// before anything is acknowledged; [`Wal::complete`] applies the entry's effect and marks the
/// entry complete in **one** transaction; after a restart, [`Wal::replay`] completes every
/// entry still pending. So an entry whose `append` returned `Ok` takes effect exactly once,
/// however often the client retries (after [`KvError::OutcomeUnknown`], a timeout or a crash)
/// and however often the applier crashes: a retried append finds the entry by its key, and a
/// replayed entry that was already complete is skipped.
///
/// Key layout, for a log named `{wal}`: `wal/{wal}/entries/{seq:020}` (a [`WalEntry`]),
/// `wal/{wal}/keys/{idempotency key}` (its seq), `wal/{wal}/next` (the next seq).
///
/// ```
/// use kelpie_actors::{ActorError, KvTransaction, MemoryKv, TokioPlatform, Wal, WalApply, WalEntry};
///
/// /// Adds the entry's payload to a counter, in the WAL's transaction.
/// struct AddToTotal;
/// impl<T: KvTransaction> WalApply<T> for AddToTotal {
///     async fn apply(&self, entry: &WalEntry, txn: &mut T) -> Result<serde_json::Value, ActorError> {
///         let old: u64 = txn.get(b"total").await?.map_or(0, |v| v[0].into());
///         let new = old + entry.payload.as_u64().unwrap();
///         txn.set(b"total", &[new as u8]);
///         Ok(new.into())
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let wal = Wal::new(TokioPlatform::new("n1", MemoryKv::new()), "orders").unwrap();
/// let first = wal.submit("order-1", 5.into(), &AddToTotal).await.unwrap();
/// let retry = wal.submit("order-1", 5.into(), &AddToTotal).await.unwrap();
/// assert_eq!((first.result.clone(), retry.already), (serde_json::json!(5), true));
/// assert_eq!(retry.result, first.result); // applied once
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Wal<P: Platform> {
    platform: P,
    name: String,
    config: WalConfig,
}

type Txn<P> = <<P as Platform>::Kv as ActorKV>::Txn;

fn decode(key: &[u8], bytes: &[u8]) -> Result<WalEntry, ActorError> {
    serde_json::from_slice(bytes).map_err(|e| ActorError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn encode(entry: &WalEntry) -> Vec<u8> {
    // A `WalEntry` is plain data (strings, integers, JSON values): it always serializes.
    serde_json::to_vec(entry).expect("a WalEntry always serializes")
}

fn decode_u64(key: &[u8], bytes: &[u8]) -> Result<u64, ActorError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_le_bytes)
        .map_err(|_| ActorError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: format!("expected 8 bytes, found {}", bytes.len()),
        })
}

impl<P: Platform> Wal<P> {
    /// The log `name` (1 to 128 characters of `[A-Za-z0-9_.:-]`) with the default config.
    pub fn new(platform: P, name: &str) -> Result<Self, ActorError> {
        Self::with_config(platform, name, WalConfig::default())
    }

    /// The log `name` with `config`.
    pub fn with_config(platform: P, name: &str, config: WalConfig) -> Result<Self, ActorError> {
        ActorId::new("wal", name)?;
        Ok(Wal {
            platform,
            name: name.to_string(),
            config,
        })
    }

    /// The log's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `wal/{name}/entries/`: the prefix of every entry, in seq order.
    pub fn entries_prefix(&self) -> Vec<u8> {
        format!("wal/{}/entries/", self.name).into_bytes()
    }

    fn entry_key(&self, seq: u64) -> Vec<u8> {
        format!("wal/{}/entries/{seq:020}", self.name).into_bytes()
    }

    fn index_key(&self, key: &str) -> Vec<u8> {
        format!("wal/{}/keys/{key}", self.name).into_bytes()
    }

    fn next_key(&self) -> Vec<u8> {
        format!("wal/{}/next", self.name).into_bytes()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.platform.now().as_millis()).unwrap_or(u64::MAX)
    }

    /// Logs `payload` under idempotency `key` durably; returns once it is durable. A key
    /// logged before returns its entry's seq with `existed: true` and writes nothing, so
    /// retrying after any error is safe.
    pub async fn append(
        &self,
        key: &str,
        payload: serde_json::Value,
    ) -> Result<Appended, ActorError> {
        ActorId::new("keys", key)?;
        #[cfg(feature = "canaries")]
        if let Some(WalBug::AckBeforeDurable { delay_ms }) = self.config.bug {
            return self.append_acking_early(key, payload, delay_ms).await;
        }
        self.append_durably(key, &payload).await
    }

    async fn append_durably(
        &self,
        key: &str,
        payload: &serde_json::Value,
    ) -> Result<Appended, ActorError> {
        let kv = self.platform.kv();
        let (index_key, next_key) = (self.index_key(key), self.next_key());
        let mut tries = 0;
        loop {
            let mut txn = kv.transaction();
            if let Some(seq) = txn.get(&index_key).await? {
                let seq = decode_u64(&index_key, &seq)?;
                return Ok(Appended { seq, existed: true });
            }
            let seq = match txn.get(&next_key).await? {
                Some(bytes) => decode_u64(&next_key, &bytes)?,
                None => 0,
            };
            let entry = WalEntry {
                seq,
                key: key.to_string(),
                payload: payload.clone(),
                status: WalStatus::Pending,
                appended_ms: self.now_ms(),
            };
            txn.set(&self.entry_key(seq), &encode(&entry));
            txn.set(&index_key, &seq.to_le_bytes());
            txn.set(&next_key, &(seq + 1).to_le_bytes());
            match txn.commit().await {
                Ok(()) if self.platform.fault_point("wal.append.reply").await => {
                    return Err(KvError::OutcomeUnknown.into())
                }
                Ok(()) => {
                    return Ok(Appended {
                        seq,
                        existed: false,
                    })
                }
                Err(KvError::Conflict { .. }) if tries < self.config.conflict_retries => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Planted bug: acknowledge now, write later.
    #[cfg(feature = "canaries")]
    async fn append_acking_early(
        &self,
        key: &str,
        payload: serde_json::Value,
        delay_ms: u64,
    ) -> Result<Appended, ActorError> {
        if let Some(entry) = self.get(key).await? {
            return Ok(Appended {
                seq: entry.seq,
                existed: true,
            });
        }
        let next_key = self.next_key();
        let seq = match self.platform.kv().get(&next_key).await? {
            Some(bytes) => decode_u64(&next_key, &bytes)?,
            None => 0,
        };
        let (wal, key) = (self.clone(), key.to_string());
        let sleep = self
            .platform
            .sleep(std::time::Duration::from_millis(delay_ms));
        self.platform.spawn(async move {
            sleep.await;
            // The acknowledgement is already out: an error here loses the entry silently.
            let _ = wal.append_durably(&key, &payload).await;
        });
        Ok(Appended {
            seq,
            existed: false,
        })
    }

    /// The entry logged under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<WalEntry>, ActorError> {
        ActorId::new("keys", key)?;
        let kv = self.platform.kv();
        let index_key = self.index_key(key);
        match kv.get(&index_key).await? {
            Some(bytes) => self.entry(decode_u64(&index_key, &bytes)?).await,
            None => Ok(None),
        }
    }

    /// The entry at `seq`.
    pub async fn entry(&self, seq: u64) -> Result<Option<WalEntry>, ActorError> {
        let key = self.entry_key(seq);
        match self.platform.kv().get(&key).await? {
            Some(bytes) => decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every entry, in seq order.
    pub async fn entries(&self) -> Result<Vec<WalEntry>, ActorError> {
        self.platform
            .kv()
            .scan_prefix(&self.entries_prefix())
            .await?
            .iter()
            .map(|(k, v)| decode(k, v))
            .collect()
    }

    /// Every entry not yet applied, in seq order.
    pub async fn pending(&self) -> Result<Vec<WalEntry>, ActorError> {
        let mut entries = self.entries().await?;
        entries.retain(|e| !e.is_complete());
        Ok(entries)
    }

    /// Applies entry `seq` with `apply` and marks it complete, in one transaction; an entry
    /// already complete is returned as it is (`already: true`). After
    /// [`KvError::OutcomeUnknown`], call again: the second call finds out which it was.
    pub async fn complete<A: WalApply<Txn<P>>>(
        &self,
        seq: u64,
        apply: &A,
    ) -> Result<Completed, ActorError> {
        let kv = self.platform.kv();
        let key = self.entry_key(seq);
        let mut tries = 0;
        loop {
            let mut txn = kv.transaction();
            let mut entry = match txn.get(&key).await? {
                Some(bytes) => decode(&key, &bytes)?,
                None => {
                    return Err(ActorError::NotFound {
                        what: format!("wal {} entry {seq}", self.name),
                    })
                }
            };
            if let WalStatus::Complete { result, .. } = &entry.status {
                if !self.skips_status_check() {
                    return Ok(Completed {
                        seq,
                        result: result.clone(),
                        already: true,
                    });
                }
            }
            let result = apply.apply(&entry, &mut txn).await?;
            entry.status = WalStatus::Complete {
                result: result.clone(),
                completed_ms: self.now_ms(),
            };
            txn.set(&key, &encode(&entry));
            match txn.commit().await {
                // A fault point after the commit: the reply is lost, the caller cannot know
                // whether the entry was applied (and must call again).
                Ok(()) if self.platform.fault_point("wal.complete.reply").await => {
                    return Err(KvError::OutcomeUnknown.into())
                }
                Ok(()) => {
                    return Ok(Completed {
                        seq,
                        result,
                        already: false,
                    })
                }
                Err(KvError::Conflict { .. }) if tries < self.config.conflict_retries => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether `complete` skips the status check (the planted bug
    /// `CompleteSkipsStatusCheck`); never otherwise.
    fn skips_status_check(&self) -> bool {
        #[cfg(feature = "canaries")]
        if self.config.bug == Some(WalBug::CompleteSkipsStatusCheck) {
            return true;
        }
        false
    }

    /// Completes every pending entry, in seq order (run it at start-up, after a crash). Stops
    /// at the first error; running it again resumes where it stopped.
    pub async fn replay<A: WalApply<Txn<P>>>(&self, apply: &A) -> Result<ReplayReport, ActorError> {
        let mut report = ReplayReport::default();
        for entry in self.pending().await? {
            if self.complete(entry.seq, apply).await?.already {
                report.already += 1;
            } else {
                report.applied += 1;
            }
        }
        Ok(report)
    }

    /// Appends and completes: the whole protocol for one request. Returns the stored result
    /// (the first one, for a retried key).
    pub async fn submit<A: WalApply<Txn<P>>>(
        &self,
        key: &str,
        payload: serde_json::Value,
        apply: &A,
    ) -> Result<Completed, ActorError> {
        let appended = self.append(key, payload).await?;
        self.complete(appended.seq, apply).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;
    use crate::platform::TokioPlatform;

    /// Adds the payload to `total` and counts applications per key.
    struct Credit;

    impl<T: KvTransaction> WalApply<T> for Credit {
        async fn apply(
            &self,
            entry: &WalEntry,
            txn: &mut T,
        ) -> Result<serde_json::Value, ActorError> {
            let read =
                |v: Option<Vec<u8>>| v.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
            let total = read(txn.get(b"total").await?) + entry.payload.as_u64().unwrap();
            txn.set(b"total", &total.to_le_bytes());
            let times_key = format!("times/{}", entry.key).into_bytes();
            let times = read(txn.get(&times_key).await?) + 1;
            txn.set(&times_key, &times.to_le_bytes());
            Ok(total.into())
        }
    }

    fn wal() -> (Wal<TokioPlatform>, MemoryKv) {
        let kv = MemoryKv::new();
        (
            Wal::new(TokioPlatform::new("n", kv.clone()), "w").unwrap(),
            kv,
        )
    }

    async fn total(kv: &MemoryKv) -> u64 {
        kv.get(b"total")
            .await
            .unwrap()
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
    }

    #[tokio::test]
    async fn a_key_applies_once() {
        let (wal, kv) = wal();
        let a = wal.submit("k1", 3.into(), &Credit).await.unwrap();
        let b = wal.submit("k1", 3.into(), &Credit).await.unwrap();
        assert_eq!((a.already, b.already, a.seq, b.seq), (false, true, 0, 0));
        wal.submit("k2", 4.into(), &Credit).await.unwrap();
        assert_eq!(total(&kv).await, 7);
        assert_eq!(wal.entries().await.unwrap().len(), 2);
        assert!(wal.pending().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn replay_completes_what_a_crash_left_pending() {
        let (wal, kv) = wal();
        // Appended (acknowledged), then the applier "crashed".
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(wal.append(k, 1.into()).await.unwrap().seq, i as u64);
        }
        wal.complete(1, &Credit).await.unwrap();
        assert_eq!(total(&kv).await, 1);
        // A restarted node replays; a second replay finds nothing to do.
        let restarted = Wal::new(TokioPlatform::new("n2", kv.clone()), "w").unwrap();
        let report = restarted.replay(&Credit).await.unwrap();
        assert_eq!(
            report,
            ReplayReport {
                applied: 2,
                already: 0
            }
        );
        assert_eq!(
            restarted.replay(&Credit).await.unwrap(),
            ReplayReport::default()
        );
        assert_eq!(total(&kv).await, 3);
        assert!(matches!(
            wal.complete(9, &Credit).await,
            Err(ActorError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn keys_and_names_are_validated() {
        let kv = MemoryKv::new();
        assert!(Wal::new(TokioPlatform::new("n", kv.clone()), "a/b").is_err());
        let (wal, _) = wal();
        assert!(matches!(
            wal.append("x/y", 1.into()).await,
            Err(ActorError::InvalidActorId { .. })
        ));
        assert_eq!(wal.get("nope").await.unwrap(), None);
    }
}
