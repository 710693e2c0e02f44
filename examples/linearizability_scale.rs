//! The history checker at Jepsen scale: histories of 10 to 50 concurrent clients (1,000 to
//! 10,000 operations) against a correct and a buggy register / key-value service, each
//! decided first (no shrinking) and then, for a violation, shrunk; prints decision and shrink
//! times, states explored, witness sizes and the most operations in flight at once ("conc").
//!
//! ```text
//! cargo run --release --example linearizability_scale                     # 10 histories a case
//! cargo run --release --example linearizability_scale -- --histories 20 --only kv-lagging-10k
//! cargo run --release --example linearizability_scale -- --only register-20c-ok-1k --clients 30
//! /usr/bin/time -v target/release/examples/linearizability_scale --only kv-lagging-10k  # peak RSS
//! cargo run --release --example linearizability_scale -- --only rw-register-50c-ok-1k --search-only
//! ```
//!
//! The `rw-` cases have only gets and puts, so each key is a register with unique written
//! values, which the checker's register fast path decides without a search; `--search-only`
//! turns the fast path off, to compare. The other cases have deletes and compare-and-swaps
//! (searched either way).
//!
//! Histories come from a seeded generator, except in the `sim-` cases, which record them from
//! Kelpie simulations under network faults (see `simulate`). In the generator each client runs operations one
//! after another (100 µs–10 ms each, up to 2 ms apart); an operation takes effect at a random
//! instant strictly inside its interval, and returns what the service gives at that instant.
//! A write's outcome is unknown to its client with the case's probability (a timeout); it then
//! takes effect or not, at random. Values written are unique. The correct service is one
//! sequential map; the buggy one serves reads from a follower that applies each write
//! 0–`lag` later (a stale read whenever a read lands inside that window after a write).
//!
//! Per history: `check_with(.., CheckConfig::new(10M states).time_limit(10 s).shrink(false))`
//! is timed as the decision; for a violation, `Violation::shrink(.., 10M states, 30 s)` is
//! timed as the shrink.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kelpie::history::{CheckConfig, History, KvModel, KvOp, KvRet, Model, Shrinking, Verdict};
use kelpie::rng::SimRng;
use kelpie::{FaultKind, FaultSpec, SimConfig, SimEnv, Simulation};

type Op = KvOp<u8, u64>;
type Ret = KvRet<u64>;

/// The state budget to decide and to shrink.
const MAX_STATES: u64 = 10_000_000;
/// The wall-clock limits to decide (`--time-limit SECS` changes it) and to shrink.
const DECIDE_LIMIT: Duration = Duration::from_secs(10);
const SHRINK_LIMIT: Duration = Duration::from_secs(30);

/// One kind of history.
struct Case {
    name: &'static str,
    ops: usize,
    clients: u64,
    keys: u64,
    /// Probability that a write's outcome is unknown to its client.
    unknown: f64,
    /// Reads served by a follower lagging up to this many µs (0: the correct service).
    lag: u64,
    /// Only gets and puts (no deletes or compare-and-swaps): every key a register with unique
    /// written values, which the checker's register fast path decides without a search.
    rw: bool,
    /// Recorded from a Kelpie simulation (clients on their own nodes, a service node, network
    /// faults) instead of the seeded generator.
    simulated: bool,
}

impl Case {
    /// Whether the service is the buggy one.
    fn buggy(&self) -> bool {
        self.lag > 0
    }
}

/// One generated operation; times in µs.
struct Gen {
    client: u64,
    op: Op,
    invoked: u64,
    effect: u64,
    returned: u64,
    ret: Ret,
    unknown: bool,
    applied: bool,
    /// For a read of the buggy service: how far behind its follower is.
    lag: u64,
}

