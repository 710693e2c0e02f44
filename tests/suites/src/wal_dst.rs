//! The write-ahead log under faults ([`WalDurability`]): clients submit credits over the
//! simulated network to a WAL service on node `w`, retrying with the same idempotency key
//! until they are acknowledged; the service acknowledges once the entry is durable, and an
//! applier applies pending entries. Crashes of the service, of the database node (mid-commit)
//! and lost or duplicated messages must neither lose an acknowledged entry nor apply any key
//! twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie::{FaultKind, NodeStatus, SimEnv};

use crate::support::conflicting::{AlwaysConflicting, ConflictingPlatform};
use kelpie_actors::invariants::WalDurability;
use kelpie_actors::{
    ActorError, ActorKV, JsonValue, KvError, KvTransaction, Platform, SimKv, SimPlatform, Wal,
    WalApply, WalBug, WalConfig, WalEntry,
};

/// The service's protocol.
#[derive(Debug, Clone, Hash)]
enum WalMsg {
    /// Credit `amount` under idempotency key `key`.
    Submit { key: String, amount: u64 },
    /// `key` is durably logged at `seq`.
    Accepted { key: String, seq: u64 },
}

const TOTAL: &[u8] = b"ledger/total";
const APPLIED: &str = "ledger/applied/";

fn read_u64(v: Option<Vec<u8>>) -> Result<u64, ActorError> {
    match v {
        None => Ok(0),
        Some(b) => <[u8; 8]>::try_from(b.as_slice())
            .map(u64::from_le_bytes)
            .map_err(|_| ActorError::Corrupt {
                key: "ledger".into(),
                reason: format!("{} bytes", b.len()),
            }),
    }
}

/// The effect of an entry: add its amount to the total and count the application under its
/// key (so that a double application is visible).
struct Credit;

impl<T: KvTransaction> WalApply<T> for Credit {
    async fn apply(&self, entry: &WalEntry, txn: &mut T) -> Result<JsonValue, ActorError> {
        let amount = entry.payload.as_u64().unwrap_or(0);
        let total = read_u64(txn.get(TOTAL).await?)? + amount;
        txn.set(TOTAL, &total.to_le_bytes());
        let key = format!("{APPLIED}{}", entry.key).into_bytes();
        let times = read_u64(txn.get(&key).await?)? + 1;
        txn.set(&key, &times.to_le_bytes());
        Ok(total.into())
    }
}

#[derive(Debug, Default)]
struct Tally {
    /// Appends the service failed (storage errors), and client timeouts.
    failed: u64,
    /// Per client: the index of its next request (the client's memory).
    next: BTreeMap<usize, u32>,
}

