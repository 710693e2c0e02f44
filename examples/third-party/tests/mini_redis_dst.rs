//! mini-redis 0.4.1 (tokio-rs's example Redis server and client, from crates.io, source
//! unchanged) under Kelpie's faults: a partition, a crash, loss and delay reach its sockets, its
//! client-visible history is linearizable when a client reconnects after a timeout, and it is
//! not when a client is used again after a timed-out request (a reply that comes late is read
//! as the answer to the next request: mini-redis's client is not cancel-safe).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kelpie::history::{History, KvModel, KvOp, KvRet, Verdict};
use kelpie::SimEnv;
use kelpie_third_party::{addr, serve};
use mini_redis::client::{self, Client};

type Op = KvOp<&'static str, String>;
type Ret = KvRet<String>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `f` with `node`'s env as a task on `node`, so that its sockets are `node`'s.
async fn on<T, Fut>(node: &SimEnv, f: impl FnOnce(SimEnv) -> Fut) -> T
where
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    node.spawn(f(node.clone())).await.expect("client task")
}

/// A mini-redis client connected to `server` within 300 ms, if it can be.
async fn connect(env: &SimEnv, server: SocketAddr) -> Option<Client> {
    env.timeout(ms(300), client::connect(server))
        .await
        .ok()?
        .ok()
}

