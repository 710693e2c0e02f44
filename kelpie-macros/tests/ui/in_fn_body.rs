// A fn inside a block has no module path the runner could name it by.
fn main() {
    #[kelpie::dst_test]
    async fn nested(env: kelpie::SimEnv) {
        let _ = env;
    }
}
