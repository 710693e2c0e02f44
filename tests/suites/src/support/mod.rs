//! What the DST suites share: `cluster` (the simulated cluster of the lease, activation and
//! migration suites) and `counter` (their counter actor, clients and verdict). The storage
//! suites run their workers on kelpie-actors' own `SimPlatform`.

pub mod cluster;
pub mod counter;
