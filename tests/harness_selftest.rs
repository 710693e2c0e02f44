//! A kelpie harness whose tests misbehave on purpose, each one `ignore`d so that a plain
//! `cargo test` only lists them: `tests/harness_behaviour.rs` runs this binary as a child
//! process (with `--include-ignored`) to check what the runner does about them.

use std::time::Duration;

use kelpie::SimEnv;

/// Fails every odd seed: hundreds of failing seeds for the regression file's writers.
#[kelpie::dst_test(seeds = 0..300, ignore)]
async fn fails_odd_seeds(env: SimEnv) -> Result<(), String> {
    env.sleep(Duration::from_millis(1)).await;
    if env.seed() % 2 == 1 {
        return Err(format!("odd seed {}", env.seed()));
    }
    Ok(())
}

/// Ends the process from test code. The call is in a helper, out of the macro's sight (in the
/// body it is a compile error): the runner must still not report the run as green.
#[kelpie::dst_test(seeds = [0, 1], ignore)]
async fn exits_early(env: SimEnv) {
    env.sleep(Duration::from_millis(1)).await;
    end_the_process();
}

fn end_the_process() {
    std::process::exit(0);
}

fn main() -> std::process::ExitCode {
    kelpie::harness::main()
}
