//! The checker: Wing & Gong's search with Lowe's memoization (as in Porcupine), one partition
//! at a time, within a budget of explored states; and the shrinking of a violation to a small
//! set of operations that cannot be ordered.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::BuildHasherDefault;
use std::time::Duration;

use super::{lock, History, Model, Operation, Outcome};
use crate::trace::StableHasher;

/// The checker's answer; see [`History::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<Op, Ret> {
    /// Some order of the operations agrees with the model.
    Linearizable {
        /// States explored (at least one per operation that returned).
        explored: u64,
    },
    /// No order agrees with the model.
    Violation(Violation<Op, Ret>),
    /// The search reached its budget before deciding.
    Unknown {
        /// States explored: the budget.
        explored: u64,
        /// The budget given to [`History::check`].
        max_states: u64,
        /// The partition being searched when the budget ran out ([`Model::partition`]).
        partition: u64,
        /// The number of operations in that partition.
        operations: usize,
    },
}

impl<Op, Ret> Verdict<Op, Ret> {
    /// Whether the history is linearizable.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable { .. })
    }

    /// Whether the history is not linearizable.
    pub fn is_violation(&self) -> bool {
        matches!(self, Verdict::Violation(_))
    }

    /// Whether the budget ran out before an answer.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Verdict::Unknown { .. })
    }

    /// The violation, if the history is not linearizable.
    pub fn violation(&self) -> Option<&Violation<Op, Ret>> {
        match self {
            Verdict::Violation(v) => Some(v),
            _ => None,
        }
    }

    /// States explored in all (for a violation: finding it and shrinking it).
    pub fn explored(&self) -> u64 {
        match self {
            Verdict::Linearizable { explored } | Verdict::Unknown { explored, .. } => *explored,
            Verdict::Violation(v) => v.explored,
        }
    }
}

impl<Op: fmt::Debug, Ret: fmt::Debug> fmt::Display for Verdict<Op, Ret> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable { explored } => {
                write!(f, "linearizable ({explored} states explored)")
            }
            Verdict::Violation(v) => v.fmt(f),
            Verdict::Unknown {
                explored,
                max_states,
                partition,
                operations,
            } => write!(
                f,
                "unknown: the search explored {explored} states (the budget of {max_states}) \
                 in partition {partition:#x} of {operations} operations without an answer"
            ),
        }
    }
}

/// Why a history is not linearizable: a small sub-history, with the invocation and return
/// times and values of its operations, that no order agrees with the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation<Op, Ret> {
    /// Operations of one partition that cannot be ordered, in invocation order: the culprits
    /// and the operations their conflict needs (the write whose value a stale read returned,
    /// the writes that replaced it). This sub-history is itself not linearizable.
    pub operations: Vec<Operation<Op, Ret>>,
    /// The [`Operation::id`]s of the culprits: the operations whose outcomes cannot all hold.
    /// Were any one of them of unknown outcome, [`Violation::operations`] would be
    /// linearizable. A stale read and the write that made it stale are culprits; a write whose
    /// outcome was unknown, but that a read saw, is not, though it is among the operations.
    pub culprits: Vec<usize>,
    /// The partition ([`Model::partition`]).
    pub partition: u64,
    /// The number of operations in the partition.
    pub partition_len: usize,
    /// Whether shrinking finished within its budget (as many states as the check's): then
    /// dropping any one operation from [`Violation::operations`] makes it linearizable or
    /// drops what explains an outcome. If not, the operations are more than needed, and the
    /// culprits may be too.
    pub minimal: bool,
    /// States explored to find the violation and to shrink it.
    pub explored: u64,
}

impl<Op: fmt::Debug, Ret: fmt::Debug> fmt::Display for Violation<Op, Ret> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shrunk = if self.minimal {
            "shrunk from"
        } else {
            "partly shrunk (budget spent) from"
        };
        write!(
            f,
            "not linearizable: no order of these {} operations agrees with the model ({shrunk} \
             the {} operations of partition {:#x}; {} states explored)",
            self.operations.len(),
            self.partition_len,
            self.partition,
            self.explored
        )?;
        let context = !self.culprits.is_empty() && self.operations.len() > self.culprits.len();
        if context {
            write!(f, "; * marks outcomes that cannot all hold")?;
        }
        write!(f, ":")?;
        for op in &self.operations {
            let mark = if !context {
                ""
            } else if self.culprits.contains(&op.id) {
                "* "
            } else {
                "  "
            };
            write!(f, "\n  {mark}{op}")?;
        }
        Ok(())
    }
}

