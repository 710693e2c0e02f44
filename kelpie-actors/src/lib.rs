//! The actor runtime that Kelpie DST tests (storage adapter, registry, leases, activation,
//! migration, WAL). Not written yet: this crate is an empty placeholder in the fixed workspace
//! layout, tracked by the kelpie-actors issue.
