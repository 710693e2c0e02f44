// A stand-in for the tokio crate, so that this case needs no tokio: the check is syntactic.
mod tokio {
    pub fn spawn<F>(_: F) {}
}

#[kelpie::dst_test]
async fn spawns_under_another_name(env: kelpie::SimEnv) {
    use tokio::spawn as go;
    let _ = env;
    go(async {});
}

fn main() {}
