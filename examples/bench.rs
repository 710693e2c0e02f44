//! The benchmark behind BENCHMARKS.md: the same workloads run three ways in one process —
//! (1) a raw `madsim::runtime::Runtime` loop with a fresh thread per seed, (2) the kelpie
//! simulation without faults, (3) kelpie with a typical fault mix and tracing — interleaved
//! in rounds so that machine noise hits all of them alike. Also: the determinism check's cost,
//! 1 vs 2 worker threads, memory per seed and time compression.
//!
//! ```text
//! cargo run --release --example bench            # default sizes, a few minutes on 2 cores
//! cargo run --release --example bench -- 200     # seeds per measurement
//! ```

#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kelpie::{FaultKind, FaultSpec, SimConfig, SimEnv, Simulation};

// The actor lifecycle suite itself, registered with the harness; run here through its
// registration so the benchmark measures exactly what `cargo test` runs.
use kelpie_suites as _;

/// Counts live heap bytes and their peak, across all threads — only while `COUNTING` is on
/// (the memory pass), so that the timed runs pay nothing for it.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            let size = layout.size() as isize;
            let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

type Body = fn(SimEnv) -> Pin<Box<dyn Future<Output = ()>>>;

const TASKS: u64 = 10;
const STEPS: u64 = 5;

fn pause(t: u64, i: u64) -> Duration {
    Duration::from_micros(1 + (t * 7 + i * 13) % 50)
}

// ---- workload 0: an empty body (the per-seed setup and teardown alone) --------------------

fn empty_raw(seed: u64) {
    std::thread::spawn(move || {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(async {});
    })
    .join()
    .unwrap();
}

fn empty(_env: SimEnv) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async {})
}

// ---- workload 1: ten tasks that sleep and write ------------------------------------------