impl<Op: Clone, Ret: Clone> History<Op, Ret> {
    /// Checks whether the history is linearizable against `model`, exploring at most
    /// `max_states` states.
    ///
    /// **Algorithm.** Operations are split into [`Model::partition`]s, checked one by one in
    /// partition order. Within a partition, the invocations and returns are put in one list in
    /// time order, and a depth-first search (Wing & Gong, with Lowe's improvements, as in
    /// Porcupine) linearizes operations one at a time: it takes the first invocation in the
    /// list whose operation, applied to the current model state, returns what it returned;
    /// removes that operation's invocation and return from the list; and restarts from the
    /// list's head. Reaching a return whose operation is not yet linearized means an earlier
    /// choice was wrong: it undoes the last one and tries the next candidate. Every (set of
    /// linearized operations, model state) pair reached is remembered and never explored
    /// twice, which makes the search polynomial on the histories real systems produce. An
    /// operation the model calls read-only ([`Model::is_read_only`]) is linearized as soon as
    /// it can be, without trying it anywhere later (exact: moving an operation that changes
    /// nothing earlier changes nothing). The partition is linearizable once every operation
    /// that returned is linearized; an operation of unknown outcome has no return in the
    /// list, so it may be linearized anywhere after its invocation, or never. Failed
    /// operations are left out.
    ///
    /// **Budget.** `max_states` bounds the number of distinct (linearized set, state) pairs
    /// explored, across all partitions; the check stops with [`Verdict::Unknown`] when it is
    /// spent, never hanging. Memory and time are proportional: each state costs a step of the
    /// model, a clone of its state and one bit per operation of the partition. A linearizable
    /// history needs at least one state per operation that returned; histories from a few
    /// clients take little more, while many concurrent operations of unknown outcome can take
    /// exponentially many.
    ///
    /// **Violations.** A violation is shrunk before it is reported ([`Violation`]): to the
    /// shortest prefix of the partition (up to some return, the culprit's) that is not
    /// linearizable, then by dropping operations while what is left is still not linearizable
    /// and still holds what explains each outcome (so that dropping the write a read saw does
    /// not pass for a shorter answer). Each step is a search like the check's; shrinking has a
    /// budget of its own of `max_states`, beyond which the violation is reported unshrunk
    /// further ([`Violation::minimal`] is `false`).
    ///
    /// The answer, the states explored and the operations reported depend only on the
    /// history: the search order is fixed and the memo is only ever asked for membership.
    pub fn check<M>(&self, model: &M, max_states: u64) -> Verdict<Op, Ret>
    where
        M: Model<Op = Op, Ret = Ret>,
    {
        let log = lock(&self.shared);
        check(&log.ops, model, max_states)
    }
}

/// An event's position: virtual time, then recording order.
type At = (Duration, u64);

/// A cut after every event.
const NO_CUT: At = (Duration::MAX, u64::MAX);

/// An operation as the search sees it.
struct Entry<'a, Op, Ret> {
    op: &'a Op,
    /// What it returned; `None`: any return is fine.
    ret: Option<&'a Ret>,
    call: At,
    /// `None`: no return (unknown outcome); it may take effect any time after its call, or
    /// never.
    returned: Option<At>,
}

/// The search's view of `op`, with every return after `cut` (if any) forgotten: an operation
/// that returned after the cut is unknown, one invoked after it is left out (as is a failed
/// one).
fn entry<Op, Ret>(op: &Operation<Op, Ret>, cut: Option<At>) -> Option<Entry<'_, Op, Ret>> {
    let call = (op.invoked, op.seq.0);
    let (ret, returned) = match &op.outcome {
        Outcome::Failed { .. } => return None,
        Outcome::Ok { ret, at } => (Some(ret), Some((*at, op.seq.1))),
        Outcome::Pending | Outcome::Unknown { .. } => (None, None),
    };
    match cut {
        Some(cut) if call > cut => None,
        Some(cut) if returned.is_some_and(|r| r > cut) => Some(Entry {
            op: &op.op,
            ret: None,
            call,
            returned: None,
        }),
        _ => Some(Entry {
            op: &op.op,
            ret,
            call,
            returned,
        }),
    }
}

/// The states a search may still explore, and those it explored.
struct Work {
    left: u64,
    explored: u64,
}

enum Found {
    Linearizable,
    Violation,
    Exhausted,
}

const NIL: usize = usize::MAX;

/// One linearized operation, the state before it, and whether it was forced (read-only,
/// linearized as soon as it could be: undoing it undoes the state before it too).
struct Step<S> {
    op: usize,
    before: S,
    forced: bool,
}

enum Advance {
    Pushed,
    Seen,
    Exhausted,
}

/// Wing & Gong / Lowe search over one partition's operations: the event list (a doubly linked
/// list over arrays, node 0 its head), the linearized set, the current state and the memo.
struct Search<'s, 'a, M: Model> {
    model: &'s M,
    entries: &'s [Entry<'a, M::Op, M::Ret>],
    next: Vec<usize>,
    prev: Vec<usize>,
    op_of: Vec<usize>,
    is_call: Vec<bool>,
    call_node: Vec<usize>,
    return_node: Vec<usize>,
    /// Operations that returned, not yet linearized.
    required: usize,
    linearized: Vec<u64>,
    memo: HashSet<(Vec<u64>, M::State), BuildHasherDefault<StableHasher>>,
    state: M::State,
    stack: Vec<Step<M::State>>,
}

