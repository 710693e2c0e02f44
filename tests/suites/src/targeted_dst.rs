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
//! | [`wal_retries_after_unknown_outcomes_apply_once`] | `wal.append.reply`, `wal.complete.reply` | an append or a complete commits but its reply is lost; the client retries the same idempotency key |
//! | [`failed_renewals_within_the_lease_keep_the_instance`] | `lease.renew` | renewals fail several times in a row, within the lease; the holder must retry in time and keep its instance (and its in-memory state) |
//! | [`a_holder_with_a_late_clock_stops_within_its_lease`] | — (clock offsets, a partition) | a holder cut off from the store with its clock behind by the skew bound, a taker whose clock jumps ahead |
//! | [`a_message_queued_behind_a_revoked_lease_does_not_act`] | `activation.handle` | an operator revokes a holder's lease while a message waits behind a slow one; the holder's renewal finds out before the waiting message starts |
//! | [`a_failed_activation_gives_its_lease_back`] | — (corrupt state) | an activation fails after acquiring the lease; another node must get the actor at once |
//! | [`a_shut_down_node_releases_its_actors_at_once`] | — | a node shuts down; its leases must be released in the store so another node takes over at once |
//! | [`a_message_behind_a_deactivation_reaches_the_one_new_instance`] | `lease.release` | a message waits behind a deactivation; later messages must reach the instance it activated, not a second one |

use std::time::Duration;

use std::collections::BTreeMap;

use kelpie::gen::{Alphabet, IdGen};
use kelpie::points::PointAction;
use kelpie::SimEnv;
use kelpie_actors::{
    ActorError, ActorId, ActorKV, JsonValue, KvError, KvTransaction, RuntimeConfig, SimKv,
    SimPlatform, Wal, WalApply, WalBug, WalConfig, WalEntry,
};

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

/// Sends `op` through `node` every 10–30 ms until it succeeds or `within` passes; the last
/// failure if it never succeeded.
async fn try_until_ok<A: CounterActor>(
    cluster: &Cluster<Runtime<A>>,
    node: &str,
    actor: &ActorId,
    op: Op,
    within: Duration,
) -> Result<(), String> {
    let env = &cluster.env;
    let deadline = env.elapsed() + within;
    let mut last = "no attempt".to_string();
    while env.elapsed() < deadline {
        match invoke(cluster, node, actor, op).await {
            Some(Ok(_)) => return Ok(()),
            Some(Err(e)) => last = e.to_string(),
            None => last = "no answer within 300 ms".to_string(),
        }
        env.sleep(Duration::from_millis(env.rng().gen_range(10..30)))
            .await;
    }
    Err(last)
}

/// Like [`try_until_ok`], whether it succeeded.
async fn until_ok<A: CounterActor>(
    cluster: &Cluster<Runtime<A>>,
    node: &str,
    actor: &ActorId,
    op: Op,
    within: Duration,
) -> bool {
    try_until_ok(cluster, node, actor, op, within).await.is_ok()
}

