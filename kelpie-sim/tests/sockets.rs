//! `tokio::net` sockets on Kelpie nodes (madsim-tokio's `tokio::net` is `madsim::net`, its
//! `tokio::spawn` is `madsim::task::spawn`, used directly here): every node has an address, a
//! task spawned in a node's init runs on that node (dies with a kill, stops with a pause, comes
//! back with the restart that re-runs init), partitions reach the sockets, and nodes are freed
//! at the end of a run whatever their init closure holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use kelpie_sim::{NodeId, SimConfig, SimEnv, Simulation};
use madsim::net::{TcpListener, TcpStream, UdpSocket};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PORT: u16 = 7000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An echo server on this node: each line comes back prefixed with the node's name. Spawns
/// one task per connection with `madsim::task::spawn` (= madsim-tokio's `tokio::spawn`).
async fn echo_server(env: SimEnv) {
    let listener = TcpListener::bind(SocketAddr::new(env.ip(), PORT))
        .await
        .expect("bind");
    let name = env.node_name();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let name = name.clone();
        madsim::task::spawn(async move {
            let mut stream = BufReader::new(stream);
            let mut line = String::new();
            while stream.read_line(&mut line).await.unwrap_or(0) > 0 {
                let reply = format!("{name}:{line}");
                if stream.get_mut().write_all(reply.as_bytes()).await.is_err()
                    || stream.get_mut().flush().await.is_err()
                {
                    return;
                }
                line.clear();
            }
        });
    }
}

