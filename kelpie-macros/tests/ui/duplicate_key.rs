#[kelpie::dst_test(nodes = 3, seeds = 0..10, nodes = 5)]
async fn twice(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
