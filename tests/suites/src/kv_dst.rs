//! kelpie-actors storage under faults: concurrent transactions on a simulated database node
//! are serializable ([`SerializableIsolation`]), and the typed agent storage never tears a
//! checkpoint and never loses or duplicates an acknowledged message ([`MessageDurability`]).
//!
//! The cluster: a database node `db` whose disk backs a [`SimKv`], and worker nodes `w1`, `w2`
//! that run the workload on a platform each (kelpie-actors' `SimPlatform`). Faults crash any of
//! them; a crashed worker reruns its init, which resumes the workload where the
//! (supervisor-held) client state says.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie::gen::{Alphabet, IdGen};
use kelpie::{FaultKind, NodeStatus, SimEnv};

use crate::support::conflicting::AlwaysConflicting;
use kelpie_actors::invariants::{
    AgentSnapshot, MessageDurability, SerializableIsolation, TxnOutcome,
};
use kelpie_actors::{
    ActorError, ActorKV, AdapterBug, AdapterConfig, AgentKeys, AgentStorage, JsonValue, KvError,
    KvTransaction, MemoryBlock, NewAgent, NewMessage, Platform, Role, SimKv, SimPlatform,
    ToolRecord,
};

/// Whether a run is a real check (the faults must have fired and operations must have both
/// succeeded and failed) or a canary (only an invariant violation may fail it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Check,
    Canary,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// In `Check` mode: across the seed range (`sometimes!`, judged by the harness), operations
/// both succeeded and failed, and in some seed every fault in `required` fired. Not per seed:
/// a seed where a rare fault happened not to fire is still a valid seed (and long sweeps
/// have such seeds).
fn exercised(
    env: &SimEnv,
    mode: Mode,
    required: &[FaultKind],
    ok: u64,
    failed: u64,
) -> Result<(), String> {
    if mode == Mode::Check {
        let stats = env.faults();
        kelpie::sometimes!(ok > 0, "an operation succeeded");
        kelpie::sometimes!(failed > 0, "an operation failed");
        kelpie::sometimes!(
            required.iter().all(|k| stats.fired(*k) > 0),
            "every required fault fired in one seed"
        );
    }
    Ok(())
}

/// Waits until `node` is up.
async fn until_up(env: &SimEnv, node: &SimEnv) {
    while env.node_status(node.node()) != NodeStatus::Up {
        env.sleep(Duration::from_millis(10)).await;
    }
}

