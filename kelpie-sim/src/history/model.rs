//! Sequential specifications: the [`Model`] trait, a key-value store and a register.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use super::register::RegisterAccess;
use super::PartitionKey;

/// A sequential specification: a deterministic state machine that says what each operation
/// returns and how it changes the state, when operations run one at a time.
///
/// A history is linearizable against a model if its operations can be ordered, each at an
/// instant within its own invocation–return interval, so that [`Model::step`] from
/// [`Model::init`] returns exactly what each operation returned. The checker remembers the
/// states it has seen, so `State` should be small and cheap to hash and compare; a choice the
/// real system makes freely (which of several values to return) belongs in the operation's
/// return value compared by a coarser `Ret`, not in the model.
pub trait Model {
    /// The state of the sequential object.
    type State: Clone + Eq + Hash + Debug;
    /// An operation, with its arguments.
    type Op: Debug;
    /// What an operation returns.
    type Ret: PartialEq + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `op` to `state`: the new state and what `op` returns.
    fn step(&self, state: &Self::State, op: &Self::Op) -> (Self::State, Self::Ret);

    /// Whether `op`, having returned `ret`, left the state unchanged, whatever the state was: a
    /// read, a compare-and-swap that failed. The checker then linearizes such an operation as
    /// soon as it can instead of trying every place for it (exact, not a heuristic: moving an
    /// operation that changes nothing earlier changes nothing), which makes histories with
    /// many concurrent reads far cheaper to check. Saying `true` for an operation that can
    /// change the state makes the checker wrong. Default: `false`.
    fn is_read_only(&self, op: &Self::Op, ret: &Self::Ret) -> bool {
        let _ = (op, ret);
        false
    }

    /// The partition of `op`. Operations in different partitions must be independent (touch
    /// disjoint parts of the state, as operations on different keys of a key-value store do):
    /// the checker then checks each partition on its own, which is far cheaper than checking
    /// them together (P-compositionality). Build the key with [`PartitionKey::of`] from what
    /// names the independent part (the key). Two independent partitions may share a key (a
    /// hash collision) at some cost in speed, never in correctness. Default:
    /// [`PartitionKey::ALL`], one partition.
    fn partition(&self, op: &Self::Op) -> PartitionKey {
        let _ = op;
        PartitionKey::ALL
    }

    /// `op`, having returned `ret` (`None`: its outcome is unknown), as an access to a
    /// register: a plain read that returned what a read returns in some state, or a blind
    /// write that leaves some state whatever the state was. When every operation of a
    /// partition is such an access and no two writes leave the same state, the checker
    /// decides the partition in O(n log n) instead of searching (the register fast path of
    /// [`History::check_with`](super::History::check_with)), however many operations are in
    /// flight. The states here describe the partition alone (for a key-value store, the one
    /// key), as [`Model::register_initial`] does. The fast path certifies its answers (a pass
    /// by replaying an order through [`Model::step`], a violation by searching a witness of at
    /// most six operations), so a wrong access costs speed, never a wrong verdict. Default:
    /// `None` (always search).
    fn register_access(
        &self,
        op: &Self::Op,
        ret: Option<&Self::Ret>,
    ) -> Option<RegisterAccess<Self::State>> {
        let _ = (op, ret);
        None
    }

    /// The state `op`'s partition starts in, described as [`Model::register_access`]
    /// describes states. Default: [`Model::init`].
    fn register_initial(&self, op: &Self::Op) -> Self::State {
        let _ = op;
        self.init()
    }
}

/// An operation on a key-value store ([`KvModel`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOp<K, V> {
    /// Reads a key; returns [`KvRet::Value`].
    Get(K),
    /// Writes a key; returns [`KvRet::Done`].
    Put(K, V),
    /// Removes a key; returns [`KvRet::Done`].
    Delete(K),
    /// Writes `new` if the key's value is `expected` (`None`: if the key is absent); returns
    /// [`KvRet::Swapped`] with whether it wrote.
    Cas {
        /// The key.
        key: K,
        /// The value the key must have (`None`: absent).
        expected: Option<V>,
        /// The value written if it has.
        new: V,
    },
    /// Appends a value to the key's value (to the missing value if the key is absent, see
    /// [`KvModel::with_missing`]); returns [`KvRet::Done`]. Needs a model made with
    /// [`KvModel::with_append`].
    Append(K, V),
}

