//! Moving an active actor between nodes; see [`migrate`].

use crate::activation::{Actor, ActorRuntime};
use crate::error::ActorError;
use crate::events::{state_digest, ClusterEventKind, DeactivationReason};
use crate::handoff::{Handoff, HandoffRecord, HANDOFF_SUFFIX};
use crate::kv::ActorId;
use crate::lease::LeaseState;
use crate::platform::Platform;

impl<P: Platform, A: Actor<P>> ActorRuntime<P, A> {
    /// Migrates `id`, active on this node, to node `to` (steps 1 and 2 of the
    /// [protocol](migrate)). On success the actor is no longer active here and `to` can activate
    /// it at once ([`ActorRuntime::migrate_in`], or its next message). Fails with
    /// [`ActorError::NotActive`] if the actor is not active here, or `to` is this node.
    pub async fn migrate_out(&self, id: &ActorId, to: &str) -> Result<Handoff, ActorError> {
        let inner = &self.inner;
        let not_active = || ActorError::NotActive {
            actor: id.to_string(),
        };
        if to == self.node() {
            return Err(not_active());
        }
        // 1. Prepare: the in-flight message finishes, later ones queue behind us.
        let slot = inner.slot(id);
        let mut guard = slot.instance.lock().await;
        let Some(generation) = guard.as_ref().map(|i| i.generation) else {
            return Err(not_active());
        };
        if let Some(reason) = inner.invalid(&slot, generation) {
            inner.deactivate_locked(id, &slot, &mut guard, reason).await;
            return Err(not_active());
        }
        let lease = slot.live(generation).ok_or_else(not_active)?.lease;
        let from_token = lease.token();
        inner.emit(
            id,
            ClusterEventKind::MigrationStarted {
                to: to.to_string(),
                token: from_token,
            },
        );
        // 2. Transfer: the last committed state; the source stops before anything is handed
        //    over (unless the planted bug hands over first).
        let state = guard.as_ref().and_then(|i| i.actor.snapshot());
        let digest = state.as_deref().map(state_digest);
        let early = self.hands_over_early();
        if !early {
            inner
                .deactivate_locked(id, &slot, &mut guard, DeactivationReason::Migrated)
                .await;
        }
        let from = self.node().to_string();
        let key = id.key(HANDOFF_SUFFIX);
        let result = inner
            .leases
            .hand_off(&lease, to, |to_token| {
                let record = HandoffRecord {
                    from: from.clone(),
                    to: to.to_string(),
                    from_token,
                    to_token,
                    state: state.clone(),
                };
                vec![(key.clone(), record.encode())]
            })
            .await;
        if early {
            // The bug: queued messages run on the source first; it deactivates after them.
            drop(guard);
            let (inner, id, slot) = (inner.clone(), id.clone(), slot.clone());
            self.platform().spawn(async move {
                inner
                    .retire(&id, &slot, generation, DeactivationReason::Migrated)
                    .await;
            });
        }
        let to_token = result?;
        inner.emit(
            id,
            ClusterEventKind::Transferred {
                to: to.to_string(),
                from_token,
                to_token,
                state: digest,
            },
        );
        Ok(Handoff {
            actor: id.clone(),
            from,
            to: to.to_string(),
            from_token,
            to_token,
            state_digest: digest,
        })
    }

    fn hands_over_early(&self) -> bool {
        #[cfg(feature = "canaries")]
        if self.config().lease.bugs.migration_activates_target_early {
            return true;
        }
        false
    }

    /// Activates `id`, handed to this node by a migration, from the transferred state (steps 3
    /// and 4 of the [protocol](migrate)). Returns the token it runs under. Fails with
    /// [`ActorError::NotActive`] if nothing was handed to this node.
    pub async fn migrate_in(&self, id: &ActorId) -> Result<u64, ActorError> {
        let inner = &self.inner;
        let slot = inner.slot(id);
        let mut guard = slot.instance.lock().await;
        if let Some(instance) = guard.as_ref() {
            if inner.invalid(&slot, instance.generation).is_none() {
                return Ok(instance.ctx.token());
            }
        }
        if let Some(generation) = guard.as_ref().map(|i| i.generation) {
            if let Some(reason) = inner.invalid(&slot, generation) {
                inner.deactivate_locked(id, &slot, &mut guard, reason).await;
            }
        }
        let handed_here = matches!(
            inner.leases.read(id).await?,
            Some(r) if r.state == LeaseState::HandedOff { to: self.node().to_string() }
        );
        if !handed_here {
            return Err(ActorError::NotActive {
                actor: id.to_string(),
            });
        }
        let instance = inner.activate(id, &slot).await?;
        let token = instance.ctx.token();
        *guard = Some(instance);
        Ok(token)
    }
}