/// Reads the whole store once the database node is up (retrying reads that a crash failed).
async fn final_state(env: &SimEnv, db: &SimEnv, kv: &SimKv) -> BTreeMap<Vec<u8>, Vec<u8>> {
    loop {
        until_up(env, db).await;
        if let Ok(rows) = kv.scan_prefix(b"").await {
            return rows.into_iter().collect();
        }
        env.sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Serializable transactions
// ---------------------------------------------------------------------------------------------

const ACCOUNTS: u64 = 5;
const INITIAL_BALANCE: u64 = 100;
const BLOCK_AGENT: &str = "ag";
const BLOCK_LABELS: [&str; 2] = ["persona", "human"];

#[derive(Debug, Default)]
struct Tally {
    ops: u64,
    ok: u64,
    failed: u64,
    conflicts: u64,
    stop: bool,
    /// Tags of block appends whose update returned `Ok`, per label.
    appended: BTreeMap<String, Vec<String>>,
    /// Problems seen while running (an audit that saw a wrong total).
    problems: Vec<String>,
}

#[derive(Clone)]
struct TxnWorkload {
    checker: SerializableIsolation,
    tally: Arc<Mutex<Tally>>,
    adapter: AdapterConfig,
}

fn account(i: u64) -> Vec<u8> {
    format!("acct/{i}").into_bytes()
}

/// A balance tagged with its writer, so that every written value is unique.
fn balance_value(balance: u64, tag: &str) -> Vec<u8> {
    format!("{balance}:{tag}").into_bytes()
}

fn parse_balance(value: Option<Vec<u8>>) -> Result<u64, KvError> {
    let v = value.ok_or_else(|| KvError::Unavailable("account missing".into()))?;
    String::from_utf8_lossy(&v)
        .split(':')
        .next()
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| KvError::Unavailable("corrupt balance".into()))
}

/// Replaces each memory block's stored JSON in `state` by its text, read through the API.
async fn block_texts(
    env: &SimEnv,
    db: &SimEnv,
    kv: &SimKv,
    state: &mut BTreeMap<Vec<u8>, Vec<u8>>,
) {
    let api = AgentStorage::new(kv.clone());
    for label in BLOCK_LABELS {
        let block = loop {
            until_up(env, db).await;
            if let Ok(block) = api.get_block(BLOCK_AGENT, label).await {
                break block;
            }
        };
        let key = AgentKeys::block(BLOCK_AGENT, label);
        match block {
            Some(b) => state.insert(key, b.value.into_bytes()),
            None => state.remove(&key),
        };
    }
}

impl TxnWorkload {
    fn outcome(&self, result: Result<(), ActorError>) {
        let mut t = lock(&self.tally);
        match result {
            Ok(()) => t.ok += 1,
            Err(ActorError::Kv(KvError::Conflict { .. })) => t.conflicts += 1,
            Err(_) => t.failed += 1,
        }
    }

    /// Moves money between two accounts: reads both, writes both, in one transaction.
    async fn transfer(&self, p: &SimPlatform, tag: &str) -> Result<(), ActorError> {
        let from = p.random() % ACCOUNTS;
        let to = (from + 1 + p.random() % (ACCOUNTS - 1)) % ACCOUNTS;
        let amount = 1 + p.random() % 30;
        let mut tx = self.checker.record(p.kv().transaction(), tag);
        let a = parse_balance(tx.get(&account(from)).await?)?;
        p.sleep(Duration::from_millis(p.random() % 3)).await;
        let b = parse_balance(tx.get(&account(to)).await?)?;
        if a >= amount {
            tx.set(&account(from), &balance_value(a - amount, tag));
            tx.set(&account(to), &balance_value(b + amount, tag));
        }
        Ok(tx.commit().await?)
    }

    /// Reads every account in one transaction; a committed audit must see the initial total.
    async fn audit(&self, p: &SimPlatform, tag: &str) -> Result<(), ActorError> {
        let mut tx = self.checker.record(p.kv().transaction(), tag);
        let mut total = 0;
        for i in 0..ACCOUNTS {
            total += parse_balance(tx.get(&account(i)).await?)?;
        }
        tx.commit().await?;
        if total != ACCOUNTS * INITIAL_BALANCE {
            lock(&self.tally)
                .problems
                .push(format!("audit {tag} committed with total {total}"));
        }
        Ok(())
    }

    /// Appends `tag` to a memory block through the agent API's read-modify-write. Each try of
    /// the update (one per conflict retry) is recorded as its own transaction.
    async fn append_block(&self, p: &SimPlatform, tag: &str) -> Result<(), ActorError> {
        let label = BLOCK_LABELS[(p.random() % 2) as usize];
        let key = AgentKeys::block(BLOCK_AGENT, label);
        let api = AgentStorage::with_config(p.kv(), self.adapter.clone());
        let attempt = Arc::new(Mutex::new(None));
        let (checker, current) = (self.checker.clone(), attempt.clone());
        let result = api
            .update_block(BLOCK_AGENT, label, move |old| {
                let new = format!("{}{tag};", old.unwrap_or(""));
                let mut current = lock(&current);
                if let Some(previous) = current.take() {
                    checker.finish(previous, TxnOutcome::Aborted); // it conflicted
                }
                let id = checker.begin(format!("{tag}/{label}"));
                // The checker sees a block as its text (the final state is translated the same
                // way, see `block_texts`).
                checker.read(id, &key, old.map(str::as_bytes));
                checker.write(id, &key, Some(new.as_bytes()));
                checker.committing(id);
                *current = Some(id);
                new
            })
            .await;
        if let Some(id) = lock(&attempt).take() {
            self.checker.finish(
                id,
                match &result {
                    Ok(_) => TxnOutcome::Committed,
                    Err(ActorError::Kv(KvError::OutcomeUnknown)) => TxnOutcome::Unknown,
                    Err(_) => TxnOutcome::Aborted,
                },
            );
        }
        if result.is_ok() {
            lock(&self.tally)
                .appended
                .entry(label.to_string())
                .or_default()
                .push(tag.to_string());
        }
        result.map(drop)
    }

    /// One worker task: random operations with think time until the supervisor stops it.
    async fn run(self, p: SimPlatform, task: u32) {
        loop {
            let op = {
                let mut t = lock(&self.tally);
                if t.stop {
                    return;
                }
                t.ops += 1;
                t.ops
            };
            let tag = format!("{}.{task}#{op}", p.node());
            let result = match p.random() % 5 {
                0 | 1 => self.transfer(&p, &tag).await,
                2 => self.audit(&p, &tag).await,
                _ => self.append_block(&p, &tag).await,
            };
            self.outcome(result);
            p.sleep(Duration::from_millis(20 + p.random() % 40)).await;
        }
    }
}

/// Starts worker `name`: its init spawns `tasks` workload tasks on its platform (again after
/// every restart).
fn txn_worker(env: &SimEnv, name: &str, kv: &SimKv, w: &TxnWorkload, tasks: u32) -> SimEnv {
    let (kv, w) = (kv.clone(), w.clone());
    env.create_node(name)
        .init(move |node| {
            let (p, w) = (SimPlatform::new(node, kv.clone()), w.clone());
            // Spawn from the init task, not from the closure: the closure runs inside the
            // simulator's restart, where a spawn may trigger a fault tick (see the report).
            async move {
                for task in 0..tasks {
                    p.spawn(w.clone().run(p.clone(), task));
                }
                // A node whose init task returns exits (madsim), taking its tasks with it.
                std::future::pending::<()>().await;
            }
        })
        .build()
}

/// Writes the initial accounts (retrying: faults may already fire) and returns them as the
/// checker's initial state.
async fn seed_accounts(env: &SimEnv, db: &SimEnv, kv: &SimKv) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut initial = BTreeMap::new();
    for i in 0..ACCOUNTS {
        let value = balance_value(INITIAL_BALANCE, "init");
        loop {
            until_up(env, db).await;
            let mut tx = kv.transaction();
            tx.set(&account(i), &value);
            if tx.commit().await.is_ok() || kv.get(&account(i)).await == Ok(Some(value.clone())) {
                break;
            }
        }
        initial.insert(account(i), value);
    }
    initial
}

