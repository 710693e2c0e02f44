//! Typed agent storage over any [`ActorKV`]: [`AgentStorage`] (the API), [`AgentTx`] (the same
//! reads and writes inside a caller's transaction, for actors) and [`AgentKeys`] (the layout).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ActorError, KvError};
use crate::kv::{ActorId, ActorKV, KvTransaction};

/// The key layout of [`AgentStorage`]. Every name is 1 to 128 characters of
/// `[A-Za-z0-9_.:-]` (the [`ActorId`] rules), so `/` separates levels unambiguously:
///
/// | key | value |
/// |---|---|
/// | `agents/{agent}` | [`AgentRecord`] |
/// | `sessions/{agent}/{session}` | [`SessionRecord`] |
/// | `messages/{agent}/{seq:020}` | [`Message`] (zero-padded: a scan lists them in order) |
/// | `requests/{agent}/{request_id}` | the seq a request was stored at (idempotency) |
/// | `blocks/{agent}/{label}` | [`MemoryBlock`] |
/// | `tools/{name}` | [`ToolRecord`] |
#[derive(Debug, Clone, Copy)]
pub struct AgentKeys;

impl AgentKeys {
    /// Prefix of every agent record.
    pub const AGENTS: &'static str = "agents/";
    /// Prefix of every custom tool.
    pub const TOOLS: &'static str = "tools/";

    /// `agents/{agent}`.
    pub fn agent(agent: &str) -> Vec<u8> {
        format!("agents/{agent}").into_bytes()
    }

    /// `sessions/{agent}/{session}`.
    pub fn session(agent: &str, session: &str) -> Vec<u8> {
        format!("sessions/{agent}/{session}").into_bytes()
    }

    /// `sessions/{agent}/`: the prefix of the agent's sessions.
    pub fn sessions(agent: &str) -> Vec<u8> {
        format!("sessions/{agent}/").into_bytes()
    }

    /// `messages/{agent}/{seq:020}`.
    pub fn message(agent: &str, seq: u64) -> Vec<u8> {
        format!("messages/{agent}/{seq:020}").into_bytes()
    }

    /// `messages/{agent}/`: the prefix of the agent's messages, which a scan lists in order.
    pub fn messages(agent: &str) -> Vec<u8> {
        format!("messages/{agent}/").into_bytes()
    }

    /// `requests/{agent}/{request_id}`: where a request's seq is remembered.
    pub fn request(agent: &str, request_id: &str) -> Vec<u8> {
        format!("requests/{agent}/{request_id}").into_bytes()
    }

    /// `blocks/{agent}/{label}`.
    pub fn block(agent: &str, label: &str) -> Vec<u8> {
        format!("blocks/{agent}/{label}").into_bytes()
    }

    /// `blocks/{agent}/`: the prefix of the agent's memory blocks.
    pub fn blocks(agent: &str) -> Vec<u8> {
        format!("blocks/{agent}/").into_bytes()
    }

    /// `tools/{name}`.
    pub fn tool(name: &str) -> Vec<u8> {
        format!("tools/{name}").into_bytes()
    }
}

/// An agent, as the API creates it and the actor advances it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The agent's id (its actor is `agents/{id}`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// System prompt.
    pub system: String,
    /// Creation time, in milliseconds of the creating node's clock.
    pub created_ms: u64,
    /// The seq the next message gets; advanced only by a checkpoint, in the same transaction
    /// as the message it numbers.
    pub next_seq: u64,
}

/// What the API needs to create an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAgent {
    /// The agent's id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// System prompt.
    pub system: String,
}

impl NewAgent {
    /// An agent `id` named `name` with system prompt `system`.
    pub fn new(id: impl Into<String>, name: impl Into<String>, system: impl Into<String>) -> Self {
        NewAgent {
            id: id.into(),
            name: name.into(),
            system: system.into(),
        }
    }
}

