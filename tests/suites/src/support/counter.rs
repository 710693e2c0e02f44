//! The workload the activation and migration suites share: a counter actor, clients that
//! send it messages through the cluster's nodes, an operator that deactivates or migrates
//! actors, and the end-of-run checks (no lost or duplicated update, the invariants held, the
//! faults and the workload did something).
//!
//! The counter writes blindly from its in-memory value, so two live instances, or a write
//! from a deposed one, would lose updates and hand out the same count twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie::SimEnv;
use kelpie_actors::invariants::{ClusterViolation, NoSplitBrain};
use kelpie_actors::{
    Actor, ActorContext, ActorError, ActorId, ActorKV, ActorRuntime, KvError, KvTransaction,
    LeaseConfig, Platform, Registry, RuntimeConfig,
};

use super::cluster::{self as support, Cluster, NodePlatform};

/// A counter; its state is its value.
pub(crate) struct Counter {
    value: u64,
}

/// A counter message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Adds one and returns the new value.
    Add,
    /// Returns the value.
    Get,
    /// Returns the fencing token the instance reports ([`ActorContext::token`]), for a test
    /// to compare with the actor's fence in the store.
    Token,
    /// Returns the token its fenced transactions carry (`FencedTxn::token`), likewise.
    TxnToken,
    /// Deletes the persisted count in a fenced transaction and restarts at 0 (persisted
    /// counter only; returns 0).
    Reset,
}

fn decode(bytes: &[u8]) -> Result<u64, ActorError> {
    bytes
        .try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| ActorError::Corrupt {
            key: "count".into(),
            reason: format!("{} bytes", bytes.len()),
        })
}

impl Actor<NodePlatform> for Counter {
    type Msg = Op;
    type Reply = u64;

    async fn activate(ctx: &ActorContext<NodePlatform>) -> Result<Self, ActorError> {
        if let Some(state) = ctx.handoff() {
            return Ok(Counter {
                value: decode(state)?,
            });
        }
        let mut txn = ctx.transaction();
        let value = match txn.get(&ctx.id().key("count")).await? {
            Some(b) => decode(&b)?,
            None => 0,
        };
        Ok(Counter { value })
    }

    async fn handle(
        &mut self,
        ctx: &ActorContext<NodePlatform>,
        op: Op,
    ) -> Result<u64, ActorError> {
        match op {
            Op::Token => return Ok(ctx.token()),
            Op::TxnToken => return Ok(ctx.transaction().token()),
            Op::Reset => {
                let mut txn = ctx.transaction();
                txn.delete(&ctx.id().key("count"));
                txn.commit_fenced().await?;
                self.value = 0;
                return Ok(0);
            }
            Op::Add | Op::Get => {}
        }
        if op == Op::Add {
            let mut txn = ctx.transaction();
            txn.set(&ctx.id().key("count"), &(self.value + 1).to_le_bytes());
            txn.commit_fenced().await?;
            self.value += 1;
        }
        Ok(self.value)
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(self.value.to_le_bytes().to_vec())
    }
}

/// A counter that lives only in memory: its value is never written to the store, so it
/// survives a migration only through the state handed over (a target that ignores the
/// hand-off restarts it at 0), and is lost with its instance otherwise (crash, lease loss,
/// idle deactivation) — use it only with migrations and faults that keep leases alive.
pub(crate) struct MemoryCounter {
    value: u64,
}

impl Actor<NodePlatform> for MemoryCounter {
    type Msg = Op;
    type Reply = u64;

    async fn activate(ctx: &ActorContext<NodePlatform>) -> Result<Self, ActorError> {
        let value = match ctx.handoff() {
            Some(state) => decode(state)?,
            None => 0,
        };
        Ok(MemoryCounter { value })
    }

    async fn handle(
        &mut self,
        ctx: &ActorContext<NodePlatform>,
        op: Op,
    ) -> Result<u64, ActorError> {
        // The context's contract: it names the node the instance runs on.
        assert_eq!(
            ctx.node(),
            ctx.platform().node(),
            "ActorContext::node names another node than the instance's platform"
        );
        match op {
            Op::Token => return Ok(ctx.token()),
            Op::TxnToken => return Ok(ctx.transaction().token()),
            Op::Reset => self.value = 0,
            Op::Add => self.value += 1,
            Op::Get => {}
        }
        Ok(self.value)
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(self.value.to_le_bytes().to_vec())
    }
}