/// Two workers run transfers, audits and memory-block appends for `duration` of virtual time;
/// then the history must be serializable, the store must hold the last committed versions,
/// money must be conserved and no block append may be lost.
async fn serializable_workload(
    env: SimEnv,
    adapter: AdapterConfig,
    mode: Mode,
    duration: Duration,
    required: &[FaultKind],
) -> Result<(), String> {
    let db = env.create_node("db").build();
    let kv = SimKv::new(&db);
    let initial = seed_accounts(&env, &db, &kv).await;
    let w = TxnWorkload {
        checker: SerializableIsolation::with_initial(initial),
        tally: Arc::new(Mutex::new(Tally::default())),
        adapter,
    };
    txn_worker(&env, "w1", &kv, &w, 3);
    txn_worker(&env, "w2", &kv, &w, 3);
    env.sleep(duration).await;
    lock(&w.tally).stop = true;
    // Every operation in flight ends within a few storage latencies.
    env.sleep(Duration::from_secs(2)).await;

    let mut state = final_state(&env, &db, &kv).await;
    block_texts(&env, &db, &kv, &mut state).await;
    let tally = std::mem::take(&mut *lock(&w.tally));
    let report = w
        .checker
        .check(&state)
        .map_err(|v| format!("{v}\n  ({} transactions recorded)", w.checker.len()))?;
    if let Some(problem) = tally.problems.first() {
        return Err(problem.clone());
    }
    let total: u64 = (0..ACCOUNTS)
        .map(|i| parse_balance(state.get(&account(i)).cloned()))
        .sum::<Result<u64, _>>()
        .map_err(|e| e.to_string())?;
    if total != ACCOUNTS * INITIAL_BALANCE {
        return Err(format!("money not conserved: total {total}"));
    }
    for (label, tags) in &tally.appended {
        let stored = state
            .get(&AgentKeys::block(BLOCK_AGENT, label))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        for tag in tags {
            let times = stored.split(';').filter(|t| t == tag).count();
            if times != 1 {
                return Err(format!(
                    "lost update: committed append {tag} appears {times} times in block {label}"
                ));
            }
        }
    }
    env.trace(format!("serializable: {report}"));
    exercised(&env, mode, required, report.committed as u64, tally.failed)?;
    if mode == Mode::Check {
        kelpie::sometimes!(
            tally.conflicts > 0,
            "transactions conflicted (the workload is concurrent)"
        );
    }
    Ok(())
}

