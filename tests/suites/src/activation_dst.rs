//! Activation under faults: the real `ActorRuntime` on simulated nodes never runs an actor in
//! two places (checked on every activation, renewal and message as it happens, and every
//! 10 ms), no two nodes ever believe they own one actor (checked on the runtimes' own beliefs,
//! including right after each partition heals), and no acknowledged update is lost.
//!
//! The actor is a counter persisted at `actors/ns/{id}/count` (`support/counter.rs`).

use std::time::Duration;

use kelpie::SimEnv;

use counter::{counter_cluster, judge, run_clients, runtime_config, Operator};

use crate::support::cluster as support;
use crate::support::counter;

/// Basic faults (1–2 %): failing and slow storage, skewed clocks, crashes, pauses.
#[kelpie::dst_test(
    seeds = 0..12,
    faults = [
        StorageWriteFail(0.02),
        StorageLatency(0.02, 20),
        ClockSkew(0.02, 50),
        NodeCrash(0.01, 300),
        NodePause(0.01, 400),
    ]
)]
async fn single_activation_under_basic_faults(env: SimEnv) -> Result<(), String> {
    let cluster = counter_cluster(&env, 3, runtime_config());
    let actors = support::actors(3);
    let (tally, split, _) = run_clients(
        &cluster,
        &actors,
        4,
        4,
        Operator::Deactivate(Duration::from_millis(300)),
    )
    .await;
    judge(&env, &cluster, &tally, split, true).await
}

/// Chaos (20–30 %; node, clock and partition faults per 100 ms tick): failing, slow and
/// crashing storage, node crashes and pauses longer than a lease, skew at the bound,
/// partitions from the store.
#[kelpie::dst_test(
    seeds = 0..12,
    fault_tick = "100ms",
    faults = [
        StorageWriteFail(0.25),
        StorageReadFail(0.2),
        StorageLatency(0.3, 30),
        CrashDuringTransaction(0.2),
        NodeCrash(0.2, 300),
        NodePause(0.2, 800),
        ClockSkew(0.3, 50),
        NetworkPartition(0.2, 600),
    ]
)]
async fn single_activation_under_chaos(env: SimEnv) -> Result<(), String> {
    let cluster = counter_cluster(&env, 3, runtime_config());
    let actors = support::actors(3);
    let (tally, split, _) = run_clients(
        &cluster,
        &actors,
        4,
        6,
        Operator::Deactivate(Duration::from_millis(300)),
    )
    .await;
    judge(&env, &cluster, &tally, split, false).await
}

/// Partitions between nodes and the store: a cut-off holder stops trusting its lease before
/// anyone takes over, so after every heal exactly one node believes it owns each actor.
#[kelpie::dst_test(
    seeds = 0..12,
    faults = [NetworkPartition(0.02, 700), StorageLatency(0.02, 20)]
)]
async fn no_split_brain_after_partitions_heal(env: SimEnv) -> Result<(), String> {
    let cluster = counter_cluster(&env, 3, runtime_config());
    let actors = support::actors(3);
    let (tally, split, heals) = run_clients(
        &cluster,
        &actors,
        4,
        4,
        Operator::Deactivate(Duration::from_millis(300)),
    )
    .await;
    // Somewhere in the seed range a partition healed (the property under test needs one).
    kelpie::sometimes!(heals > 0, "a partition between a node and the store healed");
    judge(&env, &cluster, &tally, split, true).await
}

/// Canary for SingleActivation: activation that fails open — on a storage error while
/// checking the lease it activates anyway — while another node holds the actor.
#[kelpie::dst_test(
    seeds = 0..50,
    canary,
    faults = [StorageReadFail(0.05), StorageLatency(0.05, 20)]
)]
async fn canary_fail_open_activation_breaks_single_activation(env: SimEnv) -> Result<(), String> {
    let mut config = runtime_config();
    config.lease.bugs.activation_skips_lease_check = true;
    let cluster = counter_cluster(&env, 3, config);
    let actors = support::actors(2);
    let _ = run_clients(
        &cluster,
        &actors,
        4,
        3,
        Operator::Deactivate(Duration::from_millis(300)),
    )
    .await;
    match cluster.checker.violation_of("SingleActivation") {
        Some(v) => Err(v.to_string()),
        None => Ok(()),
    }
}

/// Canary for NoSplitBrain: a holder that treats a failed renewal as a success keeps
/// believing it owns its actors while partitioned from the store, after others took over.
#[kelpie::dst_test(
    seeds = 0..50,
    canary,
    faults = [NetworkPartition(0.02, 1500)]
)]
async fn canary_ignored_renewal_failures_split_the_brain(env: SimEnv) -> Result<(), String> {
    let mut config = runtime_config();
    config.lease.bugs.renewal_failure_ignored = true;
    let cluster = counter_cluster(&env, 3, config);
    let actors = support::actors(2);
    let (_, split, _) = run_clients(
        &cluster,
        &actors,
        4,
        3,
        Operator::Deactivate(Duration::from_millis(300)),
    )
    .await;
    match split {
        Some(v) => Err(v.to_string()),
        None => Ok(()),
    }
}
