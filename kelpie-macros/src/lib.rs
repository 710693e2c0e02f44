//! The `#[kelpie::dst_test]` attribute of Kelpie DST.
//!
//! Use it through the `kelpie` crate, which re-exports it; this crate has no other public API.
//! The attribute checks its arguments against the fault table that the simulation itself uses, so
//! a misspelled fault, an out-of-range probability or an empty seed range is a compile error at
//! the offending token, and so is a call in the test body that escapes the simulation (a real
//! thread, real time, tokio's runtime). All mistakes are reported in one compile.
//!
//! The pipeline, one stage per file, as in thiserror and serde_derive: `parse` reads the
//! attribute's arguments into the data model of `ast`, `validate` checks the arguments, the
//! function and its body, `expand` generates the registration with the runner, and `fallback`
//! emits the errors plus the function as written. Every stage records its mistakes in the
//! collector of `errors`. The tables (faults, attribute keys, forbidden calls) and the
//! "did you mean" suggestion come from the shared vocabulary crate `kelpie-spec`.

#![forbid(unsafe_code)]

extern crate proc_macro;

mod ast;
mod chaos;
mod errors;
mod expand;
mod fallback;
mod parse;
mod validate;

use proc_macro::TokenStream;

/// Registers an `async fn` as a deterministic simulation test, run once per seed by the `kelpie`
/// runner.
///
/// ```text
/// #[kelpie::dst_test]                                  // seeds 0..100, no faults
/// async fn leases_are_exclusive(env: kelpie::SimEnv) { ... }
///
/// #[kelpie::dst_test(seeds = 0..500, faults = [StorageWriteFail(0.02), NetworkPartition(0.01)])]
/// async fn survives_faults(env: kelpie::SimEnv) -> Result<(), MyError> { ... }
/// ```
///
/// The function must be an `async fn` at module level (not an associated fn, a method or a fn
/// inside a block: the runner names each test by its module path) without generics that takes exactly one argument, the simulation environment
/// (`kelpie::SimEnv`), and returns `()` or `Result<(), E>` where `E: Display`; an `Err` fails the
/// seed. Its body must not escape the simulation: calls such as `std::thread::spawn`,
/// `tokio::spawn` or `std::time::Instant::now` are rejected at compile time (use the `env`'s task,
/// time and randomness instead), and so are `std::process::exit` and `abort`, which would end the
/// run before the runner reports anything (return an error or panic instead).
///
/// # Arguments
///
/// All are optional and separated by commas; each key may appear once.
///
/// | key | value | meaning |
/// |-----|-------|---------|
/// | `seeds` | `0..500`, `0..=9` or `[1, 7, 42]` (integer literals) | the seeds to run; default `0..100` |
/// | `faults` | `[Fault(args), ...]` | faults to inject, see below; default none |
/// | `max_time` | duration | virtual-time budget of one seed |
/// | `wall_timeout` | duration | real-time limit of one seed |
/// | `fault_tick` | duration | period at which node, clock and partition faults are decided |
/// | `nodes` | integer ≥ 1 | number of simulated nodes |
/// | `ignore` | flag | registered but not run unless asked for (`--ignored`) |
/// | `should_fail` | flag | each seed's trial passes only if that seed fails |
/// | `check_determinism` | flag | run each seed twice and compare the event traces |
/// | `canary` | flag | one trial over all seeds that passes iff some seed fails |
/// | `swarm` | flag | each seed runs a random subset of the faults at random intensities |
/// | `allow_unfired` | flag | a declared fault that never fires does not fail the test |
///
/// A duration is a string with a unit, `"250ms"`, `"60s"` or `"2m"`, or an integer number of
/// milliseconds. A flag is written bare (`ignore`) or as `ignore = true` / `ignore = false`.
/// Options that are not given take the runner's defaults (`TestOptions::DEFAULT`).
///
/// # Faults
///
/// Each fault is written as its name from the fault table (`kelpie::FaultKind`), with its positional
/// parameters in table order and then named options:
///
/// ```text
/// faults = [
///     StorageWriteFail(0.02),                 // probability, in 0..=1
///     NetworkDelay(0.1, 200),                 // probability, max_ms (default 100)
///     NetworkDelay(0.1, max_ms = 200),        // positional parameters may also be named
///     StorageWriteFail(0.5, key_prefix = "wal/", max = 3, after_ms = 100, until_ms = 5000,
///                      op = "set", node = "n1"),
///     Custom("LlmTimeout", 0.1),              // an application fault, checked with env.fault(..)
/// ]
/// ```
///
/// Trailing parameters that have a default may be left out. The named options every fault accepts
/// are `op` (an operation name the fault acts on: `get`, `set`, `delete`, `scan`, `commit`, `sync`,
/// `send`, `tick`, `custom`), `key_prefix` (string), `node` (string), `max` (how many times at most
/// per run), `after_ms` and `until_ms` (the virtual-time window in which the fault is active).
#[proc_macro_attribute]
pub fn dst_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(function) => expand::dst_test(attr.into(), function).into(),
        Err(error) => fallback::not_a_function(item, error).into(),
    }
}

/// Registers an `async fn` as a **chaos test**: a test on the wall clock and real tokio (real
/// sockets, real binaries, real time), run by the `kelpie` runner as one trial named
/// `chaos::<module>::<name>`, on a fresh OS thread with its own tokio runtime.
///
/// ```text
/// #[kelpie::chaos_test]                       // no wall-clock limit
/// async fn actors_survive_restarts() { ... }
///
/// #[kelpie::chaos_test(timeout = "30s", ignore)]
/// async fn against_a_real_server() -> Result<(), MyError> { ... }
/// ```
///
/// A chaos test is not deterministic and is never counted as such: it has no seeds, no fault
/// plan and no trace hash, and a failure cannot be replayed. Write it in a `*_chaos.rs` file (the
/// lint rejects the attribute in a `*_dst.rs` file, as it rejects `#[tokio::test]` there). The
/// function is an `async fn` at module level without parameters, returning `()` or
/// `Result<(), E>` with `E: Display`. Arguments: `timeout` (a duration, `"30s"`, or milliseconds:
/// the trial fails when the test runs longer) and `ignore` (run only with `--ignored`).
#[proc_macro_attribute]
pub fn chaos_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(function) => chaos::chaos_test(attr.into(), function).into(),
        Err(error) => {
            let error = syn::Error::new(
                error.span(),
                "`#[kelpie::chaos_test]` applies to an `async fn name()`",
            )
            .to_compile_error();
            quote::quote!(#error #item).into()
        }
    }
}
