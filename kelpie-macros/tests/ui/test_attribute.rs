#[kelpie::dst_test]
#[test]
async fn registered_twice(env: kelpie::SimEnv) {
    let _ = env;
}

fn main() {}
