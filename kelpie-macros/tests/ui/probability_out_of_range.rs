#[kelpie::dst_test(faults = [StorageWriteFail(1.5), PacketLoss(-0.1), NetworkDelay(two, 200)])]
async fn impossible_odds(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
