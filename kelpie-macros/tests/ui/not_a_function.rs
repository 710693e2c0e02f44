#[kelpie::dst_test]
struct Scenario;

fn main() {
    let _ = Scenario;
}
