//! A deterministic test: virtual time, one trial per seed.

use std::time::Duration;

#[kelpie::dst_test(seeds = 0..5)]
async fn virtual_time_passes_instantly(env: kelpie::SimEnv) -> Result<(), String> {
    let start = env.now();
    env.sleep(Duration::from_secs(60)).await;
    let took = env.now() - start;
    if took >= Duration::from_secs(60) {
        Ok(())
    } else {
        Err(format!("a minute of virtual sleep took {took:?}"))
    }
}