impl<K, V> KvOp<K, V> {
    /// The key the operation touches.
    pub fn key(&self) -> &K {
        match self {
            KvOp::Get(k) | KvOp::Put(k, _) | KvOp::Delete(k) | KvOp::Append(k, _) => k,
            KvOp::Cas { key, .. } => key,
        }
    }
}

/// What a key-value operation returns ([`KvModel`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvRet<V> {
    /// The value read by [`KvOp::Get`] (`None`: absent).
    Value(Option<V>),
    /// A [`KvOp::Put`], [`KvOp::Delete`] or [`KvOp::Append`] completed.
    Done,
    /// Whether a [`KvOp::Cas`] wrote.
    Swapped(bool),
}

/// A value that [`KvOp::Append`] can extend: strings and lists.
pub trait Append: Sized {
    /// `self` followed by `suffix`.
    fn append(&self, suffix: &Self) -> Self;
}

impl Append for String {
    fn append(&self, suffix: &Self) -> Self {
        let mut s = String::with_capacity(self.len() + suffix.len());
        s.push_str(self);
        s.push_str(suffix);
        s
    }
}

impl<T: Clone> Append for Vec<T> {
    fn append(&self, suffix: &Self) -> Self {
        let mut v = Vec::with_capacity(self.len() + suffix.len());
        v.extend_from_slice(self);
        v.extend_from_slice(suffix);
        v
    }
}

/// A key-value store with get, put, delete, compare-and-swap and (when enabled) append
/// ([`KvOp`], [`KvRet`]). Each key is its own partition ([`Model::partition`]): histories are
/// checked key by key.
///
/// Defaults ([`KvModel::new`]): the store starts empty, a missing key reads as
/// `KvRet::Value(None)`, and [`KvOp::Append`] is not enabled.
///
/// ```
/// use kelpie_sim::history::{KvModel, KvOp, KvRet, Model};
///
/// // A store of strings where a missing key reads as "" (as in Redis), with APPEND.
/// let m = KvModel::<&str, String>::new().with_missing(String::new()).with_append();
/// let (s, r) = m.step(&m.init(), &KvOp::Get("k"));
/// assert_eq!(r, KvRet::Value(Some(String::new())));
/// let (s, _) = m.step(&s, &KvOp::Append("k", "ab".into()));
/// let (s, _) = m.step(&s, &KvOp::Append("k", "c".into()));
/// assert_eq!(m.step(&s, &KvOp::Get("k")).1, KvRet::Value(Some("abc".into())));
/// ```
#[derive(Debug, Clone)]
pub struct KvModel<K, V> {
    initial: BTreeMap<K, V>,
    missing: Option<V>,
    append: Option<fn(&V, &V) -> V>,
}

impl<K, V> Default for KvModel<K, V> {
    fn default() -> Self {
        KvModel {
            initial: BTreeMap::new(),
            missing: None,
            append: None,
        }
    }
}

impl<K, V> KvModel<K, V> {
    /// A store that starts empty.
    pub fn new() -> Self {
        KvModel::default()
    }

    /// A store that starts with `initial`.
    pub fn with_initial(initial: BTreeMap<K, V>) -> Self {
        KvModel {
            initial,
            ..KvModel::default()
        }
    }

    /// A missing key reads as `Some(missing)` instead of `None`, a compare-and-swap expecting
    /// `Some(missing)` succeeds on it, and an append to it appends to `missing`. Writing
    /// `missing` to a key is the same as deleting it (the two cannot be told apart).
    pub fn with_missing(mut self, missing: V) -> Self {
        self.missing = Some(missing);
        self
    }

    /// Enables [`KvOp::Append`] with the value type's [`Append`].
    pub fn with_append(self) -> Self
    where
        V: Append,
    {
        self.with_append_fn(V::append)
    }

    /// Enables [`KvOp::Append`] with `append(value, suffix)` computing the new value.
    pub fn with_append_fn(mut self, append: fn(&V, &V) -> V) -> Self {
        self.append = Some(append);
        self
    }
}

impl<K: Ord + Clone, V: Clone + Eq> KvModel<K, V> {
    /// What `key` reads as in `state`.
    fn read(&self, state: &BTreeMap<K, V>, key: &K) -> Option<V> {
        state.get(key).or(self.missing.as_ref()).cloned()
    }

    /// The one-key state in which `key` reads as `value` (the missing value: absent).
    fn only(&self, key: &K, value: Option<&V>) -> BTreeMap<K, V> {
        let mut state = BTreeMap::new();
        if let Some(v) = value.filter(|&v| Some(v) != self.missing.as_ref()) {
            state.insert(key.clone(), v.clone());
        }
        state
    }