/// A GET within 300 ms: `None` if it timed out or failed.
async fn get(env: &SimEnv, c: &mut Client, key: &str) -> Option<Option<String>> {
    let reply = env.timeout(ms(300), c.get(key)).await.ok()?.ok()?;
    Some(reply.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Starts mini-redis's server on a node named `redis`, counting its inits.
fn redis(env: &SimEnv, inits: &Arc<AtomicUsize>) -> SimEnv {
    let inits = inits.clone();
    env.create_node("redis")
        .init(move |env| {
            inits.fetch_add(1, Ordering::SeqCst);
            async move { serve(env.ip()).await }
        })
        .build()
}

/// A partition stops a client's requests until the heal, while another client goes on; a crash
/// stops the server's tasks and a restart re-runs its init (an empty store: mini-redis keeps
/// nothing on disk).
#[kelpie::dst_test(seeds = 0..20)]
async fn a_partition_and_a_crash_reach_mini_redis(env: SimEnv) -> Result<(), String> {
    let inits = Arc::new(AtomicUsize::new(0));
    let redis = redis(&env, &inits);
    let server = addr(redis.ip());
    let (a, b) = (env.create_node("a").build(), env.create_node("b").build());
    env.sleep(ms(10)).await;

    let ca = on(&a, move |env| async move { connect(&env, server).await })
        .await
        .ok_or("a cannot connect")?;
    let (ca, set) = on(&a, move |env| async move {
        let mut ca = ca;
        let r = env.timeout(ms(300), ca.set("k", "1".into())).await;
        (ca, r)
    })
    .await;
    set.map_err(|_| "SET timed out")?
        .map_err(|e| e.to_string())?;

    env.network().partition(a.node(), redis.node());
    // The open connection stalls: its GET times out.
    let stalled = on(&a, move |env| async move {
        let mut ca = ca;
        get(&env, &mut ca, "k").await
    })
    .await;
    if stalled.is_some() {
        return Err(format!("a GET across the partition returned {stalled:?}"));
    }
    if on(&a, move |env| async move {
        connect(&env, server).await.is_some()
    })
    .await
    {
        return Err("a connected across the partition".into());
    }
    let seen_by_b = on(&b, move |env| async move {
        let mut c = connect(&env, server).await?;
        get(&env, &mut c, "k").await
    })
    .await;
    if seen_by_b != Some(Some("1".into())) {
        return Err(format!("b, not partitioned, read {seen_by_b:?}"));
    }

    env.network().heal();
    let after_heal = on(&a, move |env| async move {
        let mut c = connect(&env, server).await?;
        get(&env, &mut c, "k").await
    })
    .await;
    if after_heal != Some(Some("1".into())) {
        return Err(format!("after the heal a read {after_heal:?}"));
    }

    env.kill(redis.node());
    let during_crash = on(&b, move |env| async move {
        let mut c = connect(&env, server).await?;
        get(&env, &mut c, "k").await
    })
    .await;
    if during_crash.is_some() {
        return Err(format!(
            "a GET to a crashed server returned {during_crash:?}"
        ));
    }
    env.restart(redis.node());
    env.sleep(ms(10)).await;
    let after_restart = on(&b, move |env| async move {
        let mut c = connect(&env, server).await?;
        get(&env, &mut c, "k").await
    })
    .await;
    if after_restart != Some(None) {
        return Err(format!("after the restart b read {after_restart:?}"));
    }
    match inits.load(Ordering::SeqCst) {
        2 => Ok(()),
        n => Err(format!("the server's init ran {n} times, not 2")),
    }
}

/// Loss and delay reach mini-redis's sockets (its tokio is kelpie-tokio): every TCP segment
/// that client `a` sends is lost once and retransmitted after the RTO, every segment `b` sends
/// is delayed by up to 100 ms; both clients' requests still succeed, slower, and the trace
/// holds their traffic.
#[kelpie::dst_test(
    seeds = 0..20,
    faults = [PacketLoss(1.0, node = "a"), NetworkDelay(1.0, 100, node = "b")]
)]
async fn loss_and_delay_reach_mini_redis(env: SimEnv) -> Result<(), String> {
    let inits = Arc::new(AtomicUsize::new(0));
    let redis = redis(&env, &inits);
    let server = addr(redis.ip());
    let (a, b) = (env.create_node("a").build(), env.create_node("b").build());
    env.sleep(ms(10)).await;
    // A SET and a GET on a fresh connection; the virtual time the GET took.
    let timed_get = |node: SimEnv, value: &'static str| async move {
        on(&node, move |env| async move {
            let mut c = connect(&env, server).await.ok_or("cannot connect")?;
            let set = env.timeout(ms(1000), c.set(value, value.into())).await;
            set.map_err(|_| "SET timed out")?
                .map_err(|e| e.to_string())?;
            let start = env.elapsed();
            let got = env.timeout(ms(1000), c.get(value)).await;
            let got = got
                .map_err(|_| "GET timed out")?
                .map_err(|e| e.to_string())?;
            if got.as_deref() != Some(value.as_bytes()) {
                return Err(format!("GET {value} returned {got:?}"));
            }
            Ok::<_, String>(env.elapsed() - start)
        })
        .await
    };
    let lossy = timed_get(a, "a").await?;
    let delayed = timed_get(b, "b").await?;
    let stats = env.faults();
    let (lost, held) = (
        stats.fired(kelpie::FaultKind::PacketLoss),
        stats.fired(kelpie::FaultKind::NetworkDelay),
    );
    // a's request segment waited for its retransmission; b's only for its delay.
    if lossy < kelpie::net::sockets::RETRANSMIT || lossy > kelpie::net::sockets::RETRANSMIT + ms(20)
    {
        return Err(format!(
            "a's GET took {lossy:?} with its request segment lost once"
        ));
    }
    // A round trip's two network latencies are each under 10 ms (`SimConfig::net_latency`).
    if delayed.is_zero() || delayed > ms(100 + 20) {
        return Err(format!(
            "b's GET took {delayed:?} with its request delayed up to 100 ms"
        ));
    }
    // a sent 2 segments (SET, GET), b too: each decided and fired once.
    if (lost, held) != (2, 2) {
        return Err(format!(
            "loss fired {lost} times, delay {held}: expected 2 and 2"
        ));
    }
    Ok(())
}

