#[kelpie::dst_test(max_time = "60 seconds", wall_timeout = "1.5s", fault_tick = "10")]
async fn vague_time(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
