//! Leases under faults: at most one node holds a valid lease of an actor by its own (skewed)
//! clock, fencing tokens only grow, and no write of a deposed holder commits — checked on every
//! lease event as it happens, on the real `LeaseManager` running on simulated nodes whose store
//! is a dedicated database node that crashes, partitions and fails writes.
//!
//! `support::cluster` (`support/cluster.rs`, shared with `activation_dst` and `migration_dst`) builds
//! the cluster: a `db` node whose disk backs the store, nodes `n2..n{N+1}` each running a
//! service on its own [`support::NodePlatform`], and a [`ClusterChecker`] fed every event.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie::{FaultKind, SimEnv};
use kelpie_actors::invariants::ClusterChecker;
use kelpie_actors::{
    is_lease_lost, ActorError, ActorId, ActorKV, KvError, KvTransaction, Lease, LeaseConfig,
    LeaseManager, LeaseState, Platform, SimKv, SimPlatform,
};

use crate::support::cluster as support;
use support::{Cluster, NodePlatform};

/// The lease layer alone: each node keeps the leases it acquired, renews them in the
/// background, and — while a lease is valid — appends to the actor's counter in a fenced
/// transaction.
#[derive(Clone)]
struct LeaseNode {
    mgr: LeaseManager<NodePlatform>,
    held: Arc<Mutex<BTreeMap<ActorId, Lease>>>,
    /// Renewals that failed for a storage error, over all nodes and incarnations.
    renew_errors: Arc<AtomicU64>,
}

/// What one client step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Acquired,
    Refused,
    Released,
    Wrote,
    Fenced,
    Unknown,
    Failed,
}

fn lease_config() -> LeaseConfig {
    LeaseConfig::new(Duration::from_millis(500), Duration::from_millis(50))
}

impl LeaseNode {
    fn start(
        platform: NodePlatform,
        checker: Arc<ClusterChecker>,
        config: LeaseConfig,
        renew_errors: Arc<AtomicU64>,
    ) -> (Self, Option<support::Background>) {
        let mgr = LeaseManager::new(platform.clone(), config)
            .unwrap()
            .with_observer(checker);
        let node = LeaseNode {
            mgr,
            held: Arc::default(),
            renew_errors,
        };
        let renewer = node.clone();
        (node, Some(Box::pin(renewer.renew_forever())))
    }

