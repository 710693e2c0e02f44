//! The search for a linearization of one partition: Wing & Gong's algorithm with Lowe's
//! memoization (as in Porcupine), resumable so that partitions can share a budget in slices,
//! with a visited set of 128-bit fingerprints instead of whole states.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use super::hash::{mix64, StableHasher};
use super::{Model, Operation, Outcome};

/// An event's position: virtual time, then recording order.
pub(crate) type At = (Duration, u64);

/// An operation as the search sees it.
pub(crate) struct Entry<'a, Op, Ret> {
    /// The operation's [`Operation::id`].
    pub(crate) id: usize,
    pub(crate) op: &'a Op,
    /// What it returned; `None`: any return is fine.
    pub(crate) ret: Option<&'a Ret>,
    pub(crate) call: At,
    /// `None`: no return (unknown outcome); it may take effect any time after its call, or
    /// never.
    pub(crate) returned: Option<At>,
}

/// The search's view of `op`, with every return after `cut` (if any) forgotten: an operation
/// that returned after the cut is unknown, one invoked after it is left out (as is a failed
/// one).
pub(crate) fn entry<Op, Ret>(
    op: &Operation<Op, Ret>,
    cut: Option<At>,
) -> Option<Entry<'_, Op, Ret>> {
    let call = (op.invoked, op.seq.0);
    let (ret, returned) = match &op.outcome {
        Outcome::Failed { .. } => return None,
        Outcome::Ok { ret, at } => (Some(ret), Some((*at, op.seq.1))),
        Outcome::Pending | Outcome::Unknown { .. } => (None, None),
    };
    let forget = matches!(cut, Some(cut) if returned.is_some_and(|r| r > cut));
    match cut {
        Some(cut) if call > cut => None,
        _ => Some(Entry {
            id: op.id,
            op: &op.op,
            ret: if forget { None } else { ret },
            call,
            returned: if forget { None } else { returned },
        }),
    }
}

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Spent {
    /// The number of states.
    States,
    /// The wall-clock time limit.
    Time,
}

/// A budget of states and, optionally, of wall-clock time, and what was spent of it.
pub(crate) struct Work {
    pub(crate) left: u64,
    pub(crate) explored: u64,
    pub(crate) deadline: Option<Instant>,
    pub(crate) spent: Option<Spent>,
}

impl Work {
    pub(crate) fn new(max_states: u64, time_limit: Option<Duration>) -> Self {
        Work {
            left: max_states,
            explored: 0,
            deadline: time_limit.map(|t| Instant::now() + t),
            spent: None,
        }
    }

    /// Takes one state from the budget; `false` if it is spent. The clock is read every
    /// 1,024 states.
    fn take(&mut self) -> bool {
        if self.spent.is_some() {
            return false;
        }
        if self.left == 0 {
            self.spent = Some(Spent::States);
            return false;
        }
        if self.explored % 1024 == 1023 {
            if let Some(deadline) = self.deadline {
                if Instant::now() >= deadline {
                    self.spent = Some(Spent::Time);
                    return false;
                }
            }
        }
        self.left -= 1;
        self.explored += 1;
        true
    }
}

/// What a search (or one slice of it) ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Linearizable,
    Violation,
    /// The budget ran out; [`Search::run`] may be called again with more.
    Exhausted,
}

const NIL: usize = usize::MAX;

/// How many of the last operations of unknown outcome linearized the dominance check looks
/// at ([`Search::advance`]); any number is exact, more prunes more and costs more per state.
const DOMINANCE_CHECKS: usize = 8;

/// One linearized operation (an index into the entries), the state before it, whether it
/// was forced (read-only, linearized as soon as it could be: undoing it undoes the state
/// before it too), and which candidate of its level it was.
struct Step {
    op: u32,
    before: u32,
    forced: bool,
    /// Its position among the candidates of its level ([`Search::candidates`]).
    tried: u32,
}

