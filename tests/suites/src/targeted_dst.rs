//! Targeted interleavings: races that random faults reach in one seed of hundreds or
//! thousands, made routine with fault points (`SimEnv::arm_point`, reached by kelpie-actors
//! through `Platform::fault_point`). Each scenario drives the real runtime into one race on
//! every seed (the seed varies the timings), and the cluster checker judges it.
//!
//! | scenario | fault point | the race |
//! |---|---|---|
//! | [`a_message_queued_behind_a_paused_holder_does_not_act`] | `activation.handle` | a message waits behind a slow one while its holder is paused past its lease and another node takes over |
//! | [`a_release_racing_a_takeover_leaves_the_new_lease`] | `lease.release` | a holder paused while releasing wakes after another node took the actor over |
//! | [`a_failed_release_still_lets_the_actor_move`] | `lease.release` | the first release attempts fail (the store refuses), the release retries |

use std::time::Duration;

use kelpie::points::PointAction;
use kelpie::SimEnv;
use kelpie_actors::{ActorError, ActorId, RuntimeConfig};

use crate::support::cluster::{self as support, Cluster};
use crate::support::counter::{
    cluster_of, runtime_config, Counter, CounterActor, MemoryCounter, Op, Runtime,
};

/// Sends `op` for `actor` through node `node`; `None` if the node is down or did not answer
/// within 300 ms.
async fn invoke<A: CounterActor>(
    cluster: &Cluster<Runtime<A>>,
    node: &str,
    actor: &ActorId,
    op: Op,
) -> Option<Result<u64, ActorError>> {
    let rt = cluster.services().get(node)?;
    let a = actor.clone();
    let call = support::run_on(node, async move { rt.invoke(&a, op).await });
    cluster
        .env
        .timeout(Duration::from_millis(300), call)
        .await
        .ok()
        .flatten()
}

/// Sends `op` through `node` every 10–30 ms until it succeeds or `within` passes.
async fn until_ok<A: CounterActor>(
    cluster: &Cluster<Runtime<A>>,
    node: &str,
    actor: &ActorId,
    op: Op,
    within: Duration,
) -> bool {
    let env = &cluster.env;
    let deadline = env.elapsed() + within;
    while env.elapsed() < deadline {
        if let Some(Ok(_)) = invoke(cluster, node, actor, op).await {
            return true;
        }
        env.sleep(Duration::from_millis(env.rng().gen_range(10..30)))
            .await;
    }
    false
}

/// The verdict of a scenario: no invariant violated (with the actor's events if one was).
fn verdict<A: CounterActor>(cluster: &Cluster<Runtime<A>>) -> Result<(), String> {
    match cluster.checker.first_violation() {
        Some(v) => {
            let mut names: Vec<&str> = cluster
                .checker
                .violations()
                .iter()
                .map(|v| v.invariant())
                .collect();
            names.dedup();
            Err(format!(
                "{}\n  invariants violated in this run: {}",
                cluster.checker.explain(&v),
                names.join(", ")
            ))
        }
        None => Ok(()),
    }
}