/// The counters the workload can drive: whether the count is persisted in the store (then
/// the end-of-run check compares the store with the acknowledged increments).
pub(crate) trait CounterActor: Actor<NodePlatform, Msg = Op, Reply = u64> {
    /// Whether the count is written to `actors/ns/{id}/count`.
    const PERSISTED: bool;
}

impl CounterActor for Counter {
    const PERSISTED: bool = true;
}

impl CounterActor for MemoryCounter {
    const PERSISTED: bool = false;
}

/// The store-backed counter without a snapshot (the trait's default): a migration hands it
/// nothing, and the target reloads the count from the store.
pub(crate) struct PlainCounter(Counter);

impl Actor<NodePlatform> for PlainCounter {
    type Msg = Op;
    type Reply = u64;

    async fn activate(ctx: &ActorContext<NodePlatform>) -> Result<Self, ActorError> {
        Counter::activate(ctx).await.map(PlainCounter)
    }

    async fn handle(
        &mut self,
        ctx: &ActorContext<NodePlatform>,
        op: Op,
    ) -> Result<u64, ActorError> {
        self.0.handle(ctx, op).await
    }
}

impl CounterActor for PlainCounter {
    const PERSISTED: bool = true;
}

/// The runtime every node runs.
pub(crate) type Runtime<A = Counter> = ActorRuntime<NodePlatform, A>;

/// Lease of 500 ms, clocks skewed by at most 50 ms, idle actors released after 400 ms.
pub(crate) fn runtime_config() -> RuntimeConfig {
    RuntimeConfig {
        lease: LeaseConfig::new(Duration::from_millis(500), Duration::from_millis(50)),
        idle_timeout: Some(Duration::from_millis(400)),
    }
}

/// A cluster of `nodes` runtimes with `config`.
pub(crate) fn counter_cluster(
    env: &SimEnv,
    nodes: usize,
    config: RuntimeConfig,
) -> Cluster<Runtime> {
    cluster_of::<Counter>(env, nodes, config)
}

/// A cluster of `nodes` runtimes of actor `A` with `config`.
pub(crate) fn cluster_of<A: CounterActor>(
    env: &SimEnv,
    nodes: usize,
    config: RuntimeConfig,
) -> Cluster<Runtime<A>> {
    let lease = config.lease.clone();
    Cluster::start(env, nodes, &lease, move |platform, checker| {
        let rt = ActorRuntime::with_observer(platform, config.clone(), checker).unwrap();
        (rt, None)
    })
}

/// What the clients saw.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Replies to acknowledged `Add`s, per actor.
    pub acked: BTreeMap<ActorId, Vec<u64>>,
    /// `Add`s whose outcome is unknown (the node died, or the store's reply was lost).
    pub unknown: BTreeMap<ActorId, u64>,
    /// Outcomes by kind.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Operator actions (deactivations, migrations) by outcome.
    pub migrations: BTreeMap<&'static str, u64>,
    /// Why migration targets refused to activate after a committed hand-off.
    pub refusals: Vec<String>,
}

impl Tally {
    fn count(&self, k: &str) -> u64 {
        self.outcomes.get(k).copied().unwrap_or(0)
    }

    /// Operations that failed (refused, failed, unknown outcome).
    pub fn failures(&self) -> u64 {
        self.count("refused") + self.count("failed") + self.count("unknown")
    }
}

/// What the operator task does periodically to one random actor, besides the clients.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Operator {
    /// Deactivates it on the node that owns it (a rebalance or a drain): the next message
    /// activates it wherever it lands.
    Deactivate(Duration),
    /// Migrates it from the node that owns it to another node.
    Migrate(Duration),
}