fn generate(case: &Case, seed: u64) -> History<Op, Ret> {
    if case.simulated {
        return simulate(case, seed);
    }
    let mut rng = SimRng::new(seed);
    let mut gens = Vec::with_capacity(case.ops);
    let per_client = (case.ops as u64).div_ceil(case.clients);
    'clients: for client in 0..case.clients {
        let mut t = rng.gen_range(0..1_000);
        for i in 0..per_client {
            if gens.len() == case.ops {
                break 'clients;
            }
            let key = rng.gen_range(0..case.keys) as u8;
            let value = client * 1_000_000 + i + 1;
            let op = match rng.gen_range(0..10) {
                0..=4 => KvOp::Get(key),
                _ if case.rw => KvOp::Put(key, value),
                5..=7 => KvOp::Put(key, value),
                8 => KvOp::Delete(key),
                _ => KvOp::Cas {
                    key,
                    expected: None, // filled in below with a value the key really had
                    new: value,
                },
            };
            let duration = rng.gen_range(100..10_000);
            let unknown = !matches!(op, KvOp::Get(_)) && rng.gen_bool(case.unknown);
            let lag = if case.lag > 0 {
                rng.gen_range(0..case.lag)
            } else {
                0
            };
            gens.push(Gen {
                client,
                op,
                invoked: t,
                effect: t + rng.gen_range(1..duration),
                returned: t + duration,
                ret: KvRet::Done,
                unknown,
                applied: !unknown || rng.gen_bool(0.5),
                lag,
            });
            t += duration + rng.gen_range(0..2_000);
        }
    }

    // Apply in effect order; a CAS expects the current value half of the time. Each key's
    // history of values, for the follower's reads.
    let mut order: Vec<usize> = (0..gens.len()).collect();
    order.sort_by_key(|&i| (gens[i].effect, i));
    let model = KvModel::new();
    let mut map: BTreeMap<u8, u64> = BTreeMap::new();
    let mut values: BTreeMap<u8, Vec<(u64, Option<u64>)>> = BTreeMap::new();
    for &i in &order {
        let g = &mut gens[i];
        if let KvOp::Cas { key, expected, .. } = &mut g.op {
            if rng.gen_bool(0.5) {
                *expected = map.get(key).copied();
            }
        }
        if let (KvOp::Get(key), true) = (&g.op, g.lag > 0) {
            // The follower's value: the last write applied before `effect - lag`.
            let at = g.effect.saturating_sub(g.lag);
            let seen = values.get(key).and_then(|vs| {
                let n = vs.partition_point(|&(t, _)| t <= at);
                n.checked_sub(1).map(|k| vs[k].1)
            });
            g.ret = KvRet::Value(seen.flatten());
            continue;
        }
        if g.applied {
            let (next, ret) = model.step(&map, &g.op);
            if next.get(g.op.key()) != map.get(g.op.key()) {
                let v = next.get(g.op.key()).copied();
                values.entry(*g.op.key()).or_default().push((g.effect, v));
            }
            (map, g.ret) = (next, ret);
        }
    }

    // Record invocations and returns in time order.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * gens.len());
    for (i, g) in gens.iter().enumerate() {
        events.push((g.invoked, false, i));
        events.push((g.returned, true, i));
    }
    events.sort_unstable();
    let history = History::new();
    let mut calls: Vec<_> = (0..gens.len()).map(|_| None).collect();
    for (t, is_return, i) in events {
        let at = Duration::from_micros(t);
        let g = &gens[i];
        if !is_return {
            calls[i] = Some(history.invoke(g.client, g.op.clone(), at));
        } else if let Some(call) = calls[i].take() {
            if g.unknown {
                call.unknown(at);
            } else {
                call.ok(g.ret.clone(), at);
            }
        }
    }
    history
}

/// Messages of the simulated service.
#[derive(Debug, Clone, Hash)]
enum Msg {
    Request { id: u64, op: Op },
    Reply { id: u64, ret: Ret },
}

