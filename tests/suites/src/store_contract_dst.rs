//! The store contract: one suite, run against every [`ActorKV`] the runtime ships —
//! [`SimKv`] (the simulated database node's disk) and [`MemoryKv`] (the in-process store the
//! runtime uses in production) — so that the simulated store and the production one obey the
//! same rules:
//!
//! | clause | checked by |
//! |---|---|
//! | point reads, writes, deletes and prefix scans agree with a model, for adversarial keys (prefixes of each other, empty, 64 bytes, unicode, `/` and NUL) and values (empty, maximal, binary) | [`ops_match_a_model`] |
//! | a transaction reads its own writes and applies all of them at once | [`ops_match_a_model`] |
//! | of two transactions that read and write one key concurrently, exactly one commits | [`conflicts`] |
//! | concurrent read-modify-write transactions are serializable (no lost update, no write skew) | [`serializable`] ([`SerializableIsolation`]) |
//! | crash (SimKv only: `MemoryKv` is process memory, gone with the process): an acknowledged write survives a crash of the store, a transaction whose outcome is unknown is applied entirely or not at all | [`crash_semantics`] |
//!
//! Keys and values come from `kelpie::gen`, drawn from each seed's stream.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie::gen::{Alphabet, BytesGen, IdGen};
use kelpie::{NodeStatus, SimEnv};
use kelpie_actors::invariants::SerializableIsolation;
use kelpie_actors::{ActorKV, KvError, KvTransaction, MemoryKv, MemoryKvBug, SimKv};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn show(key: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(key))
}

/// Adversarial keys: distinct ids of up to 64 characters of any UTF-8 (the empty key, a
/// prefix chain, a maximal one), plus each with a separator and a suffix, so that prefix
/// scans see keys that extend each other.
fn keys(env: &SimEnv) -> Vec<Vec<u8>> {
    let rng = env.rng();
    let base = IdGen::new(Alphabet::Unicode, 0, 64).distinct(&rng, 8);
    let mut keys: Vec<Vec<u8>> = base.iter().map(|k| k.clone().into_bytes()).collect();
    for k in base.iter().take(4) {
        keys.push(format!("{k}/x").into_bytes());
    }
    keys
}

