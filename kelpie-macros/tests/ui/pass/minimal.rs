#[kelpie::dst_test]
async fn does_nothing(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