/// A hasher for keys that are already uniformly random (fingerprints): takes their low bits.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// A pseudo-random 128-bit number for `n` in stream `salt`: two rounds of splitmix64.
fn random128(salt: u64, n: u64) -> u128 {
    let a = mix64(salt ^ mix64(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    let b = mix64(a ^ 0xd1b5_4a32_d192_ed03);
    (u128::from(a) << 64) | u128::from(b)
}

/// Each entry's rank by the midpoint of its interval (call and return positions, in time);
/// an entry without a return ranks after all that have one, by call.
fn ranks<Op, Ret>(entries: &[Entry<'_, Op, Ret>]) -> Vec<u32> {
    let key = |e: &Entry<'_, Op, Ret>| match e.returned {
        Some(r) => (false, e.call.0.as_nanos() + r.0.as_nanos()),
        None => (true, e.call.0.as_nanos()),
    };
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| (key(&entries[i]), entries[i].call));
    let mut rank = vec![0; entries.len()];
    for (r, i) in order.into_iter().enumerate() {
        rank[i] = r as u32;
    }
    rank
}

/// Model states seen by a search, each stored once and named by a small id.
struct States<S> {
    ids: HashMap<S, u32, BuildHasherDefault<StableHasher>>,
    all: Vec<S>,
}

impl<S: Clone + Eq + std::hash::Hash> States<S> {
    fn intern(&mut self, s: S) -> u32 {
        if let Some(&id) = self.ids.get(&s) {
            return id;
        }
        let id = u32::try_from(self.all.len()).expect("fewer than 2^32 distinct model states");
        self.all.push(s.clone());
        self.ids.insert(s, id);
        id
    }
}

/// Wing & Gong / Lowe search over one partition's operations: the event list (a doubly linked
/// list over arrays, node 0 its head), the linearized set, the current state and the memo.
///
/// The memo holds, for each (set of linearized operations, model state) explored, a 128-bit
/// fingerprint: the XOR of a random number per linearized operation (Zobrist hashing, updated
/// in O(1) per step) and one per state id. Two different pairs get the same fingerprint with
/// probability 2^-128, so a search of 10^9 states wrongly skips one with probability below
/// 10^-20; in exchange a state costs 16 bytes in the memo whatever the partition's size and
/// the model's state, and model states are stored once each ([`States`]).
pub(crate) struct Search<'a, M: Model> {
    entries: Vec<Entry<'a, M::Op, M::Ret>>,
    read_only: Vec<bool>,
    next: Vec<usize>,
    prev: Vec<usize>,
    op_of: Vec<u32>,
    is_call: Vec<bool>,
    call_node: Vec<usize>,
    return_node: Vec<usize>,
    /// Operations that returned, not yet linearized.
    required: usize,
    keys: Vec<u128>,
    fingerprint: u128,
    states: States<M::State>,
    state: u32,
    memo: HashSet<u128, BuildHasherDefault<PassThrough>>,
    stack: Vec<Step>,
    /// Each entry's rank by the midpoint of its interval (no return: last): the order in
    /// which a level's candidates are tried.
    rank: Vec<u32>,
    /// The candidates of the current level, by rank.
    candidates: Vec<u32>,
    /// The candidate of the current level to try next (0: the level is new, try forced
    /// reads first); where [`Search::run`] goes on from.
    start: usize,
    /// The operations of unknown outcome linearized, in order (they are on the stack).
    optional: Vec<u32>,
    /// The longest sequence linearized so far (entry indices), kept if asked.
    longest: Option<Vec<u32>>,
    /// States explored by this search.
    pub(crate) explored: u64,
}

