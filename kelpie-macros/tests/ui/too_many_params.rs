#[kelpie::dst_test(faults = [StorageWriteFail(0.1, 200), NetworkDelay(0.1, 200, 5)])]
async fn overspecified(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
