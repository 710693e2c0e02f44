#[kelpie::dst_test]
async fn takes_a_number(seed: u64) {
    let _ = seed;
}

fn main() {}
