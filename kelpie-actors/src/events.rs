//! What the cluster runtime reports while it runs; see [`ClusterObserver`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::kv::ActorId;

/// Receives the runtime's events. Implementations must be cheap and must not block: they run
/// inline, on the task that caused the event.
///
/// What the cluster runtime reports while it runs: a [`ClusterEvent`] for every lease, fencing,
/// activation and migration step, delivered synchronously to a [`ClusterObserver`] the
/// embedding code (typically a test) provides.
///
/// Events are emitted at the moment they become true — right after the storage operation that
/// made them so, with no await in between — so an observer that checks invariants on every
/// event ([`ClusterChecker`](crate::invariants::ClusterChecker)) checks them at every step of a
/// run, not only at its end.
pub trait ClusterObserver: Send + Sync + 'static {
    /// Called once per event, in the order the events happened.
    fn on_event(&self, event: &ClusterEvent);
}

/// One thing that happened to one actor on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    /// The node it happened on.
    pub node: String,
    /// The actor it concerns.
    pub actor: ActorId,
    /// The node's own clock ([`Platform::now`](crate::Platform::now)) when it happened.
    pub clock: Duration,
    /// What happened.
    pub kind: ClusterEventKind,
}

/// What happened; see [`ClusterEvent`]. Times named `valid_until` are on the reporting node's
/// own clock, like every lease deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEventKind {
    /// The node acquired the actor's lease (a fresh acquisition, a takeover, or the claim of a
    /// lease handed to it by a migration).
    LeaseAcquired {
        /// The fencing token of the new lease.
        token: u64,
        /// The node considers the lease valid while its clock reads less than this.
        valid_until: Duration,
        /// Whether the lease was handed to this node by a migration (its token was assigned
        /// by the source).
        claimed_handoff: bool,
    },
    /// The node renewed a lease it holds.
    LeaseRenewed {
        /// The lease's token (unchanged by a renewal).
        token: u64,
        /// The new validity deadline on the node's clock.
        valid_until: Duration,
    },
    /// The node gave its lease up (release, or hand-off to a migration target). It stopped
    /// trusting the lease before this event.
    LeaseReleased {
        /// The token given up.
        token: u64,
    },
    /// The node found that its lease was taken over or handed away: it stops trusting it now.
    LeaseLost {
        /// The token the node held.
        token: u64,
        /// The token stored now.
        current: u64,
    },
    /// A fenced transaction checked its token against the actor's fence.
    FencedCommit {
        /// The token the transaction carried.
        token: u64,
        /// The fence stored when the transaction checked it.
        current: u64,
        /// Whether the transaction committed.
        committed: bool,
    },
    /// An instance of the actor became active on the node.
    Activated {
        /// The fencing token it runs under.
        token: u64,
        /// Its lease's validity deadline on the node's clock.
        valid_until: Duration,
        /// [`state_digest`] of the actor's [`snapshot`](crate::Actor::snapshot) right after
        /// activation (`None` for actors without snapshots).
        state: Option<u64>,
        /// The token of the migration source whose state it restored, if any.
        restored_from: Option<u64>,
    },
    /// The instance running under `token` stopped.
    Deactivated {
        /// Its token.
        token: u64,
        /// Why.
        reason: DeactivationReason,
    },
    /// The instance running under `token` starts handling a message: the runtime has just
    /// decided (with no await since) that the instance may act. Reported before the handler
    /// runs, so that a checker can judge the decision against the lease grants it saw.
    Handling {
        /// Its token.
        token: u64,
    },
    /// The instance running under `token` handled a message successfully.
    Handled {
        /// Its token.
        token: u64,
        /// [`state_digest`] of its snapshot after the message (its last committed state).
        state: Option<u64>,
    },
    /// The node started migrating the actor (it stopped accepting messages for it).
    MigrationStarted {
        /// The target node.
        to: String,
        /// The source's token.
        token: u64,
    },
    /// The node handed the actor's lease and state to the migration target (committed).
    Transferred {
        /// The target node.
        to: String,
        /// The source's token.
        from_token: u64,
        /// The token assigned to the target.
        to_token: u64,
        /// [`state_digest`] of the state handed over.
        state: Option<u64>,
    },
}

/// Why an instance stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DeactivationReason {
    /// No message for the configured idle timeout; the lease was released.
    Idle,
    /// The lease's validity ran out on the node's clock before it could be renewed.
    LeaseExpired,
    /// The lease was taken over, handed away, or a fenced write found a newer token.
    LeaseLost,
    /// The actor migrated to another node.
    Migrated,
    /// [`ActorRuntime::deactivate`](crate::ActorRuntime::deactivate) or shutdown.
    Requested,
    /// A handler's write had an unknown outcome: the in-memory state may differ from the
    /// store, so the instance is dropped and reloads on its next activation.
    Failed,
}

