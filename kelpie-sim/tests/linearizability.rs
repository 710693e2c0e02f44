//! The linearizability checker on simulated systems: a key-value service over the simulated
//! network and a store on the simulated disk, each correct (accepted on every seed) and with
//! a planted stale read (rejected on some seed, with the stale read among the culprits).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie_sim::history::{History, KvModel, KvOp, KvRet, Outcome, Verdict};
use kelpie_sim::{FaultKind, FaultSpec, NodeId, SimConfig, SimEnv, Simulation};

type Op = KvOp<u8, u64>;
type Ret = KvRet<u64>;
type KvVerdict = Verdict<Op, Ret>;

/// Enough for any history of a few dozen operations from three clients.
const MAX_STATES: u64 = 100_000;
const SEEDS: u64 = 1_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn apply(map: &mut BTreeMap<u8, u64>, op: &Op) -> Ret {
    match op {
        KvOp::Get(k) => KvRet::Value(map.get(k).copied()),
        KvOp::Put(k, v) => {
            map.insert(*k, *v);
            KvRet::Done
        }
        KvOp::Delete(k) => {
            map.remove(k);
            KvRet::Done
        }
        KvOp::Cas { key, expected, new } => {
            let swap = map.get(key) == expected.as_ref();
            if swap {
                map.insert(*key, *new);
            }
            KvRet::Swapped(swap)
        }
        KvOp::Append(..) => unreachable!("the clients here never append"),
    }
}

/// A random operation of client `me`; a CAS expects the last value the client knew of.
fn random_op(env: &SimEnv, me: u64, i: u64, known: &BTreeMap<u8, u64>) -> Op {
    let rng = env.rng();
    let key = rng.gen_range(0..2) as u8;
    let value = me * 1_000 + i;
    match rng.gen_range(0..10) {
        0..=3 => KvOp::Get(key),
        4..=6 => KvOp::Put(key, value),
        7 => KvOp::Delete(key),
        _ => KvOp::Cas {
            key,
            expected: known.get(&key).copied(),
            new: value,
        },
    }
}

/// What a client learns of a key's value from an operation and its return.
fn learn(known: &mut BTreeMap<u8, u64>, op: &Op, ret: &Ret) {
    match (op, ret) {
        (KvOp::Get(k), KvRet::Value(Some(v))) | (KvOp::Put(k, v), _) => {
            known.insert(*k, *v);
        }
        (KvOp::Cas { key, new, .. }, KvRet::Swapped(true)) => {
            known.insert(*key, *new);
        }
        (KvOp::Get(k) | KvOp::Delete(k), _) => {
            known.remove(k);
        }
        _ => {}
    }
}

// --- a key-value service over the simulated network ---

#[derive(Debug, Clone, Hash)]
enum Msg {
    Request { id: u64, op: Op },
    Reply { id: u64, ret: Ret },
}

/// The service's node: applies each request to its map and replies. With `lagging` (the
/// planted bug) it serves reads from a follower copy that each write reaches 2–10 ms after it
/// was acknowledged.
async fn server(env: SimEnv, lagging: bool) {
    let ep = env.network().endpoint::<Msg>();
    let mut primary = BTreeMap::new();
    let follower = Arc::new(Mutex::new(BTreeMap::new()));
    while let Some((from, msg)) = ep.recv().await {
        let Msg::Request { id, op } = msg else {
            continue;
        };
        let mut ret = apply(&mut primary, &op);
        if lagging {
            if let KvOp::Get(k) = op {
                ret = KvRet::Value(follower.lock().unwrap().get(&k).copied());
            } else {
                let (key, value) = (*op.key(), primary.get(op.key()).copied());
                let (env2, follower) = (env.clone(), follower.clone());
                env.spawn(async move {
                    env2.sleep(ms(env2.rng().gen_range(2..11))).await;
                    let mut f = follower.lock().unwrap();
                    match value {
                        Some(v) => f.insert(key, v),
                        None => f.remove(&key),
                    };
                });
            }
        }
        ep.send(from, Msg::Reply { id, ret });
    }
}

/// A client node: `ops` requests, one at a time; a request without a reply within 40 ms has
/// an unknown outcome.
async fn net_client(env: SimEnv, server: NodeId, history: History<Op, Ret>, me: u64, ops: u64) {
    let ep = env.network().endpoint::<Msg>();
    let mut known = BTreeMap::new();
    for id in 0..ops {
        let op = random_op(&env, me, id, &known);
        let call = history.invoke(me, op.clone(), &env);
        ep.send(server, Msg::Request { id, op: op.clone() });
        let reply = env
            .timeout(ms(40), async {
                loop {
                    match ep.recv().await {
                        Some((_, Msg::Reply { id: r, ret })) if r == id => return Some(ret),
                        Some(_) => {} // a late reply to an earlier request
                        None => return None,
                    }
                }
            })
            .await;
        match reply {
            Ok(Some(ret)) => {
                learn(&mut known, &op, &ret);
                call.ok(ret, &env);
            }
            _ => call.unknown(&env),
        }
        env.sleep(ms(env.rng().gen_range(0..3))).await;
    }
}