    /// `state` with `key` set to `value` (removed if `value` is the missing value).
    fn write(&self, state: &BTreeMap<K, V>, key: &K, value: Option<V>) -> BTreeMap<K, V> {
        let mut next = state.clone();
        match value {
            Some(v) if Some(&v) != self.missing.as_ref() => {
                next.insert(key.clone(), v);
            }
            _ => {
                next.remove(key);
            }
        }
        next
    }
}

impl<K, V> Model for KvModel<K, V>
where
    K: Ord + Clone + Hash + Debug,
    V: Clone + Eq + Hash + Debug,
{
    /// Only the keys that a partition touches ever change; the others keep their initial
    /// values.
    type State = BTreeMap<K, V>;
    type Op = KvOp<K, V>;
    type Ret = KvRet<V>;

    fn init(&self) -> Self::State {
        let mut s = self.initial.clone();
        if let Some(missing) = &self.missing {
            s.retain(|_, v| v != missing);
        }
        s
    }

    /// # Panics
    ///
    /// On [`KvOp::Append`] if the model was not made with [`KvModel::with_append`] or
    /// [`KvModel::with_append_fn`] (a misconfigured model, not a property of the history).
    fn step(&self, state: &Self::State, op: &Self::Op) -> (Self::State, Self::Ret) {
        match op {
            KvOp::Get(k) => (state.clone(), KvRet::Value(self.read(state, k))),
            KvOp::Put(k, v) => (self.write(state, k, Some(v.clone())), KvRet::Done),
            KvOp::Delete(k) => (self.write(state, k, None), KvRet::Done),
            KvOp::Cas { key, expected, new } => {
                if self.read(state, key).as_ref() == expected.as_ref()
                    || (state.get(key).is_none() && expected.is_none())
                {
                    (
                        self.write(state, key, Some(new.clone())),
                        KvRet::Swapped(true),
                    )
                } else {
                    (state.clone(), KvRet::Swapped(false))
                }
            }
            KvOp::Append(k, suffix) => {
                let append = self.append.expect(
                    "KvOp::Append on a KvModel without append: make it with KvModel::with_append()",
                );
                let value = match self.read(state, k) {
                    Some(v) => append(&v, suffix),
                    None => suffix.clone(),
                };
                (self.write(state, k, Some(value)), KvRet::Done)
            }
        }
    }

    fn is_read_only(&self, op: &Self::Op, ret: &Self::Ret) -> bool {
        matches!(
            (op, ret),
            (KvOp::Get(_), _) | (KvOp::Cas { .. }, KvRet::Swapped(false))
        )
    }

    fn partition(&self, op: &Self::Op) -> PartitionKey {
        PartitionKey::of(op.key())
    }

    /// A get, put or delete of one key, as a register holding that key alone: the state is
    /// the one-key map (empty when the key reads as missing).
    fn register_access(
        &self,
        op: &Self::Op,
        ret: Option<&Self::Ret>,
    ) -> Option<RegisterAccess<Self::State>> {
        match (op, ret) {
            (KvOp::Get(_), None) => Some(RegisterAccess::Unobserved),
            (KvOp::Get(k), Some(KvRet::Value(v))) => {
                // A missing key reads as `self.missing`: any other absent read fits no state.
                if v.is_none() && self.missing.is_some() {
                    return None;
                }
                Some(RegisterAccess::Read(self.only(k, v.as_ref())))
            }
            (KvOp::Put(k, v), None | Some(KvRet::Done)) => {
                Some(RegisterAccess::Write(self.only(k, Some(v))))
            }
            (KvOp::Delete(k), None | Some(KvRet::Done)) => {
                Some(RegisterAccess::Write(self.only(k, None)))
            }
            _ => None,
        }
    }

    fn register_initial(&self, op: &Self::Op) -> Self::State {
        let k = op.key();
        self.only(k, self.initial.get(k))
    }
}

/// An operation on a single register ([`RegisterModel`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterOp<V> {
    /// Reads the value; returns [`RegisterRet::Value`].
    Read,
    /// Writes a value; returns [`RegisterRet::Done`].
    Write(V),
    /// Writes `new` if the value is `expected`; returns [`RegisterRet::Swapped`].
    Cas {
        /// The value the register must hold.
        expected: V,
        /// The value written if it does.
        new: V,
    },
}

