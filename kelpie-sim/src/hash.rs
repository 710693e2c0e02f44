//! [`StableHasher`]: a hash with fixed keys, the same in every run, thread, process and Rust
//! release (unlike std's `DefaultHasher`). One function for the trace's hash and the history
//! checker's partition keys; a leaf that imports nothing.

use std::hash::{Hash, Hasher};

/// A fast, stable 64-bit hasher: the same input gives the same hash on every run and every
/// Rust release (not a cryptographic hash; not resistant to chosen inputs).
///
/// ```
/// use std::hash::{Hash, Hasher};
/// use kelpie_sim::history::{stable_hash, StableHasher};
///
/// let mut h = StableHasher::default();
/// "key".hash(&mut h);
/// assert_eq!(h.finish(), stable_hash("key"));
/// ```
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

/// A 64-bit finalizer (splitmix64's): every input bit affects every output bit.
pub(crate) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Hasher for StableHasher {
    #[inline]
    fn finish(&self) -> u64 {
        mix64(self.state)
    }

    /// Each 8 bytes as a little-endian `u64`; a last 1 to 7 bytes zero-padded the same way,
    /// with their count in the top byte.
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some((chunk, tail)) = rest.split_first_chunk::<8>() {
            self.write_u64(u64::from_le_bytes(*chunk));
            rest = tail;
        }
        if !rest.is_empty() {
            self.write_u64(tail_le(rest) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.state = (self.state ^ v)
            .wrapping_mul(0x9fb2_1c65_1e98_df25)
            .rotate_left(29);
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// 1 to 7 bytes as a zero-padded little-endian `u64`, without a copy: two loads that may
/// overlap (they agree where they do).
#[inline]
fn tail_le(b: &[u8]) -> u64 {
    let n = b.len();
    debug_assert!((1..8).contains(&n));
    if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64;
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]) as u64;
        lo | hi << (8 * (n - 4))
    } else {
        b[0] as u64 | (b[n / 2] as u64) << (8 * (n / 2)) | (b[n - 1] as u64) << (8 * (n - 1))
    }
}

/// Hashes `value` with [`StableHasher`].
pub fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = StableHasher::default();
    value.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte stream as first written: 8-byte chunks, then the zero-padded rest with its
    /// length in the top byte (the trace hashes of every suite are recorded with it).
    fn reference(bytes: &[u8]) -> u64 {
        let mut h = StableHasher::default();
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            h.write_u64(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            h.write_u64(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 56));
        }
        h.finish()
    }

    #[test]
    fn writing_bytes_hashes_as_the_reference_does_at_every_length() {
        let bytes: Vec<u8> = (0..64u64).map(|i| (mix64(i) >> 7) as u8 | 1).collect();
        for len in 0..=bytes.len() {
            for start in 0..3 {
                let b = &bytes[start..(start + len).min(bytes.len())];
                let mut h = StableHasher::default();
                h.write(b);
                assert_eq!(h.finish(), reference(b), "{} bytes", b.len());
            }
        }
        // And with zero bytes, where a padding mistake would not show with nonzero ones.
        for len in 0..20 {
            let zeros = vec![0u8; len];
            let mut h = StableHasher::default();
            h.write(&zeros);
            assert_eq!(h.finish(), reference(&zeros), "{len} zeros");
        }
    }
}