impl<'s, 'a, M: Model> Search<'s, 'a, M> {
    fn new(model: &'s M, entries: &'s [Entry<'a, M::Op, M::Ret>]) -> Self {
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
        let mut s = Search {
            model,
            entries,
            next,
            prev: (0..nodes).map(|i| i.wrapping_sub(1)).collect(),
            op_of: vec![0; nodes],
            is_call: vec![false; nodes],
            call_node: vec![NIL; entries.len()],
            return_node: vec![NIL; entries.len()],
            required: entries.iter().filter(|e| e.returned.is_some()).count(),
            linearized: vec![0; entries.len().div_ceil(64)],
            memo: HashSet::default(),
            state: model.init(),
            stack: Vec::new(),
        };
        for (k, &(_, i, call)) in events.iter().enumerate() {
            s.op_of[k + 1] = i;
            s.is_call[k + 1] = call;
            if call {
                s.call_node[i] = k + 1;
            } else {
                s.return_node[i] = k + 1;
            }
        }
        s
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

    fn flip(&mut self, i: usize) {
        self.linearized[i / 64] ^= 1 << (i % 64);
    }

    /// Linearizes operation `i`, leading to state `after`, unless that was explored before.
    fn advance(&mut self, i: usize, after: M::State, forced: bool, work: &mut Work) -> Advance {
        self.flip(i);
        let key = (self.linearized.clone(), after);
        if self.memo.contains(&key) {
            self.flip(i);
            return Advance::Seen;
        }
        if work.left == 0 {
            return Advance::Exhausted;
        }
        work.left -= 1;
        work.explored += 1;
        let after = key.1.clone();
        self.memo.insert(key);
        let before = std::mem::replace(&mut self.state, after);
        self.stack.push(Step {
            op: i,
            before,
            forced,
        });
        self.unlink(self.call_node[i]);
        if self.return_node[i] != NIL {
            self.unlink(self.return_node[i]);
            self.required -= 1;
        }
        Advance::Pushed
    }

    /// Undoes linearizations up to and including the last unforced one; the node to go on
    /// scanning from, `None` if none is left.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let step = self.stack.pop()?;
            let i = step.op;
            self.flip(i);
            self.state = step.before;
            if self.return_node[i] != NIL {
                self.relink(self.return_node[i]);
                self.required += 1;
            }
            self.relink(self.call_node[i]);
            if !step.forced {
                return Some(self.next[self.call_node[i]]);
            }
        }
    }

    fn run(mut self, work: &mut Work) -> Found {
        let mut node = self.next[0];
        loop {
            if self.required == 0 {
                return Found::Linearizable;
            }
            // While a required operation is not linearized, its return is in the list and the
            // scan meets a return before the end: `node` is never NIL here.
            if node != NIL && self.is_call[node] {
                let i = self.op_of[node];
                let e = &self.entries[i];
                let (after, ret) = self.model.step(&self.state, e.op);
                if e.ret.is_none_or(|r| *r == ret) {
                    // A read-only operation can be linearized now rather than later: all that
                    // must precede it already is, and moving it changes no state. So this
                    // state fails if that one does, and the alternatives are moot.
                    let forced = e.ret.is_some_and(|r| self.model.is_read_only(e.op, r))
                        && after == self.state;
                    match self.advance(i, after, forced, work) {
                        Advance::Pushed => {
                            node = self.next[0];
                            continue;
                        }
                        Advance::Exhausted => return Found::Exhausted,
                        Advance::Seen if forced => match self.backtrack() {
                            Some(n) => {
                                node = n;
                                continue;
                            }
                            None => return Found::Violation,
                        },
                        Advance::Seen => {}
                    }
                }
                node = self.next[node];
            } else {
                // The earliest return left: its operation should have been linearized by now.
                match self.backtrack() {
                    Some(n) => node = n,
                    None => return Found::Violation,
                }
            }
        }
    }
}

/// Searches for a linearization of `entries`.
fn search<M: Model>(model: &M, entries: &[Entry<'_, M::Op, M::Ret>], work: &mut Work) -> Found {
    Search::new(model, entries).run(work)
}

/// Checks `ops` against `model` within `max_states`.
fn check<M: Model>(
    ops: &[Operation<M::Op, M::Ret>],
    model: &M,
    max_states: u64,
) -> Verdict<M::Op, M::Ret>
where
    M::Op: Clone,
    M::Ret: Clone,
{
    type Part<'o, M> = Vec<&'o Operation<<M as Model>::Op, <M as Model>::Ret>>;
    let mut partitions: BTreeMap<u64, Part<'_, M>> = BTreeMap::new();
    for op in ops {
        if !matches!(op.outcome, Outcome::Failed { .. }) {
            partitions
                .entry(model.partition(&op.op))
                .or_default()
                .push(op);
        }
    }
    let mut work = Work {
        left: max_states,
        explored: 0,
    };
    for (&partition, part) in &partitions {
        let entries: Vec<_> = part.iter().filter_map(|op| entry(op, None)).collect();
        match search(model, &entries, &mut work) {
            Found::Linearizable => {}
            Found::Exhausted => {
                return Verdict::Unknown {
                    explored: work.explored,
                    max_states,
                    partition,
                    operations: part.len(),
                }
            }
            Found::Violation => {
                let mut shrink = Work {
                    left: max_states,
                    explored: 0,
                };
                let shrunk = shrink_violation(model, part, &mut shrink);
                let mut operations: Vec<_> = shrunk.kept.iter().map(|&i| part[i].clone()).collect();
                operations.sort_by_key(|op| (op.invoked, op.seq.0));
                let mut culprits: Vec<usize> =
                    shrunk.culprits.iter().map(|&i| part[i].id).collect();
                culprits.sort_unstable();
                return Verdict::Violation(Violation {
                    operations,
                    culprits,
                    partition,
                    partition_len: part.len(),
                    minimal: shrunk.minimal,
                    explored: work.explored + shrink.explored,
                });
            }
        }
    }
    Verdict::Linearizable {
        explored: work.explored,
    }
}

/// How a sub-history being shrunk treats one of its operations, instead of as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Outcome unknown: it may take effect any time after its invocation, or never.
    Relaxed,
    /// Return value ignored: it takes effect within its interval, returning anything.
    Blind,
    /// Return value as recorded, but at any instant: concurrent with everything.
    Floating,
}