/// What a register operation returns ([`RegisterModel`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterRet<V> {
    /// The value read by [`RegisterOp::Read`].
    Value(V),
    /// A [`RegisterOp::Write`] completed.
    Done,
    /// Whether a [`RegisterOp::Cas`] wrote.
    Swapped(bool),
}

/// A single read/write/compare-and-swap register holding a `V` ([`RegisterOp`],
/// [`RegisterRet`]).
#[derive(Debug, Clone)]
pub struct RegisterModel<V> {
    initial: V,
}

impl<V> RegisterModel<V> {
    /// A register that starts with `initial`.
    pub fn new(initial: V) -> Self {
        RegisterModel { initial }
    }
}

impl<V: Clone + Eq + Hash + Debug> Model for RegisterModel<V> {
    type State = V;
    type Op = RegisterOp<V>;
    type Ret = RegisterRet<V>;

    fn init(&self) -> V {
        self.initial.clone()
    }

    fn step(&self, state: &V, op: &Self::Op) -> (V, Self::Ret) {
        match op {
            RegisterOp::Read => (state.clone(), RegisterRet::Value(state.clone())),
            RegisterOp::Write(v) => (v.clone(), RegisterRet::Done),
            RegisterOp::Cas { expected, new } if expected == state => {
                (new.clone(), RegisterRet::Swapped(true))
            }
            RegisterOp::Cas { .. } => (state.clone(), RegisterRet::Swapped(false)),
        }
    }

    fn is_read_only(&self, op: &Self::Op, ret: &Self::Ret) -> bool {
        matches!(
            (op, ret),
            (RegisterOp::Read, _) | (RegisterOp::Cas { .. }, RegisterRet::Swapped(false))
        )
    }

