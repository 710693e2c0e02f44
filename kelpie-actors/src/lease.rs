//! Per-actor leases with fencing tokens, kept in the shared store; see [`LeaseManager`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ActorError, KvError};
use crate::events::{ClusterEventKind, ClusterObserver, Emitter};
use crate::kv::{ActorId, ActorKV, KvTransaction};
use crate::platform::Platform;

/// The key suffix of an actor's lease record: `actors/{ns}/{id}/lease`.
pub const LEASE_SUFFIX: &str = "lease";
/// The key suffix of an actor's fence (its current token): `actors/{ns}/{id}/fence`.
pub const FENCE_SUFFIX: &str = "fence";

/// Lease timing. Defaults:
///
/// | field | default |
/// |---|---|
/// | `duration` | 1 s |
/// | `renew_interval` | 250 ms |
/// | `max_clock_skew` | 100 ms |
/// | `safety_margin` | 200 ms (2 × `max_clock_skew`) |
/// | `conflict_retries` | 4 |
/// | `backoff` | 5 ms |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a lease lasts, from the moment its holder started acquiring or renewing it.
    pub duration: Duration,
    /// How often a holder renews.
    pub renew_interval: Duration,
    /// The largest offset of any node's clock from true time, either way.
    pub max_clock_skew: Duration,
    /// How long before its stored expiry the holder stops trusting the lease; at least
    /// `2 × max_clock_skew`.
    pub safety_margin: Duration,
    /// How many times a lease transaction that conflicts is retried (releases and hand-offs
    /// also retry storage errors after which nothing changed).
    pub conflict_retries: u32,
    /// The first retry's backoff (doubled at each retry, plus random jitter up to itself).
    pub backoff: Duration,
    /// Planted bugs, for canary tests; all off by default.
    #[cfg(feature = "canaries")]
    pub bugs: ClusterBugs,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            duration: Duration::from_secs(1),
            renew_interval: Duration::from_millis(250),
            max_clock_skew: Duration::from_millis(100),
            safety_margin: Duration::from_millis(200),
            conflict_retries: 4,
            backoff: Duration::from_millis(5),
            #[cfg(feature = "canaries")]
            bugs: ClusterBugs::default(),
        }
    }
}

/// A [`LeaseConfig`] that cannot keep leases safe or alive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lease config: {setting} {reason}")]
pub struct LeaseConfigError {
    /// The offending setting.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl LeaseConfig {
    /// A config with lease `duration` and clock-skew bound `max_clock_skew`; the renewal
    /// interval is a quarter of the duration and the safety margin twice the skew bound.
    pub fn new(duration: Duration, max_clock_skew: Duration) -> Self {
        LeaseConfig {
            duration,
            renew_interval: duration / 4,
            max_clock_skew,
            safety_margin: max_clock_skew * 2,
            ..LeaseConfig::default()
        }
    }

    /// How long an acquirer must see a record unchanged before taking it over:
    /// `duration + max_clock_skew`.
    pub fn takeover_wait(&self) -> Duration {
        self.duration + self.max_clock_skew
    }

    /// The margin the holder actually applies (zero under the planted skew bug).
    fn margin(&self) -> Duration {
        #[cfg(feature = "canaries")]
        if self.bugs.lease_ignores_clock_skew {
            return Duration::ZERO;
        }
        self.safety_margin
    }

    /// Checks that the settings keep leases safe (`safety_margin >= 2 × max_clock_skew`) and
    /// renewable (`renew_interval < duration - safety_margin`).
    pub fn validate(&self) -> Result<(), LeaseConfigError> {
        let err = |setting, reason: String| Err(LeaseConfigError { setting, reason });
        if self.duration.is_zero() || self.renew_interval.is_zero() {
            return err("duration", "and renew_interval must be positive".into());
        }
        if self.safety_margin < self.max_clock_skew * 2 {
            return err(
                "safety_margin",
                format!(
                    "{:?} must be at least twice max_clock_skew ({:?})",
                    self.safety_margin, self.max_clock_skew
                ),
            );
        }
        if self.safety_margin >= self.duration {
            return err(
                "safety_margin",
                format!(
                    "{:?} must be less than duration ({:?})",
                    self.safety_margin, self.duration
                ),
            );
        }
        if self.renew_interval >= self.duration - self.safety_margin {
            return err(
                "renew_interval",
                format!(
                    "{:?} must be less than duration - safety_margin ({:?})",
                    self.renew_interval,
                    self.duration - self.safety_margin
                ),
            );
        }
        Ok(())
    }
}

