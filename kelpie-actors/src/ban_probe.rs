//! A raw `tokio::spawn` outside `platform.rs`, compiled only with `--cfg kelpie_ban_probe`:
//! `.ci/run` builds it with clippy and requires the `disallowed_methods` error of clippy.toml's
//! ban, so the ban is known to bite.

/// Spawns on tokio directly, as the ban forbids.
#[allow(dead_code, reason = "never called: only its compilation matters")]
pub fn spawns_outside_the_platform() {
    tokio::spawn(async {});
}