/// A history recorded from a Kelpie simulation of seed `seed`: a service node holding one map
/// (with `case.lag`, the buggy one: reads come from a follower that each write reaches up to
/// `lag` µs after it was acknowledged) and `case.clients` client nodes, each sending its share
/// of `case.ops` requests one at a time over Kelpie's network under delays, reordering and
/// loss; a request without a reply within 40 ms has an unknown outcome.
fn simulate(case: &Case, seed: u64) -> History<Op, Ret> {
    let history = History::new();
    let h = history.clone();
    let (clients, keys, lag, rw) = (case.clients, case.keys, case.lag, case.rw);
    let per_client = (case.ops as u64).div_ceil(clients);
    let faults = vec![
        FaultSpec::new(FaultKind::NetworkDelay, 0.3).with_param("max_ms", 20),
        FaultSpec::new(FaultKind::MessageReorder, 0.1),
        FaultSpec::new(FaultKind::PacketLoss, 0.02),
    ];
    Simulation::new(SimConfig::with_seed(seed))
        .with_faults(faults)
        .run(move |env| async move {
            let server = env
                .create_node("kv")
                .init(move |env| serve(env, lag))
                .build()
                .node();
            let mut tasks = Vec::new();
            for me in 0..clients {
                let node = env.create_node(format!("c{me}")).build();
                let (h, env) = (h.clone(), node.clone());
                tasks.push(node.spawn(async move {
                    let ep = env.network().endpoint::<Msg>();
                    for id in 0..per_client {
                        let key = env.rng().gen_range(0..keys) as u8;
                        let value = me * 1_000_000 + id + 1;
                        let op = match env.rng().gen_range(0..10) {
                            0..=4 => KvOp::Get(key),
                            _ if rw => KvOp::Put(key, value),
                            5..=7 => KvOp::Put(key, value),
                            8 => KvOp::Delete(key),
                            _ => KvOp::Cas {
                                key,
                                expected: None,
                                new: value,
                            },
                        };
                        let call = h.invoke(me, op.clone(), &env);
                        ep.send(server, Msg::Request { id, op });
                        let reply = env
                            .timeout(Duration::from_millis(40), async {
                                loop {
                                    match ep.recv().await {
                                        Some((_, Msg::Reply { id: r, ret })) if r == id => {
                                            return Some(ret)
                                        }
                                        Some(_) => {} // a late reply to an earlier request
                                        None => return None,
                                    }
                                }
                            })
                            .await;
                        match reply {
                            Ok(Some(ret)) => call.ok(ret, &env),
                            _ => call.unknown(&env),
                        }
                        let pause = env.rng().gen_range(0..3);
                        env.sleep(Duration::from_millis(pause)).await;
                    }
                }));
            }
            for t in tasks {
                t.await.expect("client task");
            }
        })
        .expect("the simulated service runs");
    history
}

