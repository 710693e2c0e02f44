//! Names the cause when kelpie-sim is built without `--cfg madsim` while a `RUSTFLAGS` variable
//! is set: cargo then ignores the rustflags of `.cargo/config.toml`, which is where the cfg
//! normally comes from (src/lib.rs turns this into the compile error's wording).
//!
//! Cargo removes `RUSTFLAGS` from a build script's environment, so the script reads it from
//! cargo's own (its parent process's) environment where the platform shows it (Linux `/proc`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kelpie_rustflags_set)");
    println!("cargo::rerun-if-env-changed=RUSTFLAGS");
    let madsim = std::env::var_os("CARGO_CFG_MADSIM").is_some();
    if !madsim && cargo_has_rustflags() {
        println!("cargo::rustc-cfg=kelpie_rustflags_set");
    }
}

/// Whether the cargo process running this script has a `RUSTFLAGS` variable (empty or not).
fn cargo_has_rustflags() -> bool {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        if let Ok(environ) = std::fs::read(format!("/proc/{parent}/environ")) {
            return environ
                .split(|&b| b == 0)
                .any(|var| var.starts_with(b"RUSTFLAGS="));
        }
    }
    false
}