/// A conversation of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The agent.
    pub agent: String,
    /// The session's id.
    pub id: String,
    /// Messages checkpointed in this session.
    pub message_count: u64,
    /// Seq of the session's last message.
    pub last_seq: Option<u64>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The user.
    User,
    /// The agent.
    Assistant,
    /// The system.
    System,
    /// A tool's output.
    Tool,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The agent.
    pub agent: String,
    /// The session.
    pub session: String,
    /// Position in the agent's log, from 0, without gaps.
    pub seq: u64,
    /// The client's idempotency key.
    pub request_id: String,
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
}

/// A message to checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    /// The client's idempotency key: a retry with the same key stores nothing new.
    pub request_id: String,
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl NewMessage {
    /// A message with idempotency key `request_id`.
    pub fn new(request_id: impl Into<String>, role: Role, content: impl Into<String>) -> Self {
        NewMessage {
            request_id: request_id.into(),
            role,
            content: content.into(),
        }
    }
}

/// The outcome of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpointed {
    /// The message's seq.
    pub seq: u64,
    /// `true` if the request id was already stored (a retry): nothing new was written.
    pub duplicate: bool,
}

/// A labelled piece of an agent's core memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBlock {
    /// The agent.
    pub agent: String,
    /// The block's label (`persona`, `human`, ...).
    pub label: String,
    /// The block's text.
    pub value: String,
}

/// A custom tool available to agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRecord {
    /// The tool's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its JSON schema.
    pub schema: serde_json::Value,
}

/// Settings of [`AgentStorage`]. Defaults: `conflict_retries` 16.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterConfig {
    /// How often a read-modify-write (create, checkpoint, block update) retries after a
    /// [`KvError::Conflict`] before returning it.
    pub conflict_retries: u32,
    /// A planted bug, for canary tests only; `None` by default.
    #[cfg(feature = "canaries")]
    pub bug: Option<AdapterBug>,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            conflict_retries: 16,
            #[cfg(feature = "canaries")]
            bug: None,
        }
    }
}

/// Planted bugs of [`AgentStorage`] (feature `canaries`), each of which an invariant checker
/// must catch.
#[cfg(feature = "canaries")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterBug {
    /// `checkpoint` writes the message, the session, the agent and the request record as four
    /// separate writes instead of one transaction: a failure or crash between them leaves a
    /// torn checkpoint.
    TornCheckpoint,
    /// `update_block` reads with a plain `get` and writes with a plain `set`, skipping
    /// conflict validation: concurrent updates lose each other's changes.
    UnvalidatedUpdate,
    /// `list_messages` scans `messages/{agent}` without the trailing separator, so the
    /// messages of every agent whose id extends this one (`a` and `ab`) are listed too.
    /// Invisible to ids of which none is a prefix of another.
    UnterminatedPrefix,
}

fn lossy(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn decode<V: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<V, ActorError> {
    serde_json::from_slice(bytes).map_err(|e| ActorError::Corrupt {
        key: lossy(key),
        reason: e.to_string(),
    })
}

fn encode<V: Serialize>(key: &[u8], value: &V) -> Result<Vec<u8>, ActorError> {
    serde_json::to_vec(value).map_err(|e| ActorError::Corrupt {
        key: lossy(key),
        reason: e.to_string(),
    })
}

/// Checks a name used as a key level (the [`ActorId`] rules: no `/`, 1 to 128 characters).
fn check_name(kind: &str, name: &str) -> Result<(), ActorError> {
    ActorId::new(kind, name).map(drop)
}

fn not_found(what: String) -> ActorError {
    ActorError::NotFound { what }
}

/// Typed reads and writes inside a caller's transaction: how an actor commits agent state in
/// its own (fenced) transaction, and what every [`AgentStorage`] write runs on.
///
/// ```
/// use kelpie_actors::{ActorKV, AgentStorage, AgentTx, KvTransaction, MemoryKv, NewAgent,
///                     NewMessage, Role};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let kv = MemoryKv::new();
/// let api = AgentStorage::new(kv.clone());
/// api.create_agent(&NewAgent::new("bob", "Bob", ""), 0).await.unwrap();
/// let mut txn = kv.transaction(); // an actor would use its fenced transaction here
/// let done = AgentTx::new(&mut txn)
///     .checkpoint("bob", "s1", &NewMessage::new("r1", Role::User, "hi"))
///     .await
///     .unwrap();
/// txn.commit().await.unwrap();
/// assert_eq!(api.list_messages("bob").await.unwrap()[0].seq, done.seq);
/// # });
/// ```
#[derive(Debug)]
pub struct AgentTx<'a, T: KvTransaction> {
    txn: &'a mut T,
}