/// Realistic faults: 2 % write failures, 1 % crashes mid-commit, a node crash every second
/// or so, and ordinary storage latency (which is what lets transactions interleave).
#[kelpie::dst_test(
    seeds = 0..20,
    faults = [
        StorageLatency(0.5, max_ms = 5),
        StorageWriteFail(0.02),
        CrashDuringTransaction(0.01),
        NodeCrash(0.01, restart_ms = 200),
    ]
)]
async fn concurrent_transactions_are_serializable(env: SimEnv) -> Result<(), String> {
    let required = [
        FaultKind::StorageWriteFail,
        FaultKind::CrashDuringTransaction,
        FaultKind::NodeCrash,
    ];
    let duration = Duration::from_secs(10);
    serializable_workload(
        env,
        AdapterConfig::default(),
        Mode::Check,
        duration,
        &required,
    )
    .await
}

/// Chaos: a quarter of writes fail, a fifth of commits crash the database, nodes crash every
/// few hundred milliseconds.
#[kelpie::dst_test(
    seeds = 0..20,
    fault_tick = "50ms",
    faults = [
        StorageLatency(0.3, max_ms = 20),
        StorageWriteFail(0.25),
        CrashDuringTransaction(0.2),
        NodeCrash(0.25, restart_ms = 100),
    ]
)]
async fn transactions_stay_serializable_under_chaos(env: SimEnv) -> Result<(), String> {
    let required = [
        FaultKind::StorageWriteFail,
        FaultKind::CrashDuringTransaction,
        FaultKind::NodeCrash,
    ];
    let duration = Duration::from_secs(5);
    serializable_workload(
        env,
        AdapterConfig::default(),
        Mode::Check,
        duration,
        &required,
    )
    .await
}

/// Canary: memory-block updates done with a plain `get` + `set` (no conflict validation)
/// lose updates when the workers interleave; the serializability check must find a seed.
#[kelpie::dst_test(
    seeds = 0..50,
    canary,
    faults = [StorageLatency(0.5, max_ms = 5), StorageWriteFail(0.02)]
)]
async fn canary_unvalidated_update_loses_updates(env: SimEnv) -> Result<(), String> {
    let adapter = AdapterConfig {
        bug: Some(AdapterBug::UnvalidatedUpdate),
        ..AdapterConfig::default()
    };
    serializable_workload(env, adapter, Mode::Canary, Duration::from_secs(3), &[]).await
}

// ---------------------------------------------------------------------------------------------
// Checkpoints through the agent API
// ---------------------------------------------------------------------------------------------

const AGENTS: u32 = 4;

#[derive(Debug, Default)]
struct Clients {
    /// Per agent: the index of the next message to send (the client's own memory, which
    /// survives a crash of the worker it talks through).
    next: BTreeMap<String, u32>,
    ok: u64,
    failed: u64,
    duplicates: u64,
    /// The first violation seen.
    violation: Option<String>,
}

#[derive(Clone)]
struct CheckpointWorkload {
    checker: MessageDurability,
    clients: Arc<Mutex<Clients>>,
    adapter: AdapterConfig,
    messages: u32,
}

