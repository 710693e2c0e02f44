#[kelpie::dst_test]
async fn returns_a_number(env: kelpie::SimEnv) -> u32 {
    let _ = env;
    7
}

fn main() {}
