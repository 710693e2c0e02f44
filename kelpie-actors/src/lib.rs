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

#![forbid(unsafe_code)]
// Raw tokio, the clock, threads and randomness are banned outside `platform.rs` (clippy.toml);
// unit tests run on plain tokio and may use them.
#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        clippy::disallowed_types,
        reason = "unit tests run on plain tokio, outside the simulation"
    )
)]

mod activation;
mod adapter;
mod agent;
mod error;
mod events;
mod handoff;
pub mod invariants;
mod kv;
mod lease;
mod migration;
mod platform;
mod registry;
mod wal;
// A deliberate violation of the ban, compiled only with `--cfg kelpie_ban_probe`: CI checks
// that clippy rejects it.
#[cfg(kelpie_ban_probe)]
mod ban_probe;

pub use activation::{Actor, ActorContext, ActorRuntime, RuntimeConfig};
#[cfg(feature = "canaries")]
pub use adapter::AdapterBug;
pub use adapter::{
    AdapterConfig, AgentKeys, AgentRecord, AgentStorage, AgentTx, Checkpointed, MemoryBlock,
    Message, NewAgent, NewMessage, Role, SessionRecord, ToolRecord,
};
pub use agent::{AgentActor, AgentMessage};
pub use error::{ActorError, KvError};
pub use events::{
    state_digest, ClusterEvent, ClusterEventKind, ClusterObserver, DeactivationReason,
};
pub use handoff::{Handoff, HandoffRecord, HANDOFF_SUFFIX};
#[cfg(feature = "canaries")]
pub use kv::MemoryKvBug;
pub use kv::{ActorId, ActorKV, KvPairs, KvTransaction, MemoryKv, MemoryTxn};
#[cfg(feature = "canaries")]
pub use lease::ClusterBugs;
pub use lease::{
    is_lease_lost, FenceHook, FenceOutcome, FencedTxn, Lease, LeaseConfig, LeaseConfigError,
    LeaseManager, LeaseRecord, LeaseState, FENCE_SUFFIX, LEASE_SUFFIX,
};
pub use migration::migrate;
pub use platform::{Platform, TokioPlatform};
#[cfg(madsim)]
pub use platform::{SimKv, SimKvTxn, SimPlatform};
pub use registry::{Placement, Registry, REGISTRY_PREFIX};
/// The JSON value type of payloads and results ([`WalEntry::payload`], [`WalApply::apply`]).
pub use serde_json::Value as JsonValue;
#[cfg(feature = "canaries")]
pub use wal::WalBug;
pub use wal::{Appended, Completed, ReplayReport, Wal, WalApply, WalConfig, WalEntry, WalStatus};