    async fn renew_forever(self) {
        let every = self.mgr.config().renew_interval;
        loop {
            self.mgr.platform().sleep(every).await;
            let held: Vec<Lease> = self.held.lock().unwrap().values().cloned().collect();
            for lease in held {
                let result = self.mgr.renew(&lease).await;
                let mut held = self.held.lock().unwrap();
                let mine = held
                    .get(lease.actor())
                    .is_some_and(|l| l.token() == lease.token());
                match result {
                    Ok(renewed) if mine => {
                        held.insert(lease.actor().clone(), renewed);
                    }
                    Err(e) if mine && is_lease_lost(&e) => {
                        held.remove(lease.actor());
                    }
                    Err(_) => {
                        self.renew_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
    }

    /// One client request on this node for `actor`.
    async fn step(self, actor: ActorId, release: bool) -> Step {
        let lease = self.held.lock().unwrap().get(&actor).cloned();
        let Some(lease) = lease.filter(|l| self.mgr.is_valid(l)) else {
            self.held.lock().unwrap().remove(&actor);
            return match self.mgr.acquire(&actor).await {
                Ok(lease) => {
                    self.held.lock().unwrap().insert(actor, lease);
                    Step::Acquired
                }
                Err(ActorError::LeaseHeld { .. }) => Step::Refused,
                Err(ActorError::Kv(KvError::OutcomeUnknown)) => Step::Unknown,
                Err(_) => Step::Failed,
            };
        };
        if release {
            self.held.lock().unwrap().remove(&actor);
            return match self.mgr.release(&lease).await {
                Ok(()) => Step::Released,
                Err(_) => Step::Failed,
            };
        }
        // Append under the lease: count := count + 1, fenced by the token (the manager
        // reports each fenced commit to the checker).
        let kv = self.mgr.platform().kv();
        let mut txn = self.mgr.fenced(&lease, ActorKV::transaction(&kv));
        let key = actor.key("count");
        let count = match txn.get(&key).await {
            Ok(v) => v.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap())),
            Err(_) => return Step::Failed,
        };
        txn.set(&key, &(count + 1).to_le_bytes());
        match txn.commit_fenced().await {
            Ok(()) => Step::Wrote,
            Err(ActorError::StaleFence { .. }) => {
                self.held.lock().unwrap().remove(&actor);
                Step::Fenced
            }
            Err(ActorError::Kv(KvError::OutcomeUnknown)) => Step::Unknown,
            Err(_) => Step::Failed,
        }
    }
}

/// Drives `clients` clients sending requests to random nodes for random actors for `secs`
/// seconds of virtual time, checking the invariants every 10 ms; returns the tally of outcomes.
async fn lease_workload(
    cluster: &Cluster<LeaseNode>,
    actors: &[ActorId],
    clients: usize,
    secs: u64,
) -> BTreeMap<&'static str, u64> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = cluster.monitor(Duration::from_millis(10), stop.clone(), || {});
    let tally: Arc<Mutex<BTreeMap<&'static str, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (env, names, actors, tally) = (
            cluster.env.clone(),
            cluster.names.clone(),
            actors.to_vec(),
            tally.clone(),
        );
        let services = cluster.services();
        let checker = cluster.checker.clone();
        tasks.push(cluster.env.spawn(async move {
            // Until the deadline, or the first violation (nothing after it matters).
            while env.elapsed() < Duration::from_secs(secs) && checker.first_violation().is_none() {
                let node = support::pick(&env, &names).clone();
                let actor = support::pick(&env, &actors).clone();
                let release = env.rng().gen_bool(0.1);
                let service = services.get(&node);
                // A client gives up after 300 ms (the request may still complete).
                let outcome = match service {
                    Some(s) => {
                        let call = support::run_on(&node, s.step(actor, release));
                        env.timeout(Duration::from_millis(300), call)
                            .await
                            .ok()
                            .flatten()
                    }
                    None => None,
                };
                let label = match outcome {
                    None => "no reply",
                    Some(Step::Acquired) => "acquired",
                    Some(Step::Refused) => "refused",
                    Some(Step::Released) => "released",
                    Some(Step::Wrote) => "wrote",
                    Some(Step::Fenced) => "fenced",
                    Some(Step::Unknown) => "unknown",
                    Some(Step::Failed) => "failed",
                };
                *tally.lock().unwrap().entry(label).or_default() += 1;
                env.sleep(Duration::from_millis(env.rng().gen_range(5..40)))
                    .await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = monitor.await;
    let tally = tally.lock().unwrap().clone();
    tally
}

/// A cluster of `nodes` lease nodes with `config`, and the shared renewal-error counter.
fn lease_cluster(
    env: &SimEnv,
    nodes: usize,
    config: LeaseConfig,
) -> (Cluster<LeaseNode>, Arc<AtomicU64>) {
    let errors = Arc::new(AtomicU64::new(0));
    let e = errors.clone();
    let lease = config.clone();
    let cluster = Cluster::start(env, nodes, &lease, move |p, c| {
        LeaseNode::start(p, c, config.clone(), e.clone())
    });
    (cluster, errors)
}

/// Checks one lease run: no violation, the workload exercised acquisitions, takeovers, writes
/// and refusals, and every declared fault fired.
fn judge(
    env: &SimEnv,
    cluster: &Cluster<LeaseNode>,
    renew_errors: &AtomicU64,
    tally: &BTreeMap<&'static str, u64>,
) -> Result<(), String> {
    if let Some(v) = cluster.checker.first_violation() {
        return Err(format!(
            "{}\n  outcomes: {tally:?}",
            cluster.checker.explain(&v)
        ));
    }
    // The workload exercised leases somewhere in the seed range (under heavy chaos a seed may
    // make no progress at all; that is not a violation).
    let stats = cluster.checker.stats();
    let count = |k: &str| tally.get(k).copied().unwrap_or(0);
    kelpie::sometimes!(stats.takeovers > 0, "a lease was taken over");
    kelpie::sometimes!(stats.commits > 0, "a fenced write committed");
    kelpie::sometimes!(count("refused") > 0, "a request was refused");
    let failed = count("failed") + count("unknown") + count("no reply") + count("fenced");
    let renew_errors = renew_errors.load(Ordering::Relaxed);
    kelpie::sometimes!(count("wrote") > 0, "a write went through");
    kelpie::sometimes!(
        failed + renew_errors > 0,
        "an operation or a renewal failed"
    );
    support::faults_reached(env)
}

/// Basic faults (1–2 %): occasional write failures, slow storage, skewed clocks within the
/// configured bound, crashes. Four nodes compete for three actors' leases.
#[kelpie::dst_test(
    seeds = 0..16,
    faults = [
        StorageWriteFail(0.02),
        StorageLatency(0.02, 20),
        ClockSkew(0.02, 50),
        NodeCrash(0.01, 300),
    ]
)]
async fn leases_stay_unique_under_basic_faults(env: SimEnv) -> Result<(), String> {
    let config = lease_config();
    let (cluster, errors) = lease_cluster(&env, 4, config);
    let actors = support::actors(3);
    let tally = lease_workload(&cluster, &actors, 4, 5).await;
    judge(&env, &cluster, &errors, &tally)
}

/// Chaos (20–30 % per operation, per 100 ms tick for node and clock faults): failing and slow
/// storage, crashes mid-commit, pauses longer than a lease, skew at the bound, partitions from
/// the store.
#[kelpie::dst_test(
    seeds = 0..16,
    fault_tick = "100ms",
    faults = [
        StorageWriteFail(0.25),
        StorageLatency(0.3, 30),
        CrashDuringTransaction(0.2),
        NodePause(0.2, 800),
        NodeCrash(0.2, 300),
        ClockSkew(0.3, 50),
        NetworkPartition(0.2, 600),
    ]
)]
async fn leases_stay_unique_under_chaos(env: SimEnv) -> Result<(), String> {
    let config = lease_config();
    let (cluster, errors) = lease_cluster(&env, 4, config);
    let actors = support::actors(3);
    let tally = lease_workload(&cluster, &actors, 4, 5).await;
    judge(&env, &cluster, &errors, &tally)
}

