//! The main job: a small storage service run under faults for many seeds, with a planted bug
//! that the simulation finds and reproduces by seed.
//!
//! A `store` node accepts `Put`s over the simulated network, writes them to its simulated disk
//! and acknowledges them. The planted bug: it acknowledges *before* `sync`, so a crash
//! (`NodeCrash`) between the ack and the next sync loses a write the client was told is safe.
//! Run with `--fixed` and the store syncs before acknowledging: no seed fails.
//!
//! ```text
//! cargo run --example planted_bug                  # seeds 0..200, prints the failing ones
//! cargo run --example planted_bug -- --seed 17     # replay one seed, with its trace
//! cargo run --example planted_bug -- --fixed       # the corrected store: every seed passes
//! ```

use std::process::ExitCode;
use std::time::Duration;

use kelpie::{FaultKind, FaultSpec, NodeStatus, SimConfig, SimEnv, Simulation};

#[derive(Debug, Clone, Hash)]
enum Msg {
    Put { id: u64, key: String, value: u64 },
    Ack { id: u64 },
}

/// The store node's main task (re-run after every restart).
async fn store(env: SimEnv, fixed: bool) {
    let ep = env.network().endpoint::<Msg>();
    let disk = env.storage();
    while let Some((from, msg)) = ep.recv().await {
        let Msg::Put { id, key, value } = msg else {
            continue;
        };
        if disk.set(&key, value.to_le_bytes()).await.is_err() {
            continue; // no ack: the client retries
        }
        if fixed {
            if disk.sync().await.is_err() {
                continue;
            }
            ep.send(from, Msg::Ack { id });
        } else {
            ep.send(from, Msg::Ack { id }); // BUG: acknowledged before it is durable
                                            // Batch syncs every few milliseconds (the optimisation that planted the bug).
            env.sleep(Duration::from_millis(3)).await;
            let _ = disk.sync().await;
        }
    }
}

/// The client: puts 20 keys, each retried until acknowledged; then checks that every
/// acknowledged write survived. Returns the keys lost.
async fn scenario(env: SimEnv, fixed: bool) -> Vec<String> {
    let node = env
        .create_node("store")
        .init(move |env| store(env, fixed))
        .build();
    let ep = env.network().endpoint::<Msg>();
    let mut acked = Vec::new();
    for id in 0..20u64 {
        let key = format!("k{id:02}");
        loop {
            ep.send(
                node.node(),
                Msg::Put {
                    id,
                    key: key.clone(),
                    value: id,
                },
            );
            match env.timeout(Duration::from_millis(50), ep.recv()).await {
                Ok(Some((_, Msg::Ack { id: a }))) if a == id => break,
                _ => continue, // lost, crashed or stale ack: retry
            }
        }
        acked.push((key, id));
        env.sleep(Duration::from_millis(env.rng().gen_range(0..5)))
            .await;
    }
    // Let any crash finish restarting, then read back every acknowledged write.
    while env.node_status(node.node()) != NodeStatus::Up {
        env.sleep(Duration::from_millis(10)).await;
    }
    let mut lost = Vec::new();
    for (key, value) in acked {
        let got = node.storage().get(&key).await.ok().flatten();
        if got != Some(value.to_le_bytes().to_vec()) {
            lost.push(key);
        }
    }
    lost
}

struct Args {
    seeds: std::ops::Range<u64>,
    fixed: bool,
    verbose: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: 0..200,
        fixed: false,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--fixed" => args.fixed = true,
            "--seed" => {
                let v = it.next().ok_or("--seed needs a value")?;
                let s: u64 = v
                    .parse()
                    .map_err(|_| format!("--seed {v}: expected an unsigned integer"))?;
                args.seeds = s..s + 1;
                args.verbose = true;
            }
            "--seeds" => {
                let v = it.next().ok_or("--seeds needs a value")?;
                let (a, b) = v
                    .split_once("..")
                    .ok_or(format!("--seeds {v}: expected a..b"))?;
                let (a, b) = (a.parse::<u64>(), b.parse::<u64>());
                match (a, b) {
                    (Ok(a), Ok(b)) if a < b => args.seeds = a..b,
                    _ => return Err(format!("--seeds {v}: expected a..b with a < b")),
                }
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}` (expected --seed N, --seeds a..b, --fixed)"
                ))
            }
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let faults = [
        FaultSpec::new(FaultKind::NodeCrash, 0.05).with_param("restart_ms", 100),
        FaultSpec::new(FaultKind::PacketLoss, 0.05),
        FaultSpec::new(FaultKind::StorageWriteFail, 0.02),
    ];
    let plan: Vec<String> = faults.iter().map(ToString::to_string).collect();
    println!(
        "planted_bug: {} store, seeds {:?}, faults [{}]",
        if args.fixed { "fixed" } else { "buggy" },
        args.seeds,
        plan.join(", ")
    );
    let mut failing = Vec::new();
    let mut fired_total = 0;
    for seed in args.seeds.clone() {
        let fixed = args.fixed;
        let mut config = SimConfig::with_seed(seed);
        config.trace_tail = 12;
        let report = Simulation::new(config)
            .with_faults(faults.iter().cloned())
            .run(move |env| scenario(env, fixed));
        match report {
            Ok(r) => {
                fired_total += r.faults.total_fired();
                let outcome = if r.output.is_empty() {
                    "ok".to_string()
                } else {
                    failing.push(seed);
                    format!("FAILED: lost acknowledged writes {:?}", r.output)
                };
                println!(
                    "seed {seed:>4}  trace {:016x} ({:>4} events)  {}  [{}]",
                    r.trace.hash, r.trace.len, outcome, r.faults
                );
                if !r.output.is_empty() {
                    if args.verbose {
                        println!("  last trace events:");
                        for e in &r.trace.tail {
                            println!("    {e}");
                        }
                    }
                    let fixed_flag = if args.fixed { " --fixed" } else { "" };
                    println!(
                        "  reproduce: cargo run --example planted_bug -- --seed {seed}{fixed_flag}"
                    );
                }
            }
            Err(e) => {
                failing.push(seed);
                println!("seed {seed:>4}  run failed: {e}");
            }
        }
    }
    let n = args.seeds.end - args.seeds.start;
    println!(
        "{} of {n} seeds failed; {fired_total} faults fired in all",
        failing.len()
    );
    if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("first failing seed: {}", failing[0]);
        ExitCode::FAILURE
    }
}
