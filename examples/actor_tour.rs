//! A runnable tour of the actor runtime under deterministic simulation.
//!
//! Four nodes run kelpie-actors' real `LeaseManager` against a database node whose disk fails
//! writes and crashes; node clocks are skewed; a `ClusterChecker` checks LeaseUniqueness and
//! fencing on every lease event. This is the suite `tests/suites/src/lease_dst.rs` registers, run here seed
//! by seed: first the correct runtime, then the same runtime with a planted bug (a lease that
//! ignores clock skew), which the checker catches; the failing seed replays exactly.
//!
//! ```text
//! cargo run --example actor_tour               # both runs, seeds 0..16
//! cargo run --example actor_tour -- --seed 0   # replay one seed of the buggy runtime
//! ```

use std::process::ExitCode;

use kelpie::harness::DstTest;
use kelpie::{SimConfig, Simulation};

// The repo's suites (tests/suites), the lease suite among them, registered with the harness.
use kelpie_suites as _;

fn test(name: &str) -> &'static DstTest {
    kelpie::harness::registered()
        .into_iter()
        .find(|t| t.name == name)
        .expect("the lease suite registers this test")
}

/// Runs one seed of `test`; `Ok` with the trace hash, or the failure's text.
fn run(test: &'static DstTest, seed: u64) -> (u64, Result<(), String>) {
    let sim = Simulation::new(SimConfig::with_seed(seed)).with_faults((test.faults)());
    match sim.run(test.run) {
        Ok(report) => (report.trace.hash, report.output),
        Err(e) => (
            e.failed_run().map_or(0, |r| r.trace.hash),
            Err(e.to_string()),
        ),
    }
}

fn main() -> ExitCode {
    let correct = test("leases_stay_unique_under_basic_faults");
    let buggy = test("canary_lease_ignoring_skew_breaks_uniqueness");
    let mut args = std::env::args().skip(1);
    if let (Some(flag), Some(seed)) = (args.next(), args.next()) {
        let Ok(seed) = seed.parse::<u64>() else {
            eprintln!("error: {flag} {seed}: expected --seed N with N an unsigned integer");
            return ExitCode::from(2);
        };
        let (hash, outcome) = run(buggy, seed);
        println!("buggy runtime, seed {seed}: trace {hash:016x}");
        match outcome {
            Ok(()) => println!("passed"),
            Err(e) => println!("{e}"),
        }
        return ExitCode::SUCCESS;
    }
    let plan = |t: &DstTest| -> String {
        let faults: Vec<String> = (t.faults)().iter().map(ToString::to_string).collect();
        faults.join(", ")
    };
    println!("the correct runtime, faults [{}]:", plan(correct));
    let mut all_ok = true;
    for seed in 0..16 {
        let (hash, outcome) = run(correct, seed);
        all_ok &= outcome.is_ok();
        let verdict = outcome
            .err()
            .map_or("ok".to_string(), |e| format!("FAILED: {e}"));
        println!("  seed {seed:>2}  trace {hash:016x}  {verdict}");
    }
    println!(
        "\nthe runtime with a planted bug (a lease that ignores clock skew), faults [{}]:",
        plan(buggy)
    );
    let mut found = None;
    for seed in 0..16 {
        let (hash, outcome) = run(buggy, seed);
        match outcome {
            Ok(()) => println!("  seed {seed:>2}  trace {hash:016x}  ok"),
            Err(e) => {
                let first = e.lines().next().unwrap_or_default().to_string();
                println!("  seed {seed:>2}  trace {hash:016x}  FAILED: {first}");
                println!("    reproduce: cargo run --example actor_tour -- --seed {seed}");
                found.get_or_insert(seed);
            }
        }
    }
    match (all_ok, found) {
        (true, Some(seed)) => {
            println!("\nthe checker caught the planted bug first at seed {seed}; the correct runtime passed every seed");
            ExitCode::SUCCESS
        }
        (false, _) => {
            println!("\nthe correct runtime failed a seed");
            ExitCode::FAILURE
        }
        (true, None) => {
            println!("\nthe planted bug was not found in 16 seeds");
            ExitCode::FAILURE
        }
    }
}