/// One request to `to`'s echo server, within `limit`: the reply, or why there was none.
async fn ask(env: &SimEnv, to: NodeId, msg: &str, limit: Duration) -> Result<String, String> {
    let addr = SocketAddr::new(env.node_ip(to), PORT);
    let call = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream
            .write_all(format!("{msg}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut reply = String::new();
        BufReader::new(stream)
            .read_line(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        Ok(reply.trim_end().to_string())
    };
    match madsim::time::timeout(limit, call).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    }
}

#[test]
fn every_node_has_an_address_that_tokio_sockets_bind_and_connect_to() {
    Simulation::new(SimConfig::with_seed(1))
        .run(|env| async move {
            assert_eq!(env.ip().to_string(), "10.0.0.1");
            let n1 = env.create_node("n1").init(echo_server).build();
            let n2 = env.create_node("n2").init(echo_server).build();
            assert_eq!(n1.ip().to_string(), "10.0.0.2");
            assert_eq!(env.node_ip(n2.node()), n2.ip());
            env.sleep(ms(10)).await;
            // The supervisor to a node, and a node to another.
            assert_eq!(
                ask(&env, n1.node(), "hi", ms(500)).await,
                Ok("n1:hi".into())
            );
            let from_n2 = n2.spawn({
                let n2 = n2.clone();
                let to = n1.node();
                async move { ask(&n2, to, "peer", ms(500)).await }
            });
            assert_eq!(from_n2.await.unwrap(), Ok("n1:peer".into()));
        })
        .unwrap();
}

/// A node whose init counts its boots and spawns (tokio-style) a task that counts ticks.
fn counting_node(env: &SimEnv, boots: Arc<AtomicU32>, ticks: Arc<AtomicU32>) -> SimEnv {
    env.create_node("counter")
        .init(move |env| {
            let boots = boots.clone();
            let ticks = ticks.clone();
            async move {
                boots.fetch_add(1, Ordering::SeqCst);
                madsim::task::spawn(async move {
                    loop {
                        madsim::time::sleep(ms(1)).await;
                        ticks.fetch_add(1, Ordering::SeqCst);
                    }
                });
                echo_server(env).await;
            }
        })
        .build()
}

#[test]
fn tasks_spawned_in_init_die_with_a_kill_stop_with_a_pause_and_restart_with_init() {
    Simulation::new(SimConfig::with_seed(2))
        .run(|env| async move {
            let boots = Arc::new(AtomicU32::new(0));
            let ticks = Arc::new(AtomicU32::new(0));
            let n = counting_node(&env, boots.clone(), ticks.clone()).node();
            env.sleep(ms(50)).await;
            assert_eq!(boots.load(Ordering::SeqCst), 1);
            assert!(ticks.load(Ordering::SeqCst) >= 40, "the spawned task runs");

            env.pause(n);
            let at_pause = ticks.load(Ordering::SeqCst);
            let r = ask(&env, n, "paused", ms(50)).await;
            assert_eq!(r, Err("timed out".to_string()), "a paused node answered");
            assert_eq!(ticks.load(Ordering::SeqCst), at_pause, "paused: not polled");
            env.resume(n);
            env.sleep(ms(20)).await;
            assert!(ticks.load(Ordering::SeqCst) > at_pause, "resumed");

            env.kill(n);
            let at_kill = ticks.load(Ordering::SeqCst);
            assert!(
                ask(&env, n, "x", ms(200)).await.is_err(),
                "a killed node answers"
            );
            assert_eq!(ticks.load(Ordering::SeqCst), at_kill, "killed: task gone");

            // The restart re-runs init: a second boot, ticking again, the port bound again.
            env.restart(n);
            env.sleep(ms(20)).await;
            assert_eq!(boots.load(Ordering::SeqCst), 2);
            assert!(ticks.load(Ordering::SeqCst) > at_kill);
            assert_eq!(
                ask(&env, n, "back", ms(500)).await,
                Ok("counter:back".into())
            );
        })
        .unwrap();
}

#[test]
fn a_partition_reaches_tcp_until_the_heal() {
    Simulation::new(SimConfig::with_seed(3))
        .run(|env| async move {
            let n1 = env.create_node("n1").init(echo_server).build().node();
            env.sleep(ms(10)).await;
            assert!(ask(&env, n1, "before", ms(500)).await.is_ok());

            env.network().isolate(n1);
            for i in 0..5 {
                let r = ask(&env, n1, &format!("during{i}"), ms(200)).await;
                assert!(r.is_err(), "a request crossed the partition: {r:?}");
            }
            env.network().heal();
            let reply = ask(&env, n1, "after", ms(500)).await;
            assert_eq!(reply, Ok("n1:after".into()));

            // A one-way cut (node to supervisor) also stops the round trip.
            env.network().partition_one_way(n1, NodeId::MAIN);
            assert!(ask(&env, n1, "one-way", ms(300)).await.is_err());
            env.network().heal();
            assert!(ask(&env, n1, "healed", ms(500)).await.is_ok());
        })
        .unwrap();
}

#[test]
fn a_cut_link_drops_datagrams_one_way_only() {
    Simulation::new(SimConfig::with_seed(4))
        .run(|env| async move {
            let got = Arc::new(AtomicU32::new(0));
            let n1 = env
                .create_node("n1")
                .init({
                    let got = got.clone();
                    move |env| {
                        let got = got.clone();
                        async move {
                            let sock = UdpSocket::bind(SocketAddr::new(env.ip(), PORT))
                                .await
                                .unwrap();
                            let mut buf = [0u8; 16];
                            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                                got.fetch_add(1, Ordering::SeqCst);
                                let _ = sock.send_to(from, &buf[..n]).await;
                            }
                        }
                    }
                })
                .build()
                .node();
            env.sleep(ms(10)).await;
            let sock = UdpSocket::bind(SocketAddr::new(env.ip(), PORT))
                .await
                .unwrap();
            let to = SocketAddr::new(env.node_ip(n1), PORT);
            let mut buf = [0u8; 16];
            sock.send_to(to, b"a").await.unwrap();
            let echoed = madsim::time::timeout(ms(100), sock.recv_from(&mut buf)).await;
            assert!(echoed.is_ok());
            assert_eq!(got.load(Ordering::SeqCst), 1);

            // Cut n1 -> main: the datagram arrives, its echo is dropped.
            env.network().partition_one_way(n1, NodeId::MAIN);
            sock.send_to(to, b"b").await.unwrap();
            let echoed = madsim::time::timeout(ms(100), sock.recv_from(&mut buf)).await;
            assert!(echoed.is_err(), "the echo crossed a cut link");
            assert_eq!(got.load(Ordering::SeqCst), 2, "the request did not arrive");

            // Cut main -> n1 instead: the request itself is dropped.
            env.network().heal();
            env.network().partition_one_way(NodeId::MAIN, n1);
            sock.send_to(to, b"c").await.unwrap();
            env.sleep(ms(100)).await;
            assert_eq!(
                got.load(Ordering::SeqCst),
                2,
                "a datagram crossed a cut link"
            );
        })
        .unwrap();
}