/// Planted bugs of the cluster runtime (feature `canaries`), one per invariant, so that canary
/// tests can show the invariant checkers find them. All off by default.
#[cfg(feature = "canaries")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterBugs {
    /// The holder trusts its lease until its raw expiry (no safety margin), and an acquirer
    /// takes over as soon as its own clock passes the expiry the holder stored, without
    /// waiting. Breaks LeaseUniqueness under clock skew.
    pub lease_ignores_clock_skew: bool,
    /// A renewal that fails for a storage error is treated as a success: the holder keeps
    /// extending its lease while it cannot reach the store. Breaks NoSplitBrain under
    /// partitions.
    pub renewal_failure_ignored: bool,
    /// [`FencedTxn`] commits without comparing its token with the fence. Breaks
    /// FencingTokenMonotonic when a paused holder wakes up after a takeover.
    pub fencing_skips_token_check: bool,
    /// Activation fails open: when the lease cannot be read or written (a storage error), the
    /// actor is activated anyway. Breaks SingleActivation.
    pub activation_skips_lease_check: bool,
    /// Migration hands the lease to the target first and deactivates the source in the
    /// background, so queued messages still run on the source while the target activates.
    /// Breaks MigrationAtomicity.
    pub migration_activates_target_early: bool,
    /// A message checks that the instance may act when it arrives, not again when its turn
    /// comes after waiting behind the actor's earlier messages: a message queued behind a slow
    /// one runs after the lease ran out. Breaks LeaseBoundActivity (and single activation,
    /// which the validity-trusting SingleActivation does not see).
    pub validity_checked_on_arrival: bool,
    /// A release marks the record released without checking that it is still this node's
    /// lease: a holder paused past its lease releases its successor's lease, and a third node
    /// takes the actor at once. Breaks SingleActivation and LeaseUniqueness.
    pub release_skips_holder_check: bool,
    /// A migration target activates without reading the state handed over (it reloads from
    /// the store): an actor whose state lives only in memory restarts empty. Breaks
    /// MigrationAtomicity (restored state differs).
    pub migration_target_ignores_handoff: bool,
    /// The migration target does not claim a lease handed to it at once: it waits the record
    /// out like another holder's. Every migration stalls for a takeover wait (the target
    /// refuses, the actor is unavailable meanwhile) — no safety invariant breaks; before the
    /// named liveness check it was visible only as a `sometimes!` line going quiet.
    pub handoff_claim_waits: bool,
}

/// The state of a lease record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseState {
    /// Held by the record's holder until its expiry (on the holder's clock).
    Held,
    /// Given up by its holder: anyone may acquire it at once.
    Released,
    /// Handed to `to` by a migration; the record's token is already the target's.
    HandedOff {
        /// The migration target.
        to: String,
    },
}

/// The stored lease of one actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The node holding (or, if released or handed off, last holding) the lease.
    pub holder: String,
    /// The fencing token.
    pub token: u64,
    /// Expiry in milliseconds on the holder's clock (informational: no other node may compare
    /// it with its own clock).
    pub expiry_ms: u64,
    /// Incremented by every write of the record: identifies one version of it.
    pub seq: u64,
    /// Held, released or handed off.
    pub state: LeaseState,
}

/// A lease this node holds: a token and its validity on this node's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    actor: ActorId,
    holder: String,
    token: u64,
    expiry: Duration,
    valid_until: Duration,
}

impl Lease {
    /// The actor.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// The holder (this node).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The fencing token.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The stored expiry, on the holder's clock.
    pub fn expiry(&self) -> Duration {
        self.expiry
    }

    /// The holder trusts the lease while its clock reads less than this (`expiry - margin`).
    pub fn valid_until(&self) -> Duration {
        self.valid_until
    }
}

/// What a takeover watch knows: the record version seen and whether it has been seen
/// unchanged for the takeover wait.
#[derive(Debug)]
struct Watch {
    seq: u64,
    ready: bool,
}

#[derive(Debug, Default)]
struct Local {
    /// Records of other holders being waited out, per actor.
    watches: BTreeMap<ActorId, Watch>,
    /// Tokens of the leases this manager holds (so that it can re-acquire its own at once).
    held: BTreeMap<ActorId, u64>,
}

/// Acquires, renews, releases and hands off the leases of one node.
///
/// Each actor has a lease record at `actors/{ns}/{id}/lease` ([`LeaseRecord`]: holder node,
/// fencing token, expiry on the holder's own clock, a write sequence number and a state) and a
/// fence at `actors/{ns}/{id}/fence` (the current token, as decimal text). Both change only in
/// optimistic transactions that read them first, so every change is validated against
/// concurrent ones; a conflict is retried with jittered exponential backoff.
///
/// * **Tokens** strictly increase whenever the holder changes: an acquisition (fresh, takeover,
///   or re-acquisition after a local loss) writes `max(record token, fence) + 1` to both the
///   record and the fence; a migration hand-off assigns the target's token the same way. A
///   renewal keeps the token.
/// * **Fencing.** Writes made under a lease go through [`FencedTxn`], whose commit reads the
///   fence *in the same transaction* and fails with [`ActorError::StaleFence`] if it holds
///   another token; if the fence changes between that read and the commit, the commit
///   conflicts. A holder that lost its lease therefore cannot write, however late it wakes up.
///
/// # Safety argument (why two nodes never both hold a valid lease)
///
/// Model: every node's clock reads true time plus an offset `o(t)` with `|o(t)| <= S`
/// ([`LeaseConfig::max_clock_skew`]) at all times; timers ([`Platform::sleep`]) never fire
/// early in true time (the simulation's timers run on true virtual time; a real OS's
/// monotonic timers drift negligibly). Let `D` be [`LeaseConfig::duration`] and `m`
/// [`LeaseConfig::safety_margin`], with `m >= 2S` (checked by [`LeaseConfig::validate`]).
///
/// 1. *The holder's validity ends before `t0 + D`.* A holder reads its clock `c0 = C(t0)`
///    *before* the transaction that acquires or renews the lease, stores the expiry `c0 + D`,
///    and trusts the lease only after that transaction committed and only while
///    `C(t) < c0 + D - m`. Since `C(t) >= t - S` and `c0 <= t0 + S`, that implies
///    `t < t0 + D + 2S - m <= t0 + D`.
/// 2. *A takeover commits after `t0 + D`.* Another node may take over only a record it has
///    seen unchanged (same write sequence number) for [`LeaseConfig::takeover_wait`]
///    `= D + S >= D`, measured by a timer started when it first read that record, and only
///    in a transaction that re-reads the record, so any renewal in between makes it start
///    over (or makes its commit conflict). It first read the record at `t1 >= t0` (the record
///    existed), so its commit happens at `t2 >= t1 + D >= t0 + D`.
///
/// By 1 and 2 the old holder stopped trusting its lease before the new one acquired it; the
/// new holder trusts its lease only after its own commit. A release or hand-off is written
/// only after the holder stopped trusting its lease, so the next holder may take it at once;
/// a renewal still in flight when its lease was released or handed off is reported lost even
/// if it commits.
/// A transaction whose outcome is unknown (the store crashed mid-commit) is never trusted:
/// if it did apply, the record names a holder that does not know it, and others wait it out.
///
/// Outside the model: a clock that jumps *forward* only shortens the holder's validity (safe)
/// and cannot shorten a takeover wait (a timer, not a clock difference). A clock that moves
/// *backward* by more than `2S` — for instance a skew applied after a large forward jump —
/// extends the holder's validity and breaks the bound; no lease scheme based on the holder's
/// clock survives that, which is why `S` must bound every offset change.
///
/// The planted bug `lease_ignores_clock_skew` (feature `canaries`) drops both guards: the
/// holder trusts its lease until its raw expiry (`m = 0`) and an acquirer takes over as soon
/// as its *own* clock passes the expiry stored by the holder — comparing two clocks.
pub struct LeaseManager<P: Platform> {
    platform: P,
    config: LeaseConfig,
    emitter: Emitter,
    local: Arc<Mutex<Local>>,
}