/// The liveness every scenario starts from: with no fault and no other holder, the first node
/// asked activates a free actor (within 2 s) — named, so that a runtime that can no longer
/// activate anything fails here with its cause rather than by a scenario going quiet.
async fn activates_when_free<A: CounterActor>(
    cluster: &Cluster<Runtime<A>>,
    node: &str,
    actor: &ActorId,
) -> Result<(), String> {
    try_until_ok(cluster, node, actor, Op::Add, Duration::from_secs(2))
        .await
        .map_err(|last| {
            format!(
                "Liveness (activation) violated: {node} could not activate the free actor \
                 {actor} within 2 s without faults; last error: {last}"
            )
        })
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
    activates_when_free(&cluster, "n2", &actor).await?;
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
    activates_when_free(&cluster, "n2", &actor).await?;
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
    activates_when_free(&cluster, "n2", &actor).await?;
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

/// The fencing token in `actor`'s fence record (`actors/{ns}/{id}/fence`), read from the store
/// directly: the fact an instance's reported token is judged against.
async fn fence_in_store<A: CounterActor>(
    cluster: &Cluster<Runtime<A>>,
    actor: &ActorId,
) -> Result<u64, String> {
    let key = actor.key(kelpie_actors::FENCE_SUFFIX);
    let bytes = cluster.kv.get(&key).await.map_err(|e| e.to_string())?;
    let text = bytes
        .map(String::from_utf8)
        .transpose()
        .map_err(|e| e.to_string())?;
    text.map_or(Ok(0), |t| {
        t.parse().map_err(|e| format!("fence {t:?}: {e}"))
    })
}

/// `actor`'s lease record, read from the store directly.
async fn lease_record<A: CounterActor>(
    cluster: &Cluster<Runtime<A>>,
    actor: &ActorId,
) -> Result<Option<kelpie_actors::LeaseRecord>, String> {
    let bytes = cluster
        .kv
        .get(&actor.key(kelpie_actors::LEASE_SUFFIX))
        .await
        .map_err(|e| e.to_string())?;
    bytes
        .map(|b| serde_json::from_slice(&b))
        .transpose()
        .map_err(|e| e.to_string())
}

/// n2 runs an in-memory counter that a client keeps busy; n2's lease renewals fail at
/// `lease.renew` three to five times in a row (the store refuses). A holder retries a failed
/// renewal sooner than its renewal interval, so it renews before its lease runs out and keeps
/// the instance — and the state that lives only in it: the client's acknowledged counts must go
/// up by one each time, with no restart. The tokens the instance and its fenced transactions
/// report must be the actor's fence in the store (2: the actor was activated and released once
/// before).
#[kelpie::dst_test(seeds = 0..10)]
async fn failed_renewals_within_the_lease_keep_the_instance(env: SimEnv) -> Result<(), String> {
    let cluster = cluster_of::<MemoryCounter>(&env, 2, runtime_config());
    let actor = ActorId::new("ns", "a0").unwrap();
    // A first activation, released: the instance under test runs under the second token.
    activates_when_free(&cluster, "n2", &actor).await?;
    let c = cluster.services().get("n2").unwrap();
    let a = actor.clone();
    support::run_on("n2", async move { c.deactivate(&a).await }).await;
    activates_when_free(&cluster, "n2", &actor).await?;
    let first_expiry = lease_record(&cluster, &actor).await?.map(|r| r.expiry_ms);
    let failures = env.rng().gen_range(3..6) as u32;
    env.arm_point_times(
        "lease.renew",
        Some(cluster.nodes[0].node()),
        PointAction::Fail,
        failures,
        0,
    );
    let mut last = match invoke(&cluster, "n2", &actor, Op::Get).await {
        Some(Ok(v)) => v,
        other => {
            return Err(format!(
                "n2 did not answer a get before the renewals: {other:?}"
            ))
        }
    };
    // Two lease durations of traffic, every 15-25 ms (well within the 400 ms idle timeout).
    let until = env.elapsed() + Duration::from_millis(1000);
    while env.elapsed() < until {
        match invoke(&cluster, "n2", &actor, Op::Add).await {
            Some(Ok(v)) if v == last + 1 => last = v,
            Some(Ok(v)) => {
                return Err(format!(
                    "in-memory state lost across failed renewals: an add after count {last} \
                     returned {v} ({failures} renewals failed; the instance was replaced)"
                ))
            }
            other => {
                return Err(format!(
                    "n2 refused its own actor after {failures} failed renewals: {other:?}"
                ))
            }
        }
        env.sleep(Duration::from_millis(env.rng().gen_range(15..25)))
            .await;
    }
    let fired = env.point_stats("lease.renew").fired;
    if fired != u64::from(failures) {
        return Err(format!(
            "lease.renew failed {fired} times, armed for {failures}"
        ));
    }
    let fence = fence_in_store(&cluster, &actor).await?;
    for (op, what) in [
        (Op::Token, "instance"),
        (Op::TxnToken, "fenced transaction"),
    ] {
        match invoke(&cluster, "n2", &actor, op).await {
            Some(Ok(t)) if t == fence && fence > 1 => {}
            other => {
                return Err(format!(
                    "the {what} reports token {other:?}, the actor's fence in the store is \
                     {fence} (its second activation)"
                ))
            }
        }
    }
    // The record shows the renewals: its expiry (on n2's clock) moved on.
    let last_expiry = lease_record(&cluster, &actor).await?.map(|r| r.expiry_ms);
    if last_expiry <= first_expiry {
        return Err(format!(
            "after a second of renewals the lease record's expiry is {last_expiry:?} (ms on \
             n2's clock), {first_expiry:?} at activation"
        ));
    }
    // The directory names the node and token the actor runs under.
    let placement = kelpie_actors::Registry::new(cluster.kv.clone())
        .lookup(&actor)
        .await
        .map_err(|e| e.to_string())?;
    if placement.as_ref().map(|p| (p.node.as_str(), p.token)) != Some(("n2", fence)) {
        return Err(format!(
            "the directory places {actor} at {placement:?}; it runs on n2 under token {fence}"
        ));
    }
    verdict(&cluster)
}

/// n2 runs two actors and shuts down (`ActorRuntime::shutdown`): it must refuse messages from
/// then on and release both leases, which the store's records must show, so that n3 takes each
/// actor at once — well within the takeover wait (550 ms) that a lease left to run out costs.
#[kelpie::dst_test(seeds = 0..10)]
async fn a_shut_down_node_releases_its_actors_at_once(env: SimEnv) -> Result<(), String> {
    let cluster = cluster_of::<Counter>(&env, 2, runtime_config());
    let actors = [
        ActorId::new("ns", "a0").unwrap(),
        ActorId::new("ns", "a1").unwrap(),
    ];
    for actor in &actors {
        activates_when_free(&cluster, "n2", actor).await?;
    }
    // a1's count is deleted (a fenced delete): it must be gone from the store, and restart at
    // 1 on the node that takes a1 over.
    match invoke(&cluster, "n2", &actors[1], Op::Reset).await {
        Some(Ok(0)) => {}
        other => return Err(format!("n2 could not reset {}: {other:?}", actors[1])),
    }
    let count_key = actors[1].key("count");
    if let Some(v) = cluster
        .kv
        .get(&count_key)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!(
            "after a fenced delete the count is still stored: {v:?}"
        ));
    }
    // n3 is refused while n2 holds the actors, and keeps no state for them afterwards.
    for actor in &actors {
        if let Some(Ok(v)) = invoke(&cluster, "n3", actor, Op::Get).await {
            return Err(format!("n3 served {actor} (count {v}) while n2 held it"));
        }
    }
    let rt3 = cluster.services().get("n3").unwrap();
    let tracked = support::run_on("n3", async move { rt3.tracked_actors() }).await;
    if tracked != Some(0) {
        return Err(format!(
            "n3 keeps state for {tracked:?} actors after being refused them (none is active)"
        ));
    }
    let mut held = Vec::new();
    for actor in &actors {
        held.push(lease_record(&cluster, actor).await?);
    }
    let rt = cluster.services().get("n2").unwrap();
    support::run_on("n2", async move { rt.shutdown().await })
        .await
        .ok_or("n2 died during its shutdown")?;
    let started = env.elapsed();
    for (i, actor) in actors.iter().enumerate() {
        if let Some(Ok(v)) = invoke(&cluster, "n2", actor, Op::Add).await {
            return Err(format!("n2 served {actor} after its shutdown (count {v})"));
        }
        let record = lease_record(&cluster, actor).await?;
        let before = held[i].as_ref();
        if !record.as_ref().is_some_and(|r| {
            r.state == kelpie_actors::LeaseState::Released && before.is_some_and(|b| r.seq > b.seq)
        }) {
            return Err(format!(
                "after n2's shutdown the lease record of {actor} is {record:?}, not released as \
                 a new version of {before:?}"
            ));
        }
        if !until_ok(&cluster, "n3", actor, Op::Get, Duration::from_millis(200)).await {
            return Err(format!(
                "n3 could not take {actor} within 200 ms after n2 shut down"
            ));
        }
        let want = if actor == &actors[1] { 0 } else { 1 };
        match invoke(&cluster, "n3", actor, Op::Get).await {
            Some(Ok(v)) if v == want => {}
            other => return Err(format!("{actor} on n3 counts {other:?}, expected {want}")),
        }
    }
    env.trace(format!(
        "moved after {:?}",
        env.elapsed().saturating_sub(started)
    ));
    // Within a renewal interval of the shutdown, n2's renewal tasks have seen it and n2
    // keeps no state for any actor.
    let renew = runtime_config().lease.renew_interval;
    let waited = env.elapsed().saturating_sub(started);
    env.sleep(renew.saturating_sub(waited) + Duration::from_millis(10))
        .await;
    let rt = cluster.services().get("n2").unwrap();
    let tracked = support::run_on("n2", async move { rt.tracked_actors() }).await;
    if tracked != Some(0) {
        return Err(format!(
            "a renewal interval after its shutdown n2 still keeps state for {tracked:?} actors"
        ));
    }
    verdict(&cluster)
}