/// The service node: applies each request to its map and replies; with `lag` > 0, reads come
/// from a follower that each write reaches up to `lag` µs later.
async fn serve(env: SimEnv, lag: u64) {
    let ep = env.network().endpoint::<Msg>();
    let model = KvModel::new();
    let mut primary = BTreeMap::new();
    let follower = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    while let Some((from, msg)) = ep.recv().await {
        let Msg::Request { id, op } = msg else {
            continue;
        };
        let (next, mut ret) = model.step(&primary, &op);
        primary = next;
        if lag > 0 {
            if let KvOp::Get(k) = op {
                ret = KvRet::Value(follower.lock().expect("follower").get(&k).copied());
            } else {
                let (key, value) = (*op.key(), primary.get(op.key()).copied());
                let (env2, follower) = (env.clone(), follower.clone());
                env.spawn(async move {
                    let behind = env2.rng().gen_range(0..lag);
                    env2.sleep(Duration::from_micros(behind)).await;
                    let mut f = follower.lock().expect("follower");
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

/// The numbers of one case.
#[derive(Default)]
struct Row {
    /// Linearizable, violation, unknown.
    verdicts: [usize; 3],
    decide: Vec<Duration>,
    states: Vec<u64>,
    shrink: Vec<Duration>,
    witness: Vec<usize>,
    minimal: usize,
    partial: usize,
    max_concurrency: usize,
}

/// The most operations in flight at once.
fn concurrency(history: &History<Op, Ret>) -> usize {
    let mut events: Vec<(Duration, i32)> = Vec::new();
    for op in history.operations() {
        events.push((op.invoked, 1));
        let end = match op.outcome {
            kelpie::history::Outcome::Ok { at, .. } | kelpie::history::Outcome::Failed { at } => at,
            _ => Duration::MAX,
        };
        events.push((end, -1));
    }
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

fn run_case(case: &Case, histories: u64, show: bool, limit: Duration, fast: bool) -> Row {
    let model = KvModel::new();
    let config = CheckConfig::new(MAX_STATES)
        .time_limit(limit)
        .shrink(false)
        .register_fast_path(fast);
    let mut row = Row::default();
    for seed in 0..histories {
        let history = generate(case, seed);
        assert_eq!(history.len(), case.ops);
        row.max_concurrency = row.max_concurrency.max(concurrency(&history));
        let start = Instant::now();
        let verdict = history.check_with(&model, &config);
        row.decide.push(start.elapsed());
        row.states.push(verdict.explored());
        match &verdict {
            Verdict::Linearizable { .. } => row.verdicts[0] += 1,
            Verdict::Violation(v) => {
                row.verdicts[1] += 1;
                let start = Instant::now();
                let shrunk = v.shrink(&model, MAX_STATES, Some(SHRINK_LIMIT));
                row.shrink.push(start.elapsed());
                row.witness.push(shrunk.operations.len());
                match shrunk.shrinking {
                    Shrinking::Minimal => row.minimal += 1,
                    _ => row.partial += 1,
                }
                if show && seed == 0 {
                    println!("{}, seed 0: {shrunk}\n{}", case.name, shrunk.timeline());
                }
            }
            Verdict::Unknown { .. } => {
                row.verdicts[2] += 1;
                if show {
                    println!("{}, seed {seed}: {verdict}", case.name);
                }
            }
        }
    }
    row
}

fn ms(d: &[Duration]) -> (f64, f64) {
    let v: Vec<f64> = d.iter().map(|t| t.as_secs_f64() * 1e3).collect();
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    (mean, v.iter().copied().fold(0.0, f64::max))
}

fn cases() -> Vec<Case> {
    let case = |name, ops, clients, keys, unknown, lag| Case {
        name,
        ops,
        clients,
        keys,
        unknown,
        lag,
        rw: false,
        simulated: false,
    };
    let sim = |name, ops, clients, keys, lag, rw| Case {
        rw,
        simulated: true,
        ..case(name, ops, clients, keys, 0.0, lag)
    };
    let rw = |name, ops, clients, keys, unknown, lag| Case {
        rw: true,
        ..case(name, ops, clients, keys, unknown, lag)
    };
    vec![
        case("kv-ok-1k", 1_000, 50, 10, 0.0, 0),
        case("kv-unknown-1k", 1_000, 50, 10, 0.05, 0),
        case("kv-lagging-1k", 1_000, 50, 10, 0.0, 5_000),
        case("kv-ok-10k", 10_000, 50, 10, 0.0, 0),
        case("kv-unknown-10k", 10_000, 50, 10, 0.05, 0),
        case("kv-lagging-10k", 10_000, 50, 10, 0.0, 5_000),
        case("kv-lagging-rare-10k", 10_000, 50, 10, 0.0, 300),
        case("register-10c-ok-10k", 10_000, 10, 1, 0.0, 0),
        case("register-10c-unknown-10k", 10_000, 10, 1, 0.05, 0),
        case("register-10c-lagging-10k", 10_000, 10, 1, 0.0, 5_000),
        case("register-20c-ok-1k", 1_000, 20, 1, 0.0, 0),
        case("register-20c-lagging-1k", 1_000, 20, 1, 0.0, 5_000),
        case("register-50c-ok-1k", 1_000, 50, 1, 0.0, 0),
        case("register-50c-lagging-1k", 1_000, 50, 1, 0.0, 5_000),
        // Reads and writes only: the register fast path.
        rw("rw-register-50c-ok-1k", 1_000, 50, 1, 0.0, 0),
        rw("rw-register-50c-unknown-1k", 1_000, 50, 1, 0.05, 0),
        rw("rw-register-50c-lagging-1k", 1_000, 50, 1, 0.0, 5_000),
        rw("rw-register-20c-lagging-1k", 1_000, 20, 1, 0.0, 5_000),
        rw("rw-register-10c-unknown-10k", 10_000, 10, 1, 0.05, 0),
        rw("rw-kv-unknown-10k", 10_000, 50, 10, 0.05, 0),
        rw("rw-register-50c-ok-100k", 100_000, 50, 1, 0.0, 0),
        // Recorded from Kelpie simulations under network faults (unknown outcomes come from
        // lost or late replies, not from a probability).
        sim("sim-rw-register-50c-1k", 1_000, 50, 1, 0, true),
        sim("sim-rw-register-50c-lagging-1k", 1_000, 50, 1, 20_000, true),
        sim("sim-kv-50c-1k", 1_000, 50, 10, 0, false),
        sim("sim-kv-50c-lagging-1k", 1_000, 50, 10, 20_000, false),
    ]
}

fn main() -> ExitCode {
    let mut histories = 10u64;
    let mut only: Option<String> = None;
    let mut show = false;
    let mut clients: Option<u64> = None;
    let mut limit = DECIDE_LIMIT;
    let mut fast = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--histories" => match args.next().and_then(|v| v.parse::<u64>().ok()) {
                Some(n) if n > 0 => histories = n,
                _ => {
                    eprintln!("error: expected `--histories N` with N > 0");
                    return ExitCode::from(2);
                }
            },
            "--only" => only = args.next(),
            "--time-limit" => match args.next().and_then(|v| v.parse::<u64>().ok()) {
                Some(n) if n > 0 => limit = Duration::from_secs(n),
                _ => {
                    eprintln!("error: expected `--time-limit SECS` with SECS > 0");
                    return ExitCode::from(2);
                }
            },
            "--clients" => match args.next().and_then(|v| v.parse::<u64>().ok()) {
                Some(n) if n > 0 => clients = Some(n),
                _ => {
                    eprintln!("error: expected `--clients N` with N > 0");
                    return ExitCode::from(2);
                }
            },
            "--show" => show = true,
            "--search-only" => fast = false,
            _ => {
                eprintln!(
                    "error: unknown argument `{a}`; expected --histories N, --only CASE, --clients N, \
                     --time-limit SECS, --search-only, --show"
                );
                return ExitCode::from(2);
            }
        }
    }
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|o| o == c.name))
        .map(|c| Case {
            clients: clients.unwrap_or(c.clients),
            ..c
        })
        .collect();
    if cases.is_empty() {
        let names: Vec<&str> = self::cases().iter().map(|c| c.name).collect();
        eprintln!("error: no case named {only:?}; cases: {}", names.join(", "));
        return ExitCode::from(2);
    }
    println!(
        "linearizability_scale: {histories} histories a case, decide within {MAX_STATES} \
         states / {limit:?}, shrink within {MAX_STATES} states / {SHRINK_LIMIT:?}"
    );
    // Warm up (allocator, caches) before anything is timed.
    // (On an easy case, whichever is measured: the warm-up must not set the peak memory.)
    let _ = generate(&self::cases()[0], u64::MAX).check(&KvModel::new(), MAX_STATES);
    println!(
        "\n{:<26} {:>6} {:>7} {:>5} {:>5} {:>12} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "case",
        "ops",
        "clients",
        "keys",
        "conc",
        "lin/viol/unk",
        "decide",
        "max",
        "max states",
        "shrink",
        "max",
        "witness",
        "minimal"
    );
    let mut ok = true;
    for c in &cases {
        let r = run_case(c, histories, show, limit, fast);
        let (dm, dx) = ms(&r.decide);
        let (sm, sx) = ms(&r.shrink);
        let shrink = if r.shrink.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            (format!("{sm:.1}ms"), format!("{sx:.1}ms"))
        };
        let witness = match (r.witness.iter().min(), r.witness.iter().max()) {
            (Some(a), Some(b)) => format!("{a}-{b}"),
            _ => "-".to_string(),
        };
        println!(
            "{:<26} {:>6} {:>7} {:>5} {:>5} {:>12} {:>7.1}ms {:>7.1}ms {:>10} {:>9} {:>9} {:>9} {:>8}",
            c.name,
            c.ops,
            c.clients,
            c.keys,
            r.max_concurrency,
            format!("{}/{}/{}", r.verdicts[0], r.verdicts[1], r.verdicts[2]),
            dm,
            dx,
            r.states.iter().max().copied().unwrap_or(0),
            shrink.0,
            shrink.1,
            witness,
            format!("{}/{}", r.minimal, r.minimal + r.partial),
        );
        // A correct service's history is never a violation; unknown is an honest answer
        // (reported in the table), and a buggy service's history passes if no read was stale.
        if !c.buggy() && r.verdicts[1] > 0 {
            eprintln!(
                "error: {}: a correct history was found not linearizable",
                c.name
            );
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
