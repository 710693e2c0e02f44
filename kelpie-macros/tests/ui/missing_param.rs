#[kelpie::dst_test(faults = [StorageWriteFail(), PacketLoss, Custom(0.1)])]
async fn underspecified(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