/// Forward clock jumps of up to 2 s (four lease durations): a holder whose clock jumps only
/// stops trusting its lease early, and an acquirer's takeover wait is a timer, so a jump
/// cannot shorten it.
#[kelpie::dst_test(
    seeds = 0..12,
    faults = [ClockJump(0.02, 2000), NodePause(0.01, 800), StorageWriteFail(0.02)]
)]
async fn forward_clock_jumps_cannot_break_leases(env: SimEnv) -> Result<(), String> {
    let config = lease_config();
    let (cluster, errors) = lease_cluster(&env, 4, config);
    let actors = support::actors(3);
    let tally = lease_workload(&cluster, &actors, 4, 5).await;
    judge(&env, &cluster, &errors, &tally)
}

/// Canary for LeaseUniqueness: a lease that trusts its clock without a margin and lets an
/// acquirer take over when its own clock passes the holder's stored expiry. Under skew within
/// the configured bound, two holders overlap.
#[kelpie::dst_test(
    seeds = 0..50,
    canary,
    faults = [ClockSkew(0.1, 50), NodeCrash(0.02, 300), NodePause(0.02, 600)]
)]
async fn canary_lease_ignoring_skew_breaks_uniqueness(env: SimEnv) -> Result<(), String> {
    let mut config = lease_config();
    config.bugs.lease_ignores_clock_skew = true;
    let (cluster, _) = lease_cluster(&env, 4, config);
    let actors = support::actors(2);
    let _ = lease_workload(&cluster, &actors, 4, 3).await;
    match cluster.checker.violation_of("LeaseUniqueness") {
        Some(v) => Err(v.to_string()),
        None => Ok(()),
    }
}