/// Runs clients (each sending a message every 5–30 ms, mostly to the node the directory
/// names, sometimes to a random one) and the `operator` for `secs` seconds of virtual time,
/// while a monitor checks the invariants every 10 ms and NoSplitBrain on the runtimes' beliefs.
/// Returns the tally, the first split-brain violation and the partition heals seen.
pub(crate) async fn run_clients<A: CounterActor>(
    cluster: &Cluster<Runtime<A>>,
    actors: &[ActorId],
    clients: usize,
    secs: u64,
    operator: Operator,
) -> (Tally, Option<ClusterViolation>, u64) {
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let split: Arc<Mutex<(NoSplitBrain, Option<ClusterViolation>)>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (services, names, split, env) = (
            cluster.services(),
            cluster.names.clone(),
            split.clone(),
            cluster.env.clone(),
        );
        cluster.monitor(Duration::from_millis(10), stop.clone(), move || {
            let beliefs: BTreeMap<String, Vec<(ActorId, u64)>> = names
                .iter()
                .filter_map(|n| Some((n.clone(), services.get(n)?.active_actors())))
                .collect();
            let mut s = split.lock().unwrap();
            let found = s.0.check(env.elapsed(), &beliefs);
            if s.1.is_none() {
                s.1 = found;
            }
        })
    };
    let deadline = Duration::from_secs(secs);
    // Until the deadline, or the first violation (nothing after it matters).
    let going = {
        let (env, checker, split) = (cluster.env.clone(), cluster.checker.clone(), split.clone());
        move || {
            env.elapsed() < deadline
                && checker.first_violation().is_none()
                && split.lock().unwrap().1.is_none()
        }
    };
    let registry = Registry::new(cluster.kv.clone());
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (env, names, actors, tally, services, registry) = (
            cluster.env.clone(),
            cluster.names.clone(),
            actors.to_vec(),
            tally.clone(),
            cluster.services(),
            registry.clone(),
        );
        let going = going.clone();
        tasks.push(cluster.env.spawn(async move {
            while going() {
                let actor = support::pick(&env, &actors).clone();
                let routed = match registry.lookup(&actor).await {
                    Ok(Some(p)) if env.rng().gen_bool(0.6) => Some(p.node),
                    _ => None,
                };
                let node = routed.unwrap_or_else(|| support::pick(&env, &names).clone());
                let op = if env.rng().gen_bool(0.8) {
                    Op::Add
                } else {
                    Op::Get
                };
                // A client gives up after 300 ms (the message may still be handled).
                let outcome = match services.get(&node) {
                    Some(rt) => {
                        let a = actor.clone();
                        let call = support::run_on(&node, async move { rt.invoke(&a, op).await });
                        env.timeout(Duration::from_millis(300), call)
                            .await
                            .ok()
                            .flatten()
                    }
                    None => None,
                };
                {
                    let mut t = tally.lock().unwrap();
                    let label = match outcome {
                        Some(Ok(v)) => {
                            if op == Op::Add {
                                t.acked.entry(actor).or_default().push(v);
                            }
                            "ok"
                        }
                        Some(Err(e)) if kelpie_actors::is_lease_lost(&e) => "refused",
                        Some(Err(ActorError::Kv(KvError::OutcomeUnknown))) | None => {
                            if op == Op::Add {
                                *t.unknown.entry(actor).or_default() += 1;
                            }
                            "unknown"
                        }
                        Some(Err(_)) => "failed",
                    };
                    *t.outcomes.entry(label).or_default() += 1;
                }
                env.sleep(Duration::from_millis(env.rng().gen_range(5..30)))
                    .await;
            }
        }));
    }
    {
        let (env, names, actors, tally, services) = (
            cluster.env.clone(),
            cluster.names.clone(),
            actors.to_vec(),
            tally.clone(),
            cluster.services(),
        );
        tasks.push(cluster.env.spawn(async move {
            let (Operator::Deactivate(every) | Operator::Migrate(every)) = operator;
            while going() {
                env.sleep(every).await;
                // An actor active somewhere, if any (else a random one).
                let active: Vec<ActorId> = actors
                    .iter()
                    .filter(|a| {
                        names
                            .iter()
                            .any(|n| services.get(n).is_some_and(|rt| rt.is_active(a)))
                    })
                    .cloned()
                    .collect();
                let actor =
                    support::pick(&env, if active.is_empty() { &actors } else { &active }).clone();
                let mut refusals = Vec::new();
                let label = match operator {
                    Operator::Migrate(_) => {
                        migrate_once(&env, &names, &services, &actor, &mut refusals).await
                    }
                    Operator::Deactivate(_) => deactivate_once(&names, &services, &actor).await,
                };
                let mut t = tally.lock().unwrap();
                *t.migrations.entry(label).or_default() += 1;
                t.refusals.extend(refusals);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    stop.store(true, Ordering::Relaxed);
    let heals = monitor.await.unwrap_or(0);
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let split = split.lock().unwrap().1.clone();
    (tally, split, heals)
}

/// Deactivates `actor` on the node that believes it owns it.
async fn deactivate_once<A: CounterActor>(
    names: &[String],
    services: &support::Services<Runtime<A>>,
    actor: &ActorId,
) -> &'static str {
    let Some((node, rt)) = names.iter().find_map(|n| {
        services
            .get(n)
            .filter(|rt| rt.is_active(actor))
            .map(|rt| (n, rt))
    }) else {
        return "not active";
    };
    let a = actor.clone();
    match support::run_on(node, async move { rt.deactivate(&a).await }).await {
        Some(true) => "deactivated",
        Some(false) => "not active",
        None => "node died",
    }
}

/// Migrates `actor` from the node that believes it owns it to another random node: the
/// source's `migrate_out` on the source, then the target's `migrate_in` on the target.
async fn migrate_once<A: CounterActor>(
    env: &SimEnv,
    names: &[String],
    services: &support::Services<Runtime<A>>,
    actor: &ActorId,
    refusals: &mut Vec<String>,
) -> &'static str {
    let Some(source) = names
        .iter()
        .find(|n| services.get(n).is_some_and(|rt| rt.is_active(actor)))
        .cloned()
    else {
        return "not active";
    };
    let others: Vec<String> = names.iter().filter(|n| **n != source).cloned().collect();
    let target = support::pick(env, &others).clone();
    let (Some(src), Some(tgt)) = (services.get(&source), services.get(&target)) else {
        return "node missing";
    };
    let (a, to) = (actor.clone(), target.clone());
    match support::run_on(&source, async move { src.migrate_out(&a, &to).await }).await {
        Some(Ok(_)) => {}
        Some(Err(_)) => return "source refused",
        None => return "source died",
    }
    let a = actor.clone();
    match support::run_on(&target, async move { tgt.migrate_in(&a).await }).await {
        Some(Ok(_)) => "completed",
        Some(Err(e)) => {
            refusals.push(format!("{actor} {source} -> {target}: {e}"));
            "target refused"
        }
        None => "target died",
    }
}

/// After the run: every acknowledged `Add` is in the store exactly once and no two got the
/// same count (`acked <= stored <= acked + unknown`, replies distinct).
pub(crate) async fn verify_counts<A: CounterActor>(
    cluster: &Cluster<Runtime<A>>,
    tally: &Tally,
) -> Result<(), String> {
    for (actor, replies) in &tally.acked {
        let mut sorted = replies.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "{actor}: two acknowledged increments both returned {} (a lost update)",
                w[0]
            ));
        }
        if !A::PERSISTED {
            continue;
        }
        let stored = loop {
            match cluster.kv.get(&actor.key("count")).await {
                Ok(v) => break v.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap())),
                // The database node is down: it restarts.
                Err(_) => cluster.env.sleep(Duration::from_millis(50)).await,
            }
        };
        let acked = replies.len() as u64;
        let unknown = tally.unknown.get(actor).copied().unwrap_or(0);
        let max = sorted.last().copied().unwrap_or(0);
        if stored < acked || stored < max || stored > acked + unknown {
            return Err(format!(
                "{actor}: stored count {stored}, but {acked} increments were acknowledged \
                 (highest reply {max}) and {unknown} had unknown outcomes"
            ));
        }
    }
    Ok(())
}

