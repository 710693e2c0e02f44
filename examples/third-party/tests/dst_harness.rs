//! mini-redis under Kelpie: `cargo test --test dst_harness` (after `.ci/third-party` has
//! unpacked mini-redis into vendor/). The harness also lints `tests/mini_redis_dst.rs`.

mod mini_redis_dst;

fn main() -> std::process::ExitCode {
    kelpie::harness::main()
}
