//! [`AgentActor`]: an agent as a virtual actor on the actor runtime.

use crate::activation::{Actor, ActorContext};
use crate::adapter::{AgentTx, Checkpointed, NewMessage};
use crate::error::{ActorError, KvError};
use crate::kv::ActorId;
use crate::platform::Platform;

/// How often a checkpoint that conflicts (the API changed the agent meanwhile) is retried.
const CONFLICT_RETRIES: u32 = 8;

/// A message to an agent: checkpoint `message` in `session`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentMessage {
    /// The session.
    pub session: String,
    /// The message (its request id makes a retry idempotent).
    pub message: NewMessage,
}

impl AgentMessage {
    /// `message` for `session`.
    pub fn new(session: impl Into<String>, message: NewMessage) -> Self {
        AgentMessage {
            session: session.into(),
            message,
        }
    }
}

/// An agent as a virtual actor (`agents/{agent id}`) on [`ActorRuntime`](crate::ActorRuntime).
/// It activates only for an agent the API created, and its state is the agent's message
/// counter as last committed.
///
/// Each message is checkpointed (message + session + the agent's counter) in the actor's own
/// fenced transaction, through the same [`AgentTx`] code and keys that
/// [`AgentStorage`](crate::AgentStorage) reads: the API lists exactly what the actor committed.
///
/// ```
/// use kelpie_actors::{ActorRuntime, AgentActor, AgentMessage, AgentStorage, MemoryKv, NewAgent,
///     NewMessage, Role, RuntimeConfig, TokioPlatform};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let kv = MemoryKv::new();
/// let api = AgentStorage::new(kv.clone());
/// api.create_agent(&NewAgent::new("alice", "Alice", ""), 0).await.unwrap();
/// let platform = TokioPlatform::new("n1", kv);
/// let node = ActorRuntime::<_, AgentActor>::new(platform, RuntimeConfig::default()).unwrap();
/// let msg = AgentMessage::new("s1", NewMessage::new("r1", Role::User, "hi"));
/// let done = node.invoke(&AgentActor::id("alice").unwrap(), msg).await.unwrap();
/// assert_eq!(api.list_messages("alice").await.unwrap()[0].seq, done.seq);
/// node.shutdown().await;
/// # });
/// ```
#[derive(Debug)]
pub struct AgentActor {
    agent: String,
    next_seq: u64,
}

impl AgentActor {
    /// The actor id of agent `agent`: namespace `agents`.
    pub fn id(agent: &str) -> Result<ActorId, ActorError> {
        ActorId::new("agents", agent)
    }

    /// The agent's id.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The seq the next message gets (as last committed).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

impl<P: Platform> Actor<P> for AgentActor {
    type Msg = AgentMessage;
    type Reply = Checkpointed;

    async fn activate(ctx: &ActorContext<P>) -> Result<Self, ActorError> {
        let agent = ctx.id().id().to_string();
        let mut txn = ctx.transaction();
        let record = AgentTx::new(&mut txn)
            .get_agent(&agent)
            .await?
            .ok_or_else(|| ActorError::NotFound {
                what: format!("agent {agent}"),
            })?;
        Ok(AgentActor {
            agent,
            next_seq: record.next_seq,
        })
    }

    async fn handle(
        &mut self,
        ctx: &ActorContext<P>,
        msg: AgentMessage,
    ) -> Result<Checkpointed, ActorError> {
        let mut tries = 0;
        loop {
            let mut txn = ctx.transaction();
            let done = AgentTx::new(&mut txn)
                .checkpoint(&self.agent, &msg.session, &msg.message)
                .await?;
            if done.duplicate {
                // Stored by an earlier attempt of this request: nothing to write.
                return Ok(done);
            }
            match txn.commit_fenced().await {
                Ok(()) => {
                    self.next_seq = done.seq + 1;
                    return Ok(done);
                }
                Err(ActorError::Kv(KvError::Conflict { .. })) if tries < CONFLICT_RETRIES => {
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn snapshot(&self) -> Option<Vec<u8>> {
        Some(self.next_seq.to_le_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::{ActorRuntime, RuntimeConfig};
    use crate::adapter::{AgentStorage, NewAgent, Role};
    use crate::kv::MemoryKv;
    use crate::platform::TokioPlatform;

    fn runtime(node: &str, kv: &MemoryKv) -> ActorRuntime<TokioPlatform, AgentActor> {
        ActorRuntime::new(
            TokioPlatform::new(node, kv.clone()),
            RuntimeConfig::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn the_api_lists_what_the_actor_committed() {
        let kv = MemoryKv::new();
        let api = AgentStorage::new(kv.clone());
        api.create_agent(&NewAgent::new("ag", "A", ""), 0)
            .await
            .unwrap();
        let rt = runtime("n1", &kv);
        let id = AgentActor::id("ag").unwrap();
        for i in 0..3 {
            let msg = AgentMessage::new("s", NewMessage::new(format!("r{i}"), Role::User, "x"));
            assert_eq!(rt.invoke(&id, msg).await.unwrap().seq, i);
        }
        // A client retry of r1 is not stored again.
        let retry = AgentMessage::new("s", NewMessage::new("r1", Role::User, "x"));
        assert_eq!(
            rt.invoke(&id, retry).await.unwrap(),
            Checkpointed {
                seq: 1,
                duplicate: true
            }
        );
        let listed = api.list_messages("ag").await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|m| m.request_id.as_str())
                .collect::<Vec<_>>(),
            ["r0", "r1", "r2"]
        );
        assert_eq!(
            api.get_session("ag", "s")
                .await
                .unwrap()
                .unwrap()
                .message_count,
            3
        );
        rt.shutdown().await;
    }

    #[tokio::test]
    async fn an_agent_the_api_never_created_does_not_activate() {
        let kv = MemoryKv::new();
        let rt = runtime("n1", &kv);
        let msg = AgentMessage::new("s", NewMessage::new("r", Role::User, "x"));
        assert!(matches!(
            rt.invoke(&AgentActor::id("ghost").unwrap(), msg).await,
            Err(ActorError::NotFound { .. })
        ));
        assert!(AgentStorage::new(kv)
            .list_messages("ghost")
            .await
            .unwrap()
            .is_empty());
        rt.shutdown().await;
    }
}
