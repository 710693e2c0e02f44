#![cfg(all(target_os = "linux", target_env = "gnu"))]
//! A service's own randomness, drawn the ways crates draw it, is deterministic per seed in a
//! simulation: rand 0.8's `thread_rng`/`random`/`OsRng` and getrandom 0.2 (which make the
//! `getrandom` system call through libc's `syscall`, overridden by `kelpie-sim`), next to
//! `getrandom` through libc (what getrandom 0.3/0.4 and rand 0.9 use, overridden by madsim).
//! Outside a simulation they still read the kernel.

use kelpie_sim::{SimConfig, Simulation};
use rand08::{Rng, RngCore};

/// Every way, drawn on a node's task and on the supervisor.
fn draws() -> Vec<u64> {
    let mut os = [0u8; 8];
    rand08::rngs::OsRng.fill_bytes(&mut os);
    let mut direct = [0u8; 8];
    getrandom02::getrandom(&mut direct).expect("getrandom 0.2");
    let mut via_libc = [0u8; 8];
    // SAFETY: a valid buffer of its length.
    let n = unsafe { libc::getrandom(via_libc.as_mut_ptr().cast(), via_libc.len(), 0) };
    assert_eq!(n, 8);
    vec![
        rand08::thread_rng().gen(),
        rand08::random(),
        u64::from_le_bytes(os),
        u64::from_le_bytes(direct),
        u64::from_le_bytes(via_libc),
    ]
}

fn run(seed: u64) -> Vec<u64> {
    Simulation::new(SimConfig::with_seed(seed))
        .run(|env| async move {
            let mut all = draws();
            let node = env.create_node("service").build();
            all.extend(
                node.spawn(async { draws() })
                    .await
                    .expect("the node's task"),
            );
            all
        })
        .expect("the run")
        .output
}

#[test]
fn rand_08_and_getrandom_02_draw_the_same_bytes_for_the_same_seed() {
    for seed in [0, 1, 7, 42] {
        // Each run on its own thread, as the harness runs seeds (rand 0.8's `thread_rng` is
        // per thread: a second run on a thread that already seeded it would not draw again).
        let a = std::thread::spawn(move || run(seed)).join().unwrap();
        let b = std::thread::spawn(move || run(seed)).join().unwrap();
        assert_eq!(a, b, "seed {seed}: two runs drew different bytes");
        assert_eq!(a.len(), 10);
    }
}

#[test]
fn different_seeds_draw_different_bytes() {
    let runs: Vec<Vec<u64>> = (0..8)
        .map(|seed| std::thread::spawn(move || run(seed)).join().unwrap())
        .collect();
    for way in 0..10 {
        let mut values: Vec<u64> = runs.iter().map(|r| r[way]).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), 8, "draw #{way} repeated across seeds");
    }
}

#[test]
fn outside_a_simulation_the_kernel_answers() {
    let a = draws();
    let b = draws();
    assert_ne!(a, b, "two draws outside a simulation were equal");
}