impl<P: Platform> Clone for LeaseManager<P> {
    fn clone(&self) -> Self {
        LeaseManager {
            platform: self.platform.clone(),
            config: self.config.clone(),
            emitter: self.emitter.clone(),
            local: self.local.clone(),
        }
    }
}

impl<P: Platform> std::fmt::Debug for LeaseManager<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseManager")
            .field("node", &self.platform.node())
            .field("config", &self.config)
            .finish()
    }
}

fn corrupt(key: &[u8], reason: impl std::fmt::Display) -> ActorError {
    ActorError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_string(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Reads and decodes an actor's lease record inside `txn`.
pub(crate) async fn read_record<T: KvTransaction>(
    txn: &mut T,
    key: &[u8],
) -> Result<Option<LeaseRecord>, ActorError> {
    match txn.get(key).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(key, e)),
    }
}

/// Reads an actor's fence (0 if never set) inside `txn`.
pub(crate) async fn read_fence<T: KvTransaction>(
    txn: &mut T,
    key: &[u8],
) -> Result<u64, ActorError> {
    match txn.get(key).await? {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(key, "fence is not a decimal token")),
    }
}

fn encode(record: &LeaseRecord) -> Vec<u8> {
    serde_json::to_vec(record).expect("a lease record always serialises")
}

/// Whether `err` means the lease is gone (taken over, handed away, or fenced out), as opposed
/// to a storage error after which the holder may retry.
pub fn is_lease_lost(err: &ActorError) -> bool {
    matches!(
        err,
        ActorError::StaleFence { .. } | ActorError::LeaseHeld { .. } | ActorError::NotActive { .. }
    )
}

impl<P: Platform> LeaseManager<P> {
    /// A manager for `platform`'s node.
    pub fn new(platform: P, config: LeaseConfig) -> Result<Self, LeaseConfigError> {
        config.validate()?;
        Ok(LeaseManager {
            platform,
            config,
            emitter: Emitter::default(),
            local: Arc::default(),
        })
    }

