//! Determinism is a property we prove: same seed ⇒ same trace, different seeds ⇒ different
//! traces, a zero-probability fault changes nothing, and a planted nondeterminism is caught with
//! the first divergent event named.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kelpie_sim::{Failure, FaultKind, FaultSpec, SimConfig, SimEnv, SimError, Simulation};

/// A concurrent workload: five tasks sleeping random times and writing to storage, two nodes
/// exchanging messages.
async fn workload(env: SimEnv) -> u64 {
    let mut handles = Vec::new();
    for t in 0..5u64 {
        let env2 = env.clone();
        handles.push(env.spawn(async move {
            for i in 0..4u64 {
                let d = env2.rng().gen_range(1..1_000);
                env2.sleep(Duration::from_micros(d)).await;
                let _ = env2
                    .storage()
                    .set(format!("t{t}/{i}"), i.to_le_bytes())
                    .await;
            }
        }));
    }
    let a = env.create_node("a").build();
    let b = env.create_node("b").build();
    let rx = b.network().endpoint::<u64>();
    let tx = a.network().endpoint::<u64>();
    for i in 0..5 {
        tx.send(b.node(), i);
    }
    let mut got = 0;
    for _ in 0..5 {
        got += env
            .timeout(Duration::from_secs(1), rx.recv())
            .await
            .ok()
            .flatten()
            .map_or(0, |m| m.1);
    }
    for h in handles {
        h.await.unwrap();
    }
    got
}

fn hash_of(seed: u64, faults: &[FaultSpec]) -> u64 {
    Simulation::new(SimConfig::with_seed(seed))
        .with_faults(faults.iter().cloned())
        .run(workload)
        .unwrap()
        .trace
        .hash
}

#[test]
fn same_seed_same_trace_across_threads_and_order() {
    let seeds: Vec<u64> = (0..20).collect();
    let forward: Vec<u64> = seeds.iter().map(|&s| hash_of(s, &[])).collect();
    // Reverse order, from other threads, concurrently.
    let backward: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let hs: Vec<_> = seeds
            .iter()
            .rev()
            .map(|&s| scope.spawn(move || (s, hash_of(s, &[]))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (s, h) in backward {
        assert_eq!(forward[s as usize], h, "seed {s}");
    }
}

#[test]
fn thousand_seeds_give_distinct_traces() {
    let mut hashes: Vec<u64> = (0..1_000).map(|s| hash_of(s, &[])).collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert!(
        hashes.len() >= 990,
        "only {} distinct traces out of 1000",
        hashes.len()
    );
}

#[test]
fn zero_probability_fault_changes_no_trace() {
    let zero: Vec<FaultSpec> = kelpie_sim::FAULT_TABLE
        .iter()
        .map(|f| match f.kind {
            FaultKind::Custom => FaultSpec::custom("Never", 0.0),
            kind => FaultSpec::new(kind, 0.0),
        })
        .collect();
    for seed in 0..20 {
        assert_eq!(hash_of(seed, &[]), hash_of(seed, &zero), "seed {seed}");
    }
}

#[test]
fn faults_change_the_trace() {
    let faults = [FaultSpec::new(FaultKind::StorageWriteFail, 0.5)];
    let changed = (0..20)
        .filter(|&s| hash_of(s, &[]) != hash_of(s, &faults))
        .count();
    assert!(changed >= 18, "{changed}/20");
}

#[test]
fn determinism_check_passes_a_deterministic_body() {
    let report = Simulation::new(SimConfig::with_seed(5))
        .check_determinism(workload)
        .unwrap();
    assert!(report.trace.len > 20);
}

static PLANTED: AtomicU64 = AtomicU64::new(0);

#[test]
fn determinism_check_catches_a_static_counter_and_names_the_event() {
    let err = Simulation::new(SimConfig::with_seed(1))
        .check_determinism(|env| async move {
            env.storage().set(b"before", b"x").await.unwrap();
            // Planted nondeterminism: state that survives between runs of the same seed.
            let n = PLANTED.fetch_add(1, Ordering::Relaxed);
            env.sleep(Duration::from_millis(10 + n)).await;
            env.storage().set(b"after", b"y").await.unwrap();
        })
        .unwrap_err();
    let SimError::Failed(run) = err else {
        panic!("{err}")
    };
    let Failure::Nondeterministic {
        index,
        first,
        second,
    } = &run.failure
    else {
        panic!("{}", run.failure)
    };
    assert_eq!(
        *index, 1,
        "the write `before` is event 0, the timer is event 1"
    );
    assert!(first.contains("timer fired after 10ms"), "{first}");
    assert!(second.contains("timer fired after 11ms"), "{second}");
}

#[test]
fn different_value_is_a_divergence_even_without_random_draws() {
    static N: AtomicU64 = AtomicU64::new(0);
    let err = Simulation::new(SimConfig::with_seed(2))
        .check_determinism(|env| async move {
            let v = N.fetch_add(1, Ordering::Relaxed);
            env.storage().set(b"k", v.to_le_bytes()).await.unwrap();
        })
        .unwrap_err();
    let run = err.failed_run().unwrap();
    assert!(
        matches!(run.failure, Failure::Nondeterministic { index: 0, .. }),
        "{}",
        run.failure
    );
}
