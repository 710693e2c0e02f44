#[kelpie::dst_test(faults = [StorageWriteFail(0.1, op = "get"), StorageReadFail(0.1, op = "read")])]
async fn wrong_operation(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
