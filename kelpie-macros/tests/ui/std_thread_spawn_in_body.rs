#[kelpie::dst_test]
async fn spawns_a_thread(env: kelpie::SimEnv) {
    let _ = env;
    let handle = std::thread::spawn(|| 1 + 1);
    let _ = handle.join();
}

fn main() {}