fn toy_raw(seed: u64) {
    std::thread::spawn(move || {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(async {
            let store: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
            let handles: Vec<_> = (0..TASKS)
                .map(|t| {
                    let store = store.clone();
                    madsim::task::spawn(async move {
                        for i in 0..STEPS {
                            madsim::time::sleep(pause(t, i)).await;
                            if i == 2 {
                                store.lock().unwrap().insert(t, i);
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        });
    })
    .join()
    .unwrap();
}

fn toy(env: SimEnv) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async move {
        let handles: Vec<_> = (0..TASKS)
            .map(|t| {
                let env2 = env.clone();
                env.spawn(async move {
                    for i in 0..STEPS {
                        env2.sleep(pause(t, i)).await;
                        if i == 2 {
                            let _ = env2.storage().set(t.to_le_bytes(), i.to_le_bytes()).await;
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    })
}

fn toy_faults() -> Vec<FaultSpec> {
    vec![
        FaultSpec::new(FaultKind::StorageWriteFail, 0.02),
        FaultSpec::new(FaultKind::StorageLatency, 0.1),
        FaultSpec::new(FaultKind::NodeCrash, 0.01),
    ]
}

// ---- equal work: ten tasks x ten sleeps, with and without a write per round ---------------
//
// The raw loop does what the kelpie body does, step for step: the same sleeps, and where kelpie
// writes a key, an insert of an owned key and value into a `BTreeMap` behind a mutex (kelpie's
// disk also keeps the durable/unsynced state and a version, and traces the write).

const SLEEPS: u64 = 10;

fn equal_raw(seed: u64, write: bool) {
    std::thread::spawn(move || {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(async move {
            let store: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>> = Arc::default();
            let handles: Vec<_> = (0..TASKS)
                .map(|t| {
                    let store = store.clone();
                    madsim::task::spawn(async move {
                        for i in 0..SLEEPS {
                            madsim::time::sleep(pause(t, i)).await;
                            if write {
                                let (k, v) = (t.to_le_bytes(), i.to_le_bytes());
                                store.lock().unwrap().insert(k.to_vec(), v.to_vec());
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        });
    })
    .join()
    .unwrap();
}

fn equal(env: SimEnv, write: bool) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async move {
        let handles: Vec<_> = (0..TASKS)
            .map(|t| {
                let env2 = env.clone();
                env.spawn(async move {
                    let storage = env2.storage();
                    for i in 0..SLEEPS {
                        env2.sleep(pause(t, i)).await;
                        if write {
                            let _ = storage.set(t.to_le_bytes(), i.to_le_bytes()).await;
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    })
}

fn sleeps(env: SimEnv) -> Pin<Box<dyn Future<Output = ()>>> {
    equal(env, false)
}

fn writes(env: SimEnv) -> Pin<Box<dyn Future<Output = ()>>> {
    equal(env, true)
}

/// The fault mix of the equal-work rows: failed writes and injected latency.
fn write_faults() -> Vec<FaultSpec> {
    vec![
        FaultSpec::new(FaultKind::StorageWriteFail, 0.02),
        FaultSpec::new(FaultKind::StorageLatency, 0.1),
    ]
}

// ---- workload 2: three nodes passing messages around a ring --------------------------------

const ROUNDS: u64 = 20;

fn ring_raw(seed: u64) {
    std::thread::spawn(move || {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(async {
            let handle = madsim::runtime::Handle::current();
            let (txs, rxs): (Vec<_>, Vec<_>) = (0..3)
                .map(|_| tokio::sync::mpsc::unbounded_channel::<u64>())
                .unzip();
            let mut done = Vec::new();
            for (i, mut rx) in rxs.into_iter().enumerate() {
                let next = txs[(i + 1) % 3].clone();
                let node = handle.create_node().name(format!("n{i}")).build();
                done.push(node.spawn(async move {
                    while let Some(m) = rx.recv().await {
                        if m >= ROUNDS * 3 {
                            break;
                        }
                        // The one-way latency kelpie's network adds.
                        madsim::time::sleep(Duration::from_millis(1 + m % 9)).await;
                        let _ = next.send(m + 1);
                    }
                }));
            }
            txs[0].send(0).unwrap();
            // Bounded as the Kelpie body is (equal work: its timer sits in madsim's timer heap
            // for the whole run).
            let _ = madsim::time::timeout(Duration::from_secs(5), done.remove(0)).await;
        });
    })
    .join()
    .unwrap();
}

fn ring(env: SimEnv) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async move {
        let nodes: Vec<SimEnv> = (0..3)
            .map(|i| env.create_node(format!("n{i}")).build())
            .collect();
        let eps: Vec<_> = nodes
            .iter()
            .map(|n| Arc::new(n.network().endpoint::<u64>()))
            .collect();
        let mut done = Vec::new();
        for i in 0..3 {
            let ep = eps[i].clone();
            let next = nodes[(i + 1) % 3].node();
            done.push(nodes[i].spawn(async move {
                while let Some((_, m)) = ep.recv().await {
                    if m >= ROUNDS * 3 {
                        break;
                    }
                    ep.send(next, m + 1);
                }
            }));
        }
        eps[2].send(nodes[0].node(), 0);
        let first = done.remove(0);
        // Under packet loss the ring may stop; bound the run.
        let _ = env.timeout(Duration::from_secs(5), first).await;
    })
}

fn ring_faults() -> Vec<FaultSpec> {
    vec![
        FaultSpec::new(FaultKind::PacketLoss, 0.01),
        FaultSpec::new(FaultKind::NetworkDelay, 0.05),
        FaultSpec::new(FaultKind::MessageDuplicate, 0.02),
    ]
}

// ---- workload 3: the actor lifecycle DST suite ------------------------------------------

fn lifecycle_test() -> &'static kelpie::harness::DstTest {
    kelpie::harness::registered()
        .into_iter()
        .find(|t| t.name == "lifecycle_loses_and_duplicates_nothing")
        .expect("the lifecycle suite is registered")
}

fn lifecycle(env: SimEnv) -> Pin<Box<dyn Future<Output = ()>>> {
    let run = (lifecycle_test().run)(env);
    Box::pin(async move {
        let _ = run.await;
    })
}

// ---- measuring ---------------------------------------------------------------------------

fn kelpie_run(seed: u64, body: Body, faults: &[FaultSpec]) -> kelpie::RunReport<()> {
    Simulation::new(SimConfig::with_seed(seed))
        .with_faults(faults.iter().cloned())
        .run(body)
        .expect("benchmark workloads do not fail")
}

/// One variant's figures: seeds/s, its time per seed relative to the first variant (the
/// median over rounds of the ratio within each round), and the mean peak heap per seed.
struct Figures {
    rate: f64,
    ratio: f64,
    heap: f64,
}

/// Runs each variant over `seeds` seeds, interleaved in rounds of 25 seeds so that machine
/// noise hits all of them alike; ratios are paired within a round, and their median is
/// reported. Heap is measured in a separate, shorter pass (counting costs time).
fn measure(seeds: u64, variants: &[&dyn Fn(u64)]) -> Vec<Figures> {
    let mut spent = vec![Duration::ZERO; variants.len()];
    let mut ratios = vec![Vec::new(); variants.len()];
    let mut start = 0;
    while start < seeds {
        let end = (start + 25).min(seeds);
        let round: Vec<Duration> = variants
            .iter()
            .map(|f| {
                let t = Instant::now();
                (start..end).for_each(f);
                t.elapsed()
            })
            .collect();
        for (v, d) in round.iter().enumerate() {
            spent[v] += *d;
            ratios[v].push(d.as_secs_f64() / round[0].as_secs_f64());
        }
        start = end;
    }
    let mem_seeds = seeds.min(50);
    COUNTING.store(true, Ordering::Relaxed);
    let heap: Vec<f64> = variants
        .iter()
        .map(|f| {
            let mut total = 0isize;
            for seed in 0..mem_seeds {
                let base = LIVE.load(Ordering::Relaxed);
                PEAK.store(base, Ordering::Relaxed);
                f(seed);
                total += PEAK.load(Ordering::Relaxed) - base;
            }
            total as f64 / mem_seeds as f64
        })
        .collect();
    COUNTING.store(false, Ordering::Relaxed);
    spent
        .iter()
        .zip(ratios)
        .zip(heap)
        .map(|((d, mut r), heap)| {
            r.sort_by(f64::total_cmp);
            Figures {
                rate: seeds as f64 / d.as_secs_f64(),
                ratio: r[r.len() / 2],
                heap,
            }
        })
        .collect()
}

fn row(name: &str, f: &Figures, show_ratio: bool) {
    let ratio = if show_ratio {
        format!("{:>6.2}x", f.ratio)
    } else {
        String::new()
    };
    println!(
        "  {name:<34} {:>9.0} seeds/s {ratio:>8}   {:>7.1} KiB/seed",
        f.rate,
        f.heap / 1024.0
    );
}

/// Seeds/s running `n` seeds on one thread and on two (alternately three times each; the
/// best of each, since other load on the machine only ever slows a measurement down).
fn scaling(f: &(dyn Fn(u64) + Sync), n: u64) -> (f64, f64) {
    let (mut one, mut two) = (0f64, 0f64);
    for _ in 0..3 {
        let t = Instant::now();
        (0..n).for_each(f);
        one = one.max(n as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::thread::scope(|scope| {
            for w in 0..2 {
                scope.spawn(move || (w..n).step_by(2).for_each(f));
            }
        });
        two = two.max(n as f64 / t.elapsed().as_secs_f64());
    }
    (one, two)
}

/// `bench --only VARIANT N`: runs one variant for N seeds and nothing else, for counting
/// instructions with `valgrind --tool=callgrind` (repeatable, unlike wall-clock time here).
fn only(variant: &str, seeds: u64) {
    for s in 0..seeds {
        match variant {
            "empty-raw" => empty_raw(s),
            "empty" => drop(kelpie_run(s, empty, &[])),
            "toy-raw" => toy_raw(s),
            "toy" => drop(kelpie_run(s, toy, &[])),
            "toy-faults" => drop(kelpie_run(s, toy, &toy_faults())),
            "ring-raw" => ring_raw(s),
            "ring" => drop(kelpie_run(s, ring, &[])),
            "ring-faults" => drop(kelpie_run(s, ring, &ring_faults())),
            "sleeps-raw" => equal_raw(s, false),
            "sleeps" => drop(kelpie_run(s, sleeps, &[])),
            "writes-raw" => equal_raw(s, true),
            "writes" => drop(kelpie_run(s, writes, &[])),
            "writes-faults" => drop(kelpie_run(s, writes, &write_faults())),
            // What one `dst_harness` trial of the lifecycle suite runs, as a library loop (the
            // harness's own cost is its instructions over this variant's).
            "lifecycle-faults" => drop(kelpie_run(s, lifecycle, &(lifecycle_test().faults)())),
            other => {
                eprintln!("error: unknown variant {other} (empty-raw, empty, toy-raw, toy, toy-faults, ring-raw, ring, ring-faults, sleeps-raw, sleeps, writes-raw, writes, writes-faults, lifecycle-faults)");
                std::process::exit(2);
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--only") {
        let seeds = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(200);
        return only(args.get(1).map_or("", String::as_str), seeds);
    }
    let seeds: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 400,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("error: expected a positive number of seeds");
            std::process::exit(2);
        }
    };
    println!("kelpie bench: {seeds} seeds per measurement, fresh OS thread per seed");
    println!(
        "(ratio = time per seed relative to the raw madsim loop, paired within rounds of 25 \
         seeds, median over rounds; lower is better)\n"
    );
    // Warm-up.
    toy_raw(0);
    kelpie_run(0, toy, &[]);

    println!("0. an empty body: the per-seed setup and teardown alone");
    let r = measure(seeds, &[&empty_raw, &|s| drop(kelpie_run(s, empty, &[]))]);
    row("raw madsim loop", &r[0], false);
    row("kelpie", &r[1], true);

    println!("\n1. ten tasks x five sleeps, one write each");
    let r = measure(
        seeds,
        &[&toy_raw, &|s| drop(kelpie_run(s, toy, &[])), &|s| {
            drop(kelpie_run(s, toy, &toy_faults()))
        }],
    );
    row("raw madsim loop", &r[0], false);
    row("kelpie, no faults", &r[1], true);
    row("kelpie, 3 faults + trace", &r[2], true);

    println!(
        "\n1e. equal work: ten tasks x ten sleeps; then a write per sleep (raw: a BTreeMap insert)"
    );
    let r = measure(
        seeds,
        &[&|s| equal_raw(s, false), &|s| {
            drop(kelpie_run(s, sleeps, &[]))
        }],
    );
    row("raw madsim loop, sleeps", &r[0], false);
    row("kelpie, sleeps", &r[1], true);
    let r = measure(
        seeds,
        &[
            &|s| equal_raw(s, true),
            &|s| drop(kelpie_run(s, writes, &[])),
            &|s| drop(kelpie_run(s, writes, &write_faults())),
        ],
    );
    row("raw madsim loop, sleeps + writes", &r[0], false);
    row("kelpie, sleeps + writes", &r[1], true);
    row("kelpie, + write fail, latency", &r[2], true);

    println!("\n2. three nodes passing a message round a ring {ROUNDS} times");
    let r = measure(
        seeds,
        &[&ring_raw, &|s| drop(kelpie_run(s, ring, &[])), &|s| {
            drop(kelpie_run(s, ring, &ring_faults()))
        }],
    );
    row("raw madsim loop", &r[0], false);
    row("kelpie, no faults", &r[1], true);
    row("kelpie, 3 faults + trace", &r[2], true);

    println!("\n3. the actor lifecycle DST suite (no raw equivalent: it needs kelpie's storage)");
    let declared = (lifecycle_test().faults)();
    let r = measure(
        seeds / 4,
        &[&|s| drop(kelpie_run(s, lifecycle, &[])), &|s| {
            drop(kelpie_run(s, lifecycle, &declared))
        }],
    );
    row("kelpie, no faults", &r[0], false);
    row(
        &format!("kelpie, its {} declared faults", declared.len()),
        &r[1],
        false,
    );
    println!(
        "  (time per seed with faults / without: {:.2}x)",
        r[1].ratio
    );

    println!("\n4. determinism check (two runs, full traces, compared) vs one run, workload 1 with faults");
    let check = |s: u64| {
        Simulation::new(SimConfig::with_seed(s))
            .with_faults(toy_faults())
            .check_determinism(toy)
            .expect("deterministic");
    };
    let r = measure(
        seeds,
        &[&|s| drop(kelpie_run(s, toy, &toy_faults())), &check],
    );
    println!(
        "  one run {:.0} seeds/s, checked {:.0} seeds/s: the check costs {:.2}x a run",
        r[0].rate, r[1].rate, r[1].ratio
    );

    println!("\n5. scaling: seeds/s on 2 worker threads vs 1 (each worker runs its seeds in turn)");
    let toy_kelpie = |s: u64| drop(kelpie_run(s, toy, &[]));
    let life = |s: u64| drop(kelpie_run(s, lifecycle, &declared));
    for (name, f, n) in [
        (
            "raw madsim loop, workload 1",
            &toy_raw as &(dyn Fn(u64) + Sync),
            seeds * 2,
        ),
        ("kelpie, workload 1", &toy_kelpie, seeds * 2),
        ("kelpie, workload 3 with faults", &life, seeds / 4),
    ] {
        let (one, two) = scaling(f, n);
        println!(
            "  {name:<34} 1 thread {one:>7.0}, 2 threads {two:>7.0}: {:.2}x",
            two / one
        );
    }

    println!("\n6. time compression: ten tasks each sleeping 1 s a thousand times");
    let t = Instant::now();
    let mut config = SimConfig::with_seed(1);
    config.max_time = Duration::from_secs(2000);
    let report = Simulation::new(config)
        .run(|env| async move {
            let hs: Vec<_> = (0..10)
                .map(|_| {
                    let e = env.clone();
                    env.spawn(async move {
                        for _ in 0..1000 {
                            e.sleep(Duration::from_secs(1)).await;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
        })
        .unwrap();
    let wall = t.elapsed();
    println!(
        "  {:.0} s of virtual time in {:.3} s of wall time: {:.0}x",
        report.virtual_time.as_secs_f64(),
        wall.as_secs_f64(),
        report.virtual_time.as_secs_f64() / wall.as_secs_f64()
    );
}
