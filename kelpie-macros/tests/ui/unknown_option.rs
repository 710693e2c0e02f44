#[kelpie::dst_test(faults = [StorageWriteFail(0.1, prefix = "wal/")])]
async fn filtered(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
