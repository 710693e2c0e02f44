//! What the DST suites share: `cluster` (the simulated cluster of the lease, activation and
//! migration suites), `counter` (their counter actor, clients and verdict), `storage` (the
//! worker-node platform of the storage suites).

pub mod cluster;
pub mod counter;
pub mod storage;
