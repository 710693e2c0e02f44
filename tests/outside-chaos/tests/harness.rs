//! One test binary for both kinds of test, run by kelpie's runner: `cargo test`.
//! Trials: `counter_dst::…::seed_N` (deterministic, one per seed), `chaos::echo_chaos::…`
//! (wall clock, real tokio), `lint::tests/counter_dst.rs` (the nondeterminism lint).

mod counter_dst;
mod echo_chaos;

fn main() -> std::process::ExitCode {
    kelpie::harness::main()
}
