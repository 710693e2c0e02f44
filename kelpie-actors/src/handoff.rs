//! The hand-off record a migration source leaves for its target (`actors/{ns}/{id}/handoff`),
//! and the summary of a completed hand-off. Written by [`migrate`](crate::migrate), read and
//! deleted by the target's activation.

use serde::{Deserialize, Serialize};

use crate::error::ActorError;
use crate::kv::{ActorId, ActorKV};

/// The key suffix of an actor's hand-off record: `actors/{ns}/{id}/handoff`.
pub const HANDOFF_SUFFIX: &str = "handoff";

/// What a migration source leaves for its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffRecord {
    /// The source node.
    pub from: String,
    /// The target node.
    pub to: String,
    /// The source's token.
    pub from_token: u64,
    /// The token assigned to the target.
    pub to_token: u64,
    /// The actor's state ([`Actor::snapshot`](crate::Actor::snapshot)), if it has snapshots.
    pub state: Option<Vec<u8>>,
}

impl HandoffRecord {
    /// The record as stored: its JSON encoding.
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a hand-off record serialises")
    }
}

/// A completed hand-off, as the source saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// The actor.
    pub actor: ActorId,
    /// The source node.
    pub from: String,
    /// The target node.
    pub to: String,
    /// The source's token.
    pub from_token: u64,
    /// The target's token.
    pub to_token: u64,
    /// [`state_digest`](crate::state_digest) of the state handed over.
    pub state_digest: Option<u64>,
}

/// The hand-off record of `id` addressed to the holder of `token`, if there is one.
pub(crate) async fn read_handoff<K: ActorKV>(
    kv: &K,
    id: &ActorId,
    token: u64,
) -> Result<Option<HandoffRecord>, ActorError> {
    let key = id.key(HANDOFF_SUFFIX);
    let Some(bytes) = kv.get(&key).await? else {
        return Ok(None);
    };
    let record: HandoffRecord =
        serde_json::from_slice(&bytes).map_err(|e| ActorError::Corrupt {
            key: String::from_utf8_lossy(&key).into_owned(),
            reason: e.to_string(),
        })?;
    Ok((record.to_token == token).then_some(record))
}
