//! The placement directory: which node hosts each actor, kept in the shared store under
//! `registry/{ns}/{id}` so that clients can route a message to the actor's current host and
//! list the actors of a namespace with one prefix scan.
//!
//! The lease is the truth about who may run an actor; the directory is a routing hint that the
//! lease holder keeps up to date. Its entries carry the holder's fencing token, and an entry
//! is only ever replaced by one with a token at least as new, so a node that lost its lease
//! cannot overwrite the placement of the node that took over (and the runtime writes it in a
//! fenced transaction besides).

use serde::{Deserialize, Serialize};

use crate::error::ActorError;
use crate::kv::{ActorId, ActorKV, KvTransaction};

/// The prefix of every directory entry.
pub const REGISTRY_PREFIX: &str = "registry/";

/// Where an actor lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The hosting node.
    pub node: String,
    /// The fencing token the node runs the actor under.
    pub token: u64,
}

/// The placement directory over a store.
///
/// ```
/// use kelpie_actors::{ActorId, MemoryKv, Placement, Registry};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let registry = Registry::new(MemoryKv::new());
/// let id = ActorId::new("agents", "alice").unwrap();
/// assert!(registry.place(&id, &Placement { node: "n1".into(), token: 2 }).await.unwrap());
/// // An older token cannot overwrite a newer placement.
/// assert!(!registry.place(&id, &Placement { node: "n2".into(), token: 1 }).await.unwrap());
/// assert_eq!(registry.lookup(&id).await.unwrap().unwrap().node, "n1");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Registry<K> {
    kv: K,
}

fn corrupt(key: &[u8], reason: impl std::fmt::Display) -> ActorError {
    ActorError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_string(),
    }
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Placement, ActorError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))
}

impl<K: ActorKV> Registry<K> {
    /// The directory in `kv`.
    pub fn new(kv: K) -> Self {
        Registry { kv }
    }

    /// The directory key of `id`: `registry/{ns}/{id}`.
    pub fn key(id: &ActorId) -> Vec<u8> {
        format!("{REGISTRY_PREFIX}{}/{}", id.namespace(), id.id()).into_bytes()
    }

    /// Where `id` lives, if the directory knows.
    pub async fn lookup(&self, id: &ActorId) -> Result<Option<Placement>, ActorError> {
        let key = Self::key(id);
        match self.kv.get(&key).await? {
            None => Ok(None),
            Some(bytes) => decode(&key, &bytes).map(Some),
        }
    }

    /// Every placed actor of `namespace`, in id order.
    pub async fn list(&self, namespace: &str) -> Result<Vec<(ActorId, Placement)>, ActorError> {
        let prefix = format!("{REGISTRY_PREFIX}{namespace}/");
        let mut out = Vec::new();
        for (key, value) in self.kv.scan_prefix(prefix.as_bytes()).await? {
            let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let id = ActorId::new(namespace, name).map_err(|e| corrupt(&key, e))?;
            out.push((id, decode(&key, &value)?));
        }
        Ok(out)
    }

    /// Records in `txn` that `id` lives at `placement`, unless the directory holds a newer
    /// token. Returns whether it did.
    pub async fn place_in<T: KvTransaction>(
        txn: &mut T,
        id: &ActorId,
        placement: &Placement,
    ) -> Result<bool, ActorError> {
        let key = Self::key(id);
        if let Some(bytes) = txn.get(&key).await? {
            if decode(&key, &bytes)?.token > placement.token {
                return Ok(false);
            }
        }
        let value = serde_json::to_vec(placement).expect("a placement always serialises");
        txn.set(&key, &value);
        Ok(true)
    }

    /// Removes `id`'s entry in `txn` if it is still `placement`. Returns whether it did.
    pub async fn remove_in<T: KvTransaction>(
        txn: &mut T,
        id: &ActorId,
        placement: &Placement,
    ) -> Result<bool, ActorError> {
        let key = Self::key(id);
        match txn.get(&key).await? {
            Some(bytes) if decode(&key, &bytes)? == *placement => {
                txn.delete(&key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// [`Registry::place_in`] in a transaction of its own.
    pub async fn place(&self, id: &ActorId, placement: &Placement) -> Result<bool, ActorError> {
        let mut txn = self.kv.transaction();
        let placed = Self::place_in(&mut txn, id, placement).await?;
        if placed {
            txn.commit().await?;
        }
        Ok(placed)
    }

    /// [`Registry::remove_in`] in a transaction of its own.
    pub async fn remove(&self, id: &ActorId, placement: &Placement) -> Result<bool, ActorError> {
        let mut txn = self.kv.transaction();
        let removed = Self::remove_in(&mut txn, id, placement).await?;
        if removed {
            txn.commit().await?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;

    fn at(node: &str, token: u64) -> Placement {
        Placement {
            node: node.into(),
            token,
        }
    }

    #[tokio::test]
    async fn placements_are_listed_by_namespace_and_never_regress() {
        let kv = MemoryKv::new();
        let reg = Registry::new(kv.clone());
        let (a, b) = (
            ActorId::new("ns", "a").unwrap(),
            ActorId::new("ns", "b").unwrap(),
        );
        let other = ActorId::new("other", "a").unwrap();
        assert!(reg.place(&a, &at("n1", 1)).await.unwrap());
        assert!(reg.place(&b, &at("n2", 4)).await.unwrap());
        assert!(reg.place(&other, &at("n3", 1)).await.unwrap());
        assert!(reg.place(&a, &at("n2", 3)).await.unwrap());
        assert!(!reg.place(&a, &at("n1", 2)).await.unwrap());
        let listed = reg.list("ns").await.unwrap();
        assert_eq!(
            listed,
            vec![(a.clone(), at("n2", 3)), (b.clone(), at("n2", 4))]
        );
        // Removal only of the entry one still owns.
        assert!(!reg.remove(&a, &at("n1", 1)).await.unwrap());
        assert!(reg.remove(&a, &at("n2", 3)).await.unwrap());
        assert_eq!(reg.lookup(&a).await.unwrap(), None);
        assert_eq!(reg.lookup(&b).await.unwrap(), Some(at("n2", 4)));
    }
}