/// n2 runs an in-memory counter and deactivates it; the deactivation is held inside the
/// runtime (its lease release delayed at `lease.release`) while an add arrives on n2 and waits
/// for it. The waiting add activates a fresh instance, and every later message on n2 must reach
/// that same instance (one instance of an actor per node): with no deactivation, crash or
/// fault in between, the next add returns the next count.
#[kelpie::dst_test(seeds = 0..10)]
async fn a_message_behind_a_deactivation_reaches_the_one_new_instance(
    env: SimEnv,
) -> Result<(), String> {
    let cluster = cluster_of::<MemoryCounter>(&env, 1, runtime_config());
    let actor = ActorId::new("ns", "a0").unwrap();
    activates_when_free(&cluster, "n2", &actor).await?;
    let rng = env.rng();
    let hold = Duration::from_millis(rng.gen_range(20..80));
    env.arm_point(
        "lease.release",
        Some(cluster.nodes[0].node()),
        PointAction::Delay(hold),
    );
    let deactivation = {
        let c = cluster.services().get("n2").unwrap();
        let a = actor.clone();
        support::spawn_on("n2", async move { c.deactivate(&a).await })
    };
    env.sleep(Duration::from_millis(rng.gen_range(1..10))).await;
    let waiting = invoke(&cluster, "n2", &actor, Op::Add).await;
    let was_active = deactivation.await;
    let first = match waiting {
        Some(Ok(v)) => v,
        other => return Err(format!("the add behind the deactivation failed: {other:?}")),
    };
    env.sleep(Duration::from_millis(rng.gen_range(5..50))).await;
    match invoke(&cluster, "n2", &actor, Op::Add).await {
        Some(Ok(v)) if v == first + 1 => {}
        other => {
            return Err(format!(
                "SingleActivation (per node) violated: after the add behind the deactivation \
                 returned {first}, the next add on n2 returned {other:?} (another instance of \
                 {actor} answered)"
            ))
        }
    }
    env.trace(format!(
        "deactivation {was_active:?}, then counts from {first}"
    ));
    verdict(&cluster)
}