/// Canary for FencingTokenMonotonic: fenced commits that do not compare tokens. A holder
/// paused mid-write past its lease wakes up after a takeover and its stale write commits.
#[kelpie::dst_test(
    seeds = 0..50,
    canary,
    faults = [NodePause(0.05, 1500), StorageLatency(0.3, 50)]
)]
async fn canary_unchecked_fencing_accepts_stale_writes(env: SimEnv) -> Result<(), String> {
    let mut config = lease_config();
    config.bugs.fencing_skips_token_check = true;
    let (cluster, _) = lease_cluster(&env, 3, config);
    let actors = support::actors(2);
    let _ = lease_workload(&cluster, &actors, 4, 3).await;
    match cluster.checker.violation_of("FencingTokenMonotonic") {
        Some(v) => Err(v.to_string()),
        None => Ok(()),
    }
}

/// The storage faults reach the lease layer: with every write failing, nobody ever acquires.
#[kelpie::dst_test(seeds = 0..3, faults = [StorageWriteFail(1.0)])]
async fn failing_writes_keep_leases_unacquired(env: SimEnv) -> Result<(), String> {
    let config = lease_config();
    let (cluster, _) = lease_cluster(&env, 2, config);
    let actors = support::actors(1);
    let tally = lease_workload(&cluster, &actors, 2, 1).await;
    let stats = cluster.checker.stats();
    if stats.acquisitions != 0 || tally.get("failed").copied().unwrap_or(0) == 0 {
        return Err(format!(
            "writes failed but leases were acquired: {stats}; {tally:?}"
        ));
    }
    if env.faults().fired(FaultKind::StorageWriteFail) == 0 {
        return Err("StorageWriteFail never fired".into());
    }
    Ok(())
}

/// Lease settings are accepted exactly when they are safe (`safety_margin >= 2 ×
/// max_clock_skew`, `safety_margin < duration`) and renewable (`renew_interval < duration -
/// safety_margin`: a holder renews before it stops trusting its lease), judged against those
/// rules written out here, on settings drawn per seed at and around each boundary.
#[kelpie::dst_test(seeds = 0..10)]
async fn lease_settings_are_accepted_exactly_when_safe_and_renewable(
    env: SimEnv,
) -> Result<(), String> {
    let rng = env.rng();
    let ms = Duration::from_millis;
    let near = |at: Duration, pick: u64| match pick {
        0 => at.saturating_sub(ms(1)),
        1 => at,
        2 => at + ms(1),
        3 => Duration::ZERO,
        _ => at + ms(rng.gen_range(2..400)),
    };
    let mut accepted = 0;
    for _ in 0..200 {
        let duration = near(ms(rng.gen_range(1..1000)), rng.gen_range(1..5));
        let skew = ms(rng.gen_range(0..200));
        let mut config = LeaseConfig::new(duration, skew);
        config.safety_margin = near(skew * 2, rng.gen_range(0..5));
        let renewable_below = duration.saturating_sub(config.safety_margin);
        config.renew_interval = near(renewable_below, rng.gen_range(0..5));
        let safe = config.safety_margin >= skew * 2 && config.safety_margin < duration;
        let renewable = !duration.is_zero()
            && !config.renew_interval.is_zero()
            && config.safety_margin < duration
            && config.renew_interval < duration - config.safety_margin;
        let valid = config.validate();
        if valid.is_ok() != (safe && renewable) {
            return Err(format!(
                "{config:?}: validate says {valid:?}; safe {safe}, renewable {renewable}"
            ));
        }
        accepted += u64::from(valid.is_ok());
    }
    kelpie::sometimes!(accepted > 0, "a drawn lease config was accepted");
    Ok(())
}