fn net_faults() -> Vec<FaultSpec> {
    vec![
        FaultSpec::new(FaultKind::NetworkDelay, 0.3).with_param("max_ms", 20),
        FaultSpec::new(FaultKind::MessageReorder, 0.1),
        FaultSpec::new(FaultKind::PacketLoss, 0.03),
    ]
}

/// One seed of the service with three clients of six operations each.
fn run_service(seed: u64, lagging: bool) -> (KvVerdict, History<Op, Ret>) {
    let history = History::new();
    let h = history.clone();
    Simulation::new(SimConfig::with_seed(seed))
        .with_faults(net_faults())
        .run(move |env| async move {
            let kv = env
                .create_node("kv")
                .init(move |env| server(env, lagging))
                .build()
                .node();
            let clients: Vec<_> = (0..3u64)
                .map(|me| {
                    let node = env.create_node(format!("client{me}")).build();
                    node.spawn(net_client(node.clone(), kv, h.clone(), me, 6))
                })
                .collect();
            for c in clients {
                c.await.expect("client task");
            }
        })
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    (history.check(&KvModel::new(), MAX_STATES), history)
}

#[test]
fn correct_service_is_linearizable_on_every_seed() {
    let mut ops = 0;
    let mut unknown_outcomes = 0;
    let mut overlapping = 0;
    for seed in 0..SEEDS {
        let (verdict, history) = run_service(seed, false);
        assert!(verdict.is_linearizable(), "seed {seed}: {verdict}");
        let all = history.operations();
        assert_eq!(all.len(), 18, "seed {seed}");
        ops += all.len();
        unknown_outcomes += all
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Unknown { .. }))
            .count();
        // Operations of different clients whose intervals overlap: the checker had choices.
        let end = |o: &kelpie_sim::history::Operation<Op, Ret>| match o.outcome {
            Outcome::Ok { at, .. } | Outcome::Unknown { at } | Outcome::Failed { at } => at,
            Outcome::Pending => Duration::MAX,
        };
        overlapping += all
            .iter()
            .filter(|a| {
                all.iter()
                    .any(|b| a.client != b.client && a.invoked < end(b) && b.invoked < end(a))
            })
            .count();
    }
    // The faults reached the clients: some outcomes were unknown and most operations overlapped
    // another client's.
    assert!(unknown_outcomes > 50, "{unknown_outcomes} unknown outcomes");
    assert!(overlapping > ops / 2, "{overlapping} of {ops} overlapped");
    println!("{ops} operations, {unknown_outcomes} of unknown outcome, {overlapping} overlapping");
}

#[test]
fn lagging_follower_reads_are_rejected() {
    let mut rejected = Vec::new();
    for seed in 0..SEEDS {
        let (verdict, history) = run_service(seed, true);
        match &verdict {
            Verdict::Linearizable { .. } => {}
            Verdict::Violation(v) => {
                // A stale read is always a culprit, and the shrunk witness is small.
                let read_culprit = v.operations.iter().any(|o| {
                    v.culprits.contains(&o.id)
                        && matches!(o.op, KvOp::Get(_))
                        && matches!(o.outcome, Outcome::Ok { .. })
                });
                assert!(read_culprit, "seed {seed}: {verdict}");
                assert!(v.minimal, "seed {seed}: {verdict}");
                assert!(v.operations.len() <= 6, "seed {seed}: {verdict}");
                // Every reported operation is one that was recorded.
                let all = history.operations();
                assert!(v.operations.iter().all(|o| all[o.id] == *o));
                rejected.push(seed);
            }
            Verdict::Unknown { .. } => panic!("seed {seed}: {verdict}"),
        }
    }
    assert!(
        rejected.len() >= 30,
        "only seeds {rejected:?} of 0..{SEEDS} rejected"
    );
    // A rejected seed replays to the same verdict.
    let first = rejected[0];
    assert_eq!(run_service(first, true).0, run_service(first, true).0);
    println!(
        "{} of {SEEDS} seeds rejected; seed {first}:\n{}",
        rejected.len(),
        run_service(first, true).0
    );
}

// --- a store on the simulated disk, with concurrent clients ---