/// n2 runs the actor; a message on n2 is held at `activation.handle` (after the runtime
/// decided it may act) while a second one queues behind it; n2 is then paused for longer
/// than a lease while clients on n3 take the actor over. When n2 wakes, the queued message
/// must re-check its instance's lease and refuse: its lease ran out and n3 holds a newer one.
async fn paused_holder(env: SimEnv, config: RuntimeConfig) -> Result<(), String> {
    let cluster = cluster_of::<MemoryCounter>(&env, 2, config);
    let actor = ActorId::new("ns", "a0").unwrap();
    let n2 = cluster.nodes[0].node();
    if !until_ok(&cluster, "n2", &actor, Op::Add, Duration::from_secs(2)).await {
        return Err("n2 never activated the actor".into());
    }
    let rng = env.rng();
    let pause = Duration::from_millis(rng.gen_range(800..1500));
    // The first message sits in the runtime until after n2 wakes.
    env.arm_point(
        "activation.handle",
        Some(n2),
        PointAction::Delay(pause + Duration::from_millis(rng.gen_range(10..200))),
    );
    let first = {
        let c = cluster.services().get("n2").unwrap();
        let a = actor.clone();
        support::spawn_on("n2", async move { c.invoke(&a, Op::Add).await })
    };
    env.sleep(Duration::from_millis(rng.gen_range(1..5))).await;
    let second = {
        let c = cluster.services().get("n2").unwrap();
        let a = actor.clone();
        support::spawn_on("n2", async move { c.invoke(&a, Op::Add).await })
    };
    env.sleep(Duration::from_millis(rng.gen_range(1..5))).await;
    env.pause(n2);
    let waker = {
        let env = env.clone();
        env.clone().spawn(async move {
            env.sleep(pause).await;
            env.resume(n2);
        })
    };
    // Meanwhile clients on n3 wait the lease out and take the actor over, then keep using it
    // (so that n3 still holds it when n2 wakes, instead of releasing it idle).
    let taken = until_ok(&cluster, "n3", &actor, Op::Add, pause).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keeper = {
        let (services, a, stop, env2) =
            (cluster.services(), actor.clone(), stop.clone(), env.clone());
        env.spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(rt) = services.get("n3") {
                    let a = a.clone();
                    let _ =
                        support::run_on("n3", async move { rt.invoke(&a, Op::Get).await }).await;
                }
                env2.sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let _ = waker.await;
    let (first, second) = (first.await, second.await);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = keeper.await;
    let refused = matches!(second, Ok(Err(_)));
    env.trace(format!(
        "paused holder: n3 took over {taken}, first {first:?}, second {second:?}"
    ));
    // Keep both nodes busy a little longer, so that any instance still acting shows.
    for _ in 0..10 {
        let _ = invoke(&cluster, "n2", &actor, Op::Get).await;
        let _ = invoke(&cluster, "n3", &actor, Op::Get).await;
    }
    cluster.checker.check_now();
    verdict(&cluster)?;
    kelpie::sometimes!(taken, "n3 took the actor over while n2 was paused");
    kelpie::sometimes!(refused, "the queued message was refused after the pause");
    Ok(())
}

/// A message queued behind a slow one on a holder paused past its lease does not act once
/// the holder wakes (the runtime re-checks the lease when the message's turn comes).
#[kelpie::dst_test(seeds = 0..20)]
async fn a_message_queued_behind_a_paused_holder_does_not_act(env: SimEnv) -> Result<(), String> {
    paused_holder(env, runtime_config()).await
}

/// Canary for a checker that believes the system under test: the runtime decides whether a
/// message may act when it arrives, not when its turn comes. The queued message runs on n2
/// after its lease ran out and n3 took over. SingleActivation, which counts n2's instance only
/// until the validity n2 reported, sees one instance; LeaseBoundActivity, which judges from
/// the grants and true time, names the breach.
#[kelpie::dst_test(seeds = 0..20, canary)]
async fn canary_validity_checked_on_arrival_acts_after_the_lease(
    env: SimEnv,
) -> Result<(), String> {
    let mut config = runtime_config();
    config.lease.bugs.validity_checked_on_arrival = true;
    let cluster_result = paused_holder(env, config).await;
    match cluster_result {
        Err(e) if e.starts_with("LeaseBoundActivity") => Err(e),
        // Another failure is not this checker finding the bug.
        _ => Ok(()),
    }
}

/// n2 runs the actor and deactivates it; its release is held at `lease.release` (after it
/// stopped trusting the lease, before the record is written) by a pause of n2 longer than a
/// lease. Meanwhile n3 takes the actor over. When n2 wakes its release must leave n3's lease
/// alone, so that n4 stays refused while n3 holds the actor.
async fn release_race(env: SimEnv, config: RuntimeConfig) -> Result<(), String> {
    let cluster = cluster_of::<Counter>(&env, 3, config);
    let actor = ActorId::new("ns", "a0").unwrap();
    let n2 = cluster.nodes[0].node();
    if !until_ok(&cluster, "n2", &actor, Op::Add, Duration::from_secs(2)).await {
        return Err("n2 never activated the actor".into());
    }
    let rng = env.rng();
    let pause = Duration::from_millis(rng.gen_range(800..1500));
    env.arm_point("lease.release", Some(n2), PointAction::Pause(pause));
    let release = {
        let c = cluster.services().get("n2").unwrap();
        let a = actor.clone();
        support::spawn_on("n2", async move { c.deactivate(&a).await })
    };
    let taken = until_ok(&cluster, "n3", &actor, Op::Add, pause).await;
    let released = release.await;
    // After n2's release finished: n3 keeps working, n4 asks again and again.
    let mut n4_ok = 0;
    for _ in 0..20 {
        let _ = invoke(&cluster, "n3", &actor, Op::Add).await;
        if let Some(Ok(_)) = invoke(&cluster, "n4", &actor, Op::Add).await {
            n4_ok += 1;
        }
        env.sleep(Duration::from_millis(rng.gen_range(1..10))).await;
    }
    cluster.checker.check_now();
    env.trace(format!(
        "release race: n3 took over {taken}, n2's deactivation {released:?}, n4 served {n4_ok}"
    ));
    verdict(&cluster)?;
    kelpie::sometimes!(
        taken,
        "n3 took the actor over while n2's release was paused"
    );
    Ok(())
}

/// A release that wakes after a takeover leaves the new holder's lease in place.
#[kelpie::dst_test(seeds = 0..20)]
async fn a_release_racing_a_takeover_leaves_the_new_lease(env: SimEnv) -> Result<(), String> {
    release_race(env, runtime_config()).await
}

/// Canary for a race found by luck: a release that marks the record released without
/// checking it is still its own. Paused past its lease, n2 releases n3's lease, and n4 takes
/// the actor at once while n3 still runs it.
#[kelpie::dst_test(seeds = 0..20, canary)]
async fn canary_blind_release_frees_the_successors_lease(env: SimEnv) -> Result<(), String> {
    let mut config = runtime_config();
    config.lease.bugs.release_skips_holder_check = true;
    match release_race(env, config).await {
        Err(e)
            if ["SingleActivation", "LeaseUniqueness", "LeaseBoundActivity"]
                .iter()
                .any(|name| e.starts_with(name)) =>
        {
            Err(e)
        }
        _ => Ok(()),
    }
}

/// The release of a deactivated actor fails at `lease.release` one to three times (the store
/// refuses); the release retries, so another node takes the actor at once instead of after
/// the lease runs out.
#[kelpie::dst_test(seeds = 0..10)]
async fn a_failed_release_still_lets_the_actor_move(env: SimEnv) -> Result<(), String> {
    let cluster = cluster_of::<Counter>(&env, 2, runtime_config());
    let actor = ActorId::new("ns", "a0").unwrap();
    if !until_ok(&cluster, "n2", &actor, Op::Add, Duration::from_secs(2)).await {
        return Err("n2 never activated the actor".into());
    }
    let failures = env.rng().gen_range(1..4) as u32;
    env.arm_point_times(
        "lease.release",
        Some(cluster.nodes[0].node()),
        PointAction::Fail,
        failures,
        0,
    );
    let c = cluster.services().get("n2").unwrap();
    let a = actor.clone();
    let _ = support::run_on("n2", async move { c.deactivate(&a).await }).await;
    let fired = env.point_stats("lease.release").fired;
    if fired != u64::from(failures) {
        return Err(format!(
            "lease.release failed {fired} times, armed for {failures}"
        ));
    }
    // Well within the takeover wait (550 ms): only a completed release lets n3 in this fast.
    let started = env.elapsed();
    if !until_ok(&cluster, "n3", &actor, Op::Get, Duration::from_millis(200)).await {
        return Err(format!(
            "n3 could not take the actor within 200 ms after n2 released it ({failures} failed \
             release attempts first)"
        ));
    }
    env.trace(format!(
        "moved after {:?}",
        env.elapsed().saturating_sub(started)
    ));
    verdict(&cluster)
}
