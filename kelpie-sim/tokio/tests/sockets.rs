//! kelpie-tokio's sockets under a Kelpie run: their traffic is in the trace (so a divergence
//! in socket code is named at its first socket event), each network fault is decided on it and
//! reaches it (loss, delay, reordering, duplication, as the stream model allows), and the same
//! code runs on raw madsim, where the sockets only pass through.
#![cfg(madsim)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kelpie_sim::sockets::RETRANSMIT;
use kelpie_sim::{
    EventKind, FaultKind, FaultSpec, NodeId, SimConfig, SimEnv, Simulation, SocketOp, TraceMode,
};
use kelpie_tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use kelpie_tokio::net::{TcpListener, TcpStream, UdpSocket};

const PORT: u16 = 7000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An echo server on this node, one task per connection (`tokio::spawn`): each line comes
/// back with the node's name in front.
async fn echo_server(env: SimEnv) {
    let listener = TcpListener::bind((env.ip(), PORT)).await.expect("bind");
    let name = env.node_name();
    while let Ok((stream, _)) = listener.accept().await {
        let name = name.clone();
        kelpie_tokio::spawn(async move {
            let mut lines = BufReader::new(stream);
            let mut line = String::new();
            while lines.read_line(&mut line).await.unwrap_or(0) > 0 {
                let reply = format!("{name}:{line}");
                let s = lines.get_mut();
                if s.write_all(reply.as_bytes()).await.is_err() || s.flush().await.is_err() {
                    return;
                }
                line.clear();
            }
        });
    }
}

/// One request to `to`'s echo server within `limit`: the reply, or why there was none.
async fn ask(env: &SimEnv, to: NodeId, msg: &str, limit: Duration) -> Result<String, String> {
    let exchange = async {
        let mut s = TcpStream::connect((to.ip(), PORT))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(format!("{msg}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(s)
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        Ok(line.trim_end().to_string())
    };
    kelpie_tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| {
            let _ = env;
            Err("timed out".to_string())
        })
}

fn server(env: &SimEnv, name: &str) -> NodeId {
    env.create_node(name).init(echo_server).build().node()
}

/// Socket events of a trace, as `(node, op, len)`.
fn socket_events(events: &[kelpie_sim::TraceEvent]) -> Vec<(NodeId, SocketOp, u32)> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Socket { op, len, .. } => Some((e.node, op, len)),
            _ => None,
        })
        .collect()
}

#[test]
fn connects_accepts_writes_reads_and_closes_are_in_the_trace() {
    let config = SimConfig {
        trace: TraceMode::Full,
        ..SimConfig::with_seed(1)
    };
    let report = Simulation::new(config)
        .run(|env| async move {
            let s1 = server(&env, "s1");
            env.sleep(ms(1)).await;
            let reply = ask(&env, s1, "hello", ms(100)).await;
            env.sleep(ms(10)).await;
            (s1, reply)
        })
        .unwrap();
    let (s1, reply) = report.output;
    assert_eq!(reply.as_deref(), Ok("s1:hello"));
    let events = socket_events(report.trace.full.as_ref().unwrap());
    let main = NodeId::MAIN;
    assert_eq!(
        events,
        vec![
            (main, SocketOp::Connect, 0),
            // The request is on the wire before the server's task has accepted.
            (main, SocketOp::Write, 6),
            (s1, SocketOp::Accept, 0),
            (s1, SocketOp::Read, 6),
            (s1, SocketOp::Write, 9),
            (main, SocketOp::Read, 9),
            (main, SocketOp::Close, 0),
            (s1, SocketOp::Close, 0),
        ]
    );
}

/// A workload over TCP and UDP under every network fault and node faults; each reply (or
/// failure) is traced by the test too.
async fn socket_workload(env: SimEnv) {
    let nodes = [server(&env, "s0"), server(&env, "s1")];
    let udp = UdpSocket::bind((env.ip(), 9000)).await.unwrap();
    let peer = env
        .create_node("u")
        .init(|env| async move {
            let sock = UdpSocket::bind((env.ip(), 9000)).await.unwrap();
            let mut buf = [0; 64];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let _ = sock.send_to(from, &buf[..n]).await;
            }
        })
        .build()
        .node();
    env.sleep(ms(5)).await;
    for i in 0..20u64 {
        let to = nodes[(i % 2) as usize];
        let r = ask(&env, to, &format!("m{i}"), ms(300)).await;
        env.trace(format!("{to}: {r:?}"));
        let _ = udp
            .send_to((peer.ip(), 9000), format!("d{i}").as_bytes())
            .await;
        env.sleep(ms(env.rng().gen_range(0..10))).await;
    }
}