/// An activation that fails for a reason other than the lease (here the actor's stored state
/// is corrupt, so its `activate` fails) gives the lease back: once an operator repairs the
/// state, another node activates the actor at once — well within the takeover wait (550 ms)
/// a kept lease would cost.
#[kelpie::dst_test(seeds = 0..10)]
async fn a_failed_activation_gives_its_lease_back(env: SimEnv) -> Result<(), String> {
    let cluster = cluster_of::<Counter>(&env, 2, runtime_config());
    let actor = ActorId::new("ns", "a0").unwrap();
    let count = actor.key("count");
    cluster
        .kv
        .set(&count, b"not a count")
        .await
        .map_err(|e| e.to_string())?;
    // The nodes' runtimes start in their init: wait for them.
    while cluster.services().get("n2").is_none() || cluster.services().get("n3").is_none() {
        env.sleep(Duration::from_millis(1)).await;
    }
    match invoke(&cluster, "n2", &actor, Op::Get).await {
        Some(Err(ActorError::Corrupt { .. })) => {}
        other => return Err(format!("n2 activated a corrupt actor: {other:?}")),
    }
    cluster
        .kv
        .set(&count, &7u64.to_le_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let started = env.elapsed();
    if !until_ok(&cluster, "n3", &actor, Op::Get, Duration::from_millis(200)).await {
        return Err(
            "n3 could not activate the repaired actor within 200 ms: n2's failed activation \
             kept its lease"
                .into(),
        );
    }
    env.trace(format!(
        "n3 activated after {:?}",
        env.elapsed().saturating_sub(started)
    ));
    verdict(&cluster)
}

/// Clocks at the skew bound in the worst directions: n2 activates an in-memory counter, loses
/// the store (so it can only trust its last lease until its own clock says it ran out) and its
/// clock falls behind by `max_clock_skew`; n3 keeps trying to take the actor over and its
/// clock jumps ahead by the bound while it waits. Clients keep n2 busy. The holder's safety
/// margin must make it stop before its lease's true duration ends and before n3's grant;
/// LeaseBoundActivity judges from the grants and true time, not from n2's clock.
#[kelpie::dst_test(seeds = 0..10)]
async fn a_holder_with_a_late_clock_stops_within_its_lease(env: SimEnv) -> Result<(), String> {
    let config = runtime_config();
    let skew = config.lease.max_clock_skew;
    let cluster = cluster_of::<MemoryCounter>(&env, 2, config);
    let actor = ActorId::new("ns", "a0").unwrap();
    activates_when_free(&cluster, "n2", &actor).await?;
    let (n2, n3) = (&cluster.nodes[0], &cluster.nodes[1]);
    env.network().partition(n2.node(), cluster.db.node());
    n2.set_clock_offset(skew, false);
    let rng = env.rng();
    let jump = Duration::from_millis(rng.gen_range(100..300));
    let jumper = {
        let (env2, n3) = (env.clone(), n3.clone());
        env.spawn(async move {
            env2.sleep(jump).await;
            n3.set_clock_offset(skew, true);
        })
    };
    let taker = {
        let (services, a, env2) = (cluster.services(), actor.clone(), env.clone());
        env.spawn(async move {
            let deadline = env2.elapsed() + Duration::from_millis(1200);
            while env2.elapsed() < deadline {
                if let Some(rt) = services.get("n3") {
                    let a = a.clone();
                    let call = support::run_on("n3", async move { rt.invoke(&a, Op::Add).await });
                    if let Ok(Some(Ok(_))) = env2.timeout(Duration::from_millis(300), call).await {
                        return true;
                    }
                }
                env2.sleep(Duration::from_millis(env2.rng().gen_range(5..15)))
                    .await;
            }
            false
        })
    };
    let mut served = 0;
    let until = env.elapsed() + Duration::from_millis(800);
    while env.elapsed() < until {
        if let Some(Ok(_)) = invoke(&cluster, "n2", &actor, Op::Get).await {
            served += 1;
        }
        env.sleep(Duration::from_millis(rng.gen_range(2..6))).await;
    }
    let _ = jumper.await;
    let taken = taker.await.unwrap_or(false);
    env.trace(format!("n2 served {served} gets, n3 took over {taken}"));
    cluster.checker.check_now();
    verdict(&cluster)?;
    if !taken {
        return Err("Liveness (takeover) violated: n3 never took over the cut-off actor".into());
    }
    Ok(())
}

/// n2 runs an in-memory counter; a message on n2 is held at `activation.handle` (after the
/// runtime decided it may act) while a second one queues behind it, and meanwhile an operator
/// revokes n2's lease in the store (the record now names another holder under a newer token).
/// n2's next renewal finds the record changed. The queued message starts after that renewal,
/// so it must be refused: a node that knows its lease is lost must not act on it, however long
/// its own clock says the lease lasts.
#[kelpie::dst_test(seeds = 0..10)]
async fn a_message_queued_behind_a_revoked_lease_does_not_act(env: SimEnv) -> Result<(), String> {
    let config = runtime_config();
    let renew = config.lease.renew_interval;
    let cluster = cluster_of::<MemoryCounter>(&env, 1, config);
    let actor = ActorId::new("ns", "a0").unwrap();
    activates_when_free(&cluster, "n2", &actor).await?;
    let rng = env.rng();
    // Held past a renewal interval and its first retry after the revocation.
    let hold = renew * 2 + Duration::from_millis(rng.gen_range(10..100));
    env.arm_point(
        "activation.handle",
        Some(cluster.nodes[0].node()),
        PointAction::Delay(hold),
    );
    let send = |op| {
        let c = cluster.services().get("n2").unwrap();
        let a = actor.clone();
        support::spawn_on("n2", async move { c.invoke(&a, op).await })
    };
    let first = send(Op::Add);
    env.sleep(Duration::from_millis(rng.gen_range(1..5))).await;
    let second = send(Op::Add);
    env.sleep(Duration::from_millis(rng.gen_range(1..5))).await;
    // The revocation, as an operator would write it.
    let key = actor.key(kelpie_actors::LEASE_SUFFIX);
    let mut record = lease_record(&cluster, &actor)
        .await?
        .ok_or("n2's lease record is missing")?;
    record.holder = "operator".into();
    record.token += 1;
    record.seq += 1;
    let revoked_token = record.token;
    let bytes = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    cluster
        .kv
        .set(&key, &bytes)
        .await
        .map_err(|e| e.to_string())?;
    let fence = actor.key(kelpie_actors::FENCE_SUFFIX);
    cluster
        .kv
        .set(&fence, revoked_token.to_string().as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let (first, second) = (first.await, second.await);
    env.trace(format!("revoked: first {first:?}, second {second:?}"));
    match second {
        Ok(Err(_)) | Err(_) => Ok(()),
        Ok(Ok(v)) => Err(format!(
            "LeaseBoundActivity violated: n2 acted (count {v}) on a message that started {hold:?} \
             after the first, though its lease was revoked in the store (token {revoked_token}) \
             more than a renewal interval ({renew:?}) before"
        )),
    }
}

/// Credits an entry's amount to `ledger/total` and counts its applications under
/// `ledger/applied/{key}`: the facts the WAL scenario judges from.
struct Credit;

fn read_u64(v: Option<Vec<u8>>) -> u64 {
    v.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_le_bytes)
}

impl<T: KvTransaction> WalApply<T> for Credit {
    async fn apply(&self, entry: &WalEntry, txn: &mut T) -> Result<JsonValue, ActorError> {
        let total = read_u64(txn.get(b"ledger/total").await?) + entry.payload.as_u64().unwrap_or(0);
        txn.set(b"ledger/total", &total.to_le_bytes());
        let key = format!("ledger/applied/{}", entry.key).into_bytes();
        let times = read_u64(txn.get(&key).await?) + 1;
        txn.set(&key, &times.to_le_bytes());
        Ok(total.into())
    }
}

/// A client submits credits under generated idempotency keys (a prefix chain, a 128-character
/// key, and repeats of earlier keys: a client sending the same request twice), retrying each
/// submission until it is acknowledged. Replies of appends and completes that committed are
/// lost at armed fault points (the caller sees an unknown outcome), a random number of times.
/// Every key must be applied exactly once, with the amount of its first submission, and the
/// total must be their sum.
async fn wal_retries(env: SimEnv, config: WalConfig) -> Result<(), String> {
    let rng = env.rng();
    let db = env.create_node("db").build();
    let kv = SimKv::new(&db);
    let node = env.create_node("w").build();
    let wal = Wal::with_config(SimPlatform::new(node.clone(), kv.clone()), "ledger", config)
        .map_err(|e| e.to_string())?;
    let keys = IdGen::new(Alphabet::ActorId, 1, 128).batch(&rng, 12);
    for point in ["wal.append.reply", "wal.complete.reply"] {
        let times = rng.gen_range(2..6) as u32;
        let skip = rng.gen_range(0..4) as u32;
        env.arm_point_times(point, Some(node.node()), PointAction::Fail, times, skip);
    }
    let mut first_amount: BTreeMap<String, u64> = BTreeMap::new();
    let mut unknown = 0;
    let task = {
        let (keys, wal, env2) = (keys.clone(), wal.clone(), env.clone());
        node.spawn(async move {
            let mut amounts = Vec::new();
            let mut unknown = 0;
            for key in keys {
                let amount = 1 + env2.rng().gen_range(0..100);
                amounts.push((key.clone(), amount));
                loop {
                    match wal.submit(&key, amount.into(), &Credit).await {
                        Ok(_) => break,
                        Err(ActorError::Kv(KvError::OutcomeUnknown)) => unknown += 1,
                        Err(e) => return Err(format!("submit {key:?} failed: {e}")),
                    }
                }
            }
            Ok((amounts, unknown))
        })
    };
    let (amounts, seen_unknown) = task.await.map_err(|e| e.to_string())??;
    unknown += seen_unknown;
    for (key, amount) in amounts {
        first_amount.entry(key).or_insert(amount);
    }
    let mut expected_total = 0;
    for (key, amount) in &first_amount {
        let times = read_u64(
            kv.get(format!("ledger/applied/{key}").as_bytes())
                .await
                .map_err(|e| e.to_string())?,
        );
        if times != 1 {
            return Err(format!(
                "wal entry {key:?} was applied {times} times (exactly once expected) after \
                 {unknown} unknown outcomes"
            ));
        }
        expected_total += amount;
    }
    let total = read_u64(kv.get(b"ledger/total").await.map_err(|e| e.to_string())?);
    if total != expected_total {
        return Err(format!(
            "ledger total {total}, expected {expected_total} (the first amount of each key)"
        ));
    }
    let fired =
        env.point_stats("wal.append.reply").fired + env.point_stats("wal.complete.reply").fired;
    env.trace(format!(
        "wal: {unknown} unknown outcomes, {fired} replies lost"
    ));
    kelpie::sometimes!(
        env.point_stats("wal.complete.reply").fired > 0,
        "a complete committed and its reply was lost"
    );
    kelpie::sometimes!(first_amount.len() < keys.len(), "a key was submitted twice");
    Ok(())
}

/// Retries of `append` and `complete` after unknown outcomes apply each key exactly once.
#[kelpie::dst_test(seeds = 0..20)]
async fn wal_retries_after_unknown_outcomes_apply_once(env: SimEnv) -> Result<(), String> {
    wal_retries(env, WalConfig::default()).await
}

/// Canary for a retry after an unknown outcome: `complete` applies an entry without looking
/// at its status, so the retry of a complete whose reply was lost applies it again.
#[kelpie::dst_test(seeds = 0..20, canary)]
async fn canary_complete_without_status_check_applies_twice(env: SimEnv) -> Result<(), String> {
    let config = WalConfig {
        bug: Some(WalBug::CompleteSkipsStatusCheck),
        ..WalConfig::default()
    };
    wal_retries(env, config).await
}