    /// Reports every lease event to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn ClusterObserver>) -> Self {
        self.emitter = Emitter::new(Some(observer));
        self
    }

    pub(crate) fn with_emitter(mut self, emitter: Emitter) -> Self {
        self.emitter = emitter;
        self
    }

    /// The config.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    fn emit(&self, actor: &ActorId, kind: ClusterEventKind) {
        self.emitter
            .emit(self.platform.node(), actor, self.platform.now(), kind);
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this node may still trust `lease`: its clock reads less than
    /// [`Lease::valid_until`].
    pub fn is_valid(&self, lease: &Lease) -> bool {
        self.platform.now() < lease.valid_until
    }

    /// The actor's stored lease record.
    pub async fn read(&self, id: &ActorId) -> Result<Option<LeaseRecord>, ActorError> {
        let key = id.key(LEASE_SUFFIX);
        match self.platform.kv().get(&key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| corrupt(&key, e)),
        }
    }

    /// Runs `attempt` until it does not conflict, at most `conflict_retries + 1` times, with
    /// jittered exponential backoff between attempts.
    async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T, ActorError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ActorError>>,
    {
        self.retrying_if(attempt, |e| matches!(e, KvError::Conflict { .. }))
            .await
    }

    /// Like [`Self::retrying`], also retrying storage errors after which nothing changed: for
    /// releases and hand-offs, whose caller already gave the lease up and would otherwise
    /// leave the actor unavailable until the lease runs out.
    async fn retrying_transient<T, F, Fut>(&self, attempt: F) -> Result<T, ActorError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ActorError>>,
    {
        self.retrying_if(attempt, KvError::nothing_changed).await
    }

    async fn retrying_if<T, F, Fut>(
        &self,
        mut attempt: F,
        retry: impl Fn(&KvError) -> bool,
    ) -> Result<T, ActorError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ActorError>>,
    {
        let mut backoff = self.config.backoff;
        let mut retries = 0;
        loop {
            match attempt().await {
                Err(ActorError::Kv(e)) if retry(&e) && retries < self.config.conflict_retries => {
                    retries += 1;
                    let span = u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX);
                    let jitter = self.platform.random() % span.saturating_add(1);
                    self.platform
                        .sleep(backoff + Duration::from_nanos(jitter))
                        .await;
                    backoff = backoff.saturating_mul(2);
                }
                other => return other,
            }
        }
    }

    /// Acquires the actor's lease for this node: at once if it is free, released, handed to
    /// this node, or this node's own; after the takeover wait if another node holds it. Fails
    /// with [`ActorError::LeaseHeld`] while another node's record has not been seen unchanged
    /// for [`LeaseConfig::takeover_wait`] (call again later: the wait runs in the background).
    pub async fn acquire(&self, id: &ActorId) -> Result<Lease, ActorError> {
        self.retrying(|| self.acquire_once(id)).await
    }

    async fn acquire_once(&self, id: &ActorId) -> Result<Lease, ActorError> {
        let me = self.platform.node().to_string();
        let (lease_key, fence_key) = (id.key(LEASE_SUFFIX), id.key(FENCE_SUFFIX));
        // The clock is read before the transaction: the lease runs from here (argument, 1).
        let c0 = self.platform.now();
        let mut txn = self.platform.kv().transaction();
        let record = read_record(&mut txn, &lease_key).await?;
        let fence = read_fence(&mut txn, &fence_key).await?;
        let (token, claimed_handoff) = match &record {
            None => (fence + 1, false),
            Some(r) => {
                let newer = r.token.max(fence) + 1;
                match &r.state {
                    LeaseState::Released => (newer, false),
                    LeaseState::HandedOff { to }
                        if *to == me && r.token == fence && !self.claim_waits() =>
                    {
                        (r.token, true)
                    }
                    LeaseState::Held if r.holder == me && self.holds(id, r.token) => (newer, false),
                    _ => {
                        if !self.may_take_over(id, r, c0) {
                            return Err(ActorError::LeaseHeld {
                                actor: id.to_string(),
                                holder: match &r.state {
                                    LeaseState::HandedOff { to } => to.clone(),
                                    _ => r.holder.clone(),
                                },
                                until_ms: r.expiry_ms,
                            });
                        }
                        (newer, false)
                    }
                }
            }
        };
        let expiry = c0 + self.config.duration;
        let new = LeaseRecord {
            holder: me.clone(),
            token,
            expiry_ms: millis(expiry),
            seq: record.as_ref().map_or(1, |r| r.seq + 1),
            state: LeaseState::Held,
        };
        txn.set(&lease_key, &encode(&new));
        if token != fence {
            txn.set(&fence_key, token.to_string().as_bytes());
        }
        txn.commit().await?;
        {
            let mut local = self.local();
            local.watches.remove(id);
            local.held.insert(id.clone(), token);
        }
        let lease = Lease {
            actor: id.clone(),
            holder: me,
            token,
            expiry,
            valid_until: expiry.saturating_sub(self.config.margin()),
        };
        self.emit(
            id,
            ClusterEventKind::LeaseAcquired {
                token,
                valid_until: lease.valid_until,
                claimed_handoff,
            },
        );
        Ok(lease)
    }

    fn holds(&self, id: &ActorId, token: u64) -> bool {
        self.local().held.get(id) == Some(&token)
    }

    /// Whether this node may take over `record` (held by another node, or handed to one) now.
    /// Starts the takeover wait the first time a version of the record is seen.
    fn may_take_over(&self, id: &ActorId, record: &LeaseRecord, now: Duration) -> bool {
        #[cfg(feature = "canaries")]
        if self.config.bugs.lease_ignores_clock_skew {
            // The bug: compares this node's clock with an expiry read off another node's clock.
            return millis(now) >= record.expiry_ms;
        }
        let _ = now;
        let seq = record.seq;
        {
            let mut local = self.local();
            match local.watches.get(id) {
                Some(w) if w.seq == seq => return w.ready,
                _ => {
                    local
                        .watches
                        .insert(id.clone(), Watch { seq, ready: false });
                }
            }
        }
        // A timer, not a clock difference: a jump of this node's clock cannot shorten it.
        let timer = self.platform.sleep(self.config.takeover_wait());
        let local = self.local.clone();
        let id = id.clone();
        self.platform.spawn(async move {
            timer.await;
            let mut local = local.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(w) = local.watches.get_mut(&id) {
                if w.seq == seq {
                    w.ready = true;
                }
            }
        });
        false
    }

    /// Forgets a lease this node no longer holds.
    fn forget(&self, id: &ActorId) {
        self.local().held.remove(id);
    }

    /// Renews `lease`, returning it with a later validity. Fails with
    /// [`ActorError::StaleFence`] if the lease was taken over or handed away (check with
    /// [`is_lease_lost`]); a storage error leaves the lease as it was (retry while it is
    /// valid). Renewing a lease whose validity already ran out succeeds if nobody took it
    /// over meanwhile; renewing a lease this manager released or handed off (even while the
    /// renewal was in flight) fails.
    pub async fn renew(&self, lease: &Lease) -> Result<Lease, ActorError> {
        #[cfg(feature = "canaries")]
        let started = self.platform.now();
        if self.platform.fault_point("lease.renew").await {
            return Err(ActorError::Kv(KvError::Unavailable(
                "fault point lease.renew".into(),
            )));
        }
        let result = self.retrying(|| self.renew_once(lease)).await;
        match result {
            #[cfg(feature = "canaries")]
            Err(ActorError::Kv(_)) if self.config.bugs.renewal_failure_ignored => {
                // The bug: "the store is just slow, the lease is surely still ours".
                let expiry = started + self.config.duration;
                let renewed = Lease {
                    expiry,
                    valid_until: expiry.saturating_sub(self.config.margin()),
                    ..lease.clone()
                };
                self.emit(
                    &lease.actor,
                    ClusterEventKind::LeaseRenewed {
                        token: lease.token,
                        valid_until: renewed.valid_until,
                    },
                );
                Ok(renewed)
            }
            other => other,
        }
    }

    async fn renew_once(&self, lease: &Lease) -> Result<Lease, ActorError> {
        let id = &lease.actor;
        let key = id.key(LEASE_SUFFIX);
        let c0 = self.platform.now();
        let mut txn = self.platform.kv().transaction();
        let record = read_record(&mut txn, &key).await?;
        let current = match record {
            Some(r)
                if r.holder == lease.holder
                    && r.token == lease.token
                    && r.state == LeaseState::Held =>
            {
                r
            }
            other => return Err(self.lost(lease, other.map_or(0, |r| r.token))),
        };
        let expiry = c0 + self.config.duration;
        let renewed = LeaseRecord {
            expiry_ms: millis(expiry),
            seq: current.seq + 1,
            ..current
        };
        txn.set(&key, &encode(&renewed));
        txn.commit().await?;
        if !self.holds(id, lease.token) {
            // Released or handed off while this renewal was in flight: the holder gave the
            // lease up before the commit, so the renewal must not hand it back. (The record's
            // later expiry is harmless: a hand-off or release overwrites it, and a record
            // nobody trusts is only waited out.)
            return Err(ActorError::StaleFence {
                actor: id.to_string(),
                token: lease.token,
                current: lease.token,
            });
        }
        let lease = Lease {
            expiry,
            valid_until: expiry.saturating_sub(self.config.margin()),
            ..lease.clone()
        };
        self.emit(
            id,
            ClusterEventKind::LeaseRenewed {
                token: lease.token,
                valid_until: lease.valid_until,
            },
        );
        Ok(lease)
    }

    /// Records that `lease` is gone and builds the error saying so.
    fn lost(&self, lease: &Lease, current: u64) -> ActorError {
        self.forget(&lease.actor);
        self.emit(
            &lease.actor,
            ClusterEventKind::LeaseLost {
                token: lease.token,
                current,
            },
        );
        ActorError::StaleFence {
            actor: lease.actor.to_string(),
            token: lease.token,
            current,
        }
    }

    /// Gives `lease` up so that any node may acquire it at once. The caller must have stopped
    /// using it. If the release fails, the lease simply runs out.
    pub async fn release(&self, lease: &Lease) -> Result<(), ActorError> {
        self.forget(&lease.actor);
        self.emit(
            &lease.actor,
            ClusterEventKind::LeaseReleased { token: lease.token },
        );
        let blind = self.releases_blindly();
        self.retrying_transient(|| async {
            if self.platform.fault_point("lease.release").await {
                return Err(ActorError::Kv(KvError::Unavailable(
                    "fault point lease.release".into(),
                )));
            }
            let key = lease.actor.key(LEASE_SUFFIX);
            let mut txn = self.platform.kv().transaction();
            match read_record(&mut txn, &key).await? {
                Some(r)
                    if blind
                        || (r.holder == lease.holder
                            && r.token == lease.token
                            && r.state == LeaseState::Held) =>
                {
                    let released = LeaseRecord {
                        seq: r.seq + 1,
                        state: LeaseState::Released,
                        ..r
                    };
                    txn.set(&key, &encode(&released));
                    txn.commit().await?;
                    Ok(())
                }
                // Taken over or already released: nothing of ours to give up.
                _ => Ok(()),
            }
        })
        .await
    }

    /// Hands `lease` to node `to` (a migration): in one transaction, assigns the target a new
    /// token, marks the record handed off (the target claims it without waiting) and applies
    /// `writes(new_token)`. The caller must have stopped using the lease. Returns the target's
    /// token; fails with [`ActorError::StaleFence`] if the lease was no longer this node's.
    pub async fn hand_off<W>(&self, lease: &Lease, to: &str, writes: W) -> Result<u64, ActorError>
    where
        W: Fn(u64) -> Vec<(Vec<u8>, Vec<u8>)>,
    {
        self.forget(&lease.actor);
        self.emit(
            &lease.actor,
            ClusterEventKind::LeaseReleased { token: lease.token },
        );
        self.retrying_transient(|| async {
            let id = &lease.actor;
            let (lease_key, fence_key) = (id.key(LEASE_SUFFIX), id.key(FENCE_SUFFIX));
            let mut txn = self.platform.kv().transaction();
            let record = read_record(&mut txn, &lease_key).await?;
            let fence = read_fence(&mut txn, &fence_key).await?;
            let r = match record {
                Some(r)
                    if r.holder == lease.holder
                        && r.token == lease.token
                        && r.state == LeaseState::Held =>
                {
                    r
                }
                other => {
                    return Err(ActorError::StaleFence {
                        actor: id.to_string(),
                        token: lease.token,
                        current: other.map_or(fence, |r| r.token),
                    })
                }
            };
            let to_token = r.token.max(fence) + 1;
            let handed = LeaseRecord {
                token: to_token,
                seq: r.seq + 1,
                state: LeaseState::HandedOff { to: to.to_string() },
                ..r
            };
            txn.set(&lease_key, &encode(&handed));
            txn.set(&fence_key, to_token.to_string().as_bytes());
            for (k, v) in writes(to_token) {
                txn.set(&k, &v);
            }
            txn.commit().await?;
            Ok(to_token)
        })
        .await
    }

    /// Wraps `txn` so that its commit succeeds only while `lease`'s token is the actor's fence.
    /// With an observer, each commit is reported as a
    /// [`FencedCommit`](ClusterEventKind::FencedCommit) event.
    pub fn fenced<T: KvTransaction>(&self, lease: &Lease, txn: T) -> FencedTxn<T> {
        let txn = FencedTxn::new(txn, &lease.actor, lease.token).checking(self.checks_fences());
        if !self.emitter.enabled() {
            return txn;
        }
        let (emitter, platform, actor) = (
            self.emitter.clone(),
            self.platform.clone(),
            lease.actor.clone(),
        );
        txn.with_hook(Arc::new(move |outcome| {
            let (token, current, committed) = match outcome {
                FenceOutcome::Committed { token, current } => (token, current, true),
                FenceOutcome::Stale { token, current } => (token, current, false),
            };
            emitter.emit(
                platform.node(),
                &actor,
                platform.now(),
                ClusterEventKind::FencedCommit {
                    token,
                    current,
                    committed,
                },
            );
        }))
    }

    /// Whether a hand-off target waits instead of claiming (the planted bug
    /// `handoff_claim_waits`); never otherwise.
    fn claim_waits(&self) -> bool {
        #[cfg(feature = "canaries")]
        if self.config.bugs.handoff_claim_waits {
            return true;
        }
        false
    }

    /// Whether a release skips checking that the record is still this lease (the planted bug
    /// `release_skips_holder_check`); never otherwise.
    fn releases_blindly(&self) -> bool {
        #[cfg(feature = "canaries")]
        if self.config.bugs.release_skips_holder_check {
            return true;
        }
        false
    }

    /// Whether fenced commits compare tokens (always, unless the fencing bug is planted).
    pub(crate) fn checks_fences(&self) -> bool {
        #[cfg(feature = "canaries")]
        if self.config.bugs.fencing_skips_token_check {
            return false;
        }
        true
    }

    /// A lease this node assumes without having acquired it (the fail-open activation bug).
    #[cfg(feature = "canaries")]
    pub(crate) fn assumed(&self, id: &ActorId) -> Lease {
        let expiry = self.platform.now() + self.config.duration;
        Lease {
            actor: id.clone(),
            holder: self.platform.node().to_string(),
            token: 0,
            expiry,
            valid_until: expiry.saturating_sub(self.config.margin()),
        }
    }
}

