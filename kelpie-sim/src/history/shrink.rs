//! Shrinking a non-linearizable partition to a small set of operations that cannot be
//! ordered, and finding the culprits among them.

use std::time::Duration;

use super::search::{entry, At, Found, Search, Work};
use super::{Model, Operation, Outcome};

/// A cut after every event.
const NO_CUT: At = (Duration::MAX, u64::MAX);

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
    match Search::new(model, entries).run(model, work) {
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
pub(crate) struct Shrunk {
    pub(crate) kept: Vec<usize>,
    pub(crate) culprits: Vec<usize>,
    pub(crate) minimal: bool,
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
pub(crate) fn shrink_violation<M: Model>(
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
