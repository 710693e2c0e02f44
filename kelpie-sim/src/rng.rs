//! Seeded randomness: one root seed per run, split into independent, well-mixed streams.
//!
//! Every component that makes random decisions (each declared fault, the network, the test's own
//! [`SimEnv::rng`](crate::SimEnv::rng)) draws from a stream of its own, derived from the run's seed
//! and a stable label. Adding a fault or a storage call therefore never shifts the decisions of
//! another component — unlike a single shared stream, where one extra draw anywhere changes
//! everything after it. Scheduling randomness is madsim's, seeded with the same root seed.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::hash::mix64;

/// FNV-1a over bytes: a stable hash of a stream's label.
const fn label_hash(label: &str) -> u64 {
    fnv_continue(0xcbf2_9ce4_8422_2325, label)
}

/// FNV-1a of `h`'s bytes followed by `more`'s (so a label can be hashed in parts).
const fn fnv_continue(mut h: u64, more: &str) -> u64 {
    let bytes = more.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// A deterministic random stream (xoshiro256++).
#[derive(Debug, Clone)]
pub struct SimRng {
    inner: Xoshiro256PlusPlus,
}

impl SimRng {
    /// A stream seeded directly from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut state = [0u8; 32];
        let mut z = seed;
        for chunk in state.chunks_exact_mut(8) {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            chunk.copy_from_slice(&mix64(z).to_le_bytes());
        }
        SimRng {
            inner: Xoshiro256PlusPlus::from_seed(state),
        }
    }

    /// The stream named `label` (and `index`, for several streams of one kind) of the run
    /// whose root seed is `root`. Streams with different labels are independent.
    pub fn stream(root: u64, label: &str, index: u64) -> Self {
        Self::stream_of_hash(root, label_hash(label), index)
    }

    /// [`SimRng::stream`] for the label `prefix` followed by `name`, without joining them.
    pub(crate) fn stream_of(root: u64, prefix: &str, name: &str, index: u64) -> Self {
        Self::stream_of_hash(root, fnv_continue(label_hash(prefix), name), index)
    }

    fn stream_of_hash(root: u64, label: u64, index: u64) -> Self {
        SimRng::new(mix64(mix64(root ^ label).wrapping_add(index)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A uniform value in `range` (unbiased). An empty range yields `range.start`.
    pub fn gen_range(&mut self, range: Range<u64>) -> u64 {
        let span = range.end.saturating_sub(range.start);
        if span == 0 {
            return range.start;
        }
        // Lemire's nearly divisionless method: the rejection threshold (a division) is needed
        // only when the low word falls below `span`, which is rare for small spans.
        let mut m = (self.next_u64() as u128) * (span as u128);
        if (m as u64) < span {
            let threshold = span.wrapping_neg() % span;
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (span as u128);
            }
        }
        range.start + (m >> 64) as u64
    }

    /// A uniform float in `[0, 1)` with 53 bits of precision.
    pub fn gen_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (`p <= 0` never, `p >= 1` always). Always draws exactly once, so the
    /// stream's position does not depend on `p`.
    pub fn gen_bool(&mut self, p: f64) -> bool {
        let x = self.gen_f64();
        x < p
    }
}

/// A shared handle to a run's stream, as returned by [`SimEnv::rng`](crate::SimEnv::rng).
/// Clones draw from the same stream.
#[derive(Debug, Clone)]
pub struct RngHandle {
    inner: Arc<Mutex<SimRng>>,
}

impl RngHandle {
    pub(crate) fn new(rng: SimRng) -> Self {
        RngHandle {
            inner: Arc::new(Mutex::new(rng)),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut SimRng) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        self.with(SimRng::next_u64)
    }

    /// A uniform value in `range`; an empty range yields `range.start`.
    pub fn gen_range(&self, range: Range<u64>) -> u64 {
        self.with(|r| r.gen_range(range))
    }

    /// `true` with probability `p`.
    pub fn gen_bool(&self, p: f64) -> bool {
        self.with(|r| r.gen_bool(p))
    }

    /// A uniform float in `[0, 1)`.
    pub fn gen_f64(&self) -> f64 {
        self.with(SimRng::gen_f64)
    }

    /// Picks a uniformly random element of `items` (`None` if empty).
    pub fn choose<'a, T>(&self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        let i = self.gen_range(0..items.len() as u64) as usize;
        items.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = SimRng::stream(7, "storage", 0);
        let mut b = SimRng::stream(7, "storage", 0);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn a_label_in_parts_is_the_joined_label() {
        let joined = SimRng::stream(7, "fault/NodeCrash", 2).next_u64();
        assert_eq!(
            SimRng::stream_of(7, "fault/", "NodeCrash", 2).next_u64(),
            joined
        );
    }

    #[test]
    fn labels_and_indices_give_independent_streams() {
        let first = |mut r: SimRng| r.next_u64();
        let base = first(SimRng::stream(7, "storage", 0));
        assert_ne!(base, first(SimRng::stream(7, "network", 0)));
        assert_ne!(base, first(SimRng::stream(7, "storage", 1)));
        assert_ne!(base, first(SimRng::stream(8, "storage", 0)));
    }

    #[test]
    fn gen_range_stays_in_range_and_covers_it() {
        let mut r = SimRng::new(1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let v = r.gen_range(10..20);
            assert!((10..20).contains(&v));
            seen[(v - 10) as usize] += 1;
        }
        // Each bucket expects 1,000; 4 sigma is about 120.
        for (i, n) in seen.iter().enumerate() {
            assert!((880..=1120).contains(n), "bucket {i}: {n}");
        }
        assert_eq!(r.gen_range(5..5), 5);
    }

    #[test]
    fn gen_range_draws_what_the_plain_rejection_method_draws() {
        // The always-divide form of Lemire's method, which stored traces were made with.
        fn reference(r: &mut SimRng, span: u64) -> u64 {
            let threshold = span.wrapping_neg() % span;
            loop {
                let m = (r.next_u64() as u128) * (span as u128);
                if (m as u64) >= threshold {
                    return (m >> 64) as u64;
                }
            }
        }
        // Small spans, and spans just above 2^63 where about half the draws are rejected.
        for span in [1, 2, 3, 10, 1_000_000_007, (1 << 63) + 1, u64::MAX] {
            let (mut a, mut b) = (SimRng::new(span), SimRng::new(span));
            for _ in 0..2_000 {
                assert_eq!(a.gen_range(0..span), reference(&mut b, span), "span {span}");
            }
            assert_eq!(
                a.next_u64(),
                b.next_u64(),
                "span {span}: same number of draws"
            );
        }
    }

    #[test]
    fn gen_bool_matches_probability() {
        let mut r = SimRng::new(2);
        let hits = (0..100_000).filter(|_| r.gen_bool(0.3)).count();
        // Binomial(100k, 0.3): sd ~ 145.
        assert!((29_400..=30_600).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| r.gen_bool(0.0)));
        assert!((0..1000).all(|_| r.gen_bool(1.0)));
    }
}