fn socket_sim(seed: u64) -> Simulation {
    Simulation::new(SimConfig::with_seed(seed)).with_faults([
        FaultSpec::new(FaultKind::PacketLoss, 0.05),
        FaultSpec::new(FaultKind::NetworkDelay, 0.05),
        FaultSpec::new(FaultKind::MessageReorder, 0.05),
        FaultSpec::new(FaultKind::MessageDuplicate, 0.05),
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
    let hashes: BTreeSet<u64> = (0..1000)
        .map(|seed| socket_sim(seed).run(socket_workload).unwrap().trace.hash)
        .collect();
    assert!(hashes.len() >= 990, "{} distinct traces", hashes.len());
}

/// Survives between runs in one process: a planted nondeterminism.
static LEAKED: AtomicU32 = AtomicU32::new(0);

#[test]
fn planted_nondeterminism_in_socket_code_is_named_at_its_first_socket_event() {
    let err = Simulation::new(SimConfig::with_seed(7))
        .check_determinism(|env| async move {
            let n1 = env
                .create_node("n1")
                .init(|env| async move {
                    let listener = TcpListener::bind((env.ip(), PORT)).await.unwrap();
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
            ask(&env, n1, "q", ms(100)).await
        })
        .unwrap_err()
        .to_string();
    // The first divergent event is the server's write: same size, other content.
    let first = err.lines().nth(1).unwrap_or_default();
    assert!(first.contains("n1 socket Write 10.0.0.1:"), "{err}");
    assert!(first.contains("2 bytes content#"), "{err}");
}

/// The virtual time one echo round trip takes under `fault` (each way one segment).
fn round_trip(fault: Option<FaultSpec>, seed: u64) -> (Duration, u64, u64) {
    let sim = Simulation::new(SimConfig::with_seed(seed)).with_faults(fault);
    let report = sim
        .run(|env| async move {
            let s1 = server(&env, "s1");
            env.sleep(ms(1)).await;
            let start = env.elapsed();
            let reply = ask(&env, s1, "x", Duration::from_secs(10)).await;
            assert_eq!(reply.as_deref(), Ok("s1:x"));
            env.elapsed() - start
        })
        .unwrap();
    let stats = &report.faults;
    let kind = stats.faults.first().map(|f| f.kind);
    let (considered, fired) = kind.map_or((0, 0), |k| (stats.considered(k), stats.fired(k)));
    (report.output, considered, fired)
}

#[test]
fn packet_loss_on_a_stream_retransmits_each_segment_after_the_rto() {
    for seed in 0..5 {
        let (clean, ..) = round_trip(None, seed);
        let (lossy, considered, fired) =
            round_trip(Some(FaultSpec::new(FaultKind::PacketLoss, 1.0)), seed);
        // Two segments (request, reply), each decided once and lost once: never silently.
        assert_eq!((considered, fired), (2, 2));
        assert!(clean < ms(50), "{clean:?}");
        assert!(lossy >= 2 * RETRANSMIT, "{lossy:?}");
        assert!(lossy < 2 * RETRANSMIT + ms(50), "{lossy:?}");
    }
}

#[test]
fn network_delay_on_a_stream_holds_each_segment_up_to_max_ms() {
    let delay = || FaultSpec::new(FaultKind::NetworkDelay, 1.0).with_param("max_ms", 100);
    let mut extra = BTreeSet::new();
    for seed in 0..20 {
        let (clean, ..) = round_trip(None, seed);
        let (slow, considered, fired) = round_trip(Some(delay()), seed);
        assert_eq!((considered, fired), (2, 2));
        assert!(
            slow > clean && slow <= clean + ms(200) + ms(50),
            "{slow:?} {clean:?}"
        );
        extra.insert(slow - clean);
    }
    assert!(extra.len() > 10, "the delays are drawn: {extra:?}");
}

#[test]
fn reordering_and_duplication_are_not_decided_on_streams() {
    for kind in [FaultKind::MessageReorder, FaultKind::MessageDuplicate] {
        let (_, considered, fired) = round_trip(Some(FaultSpec::new(kind, 1.0)), 1);
        assert_eq!((considered, fired), (0, 0), "{kind:?}");
    }
}

/// Sends ten numbered datagrams from the supervisor to a sink node under `fault`; returns what
/// the sink received, in order, and the fault's (considered, fired).
fn datagrams(fault: FaultSpec) -> (Vec<String>, u64, u64) {
    let kind = fault.kind();
    let report = Simulation::new(SimConfig::with_seed(5))
        .with_fault(fault)
        .run(|env| async move {
            let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let seen = got.clone();
            let sink = env
                .create_node("sink")
                .init(move |env| {
                    let seen = seen.clone();
                    async move {
                        let sock = UdpSocket::bind((env.ip(), 9000)).await.unwrap();
                        let mut buf = [0; 16];
                        while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                            let text = String::from_utf8_lossy(&buf[..n]).to_string();
                            seen.lock().unwrap().push(text);
                        }
                    }
                })
                .build()
                .node();
            env.sleep(ms(1)).await;
            let sock = UdpSocket::bind((env.ip(), 9000)).await.unwrap();
            for i in 0..10 {
                sock.send_to((sink.ip(), 9000), format!("{i}").as_bytes())
                    .await
                    .unwrap();
                env.sleep(ms(1)).await;
            }
            env.sleep(ms(500)).await;
            let got = got.lock().unwrap().clone();
            got
        })
        .unwrap();
    let stats = &report.faults;
    (report.output, stats.considered(kind), stats.fired(kind))
}

#[test]
fn each_network_fault_reaches_datagrams() {
    let in_order: Vec<String> = (0..10).map(|i| i.to_string()).collect();

    let (got, considered, fired) = datagrams(FaultSpec::new(FaultKind::PacketLoss, 0.5));
    assert_eq!(considered, 10);
    assert!(fired > 0 && fired < 10, "{fired}");
    assert_eq!(got.len() as u64, 10 - fired, "lost: dropped {got:?}");

    let (got, _, fired) = datagrams(FaultSpec::new(FaultKind::MessageDuplicate, 0.5));
    assert!(fired > 0 && fired < 10, "{fired}");
    assert_eq!(got.len() as u64, 10 + fired, "duplicated: {got:?}");

    let (got, _, fired) =
        datagrams(FaultSpec::new(FaultKind::MessageReorder, 0.5).with_param("max_ms", 20));
    assert!(fired > 0, "{fired}");
    let mut sorted = got.clone();
    sorted.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(sorted, in_order, "every datagram arrives once");
    assert_ne!(got, in_order, "held-back datagrams are overtaken");

    let (got, _, fired) =
        datagrams(FaultSpec::new(FaultKind::NetworkDelay, 1.0).with_param("max_ms", 50));
    assert_eq!(fired, 10);
    assert_eq!(got.len(), 10, "delayed, not lost: {got:?}");
}

#[test]
fn on_raw_madsim_the_sockets_only_pass_through() {
    let rt = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
    let reply = rt.block_on(async {
        let net = madsim::plugin::simulator::<madsim::net::NetSim>();
        net.set_ip(madsim::plugin::node(), "10.0.0.8".parse().unwrap());
        let node = madsim::runtime::Handle::current()
            .create_node()
            .ip("10.0.0.9".parse().unwrap())
            .init(|| async {
                let listener = TcpListener::bind("10.0.0.9:7000").await.unwrap();
                let (mut s, _) = listener.accept().await.unwrap();
                s.write_all(b"pong\n").await.unwrap();
                s.flush().await.unwrap();
                std::future::pending::<()>().await;
            })
            .build();
        madsim::time::sleep(ms(1)).await;
        let s = TcpStream::connect("10.0.0.9:7000".parse::<SocketAddr>().unwrap())
            .await
            .unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).await.unwrap();
        drop(node);
        line
    });
    assert_eq!(reply, "pong\n");
}

#[test]
fn sockets_that_do_not_report_are_counted_as_unreported() {
    // madsim's own sockets (madsim-tokio's `tokio::net`): partitions reach them, loss does not,
    // and the run says how many messages it could not see.
    let report = Simulation::new(SimConfig::with_seed(2))
        .with_fault(FaultSpec::new(FaultKind::PacketLoss, 1.0))
        .run(|env| async move {
            let n1 = env
                .create_node("n1")
                .init(|env| async move {
                    let listener = madsim::net::TcpListener::bind((env.ip(), PORT))
                        .await
                        .unwrap();
                    let (mut s, _) = listener.accept().await.unwrap();
                    s.write_all(b"hi\n").await.unwrap();
                    s.flush().await.unwrap();
                })
                .build()
                .node();
            env.sleep(ms(1)).await;
            let s = madsim::net::TcpStream::connect((n1.ip(), PORT))
                .await
                .unwrap();
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).await.unwrap();
            line
        })
        .unwrap();
    assert_eq!(report.output, "hi\n");
    assert_eq!(report.faults.considered(FaultKind::PacketLoss), 0);
    assert!(
        report.faults.unreported_socket_messages >= 2,
        "{:?}",
        report.faults
    );

    // kelpie-tokio's sockets report: nothing unreported.
    let (_, considered, _) = round_trip(Some(FaultSpec::new(FaultKind::PacketLoss, 0.0)), 2);
    assert_eq!(considered, 2);
    let report = Simulation::new(SimConfig::with_seed(2))
        .run(|env| async move {
            let s1 = server(&env, "s1");
            env.sleep(ms(1)).await;
            ask(&env, s1, "x", ms(100)).await
        })
        .unwrap();
    assert_eq!(report.output.as_deref(), Ok("s1:x"));
    assert_eq!(report.faults.unreported_socket_messages, 0);
}

#[test]
fn a_lost_segment_holds_the_reader_and_every_later_byte_not_the_writer() {
    use kelpie_tokio::io::AsyncReadExt;
    // Only the first segment is lost.
    let report = Simulation::new(SimConfig::with_seed(4))
        .with_fault(FaultSpec::new(FaultKind::PacketLoss, 1.0).max_triggers(1))
        .run(|env| async move {
            let got = std::sync::Arc::new(std::sync::Mutex::new(None));
            let seen = got.clone();
            let n1 = env
                .create_node("n1")
                .init(move |env| {
                    let seen = seen.clone();
                    async move {
                        let listener = TcpListener::bind((env.ip(), PORT)).await.unwrap();
                        let (mut s, _) = listener.accept().await.unwrap();
                        let mut buf = [0u8; 8];
                        s.read_exact(&mut buf).await.unwrap();
                        *seen.lock().unwrap() = Some((buf, env.elapsed()));
                    }
                })
                .build()
                .node();
            env.sleep(ms(1)).await;
            let mut s = TcpStream::connect((n1.ip(), PORT)).await.unwrap();
            let sent = env.elapsed();
            s.write_all(b"aaaa").await.unwrap();
            s.flush().await.unwrap();
            s.write_all(b"bbbb").await.unwrap();
            s.flush().await.unwrap();
            let writer_waited = env.elapsed() - sent;
            env.sleep(ms(500)).await;
            let got = got.lock().unwrap().take();
            (sent, writer_waited, got)
        })
        .unwrap();
    let (sent, writer_waited, got) = report.output;
    assert_eq!(
        writer_waited,
        Duration::ZERO,
        "the writer's flushes return at once"
    );
    let (bytes, at) = got.expect("the reader got its 8 bytes");
    assert_eq!(&bytes, b"aaaabbbb", "in order");
    // The second segment was not lost, but waited behind the first.
    assert!(at - sent >= RETRANSMIT, "read after {:?}", at - sent);
    assert!(
        at - sent < RETRANSMIT + ms(50),
        "read after {:?}",
        at - sent
    );
    assert_eq!(report.faults.fired(FaultKind::PacketLoss), 1);
}

#[test]
fn try_read_buf_reads_what_has_arrived_and_counts_it() {
    use kelpie_tokio::io::AsyncReadExt;
    // The server's first segment is lost; madsim's `try_read_buf` returns only what an earlier
    // read left in its buffer, never a new segment.
    let report = Simulation::new(SimConfig::with_seed(6))
        .with_fault(FaultSpec::new(FaultKind::PacketLoss, 1.0).max_triggers(1))
        .run(|env| async move {
            let n1 = env
                .create_node("n1")
                .init(|env| async move {
                    let listener = TcpListener::bind((env.ip(), PORT)).await.unwrap();
                    let (mut s, _) = listener.accept().await.unwrap();
                    for part in [&b"ab"[..], b"cd"] {
                        s.write_all(part).await.unwrap();
                        s.flush().await.unwrap();
                    }
                    std::future::pending::<()>().await;
                })
                .build()
                .node();
            env.sleep(ms(1)).await;
            let mut s = TcpStream::connect((n1.ip(), PORT)).await.unwrap();
            let start = env.elapsed();
            let mut buf = bytes::BytesMut::new();
            let early = s.try_read_buf(&mut buf).map_err(|e| e.kind());
            let mut one = [0u8; 1];
            s.read_exact(&mut one).await.unwrap();
            let waited = env.elapsed() - start;
            let n = s.try_read_buf(&mut buf).unwrap();
            let mut rest = [0u8; 2];
            s.read_exact(&mut rest).await.unwrap();
            (early, waited, one, n, buf.to_vec(), rest)
        })
        .unwrap();
    let (early, waited, one, n, buf, rest) = report.output;
    assert_eq!(early, Err(std::io::ErrorKind::WouldBlock));
    assert!(waited >= RETRANSMIT, "{waited:?}");
    assert_eq!(
        (&one, n, buf.as_slice(), &rest),
        (b"a", 1, &b"b"[..], b"cd")
    );
}
