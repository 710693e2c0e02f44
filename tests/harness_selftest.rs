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

/// Spins without ever awaiting: only the wall-clock watchdog can end it.
#[kelpie::dst_test(seeds = [0], wall_timeout = "2s", ignore)]
async fn spins_forever(env: SimEnv) {
    env.sleep(Duration::from_millis(1)).await;
    // Counted by the behaviour test: a replay of this seed would print it twice.
    eprintln!("spins_forever: started seed {}", env.seed());
    spin();
}

fn spin() {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn end_the_process() {
    std::process::exit(0);
}

fn main() -> std::process::ExitCode {
    kelpie::harness::main()
}
