#[kelpie::dst_test(seed = 0..10)]
async fn misspelled_key(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
