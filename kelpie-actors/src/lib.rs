//! A small virtual-actor runtime — the system Kelpie DST tests, written like a real one: it
//! runs on plain tokio ([`TokioPlatform`]) and, in simulation builds (`cfg(madsim)`), on
//! kelpie-sim (`SimPlatform`), where every storage, network, node and clock fault reaches it.
//!
//! ```
//! use kelpie_actors::{ActorId, ActorKV, MemoryKv};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let kv = MemoryKv::new();
//! let id = ActorId::new("agents", "alice").unwrap();
//! kv.set(&id.key("state"), b"{}").await.unwrap();
//! assert_eq!(kv.get(&id.key("state")).await.unwrap(), Some(b"{}".to_vec()));
//! # });
//! ```

mod error;
pub mod invariants;
mod kv;
mod platform;

pub use error::{ActorError, KvError};
pub use kv::{ActorId, ActorKV, KvPairs, KvTransaction, MemoryKv, MemoryTxn};
pub use platform::{Platform, TokioPlatform};
#[cfg(madsim)]
pub use platform::{SimKv, SimKvTxn, SimPlatform};