/// The common verdict of a run: no invariant violated, counts consistent, the workload both
/// succeeded and failed, leases changed hands (`takeovers`: to another node, not only by
/// hand-off), and every declared fault fired.
pub(crate) async fn judge<A: CounterActor>(
    env: &SimEnv,
    cluster: &Cluster<Runtime<A>>,
    tally: &Tally,
    split: Option<ClusterViolation>,
    takeovers: bool,
) -> Result<(), String> {
    if let Some(v) = cluster.checker.first_violation() {
        let why = cluster.checker.explain(&v);
        return Err(format!("{why}\n  outcomes: {:?}", tally.outcomes));
    }
    let stats = cluster.checker.stats();
    if let Some(v) = split {
        return Err(v.to_string());
    }
    verify_counts(cluster, tally).await?;
    // Exercised somewhere in the seed range, not necessarily in this seed.
    kelpie::sometimes!(tally.count("ok") > 0, "an operation succeeded");
    kelpie::sometimes!(tally.failures() > 0, "an operation failed");
    kelpie::sometimes!(
        stats.acquisitions >= 2 && stats.activations > 0,
        "leases changed hands and actors activated"
    );
    if takeovers {
        kelpie::sometimes!(stats.takeovers > 0, "a lease was taken over");
    }
    support::faults_reached(env)
}
