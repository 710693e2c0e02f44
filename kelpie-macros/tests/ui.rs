//! Compile-fail and pass cases of `#[kelpie::dst_test]`, run by trybuild.
//!
//! Each `ui/*.rs` case is named after what it rejects; its `.stderr` beside it is the expected
//! output. Regenerate after an intended change with `TRYBUILD=overwrite cargo test -p kelpie-macros
//! --test ui` and read every changed `.stderr`: each error must point at the token to change.

use std::path::PathBuf;
use std::process::Command;

/// The workspace's cargo config: `--cfg madsim` for every build (and `--cfg trybuild_no_target`,
/// see there).
const WORKSPACE_CONFIG: &str = include_str!("../../.cargo/config.toml");

/// The target directory trybuild builds its project under, found the way trybuild finds it.
fn target_dir() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version=1"])
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata failed: {out:?}");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    PathBuf::from(
        meta["target_directory"]
            .as_str()
            .expect("cargo metadata names the target directory"),
    )
}

/// trybuild builds its project in `<target dir>/tests/trybuild/`, where cargo looks for a
/// `.cargo/config.toml` in that folder and its parents only. Inside the checkout it finds the
/// workspace's; with `CARGO_TARGET_DIR` elsewhere it would find none, and kelpie-sim would stop
/// with its missing-`--cfg madsim` error. The project gets a copy of the workspace's config.
fn give_trybuild_the_workspace_config() {
    let dir = target_dir().join("tests").join("trybuild").join(".cargo");
    std::fs::create_dir_all(&dir).expect("create trybuild's .cargo folder");
    std::fs::write(dir.join("config.toml"), WORKSPACE_CONFIG).expect("write trybuild's config");
}

#[test]
fn ui() {
    give_trybuild_the_workspace_config();
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
