#[kelpie::dst_test]
async fn no_env() {}

#[kelpie::dst_test]
async fn two_envs(env: kelpie::SimEnv, other: kelpie::SimEnv) {
    let _ = (env, other);
}

fn main() {}
