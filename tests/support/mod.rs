//! What the DST suites share, declared once by `tests/dst_harness.rs` (and by the examples
//! that run suites): `cluster` (the simulated cluster of the lease, activation and migration
//! suites), `counter` (their counter actor, clients and verdict), `storage` (the worker-node
//! platform of the storage suites).

// An example that includes only some suites uses only some of this.
#![allow(dead_code)]

pub mod cluster;
pub mod counter;
pub mod storage;
