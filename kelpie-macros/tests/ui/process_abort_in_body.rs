#[kelpie::dst_test]
async fn aborts(env: kelpie::SimEnv) {
    let _ = env;
    std::process::abort();
}

fn main() {}