#[derive(Clone)]
struct Setup {
    checker: WalDurability,
    tally: Arc<Mutex<Tally>>,
    config: WalConfig,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The WAL service: replays what a crash left pending, applies new entries in the
/// background, and acknowledges each submission once its entry is durable (one task per
/// request, so appends run concurrently).
fn service(env: &SimEnv, kv: &SimKv, s: &Setup) -> SimEnv {
    let (kv, s) = (kv.clone(), s.clone());
    env.create_node("w")
        .init(move |node| {
            let p = SimPlatform::new(node.clone(), kv.clone());
            let wal = Wal::with_config(p.clone(), "ledger", s.config.clone()).expect("valid name");
            let ep = Arc::new(node.network().endpoint::<WalMsg>());
            let tally = s.tally.clone();
            async move {
                let (wal2, p2) = (wal.clone(), p.clone());
                p.spawn(async move {
                    loop {
                        let _ = wal2.replay(&Credit).await;
                        p2.sleep(Duration::from_millis(20)).await;
                    }
                });
                while let Some((from, msg)) = ep.recv().await {
                    let WalMsg::Submit { key, amount } = msg else {
                        continue;
                    };
                    let (wal, ep, tally) = (wal.clone(), ep.clone(), tally.clone());
                    p.spawn(async move {
                        match wal.append(&key, amount.into()).await {
                            Ok(a) => ep.send(from, WalMsg::Accepted { key, seq: a.seq }),
                            Err(_) => lock(&tally).failed += 1,
                        }
                    });
                }
            }
        })
        .build()
}

/// Client `i`: sends `requests` credits one by one, each retried (same key) every 150 ms of
/// silence until accepted.
async fn client(env: SimEnv, server: SimEnv, s: Setup, i: usize, requests: u32) {
    let ep = env.network().endpoint::<WalMsg>();
    loop {
        let n = *lock(&s.tally).next.entry(i).or_default();
        if n >= requests {
            return;
        }
        let key = format!("c{i}-{n}");
        let amount = 1 + env.rng().gen_range(0..100);
        s.checker.attempt(&key, &amount.into());
        'retry: loop {
            ep.send(
                server.node(),
                WalMsg::Submit {
                    key: key.clone(),
                    amount,
                },
            );
            loop {
                match env.timeout(Duration::from_millis(150), ep.recv()).await {
                    Ok(Some((_, WalMsg::Accepted { key: k, .. }))) if k == key => break 'retry,
                    Ok(Some(_)) => {} // a late or duplicated answer to an earlier request
                    Ok(None) | Err(_) => {
                        lock(&s.tally).failed += 1;
                        continue 'retry;
                    }
                }
            }
        }
        s.checker.ack(&key);
        *lock(&s.tally).next.entry(i).or_default() += 1;
        env.sleep(Duration::from_millis(20 + env.rng().gen_range(0..60)))
            .await;
    }
}

/// Three clients, one WAL service, one database; afterwards every pending entry is replayed
/// and the log is checked against the ledger.
async fn wal_workload(
    env: SimEnv,
    config: WalConfig,
    check: bool,
    requests: u32,
    required: &[FaultKind],
) -> Result<(), String> {
    const CLIENTS: usize = 3;
    let db = env.create_node("db").build();
    let kv = SimKv::new(&db);
    let s = Setup {
        checker: WalDurability::new(),
        tally: Arc::new(Mutex::new(Tally::default())),
        config,
    };
    let server = service(&env, &kv, &s);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let c = env.create_node(format!("c{i}")).build();
        clients.push(c.spawn(client(c.clone(), server.clone(), s.clone(), i, requests)));
    }
    for c in clients {
        c.await.map_err(|e| format!("client panicked: {e}"))?;
    }

    // A final replay (as a restarted node would run), racing the service's own applier.
    let p = SimPlatform::new(env.clone(), kv.clone());
    let wal = Wal::new(p, "ledger").map_err(|e| e.to_string())?;
    let (entries, applied, total) = loop {
        while env.node_status(db.node()) != NodeStatus::Up {
            env.sleep(Duration::from_millis(10)).await;
        }
        let read = async {
            wal.replay(&Credit).await?;
            let entries = wal.entries().await?;
            let applied: BTreeMap<String, u64> = kv
                .scan_prefix(APPLIED.as_bytes())
                .await?
                .into_iter()
                .map(|(k, v)| {
                    let key = String::from_utf8_lossy(&k[APPLIED.len()..]).into_owned();
                    read_u64(Some(v)).map(|n| (key, n))
                })
                .collect::<Result<_, _>>()?;
            let total = read_u64(kv.get(TOTAL).await?)?;
            Ok::<_, ActorError>((entries, applied, total))
        };
        match read.await {
            Ok(r) if r.0.iter().all(WalEntry::is_complete) => break r,
            _ => env.sleep(Duration::from_millis(20)).await,
        }
    };
    let report = s
        .checker
        .check(&entries, &applied)
        .map_err(|v| v.to_string())?;
    let expected: u64 = entries.iter().filter_map(|e| e.payload.as_u64()).sum();
    if total != expected {
        return Err(format!(
            "ledger total {total}, but the applied entries add up to {expected}"
        ));
    }
    env.trace(format!("wal: {report}"));
    // Exercised somewhere in the seed range, not necessarily in this seed.
    if check {
        let failed = lock(&s.tally).failed;
        let stats = env.faults();
        kelpie::sometimes!(report.acked > 0, "an entry was acknowledged");
        kelpie::sometimes!(failed > 0, "an append failed");
        kelpie::sometimes!(
            required.iter().all(|k| stats.fired(*k) > 0),
            "every required fault fired in one seed"
        );
    }
    Ok(())
}

