//! Safety → heal → liveness: after faults stop, the system must recover within a budget. A
//! planted liveness bug (a node that gives up rejoining after a partition) is caught and named.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie_sim::{FaultKind, FaultSpec, SimConfig, SimEnv, Simulation};

#[derive(Debug, Clone, Hash)]
enum Msg {
    Heartbeat,
    Ack,
}

/// Each member heartbeats to the supervisor every 20 ms and waits for an ack. The buggy member
/// gives up for good after three unanswered heartbeats.
async fn member(env: SimEnv, give_up: bool) {
    let ep = env.network().endpoint::<Msg>();
    let mut missed = 0;
    loop {
        ep.send(kelpie_sim::NodeId::MAIN, Msg::Heartbeat);
        match env.timeout(Duration::from_millis(20), ep.recv()).await {
            Ok(Some((_, Msg::Ack))) => missed = 0,
            _ => missed += 1,
        }
        if give_up && missed >= 3 {
            return; // BUG: never rejoins
        }
        env.sleep(Duration::from_millis(20)).await;
    }
}

async fn cluster(env: SimEnv, give_up: bool) -> Result<(), String> {
    let last_heard: Arc<Mutex<BTreeMap<kelpie_sim::NodeId, Duration>>> = Arc::default();
    let ep = env.network().endpoint::<Msg>();
    let heard = last_heard.clone();
    let clock = env.clone();
    env.spawn(async move {
        while let Some((from, _)) = ep.recv().await {
            heard.lock().unwrap().insert(from, clock.elapsed());
            ep.send(from, Msg::Ack);
        }
    });
    let members: Vec<SimEnv> = (0..3)
        .map(|i| {
            env.create_node(format!("m{i}"))
                .init(move |env| member(env, give_up))
                .build()
        })
        .collect();
    env.sleep(Duration::from_secs(3)).await; // the fault phase
    let partitions = env.faults().fired(FaultKind::NetworkPartition);
    env.heal_all();
    let ids: Vec<_> = members.iter().map(SimEnv::node).collect();
    env.eventually(
        "every member heartbeats within 100ms",
        Duration::from_secs(2),
        || {
            let heard = last_heard.lock().unwrap().clone();
            let now = env.elapsed();
            let ok = ids.iter().all(|id| {
                heard
                    .get(id)
                    .is_some_and(|t| now - *t < Duration::from_millis(100))
            });
            async move { ok }
        },
    )
    .await
    .map_err(|e| format!("{e} ({partitions} partitions during the fault phase)"))
}

fn run(seed: u64, give_up: bool) -> Result<(), String> {
    Simulation::new(SimConfig::with_seed(seed))
        .with_fault(FaultSpec::new(FaultKind::NetworkPartition, 0.01).with_param("heal_ms", 300))
        .with_fault(FaultSpec::new(FaultKind::NodeCrash, 0.002).with_param("restart_ms", 5_000))
        .run(move |env| cluster(env, give_up))
        .map_err(|e| e.to_string())?
        .output
}

#[test]
fn correct_members_recover_after_heal() {
    for seed in 0..20 {
        run(seed, false).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn a_member_that_never_rejoins_is_caught_by_the_liveness_phase() {
    let failures: Vec<(u64, String)> = (0..20)
        .filter_map(|seed| run(seed, true).err().map(|e| (seed, e)))
        .collect();
    assert!(
        !failures.is_empty(),
        "the planted liveness bug was not caught in 20 seeds"
    );
    for (seed, e) in &failures {
        assert!(
            e.starts_with(
                "liveness: `every member heartbeats within 100ms` did not hold within 2s"
            ),
            "seed {seed}: {e}"
        );
    }
}