impl<'a, T: KvTransaction> AgentTx<'a, T> {
    /// Typed access to `txn`; the caller commits it.
    pub fn new(txn: &'a mut T) -> Self {
        AgentTx { txn }
    }

    async fn read<V: DeserializeOwned>(&mut self, key: &[u8]) -> Result<Option<V>, ActorError> {
        match self.txn.get(key).await? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn write<V: Serialize>(&mut self, key: &[u8], value: &V) -> Result<(), ActorError> {
        let bytes = encode(key, value)?;
        self.txn.set(key, &bytes);
        Ok(())
    }

    /// Reads an agent.
    pub async fn get_agent(&mut self, agent: &str) -> Result<Option<AgentRecord>, ActorError> {
        check_name("agents", agent)?;
        self.read(&AgentKeys::agent(agent)).await
    }

    /// Creates an agent unless it exists; returns the stored record either way (so a retry
    /// after [`KvError::OutcomeUnknown`] is safe).
    pub async fn create_agent(
        &mut self,
        new: &NewAgent,
        created_ms: u64,
    ) -> Result<AgentRecord, ActorError> {
        if let Some(existing) = self.get_agent(&new.id).await? {
            return Ok(existing);
        }
        let record = AgentRecord {
            id: new.id.clone(),
            name: new.name.clone(),
            system: new.system.clone(),
            created_ms,
            next_seq: 0,
        };
        self.write(&AgentKeys::agent(&new.id), &record)?;
        Ok(record)
    }

    /// Renames an agent or changes its system prompt, keeping its message counter.
    pub async fn update_agent(
        &mut self,
        agent: &str,
        name: &str,
        system: &str,
    ) -> Result<AgentRecord, ActorError> {
        let mut record = self
            .get_agent(agent)
            .await?
            .ok_or_else(|| not_found(format!("agent {agent}")))?;
        record.name = name.to_string();
        record.system = system.to_string();
        self.write(&AgentKeys::agent(agent), &record)?;
        Ok(record)
    }

    /// Reads a session.
    pub async fn get_session(
        &mut self,
        agent: &str,
        session: &str,
    ) -> Result<Option<SessionRecord>, ActorError> {
        check_name("sessions", session)?;
        check_name("agents", agent)?;
        self.read(&AgentKeys::session(agent, session)).await
    }

    /// Stores `message` in `session` of `agent` together with the session and the agent's
    /// message counter: one checkpoint, all in this transaction. A request id seen before
    /// returns its seq with `duplicate: true` and writes nothing. The agent must exist; the
    /// session is created by its first message.
    pub async fn checkpoint(
        &mut self,
        agent: &str,
        session: &str,
        message: &NewMessage,
    ) -> Result<Checkpointed, ActorError> {
        check_name("requests", &message.request_id)?;
        let plan = plan_checkpoint(self, agent, session, message).await?;
        match plan {
            CheckpointPlan::Duplicate(seq) => Ok(Checkpointed {
                seq,
                duplicate: true,
            }),
            CheckpointPlan::Write(w) => {
                self.write(&w.message_key, &w.message)?;
                self.write(&w.session_key, &w.session)?;
                self.write(&w.agent_key, &w.agent)?;
                self.write(&w.request_key, &w.message.seq)?;
                Ok(Checkpointed {
                    seq: w.message.seq,
                    duplicate: false,
                })
            }
        }
    }

    /// Reads a memory block.
    pub async fn get_block(
        &mut self,
        agent: &str,
        label: &str,
    ) -> Result<Option<MemoryBlock>, ActorError> {
        check_name("agents", agent)?;
        check_name("blocks", label)?;
        self.read(&AgentKeys::block(agent, label)).await
    }

    /// Writes a memory block.
    pub fn put_block(&mut self, block: &MemoryBlock) -> Result<(), ActorError> {
        check_name("agents", &block.agent)?;
        check_name("blocks", &block.label)?;
        self.write(&AgentKeys::block(&block.agent, &block.label), block)
    }

    /// Writes a custom tool.
    pub fn put_tool(&mut self, tool: &ToolRecord) -> Result<(), ActorError> {
        check_name("tools", &tool.name)?;
        self.write(&AgentKeys::tool(&tool.name), tool)
    }

    /// Deletes a custom tool.
    pub fn delete_tool(&mut self, name: &str) -> Result<(), ActorError> {
        check_name("tools", name)?;
        self.txn.delete(&AgentKeys::tool(name));
        Ok(())
    }
}

/// The writes of one checkpoint, decided from what was read.
struct CheckpointWrites {
    message_key: Vec<u8>,
    message: Message,
    session_key: Vec<u8>,
    session: SessionRecord,
    agent_key: Vec<u8>,
    agent: AgentRecord,
    request_key: Vec<u8>,
}

enum CheckpointPlan {
    Duplicate(u64),
    Write(Box<CheckpointWrites>),
}

/// Where a checkpoint reads from: a transaction, or (planted bug) the store directly.
trait CheckpointReads {
    fn read_json<V: DeserializeOwned + Send>(
        &mut self,
        key: &[u8],
    ) -> impl std::future::Future<Output = Result<Option<V>, ActorError>> + Send;
}

impl<T: KvTransaction> CheckpointReads for AgentTx<'_, T> {
    async fn read_json<V: DeserializeOwned + Send>(
        &mut self,
        key: &[u8],
    ) -> Result<Option<V>, ActorError> {
        self.read(key).await
    }
}