/// A renewal extends the lease from the holder's clock: on a node of its own, the renewed
/// lease expires `duration` after the holder's clock read at the renewal (between the readings
/// just before and just after it), later than the acquired one, and is trusted until
/// `safety_margin` before that; the token is unchanged.
#[kelpie::dst_test(seeds = 0..10)]
async fn a_renewal_extends_the_lease_from_the_holders_clock(env: SimEnv) -> Result<(), String> {
    let db = env.create_node("db").build();
    let node = env.create_node("n").build();
    let platform = SimPlatform::new(node.clone(), SimKv::new(&db));
    let config = lease_config();
    let mgr = LeaseManager::new(platform.clone(), config.clone()).map_err(|e| e.to_string())?;
    let pause = Duration::from_millis(env.rng().gen_range(10..100));
    let id = ActorId::new("ns", "a0").unwrap();
    let run = node.spawn(async move {
        let lease = mgr.acquire(&id).await?;
        platform.sleep(pause).await;
        let before = platform.now();
        let renewed = mgr.renew(&lease).await?;
        Ok::<_, ActorError>((lease, renewed, before, platform.now()))
    });
    let (lease, renewed, before, after) = run
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let expiry = renewed.expiry();
    if expiry < before + config.duration
        || expiry > after + config.duration
        || expiry <= lease.expiry()
        || renewed.valid_until() != expiry - config.safety_margin
        || renewed.token() != lease.token()
    {
        return Err(format!(
            "renewed between {before:?} and {after:?} on the holder's clock: {renewed:?} (was \
             {lease:?}; duration {:?}, margin {:?})",
            config.duration, config.safety_margin
        ));
    }
    Ok(())
}

/// Every write of a lease record makes a new version of it (`LeaseRecord::seq`, what a node
/// waiting to take over watches): on a node of its own, an acquisition, a renewal, a hand-off
/// and a release each leave a record with a larger `seq` than the one before, in the state the
/// operation says (held, held, handed off to the target under the token it returned,
/// released).
#[kelpie::dst_test(seeds = 0..10)]
async fn every_lease_record_write_is_a_new_version(env: SimEnv) -> Result<(), String> {
    let db = env.create_node("db").build();
    let node = env.create_node("n").build();
    let platform = SimPlatform::new(node.clone(), SimKv::new(&db));
    let mgr = LeaseManager::new(platform, lease_config()).map_err(|e| e.to_string())?;
    let run = node.spawn(async move {
        let (a, b) = (ActorId::new("ns", "a")?, ActorId::new("ns", "b")?);
        let mut records = Vec::new();
        let lease = mgr.acquire(&a).await?;
        records.push(("acquire", mgr.read(&a).await?));
        let lease = mgr.renew(&lease).await?;
        records.push(("renew", mgr.read(&a).await?));
        let token = mgr.hand_off(&lease, "m", |_| Vec::new()).await?;
        records.push(("hand off", mgr.read(&a).await?));
        let other = mgr.acquire(&b).await?;
        let acquired_b = mgr.read(&b).await?;
        mgr.release(&other).await?;
        Ok::<_, ActorError>((records, token, acquired_b, mgr.read(&b).await?))
    });
    let (records, token, acquired_b, released_b) = run
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let seqs: Vec<Option<u64>> = records
        .iter()
        .map(|(_, r)| r.as_ref().map(|r| r.seq))
        .collect();
    let states: Vec<Option<LeaseState>> = records
        .iter()
        .map(|(_, r)| r.as_ref().map(|r| r.state.clone()))
        .collect();
    let handed = LeaseState::HandedOff { to: "m".into() };
    if !seqs.windows(2).all(|w| w[0] < w[1])
        || states != [Some(LeaseState::Held), Some(LeaseState::Held), Some(handed)]
        || records[2].1.as_ref().map(|r| r.token) != Some(token)
    {
        return Err(format!(
            "acquire, renew, hand off left {records:?} (token {token})"
        ));
    }
    let versions = (
        acquired_b.as_ref().map(|r| r.seq),
        released_b.as_ref().map(|r| r.seq),
    );
    if !(versions.0 < versions.1
        && released_b.as_ref().map(|r| &r.state) == Some(&LeaseState::Released))
    {
        return Err(format!(
            "acquire then release left {acquired_b:?}, then {released_b:?}"
        ));
    }
    Ok(())
}