/// What a [`FencedTxn`] found at commit, reported to its hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceOutcome {
    /// The token was current and the transaction committed.
    Committed {
        /// The transaction's token.
        token: u64,
        /// The fence it found.
        current: u64,
    },
    /// The token was stale; nothing was written.
    Stale {
        /// The transaction's token.
        token: u64,
        /// The fence it found.
        current: u64,
    },
}

/// A callback told what each fenced commit found.
pub type FenceHook = Arc<dyn Fn(FenceOutcome) + Send + Sync>;

/// A transaction fenced by a lease token: its commit re-reads the actor's fence in the same
/// transaction and fails unless it still holds this token, so a node that lost its lease
/// cannot write. It implements [`KvTransaction`] (there, a stale token is a
/// [`KvError::Conflict`] on the fence key); [`FencedTxn::commit_fenced`] reports it as
/// [`ActorError::StaleFence`].
///
/// ```
/// use kelpie_actors::{ActorId, ActorKV, FencedTxn, KvTransaction, MemoryKv};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let kv = MemoryKv::new();
/// let id = ActorId::new("agents", "alice").unwrap();
/// kv.set(&id.key("fence"), b"7").await.unwrap();
/// let mut stale = FencedTxn::new(kv.transaction(), &id, 6);
/// stale.set(&id.key("state"), b"old");
/// assert!(stale.commit_fenced().await.is_err());
/// let mut current = FencedTxn::new(kv.transaction(), &id, 7);
/// current.set(&id.key("state"), b"new");
/// current.commit_fenced().await.unwrap();
/// assert_eq!(kv.get(&id.key("state")).await.unwrap(), Some(b"new".to_vec()));
/// # });
/// ```
pub struct FencedTxn<T> {
    inner: T,
    actor: ActorId,
    fence_key: Vec<u8>,
    token: u64,
    check: bool,
    hook: Option<FenceHook>,
}

