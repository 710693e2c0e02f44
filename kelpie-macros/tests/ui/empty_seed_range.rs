#[kelpie::dst_test(seeds = 5..5)]
async fn no_seeds(env: kelpie::SimEnv) {
    let _ = env;
}

#[kelpie::dst_test(seeds = 10..=3)]
async fn backwards(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
