//! Errors of the actor runtime.

/// Errors of an [`ActorKV`](crate::ActorKV) store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The store could not serve the request (I/O error, disk full, node down); nothing changed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A transaction's key changed between its read and its commit; nothing changed.
    #[error("transaction conflict on key {key:?}")]
    Conflict {
        /// The first conflicting key (lossy UTF-8).
        key: String,
    },
    /// The store crashed during a commit: the transaction was applied entirely or not at all,
    /// and the caller cannot know which (retry with an idempotency key).
    #[error("outcome unknown: the store crashed during the commit")]
    OutcomeUnknown,
}

impl KvError {
    /// Whether the operation certainly did not change the store.
    pub fn nothing_changed(&self) -> bool {
        !matches!(self, KvError::OutcomeUnknown)
    }
}

/// Errors of the actor runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActorError {
    /// A storage error.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// An actor id that breaks the naming rules.
    #[error("invalid actor id {namespace:?}/{id:?}: {reason}")]
    InvalidActorId {
        /// The namespace given.
        namespace: String,
        /// The id given.
        id: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A stored value that does not decode.
    #[error("corrupt value at {key:?}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// The decoder's message.
        reason: String,
    },
    /// Not found.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// Another node holds the actor's lease.
    #[error("actor {actor} is held by {holder} until {until_ms} ms (its clock)")]
    LeaseHeld {
        /// The actor.
        actor: String,
        /// The holder.
        holder: String,
        /// Lease expiry, on the holder's clock.
        until_ms: u64,
    },
    /// A write carried a fencing token older than the actor's current one.
    #[error("stale fencing token {token} for {actor} (current {current})")]
    StaleFence {
        /// The actor.
        actor: String,
        /// The token the write carried.
        token: u64,
        /// The current token.
        current: u64,
    },
    /// This node does not (or no longer) hold the actor.
    #[error("actor {actor} is not active on this node")]
    NotActive {
        /// The actor.
        actor: String,
    },
}