impl<'a, M: Model> Search<'a, M> {
    pub(crate) fn new(model: &M, entries: Vec<Entry<'a, M::Op, M::Ret>>) -> Self {
        // Invocations and returns in time order (positions are unique: recording order
        // breaks ties).
        let mut events: Vec<(At, usize, bool)> = Vec::with_capacity(2 * entries.len());
        for (i, e) in entries.iter().enumerate() {
            events.push((e.call, i, true));
            if let Some(r) = e.returned {
                events.push((r, i, false));
            }
        }
        events.sort_unstable_by_key(|e| e.0);
        let nodes = events.len() + 1;
        let mut next: Vec<usize> = (1..=nodes).collect();
        next[nodes - 1] = NIL;
        let mut states = States {
            ids: HashMap::default(),
            all: Vec::new(),
        };
        let state = states.intern(model.init());
        let read_only = entries
            .iter()
            .map(|e| e.ret.is_some_and(|r| model.is_read_only(e.op, r)))
            .collect();
        let mut s = Search {
            read_only,
            next,
            prev: (0..nodes).map(|i| i.wrapping_sub(1)).collect(),
            op_of: vec![0; nodes],
            is_call: vec![false; nodes],
            call_node: vec![NIL; entries.len()],
            return_node: vec![NIL; entries.len()],
            required: entries.iter().filter(|e| e.returned.is_some()).count(),
            keys: (0..entries.len() as u64)
                .map(|i| random128(0x6b65_6c70_6965, i))
                .collect(),
            fingerprint: 0,
            states,
            state,
            memo: HashSet::default(),
            stack: Vec::new(),
            rank: ranks(&entries),
            candidates: Vec::new(),
            start: 0,
            optional: Vec::new(),
            longest: None,
            explored: 0,
            entries,
        };
        for (k, &(_, i, call)) in events.iter().enumerate() {
            s.op_of[k + 1] = i as u32;
            s.is_call[k + 1] = call;
            if call {
                s.call_node[i] = k + 1;
            } else {
                s.return_node[i] = k + 1;
            }
        }
        s
    }

    /// Keeps the longest sequence linearized, for [`Search::longest`].
    pub(crate) fn keep_longest(&mut self) {
        self.longest = Some(Vec::new());
    }

    /// The operations' ids in the order linearized: the whole linearization after
    /// [`Found::Linearizable`].
    pub(crate) fn order(&self) -> Vec<usize> {
        self.stack
            .iter()
            .map(|s| self.entries[s.op as usize].id)
            .collect()
    }

    /// The longest sequence of operations (ids) the search linearized, if kept.
    pub(crate) fn longest(&self) -> Vec<usize> {
        let longest = self.longest.as_deref().unwrap_or_default();
        longest
            .iter()
            .map(|&i| self.entries[i as usize].id)
            .collect()
    }

    /// The number of operations searched.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    /// Undoes the matching [`Search::unlink`]; undos come in reverse order (dancing links).
    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    fn state_key(id: u32) -> u128 {
        random128(0x0073_7461_7465, u64::from(id))
    }

    /// Linearizes entry `i`, leading to state `after`, unless that was explored before or the
    /// budget is spent (then nothing changes, and the same step is tried again on resuming).
    fn advance(
        &mut self,
        i: usize,
        after: u32,
        forced: bool,
        tried: usize,
        work: &mut Work,
    ) -> Found {
        let fingerprint = self.fingerprint ^ self.keys[i];
        let key = fingerprint ^ Self::state_key(after);
        if self.memo.contains(&key) {
            return Found::Violation; // seen: not a way forward
        }
        // Dominance: the same operations but one of unknown outcome, in the same state, were
        // explored and failed (a set of this size is never on the stack: the stack's is the
        // current one, without `i`). What could follow here could follow there (the one left
        // out is never required), so this fails too. Checked for the last few only.
        for &u in self.optional.iter().rev().take(DOMINANCE_CHECKS) {
            if self.memo.contains(&(key ^ self.keys[u as usize])) {
                return Found::Violation;
            }
        }
        if !work.take() {
            return Found::Exhausted;
        }
        self.explored += 1;
        self.memo.insert(key);
        self.fingerprint = fingerprint;
        let before = std::mem::replace(&mut self.state, after);
        self.stack.push(Step {
            op: i as u32,
            before,
            forced,
            tried: tried as u32,
        });
        self.unlink(self.call_node[i]);
        if self.return_node[i] != NIL {
            self.unlink(self.return_node[i]);
            self.required -= 1;
        } else {
            self.optional.push(i as u32);
        }
        Found::Linearizable
    }

