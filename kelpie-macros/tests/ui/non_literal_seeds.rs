const N: u64 = 100;

#[kelpie::dst_test(seeds = 0..N)]
async fn computed_seeds(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
