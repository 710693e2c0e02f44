//! Compile-fail and pass cases of `#[kelpie::dst_test]`, run by trybuild.
//!
//! Each `ui/*.rs` case is named after what it rejects; its `.stderr` beside it is the expected
//! output. Regenerate after an intended change with `TRYBUILD=overwrite cargo test -p kelpie-macros
//! --test ui` and read every changed `.stderr`: each error must point at the token to change.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