impl CheckpointWorkload {
    /// The agent's client: creates the agent, then sends its messages one by one, retrying
    /// each (same request id) until it is acknowledged. After every attempt, and while no
    /// other checkpoint of this agent is in flight, the API's view must be consistent.
    async fn client(self, p: SimPlatform, agent: String) {
        let api = AgentStorage::with_config(p.kv(), self.adapter.clone());
        let new = NewAgent::new(agent.as_str(), format!("Agent {agent}"), "be helpful");
        while api
            .create_agent(&new, p.now().as_millis() as u64)
            .await
            .is_err()
        {
            p.sleep(Duration::from_millis(20)).await;
        }
        loop {
            let i = *lock(&self.clients).next.entry(agent.clone()).or_default();
            if i >= self.messages {
                return;
            }
            let session = format!("s{}", i / 4);
            // Request ids are at most 128 characters like agent ids: a short digest of the
            // agent instead of the (possibly 128-character) agent id itself.
            let tag = kelpie_actors::state_digest(agent.as_bytes()) & 0xffff_ffff;
            let msg = NewMessage::new(
                format!("{tag:08x}-r{i}"),
                Role::User,
                format!("hello {i} from {agent}"),
            );
            self.checker.attempt(&agent, &session, &msg);
            let result = api.checkpoint(&agent, &session, &msg).await;
            {
                let mut c = lock(&self.clients);
                match &result {
                    Ok(done) => {
                        c.ok += 1;
                        c.duplicates += u64::from(done.duplicate);
                        *c.next.entry(agent.clone()).or_default() += 1;
                        self.checker.ack(&agent, &msg.request_id, done.seq);
                    }
                    Err(_) => c.failed += 1,
                }
            }
            if let Ok(snap) = AgentSnapshot::read(&api, &agent).await {
                if let Err(v) = self.checker.check(&snap) {
                    lock(&self.clients).violation.get_or_insert(v.to_string());
                    return;
                }
            }
            p.sleep(Duration::from_millis(50 + p.random() % 100)).await;
        }
    }
}

fn checkpoint_worker(
    env: &SimEnv,
    name: &str,
    kv: &SimKv,
    w: &CheckpointWorkload,
    agents: Vec<String>,
) -> SimEnv {
    let (kv, w) = (kv.clone(), w.clone());
    env.create_node(name)
        .init(move |node| {
            let (p, w, agents) = (
                SimPlatform::new(node, kv.clone()),
                w.clone(),
                agents.clone(),
            );
            async move {
                for agent in agents {
                    p.spawn(w.clone().client(p.clone(), agent));
                }
                // A node whose init task returns exits (madsim), taking its tasks with it.
                std::future::pending::<()>().await;
            }
        })
        .build()
}

/// Four agents' clients, two per worker, checkpoint `messages` messages each concurrently.
/// Every acknowledged message must be listed once, checkpoints must never be torn, and every
/// agent must end with all its messages.
async fn checkpoint_workload(
    env: SimEnv,
    adapter: AdapterConfig,
    mode: Mode,
    messages: u32,
    required: &[FaultKind],
) -> Result<(), String> {
    let db = env.create_node("db").build();
    let kv = SimKv::new(&db);
    let w = CheckpointWorkload {
        checker: MessageDurability::new(),
        clients: Arc::new(Mutex::new(Clients::default())),
        adapter,
        messages,
    };
    // Generated ids: always a chain of prefixes (`x`, `xy`, `xyz`) and a 128-character one,
    // so that a prefix scan that leaks between agents (`messages/x` listing `messages/xy/…`)
    // shows up as a message of another agent.
    let agents = IdGen::new(Alphabet::ActorId, 1, 128).distinct(&env.rng(), AGENTS as usize);
    let (even, odd): (Vec<String>, Vec<String>) = (
        agents.iter().step_by(2).cloned().collect(),
        agents.iter().skip(1).step_by(2).cloned().collect(),
    );
    checkpoint_worker(&env, "w1", &kv, &w, even);
    checkpoint_worker(&env, "w2", &kv, &w, odd);
    let deadline = Duration::from_secs(120);
    loop {
        let finished = {
            let c = lock(&w.clients);
            let done = c.next.len() == agents.len() && c.next.values().all(|n| *n >= messages);
            done || c.violation.is_some()
        };
        if finished || env.elapsed() > deadline {
            break;
        }
        env.sleep(Duration::from_millis(100)).await;
    }
    if let Some(v) = lock(&w.clients).violation.clone() {
        return Err(v);
    }
    let api = AgentStorage::new(kv.clone());
    let mut listed = 0;
    for agent in &agents {
        let snap = loop {
            until_up(&env, &db).await;
            if let Ok(snap) = AgentSnapshot::read(&api, agent).await {
                break snap;
            }
        };
        listed += w.checker.check(&snap).map_err(|v| v.to_string())?;
    }
    let c = lock(&w.clients);
    if listed != (AGENTS * messages) as usize {
        return Err(format!(
            "{listed} messages listed, expected {} (clients stuck? {:?})",
            AGENTS * messages,
            c.next
        ));
    }
    env.trace(format!(
        "checkpoints: {} ok ({} retried duplicates), {} failed",
        c.ok, c.duplicates, c.failed
    ));
    exercised(&env, mode, required, c.ok, c.failed)
}

