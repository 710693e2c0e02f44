//! The placement directory (`kelpie_actors::Registry`) is linearizable: concurrent clients on
//! three nodes place, look up and remove actors through the real registry on a database node
//! whose disk is slow, fails writes and crashes mid-commit; every operation is recorded with
//! its virtual invoke and return times, and the history is checked against a sequential model
//! of the directory (WGL, per actor). A canary serves lookups from a per-client cache that is
//! never invalidated: the checker must reject it.

use std::collections::BTreeMap;

use std::time::Duration;

use kelpie::history::{History, Model, PartitionKey, Verdict};
use kelpie::SimEnv;
use kelpie_actors::{ActorError, ActorId, KvError, Placement, Registry, SimKv};

/// A directory operation, on actor `0` or `1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Op {
    Place { actor: u8, token: u64, node: u8 },
    Remove { actor: u8, token: u64, node: u8 },
    Lookup { actor: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Ret {
    Done(bool),
    Found(Option<(u64, u8)>),
}

/// The sequential directory: per actor, the placement with the newest token wins.
struct Directory;

impl Model for Directory {
    type State = BTreeMap<u8, (u64, u8)>;
    type Op = Op;
    type Ret = Ret;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn step(&self, state: &Self::State, op: &Op) -> (Self::State, Ret) {
        let mut next = state.clone();
        let ret = match *op {
            Op::Place { actor, token, node } => {
                let placed = state.get(&actor).is_none_or(|(t, _)| *t <= token);
                if placed {
                    next.insert(actor, (token, node));
                }
                Ret::Done(placed)
            }
            Op::Remove { actor, token, node } => {
                let removed = state.get(&actor) == Some(&(token, node));
                if removed {
                    next.remove(&actor);
                }
                Ret::Done(removed)
            }
            Op::Lookup { actor } => Ret::Found(state.get(&actor).copied()),
        };
        (next, ret)
    }

    fn is_read_only(&self, op: &Op, ret: &Ret) -> bool {
        matches!((op, ret), (Op::Lookup { .. }, _) | (_, Ret::Done(false)))
    }

    fn partition(&self, op: &Op) -> PartitionKey {
        match op {
            Op::Place { actor, .. } | Op::Remove { actor, .. } | Op::Lookup { actor } => {
                PartitionKey::new(u64::from(*actor))
            }
        }
    }
}

fn id(actor: u8) -> ActorId {
    ActorId::new("agents", format!("a{actor}")).expect("valid id")
}

/// Runs three clients for 40 operations each and checks the history; `stale_cache` plants the
/// bug (lookups answered from the client's first read of each actor, forever).
async fn directory(env: SimEnv, stale_cache: bool) -> Result<(), String> {
    let db = env.create_node("db").build();
    let registry = Registry::new(SimKv::new(&db));
    let history: History<Op, Ret> = History::new();
    let mut clients = Vec::new();
    for c in 0..3u8 {
        let node = env.create_node(format!("c{c}")).build();
        let (registry, history, env2) = (registry.clone(), history.clone(), node.clone());
        clients.push(node.spawn(async move {
            let mut cache: BTreeMap<u8, Option<(u64, u8)>> = BTreeMap::new();
            let (mut ok, mut failed) = (0u32, 0u32);
            for _ in 0..40 {
                let rng = env2.rng();
                let actor = rng.gen_range(0..2) as u8;
                let token = rng.gen_range(1..6);
                let op = match rng.gen_range(0..5) {
                    0 | 1 => Op::Place {
                        actor,
                        token,
                        node: c,
                    },
                    2 => Op::Remove {
                        actor,
                        token,
                        node: c,
                    },
                    _ => Op::Lookup { actor },
                };
                let call = history.invoke(u64::from(c), op.clone(), &env2);
                let result: Result<Ret, ActorError> = match op {
                    Op::Place { actor, token, node } => {
                        let p = Placement {
                            node: format!("c{node}"),
                            token,
                        };
                        registry.place(&id(actor), &p).await.map(Ret::Done)
                    }
                    Op::Remove { actor, token, node } => {
                        let p = Placement {
                            node: format!("c{node}"),
                            token,
                        };
                        registry.remove(&id(actor), &p).await.map(Ret::Done)
                    }
                    Op::Lookup { actor } => {
                        let cached = stale_cache.then(|| cache.get(&actor).cloned()).flatten();
                        match cached {
                            Some(hit) => Ok(Ret::Found(hit)),
                            None => registry.lookup(&id(actor)).await.map(|p| {
                                let found = p.map(|p| (p.token, p.node[1..].parse().unwrap()));
                                cache.insert(actor, found);
                                Ret::Found(found)
                            }),
                        }
                    }
                };
                match result {
                    Ok(ret) => {
                        ok += 1;
                        call.ok(ret, &env2);
                    }
                    Err(ActorError::Kv(KvError::OutcomeUnknown)) => call.unknown(&env2),
                    Err(_) => {
                        failed += 1;
                        call.fail(&env2);
                    }
                }
                env2.sleep(Duration::from_millis(rng.gen_range(0..4))).await;
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for client in clients {
        let (o, f) = client.await.map_err(|e| e.to_string())?;
        ok += o;
        failed += f;
    }
    let verdict = history.check(&Directory, 200_000);
    kelpie::sometimes!(failed > 0, "a directory operation failed under faults");
    kelpie::sometimes!(ok > 0, "a directory operation succeeded");
    match verdict {
        Verdict::Violation(v) => Err(format!("the directory is not linearizable: {v}")),
        Verdict::Unknown { .. } => Err(format!("history too large to check: {verdict}")),
        Verdict::Linearizable { .. } => Ok(()),
    }
}

#[kelpie::dst_test(
    seeds = 0..30,
    faults = [StorageLatency(0.3, 5), StorageWriteFail(0.05), CrashDuringTransaction(0.02)]
)]
async fn directory_is_linearizable(env: SimEnv) -> Result<(), String> {
    directory(env, false).await
}

/// The canary: lookups from a cache that is never invalidated are stale reads.
#[kelpie::dst_test(seeds = 0..30, canary, faults = [StorageLatency(0.3, 5)])]
async fn canary_cached_lookups_are_stale(env: SimEnv) -> Result<(), String> {
    directory(env, true).await
}