/// What a client does after a request timed out.
#[derive(Clone, Copy, PartialEq)]
enum AfterTimeout {
    /// Drops the connection and opens a new one (correct).
    Reconnect,
    /// Sends its next request on the same connection (mini-redis's client then reads the late
    /// reply as the next answer).
    KeepConnection,
}

/// Three clients on their own nodes SET and GET two keys on one mini-redis node under the
/// declared faults, each request within 300 ms; the history they saw must be linearizable.
async fn workload(env: SimEnv, after_timeout: AfterTimeout) -> Result<(), String> {
    let redis = redis(&env, &Arc::new(AtomicUsize::new(0)));
    let server = addr(redis.ip());
    env.sleep(ms(10)).await;
    let history: History<Op, Ret> = History::new();
    let mut clients = Vec::new();
    for me in 0..3u64 {
        let node = env.create_node(format!("client{me}")).build();
        let history = history.clone();
        let env = node.clone();
        clients.push(node.spawn(async move {
            let mut conn: Option<Client> = None;
            let mut timeouts = 0;
            for i in 0..15u64 {
                env.sleep(ms(env.rng().gen_range(0..50))).await;
                if conn.is_none() {
                    conn = connect(&env, server).await;
                }
                let Some(c) = conn.as_mut() else { continue };
                let key = if env.rng().gen_bool(0.5) { "x" } else { "y" };
                if env.rng().gen_bool(0.5) {
                    let value = format!("{me}-{i}");
                    let call = history.invoke(me, KvOp::Put(key, value.clone()), &env);
                    match env.timeout(ms(300), c.set(key, value.into())).await {
                        Ok(Ok(())) => call.ok(KvRet::Done, &env),
                        Ok(Err(_)) => {
                            call.unknown(&env);
                            conn = None;
                        }
                        Err(_) => {
                            call.unknown(&env);
                            timeouts += 1;
                            if after_timeout == AfterTimeout::Reconnect {
                                conn = None;
                            }
                        }
                    }
                } else {
                    let call = history.invoke(me, KvOp::Get(key), &env);
                    match env.timeout(ms(300), c.get(key)).await {
                        Ok(Ok(v)) => {
                            let v = v.map(|b| String::from_utf8_lossy(&b).into_owned());
                            call.ok(KvRet::Value(v), &env);
                        }
                        Ok(Err(_)) => {
                            call.unknown(&env);
                            conn = None;
                        }
                        Err(_) => {
                            call.unknown(&env);
                            timeouts += 1;
                            if after_timeout == AfterTimeout::Reconnect {
                                conn = None;
                            }
                        }
                    }
                }
            }
            timeouts
        }));
    }
    let mut timeouts = 0;
    for c in clients {
        timeouts += c.await.map_err(|e| e.to_string())?;
    }
    kelpie::sometimes!(
        timeouts > 0,
        "a mini-redis request timed out under the faults"
    );
    match history.check(&KvModel::new(), 1_000_000) {
        Verdict::Linearizable { .. } => Ok(()),
        verdict => Err(format!("mini-redis's history: {verdict}")),
    }
}

/// Partitions, loss and delay reach mini-redis's sockets (requests time out), and a client that
/// reconnects after a timeout sees a linearizable store.
#[kelpie::dst_test(
    seeds = 0..50,
    faults = [NetworkPartition(0.05, 300), PacketLoss(0.05), NetworkDelay(0.1, 100)]
)]
async fn mini_redis_is_linearizable_when_clients_reconnect(env: SimEnv) -> Result<(), String> {
    workload(env, AfterTimeout::Reconnect).await
}

/// The bug Kelpie finds in mini-redis's client: after a timed-out request, the next request on
/// the same connection reads the late reply to the one before.
#[kelpie::dst_test(seeds = 0..50, canary, faults = [NetworkPartition(0.05, 300)])]
async fn canary_a_client_used_after_a_timeout_reads_late_replies(
    env: SimEnv,
) -> Result<(), String> {
    workload(env, AfterTimeout::KeepConnection).await
}