impl<T> std::fmt::Debug for FencedTxn<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedTxn")
            .field("actor", &self.actor)
            .field("token", &self.token)
            .finish()
    }
}

impl<T: KvTransaction> FencedTxn<T> {
    /// Fences `inner` with `token` for actor `actor`.
    pub fn new(inner: T, actor: &ActorId, token: u64) -> Self {
        FencedTxn {
            inner,
            actor: actor.clone(),
            fence_key: actor.key(FENCE_SUFFIX),
            token,
            check: true,
            hook: None,
        }
    }

    /// Calls `hook` with what each commit found.
    pub fn with_hook(mut self, hook: FenceHook) -> Self {
        self.hook = Some(hook);
        self
    }

    pub(crate) fn checking(mut self, check: bool) -> Self {
        self.check = check;
        self
    }

    /// The token this transaction carries.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The actor whose fence guards this transaction.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// Commits if the fence still holds this transaction's token; fails with
    /// [`ActorError::StaleFence`] (nothing written) otherwise.
    pub async fn commit_fenced(mut self) -> Result<(), ActorError> {
        let current = read_fence(&mut self.inner, &self.fence_key).await?;
        let FencedTxn {
            inner,
            actor,
            token,
            check,
            hook,
            ..
        } = self;
        if check && current != token {
            if let Some(h) = &hook {
                h(FenceOutcome::Stale { token, current });
            }
            return Err(ActorError::StaleFence {
                actor: actor.to_string(),
                token,
                current,
            });
        }
        inner.commit().await?;
        if let Some(h) = &hook {
            h(FenceOutcome::Committed { token, current });
        }
        Ok(())
    }
}

