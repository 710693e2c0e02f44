//! The repo's own DST suites, run by the kelpie harness: `cargo test --test dst_harness`.
//! Each `*_dst.rs` module registers its tests with `#[kelpie::dst_test]`; the harness also
//! lints every `*_dst.rs` file for nondeterministic APIs.

mod activation_dst;
mod kv_dst;
mod lease_dst;
mod lifecycle_dst;
mod migration_dst;
mod network_dst;
mod registry_dst;
mod storage_dst;
mod wal_dst;

mod support;

fn main() -> std::process::ExitCode {
    kelpie::harness::main()
}