impl fmt::Display for DeactivationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeactivationReason::Idle => "idle",
            DeactivationReason::LeaseExpired => "lease expired",
            DeactivationReason::LeaseLost => "lease lost",
            DeactivationReason::Migrated => "migrated",
            DeactivationReason::Requested => "requested",
            DeactivationReason::Failed => "write outcome unknown",
        })
    }
}

impl fmt::Display for ClusterEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (its clock {}): ",
            self.node,
            self.actor,
            ms(self.clock)
        )?;
        match &self.kind {
            ClusterEventKind::LeaseAcquired {
                token,
                valid_until,
                claimed_handoff,
            } => write!(
                f,
                "lease acquired, token {token}, valid until {}{}",
                ms(*valid_until),
                if *claimed_handoff {
                    " (handed off)"
                } else {
                    ""
                }
            ),
            ClusterEventKind::LeaseRenewed { token, valid_until } => write!(
                f,
                "lease renewed, token {token}, valid until {}",
                ms(*valid_until)
            ),
            ClusterEventKind::LeaseReleased { token } => {
                write!(f, "lease released, token {token}")
            }
            ClusterEventKind::LeaseLost { token, current } => {
                write!(f, "lease lost, token {token} (current {current})")
            }
            ClusterEventKind::FencedCommit {
                token,
                current,
                committed,
            } => write!(
                f,
                "fenced commit with token {token} (fence {current}): {}",
                if *committed { "committed" } else { "rejected" }
            ),
            ClusterEventKind::Activated {
                token, valid_until, ..
            } => write!(
                f,
                "activated, token {token}, valid until {}",
                ms(*valid_until)
            ),
            ClusterEventKind::Deactivated { token, reason } => {
                write!(f, "deactivated, token {token} ({reason})")
            }
            ClusterEventKind::Handling { token } => {
                write!(f, "handling a message, token {token}")
            }
            ClusterEventKind::Handled { token, .. } => {
                write!(f, "handled a message, token {token}")
            }
            ClusterEventKind::MigrationStarted { to, token } => {
                write!(f, "migration to {to} started, token {token}")
            }
            ClusterEventKind::Transferred {
                to,
                from_token,
                to_token,
                ..
            } => write!(f, "transferred to {to}, token {from_token} -> {to_token}"),
        }
    }
}

/// Formats a duration as seconds with millisecond precision: `1.234s`.
pub(crate) fn ms(d: Duration) -> String {
    format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
}

/// A stable 64-bit digest (FNV-1a) of an actor's state, as carried by
/// [`ClusterEventKind::Activated`], [`ClusterEventKind::Handled`] and
/// [`ClusterEventKind::Transferred`].
pub fn state_digest(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// An optional observer plus the facts every event needs.
#[derive(Clone, Default)]
pub(crate) struct Emitter {
    observer: Option<Arc<dyn ClusterObserver>>,
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl Emitter {
    pub(crate) fn new(observer: Option<Arc<dyn ClusterObserver>>) -> Self {
        Emitter { observer }
    }

    /// Whether anyone listens (digests are computed only then).
    pub(crate) fn enabled(&self) -> bool {
        self.observer.is_some()
    }

    pub(crate) fn emit(
        &self,
        node: &str,
        actor: &ActorId,
        clock: Duration,
        kind: ClusterEventKind,
    ) {
        if let Some(o) = &self.observer {
            o.on_event(&ClusterEvent {
                node: node.to_string(),
                actor: actor.clone(),
                clock,
                kind,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable_and_discriminating() {
        assert_eq!(state_digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(state_digest(b"1"), state_digest(b"2"));
        assert_eq!(state_digest(b"abc"), state_digest(b"abc"));
    }

    #[test]
    fn events_display_their_facts() {
        let e = ClusterEvent {
            node: "n1".into(),
            actor: ActorId::new("ns", "a").unwrap(),
            clock: Duration::from_millis(1500),
            kind: ClusterEventKind::LeaseAcquired {
                token: 3,
                valid_until: Duration::from_millis(2300),
                claimed_handoff: false,
            },
        };
        assert_eq!(
            e.to_string(),
            "n1 ns/a (its clock 1.500s): lease acquired, token 3, valid until 2.300s"
        );
    }
}
