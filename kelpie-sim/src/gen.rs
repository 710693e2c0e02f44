//! Generators of adversarial inputs: ids, keys and payloads with the nasty cases built in —
//! strings that are prefixes of each other, the empty string, the maximal length, unicode
//! (where the alphabet allows it) and duplicates. Every draw comes from a run's
//! [`RngHandle`] (usually [`SimEnv::rng`](crate::SimEnv::rng)), so a seed always generates the
//! same inputs.
//!
//! ```
//! use kelpie_sim::gen::{Alphabet, IdGen};
//! use kelpie_sim::{RngHandle, SimRng};
//!
//! let rng = RngHandle::from(SimRng::new(7));
//! let ids = IdGen::new(Alphabet::ActorId, 1, 128).distinct(&rng, 6);
//! assert_eq!(ids.len(), 6);
//! // At least one generated id is a proper prefix of another one.
//! assert!(ids.iter().any(|a| ids.iter().any(|b| b.len() > a.len() && b.starts_with(a.as_str()))));
//! ```

use crate::rng::{RngHandle, SimRng};

/// A handle on a stream of its own (tests and generators outside a run; inside one, use
/// [`SimEnv::rng`](crate::SimEnv::rng)).
impl From<SimRng> for RngHandle {
    fn from(rng: SimRng) -> Self {
        RngHandle::new(rng)
    }
}

/// The characters an [`IdGen`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Alphabet {
    /// `[A-Za-z0-9_.:-]`: the characters of an actor id (kelpie-actors' `ActorId`).
    ActorId,
    /// Lowercase ASCII letters and digits.
    AsciiLower,
    /// Any UTF-8: ASCII, the separators `/` and `\0`, accented letters, CJK and emoji (multi-byte
    /// characters whose bytes are not prefixes of ASCII keys).
    Unicode,
}

const ACTOR_ID_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-";
const LOWER_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const UNICODE_EXTRA: &[char] = &['/', '\0', 'é', 'ß', 'Ω', '中', '文', '🦀', '\u{200b}', ' '];

impl Alphabet {
    fn char(self, rng: &RngHandle) -> char {
        let pick = |set: &[u8]| char::from(set[rng.gen_range(0..set.len() as u64) as usize]);
        match self {
            Alphabet::ActorId => pick(ACTOR_ID_CHARS),
            Alphabet::AsciiLower => pick(LOWER_CHARS),
            Alphabet::Unicode => {
                if rng.gen_bool(0.5) {
                    pick(LOWER_CHARS)
                } else {
                    UNICODE_EXTRA[rng.gen_range(0..UNICODE_EXTRA.len() as u64) as usize]
                }
            }
        }
    }
}

/// Generates ids (strings) between `min_len` and `max_len` characters from an [`Alphabet`];
/// a batch always contains a chain of prefixes (`x`, `xy`, `xy.`), the shortest and the
/// longest allowed id, and, when `min_len` is 0, the empty id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdGen {
    alphabet: Alphabet,
    min_len: usize,
    max_len: usize,
}

impl IdGen {
    /// Ids of `min_len..=max_len` characters (at least 1 character is generated when
    /// `max_len` is 0 only if `min_len` is 0 too: then every id is empty).
    pub fn new(alphabet: Alphabet, min_len: usize, max_len: usize) -> Self {
        IdGen {
            alphabet,
            min_len,
            max_len: max_len.max(min_len),
        }
    }

    fn random_string(&self, rng: &RngHandle, len: usize) -> String {
        (0..len).map(|_| self.alphabet.char(rng)).collect()
    }

    fn len_between(&self, rng: &RngHandle, lo: usize, hi: usize) -> usize {
        let (lo, hi) = (lo.max(self.min_len), hi.min(self.max_len));
        if lo >= hi {
            return lo.min(self.max_len);
        }
        lo + rng.gen_range(0..(hi - lo + 1) as u64) as usize
    }

    /// One id: usually short (1–8 characters), sometimes the shortest or the longest allowed.
    pub fn one(&self, rng: &RngHandle) -> String {
        let len = match rng.gen_range(0..10) {
            0 => self.min_len,
            1 => self.max_len,
            _ => self.len_between(rng, 1, 8),
        };
        self.random_string(rng, len)
    }

    /// `n` ids, which may repeat: the same nasty cases as [`IdGen::distinct`], plus
    /// duplicates of earlier ids.
    pub fn batch(&self, rng: &RngHandle, n: usize) -> Vec<String> {
        let mut out = self.distinct(rng, n);
        for i in 1..out.len() {
            if rng.gen_bool(0.2) {
                let j = rng.gen_range(0..i as u64) as usize;
                out[i] = out[j].clone();
            }
        }
        out
    }

