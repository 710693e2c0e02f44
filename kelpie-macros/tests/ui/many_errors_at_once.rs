#[kelpie::dst_test(
    seeds = 5..5,
    faults = [StorageWriteFial(0.1), NetworkDelay(1.5), PacketLoss(0.1, colour = "red")],
    max_time = "soon",
    verbose,
)]
fn everything_wrong(env: kelpie::SimEnv, extra: u32) {
    let _ = (env, extra);
    std::thread::spawn(|| {});
}

fn main() {}