impl<T: KvTransaction> KvTransaction for FencedTxn<T> {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(key).await
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.inner.set(key, value);
    }

    fn delete(&mut self, key: &[u8]) {
        self.inner.delete(key);
    }

    /// Like [`FencedTxn::commit_fenced`]; a stale token is a [`KvError::Conflict`] on the
    /// fence key (`actors/{ns}/{id}/fence`).
    async fn commit(self) -> Result<(), KvError> {
        let fence_key = String::from_utf8_lossy(&self.fence_key).into_owned();
        match self.commit_fenced().await {
            Ok(()) => Ok(()),
            Err(ActorError::Kv(e)) => Err(e),
            Err(ActorError::StaleFence { .. }) => Err(KvError::Conflict { key: fence_key }),
            Err(other) => Err(KvError::Unavailable(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;
    use crate::platform::TokioPlatform;

    fn config() -> LeaseConfig {
        LeaseConfig {
            duration: Duration::from_millis(200),
            renew_interval: Duration::from_millis(50),
            max_clock_skew: Duration::from_millis(10),
            safety_margin: Duration::from_millis(20),
            ..LeaseConfig::default()
        }
    }

    fn manager(node: &str, kv: &MemoryKv) -> LeaseManager<TokioPlatform> {
        LeaseManager::new(TokioPlatform::new(node, kv.clone()), config()).unwrap()
    }

    fn id() -> ActorId {
        ActorId::new("ns", "a").unwrap()
    }

    #[test]
    fn config_validation_names_the_setting() {
        assert!(LeaseConfig::default().validate().is_ok());
        let bad = LeaseConfig {
            safety_margin: Duration::from_millis(150),
            ..LeaseConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().setting, "safety_margin");
        let slow = LeaseConfig {
            renew_interval: Duration::from_millis(900),
            ..LeaseConfig::default()
        };
        assert_eq!(slow.validate().unwrap_err().setting, "renew_interval");
        let c = LeaseConfig::new(Duration::from_millis(400), Duration::from_millis(50));
        assert_eq!(c.safety_margin, Duration::from_millis(100));
        assert_eq!(c.takeover_wait(), Duration::from_millis(450));
        assert!(c.validate().is_ok());
    }

    #[tokio::test]
    async fn acquire_renew_release_and_tokens() {
        let kv = MemoryKv::new();
        let (a, b) = (manager("a", &kv), manager("b", &kv));
        let lease = a.acquire(&id()).await.unwrap();
        assert_eq!(lease.token(), 1);
        assert!(a.is_valid(&lease));
        // Another node must wait: the first attempt starts the wait.
        assert!(matches!(
            b.acquire(&id()).await,
            Err(ActorError::LeaseHeld { holder, .. }) if holder == "a"
        ));
        let renewed = a.renew(&lease).await.unwrap();
        assert_eq!(renewed.token(), 1);
        assert!(renewed.valid_until() >= lease.valid_until());
        // A release lets the other node in at once, with a new token.
        a.release(&renewed).await.unwrap();
        let taken = b.acquire(&id()).await.unwrap();
        assert_eq!(taken.token(), 2);
        // The old holder's renewal now finds the lease lost.
        let err = a.renew(&renewed).await.unwrap_err();
        assert!(is_lease_lost(&err), "{err}");
        let rec = a.read(&id()).await.unwrap().unwrap();
        assert_eq!((rec.holder.as_str(), rec.token), ("b", 2));
    }

    #[tokio::test]
    async fn takeover_only_after_the_record_is_unchanged_for_the_wait() {
        let kv = MemoryKv::new();
        let (a, b) = (manager("a", &kv), manager("b", &kv));
        let lease = a.acquire(&id()).await.unwrap();
        assert!(b.acquire(&id()).await.is_err());
        // A renewal changes the record: the wait starts over.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let lease = a.renew(&lease).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(b.acquire(&id()).await.is_err(), "renewed lease taken over");
        // The holder goes silent: after the wait, b takes over with a newer token.
        tokio::time::sleep(config().takeover_wait() + Duration::from_millis(20)).await;
        assert!(!a.is_valid(&lease));
        let taken = b.acquire(&id()).await.unwrap();
        assert_eq!(taken.token(), 2);
    }

    #[tokio::test]
    async fn fencing_rejects_stale_tokens() {
        let kv = MemoryKv::new();
        let (a, b) = (manager("a", &kv), manager("b", &kv));
        let old = a.acquire(&id()).await.unwrap();
        a.release(&old).await.unwrap();
        let new = b.acquire(&id()).await.unwrap();
        let mut stale = a.fenced(&old, kv.transaction());
        stale.set(b"x", b"stale");
        assert_eq!(
            stale.commit_fenced().await,
            Err(ActorError::StaleFence {
                actor: "ns/a".into(),
                token: 1,
                current: 2
            })
        );
        let mut via_trait = a.fenced(&old, kv.transaction());
        via_trait.set(b"x", b"stale");
        assert!(matches!(
            KvTransaction::commit(via_trait).await,
            Err(KvError::Conflict { key }) if key == "actors/ns/a/fence"
        ));
        let mut current = b.fenced(&new, kv.transaction());
        current.set(b"x", b"fresh");
        current.commit_fenced().await.unwrap();
        assert_eq!(kv.get(b"x").await.unwrap(), Some(b"fresh".to_vec()));
    }

    #[tokio::test]
    async fn hand_off_lets_only_the_target_claim_at_once() {
        let kv = MemoryKv::new();
        let (a, b, c) = (manager("a", &kv), manager("b", &kv), manager("c", &kv));
        let lease = a.acquire(&id()).await.unwrap();
        let to = a
            .hand_off(&lease, "b", |t| {
                vec![(b"handoff".to_vec(), t.to_string().into_bytes())]
            })
            .await
            .unwrap();
        assert_eq!(to, 2);
        assert_eq!(kv.get(b"handoff").await.unwrap(), Some(b"2".to_vec()));
        assert!(
            c.acquire(&id()).await.is_err(),
            "a bystander claimed a hand-off"
        );
        let claimed = b.acquire(&id()).await.unwrap();
        assert_eq!(claimed.token(), 2);
        // The source's lease is gone.
        assert!(is_lease_lost(&a.renew(&lease).await.unwrap_err()));
        assert!(a.hand_off(&lease, "c", |_| Vec::new()).await.is_err());
    }

    /// A [`MemoryKv`] whose transactional reads yield once, so that concurrent lease
    /// operations interleave.
    #[derive(Clone, Default)]
    struct YieldingKv(MemoryKv);

    struct YieldingTxn(crate::kv::MemoryTxn);

    impl ActorKV for YieldingKv {
        type Txn = YieldingTxn;

        async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
            self.0.get(key).await
        }

        async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
            self.0.set(key, value).await
        }

        async fn delete(&self, key: &[u8]) -> Result<(), KvError> {
            self.0.delete(key).await
        }

        async fn scan_prefix(&self, prefix: &[u8]) -> Result<crate::kv::KvPairs, KvError> {
            self.0.scan_prefix(prefix).await
        }

        fn transaction(&self) -> YieldingTxn {
            YieldingTxn(self.0.transaction())
        }
    }

    impl KvTransaction for YieldingTxn {
        async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
            let v = self.0.get(key).await;
            tokio::task::yield_now().await;
            v
        }

        fn set(&mut self, key: &[u8], value: &[u8]) {
            self.0.set(key, value);
        }

        fn delete(&mut self, key: &[u8]) {
            self.0.delete(key);
        }

        async fn commit(self) -> Result<(), KvError> {
            self.0.commit().await
        }
    }

    #[tokio::test]
    async fn a_renewal_racing_a_release_does_not_revive_the_lease() {
        let kv = YieldingKv::default();
        let a = LeaseManager::new(TokioPlatform::new("a", kv.clone()), config()).unwrap();
        let lease = a.acquire(&id()).await.unwrap();
        // The renewal reads the record, the release starts, the renewal commits, the release
        // conflicts and retries.
        let (renewed, released) = tokio::join!(a.renew(&lease), a.release(&lease));
        released.unwrap();
        assert!(
            is_lease_lost(&renewed.unwrap_err()),
            "a released lease was renewed"
        );
        let record = a.read(&id()).await.unwrap().unwrap();
        assert_eq!(record.state, LeaseState::Released);
        // Likewise for a hand-off.
        let lease = a.acquire(&id()).await.unwrap();
        let (renewed, handed) =
            tokio::join!(a.renew(&lease), a.hand_off(&lease, "b", |_| Vec::new()));
        assert_eq!(handed.unwrap(), lease.token() + 1);
        assert!(renewed.is_err(), "a handed-off lease was renewed");
    }

    #[tokio::test]
    async fn own_lease_is_reacquired_at_once_with_a_new_token() {
        let kv = MemoryKv::new();
        let a = manager("a", &kv);
        let first = a.acquire(&id()).await.unwrap();
        let second = a.acquire(&id()).await.unwrap();
        assert_eq!((first.token(), second.token()), (1, 2));
        // A restarted node (a fresh manager) does not know the lease: it waits like anyone.
        let restarted = manager("a", &kv);
        assert!(restarted.acquire(&id()).await.is_err());
    }
}