/// Realistic faults on the agent API's checkpoints.
#[kelpie::dst_test(
    seeds = 0..20,
    faults = [
        StorageLatency(0.5, max_ms = 5),
        StorageWriteFail(0.02),
        CrashDuringTransaction(0.02),
        NodeCrash(0.01, restart_ms = 200),
    ]
)]
async fn checkpoints_are_atomic_and_exactly_once(env: SimEnv) -> Result<(), String> {
    let required = [
        FaultKind::StorageWriteFail,
        FaultKind::CrashDuringTransaction,
        FaultKind::NodeCrash,
    ];
    checkpoint_workload(env, AdapterConfig::default(), Mode::Check, 100, &required).await
}

/// Chaos on the agent API's checkpoints.
#[kelpie::dst_test(
    seeds = 0..20,
    fault_tick = "50ms",
    faults = [
        StorageLatency(0.3, max_ms = 20),
        StorageWriteFail(0.25),
        CrashDuringTransaction(0.2),
        NodeCrash(0.25, restart_ms = 100),
    ]
)]
async fn checkpoints_survive_chaos(env: SimEnv) -> Result<(), String> {
    let required = [
        FaultKind::StorageWriteFail,
        FaultKind::CrashDuringTransaction,
        FaultKind::NodeCrash,
    ];
    checkpoint_workload(env, AdapterConfig::default(), Mode::Check, 30, &required).await
}

/// Canary: a checkpoint written as four separate writes tears when one of them fails; the
/// message checker must find a seed.
#[kelpie::dst_test(
    seeds = 0..50,
    canary,
    faults = [StorageLatency(0.5, max_ms = 5), StorageWriteFail(0.02), NodeCrash(0.01, restart_ms = 200)]
)]
async fn canary_torn_checkpoint_is_caught(env: SimEnv) -> Result<(), String> {
    let adapter = AdapterConfig {
        bug: Some(AdapterBug::TornCheckpoint),
        ..AdapterConfig::default()
    };
    checkpoint_workload(env, adapter, Mode::Canary, 20, &[]).await
}

/// Canary for the generated agent ids: listing an agent's messages with a prefix that lacks
/// its trailing separator also lists the messages of every agent whose id extends it. With
/// ids of which none is a prefix of another (`agent-0`..`agent-3`) this bug is invisible; the
/// generated ids always contain a prefix chain, and the message checker finds a message the
/// agent never received.
#[kelpie::dst_test(seeds = 0..20, canary, faults = [StorageLatency(0.5, max_ms = 5)])]
async fn canary_unterminated_prefix_lists_another_agents_messages(
    env: SimEnv,
) -> Result<(), String> {
    let adapter = AdapterConfig {
        bug: Some(AdapterBug::UnterminatedPrefix),
        ..AdapterConfig::default()
    };
    checkpoint_workload(env, adapter, Mode::Canary, 20, &[]).await
}

