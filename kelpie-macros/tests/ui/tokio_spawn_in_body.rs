// A stand-in for the tokio crate, so that this case needs no tokio: the check is syntactic.
mod tokio {
    pub fn spawn<F>(_: F) {}
}

#[kelpie::dst_test]
async fn spawns(env: kelpie::SimEnv) {
    let _ = env;
    tokio::spawn(async {});
}

fn main() {}
