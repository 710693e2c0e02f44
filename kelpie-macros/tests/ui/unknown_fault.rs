#[kelpie::dst_test(faults = [StorageWriteFial(0.1)])]
async fn writes_survive(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
