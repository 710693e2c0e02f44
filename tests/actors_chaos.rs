//! Chaos tests of kelpie-actors: the lease protocol on the wall clock and real tokio, with the
//! production platform (`TokioPlatform`). Run by the kelpie runner: `cargo test --test
//! actors_chaos`; each test is one trial named `chaos::<test>`, not a seed.
//!
//! What a DST suite cannot show is here: that the code works with real timers, a real clock and
//! real OS threads, outside the simulation. What a chaos test cannot show (every interleaving, a
//! replayable failure) is the DST suites' job (`tests/suites/src/lease_dst.rs`).

use std::time::{Duration, Instant};

use kelpie_actors::{ActorId, LeaseConfig, LeaseManager, MemoryKv, TokioPlatform};

fn config() -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_millis(200),
        renew_interval: Duration::from_millis(50),
        max_clock_skew: Duration::from_millis(10),
        safety_margin: Duration::from_millis(20),
        ..LeaseConfig::default()
    }
}

/// The runner's promise, checked where it matters: this body runs outside any simulation, on the
/// wall clock, with real threads, although the build has `--cfg madsim`.
#[kelpie::chaos_test(timeout = "20s")]
async fn chaos_tests_run_on_the_wall_clock_and_real_threads() -> Result<(), String> {
    let wall = std::time::SystemTime::now();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(40)).await;
    let slept = start.elapsed();
    if slept < Duration::from_millis(40) {
        return Err(format!("a 40 ms real sleep took {slept:?} of the clock"));
    }
    let since = wall.elapsed().map_err(|e| e.to_string())?;
    if since < Duration::from_millis(40) {
        return Err(format!("the system clock advanced only {since:?}"));
    }
    // Inside a madsim simulation this would panic ("attempt to spawn a system thread").
    let thread = std::thread::spawn(|| 7)
        .join()
        .map_err(|_| "thread panicked")?;
    if thread != 7 {
        return Err("the OS thread returned the wrong value".to_string());
    }
    Ok(())
}

/// A node that stops renewing (it crashed) loses its lease to another node after the take-over
/// wait, measured on the wall clock, and the new holder's token is higher.
#[kelpie::chaos_test(timeout = "20s")]
async fn a_crashed_holders_lease_is_taken_over_after_the_wait() -> Result<(), String> {
    let kv = MemoryKv::new();
    let id = ActorId::new("chaos", "actor").map_err(|e| e.to_string())?;
    let a = LeaseManager::new(TokioPlatform::new("a", kv.clone()), config())
        .map_err(|e| e.to_string())?;
    let b = LeaseManager::new(TokioPlatform::new("b", kv.clone()), config())
        .map_err(|e| e.to_string())?;
    let first = a.acquire(&id).await.map_err(|e| e.to_string())?;
    if b.acquire(&id).await.is_ok() {
        return Err("b acquired a lease a still holds".to_string());
    }
    // `a` crashes: it never renews again.
    drop(a);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(5);
    let second = loop {
        match b.acquire(&id).await {
            Ok(lease) => break lease,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(format!("b never took the lease over: {e}")),
        }
    };
    let waited = start.elapsed();
    if second.token() <= first.token() {
        return Err(format!(
            "the new holder's token {} is not above the old {}",
            second.token(),
            first.token()
        ));
    }
    if waited < Duration::from_millis(100) {
        return Err(format!(
            "taken over after only {waited:?}, before the lease could expire"
        ));
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    kelpie::harness::main()
}