    /// Reads and writes; a compare-and-swap is neither (it is searched).
    fn register_access(&self, op: &Self::Op, ret: Option<&Self::Ret>) -> Option<RegisterAccess<V>> {
        match (op, ret) {
            (RegisterOp::Read, None) => Some(RegisterAccess::Unobserved),
            (RegisterOp::Read, Some(RegisterRet::Value(v))) => {
                Some(RegisterAccess::Read(v.clone()))
            }
            (RegisterOp::Write(v), None | Some(RegisterRet::Done)) => {
                Some(RegisterAccess::Write(v.clone()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_steps() {
        let m = KvModel::<&str, u32>::new();
        let s = m.init();
        let (s, r) = m.step(&s, &KvOp::Get("a"));
        assert_eq!(r, KvRet::Value(None));
        let (s, r) = m.step(&s, &KvOp::Put("a", 1));
        assert_eq!(r, KvRet::Done);
        let cas = |expected, new| KvOp::Cas {
            key: "a",
            expected,
            new,
        };
        let (s, r) = m.step(&s, &cas(Some(2), 3));
        assert_eq!((r, s.get("a")), (KvRet::Swapped(false), Some(&1)));
        let (s, r) = m.step(&s, &cas(Some(1), 3));
        assert_eq!((r, s.get("a")), (KvRet::Swapped(true), Some(&3)));
        let (s, _) = m.step(&s, &KvOp::Delete("a"));
        let (s, r) = m.step(&s, &cas(None, 4));
        assert_eq!((r, s.get("a")), (KvRet::Swapped(true), Some(&4)));
        assert_eq!(
            m.partition(&KvOp::Get("a")),
            m.partition(&KvOp::Delete("a"))
        );
        assert_ne!(m.partition(&KvOp::Get("a")), m.partition(&KvOp::Get("b")));
    }

    #[test]
    fn register_steps() {
        let m = RegisterModel::new(0u8);
        let (s, r) = m.step(&m.init(), &RegisterOp::Write(5));
        assert_eq!((s, r), (5, RegisterRet::Done));
        let cas = RegisterOp::Cas {
            expected: 4,
            new: 6,
        };
        assert_eq!(m.step(&5, &cas), (5, RegisterRet::Swapped(false)));
        assert_eq!(m.step(&4, &cas), (6, RegisterRet::Swapped(true)));
        assert_eq!(m.step(&7, &RegisterOp::Read), (7, RegisterRet::Value(7)));
    }

    #[test]
    fn kv_append_extends_the_value() {
        let m = KvModel::<&str, Vec<u8>>::new().with_append();
        let (s, r) = m.step(&m.init(), &KvOp::Append("l", vec![1]));
        assert_eq!(r, KvRet::Done);
        let (s, _) = m.step(&s, &KvOp::Append("l", vec![2, 3]));
        assert_eq!(
            m.step(&s, &KvOp::Get("l")).1,
            KvRet::Value(Some(vec![1, 2, 3]))
        );
        let (s, _) = m.step(&s, &KvOp::Put("l", vec![9]));
        let (s, _) = m.step(&s, &KvOp::Append("l", vec![8]));
        assert_eq!(s.get("l"), Some(&vec![9, 8]));
        assert!(!m.is_read_only(&KvOp::Append("l", vec![]), &KvRet::Done));
        assert_eq!(
            m.partition(&KvOp::Append("l", vec![])),
            m.partition(&KvOp::Get("l"))
        );
        // A custom append: numbers that add up.
        let sum = KvModel::<u8, u64>::new().with_append_fn(|a, b| a + b);
        let (s, _) = sum.step(&sum.init(), &KvOp::Append(0, 5));
        let (s, _) = sum.step(&s, &KvOp::Append(0, 6));
        assert_eq!(s.get(&0), Some(&11));
    }

    #[test]
    #[should_panic(expected = "KvModel::with_append()")]
    fn kv_append_needs_to_be_enabled() {
        let m = KvModel::<&str, String>::new();
        let _ = m.step(&m.init(), &KvOp::Append("k", "x".into()));
    }

    #[test]
    fn kv_missing_value_is_configurable() {
        let m = KvModel::<&str, String>::new()
            .with_missing(String::new())
            .with_append();
        let empty = KvRet::Value(Some(String::new()));
        assert_eq!(m.step(&m.init(), &KvOp::Get("k")).1, empty);
        let (s, _) = m.step(&m.init(), &KvOp::Append("k", "ab".into()));
        let (s, _) = m.step(&s, &KvOp::Append("k", "c".into()));
        assert_eq!(
            m.step(&s, &KvOp::Get("k")).1,
            KvRet::Value(Some("abc".into()))
        );
        let (s, _) = m.step(&s, &KvOp::Delete("k"));
        assert_eq!(m.step(&s, &KvOp::Get("k")).1, empty);
        // A CAS expecting the missing value, or absence, succeeds on a missing key.
        for expected in [Some(String::new()), None] {
            let cas = KvOp::Cas {
                key: "k",
                expected,
                new: "x".to_string(),
            };
            let (s2, r) = m.step(&s, &cas);
            assert_eq!(
                (r, s2.get("k").map(String::as_str)),
                (KvRet::Swapped(true), Some("x"))
            );
        }
        // Writing the missing value is deleting: one state, not two.
        let (s2, _) = m.step(&s, &KvOp::Put("k", String::new()));
        assert_eq!(s2, s);
        let init = BTreeMap::from([("a", String::new()), ("b", "1".to_string())]);
        let m = KvModel::with_initial(init).with_missing(String::new());
        assert_eq!(m.init(), BTreeMap::from([("b", "1".to_string())]));
        // Without it, a missing key reads as None.
        let plain = KvModel::<&str, String>::new();
        assert_eq!(
            plain.step(&plain.init(), &KvOp::Get("k")).1,
            KvRet::Value(None)
        );
    }

    #[test]
    fn histories_with_appends_and_a_missing_value_are_checked() {
        use super::super::History;
        use std::time::Duration;
        let ms = Duration::from_millis;
        let m = KvModel::<&str, String>::new()
            .with_missing(String::new())
            .with_append();
        let h = History::new();
        // Two concurrent appends; a read between sees either order's prefix.
        let a = h.invoke(1, KvOp::Append("k", "a".to_string()), ms(0));
        let b = h.invoke(2, KvOp::Append("k", "b".to_string()), ms(0));
        h.invoke(3, KvOp::Get("k"), ms(1))
            .ok(KvRet::Value(Some(String::new())), ms(2));
        a.ok(KvRet::Done, ms(5));
        b.ok(KvRet::Done, ms(5));
        h.invoke(3, KvOp::Get("k"), ms(6))
            .ok(KvRet::Value(Some("ba".to_string())), ms(7));
        assert!(h.check(&m, 1_000).is_linearizable());
        // An append lost: after both returned, a read sees only one.
        h.invoke(3, KvOp::Get("k"), ms(8))
            .ok(KvRet::Value(Some("a".to_string())), ms(9));
        let v = h.check(&m, 1_000);
        let w = v.violation().expect("a lost append");
        assert!(w.minimal);
        assert!(w.operations.iter().any(|o| o.id == 4), "{v}");
    }
}