/// Reads what a checkpoint needs and decides its writes (shared by the transactional path and
/// the planted torn one, so they differ only in how they write).
async fn plan_checkpoint<R: CheckpointReads>(
    reads: &mut R,
    agent: &str,
    session: &str,
    message: &NewMessage,
) -> Result<CheckpointPlan, ActorError> {
    check_name("agents", agent)?;
    check_name("sessions", session)?;
    check_name("requests", &message.request_id)?;
    let agent_key = AgentKeys::agent(agent);
    let mut record: AgentRecord = reads
        .read_json(&agent_key)
        .await?
        .ok_or_else(|| not_found(format!("agent {agent}")))?;
    let request_key = AgentKeys::request(agent, &message.request_id);
    if let Some(seq) = reads.read_json::<u64>(&request_key).await? {
        return Ok(CheckpointPlan::Duplicate(seq));
    }
    let session_key = AgentKeys::session(agent, session);
    let mut session_record = reads
        .read_json::<SessionRecord>(&session_key)
        .await?
        .unwrap_or_else(|| SessionRecord {
            agent: agent.to_string(),
            id: session.to_string(),
            message_count: 0,
            last_seq: None,
        });
    let seq = record.next_seq;
    record.next_seq += 1;
    session_record.message_count += 1;
    session_record.last_seq = Some(seq);
    Ok(CheckpointPlan::Write(Box::new(CheckpointWrites {
        message_key: AgentKeys::message(agent, seq),
        message: Message {
            agent: agent.to_string(),
            session: session.to_string(),
            seq,
            request_id: message.request_id.clone(),
            role: message.role,
            content: message.content.clone(),
        },
        session_key,
        session: session_record,
        agent_key,
        agent: record,
        request_key,
    })))
}

/// Typed agent storage: agents, sessions, messages, memory blocks and custom tools, stored as
/// JSON under hierarchical keys ([`AgentKeys`]) so that prefix scans list them.
///
/// There is one storage path. The API (this type) and an actor writing in its own fenced
/// transaction ([`AgentTx`] over any [`KvTransaction`]) run the same code on the same keys, so
/// what the API reads is exactly the actor's state: no "split brain" between an actor's state
/// and the API's storage.
///
/// ```
/// use kelpie_actors::{AgentStorage, MemoryKv, NewAgent, NewMessage, Role};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let api = AgentStorage::new(MemoryKv::new());
/// api.create_agent(&NewAgent::new("alice", "Alice", "be brief"), 0).await.unwrap();
/// let msg = NewMessage::new("req-1", Role::User, "hello");
/// let first = api.checkpoint("alice", "s1", &msg).await.unwrap();
/// let retry = api.checkpoint("alice", "s1", &msg).await.unwrap(); // a client retry
/// assert_eq!((first.seq, retry.seq, retry.duplicate), (0, 0, true));
/// assert_eq!(api.list_messages("alice").await.unwrap().len(), 1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct AgentStorage<K: ActorKV> {
    kv: K,
    config: AdapterConfig,
}

