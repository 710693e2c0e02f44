//! The repository's own DST suites: `kelpie-actors` (and Kelpie's own storage and network) under
//! faults, one `*_dst.rs` module per area, registered with the kelpie harness by
//! `#[kelpie::dst_test]`. A binary that links this crate (`use kelpie_suites as _;`) runs them:
//! `tests/dst_harness.rs` (`cargo test --test dst_harness`) and the examples `actor_tour` and
//! `bench`. The modules are private: everything reaches the harness through registration.
//!
//! ```
//! // Every suite is registered as soon as the crate is linked.
//! use kelpie_suites as _;
//! assert!(kelpie::harness::registered()
//!     .iter()
//!     .any(|t| t.path().starts_with("lease_dst::")));
//! ```

mod activation_dst;
mod kv_dst;
mod lease_dst;
mod lifecycle_dst;
mod migration_dst;
mod network_dst;
mod registry_dst;
mod storage_dst;
mod store_contract_dst;
mod targeted_dst;
mod tokio_kv_dst;
mod wal_dst;

mod support;