/// Held by init closures: counts the ones alive.
struct Alive(Arc<AtomicU32>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn nodes_are_freed_at_the_end_of_a_run_even_if_their_init_holds_an_env() {
    let alive = Arc::new(AtomicU32::new(0));
    let mut worlds: Vec<Weak<()>> = Vec::new();
    for seed in 0..50 {
        let alive2 = alive.clone();
        let token = Arc::new(());
        worlds.push(Arc::downgrade(&token));
        Simulation::new(SimConfig::with_seed(seed))
            .run(move |env| async move {
                for i in 0..3 {
                    alive2.fetch_add(1, Ordering::SeqCst);
                    let held = Arc::new(Alive(alive2.clone()));
                    let supervisor = env.clone();
                    let token = token.clone();
                    env.create_node(format!("n{i}"))
                        .init(move |env| {
                            // A cycle if anything kept it: the closure holds an env (and so
                            // the world), the world holds the closure.
                            let _keep = (held.clone(), supervisor.clone(), token.clone());
                            echo_server(env)
                        })
                        .build();
                }
                env.sleep(ms(5)).await;
                let n = env.nodes()[1];
                env.restart(n);
                env.sleep(ms(5)).await;
            })
            .unwrap();
    }
    assert_eq!(alive.load(Ordering::SeqCst), 0, "init closures leaked");
    assert!(worlds.iter().all(|w| w.upgrade().is_none()));
}

#[test]
fn node_faults_are_decided_on_virtual_time_even_if_the_code_never_calls_kelpie() {
    let sim = Simulation::new(SimConfig::with_seed(5)).with_fault(kelpie_sim::FaultSpec::new(
        kelpie_sim::FaultKind::NodeCrash,
        0.05,
    ));
    let report = sim
        .run(|env| async move {
            let boots = Arc::new(AtomicU32::new(0));
            let ticks = Arc::new(AtomicU32::new(0));
            counting_node(&env, boots.clone(), ticks).node();
            // Only madsim (tokio) timers from here on: no call into Kelpie.
            madsim::time::sleep(Duration::from_secs(2)).await;
            boots.load(Ordering::SeqCst)
        })
        .unwrap();
    let stats = report.faults.clone();
    let crash = kelpie_sim::FaultKind::NodeCrash;
    // Considered at every tick (10 ms) while the node was up: dozens of times in 2 s.
    assert!(stats.considered(crash) >= 50, "{stats:?}");
    assert!(stats.fired(crash) > 0, "{stats:?}");
    assert!(report.output > 1, "the crashed node's init ran again");
}

#[test]
fn clock_faults_shift_the_nodes_local_time_not_tokio_time() {
    Simulation::new(SimConfig::with_seed(6))
        .run(|env| async move {
            let n1 = env.create_node("n1").build();
            n1.set_clock_offset(Duration::from_secs(5), true);
            let on_node = n1
                .spawn(async { (madsim::time::Instant::now(), std::time::SystemTime::now()) })
                .await
                .unwrap();
            let here = (madsim::time::Instant::now(), std::time::SystemTime::now());
            // One clock for every node (madsim adds a few nanoseconds per step): the skewed
            // node's tokio/std clocks are not 5 s ahead.
            let gap = here.0.duration_since(on_node.0);
            assert!(gap < Duration::from_micros(1), "{gap:?}");
            let gap = here.1.duration_since(on_node.1).unwrap();
            assert!(gap < Duration::from_micros(1), "{gap:?}");
            assert_eq!(n1.local_time(), env.local_time() + Duration::from_secs(5));
        })
        .unwrap();
}

/// A socket workload under node and partition faults: two nodes' echo servers, the supervisor
/// asking each in turn; each reply (or failure) is traced by the test, so that the trace
/// reflects what the sockets did.
async fn socket_workload(env: SimEnv) {
    let nodes: Vec<NodeId> = (0..2)
        .map(|i| {
            env.create_node(format!("s{i}"))
                .init(echo_server)
                .build()
                .node()
        })
        .collect();
    env.sleep(ms(5)).await;
    for i in 0..20u64 {
        let to = nodes[(i % 2) as usize];
        let r = ask(&env, to, &format!("m{i}"), ms(50)).await;
        env.trace(format!("{to}: {r:?}"));
        env.sleep(ms(env.rng().gen_range(0..10))).await;
    }
}

fn socket_sim(seed: u64) -> Simulation {
    use kelpie_sim::{FaultKind, FaultSpec};
    Simulation::new(SimConfig::with_seed(seed)).with_faults([
        FaultSpec::new(FaultKind::NodeCrash, 0.02),
        FaultSpec::new(FaultKind::NetworkPartition, 0.02),
    ])
}

#[test]
fn a_socket_workload_is_deterministic_per_seed() {
    for seed in 0..20 {
        socket_sim(seed)
            .check_determinism(socket_workload)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn a_thousand_seeds_of_a_socket_workload_give_distinct_traces() {
    let hashes: std::collections::BTreeSet<u64> = (0..1000)
        .map(|seed| socket_sim(seed).run(socket_workload).unwrap().trace.hash)
        .collect();
    assert!(hashes.len() >= 990, "{} distinct traces", hashes.len());
}

/// Survives between runs in one process: a planted nondeterminism.
static LEAKED: AtomicU32 = AtomicU32::new(0);

#[test]
fn planted_nondeterminism_in_a_socket_server_is_named_at_its_first_divergent_event() {
    let err = Simulation::new(SimConfig::with_seed(7))
        .check_determinism(|env| async move {
            let n1 = env
                .create_node("n1")
                .init(|env| async move {
                    let listener = TcpListener::bind(SocketAddr::new(env.ip(), PORT))
                        .await
                        .unwrap();
                    while let Ok((mut stream, _)) = listener.accept().await {
                        // Different in the second run of the same seed.
                        let n = LEAKED.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.write_all(format!("{n}\n").as_bytes()).await;
                        let _ = stream.flush().await;
                    }
                })
                .build()
                .node();
            env.sleep(ms(5)).await;
            let reply = ask(&env, n1, "q", ms(100)).await;
            env.trace(format!("reply {reply:?}"));
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("reply Ok(\"0\")"), "{err}");
    assert!(err.contains("reply Ok(\"1\")"), "{err}");
}
