//! [`StableHasher`]: a hash with fixed keys, the same in every run, thread and process.

use std::hash::{Hash, Hasher};

use crate::rng::mix64;

/// A stable 64-bit hasher (word-at-a-time multiply-mix, SplitMix64 finalizer). Unlike
/// `DefaultHasher`, its keys are fixed, so a value hashes the same in every run and thread.
#[derive(Debug, Clone)]
pub struct StableHasher {
    state: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher {
            state: 0x243f_6a88_85a3_08d3,
        }
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        mix64(self.state)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8-byte chunk")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.state = (self.state ^ v)
            .wrapping_mul(0x9fb2_1c65_1e98_df25)
            .rotate_left(29);
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// Hashes `value` with [`StableHasher`].
pub fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = StableHasher::default();
    value.hash(&mut h);
    h.finish()
}