impl<K: ActorKV> AgentStorage<K> {
    /// Storage on `kv` with the default config.
    pub fn new(kv: K) -> Self {
        Self::with_config(kv, AdapterConfig::default())
    }

    /// Storage on `kv` with `config`.
    pub fn with_config(kv: K, config: AdapterConfig) -> Self {
        AgentStorage { kv, config }
    }

    /// The underlying store.
    pub fn kv(&self) -> &K {
        &self.kv
    }

    /// The config.
    pub fn config(&self) -> &AdapterConfig {
        &self.config
    }

    async fn get_json<V: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<V>, ActorError> {
        match self.kv.get(key).await? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    async fn scan_json<V: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<V>, ActorError> {
        self.kv
            .scan_prefix(prefix)
            .await?
            .iter()
            .map(|(k, v)| decode(k, v))
            .collect()
    }

    /// Runs `attempt` in a fresh transaction (which it hands back with its result) and
    /// commits it, retrying on conflicts.
    async fn in_txn<V, F, Fut>(&self, mut attempt: F) -> Result<V, ActorError>
    where
        F: FnMut(K::Txn) -> Fut,
        Fut: std::future::Future<Output = (K::Txn, Result<V, ActorError>)>,
    {
        let mut tries = 0;
        loop {
            let (txn, value) = attempt(self.kv.transaction()).await;
            let value = value?;
            match txn.commit().await {
                Ok(()) => return Ok(value),
                Err(KvError::Conflict { .. }) if tries < self.config.conflict_retries => {
                    tries += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Creates an agent (idempotent: an existing agent is returned unchanged).
    pub async fn create_agent(
        &self,
        new: &NewAgent,
        created_ms: u64,
    ) -> Result<AgentRecord, ActorError> {
        self.in_txn(|mut txn| async move {
            let r = AgentTx::new(&mut txn).create_agent(new, created_ms).await;
            (txn, r)
        })
        .await
    }

    /// Renames an agent or changes its system prompt.
    pub async fn update_agent(
        &self,
        agent: &str,
        name: &str,
        system: &str,
    ) -> Result<AgentRecord, ActorError> {
        self.in_txn(|mut txn| async move {
            let r = AgentTx::new(&mut txn)
                .update_agent(agent, name, system)
                .await;
            (txn, r)
        })
        .await
    }

    /// Reads an agent.
    pub async fn get_agent(&self, agent: &str) -> Result<Option<AgentRecord>, ActorError> {
        check_name("agents", agent)?;
        self.get_json(&AgentKeys::agent(agent)).await
    }

    /// Every agent, by id.
    pub async fn list_agents(&self) -> Result<Vec<AgentRecord>, ActorError> {
        self.scan_json(AgentKeys::AGENTS.as_bytes()).await
    }

    /// Reads a session.
    pub async fn get_session(
        &self,
        agent: &str,
        session: &str,
    ) -> Result<Option<SessionRecord>, ActorError> {
        check_name("agents", agent)?;
        check_name("sessions", session)?;
        self.get_json(&AgentKeys::session(agent, session)).await
    }

    /// Every session of `agent`, by id.
    pub async fn list_sessions(&self, agent: &str) -> Result<Vec<SessionRecord>, ActorError> {
        check_name("agents", agent)?;
        self.scan_json(&AgentKeys::sessions(agent)).await
    }

    /// Stores a message and its session in one transaction (see [`AgentTx::checkpoint`]).
    /// After [`KvError::OutcomeUnknown`], retry with the same request id: the message is
    /// stored once.
    pub async fn checkpoint(
        &self,
        agent: &str,
        session: &str,
        message: &NewMessage,
    ) -> Result<Checkpointed, ActorError> {
        #[cfg(feature = "canaries")]
        if self.config.bug == Some(AdapterBug::TornCheckpoint) {
            return self.torn_checkpoint(agent, session, message).await;
        }
        self.in_txn(|mut txn| async move {
            let r = AgentTx::new(&mut txn)
                .checkpoint(agent, session, message)
                .await;
            (txn, r)
        })
        .await
    }

    /// Planted bug: the checkpoint's four writes, one after another.
    #[cfg(feature = "canaries")]
    async fn torn_checkpoint(
        &self,
        agent: &str,
        session: &str,
        message: &NewMessage,
    ) -> Result<Checkpointed, ActorError> {
        struct Direct<'a, K>(&'a K);
        impl<K: ActorKV> CheckpointReads for Direct<'_, K> {
            async fn read_json<V: DeserializeOwned + Send>(
                &mut self,
                key: &[u8],
            ) -> Result<Option<V>, ActorError> {
                match self.0.get(key).await? {
                    Some(bytes) => decode(key, &bytes).map(Some),
                    None => Ok(None),
                }
            }
        }
        match plan_checkpoint(&mut Direct(&self.kv), agent, session, message).await? {
            CheckpointPlan::Duplicate(seq) => Ok(Checkpointed {
                seq,
                duplicate: true,
            }),
            CheckpointPlan::Write(w) => {
                let kv = &self.kv;
                kv.set(&w.message_key, &encode(&w.message_key, &w.message)?)
                    .await?;
                kv.set(&w.session_key, &encode(&w.session_key, &w.session)?)
                    .await?;
                kv.set(&w.agent_key, &encode(&w.agent_key, &w.agent)?)
                    .await?;
                kv.set(&w.request_key, &encode(&w.request_key, &w.message.seq)?)
                    .await?;
                Ok(Checkpointed {
                    seq: w.message.seq,
                    duplicate: false,
                })
            }
        }
    }

    /// Every message of `agent`, in seq order.
    pub async fn list_messages(&self, agent: &str) -> Result<Vec<Message>, ActorError> {
        check_name("agents", agent)?;
        let prefix = AgentKeys::messages(agent);
        #[cfg(feature = "canaries")]
        let prefix = match self.config.bug {
            Some(AdapterBug::UnterminatedPrefix) => prefix[..prefix.len() - 1].to_vec(),
            _ => prefix,
        };
        self.scan_json(&prefix).await
    }

    /// Reads message `seq` of `agent`.
    pub async fn get_message(&self, agent: &str, seq: u64) -> Result<Option<Message>, ActorError> {
        check_name("agents", agent)?;
        self.get_json(&AgentKeys::message(agent, seq)).await
    }

    /// Reads a memory block.
    pub async fn get_block(
        &self,
        agent: &str,
        label: &str,
    ) -> Result<Option<MemoryBlock>, ActorError> {
        check_name("agents", agent)?;
        check_name("blocks", label)?;
        self.get_json(&AgentKeys::block(agent, label)).await
    }

    /// Every memory block of `agent`, by label.
    pub async fn list_blocks(&self, agent: &str) -> Result<Vec<MemoryBlock>, ActorError> {
        check_name("agents", agent)?;
        self.scan_json(&AgentKeys::blocks(agent)).await
    }

    /// Writes a memory block (a blind write; see [`AgentStorage::update_block`]).
    pub async fn put_block(&self, block: &MemoryBlock) -> Result<(), ActorError> {
        self.in_txn(|mut txn| async move {
            let r = AgentTx::new(&mut txn).put_block(block);
            (txn, r)
        })
        .await
    }

    /// Read-modify-write of a memory block in one transaction: `update` gets the current
    /// value (`None` if the block does not exist) and returns the new one. It may run several
    /// times (once per conflict retry); the returned value is the one stored.
    pub async fn update_block<F>(
        &self,
        agent: &str,
        label: &str,
        mut update: F,
    ) -> Result<String, ActorError>
    where
        F: FnMut(Option<&str>) -> String + Send,
    {
        check_name("agents", agent)?;
        check_name("blocks", label)?;
        #[cfg(feature = "canaries")]
        if self.config.bug == Some(AdapterBug::UnvalidatedUpdate) {
            let old = self.get_block(agent, label).await?;
            let value = update(old.as_ref().map(|b| b.value.as_str()));
            let block = MemoryBlock {
                agent: agent.to_string(),
                label: label.to_string(),
                value: value.clone(),
            };
            let key = AgentKeys::block(agent, label);
            self.kv.set(&key, &encode(&key, &block)?).await?;
            return Ok(value);
        }
        let mut tries = 0;
        loop {
            let mut txn = self.kv.transaction();
            let mut tx = AgentTx::new(&mut txn);
            let old = tx.get_block(agent, label).await?;
            let value = update(old.as_ref().map(|b| b.value.as_str()));
            tx.put_block(&MemoryBlock {
                agent: agent.to_string(),
                label: label.to_string(),
                value: value.clone(),
            })?;
            match txn.commit().await {
                Ok(()) => return Ok(value),
                Err(KvError::Conflict { .. }) if tries < self.config.conflict_retries => {
                    tries += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes a custom tool.
    pub async fn put_tool(&self, tool: &ToolRecord) -> Result<(), ActorError> {
        self.in_txn(|mut txn| async move {
            let r = AgentTx::new(&mut txn).put_tool(tool);
            (txn, r)
        })
        .await
    }

    /// Reads a custom tool.
    pub async fn get_tool(&self, name: &str) -> Result<Option<ToolRecord>, ActorError> {
        check_name("tools", name)?;
        self.get_json(&AgentKeys::tool(name)).await
    }

    /// Every custom tool, by name.
    pub async fn list_tools(&self) -> Result<Vec<ToolRecord>, ActorError> {
        self.scan_json(AgentKeys::TOOLS.as_bytes()).await
    }

    /// Deletes a custom tool.
    pub async fn delete_tool(&self, name: &str) -> Result<(), ActorError> {
        self.in_txn(|mut txn| async move {
            let r = AgentTx::new(&mut txn).delete_tool(name);
            (txn, r)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;

    fn api() -> AgentStorage<MemoryKv> {
        AgentStorage::new(MemoryKv::new())
    }

    #[tokio::test]
    async fn agents_are_created_once_and_listed_in_order() {
        let api = api();
        let a = api
            .create_agent(&NewAgent::new("b", "Bee", "sys"), 5)
            .await
            .unwrap();
        assert_eq!(a.created_ms, 5);
        // A retry (or a second create) returns the stored agent unchanged.
        let again = api
            .create_agent(&NewAgent::new("b", "Other", "x"), 9)
            .await
            .unwrap();
        assert_eq!(again, a);
        api.create_agent(&NewAgent::new("a", "Ay", ""), 1)
            .await
            .unwrap();
        let ids: Vec<_> = api
            .list_agents()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        let renamed = api.update_agent("b", "B2", "s2").await.unwrap();
        assert_eq!((renamed.name.as_str(), renamed.created_ms), ("B2", 5));
        assert!(matches!(
            api.update_agent("zz", "n", "s").await,
            Err(ActorError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn checkpoint_writes_message_session_and_counter_together() {
        let api = api();
        api.create_agent(&NewAgent::new("ag", "A", ""), 0)
            .await
            .unwrap();
        for i in 0..12u64 {
            let session = if i % 2 == 0 { "s1" } else { "s2" };
            let msg = NewMessage::new(format!("r{i}"), Role::User, format!("m{i}"));
            let done = api.checkpoint("ag", session, &msg).await.unwrap();
            assert_eq!(
                done,
                Checkpointed {
                    seq: i,
                    duplicate: false
                }
            );
        }
        // A retried request stores nothing new.
        let dup = api
            .checkpoint("ag", "s1", &NewMessage::new("r4", Role::User, "m4"))
            .await
            .unwrap();
        assert_eq!(
            dup,
            Checkpointed {
                seq: 4,
                duplicate: true
            }
        );
        let msgs = api.list_messages("ag").await.unwrap();
        // Zero-padded seqs list in numeric order past 9.
        assert_eq!(
            msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (0..12).collect::<Vec<_>>()
        );
        assert_eq!(msgs[10].content, "m10");
        let sessions = api.list_sessions("ag").await.unwrap();
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            (sessions[0].message_count, sessions[0].last_seq),
            (6, Some(10))
        );
        assert_eq!(api.get_agent("ag").await.unwrap().unwrap().next_seq, 12);
        assert_eq!(
            api.get_message("ag", 3).await.unwrap().unwrap().session,
            "s2"
        );
    }

    #[tokio::test]
    async fn checkpoint_needs_an_existing_agent_and_valid_names() {
        let api = api();
        let msg = NewMessage::new("r", Role::User, "x");
        assert!(matches!(
            api.checkpoint("ghost", "s", &msg).await,
            Err(ActorError::NotFound { .. })
        ));
        assert!(matches!(
            api.checkpoint("a/b", "s", &msg).await,
            Err(ActorError::InvalidActorId { .. })
        ));
        assert!(api.list_messages("ghost").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn prefix_scans_do_not_leak_between_agents() {
        let api = api();
        for id in ["a", "ab"] {
            api.create_agent(&NewAgent::new(id, id, ""), 0)
                .await
                .unwrap();
            api.checkpoint(id, "s", &NewMessage::new("r", Role::User, id))
                .await
                .unwrap();
            api.put_block(&MemoryBlock {
                agent: id.into(),
                label: "persona".into(),
                value: id.into(),
            })
            .await
            .unwrap();
        }
        assert_eq!(api.list_messages("a").await.unwrap().len(), 1);
        assert_eq!(api.list_blocks("a").await.unwrap().len(), 1);
        assert_eq!(api.list_sessions("a").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn blocks_update_in_place_and_tools_round_trip() {
        let api = api();
        let v = api
            .update_block("ag", "human", |old| format!("{}+x", old.unwrap_or("")))
            .await
            .unwrap();
        assert_eq!(v, "+x");
        let v = api
            .update_block("ag", "human", |old| format!("{}+y", old.unwrap_or("")))
            .await
            .unwrap();
        assert_eq!(v, "+x+y");
        assert_eq!(
            api.get_block("ag", "human").await.unwrap().unwrap().value,
            "+x+y"
        );
        let tool = ToolRecord {
            name: "search".into(),
            description: "web search".into(),
            schema: serde_json::json!({"type": "object"}),
        };
        api.put_tool(&tool).await.unwrap();
        assert_eq!(api.list_tools().await.unwrap(), vec![tool.clone()]);
        assert_eq!(api.get_tool("search").await.unwrap(), Some(tool));
        api.delete_tool("search").await.unwrap();
        assert!(api.list_tools().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_actor_transaction_and_the_api_share_the_data() {
        let kv = MemoryKv::new();
        let api = AgentStorage::new(kv.clone());
        api.create_agent(&NewAgent::new("ag", "A", ""), 0)
            .await
            .unwrap();
        // A conflicting checkpoint in flight: the API's own checkpoint commits first.
        let mut txn = kv.transaction();
        AgentTx::new(&mut txn)
            .checkpoint("ag", "s", &NewMessage::new("r1", Role::User, "one"))
            .await
            .unwrap();
        api.checkpoint("ag", "s", &NewMessage::new("r2", Role::User, "two"))
            .await
            .unwrap();
        assert!(matches!(txn.commit().await, Err(KvError::Conflict { .. })));
        let msgs = api.list_messages("ag").await.unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].request_id, "r2");
    }

    #[tokio::test]
    async fn corrupt_values_are_reported_with_their_key() {
        let kv = MemoryKv::new();
        kv.set(b"agents/x", b"{not json").await.unwrap();
        let api = AgentStorage::new(kv);
        match api.get_agent("x").await {
            Err(ActorError::Corrupt { key, .. }) => assert_eq!(key, "agents/x"),
            other => panic!("expected a corrupt value, got {other:?}"),
        }
    }
}
