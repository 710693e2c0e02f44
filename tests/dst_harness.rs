//! The repo's own DST suites, run by the kelpie harness: `cargo test --test dst_harness`.
//! The suites are the `kelpie-suites` crate (`tests/suites/`), each `*_dst.rs` module
//! registering its tests with `#[kelpie::dst_test]`; linking it is all this binary does. The
//! harness also lints every `*_dst.rs` file for nondeterministic APIs.

use kelpie_suites as _;

fn main() -> std::process::ExitCode {
    kelpie::harness::main()
}