/// Memory blocks and tools round-trip through the agent API under generated names (agent ids
/// forming a prefix chain, a 128-character one, labels and tool names likewise): every block
/// reads back as written, an agent lists exactly its own blocks, and every tool reads back.
#[kelpie::dst_test(seeds = 0..10)]
async fn blocks_and_tools_round_trip_on_generated_names(env: SimEnv) -> Result<(), String> {
    let db = env.create_node("db").build();
    let api = AgentStorage::new(SimKv::new(&db));
    let rng = env.rng();
    let err = |e: ActorError| e.to_string();
    let agents = IdGen::new(Alphabet::ActorId, 1, 128).distinct(&rng, 4);
    let labels = IdGen::new(Alphabet::ActorId, 1, 40).distinct(&rng, 3);
    let mut model: BTreeMap<(String, String), String> = BTreeMap::new();
    for agent in &agents {
        for label in &labels {
            if rng.gen_bool(0.7) {
                let value = format!("{agent}/{label}/{}", rng.next_u64());
                let block = MemoryBlock {
                    agent: agent.clone(),
                    label: label.clone(),
                    value: value.clone(),
                };
                api.put_block(&block).await.map_err(err)?;
                model.insert((agent.clone(), label.clone()), value);
            }
        }
    }
    for agent in &agents {
        for label in &labels {
            let got = api
                .get_block(agent, label)
                .await
                .map_err(err)?
                .map(|b| b.value);
            let want = model.get(&(agent.clone(), label.clone()));
            if got.as_ref() != want {
                return Err(format!(
                    "block {agent}/{label} reads {got:?}, {want:?} was written"
                ));
            }
        }
        let listed: Vec<String> = api
            .list_blocks(agent)
            .await
            .map_err(err)?
            .into_iter()
            .map(|b| b.label)
            .collect();
        let want: Vec<String> = model
            .keys()
            .filter(|(a, _)| a == agent)
            .map(|(_, l)| l.clone())
            .collect();
        if listed != want {
            return Err(format!(
                "agent {agent} lists blocks {listed:?}, owns {want:?}"
            ));
        }
    }
    let tools = IdGen::new(Alphabet::ActorId, 1, 128).distinct(&rng, 4);
    for name in &tools {
        let tool = ToolRecord {
            name: name.clone(),
            description: format!("tool {name}"),
            schema: JsonValue::from(name.as_str()),
        };
        api.put_tool(&tool).await.map_err(err)?;
    }
    for name in &tools {
        match api.get_tool(name).await.map_err(err)? {
            Some(t) if t.description == format!("tool {name}") => {}
            other => return Err(format!("tool {name} reads {other:?}")),
        }
    }
    Ok(())
}

/// Tools under generated names (a prefix chain, a 128-character name): every tool written is
/// listed once, in name order; after deleting a random subset, exactly the deleted ones read
/// back as absent and the list holds exactly the rest.
#[kelpie::dst_test(seeds = 0..10)]
async fn tools_list_and_delete_on_generated_names(env: SimEnv) -> Result<(), String> {
    let db = env.create_node("db").build();
    let api = AgentStorage::new(SimKv::new(&db));
    let rng = env.rng();
    let err = |e: ActorError| e.to_string();
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    for name in IdGen::new(Alphabet::ActorId, 1, 128).distinct(&rng, 6) {
        let tool = ToolRecord {
            name: name.clone(),
            description: format!("tool {name} {}", rng.next_u64()),
            schema: JsonValue::from(name.as_str()),
        };
        api.put_tool(&tool).await.map_err(err)?;
        model.insert(name, tool.description);
    }
    let listed = |tools: Vec<ToolRecord>| -> Vec<(String, String)> {
        tools.into_iter().map(|t| (t.name, t.description)).collect()
    };
    let want: Vec<(String, String)> = model.clone().into_iter().collect();
    let got = listed(api.list_tools().await.map_err(err)?);
    if got != want {
        return Err(format!("tools list as {got:?}, {want:?} were written"));
    }
    let names: Vec<String> = model.keys().cloned().collect();
    let mut deleted = Vec::new();
    for name in &names {
        if rng.gen_bool(0.5) {
            api.delete_tool(name).await.map_err(err)?;
            model.remove(name);
            deleted.push(name.clone());
        }
    }
    for name in &names {
        let got = api
            .get_tool(name)
            .await
            .map_err(err)?
            .map(|t| t.description);
        if got.as_ref() != model.get(name) {
            return Err(format!(
                "tool {name:?} reads {got:?} after deleting {deleted:?}, expected {:?}",
                model.get(name)
            ));
        }
    }
    let want: Vec<(String, String)> = model.into_iter().collect();
    let got = listed(api.list_tools().await.map_err(err)?);
    if got != want {
        return Err(format!(
            "after deleting {deleted:?} tools list as {got:?}, expected {want:?}"
        ));
    }
    kelpie::sometimes!(!deleted.is_empty(), "a tool was deleted");
    Ok(())
}