    /// `n` distinct ids, in random order, containing (as far as `n` allows): a chain of three
    /// ids each a proper prefix of the next, an id of `max_len` characters, one of
    /// `min_len` characters (the empty id if `min_len` is 0), and random ones. Distinctness
    /// may be impossible for tiny alphabets and lengths: then fewer than `n` are returned.
    pub fn distinct(&self, rng: &RngHandle, n: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(n);
        let push = |s: String, out: &mut Vec<String>| {
            if out.len() < n && !out.contains(&s) {
                out.push(s);
            }
        };
        // A prefix chain: root, root + 1 char, root + 2 chars (respecting the bounds).
        let root_len = self.len_between(rng, 1, 3);
        let root = self.random_string(rng, root_len);
        let mut chain = root.clone();
        push(root, &mut out);
        for _ in 0..2 {
            if chain.chars().count() >= self.max_len {
                break;
            }
            chain.push(self.alphabet.char(rng));
            push(chain.clone(), &mut out);
        }
        // The extremes.
        push(self.random_string(rng, self.max_len), &mut out);
        push(self.random_string(rng, self.min_len), &mut out);
        // A long id sharing the root's prefix, if room.
        if self.max_len > 4 {
            let mut long = chain.clone();
            while long.chars().count() < self.max_len {
                long.push(self.alphabet.char(rng));
            }
            push(long, &mut out);
        }
        let mut attempts = 0;
        while out.len() < n && attempts < 64 * n.max(1) {
            attempts += 1;
            let id = self.one(rng);
            push(id, &mut out);
        }
        shuffle(rng, &mut out);
        out
    }
}

/// Generates binary payloads: empty, one byte, all zeros, all `0xff`, a maximal one of
/// `max_len` bytes, and random ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BytesGen {
    max_len: usize,
}

impl BytesGen {
    /// Payloads of at most `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        BytesGen { max_len }
    }

    /// One payload; about one in three is a nasty case.
    pub fn one(&self, rng: &RngHandle) -> Vec<u8> {
        let random = |len: usize| -> Vec<u8> { (0..len).map(|_| rng.next_u64() as u8).collect() };
        match rng.gen_range(0..12) {
            0 => Vec::new(),
            1 => random(1.min(self.max_len)),
            2 => vec![0; self.max_len.min(16)],
            3 => vec![0xff; self.max_len.min(16)],
            4 => random(self.max_len),
            _ => {
                let len = rng.gen_range(0..(self.max_len.min(64) + 1) as u64) as usize;
                random(len)
            }
        }
    }
}

/// Shuffles `items` with `rng` (Fisher–Yates).
pub fn shuffle<T>(rng: &RngHandle, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rng.gen_range(0..(i + 1) as u64) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: u64) -> RngHandle {
        RngHandle::from(SimRng::new(seed))
    }

    fn has_prefix_pair(ids: &[String]) -> bool {
        ids.iter().any(|a| {
            ids.iter()
                .any(|b| b.len() > a.len() && b.starts_with(a.as_str()))
        })
    }

    #[test]
    fn distinct_ids_have_the_nasty_cases() {
        for seed in 0..50 {
            let g = IdGen::new(Alphabet::ActorId, 1, 128);
            let ids = g.distinct(&rng(seed), 8);
            assert_eq!(ids.len(), 8);
            let mut sorted = ids.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 8, "duplicates in {ids:?}");
            assert!(has_prefix_pair(&ids), "no prefix pair in {ids:?}");
            assert!(ids.iter().any(|i| i.len() == 128));
            assert!(ids.iter().all(|i| (1..=128).contains(&i.len())));
            assert!(ids.iter().all(|i| i
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))));
        }
        let empty = IdGen::new(Alphabet::Unicode, 0, 10).distinct(&rng(1), 6);
        assert!(empty.contains(&String::new()));
        let uni: Vec<String> = (0..20)
            .flat_map(|s| IdGen::new(Alphabet::Unicode, 0, 10).distinct(&rng(s), 6))
            .collect();
        assert!(uni.iter().any(|s| !s.is_ascii()), "no unicode drawn");
    }

    #[test]
    fn batches_repeat_and_generation_is_deterministic() {
        let g = IdGen::new(Alphabet::AsciiLower, 1, 12);
        let a = g.batch(&rng(3), 40);
        assert_eq!(a, g.batch(&rng(3), 40));
        assert_ne!(a, g.batch(&rng(4), 40));
        let mut d = a.clone();
        d.sort();
        d.dedup();
        assert!(d.len() < a.len(), "a batch of 40 without a duplicate");
        let b = BytesGen::new(300);
        let payloads: Vec<Vec<u8>> = (0..200).map(|_| b.one(&rng(9))).collect();
        assert!(payloads.iter().all(|p| p.len() <= 300));
        let r = rng(5);
        let many: Vec<Vec<u8>> = (0..200).map(|_| b.one(&r)).collect();
        assert!(many.iter().any(Vec::is_empty));
        assert!(many.iter().any(|p| p.len() == 300));
    }
}
