//! Overhead of the kelpie simulation against a raw madsim loop on the same workload, measured
//! side by side in one run. Build in release for meaningful figures:
//!
//! ```text
//! cargo run --release --example overhead -- 2000
//! ```
//!
//! Both sides spawn a fresh OS thread and a fresh madsim runtime per seed (determinism needs
//! that); the workload is ten tasks that each sleep and yield a few times.

use std::time::{Duration, Instant};

use kelpie::{FaultKind, FaultSpec, SimConfig, Simulation};

const TASKS: u64 = 10;
const STEPS: u64 = 5;

fn raw(seed: u64) {
    std::thread::spawn(move || {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(async {
            let handles: Vec<_> = (0..TASKS)
                .map(|t| {
                    madsim::task::spawn(async move {
                        for i in 0..STEPS {
                            madsim::time::sleep(Duration::from_micros(1 + (t * 7 + i * 13) % 50))
                                .await;
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

fn kelpie_run(seed: u64, faults: &[FaultSpec]) {
    Simulation::new(SimConfig::with_seed(seed))
        .with_faults(faults.iter().cloned())
        .run(|env| async move {
            let handles: Vec<_> = (0..TASKS)
                .map(|t| {
                    let env2 = env.clone();
                    env.spawn(async move {
                        for i in 0..STEPS {
                            env2.sleep(Duration::from_micros(1 + (t * 7 + i * 13) % 50))
                                .await;
                            if i == 2 {
                                let _ = env2.storage().set(format!("t{t}"), [i as u8]).await;
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.unwrap();
            }
        })
        .unwrap();
}

/// Runs the three variants interleaved in rounds of 50 seeds, so that drift on a noisy machine
/// affects all of them alike; returns seeds/s of each.
fn measure(seeds: u64, variants: &[&dyn Fn(u64)]) -> Vec<f64> {
    let mut spent = vec![Duration::ZERO; variants.len()];
    let mut start_seed = 0;
    while start_seed < seeds {
        let end = (start_seed + 50).min(seeds);
        for (v, f) in variants.iter().enumerate() {
            let t = Instant::now();
            for seed in start_seed..end {
                f(seed);
            }
            spent[v] += t.elapsed();
        }
        start_seed = end;
    }
    spent
        .iter()
        .map(|d| seeds as f64 / d.as_secs_f64())
        .collect()
}

fn main() {
    let seeds: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 500,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("error: expected a positive number of seeds");
            std::process::exit(2);
        }
    };
    let faults = [
        FaultSpec::new(FaultKind::StorageWriteFail, 0.02),
        FaultSpec::new(FaultKind::StorageLatency, 0.1),
        FaultSpec::new(FaultKind::NodeCrash, 0.01),
    ];
    println!("workload: {TASKS} tasks x {STEPS} sleeps, {seeds} seeds, fresh thread per seed");
    // Warm up both paths once.
    raw(0);
    kelpie_run(0, &[]);
    let names = [
        "raw madsim Runtime loop",
        "kelpie Simulation, no faults",
        "kelpie Simulation, 3 faults + trace",
    ];
    let rates = measure(
        seeds,
        &[&raw, &|s| kelpie_run(s, &[]), &|s| kelpie_run(s, &faults)],
    );
    for (name, rate) in names.iter().zip(&rates) {
        println!("{name:<38} {rate:>10.0} seeds/s");
    }
    println!(
        "time per seed vs raw: no faults {:.2}x, with faults {:.2}x",
        rates[0] / rates[1],
        rates[0] / rates[2]
    );
}