/// Whether the operations `items` of `ops`, with returns after `cut` forgotten and each
/// treated as `mode` says, are not linearizable; `None` if `work` ran out.
fn fails<M: Model>(
    model: &M,
    ops: &[&Operation<M::Op, M::Ret>],
    items: &[usize],
    cut: At,
    mode: impl Fn(usize) -> Option<Mode>,
    work: &mut Work,
) -> Option<bool> {
    let entries: Vec<_> = items
        .iter()
        .filter_map(|&i| {
            let mut e = entry(ops[i], Some(cut))?;
            match mode(i) {
                Some(Mode::Relaxed) => {
                    e.ret = None;
                    e.returned = None;
                }
                Some(Mode::Blind) => e.ret = None,
                Some(Mode::Floating) => {
                    e.call = (Duration::ZERO, 0);
                    e.returned = Some((Duration::MAX, u64::MAX));
                }
                None => {}
            }
            Some(e)
        })
        .collect();
    match search(model, &entries, work) {
        Found::Violation => Some(true),
        Found::Linearizable => Some(false),
        Found::Exhausted => None,
    }
}

/// Greedy chunked reduction (delta debugging): drops chunks of `kept` of halving size, then
/// single elements until none can go, whenever `can_drop(rest)` says what is left will do.
/// Returns what is left and whether it finished (`false`: `can_drop` said `None`).
fn reduce(
    mut kept: Vec<usize>,
    mut can_drop: impl FnMut(&[usize]) -> Option<bool>,
) -> (Vec<usize>, bool) {
    let mut chunk = (kept.len() / 2).max(1);
    loop {
        let mut dropped_any = false;
        let mut start = 0;
        while start < kept.len() {
            let end = (start + chunk).min(kept.len());
            let rest: Vec<usize> = kept[..start].iter().chain(&kept[end..]).copied().collect();
            match can_drop(&rest) {
                Some(true) => {
                    kept = rest;
                    dropped_any = true;
                }
                Some(false) => start = end,
                None => return (kept, false),
            }
        }
        if chunk > 1 {
            chunk /= 2;
        } else if !dropped_any {
            return (kept, true);
        }
    }
}

/// A shrunk violation: indices into the partition of the operations kept and of the
/// culprits, and whether shrinking finished.
struct Shrunk {
    kept: Vec<usize>,
    culprits: Vec<usize>,
    minimal: bool,
}