/// The agent storage retries a conflicting read-modify-write exactly as often as its config
/// says (`conflict_retries`, drawn per seed), then returns the conflict: the store counts one
/// commit more than the retries, and nothing was written. The storage reports the config it
/// was given.
#[kelpie::dst_test(seeds = 0..10)]
async fn conflicts_are_retried_exactly_as_configured(env: SimEnv) -> Result<(), String> {
    let db = env.create_node("db").build();
    let kv = AlwaysConflicting::new(SimKv::new(&db));
    let retries = env.rng().gen_range(0..6) as u32;
    let config = AdapterConfig {
        conflict_retries: retries,
        ..AdapterConfig::default()
    };
    let api = AgentStorage::with_config(kv.clone(), config.clone());
    if api.config() != &config {
        return Err(format!(
            "the storage reports config {:?}, was given {config:?}",
            api.config()
        ));
    }
    let result = api.create_agent(&NewAgent::new("a", "A", "s"), 0).await;
    let attempts = kv.commits();
    if !matches!(result, Err(ActorError::Kv(KvError::Conflict { .. }))) {
        return Err(format!(
            "create_agent on an always-conflicting store returned {result:?}"
        ));
    }
    if attempts != u64::from(retries) + 1 {
        return Err(format!(
            "{attempts} commits for conflict_retries = {retries} (expected {})",
            retries + 1
        ));
    }
    if let Some(v) = kv
        .inner()
        .get(&AgentKeys::agent("a"))
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!("a refused create left a record: {v:?}"));
    }
    // The block update has its own read-modify-write loop: the same bound.
    let before = kv.commits();
    let result = api
        .update_block("a", "notes", |old| format!("{old:?}+"))
        .await;
    let attempts = kv.commits() - before;
    if !matches!(result, Err(ActorError::Kv(KvError::Conflict { .. })))
        || attempts != u64::from(retries) + 1
    {
        return Err(format!(
            "update_block: {attempts} commits for conflict_retries = {retries}, returned \
             {result:?}"
        ));
    }
    Ok(())
}

/// Agents under generated ids (a prefix chain, a 128-character id): every agent created is
/// listed exactly once, in id order, with its name; creating one again changes nothing.
#[kelpie::dst_test(seeds = 0..10)]
async fn agents_list_exactly_once_on_generated_ids(env: SimEnv) -> Result<(), String> {
    let db = env.create_node("db").build();
    let api = AgentStorage::new(SimKv::new(&db));
    let rng = env.rng();
    let err = |e: ActorError| e.to_string();
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    for id in IdGen::new(Alphabet::ActorId, 1, 128).distinct(&rng, 6) {
        let name = format!("agent {}", rng.next_u64());
        api.create_agent(&NewAgent::new(id.clone(), name.clone(), "s"), 0)
            .await
            .map_err(err)?;
        model.insert(id, name);
    }
    let again = model.keys().next().cloned().unwrap_or_default();
    api.create_agent(&NewAgent::new(again, "renamed", "s"), 1)
        .await
        .map_err(err)?;
    let listed: Vec<(String, String)> = api
        .list_agents()
        .await
        .map_err(err)?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    let want: Vec<(String, String)> = model.into_iter().collect();
    if listed != want {
        return Err(format!("agents list as {listed:?}, {want:?} were created"));
    }
    Ok(())
}
