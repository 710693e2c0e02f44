//! What the DST suites share: `cluster` (the simulated cluster of the lease, activation and
//! migration suites), `counter` (their counter actor, clients and verdict) and `conflicting` (a
//! store whose every commit conflicts, for retry bounds). The storage suites run their workers
//! on kelpie-actors' own `SimPlatform`.

pub mod cluster;
pub mod conflicting;
pub mod counter;