const REQUIRED: [FaultKind; 4] = [
    FaultKind::StorageWriteFail,
    FaultKind::CrashDuringTransaction,
    FaultKind::NodeCrash,
    FaultKind::PacketLoss,
];

/// Realistic faults: the service crashes now and then, 2 % of writes fail or crash the
/// database mid-commit, 2 % of messages are lost or duplicated.
#[kelpie::dst_test(
    seeds = 0..20,
    faults = [
        StorageLatency(0.5, max_ms = 5),
        StorageWriteFail(0.02),
        CrashDuringTransaction(0.02),
        NodeCrash(0.02, restart_ms = 200, node = "w"),
        PacketLoss(0.02),
        MessageDuplicate(0.02),
    ]
)]
async fn acknowledged_entries_apply_exactly_once(env: SimEnv) -> Result<(), String> {
    wal_workload(env, WalConfig::default(), true, 100, &REQUIRED).await
}

/// Chaos: a quarter of writes fail, a fifth of commits crash the database, the service
/// crashes every few hundred milliseconds, a quarter of messages are lost.
#[kelpie::dst_test(
    seeds = 0..20,
    fault_tick = "50ms",
    faults = [
        StorageLatency(0.3, max_ms = 20),
        StorageWriteFail(0.25),
        CrashDuringTransaction(0.2),
        NodeCrash(0.25, restart_ms = 100, node = "w"),
        PacketLoss(0.25),
        MessageDuplicate(0.2),
    ]
)]
async fn wal_survives_chaos(env: SimEnv) -> Result<(), String> {
    wal_workload(env, WalConfig::default(), true, 25, &REQUIRED).await
}

/// Canary: a WAL that acknowledges an append before writing it loses acknowledged entries
/// when the service crashes in between; the WAL checker must find a seed.
#[kelpie::dst_test(
    seeds = 0..50,
    canary,
    faults = [StorageLatency(0.5, max_ms = 5), NodeCrash(0.02, restart_ms = 200, node = "w")]
)]
async fn canary_ack_before_durable_loses_entries(env: SimEnv) -> Result<(), String> {
    let config = WalConfig {
        bug: Some(WalBug::AckBeforeDurable { delay_ms: 30 }),
        ..WalConfig::default()
    };
    wal_workload(env, config, false, 30, &[]).await
}

