struct Suite;

impl Suite {
    #[kelpie::dst_test]
    async fn method(&self) {}
}

fn main() {}