/// Random point operations, prefix scans and transactions, each compared with a model.
async fn ops_match_a_model<K: ActorKV>(env: &SimEnv, kv: K) -> Result<(), String> {
    let rng = env.rng();
    let keys = keys(env);
    let values = BytesGen::new(512);
    let mut model = Model::new();
    let pick = |keys: &[Vec<u8>]| keys[rng.gen_range(0..keys.len() as u64) as usize].clone();
    let err = |op: &str, e: KvError| format!("{op} failed on a fault-free store: {e}");
    let mut scans_with_extension = 0;
    for step in 0..150 {
        match rng.gen_range(0..10) {
            0..=2 => {
                let (k, v) = (pick(&keys), values.one(&rng));
                kv.set(&k, &v).await.map_err(|e| err("set", e))?;
                model.insert(k, v);
            }
            3 => {
                let k = pick(&keys);
                kv.delete(&k).await.map_err(|e| err("delete", e))?;
                model.remove(&k);
            }
            4..=5 => {
                let k = pick(&keys);
                let got = kv.get(&k).await.map_err(|e| err("get", e))?;
                if got.as_ref() != model.get(&k) {
                    return Err(format!(
                        "step {step}: get {} returned {got:?}, the model holds {:?}",
                        show(&k),
                        model.get(&k)
                    ));
                }
            }
            6..=7 => {
                // A prefix: a key cut at a random byte (possibly inside a UTF-8 character, or
                // empty: the whole store).
                let k = pick(&keys);
                let prefix = k[..rng.gen_range(0..k.len() as u64 + 1) as usize].to_vec();
                let got = kv.scan_prefix(&prefix).await.map_err(|e| err("scan", e))?;
                let want: Vec<(Vec<u8>, Vec<u8>)> = model
                    .iter()
                    .filter(|(key, _)| key.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if got != want {
                    let names = |rows: &[(Vec<u8>, Vec<u8>)]| {
                        rows.iter().map(|(k, _)| show(k)).collect::<Vec<_>>()
                    };
                    return Err(format!(
                        "step {step}: scan_prefix {} listed {:?}, the model lists {:?}",
                        show(&prefix),
                        names(&got),
                        names(&want)
                    ));
                }
                scans_with_extension += u64::from(want.len() > 1);
            }
            _ => {
                // A transaction: reads see its own writes; the commit applies all or nothing.
                let mut txn = kv.transaction();
                let mut mine = model.clone();
                for _ in 0..rng.gen_range(1..5) {
                    let k = pick(&keys);
                    if rng.gen_bool(0.7) {
                        let v = values.one(&rng);
                        txn.set(&k, &v);
                        mine.insert(k.clone(), v);
                    } else {
                        txn.delete(&k);
                        mine.remove(&k);
                    }
                    let seen = txn.get(&k).await.map_err(|e| err("txn get", e))?;
                    if seen.as_ref() != mine.get(&k) {
                        return Err(format!(
                            "step {step}: a transaction read {seen:?} at {} after writing {:?}",
                            show(&k),
                            mine.get(&k)
                        ));
                    }
                }
                txn.commit().await.map_err(|e| err("commit", e))?;
                model = mine;
            }
        }
    }
    let all = kv.scan_prefix(b"").await.map_err(|e| err("scan", e))?;
    if all.into_iter().collect::<Model>() != model {
        return Err("the store's final content differs from the model".into());
    }
    kelpie::sometimes!(
        scans_with_extension > 0,
        "a prefix scan matched keys that extend each other"
    );
    kelpie::sometimes!(model.contains_key(&Vec::new()), "the empty key was stored");
    Ok(())
}

/// Two transactions read and write one key; whichever commits second must conflict, and the
/// store holds the first one's value.
async fn conflicts<K: ActorKV>(env: &SimEnv, kv: K) -> Result<(), String> {
    let rng = env.rng();
    let keys = keys(env);
    for round in 0..20 {
        let k = keys[rng.gen_range(0..keys.len() as u64) as usize].clone();
        let (mut a, mut b) = (kv.transaction(), kv.transaction());
        let _ = a.get(&k).await.map_err(|e| e.to_string())?;
        let _ = b.get(&k).await.map_err(|e| e.to_string())?;
        a.set(&k, format!("a{round}").as_bytes());
        b.set(&k, format!("b{round}").as_bytes());
        let (first, second, winner) = if rng.gen_bool(0.5) {
            (a, b, "a")
        } else {
            (b, a, "b")
        };
        first.commit().await.map_err(|e| e.to_string())?;
        match second.commit().await {
            Err(KvError::Conflict { .. }) => {}
            other => {
                return Err(format!(
                    "round {round}: two transactions wrote {} after reading it, the second \
                     commit returned {other:?} instead of a conflict",
                    show(&k)
                ))
            }
        }
        let stored = kv.get(&k).await.map_err(|e| e.to_string())?;
        if stored != Some(format!("{winner}{round}").into_bytes()) {
            return Err(format!(
                "round {round}: {} holds {stored:?}, not the committed {winner}{round}",
                show(&k)
            ));
        }
    }
    Ok(())
}

/// Four tasks run read-modify-write transactions over four keys, each reading two keys and
/// writing one (the shape of write skew), with think time between the steps so they
/// interleave; the recorded history must be serializable against the final content.
async fn serializable<K: ActorKV>(env: &SimEnv, kv: K) -> Result<(), String> {
    let keys: Vec<Vec<u8>> = (0..4).map(|i| format!("acct/{i}").into_bytes()).collect();
    let mut initial = Model::new();
    for k in &keys {
        kv.set(k, b"init").await.map_err(|e| e.to_string())?;
        initial.insert(k.clone(), b"init".to_vec());
    }
    let checker = SerializableIsolation::with_initial(initial);
    let committed = Arc::new(Mutex::new((0u64, 0u64)));
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (env2, kv, keys, checker, committed) = (
            env.clone(),
            kv.clone(),
            keys.clone(),
            checker.clone(),
            committed.clone(),
        );
        tasks.push(env.spawn(async move {
            let rng = env2.rng();
            for i in 0..15 {
                let mut txn = checker.record(kv.transaction(), format!("t{task}.{i}"));
                let a = rng.gen_range(0..4) as usize;
                let b = (a + 1 + rng.gen_range(0..3) as usize) % 4;
                let ok = async {
                    txn.get(&keys[a]).await?;
                    env2.sleep(Duration::from_millis(rng.gen_range(0..4))).await;
                    txn.get(&keys[b]).await?;
                    let w = if rng.gen_bool(0.5) { a } else { b };
                    txn.set(&keys[w], format!("t{task}.{i}").as_bytes());
                    env2.sleep(Duration::from_millis(rng.gen_range(0..4))).await;
                    Ok::<_, KvError>(())
                }
                .await;
                let result = match ok {
                    Ok(()) => txn.commit().await,
                    Err(e) => Err(e),
                };
                {
                    let mut c = committed.lock().unwrap();
                    match result {
                        Ok(()) => c.0 += 1,
                        Err(_) => c.1 += 1,
                    }
                }
                env2.sleep(Duration::from_millis(rng.gen_range(0..3))).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let state: Model = kv
        .scan_prefix(b"acct/")
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let report = checker
        .check(&state)
        .map_err(|v| format!("{v}\n  ({} transactions recorded)", checker.len()))?;
    let (ok, failed) = *committed.lock().unwrap();
    env.trace(format!("serializable: {report}"));
    kelpie::sometimes!(ok > 0, "a transaction committed");
    kelpie::sometimes!(failed > 0, "a transaction conflicted");
    Ok(())
}

/// SimKv only: writes and transactions under storage faults and crashes of the database
/// node. An acknowledged write survives; a transaction writes two keys with one tag, and
/// whatever its outcome (committed, failed, unknown) the two keys agree.
async fn crash_semantics(env: &SimEnv) -> Result<(), String> {
    let db = env.create_node("db").build();
    let kv = SimKv::new(&db);
    let rng = env.rng();
    let names = IdGen::new(Alphabet::AsciiLower, 1, 24).distinct(&rng, 10);
    let mut acked = Model::new();
    let mut unknown = 0;
    for step in 0..60u32 {
        while env.node_status(db.node()) != NodeStatus::Up {
            env.sleep(Duration::from_millis(20)).await;
        }
        let name = &names[rng.gen_range(0..names.len() as u64) as usize];
        let tag = format!("v{step}");
        if rng.gen_bool(0.5) {
            let key = format!("single/{name}").into_bytes();
            match kv.set(&key, tag.as_bytes()).await {
                Ok(()) => {
                    acked.insert(key, tag.into_bytes());
                }
                Err(_) => {
                    acked.remove(&key);
                }
            }
        } else {
            let (a, b) = (format!("pair/{name}/a"), format!("pair/{name}/b"));
            let mut txn = kv.transaction();
            txn.set(a.as_bytes(), tag.as_bytes());
            txn.set(b.as_bytes(), tag.as_bytes());
            if matches!(txn.commit().await, Err(KvError::OutcomeUnknown)) {
                unknown += 1;
            }
        }
        if rng.gen_bool(0.1) {
            env.kill(db.node());
            env.sleep(Duration::from_millis(rng.gen_range(1..50))).await;
            env.restart(db.node());
        }
        env.sleep(Duration::from_millis(rng.gen_range(1..10))).await;
    }
    while env.node_status(db.node()) != NodeStatus::Up {
        env.sleep(Duration::from_millis(20)).await;
    }
    let state: Model = loop {
        if let Ok(rows) = kv.scan_prefix(b"").await {
            break rows.into_iter().collect();
        }
        env.sleep(Duration::from_millis(20)).await;
    };
    for (key, value) in &acked {
        // A later write of the key that failed may or may not have landed: only keys whose
        // last write was acknowledged are in `acked`.
        if state.get(key) != Some(value) {
            return Err(format!(
                "acknowledged write of {} ({}) lost after crashes: the store holds {:?}",
                show(key),
                String::from_utf8_lossy(value),
                state
                    .get(key)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            ));
        }
    }
    for name in &names {
        let (a, b) = (
            state.get(format!("pair/{name}/a").as_bytes()),
            state.get(format!("pair/{name}/b").as_bytes()),
        );
        if a != b {
            return Err(format!(
                "transaction torn for {name}: a = {:?}, b = {:?}",
                a.map(|v| String::from_utf8_lossy(v).into_owned()),
                b.map(|v| String::from_utf8_lossy(v).into_owned())
            ));
        }
    }
    kelpie::sometimes!(unknown > 0, "a commit's outcome was unknown");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The contract, store by store
// ---------------------------------------------------------------------------------------------

/// SimKv: point operations, scans and transactions agree with a model.
#[kelpie::dst_test(seeds = 0..20)]
async fn sim_kv_ops_match_a_model(env: SimEnv) -> Result<(), String> {
    let db = env.create_node("db").build();
    ops_match_a_model(&env, SimKv::new(&db)).await
}

/// MemoryKv: point operations, scans and transactions agree with a model.
#[kelpie::dst_test(seeds = 0..20)]
async fn memory_kv_ops_match_a_model(env: SimEnv) -> Result<(), String> {
    ops_match_a_model(&env, MemoryKv::new()).await
}

/// SimKv: of two conflicting transactions exactly one commits.
#[kelpie::dst_test(seeds = 0..10)]
async fn sim_kv_conflicting_transactions(env: SimEnv) -> Result<(), String> {
    let db = env.create_node("db").build();
    conflicts(&env, SimKv::new(&db)).await
}

/// MemoryKv: of two conflicting transactions exactly one commits.
#[kelpie::dst_test(seeds = 0..10)]
async fn memory_kv_conflicting_transactions(env: SimEnv) -> Result<(), String> {
    conflicts(&env, MemoryKv::new()).await
}

/// SimKv: concurrent read-modify-write transactions are serializable, with storage latency.
#[kelpie::dst_test(seeds = 0..20, faults = [StorageLatency(0.3, 5)])]
async fn sim_kv_transactions_are_serializable(env: SimEnv) -> Result<(), String> {
    let db = env.create_node("db").build();
    serializable(&env, SimKv::new(&db)).await
}

/// MemoryKv: concurrent read-modify-write transactions are serializable.
#[kelpie::dst_test(seeds = 0..20)]
async fn memory_kv_transactions_are_serializable(env: SimEnv) -> Result<(), String> {
    serializable(&env, MemoryKv::new()).await
}

/// SimKv: acknowledged writes survive crashes; unknown outcomes are all or nothing.
#[kelpie::dst_test(
    seeds = 0..20,
    faults = [StorageWriteFail(0.05), CrashDuringTransaction(0.1), StorageLatency(0.2, 5)]
)]
async fn sim_kv_survives_crashes(env: SimEnv) -> Result<(), String> {
    crash_semantics(&env).await
}

/// Canary for the contract run on MemoryKv: a commit that validates only the keys it writes
/// lets two transactions that read the same two keys and write different ones both commit
/// (write skew), which [`SerializableIsolation`] reports as a dependency cycle.
#[kelpie::dst_test(seeds = 0..20, canary)]
async fn canary_memory_kv_write_skew_breaks_serializability(env: SimEnv) -> Result<(), String> {
    serializable(&env, MemoryKv::with_bug(MemoryKvBug::ValidatesOnlyWrites)).await
}