/// A client task: `ops` operations on the supervisor's disk, which `StorageLatency` delays so
/// that clients overlap. With `cached` (the planted bug), a client remembers what it read or
/// wrote and answers reads of those keys from memory, never learning of others' writes.
async fn disk_client(env: SimEnv, history: History<Op, Ret>, me: u64, ops: u64, cached: bool) {
    let disk = env.storage();
    let mut cache: BTreeMap<u8, Option<u64>> = BTreeMap::new();
    let mut known = BTreeMap::new();
    for i in 0..ops {
        let op = random_op(&env, me, i, &known);
        let key = [*op.key()];
        let call = history.invoke(me, op.clone(), &env);
        let ret = match &op {
            KvOp::Get(k) if cached && cache.contains_key(k) => Ok(KvRet::Value(cache[k])),
            KvOp::Get(k) => disk.get(key).await.map(|v| {
                let v = v.map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                cache.insert(*k, v);
                KvRet::Value(v)
            }),
            KvOp::Put(k, v) => disk.set(key, v.to_le_bytes()).await.map(|()| {
                cache.insert(*k, Some(*v));
                KvRet::Done
            }),
            KvOp::Delete(k) => disk.delete(key).await.map(|()| {
                cache.insert(*k, None);
                KvRet::Done
            }),
            KvOp::Cas {
                key: k,
                expected,
                new,
            } => {
                let mut tx = disk.transaction();
                match tx.get(key).await {
                    Ok(v) => {
                        let v = v.map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                        if v == *expected {
                            tx.set(key, new.to_le_bytes());
                            tx.commit().await.map(|()| KvRet::Swapped(true))
                        } else {
                            Ok(KvRet::Swapped(false))
                        }
                    }
                    Err(e) => Err(e),
                }
                .inspect(|r| {
                    if *r == KvRet::Swapped(true) {
                        cache.insert(*k, Some(*new));
                    }
                })
            }
            KvOp::Append(..) => unreachable!("the clients here never append"),
        };
        match ret {
            Ok(ret) => {
                learn(&mut known, &op, &ret);
                call.ok(ret, &env);
            }
            // Failed reads, writes and commits write nothing.
            Err(_) => call.fail(&env),
        }
        env.sleep(ms(env.rng().gen_range(0..2))).await;
    }
}

fn run_disk(seed: u64, cached: bool) -> KvVerdict {
    let history = History::new();
    let h = history.clone();
    Simulation::new(SimConfig::with_seed(seed))
        .with_faults([
            FaultSpec::new(FaultKind::StorageLatency, 0.5).with_param("max_ms", 5),
            FaultSpec::new(FaultKind::StorageWriteFail, 0.05),
        ])
        .run(move |env| async move {
            let clients: Vec<_> = (0..4u64)
                .map(|me| env.spawn(disk_client(env.clone(), h.clone(), me, 5, cached)))
                .collect();
            for c in clients {
                c.await.expect("client task");
            }
        })
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    history.check(&KvModel::new(), MAX_STATES)
}

#[test]
fn disk_store_is_linearizable_and_a_stale_cache_is_not() {
    for seed in 0..SEEDS {
        let verdict = run_disk(seed, false);
        assert!(verdict.is_linearizable(), "seed {seed}: {verdict}");
    }
    let rejected: Vec<u64> = (0..SEEDS)
        .filter(|&seed| {
            let verdict = run_disk(seed, true);
            assert!(!verdict.is_unknown(), "seed {seed}: {verdict}");
            verdict.is_violation()
        })
        .collect();
    assert!(rejected.len() >= 400, "only seeds {rejected:?} rejected");
    println!("stale cache: {} of {SEEDS} seeds rejected", rejected.len());
}

#[test]
fn operations_record_virtual_times() {
    let history: History<Op, Ret> = History::new();
    let h = history.clone();
    let times = Simulation::new(SimConfig::with_seed(7))
        .run(move |env| async move {
            env.sleep(ms(5)).await;
            let call = h.invoke(1, KvOp::Put(0, 1), &env);
            let t0 = env.elapsed();
            env.sleep(ms(3)).await;
            let t1 = env.elapsed();
            call.ok(KvRet::Done, &env);
            let call = h.invoke(2, KvOp::Get(0), t1);
            env.sleep(ms(1)).await;
            let t2 = env.elapsed();
            call.unknown(t2);
            [t0, t1, t2]
        })
        .unwrap()
        .output;
    let [t0, t1, t2] = times;
    assert!(
        t0 >= ms(5) && t1 >= t0 + ms(3) && t2 >= t1 + ms(1),
        "{times:?}"
    );
    let ops = history.operations();
    assert_eq!((ops[0].invoked, ops[1].invoked), (t0, t1));
    assert_eq!(
        ops[0].outcome,
        Outcome::Ok {
            ret: KvRet::Done,
            at: t1
        }
    );
    assert_eq!(ops[1].outcome, Outcome::Unknown { at: t2 });
    // The register fast path decides it without exploring a state.
    assert_eq!(
        history.check(&KvModel::new(), 10),
        Verdict::Linearizable {
            explored: 0,
            linearization: None
        }
    );
}

#[test]
fn a_witness_is_written_as_svg() {
    // A planted stale read under network faults, as above.
    let (verdict, _) = (0..SEEDS)
        .map(|seed| run_service(seed, true))
        .find(|(v, _)| v.is_violation())
        .expect("some seed is rejected");
    let v = verdict.violation().unwrap();
    let dir = std::env::temp_dir().join(format!("kelpie-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("witness.svg");
    v.write_svg(&path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert_eq!(svg, v.to_svg());
    assert_eq!(svg.matches("<rect").count(), v.operations.len());
    for op in &v.operations {
        assert!(svg.contains(&format!("#{} client {}: ", op.id, op.client)));
    }
    assert_eq!(v.timeline().lines().count(), v.operations.len());
    // A path that cannot be written is an error naming it.
    let bad = dir.join("no such dir").join("witness.svg");
    let err = v.write_svg(&bad).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot write the timeline to "),
        "{err}"
    );
    assert!(err.to_string().contains("no such dir"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
