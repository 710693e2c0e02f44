// The runner calls a test by its path: an associated fn has none it can name.
struct Suite;

impl Suite {
    #[kelpie::dst_test]
    async fn associated(env: kelpie::SimEnv) {
        let _ = env;
    }
}

fn main() {}
