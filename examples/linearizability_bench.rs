//! What the linearizability checker costs: histories of 1,000 operations from 5–10 concurrent
//! clients on a few keys, and larger ones, each generated from a seed and checked; prints the
//! states explored and the time per history, all cases measured side by side in one run.
//!
//! ```text
//! cargo run --release --example linearizability_bench                    # 20 histories a case
//! cargo run --release --example linearizability_bench -- --histories 100
//! ```
//!
//! A history is generated the way a correct store behaves: each client runs operations one
//! after another (100 µs–10 ms each, up to 2 ms apart); each operation takes effect at a random
//! instant strictly inside its interval, and the returns are what a sequential map gives in
//! that order. Values written are unique. Variants: some writes of unknown outcome (each
//! taking effect or not), and one planted stale read (a read returning the value a write had
//! replaced before the read began).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kelpie::history::{History, KvModel, KvOp, KvRet, Model, PartitionKey, Verdict};
use kelpie::rng::SimRng;

type Op = KvOp<u8, u64>;
type Ret = KvRet<u64>;

/// The budget given to every check.
const MAX_STATES: u64 = 5_000_000;

/// One kind of history.
struct Case {
    name: &'static str,
    ops: usize,
    clients: u64,
    keys: u64,
    /// Probability that a write's outcome is unknown to its client.
    unknown: f64,
    /// Plant one stale read.
    stale: bool,
    /// Check with [`KvModel`] minus one of its optimisations.
    without: Option<Optimisation>,
}

/// An optimisation of [`KvModel`] a case can turn off, to measure what it buys.
#[derive(Clone, Copy)]
enum Optimisation {
    /// Checking each key on its own ([`Model::partition`]).
    Partitions,
    /// Linearizing reads at once ([`Model::is_read_only`]).
    ReadOnly,
}

/// [`KvModel`] without one optimisation.
struct Without(KvModel<u8, u64>, Optimisation);

impl Model for Without {
    type State = BTreeMap<u8, u64>;
    type Op = Op;
    type Ret = Ret;

    fn init(&self) -> Self::State {
        self.0.init()
    }

    fn step(&self, state: &Self::State, op: &Op) -> (Self::State, Ret) {
        self.0.step(state, op)
    }

    fn is_read_only(&self, op: &Op, ret: &Ret) -> bool {
        matches!(self.1, Optimisation::Partitions) && self.0.is_read_only(op, ret)
    }

    fn partition(&self, op: &Op) -> PartitionKey {
        match self.1 {
            Optimisation::Partitions => PartitionKey::ALL,
            Optimisation::ReadOnly => self.0.partition(op),
        }
    }
}

/// One generated operation; times in microseconds.
struct Gen {
    client: u64,
    op: Op,
    invoked: u64,
    effect: u64,
    returned: u64,
    ret: Ret,
    /// Outcome unknown to the client; `applied` says whether it took effect.
    unknown: bool,
    applied: bool,
}

