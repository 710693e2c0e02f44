#[kelpie::dst_test]
async fn reads_the_wall_clock(env: kelpie::SimEnv) {
    use std::time::SystemTime;
    let _ = env;
    let start = std::time::Instant::now();
    let _ = (start.elapsed(), SystemTime::now());
}

fn main() {}
