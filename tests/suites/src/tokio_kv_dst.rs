//! A service written only against tokio, unchanged, under Kelpie's faults: three replicas of
//! `examples/tokio-kv` (a replicated key-value store over `tokio::net` TCP, no Kelpie import),
//! one per node, started by each node's init and started again by every restart. Clients on the
//! supervisor send requests over TCP; their history is checked for linearizability. Node
//! crashes, partitions, loss and delay are Kelpie's: a crash kills the replica's tokio tasks and
//! sockets and loses its memory, a partition clogs its links, and loss and delay hold TCP
//! segments (the service's tokio is kelpie-tokio, whose sockets report to the run). The canary runs the service's planted bug (a
//! restarted replica catches up from one peer only) and must be found.
//!
//! Following the product's rule, this file spawns and sleeps through `env`; the service's own
//! code (its `tokio::spawn`, `tokio::time`, `tokio::net`) lives in its crate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kelpie::history::{KvModel, KvOp, KvRet, Verdict};
use kelpie::{FaultKind, SimEnv};
use tokio_kv::{Client, Config};

const PORT: u16 = 7000;
const REPLICAS: usize = 3;
const KEYS: [&str; 2] = ["x", "y"];

/// Starts the replicas, runs three clients, checks the history.
async fn replicated_kv(env: SimEnv, planted_bug: bool) -> Result<(), String> {
    // The replicas' addresses, known once their nodes exist (before any init runs: inits run
    // at the body's first await).
    let addrs: Arc<OnceLock<Vec<SocketAddr>>> = Arc::new(OnceLock::new());
    let mut nodes = Vec::new();
    for i in 0..REPLICAS {
        let addrs = addrs.clone();
        let boots = Arc::new(AtomicU32::new(0));
        let node = env
            .create_node(format!("r{i}"))
            .init(move |_env| {
                // The first boot bootstraps the cluster; a restart catches up from its peers.
                let first = boots.fetch_add(1, Ordering::SeqCst) == 0;
                let replicas = addrs.get().expect("addresses set").clone();
                let config = Config::new(i, replicas)
                    .bootstrap(first)
                    .catch_up_from_one_peer(planted_bug);
                async move {
                    let _ = tokio_kv::serve(config).await;
                }
            })
            .build();
        nodes.push(node.node());
    }
    let replicas: Vec<SocketAddr> = (nodes.iter())
        .map(|n| SocketAddr::new(env.node_ip(*n), PORT))
        .collect();
    addrs.set(replicas.clone()).expect("set once");

    let history = kelpie::history::History::new();
    let mut clients = Vec::new();
    for c in 0..3u64 {
        let (env2, history, replicas) = (env.clone(), history.clone(), replicas.clone());
        clients.push(env.spawn(async move {
            let rng = env2.rng();
            let mut ok = 0u32;
            for n in 0..25u64 {
                let key = KEYS[rng.gen_range(0..KEYS.len() as u64) as usize];
                let client = Client::new(
                    replicas[rng.gen_range(0..REPLICAS as u64) as usize],
                    Duration::from_millis(400),
                );
                if rng.gen_range(0..2) == 0 {
                    let value = c * 1000 + n;
                    let call = history.invoke(c, KvOp::Put(key, value), &env2);
                    match client.put(key, value).await {
                        Ok(()) => {
                            ok += 1;
                            call.ok(KvRet::Done, &env2);
                        }
                        // A write that failed may still have reached some replicas.
                        Err(_) => call.unknown(&env2),
                    }
                } else {
                    let call = history.invoke(c, KvOp::Get(key), &env2);
                    match client.get(key).await {
                        Ok(v) => {
                            ok += 1;
                            call.ok(KvRet::Value(v), &env2);
                        }
                        // A read has no effect.
                        Err(_) => call.fail(&env2),
                    }
                }
                env2.sleep(Duration::from_millis(rng.gen_range(0..30)))
                    .await;
            }
            ok
        }));
    }
    let mut ok = 0;
    for client in clients {
        ok += client.await.map_err(|e| e.to_string())?;
    }
    kelpie::sometimes!(ok > 0, "a request to the tokio service succeeded");
    kelpie::sometimes!(
        env.faults().fired(FaultKind::NodeCrash) > 0,
        "a replica crashed"
    );
    if !planted_bug {
        kelpie::sometimes!(
            env.faults().fired(FaultKind::PacketLoss) > 0,
            "a TCP segment of the service was lost and retransmitted"
        );
    }
    match history.check(&KvModel::new(), 500_000) {
        Verdict::Violation(v) => Err(format!("the tokio service is not linearizable: {v}")),
        verdict @ Verdict::Unknown { .. } => Err(format!("history too large to check: {verdict}")),
        Verdict::Linearizable { .. } => Ok(()),
    }
}

#[kelpie::dst_test(
    seeds = 0..30,
    faults = [
        NodeCrash(0.02, 200),
        NetworkPartition(0.02, 500),
        PacketLoss(0.02),
        NetworkDelay(0.05, 50)
    ]
)]
async fn tokio_service_stays_linearizable_under_crashes_partitions_loss_and_delay(
    env: SimEnv,
) -> Result<(), String> {
    replicated_kv(env, false).await
}

/// The canary: the service's planted bug (a restarted replica catches up from one peer).
#[kelpie::dst_test(
    seeds = 0..200,
    canary,
    faults = [NodeCrash(0.02, 200), NetworkPartition(0.02, 500)]
)]
async fn canary_catch_up_from_one_peer_loses_writes(env: SimEnv) -> Result<(), String> {
    replicated_kv(env, true).await
}