fn generate(case: &Case, seed: u64) -> History<Op, Ret> {
    let mut rng = SimRng::new(seed);
    let mut gens = Vec::with_capacity(case.ops);
    let per_client = case.ops as u64 / case.clients;
    for client in 0..case.clients {
        let mut t = rng.gen_range(0..1_000);
        for i in 0..per_client {
            let key = rng.gen_range(0..case.keys) as u8;
            let value = client * 1_000_000 + i;
            let op = match rng.gen_range(0..10) {
                0..=4 => KvOp::Get(key),
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
            gens.push(Gen {
                client,
                op,
                invoked: t,
                effect: t + rng.gen_range(1..duration),
                returned: t + duration,
                ret: KvRet::Done,
                unknown,
                applied: !unknown || rng.gen_bool(0.5),
            });
            t += duration + rng.gen_range(0..2_000);
        }
    }

    // Apply in effect order; a CAS expects the current value half of the time.
    let mut order: Vec<usize> = (0..gens.len()).collect();
    order.sort_by_key(|&i| (gens[i].effect, i));
    let mut map: BTreeMap<u8, u64> = BTreeMap::new();
    for &i in &order {
        let g = &mut gens[i];
        if let KvOp::Cas { key, expected, .. } = &mut g.op {
            if rng.gen_bool(0.5) {
                *expected = map.get(key).copied();
            }
        }
        if g.applied {
            let (next, ret) = KvModel::new().step(&map, &g.op);
            (map, g.ret) = (next, ret);
        }
    }

    if case.stale {
        plant_stale_read(&mut gens);
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

/// Makes a late read return the value of a put that another put replaced before the read
/// began, where the replacing put began after the first had returned: no order explains it
/// (values are unique, so nothing writes that value again).
fn plant_stale_read(gens: &mut [Gen]) {
    let n = gens.len();
    for r in (n * 9 / 10..n).chain(0..n * 9 / 10) {
        let KvOp::Get(key) = gens[r].op else {
            continue;
        };
        let puts: Vec<usize> = (0..n)
            .filter(|&i| !gens[i].unknown && matches!(gens[i].op, KvOp::Put(k, _) if k == key))
            .collect();
        for &newer in &puts {
            if gens[newer].returned >= gens[r].invoked {
                continue;
            }
            let old = puts
                .iter()
                .find(|&&old| gens[old].returned < gens[newer].invoked);
            if let Some(&old) = old {
                if let KvOp::Put(_, v) = gens[old].op {
                    gens[r].ret = KvRet::Value(Some(v));
                    return;
                }
            }
        }
    }
}

/// The numbers of one case.
struct Row {
    verdicts: [usize; 3],
    states: Vec<u64>,
    times: Vec<Duration>,
    witness: Vec<usize>,
}

fn run_case(case: &Case, histories: u64) -> Row {
    let mut row = Row {
        verdicts: [0; 3],
        states: Vec::new(),
        times: Vec::new(),
        witness: Vec::new(),
    };
    for seed in 0..histories {
        let history = generate(case, seed);
        assert_eq!(history.len(), case.ops);
        let start = Instant::now();
        let verdict = match case.without {
            Some(o) => history.check(&Without(KvModel::new(), o), MAX_STATES),
            None => history.check(&KvModel::new(), MAX_STATES),
        };
        row.times.push(start.elapsed());
        row.states.push(verdict.explored());
        match &verdict {
            Verdict::Linearizable { .. } => row.verdicts[0] += 1,
            Verdict::Violation(v) => {
                row.verdicts[1] += 1;
                row.witness.push(v.operations.len());
            }
            Verdict::Unknown { .. } => row.verdicts[2] += 1,
        }
        if seed == 0 && case.stale {
            println!("  {}, seed 0: {verdict}", case.name);
        }
    }
    row
}

fn mean<T: Copy + Into<f64>>(xs: &[T]) -> f64 {
    xs.iter().map(|&x| x.into()).sum::<f64>() / xs.len().max(1) as f64
}

fn main() -> ExitCode {
    let mut histories = 20u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().map(|v| v.parse::<u64>())) {
            ("--histories", Some(Ok(n))) if n > 0 => histories = n,
            _ => {
                eprintln!("error: expected `--histories N` with N > 0");
                return ExitCode::from(2);
            }
        }
    }
    let case = |name, ops, clients, keys| Case {
        name,
        ops,
        clients,
        keys,
        unknown: 0.0,
        stale: false,
        without: None,
    };
    let cases = [
        case("5 clients, 4 keys", 1_000, 5, 4),
        case("10 clients, 4 keys", 1_000, 10, 4),
        Case {
            without: Some(Optimisation::Partitions),
            ..case("  the same, keys not partitioned", 1_000, 10, 4)
        },
        Case {
            without: Some(Optimisation::ReadOnly),
            ..case("  the same, reads not linearized at once", 1_000, 10, 4)
        },
        case("10 clients, 1 key", 1_000, 10, 1),
        Case {
            without: Some(Optimisation::ReadOnly),
            ..case("  the same, reads not linearized at once", 1_000, 10, 1)
        },
        Case {
            unknown: 0.05,
            ..case("10 clients, 4 keys, 5% writes unknown", 1_000, 10, 4)
        },
        Case {
            stale: true,
            ..case("10 clients, 4 keys, one stale read", 1_000, 10, 4)
        },
        case("10 clients, 8 keys (larger)", 10_000, 10, 8),
        case("10 clients, 1 key (larger)", 10_000, 10, 1),
        Case {
            stale: true,
            ..case("10 clients, 8 keys, one stale read (larger)", 10_000, 10, 8)
        },
    ];
    println!(
        "linearizability_bench: {histories} histories a case, budget {MAX_STATES} states, \
         KvModel (keys checked apart, reads linearized at once) unless said"
    );
    // Warm up (allocator, caches) before anything is timed.
    let _ = generate(&cases[1], u64::MAX).check(&KvModel::new(), MAX_STATES);
    let mut rows = Vec::new();
    for c in &cases {
        rows.push(run_case(c, histories));
    }
    println!(
        "\n{:<45} {:>6} {:>12} {:>10} {:>10} {:>11} {:>11} {:>8}",
        "case", "ops", "lin/viol/unk", "states", "max", "time", "max time", "µs/op"
    );
    for (c, r) in cases.iter().zip(&rows) {
        let micros: Vec<f64> = r.times.iter().map(|t| t.as_secs_f64() * 1e6).collect();
        let max_time = micros.iter().copied().fold(0.0, f64::max);
        println!(
            "{:<45} {:>6} {:>12} {:>10.0} {:>10} {:>9.2}ms {:>9.2}ms {:>8.2}",
            c.name,
            c.ops,
            format!("{}/{}/{}", r.verdicts[0], r.verdicts[1], r.verdicts[2]),
            mean(&r.states.iter().map(|&s| s as f64).collect::<Vec<_>>()),
            r.states.iter().max().copied().unwrap_or(0),
            mean(&micros) / 1e3,
            max_time / 1e3,
            mean(&micros) / c.ops as f64,
        );
        if !r.witness.is_empty() {
            println!(
                "{:<45} witnesses of {:?} operations",
                "",
                r.witness.iter().collect::<std::collections::BTreeSet<_>>()
            );
        }
    }
    let expected_ok = rows
        .iter()
        .zip(&cases)
        .all(|(r, c)| r.verdicts[if c.stale { 1 } else { 0 }] == histories as usize);
    if expected_ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: some history did not get the expected verdict");
        ExitCode::FAILURE
    }
}
