#[kelpie::dst_test]
async fn generic<T: Default>(env: kelpie::SimEnv) {
    let _ = (env, T::default());
}

fn main() {}
