#[kelpie::dst_test]
fn blocking(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