    /// Undoes linearizations up to and including the last unforced one; the candidate of its
    /// level to try next, `None` if none is left.
    fn backtrack(&mut self) -> Option<usize> {
        if let Some(longest) = &mut self.longest {
            if self.stack.len() > longest.len() {
                longest.clear();
                longest.extend(self.stack.iter().map(|s| s.op));
            }
        }
        loop {
            let step = self.stack.pop()?;
            let i = step.op as usize;
            self.fingerprint ^= self.keys[i];
            self.state = step.before;
            if self.return_node[i] != NIL {
                self.relink(self.return_node[i]);
                self.required += 1;
            } else {
                self.optional.pop();
            }
            self.relink(self.call_node[i]);
            if !step.forced {
                return Some(step.tried as usize + 1);
            }
        }
    }

    /// The operations that may be linearized next, by rank: those invoked before the earliest
    /// return of an operation not yet linearized (the calls before the first return left in
    /// the list).
    fn candidates(&mut self) {
        self.candidates.clear();
        let mut node = self.next[0];
        while node != NIL && self.is_call[node] {
            self.candidates.push(self.op_of[node]);
            node = self.next[node];
        }
        let rank = &self.rank;
        self.candidates.sort_unstable_by_key(|&i| rank[i as usize]);
    }

    /// Searches on until an answer or until `work` is spent ([`Found::Exhausted`]: call again
    /// with more to go on where it stopped).
    ///
    /// At each level the candidates are tried in order of the midpoints of their intervals:
    /// for effects at uniformly random instants within the intervals, the likelier order of
    /// any two. Any order is exact (every candidate is tried before the level fails); this one
    /// finds a linearization of a history with many concurrent operations without trying the
    /// many wrong ones that invocation order tries first.
    pub(crate) fn run(&mut self, model: &M, work: &mut Work) -> Found {
        'levels: loop {
            if self.required == 0 {
                if let Some(longest) = &mut self.longest {
                    longest.clear();
                    longest.extend(self.stack.iter().map(|s| s.op));
                }
                return Found::Linearizable;
            }
            self.candidates();
            if self.start == 0 {
                // A read-only operation can be linearized now rather than later: all that
                // must precede it already is, and moving it changes no state. So this state
                // fails if that one does, and the alternatives are moot.
                for k in 0..self.candidates.len() {
                    let i = self.candidates[k] as usize;
                    if !self.read_only[i] {
                        continue;
                    }
                    let e = &self.entries[i];
                    let (after, ret) = model.step(&self.states.all[self.state as usize], e.op);
                    if e.ret.is_some_and(|r| *r == ret) {
                        let after = self.states.intern(after);
                        if after != self.state {
                            continue;
                        }
                        match self.advance(i, after, true, k, work) {
                            Found::Linearizable => continue 'levels,
                            Found::Exhausted => return Found::Exhausted,
                            Found::Violation => match self.backtrack() {
                                Some(next) => {
                                    self.start = next;
                                    continue 'levels;
                                }
                                None => return Found::Violation,
                            },
                        }
                    }
                }
            }
            for k in self.start..self.candidates.len() {
                let i = self.candidates[k] as usize;
                let e = &self.entries[i];
                let (after, ret) = model.step(&self.states.all[self.state as usize], e.op);
                if e.ret.is_none_or(|r| *r == ret) {
                    let after = self.states.intern(after);
                    match self.advance(i, after, false, k, work) {
                        Found::Linearizable => {
                            self.start = 0;
                            continue 'levels;
                        }
                        Found::Exhausted => {
                            self.start = k;
                            return Found::Exhausted;
                        }
                        Found::Violation => {}
                    }
                }
            }
            // No candidate leads on: an earlier choice was wrong.
            match self.backtrack() {
                Some(next) => self.start = next,
                None => return Found::Violation,
            }
        }
    }
}