/// Two logs on one store, named `a` and `ab` (one name a prefix of the other), appended to in
/// a random interleaving: each log numbers its entries 0, 1, 2, … in append order, lists
/// exactly its own entries (and reads each back by seq), a replay of one applies exactly its
/// own pending entries once, and every key either writes lies under its own `wal/{name}/`.
#[kelpie::dst_test(seeds = 0..10)]
async fn two_logs_on_one_store_keep_to_their_own_keys(env: SimEnv) -> Result<(), String> {
    let db = env.create_node("db").build();
    let kv = SimKv::new(&db);
    let node = env.create_node("w").build();
    let platform = SimPlatform::new(node.clone(), kv.clone());
    let logs = [
        Wal::new(platform.clone(), "a").map_err(|e| e.to_string())?,
        Wal::new(platform, "ab").map_err(|e| e.to_string())?,
    ];
    let rng = env.rng();
    let mut appended: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for i in 0..16 {
        let which = rng.gen_range(0..2) as usize;
        let key = format!("k{i}");
        let got = logs[which]
            .append(&key, JsonValue::from(i))
            .await
            .map_err(|e| e.to_string())?;
        let want = appended[which].len() as u64;
        if got.seq != want || got.existed {
            return Err(format!(
                "log {:?}: append #{want} got seq {} (existed {})",
                logs[which].name(),
                got.seq,
                got.existed
            ));
        }
        appended[which].push(key);
    }
    for (log, keys) in logs.iter().zip(&appended) {
        let listed: Vec<(u64, String)> = log
            .entries()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|e| (e.seq, e.key))
            .collect();
        let want: Vec<(u64, String)> = keys
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, k)| (i as u64, k))
            .collect();
        if listed != want {
            return Err(format!(
                "log {:?} lists {listed:?}, appended {want:?}",
                log.name()
            ));
        }
        for (seq, key) in want {
            let got = log.entry(seq).await.map_err(|e| e.to_string())?;
            if got.as_ref().map(|e| &e.key) != Some(&key) {
                return Err(format!(
                    "log {:?}: entry {seq} reads {got:?}, {key:?} was appended there",
                    log.name()
                ));
            }
        }
    }
    // Replaying `a` applies exactly its pending entries, once, and leaves `ab` pending.
    let report = logs[0].replay(&Noop).await.map_err(|e| e.to_string())?;
    let again = logs[0].replay(&Noop).await.map_err(|e| e.to_string())?;
    let pending_ab = logs[1].pending().await.map_err(|e| e.to_string())?.len();
    if (report.applied, report.already, again.applied, again.already)
        != (appended[0].len() as u64, 0, 0, 0)
        || pending_ab != appended[1].len()
    {
        return Err(format!(
            "replay of log \"a\" ({} entries) reported {report:?}, then {again:?}; log \"ab\" \
             has {pending_ab} of {} pending",
            appended[0].len(),
            appended[1].len()
        ));
    }
    let all = kv.scan_prefix(b"").await.map_err(|e| e.to_string())?;
    for (key, _) in all.iter() {
        if !(key.starts_with(b"wal/a/") || key.starts_with(b"wal/ab/")) {
            return Err(format!(
                "a log wrote {:?}, outside wal/a/ and wal/ab/",
                String::from_utf8_lossy(key)
            ));
        }
    }
    Ok(())
}

/// Applies nothing, returns the entry's payload: for checks on the log alone.
struct Noop;

impl<T: KvTransaction> WalApply<T> for Noop {
    async fn apply(&self, entry: &WalEntry, _txn: &mut T) -> Result<JsonValue, ActorError> {
        Ok(entry.payload.clone())
    }
}

/// An append and a complete each retry a conflicting commit exactly `conflict_retries` times
/// (drawn per seed), then return the conflict — judged from the commits the store refused.
#[kelpie::dst_test(seeds = 0..10)]
async fn append_and_complete_retry_conflicts_exactly_as_configured(
    env: SimEnv,
) -> Result<(), String> {
    let db = env.create_node("db").build();
    let node = env.create_node("w").build();
    let kv = AlwaysConflicting::new(SimKv::new(&db));
    let platform = ConflictingPlatform {
        node: SimPlatform::new(node, kv.inner().clone()),
        kv: kv.clone(),
    };
    let retries = env.rng().gen_range(0..6) as u32;
    let config = WalConfig {
        conflict_retries: retries,
        ..WalConfig::default()
    };
    let wal = Wal::with_config(platform, "ledger", config).map_err(|e| e.to_string())?;
    kv.set_armed(false);
    let first = wal
        .append("first", JsonValue::from(1))
        .await
        .map_err(|e| e.to_string())?;
    kv.set_armed(true);
    let before = kv.commits();
    let appended = wal.append("k", JsonValue::from(2)).await;
    let commits = kv.commits() - before;
    if !matches!(appended, Err(ActorError::Kv(KvError::Conflict { .. })))
        || commits != u64::from(retries) + 1
    {
        return Err(format!(
            "append: {commits} commits for conflict_retries = {retries}, returned {appended:?}"
        ));
    }
    let before = kv.commits();
    let completed = wal.complete(first.seq, &Noop).await;
    let commits = kv.commits() - before;
    if !matches!(completed, Err(ActorError::Kv(KvError::Conflict { .. })))
        || commits != u64::from(retries) + 1
    {
        return Err(format!(
            "complete: {commits} commits for conflict_retries = {retries}, returned \
             {completed:?}"
        ));
    }
    Ok(())
}