/// Migrates `id` from `source` to `target` (two runtimes of one process): the source's
/// [`ActorRuntime::migrate_out`], then the target's [`ActorRuntime::migrate_in`].
///
/// Moving an active actor from one node to another without ever running it on both.
///
/// The protocol, driven by the source ([`ActorRuntime::migrate_out`]) and the target
/// ([`ActorRuntime::migrate_in`]):
///
/// 1. **Prepare** (source): take the actor's message lock, so the in-flight message finishes
///    and later ones wait; check the lease is still valid.
/// 2. **Transfer** (source): snapshot the actor's state ([`Actor::snapshot`], its last committed
///    state), deactivate the instance (it stops trusting its lease), then commit in one
///    transaction, fenced by the source's token: the lease record handed off to the target
///    with a new token, the fence set to that token, and the hand-off record
///    (`actors/{ns}/{id}/handoff`: source, target, both tokens, the state).
/// 3. **Activate on target**: the target claims the handed-off lease without waiting (the
///    source gave it up before the commit), reads the hand-off record carrying its own token,
///    and activates the actor from the transferred state.
/// 4. **Directory update** (target): in its first fenced transaction, the placement names the
///    target and the hand-off record is deleted.
///
/// The source never acts after step 2's commit (it deactivated first, and its token is fenced
/// out by the commit), and the target cannot act before it (it has no lease), so the actor is
/// never active twice. If the target never claims the lease, any node takes it over after the
/// usual takeover wait, with a newer token, and reloads from the store. If the source fails
/// between deactivating and committing, its lease simply runs out.
///
/// The planted bug `migration_activates_target_early` (feature `canaries`) commits the
/// hand-off first and deactivates the source in the background: messages already queued for
/// the actor still run on the source while the target activates.
pub async fn migrate<P: Platform, A: Actor<P>>(
    source: &ActorRuntime<P, A>,
    target: &ActorRuntime<P, A>,
    id: &ActorId,
) -> Result<Handoff, ActorError> {
    let handoff = source.migrate_out(id, target.node()).await?;
    target.migrate_in(id).await?;
    Ok(handoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::tests::{config, runtime, Op};
    use crate::kv::{ActorKV, MemoryKv};

    #[tokio::test]
    async fn the_target_gets_the_last_committed_state_and_the_source_lets_go() {
        let kv = MemoryKv::new();
        let (n1, n2, n3) = (
            runtime("n1", &kv, config()),
            runtime("n2", &kv, config()),
            runtime("n3", &kv, config()),
        );
        let a = ActorId::new("counters", "a").unwrap();
        n1.invoke(&a, Op::Add(7)).await.unwrap();
        let handoff = migrate(&n1, &n2, &a).await.unwrap();
        assert_eq!((handoff.from_token, handoff.to_token), (1, 2));
        assert_eq!(
            handoff.state_digest,
            Some(state_digest(&7u64.to_le_bytes()))
        );
        assert!(!n1.is_active(&a));
        assert_eq!(n2.active_actors(), vec![(a.clone(), 2)]);
        assert_eq!(n2.invoke(&a, Op::Get).await.unwrap(), 7);
        let placed = n2.registry().lookup(&a).await.unwrap().unwrap();
        assert_eq!((placed.node.as_str(), placed.token), ("n2", 2));
        assert_eq!(kv.get(&a.key(HANDOFF_SUFFIX)).await.unwrap(), None);
        // The source and bystanders are refused; the source cannot migrate what it lost.
        assert!(n1.invoke(&a, Op::Get).await.is_err());
        assert!(n3.invoke(&a, Op::Get).await.is_err());
        assert!(n1.migrate_out(&a, "n3").await.is_err());
        assert!(n3.migrate_in(&a).await.is_err());
        assert!(n2.migrate_out(&a, "n2").await.is_err());
    }

    #[tokio::test]
    async fn an_unclaimed_hand_off_is_claimed_by_the_targets_next_message() {
        let kv = MemoryKv::new();
        let (n1, n2) = (runtime("n1", &kv, config()), runtime("n2", &kv, config()));
        let a = ActorId::new("counters", "a").unwrap();
        n1.invoke(&a, Op::Add(3)).await.unwrap();
        n1.migrate_out(&a, "n2").await.unwrap();
        assert_eq!(n2.invoke(&a, Op::Add(1)).await.unwrap(), 4);
    }
}
