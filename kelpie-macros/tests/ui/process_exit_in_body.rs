// Ending the process ends the whole run before the runner's summary: the seeds after it never run
// and the run can look green. Both spellings are caught, the path and an alias imported in the body.
#[kelpie::dst_test]
async fn exits(env: kelpie::SimEnv) {
    use std::process;
    let _ = env;
    if cfg!(unix) {
        std::process::exit(0);
    }
    process::exit(1);
}

fn main() {}