/// Shrinks the non-linearizable partition `ops` to a small non-linearizable sub-history.
///
/// 1. The shortest failing prefix: the history up to some return, after which returns are
///    forgotten (a binary search; linearizability is prefix-closed). The operation returning
///    there is the *culprit*: without its outcome, the prefix is linearizable.
/// 2. Operations are dropped (in chunks, then one by one) while what is left still fails, is
///    linearizable without the culprit's outcome (what explains the other outcomes stays),
///    and explains the culprit's outcome as well as the prefix did (what explains it stays:
///    the write that a compare-and-swap saw instead of the one it expected, the write whose
///    value a stale read returned). The best explanation is by the effects of the others at
///    the culprit's own time (their return values ignored); failing that, at any time.
/// 3. The culprits: the operations left whose recorded outcome, made unknown, makes the rest
///    linearizable.
///
/// Stops early, with a larger but still non-linearizable sub-history, when `work` runs out.
fn shrink_violation<M: Model>(
    model: &M,
    ops: &[&Operation<M::Op, M::Ret>],
    work: &mut Work,
) -> Shrunk {
    let mut returns: Vec<(At, usize)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op.outcome {
            Outcome::Ok { at, .. } => Some(((at, op.seq.1), i)),
            _ => None,
        })
        .collect();
    returns.sort_unstable();
    let before = |cut: At| -> Vec<usize> {
        (0..ops.len())
            .filter(|&i| (ops[i].invoked, ops[i].seq.0) < cut)
            .collect()
    };
    let unfinished = |kept: Vec<usize>, culprit: usize| Shrunk {
        kept,
        culprits: vec![culprit],
        minimal: false,
    };
    if returns.is_empty() {
        // Cannot happen: a violation needs an operation that returned.
        return Shrunk {
            kept: (0..ops.len()).collect(),
            culprits: Vec::new(),
            minimal: false,
        };
    }

    // 1. The prefix up to the last return fails: it lacks only operations of unknown outcome
    // invoked after it, which could take effect last.
    let (mut lo, mut hi) = (0, returns.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let cut = returns[mid].0;
        match fails(model, ops, &before(cut), cut, |_| None, work) {
            Some(true) => hi = mid,
            Some(false) => lo = mid + 1,
            None => return unfinished(before(returns[hi].0), returns[hi].1),
        }
    }
    let (cut, culprit) = returns[hi];
    let prefix = before(cut);

    // 2. Drop what the conflict does not need.
    let on_time = |i: usize| (i != culprit).then_some(Mode::Blind);
    let any_time = |i: usize| (i == culprit).then_some(Mode::Floating);
    let relaxed = |i: usize| (i == culprit).then_some(Mode::Relaxed);
    let explanation = match fails(model, ops, &prefix, cut, on_time, work) {
        Some(false) => Some(Mode::Blind),
        Some(true) => match fails(model, ops, &prefix, cut, any_time, work) {
            Some(false) => Some(Mode::Floating),
            Some(true) => None,
            None => return unfinished(prefix, culprit),
        },
        None => return unfinished(prefix, culprit),
    };
    let with_culprit = |rest: &[usize]| -> Vec<usize> {
        let mut sub: Vec<usize> = rest.iter().copied().chain([culprit]).collect();
        sub.sort_unstable();
        sub
    };
    let others: Vec<usize> = prefix.iter().copied().filter(|&i| i != culprit).collect();
    let (others, done) = reduce(others, |rest| {
        let sub = with_culprit(rest);
        let explained = match explanation {
            Some(Mode::Blind) => !fails(model, ops, &sub, cut, on_time, work)?,
            Some(_) => !fails(model, ops, &sub, cut, any_time, work)?,
            None => true,
        };
        Some(
            explained
                && fails(model, ops, &sub, cut, |_| None, work)?
                && !fails(model, ops, &sub, cut, relaxed, work)?,
        )
    });
    let kept = with_culprit(&others);
    if !done {
        return unfinished(kept, culprit);
    }

    // 3. The culprits, among the operations as recorded (returns after the cut included:
    // they only add constraints, so what is left still fails).
    let mut culprits = Vec::new();
    for &i in &kept {
        let relaxed = |j: usize| (j == i).then_some(Mode::Relaxed);
        match fails(model, ops, &kept, NO_CUT, relaxed, work) {
            Some(true) => {}
            Some(false) => culprits.push(i),
            None => return unfinished(kept, culprit),
        }
    }
    Shrunk {
        kept,
        culprits,
        minimal: true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{KvModel, KvOp, KvRet, RegisterModel, RegisterOp, RegisterRet};
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    type Reg = History<RegisterOp<u32>, RegisterRet<u32>>;

    fn write(h: &Reg, client: u64, v: u32, from: u64, to: u64) {
        h.invoke(client, RegisterOp::Write(v), ms(from))
            .ok(RegisterRet::Done, ms(to));
    }

    fn read(h: &Reg, client: u64, v: u32, from: u64, to: u64) {
        h.invoke(client, RegisterOp::Read, ms(from))
            .ok(RegisterRet::Value(v), ms(to));
    }

    fn reg(h: &Reg) -> Verdict<RegisterOp<u32>, RegisterRet<u32>> {
        h.check(&RegisterModel::new(0), 10_000)
    }

    fn ids<Op, Ret>(v: &Verdict<Op, Ret>) -> Vec<usize> {
        let v = v.violation().expect("a violation");
        v.operations.iter().map(|op| op.id).collect()
    }

    #[test]
    fn empty_and_sequential_histories_are_linearizable() {
        let h = Reg::new();
        assert_eq!(reg(&h), Verdict::Linearizable { explored: 0 });
        write(&h, 1, 1, 0, 1);
        read(&h, 2, 1, 2, 3);
        write(&h, 2, 2, 4, 5);
        read(&h, 1, 2, 6, 7);
        assert_eq!(reg(&h), Verdict::Linearizable { explored: 4 });
    }

    #[test]
    fn reads_overlapping_a_write_may_see_either_value() {
        for (first, second) in [(0, 0), (0, 1), (1, 1)] {
            let h = Reg::new();
            let w = h.invoke(1, RegisterOp::Write(1), ms(0));
            read(&h, 2, first, 1, 2);
            read(&h, 3, second, 3, 4);
            w.ok(RegisterRet::Done, ms(10));
            assert!(reg(&h).is_linearizable(), "{first} then {second}");
        }
    }

    #[test]
    fn new_then_old_read_is_rejected() {
        let h = Reg::new();
        let w = h.invoke(1, RegisterOp::Write(1), ms(0));
        read(&h, 2, 1, 1, 2);
        read(&h, 3, 0, 3, 4);
        w.ok(RegisterRet::Done, ms(10));
        let v = reg(&h);
        assert_eq!(ids(&v), [0, 1, 2], "{v}");
        assert!(v.violation().unwrap().minimal);
    }

    #[test]
    fn stale_read_is_rejected_with_a_minimal_witness() {
        let h = Reg::new();
        write(&h, 1, 1, 0, 1);
        read(&h, 3, 1, 1, 2);
        write(&h, 1, 2, 2, 3);
        write(&h, 2, 3, 2, 4);
        read(&h, 3, 1, 5, 6); // stale: 2 and 3 were written before it began
        read(&h, 1, 3, 7, 8);
        let v = reg(&h);
        // The first write, one of the overwriting writes and the stale read.
        assert_eq!(ids(&v), [0, 3, 4], "{v}");
        assert_eq!(v.violation().unwrap().culprits, [0, 3, 4]);
        let shown = v.to_string();
        assert!(shown.starts_with("not linearizable: no order of these 3 operations"));
        assert!(shown.contains("#4 client 3: Read invoked at 5ms, returned Value(1) at 6ms"));
    }

    #[test]
    fn shrinking_finds_the_stale_read_in_a_long_history() {
        let h = Reg::new();
        for i in 0..300 {
            write(&h, i % 4, i as u32 + 1, 2 * i, 2 * i + 1);
        }
        read(&h, 9, 5, 1000, 1001);
        write(&h, 1, 99, 1002, 1003);
        let v = reg(&h);
        let w = v.violation().expect("stale");
        assert!(w.minimal);
        assert_eq!(w.operations.len(), 3, "{v}");
        assert_eq!(w.operations[0].op, RegisterOp::Write(5));
        assert_eq!(w.operations[2].op, RegisterOp::Read);
        assert_eq!(w.partition_len, 302);
    }

    #[test]
    fn a_value_from_nowhere_is_its_own_witness() {
        let h = Reg::new();
        for i in 0..20 {
            write(&h, i % 3, i as u32 + 1, 2 * i, 2 * i + 1);
            read(&h, 3, i as u32 + 1, 2 * i + 1, 2 * i + 2);
        }
        read(&h, 4, 42, 100, 101);
        let v = reg(&h);
        assert_eq!(ids(&v), [40], "{v}");
        assert_eq!(v.violation().unwrap().culprits, [40]);
    }

    #[test]
    fn unknown_write_may_take_effect_or_not() {
        for seen in [0, 1] {
            let h = Reg::new();
            h.invoke(1, RegisterOp::Write(1), ms(0)).unknown(ms(5));
            read(&h, 2, seen, 10, 11);
            read(&h, 2, 1, 12, 13);
            assert!(reg(&h).is_linearizable(), "saw {seen}");
        }
        // Once seen, it cannot be undone.
        let h = Reg::new();
        h.invoke(1, RegisterOp::Write(1), ms(0)).unknown(ms(5));
        read(&h, 2, 1, 10, 11);
        read(&h, 2, 0, 12, 13);
        let v = reg(&h);
        assert_eq!(ids(&v), [0, 1, 2]);
        // The write's outcome was unknown already: the reads are the culprits.
        assert_eq!(v.violation().unwrap().culprits, [1, 2], "{v}");
        assert!(v.to_string().contains("\n    #0 client 1: Write(1)"), "{v}");
        assert!(v.to_string().contains("\n  * #1 client 2: Read"), "{v}");
        // It cannot take effect before it was invoked.
        let h = Reg::new();
        read(&h, 2, 1, 0, 1);
        h.invoke(1, RegisterOp::Write(1), ms(2)).unknown(ms(5));
        assert_eq!(ids(&reg(&h)), [0]);
    }

    #[test]
    fn a_dropped_call_counts_as_unknown() {
        let h = Reg::new();
        drop(h.invoke(1, RegisterOp::Write(7), ms(0)));
        read(&h, 2, 0, 1, 2);
        read(&h, 2, 7, 100, 101);
        assert!(reg(&h).is_linearizable());
        assert_eq!(h.operations()[0].outcome, Outcome::Pending);
    }

    #[test]
    fn a_failed_write_never_took_effect() {
        let h = Reg::new();
        h.invoke(1, RegisterOp::Write(1), ms(0)).fail(ms(1));
        read(&h, 2, 0, 2, 3);
        assert!(reg(&h).is_linearizable());
        read(&h, 2, 1, 4, 5);
        assert_eq!(ids(&reg(&h)), [2]);
    }

    #[test]
    fn cas_outcomes_are_checked() {
        let h = Reg::new();
        let cas = |expected, new| RegisterOp::Cas { expected, new };
        // Two concurrent CAS from 0: exactly one may win.
        let a = h.invoke(1, cas(0, 1), ms(0));
        let b = h.invoke(2, cas(0, 2), ms(0));
        a.ok(RegisterRet::Swapped(true), ms(5));
        b.ok(RegisterRet::Swapped(false), ms(5));
        read(&h, 3, 1, 6, 7);
        assert!(reg(&h).is_linearizable());
        let h2 = Reg::new();
        h2.invoke(1, cas(0, 1), ms(0))
            .ok(RegisterRet::Swapped(true), ms(5));
        h2.invoke(2, cas(0, 2), ms(0))
            .ok(RegisterRet::Swapped(true), ms(5));
        assert!(reg(&h2).is_violation());
    }

    #[test]
    fn the_budget_bounds_the_search() {
        let h = Reg::new();
        for i in 0..10 {
            write(&h, 1, i, 2 * i as u64, 2 * i as u64 + 1);
        }
        assert_eq!(
            h.check(&RegisterModel::new(0), 5),
            Verdict::Unknown {
                explored: 5,
                max_states: 5,
                partition: 0,
                operations: 10
            }
        );
        assert!(h.check(&RegisterModel::new(0), 10).is_linearizable());

        // Forty concurrent writes of unknown outcome and a read of a value none wrote: an
        // exhaustive search would visit every subset of the writes.
        let h = Reg::new();
        for i in 0..40 {
            h.invoke(i, RegisterOp::Write(i as u32 + 1), ms(0))
                .unknown(ms(10));
        }
        read(&h, 99, 1000, 1, 2);
        let v = h.check(&RegisterModel::new(0), 50_000);
        assert!(v.is_unknown(), "{v}");
        assert_eq!(v.explored(), 50_000);
        assert!(v
            .to_string()
            .starts_with("unknown: the search explored 50000 states"));
    }

    #[test]
    fn kv_keys_are_checked_independently() {
        let h = History::new();
        let ok = |c, op, ret, from, to| h.invoke(c, op, ms(from)).ok(ret, ms(to));
        ok(1, KvOp::Put("a", 1), KvRet::Done, 0, 1);
        ok(1, KvOp::Put("b", 1), KvRet::Done, 0, 1);
        ok(2, KvOp::Get("a"), KvRet::Value(Some(1)), 2, 3);
        ok(2, KvOp::Delete("b"), KvRet::Done, 2, 3);
        ok(3, KvOp::Get("b"), KvRet::Value(Some(1)), 4, 5); // stale
        ok(3, KvOp::Get("a"), KvRet::Value(Some(1)), 4, 5);
        let model = KvModel::new();
        let v = h.check(&model, 1_000);
        let w = v.violation().expect("stale read of b");
        assert_eq!(ids(&v), [1, 3, 4]);
        assert_eq!(w.partition, model.partition(&KvOp::Get("b")));
        assert_eq!(w.partition_len, 3);
        // Checked together, the same history needs more states.
        struct Whole(KvModel<&'static str, i32>);
        impl Model for Whole {
            type State = BTreeMap<&'static str, i32>;
            type Op = KvOp<&'static str, i32>;
            type Ret = KvRet<i32>;
            fn init(&self) -> Self::State {
                self.0.init()
            }
            fn step(&self, s: &Self::State, op: &Self::Op) -> (Self::State, Self::Ret) {
                self.0.step(s, op)
            }
        }
        let whole = h.check(&Whole(KvModel::new()), 1_000);
        assert_eq!(ids(&whole), [1, 3, 4]);
    }

    #[test]
    fn equal_times_are_ordered_by_recording() {
        // Everything at one virtual instant, as in-memory operations are in a simulation.
        let h = Reg::new();
        write(&h, 1, 1, 0, 0);
        read(&h, 2, 0, 0, 0);
        assert!(reg(&h).is_violation());
        // A return recorded before the invocation began is taken as the invocation time.
        let h = Reg::new();
        let w = h.invoke(1, RegisterOp::Write(1), ms(5));
        w.ok(RegisterRet::Done, ms(1));
        assert_eq!(
            h.operations()[0].outcome,
            Outcome::Ok {
                ret: RegisterRet::Done,
                at: ms(5)
            }
        );
    }

    #[test]
    fn verdicts_are_reproducible() {
        let build = || {
            let h = History::new();
            for i in 0..60u64 {
                let key = ["x", "y", "z"][(i % 3) as usize];
                let op = match i % 4 {
                    0 => KvOp::Put(key, i),
                    1 => KvOp::Get(key),
                    2 => KvOp::Cas {
                        key,
                        expected: Some(i - 2),
                        new: i,
                    },
                    _ => KvOp::Delete(key),
                };
                let ret = match op {
                    KvOp::Get(_) => KvRet::Value(Some(i / 2)),
                    KvOp::Cas { .. } => KvRet::Swapped(i % 8 == 2),
                    _ => KvRet::Done,
                };
                h.invoke(i % 5, op, ms(i)).ok(ret, ms(i + 7));
            }
            h
        };
        let a = build().check(&KvModel::new(), 100_000);
        let b = build().check(&KvModel::new(), 100_000);
        assert!(a.is_violation());
        assert_eq!(a, b);
        assert_eq!(a.to_string(), b.to_string());
    }

    /// Linearizability by brute force: every order that respects real time.
    fn brute_force(ops: &[Operation<RegisterOp<u32>, RegisterRet<u32>>]) -> bool {
        let model = RegisterModel::new(0);
        let ops: Vec<_> = ops.iter().filter_map(|op| entry(op, None)).collect();
        fn go(
            model: &RegisterModel<u32>,
            ops: &[Entry<'_, RegisterOp<u32>, RegisterRet<u32>>],
            done: &mut Vec<bool>,
            state: u32,
        ) -> bool {
            let pending = |j: usize, done: &[bool]| !done[j] && ops[j].returned.is_some();
            if !(0..ops.len()).any(|j| pending(j, done)) {
                return true;
            }
            for i in 0..ops.len() {
                let blocked = (0..ops.len())
                    .any(|j| pending(j, done) && ops[j].returned.is_some_and(|r| r < ops[i].call));
                if done[i] || blocked {
                    continue;
                }
                let (next, ret) = model.step(&state, ops[i].op);
                if ops[i].ret.is_none_or(|r| *r == ret) {
                    done[i] = true;
                    let ok = go(model, ops, done, next);
                    done[i] = false;
                    if ok {
                        return true;
                    }
                }
            }
            false
        }
        go(&model, &ops, &mut vec![false; ops.len()], 0)
    }

    /// [`RegisterModel`] without [`Model::is_read_only`].
    struct Plain(RegisterModel<u32>);

    impl Model for Plain {
        type State = u32;
        type Op = RegisterOp<u32>;
        type Ret = RegisterRet<u32>;
        fn init(&self) -> u32 {
            self.0.init()
        }
        fn step(&self, s: &u32, op: &Self::Op) -> (u32, Self::Ret) {
            self.0.step(s, op)
        }
    }

    /// A random history of three clients on a register: effects at random instants inside
    /// the intervals, some outcomes unknown, some returns corrupted.
    fn random_history(seed: u64) -> Reg {
        let mut rng = crate::rng::SimRng::new(seed);
        let mut gen = Vec::new();
        for client in 0..3 {
            let mut t = rng.gen_range(0..3);
            for _ in 0..rng.gen_range(1..4) {
                let op = match rng.gen_range(0..3) {
                    0 => RegisterOp::Read,
                    1 => RegisterOp::Write(rng.gen_range(0..3) as u32),
                    _ => RegisterOp::Cas {
                        expected: rng.gen_range(0..3) as u32,
                        new: rng.gen_range(0..3) as u32,
                    },
                };
                let len = rng.gen_range(2..8);
                let effect = t + rng.gen_range(1..len);
                let unknown = rng.gen_bool(0.15);
                let applied = !unknown || rng.gen_bool(0.5);
                gen.push((client, op, t, effect, t + len, unknown, applied));
                t += len + rng.gen_range(0..3);
            }
        }
        let mut order: Vec<usize> = (0..gen.len()).collect();
        order.sort_by_key(|&i| (gen[i].3, i));
        let mut rets = vec![RegisterRet::Done; gen.len()];
        let mut state = 0;
        for i in order {
            if gen[i].6 {
                let (next, ret) = RegisterModel::new(0).step(&state, &gen[i].1);
                (state, rets[i]) = (next, ret);
            }
            if rng.gen_bool(0.1) {
                rets[i] = match rets[i] {
                    RegisterRet::Value(v) => RegisterRet::Value((v + 1) % 3),
                    RegisterRet::Swapped(b) => RegisterRet::Swapped(!b),
                    RegisterRet::Done => RegisterRet::Done,
                };
            }
        }
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for (i, g) in gen.iter().enumerate() {
            events.push((g.2, false, i));
            events.push((g.4, true, i));
        }
        events.sort_unstable();
        let h = Reg::new();
        let mut calls: Vec<_> = gen.iter().map(|_| None).collect();
        for (t, is_return, i) in events {
            if !is_return {
                calls[i] = Some(h.invoke(gen[i].0, gen[i].1.clone(), ms(t)));
            } else if let Some(call) = calls[i].take() {
                if gen[i].5 {
                    call.unknown(ms(t));
                } else {
                    call.ok(rets[i].clone(), ms(t));
                }
            }
        }
        h
    }

    #[test]
    fn agrees_with_brute_force_on_random_histories() {
        let mut seen = [0; 2];
        for seed in 0..3_000 {
            let h = random_history(seed);
            let ops = h.operations();
            let expected = brute_force(&ops);
            let v = reg(&h);
            assert_eq!(v.is_linearizable(), expected, "seed {seed}: {v}");
            assert_eq!(
                h.check(&Plain(RegisterModel::new(0)), 10_000)
                    .is_linearizable(),
                expected,
                "seed {seed} without the read-only shortcut"
            );
            seen[usize::from(expected)] += 1;
            if let Some(w) = v.violation() {
                // The witness is not linearizable, and each culprit's outcome matters.
                assert!(w.minimal, "seed {seed}: {v}");
                assert!(!brute_force(&w.operations), "seed {seed}: {v}");
                for &c in &w.culprits {
                    let mut relaxed = w.operations.clone();
                    let op = relaxed.iter_mut().find(|o| o.id == c).unwrap();
                    op.outcome = Outcome::Pending;
                    assert!(brute_force(&relaxed), "seed {seed}, culprit #{c}: {v}");
                }
            }
        }
        // Both answers are common.
        assert!(seen[0] > 500 && seen[1] > 500, "{seen:?}");
    }
}
