//! The checker's entry points and answers: partitions searched side by side in slices of a
//! shared budget (smallest first, stopping at the first that fails), the verdict returned as
//! soon as it is known, and the witness shrunk only if asked, within budgets of its own.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::register::{self, Decision};
use super::search::{entry, Found, Search, Work};
use super::shrink::shrink_violation;
use super::{lock, History, Model, Operation, Outcome, PartitionKey};

pub use super::search::Spent;

/// How to check a history: budgets for deciding and for shrinking a witness, and what to
/// report. [`CheckConfig::new`] gives what [`History::check`] does; each setter changes one
/// thing.
///
/// ```
/// use std::time::Duration;
/// use kelpie_sim::history::CheckConfig;
///
/// let config = CheckConfig::new(1_000_000)       // states to decide
///     .time_limit(Duration::from_secs(1))         // and at most a second
///     .shrink_budget(1_000_000, Some(Duration::from_secs(5)))
///     .linearization(true);                       // on a pass, say the order found
/// assert!(config.shrink);
/// assert_eq!(CheckConfig::new(10).shrink(false).shrink, false);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CheckConfig {
    /// States the search may explore to decide, over all partitions. Default: the number given
    /// to [`CheckConfig::new`].
    pub max_states: u64,
    /// Wall-clock time the search may take to decide. Default: none. Once reached, the answer
    /// is [`Verdict::Unknown`]; unlike the state budget, it makes the answer depend on the
    /// machine's speed.
    pub time_limit: Option<Duration>,
    /// Whether to shrink a violation's witness. Default: `true`. When `false`, a
    /// [`Violation`] lists the whole failing partition ([`Shrinking::Skipped`]); it can be
    /// shrunk later with [`Violation::shrink`].
    pub shrink: bool,
    /// States shrinking may explore. Default: the same as [`CheckConfig::max_states`].
    pub shrink_max_states: u64,
    /// Wall-clock time shrinking may take. Default: none.
    pub shrink_time_limit: Option<Duration>,
    /// Whether a linearizable verdict carries the order found ([`Linearization`]). Default:
    /// `false`.
    pub linearization: bool,
    /// Whether partitions that are plain registers with unique written values
    /// ([`Model::register_access`]) are decided by the register fast path instead of the
    /// search. Default: `true`.
    pub register_fast_path: bool,
}

impl CheckConfig {
    /// A search of at most `max_states` states to decide and as many to shrink, no time
    /// limits, witnesses shrunk, no linearization reported.
    pub fn new(max_states: u64) -> Self {
        CheckConfig {
            max_states,
            time_limit: None,
            shrink: true,
            shrink_max_states: max_states,
            shrink_time_limit: None,
            linearization: false,
            register_fast_path: true,
        }
    }

    /// Sets the wall-clock limit for deciding.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Turns shrinking of the witness on or off.
    pub fn shrink(mut self, on: bool) -> Self {
        self.shrink = on;
        self
    }

    /// Sets shrinking's own budgets: states and, optionally, wall-clock time.
    pub fn shrink_budget(mut self, max_states: u64, time_limit: Option<Duration>) -> Self {
        self.shrink_max_states = max_states;
        self.shrink_time_limit = time_limit;
        self
    }

    /// Asks for the linearization found on a pass.
    pub fn linearization(mut self, on: bool) -> Self {
        self.linearization = on;
        self
    }

    /// Turns the register fast path on or off (off: every partition is searched).
    pub fn register_fast_path(mut self, on: bool) -> Self {
        self.register_fast_path = on;
        self
    }
}

/// The checker's answer; see [`History::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<Op, Ret> {
    /// Some order of the operations agrees with the model.
    Linearizable {
        /// States explored (at least one per operation that returned).
        explored: u64,
        /// The order found, if asked for ([`CheckConfig::linearization`]).
        linearization: Option<Linearization>,
    },
    /// No order agrees with the model.
    Violation(Violation<Op, Ret>),
    /// A budget ran out before deciding.
    Unknown {
        /// States explored.
        explored: u64,
        /// The state budget ([`CheckConfig::max_states`]).
        max_states: u64,
        /// The budget that ran out.
        spent: Spent,
        /// The partition whose search had explored the most states ([`Model::partition`]).
        partition: PartitionKey,
        /// The number of operations in that partition.
        operations: usize,
        /// Partitions not decided (none of those decided failed).
        undecided: usize,
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

    /// Whether a budget ran out before an answer.
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

    /// The linearization found, if the history is linearizable and it was asked for.
    pub fn linearization(&self) -> Option<&Linearization> {
        match self {
            Verdict::Linearizable { linearization, .. } => linearization.as_ref(),
            _ => None,
        }
    }

    /// States explored in all (for a violation: finding it and shrinking it).
    pub fn explored(&self) -> u64 {
        match self {
            Verdict::Linearizable { explored, .. } | Verdict::Unknown { explored, .. } => *explored,
            Verdict::Violation(v) => v.explored,
        }
    }
}

impl<Op: fmt::Debug, Ret: fmt::Debug> fmt::Display for Verdict<Op, Ret> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable { explored, .. } => {
                write!(f, "linearizable ({explored} states explored)")
            }
            Verdict::Violation(v) => v.fmt(f),
            Verdict::Unknown {
                explored,
                max_states,
                spent,
                partition,
                operations,
                undecided,
            } => {
                match spent {
                    Spent::States => write!(
                        f,
                        "unknown: the search explored {explored} states (the budget of \
                         {max_states}) without an answer"
                    )?,
                    Spent::Time => write!(
                        f,
                        "unknown: the time limit was reached after {explored} states without \
                         an answer"
                    )?,
                }
                write!(
                    f,
                    "; {undecided} partition(s) undecided, the most searched {partition:#x} of \
                     {operations} operations"
                )
            }
        }
    }
}

/// A linearization found: for each partition, the operations in an order that agrees with the
/// model, each at an instant within its interval.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Linearization {
    /// Per partition (in key order), the [`Operation::id`]s in the order found. Operations of
    /// unknown outcome that need not have taken effect may be absent; failed ones always are.
    pub partitions: Vec<(PartitionKey, Vec<usize>)>,
}

impl fmt::Display for Linearization {
    /// One line per partition: `partition 0x1f: #1, #0, #2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, order)) in self.partitions.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "partition {key:#x}:")?;
            for (j, id) in order.iter().enumerate() {
                write!(f, "{} #{id}", if j == 0 { "" } else { "," })?;
            }
        }
        Ok(())
    }
}

/// How far a violation's witness was shrunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shrinking {
    /// Not shrunk ([`CheckConfig::shrink`] off): the witness is the whole partition.
    Skipped,
    /// Shrinking stopped when a budget ran out: the witness fails, but more operations are
    /// listed than needed, and the culprits may be too.
    Partial {
        /// The budget that ran out.
        spent: Spent,
    },
    /// Shrunk to minimal.
    Minimal,
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
    /// Empty when not shrunk.
    pub culprits: Vec<usize>,
    /// The partition ([`Model::partition`]).
    pub partition: PartitionKey,
    /// The number of operations in the partition.
    pub partition_len: usize,
    /// Whether the witness is minimal ([`Shrinking::Minimal`]): then dropping any one
    /// operation from [`Violation::operations`] makes it linearizable or drops what explains
    /// an outcome.
    pub minimal: bool,
    /// How far shrinking went.
    pub shrinking: Shrinking,
    /// The longest sequence of the partition's operations ([`Operation::id`]s) the search
    /// linearized before every way on failed: a partial linearization. Empty when the
    /// register fast path decided (see [`History::check_with`]).
    pub partial: Vec<usize>,
    /// States explored to decide (the whole check's, all partitions).
    pub explored_to_decide: u64,
    /// States explored to find the violation and to shrink it.
    pub explored: u64,
}

impl<Op: fmt::Debug, Ret: fmt::Debug> fmt::Display for Violation<Op, Ret> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shrunk = match self.shrinking {
            Shrinking::Minimal => "shrunk from",
            Shrinking::Partial {
                spent: Spent::States,
            } => "partly shrunk (the shrink budget of states was spent) from",
            Shrinking::Partial { spent: Spent::Time } => {
                "partly shrunk (the shrink time limit was reached) from"
            }
            Shrinking::Skipped => "not shrunk: all",
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

impl<Op: Clone, Ret: Clone> Violation<Op, Ret> {
    /// This violation with its witness shrunk further, exploring at most `max_states` states
    /// and, if given, for at most `time_limit` of wall-clock time. Shrinking starts from
    /// [`Violation::operations`] (the whole partition if the check did not shrink); what it
    /// reaches is reported honestly in [`Violation::shrinking`]. Explain second: check with
    /// [`CheckConfig::shrink`] off to get the verdict at once, then call this if needed.
    pub fn shrink<M>(&self, model: &M, max_states: u64, time_limit: Option<Duration>) -> Self
    where
        M: Model<Op = Op, Ret = Ret>,
    {
        let mut part: Vec<&Operation<Op, Ret>> = self.operations.iter().collect();
        part.sort_by_key(|op| op.id);
        let mut work = Work::new(max_states, time_limit);
        let shrunk = shrink_violation(model, &part, &mut work);
        let mut operations: Vec<_> = shrunk.kept.iter().map(|&i| part[i].clone()).collect();
        operations.sort_by_key(|op| (op.invoked, op.seq.0));
        let mut culprits: Vec<usize> = shrunk.culprits.iter().map(|&i| part[i].id).collect();
        culprits.sort_unstable();
        let shrinking = if shrunk.minimal {
            Shrinking::Minimal
        } else {
            Shrinking::Partial {
                spent: work.spent.unwrap_or(Spent::States),
            }
        };
        Violation {
            operations,
            culprits,
            partition: self.partition,
            partition_len: self.partition_len,
            minimal: shrunk.minimal,
            shrinking,
            partial: self.partial.clone(),
            explored_to_decide: self.explored_to_decide,
            explored: self.explored + work.explored,
        }
    }
}

impl<Op: Clone, Ret: Clone> History<Op, Ret> {
    /// Checks whether the history is linearizable against `model`, exploring at most
    /// `max_states` states to decide and as many to shrink a violation's witness: the same as
    /// [`History::check_with`] with [`CheckConfig::new`]`(max_states)`.
    pub fn check<M>(&self, model: &M, max_states: u64) -> Verdict<Op, Ret>
    where
        M: Model<Op = Op, Ret = Ret>,
    {
        self.check_with(model, &CheckConfig::new(max_states))
    }

    /// Checks whether the history is linearizable against `model`, within the budgets of
    /// `config`.
    ///
    /// **Algorithm.** Operations are split into [`Model::partition`]s. Within a partition, the
    /// invocations and returns are put in one list in time order, and a depth-first search
    /// (Wing & Gong, with Lowe's improvements, as in Porcupine) linearizes operations one at a
    /// time: it takes the first invocation in the list whose operation, applied to the current
    /// model state, returns what it returned; removes that operation's invocation and return
    /// from the list; and restarts from the list's head. Reaching a return whose operation is
    /// not yet linearized means an earlier choice was wrong: it undoes the last one and tries
    /// the next candidate. Every (set of linearized operations, model state) pair reached is
    /// remembered and never explored twice, which makes the search polynomial on the
    /// histories real systems produce. An operation the model calls read-only
    /// ([`Model::is_read_only`]) is linearized as soon as it can be, without trying it
    /// anywhere later (exact: moving an operation that changes nothing earlier changes
    /// nothing). The partition is linearizable once every operation that returned is
    /// linearized; an operation of unknown outcome has no return in the list, so it may be
    /// linearized anywhere after its invocation, or never. Failed operations are left out.
    ///
    /// **The register fast path.** A partition whose operations are all plain reads and blind
    /// writes ([`Model::register_access`]: [`RegisterModel`](super::RegisterModel) reads and
    /// writes, [`KvModel`](super::KvModel) gets, puts and deletes), no two writes of the same
    /// value, is decided first and without a search, in O(n log n) however many operations
    /// are in flight (Gibbons & Korach's conditions on the zones of each value's write and
    /// reads). It only proposes: a pass is certified by replaying the order it implies through
    /// [`Model::step`] against real time, a violation by searching its witness of at most six
    /// operations (which is then always shrunk); what it cannot certify is searched. Such a
    /// partition explores no states (or the few of its witness). Turn it off with
    /// [`CheckConfig::register_fast_path`].
    ///
    /// **Partitions** are searched side by side, smallest first, in rounds: each undecided
    /// partition gets a slice of states (1,024 in the first round, doubling each round) and
    /// its search resumes where it stopped. The check stops at the first partition found to
    /// fail, so a violation in a small partition is found in milliseconds even next to a
    /// partition that would take minutes; a linearizable history costs the same as one
    /// partition after another. The schedule depends only on state counts, so the answer is
    /// deterministic (unless a time limit is reached).
    ///
    /// **Budgets.** [`CheckConfig::max_states`] bounds the distinct (linearized set, state)
    /// pairs explored, across all partitions; [`CheckConfig::time_limit`] the wall-clock
    /// time. The check stops with [`Verdict::Unknown`] when either is spent, never hanging.
    /// Memory: the memo holds a 128-bit fingerprint per state (16 bytes: the XOR of a random
    /// number per linearized operation and one per model state; two different states share
    /// one with probability 2^-128), each distinct model state is stored once, and the search
    /// stack holds small ids; a partition decided linearizable frees its search. At each step
    /// the candidates are tried in order of the midpoints of their intervals (the likelier
    /// order for effects at random instants), and a step that linearizes the same operations
    /// as a failed state but for one of unknown outcome, in the same model state, is pruned
    /// (it can only do less); both are exact. A linearizable history needs at least one state
    /// per operation that returned; histories from a few clients take little more, while
    /// many concurrent operations of unknown outcome can take exponentially many.
    ///
    /// **Violations.** The verdict is decided first; the witness is then shrunk if
    /// [`CheckConfig::shrink`] (the default), within budgets of its own: to the shortest prefix
    /// of the partition (up to some return, the culprit's) that is not linearizable, then by
    /// dropping operations while what is left is still not linearizable and still holds what
    /// explains each outcome (so that dropping the write a read saw does not pass for a
    /// shorter answer). When a shrink budget runs out, the violation says so
    /// ([`Shrinking::Partial`]).
    ///
    /// Without a time limit, the answer, the states explored and the operations reported
    /// depend only on the history.
    pub fn check_with<M>(&self, model: &M, config: &CheckConfig) -> Verdict<Op, Ret>
    where
        M: Model<Op = Op, Ret = Ret>,
    {
        let log = lock(&self.shared);
        check(&log.ops, model, config)
    }
}

/// The states of the first round's slice.
const FIRST_SLICE: u64 = 1024;

/// One partition being searched.
struct Part<'o, M: Model> {
    key: PartitionKey,
    ops: Vec<&'o Operation<M::Op, M::Ret>>,
    search: Option<Search<'o, M>>,
}

/// Checks `ops` against `model` within `config`.
fn check<M: Model>(
    ops: &[Operation<M::Op, M::Ret>],
    model: &M,
    config: &CheckConfig,
) -> Verdict<M::Op, M::Ret>
where
    M::Op: Clone,
    M::Ret: Clone,
{
    type Ops<'o, M> = Vec<&'o Operation<<M as Model>::Op, <M as Model>::Ret>>;
    let mut by_key: BTreeMap<PartitionKey, Ops<'_, M>> = BTreeMap::new();
    for op in ops {
        if !matches!(op.outcome, Outcome::Failed { .. }) {
            by_key.entry(model.partition(&op.op)).or_default().push(op);
        }
    }
    // Smallest first: the one that fails is found soonest when any fails.
    let mut by_size: Vec<(PartitionKey, Ops<'_, M>)> = by_key.into_iter().collect();
    by_size.sort_by_key(|(key, ops)| (ops.len(), *key));
    let mut orders: BTreeMap<PartitionKey, Vec<usize>> = BTreeMap::new();
    if config.register_fast_path {
        let mut searched = Vec::with_capacity(by_size.len());
        for (key, ops) in by_size {
            match register::decide(model, &ops) {
                Decision::Linearizable(order) => {
                    if config.linearization {
                        orders.insert(key, order);
                    }
                }
                Decision::Violation { witness, explored } => {
                    return Verdict::Violation(register_violation(
                        model, config, key, &ops, &witness, explored,
                    ));
                }
                Decision::Search => searched.push((key, ops)),
            }
        }
        by_size = searched;
    }
    let mut parts: Vec<Part<'_, M>> = by_size
        .into_iter()
        .map(|(key, ops)| {
            let entries = ops.iter().filter_map(|op| entry(op, None)).collect();
            let mut search = Search::new(model, entries);
            search.keep_longest();
            Part {
                key,
                ops,
                search: Some(search),
            }
        })
        .collect();
    // Smallest first: the one that fails is found soonest when any fails.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| {
        (
            parts[i].search.as_ref().map_or(0, Search::len),
            parts[i].key,
        )
    });
    let mut work = Work::new(config.max_states, config.time_limit);
    let mut slice = FIRST_SLICE;
    loop {
        let mut undecided = 0;
        for &p in &order {
            let part = &mut parts[p];
            let Some(search) = &mut part.search else {
                continue;
            };
            let mut round = Work {
                left: work.left.min(slice),
                explored: work.explored,
                deadline: work.deadline,
                spent: None,
            };
            let found = search.run(model, &mut round);
            work.left -= round.explored - work.explored;
            work.explored = round.explored;
            match found {
                Found::Linearizable => {
                    if config.linearization {
                        orders.insert(part.key, search.order());
                    }
                    part.search = None;
                }
                Found::Violation => {
                    let violation = Violation {
                        operations: part.ops.iter().map(|&op| op.clone()).collect(),
                        culprits: Vec::new(),
                        partition: part.key,
                        partition_len: part.ops.len(),
                        minimal: false,
                        shrinking: Shrinking::Skipped,
                        partial: search.longest(),
                        explored_to_decide: work.explored,
                        explored: work.explored,
                    };
                    // Free the searches before shrinking.
                    drop(parts);
                    return Verdict::Violation(if config.shrink {
                        violation.shrink(model, config.shrink_max_states, config.shrink_time_limit)
                    } else {
                        violation
                    });
                }
                Found::Exhausted => {
                    undecided += 1;
                    let spent = match round.spent {
                        Some(Spent::Time) => Some(Spent::Time),
                        _ if work.left == 0 => Some(Spent::States),
                        _ => None,
                    };
                    if let Some(spent) = spent {
                        return unknown(&parts, &work, config, spent);
                    }
                }
            }
        }
        if undecided == 0 {
            break;
        }
        slice = slice.saturating_mul(2);
    }
    Verdict::Linearizable {
        explored: work.explored,
        linearization: config.linearization.then(|| Linearization {
            partitions: orders.into_iter().collect(),
        }),
    }
}

/// The violation the register fast path found in partition `key`: its witness (indices into
/// `ops`, at most six operations) is always shrunk, which takes a few states.
fn register_violation<M: Model>(
    model: &M,
    config: &CheckConfig,
    key: PartitionKey,
    ops: &[&Operation<M::Op, M::Ret>],
    witness: &[usize],
    explored: u64,
) -> Violation<M::Op, M::Ret>
where
    M::Op: Clone,
    M::Ret: Clone,
{
    let violation = Violation {
        operations: witness.iter().map(|&i| ops[i].clone()).collect(),
        culprits: Vec::new(),
        partition: key,
        partition_len: ops.len(),
        minimal: false,
        shrinking: Shrinking::Skipped,
        partial: Vec::new(),
        explored_to_decide: explored,
        explored,
    };
    violation.shrink(model, config.shrink_max_states, config.shrink_time_limit)
}

/// The answer when a budget is spent.
fn unknown<M: Model>(
    parts: &[Part<'_, M>],
    work: &Work,
    config: &CheckConfig,
    spent: Spent,
) -> Verdict<M::Op, M::Ret> {
    let undecided: Vec<&Part<'_, M>> = parts.iter().filter(|p| p.search.is_some()).collect();
    let most = undecided
        .iter()
        .max_by_key(|p| {
            (
                p.search.as_ref().map_or(0, |s| s.explored),
                std::cmp::Reverse(p.key),
            )
        })
        .expect("a partition is undecided");
    Verdict::Unknown {
        explored: work.explored,
        max_states: config.max_states,
        spent,
        partition: most.key,
        operations: most.ops.len(),
        undecided: undecided.len(),
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

    /// A check that searches every partition (the register fast path off), for the tests of
    /// the search itself.
    fn searched(max_states: u64) -> CheckConfig {
        CheckConfig::new(max_states).register_fast_path(false)
    }

    fn ids<Op, Ret>(v: &Verdict<Op, Ret>) -> Vec<usize> {
        let v = v.violation().expect("a violation");
        v.operations.iter().map(|op| op.id).collect()
    }

    #[test]
    fn empty_and_sequential_histories_are_linearizable() {
        let h = Reg::new();
        assert_eq!(
            reg(&h),
            Verdict::Linearizable {
                explored: 0,
                linearization: None
            }
        );
        write(&h, 1, 1, 0, 1);
        read(&h, 2, 1, 2, 3);
        write(&h, 2, 2, 4, 5);
        read(&h, 1, 2, 6, 7);
        assert_eq!(
            h.check_with(&RegisterModel::new(0), &searched(10_000)),
            Verdict::Linearizable {
                explored: 4,
                linearization: None
            }
        );
        // The register fast path decides it without a search.
        assert_eq!(
            reg(&h),
            Verdict::Linearizable {
                explored: 0,
                linearization: None
            }
        );
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
            h.check_with(&RegisterModel::new(0), &searched(5)),
            Verdict::Unknown {
                explored: 5,
                max_states: 5,
                spent: Spent::States,
                partition: PartitionKey::ALL,
                operations: 10,
                undecided: 1,
            }
        );
        assert!(h
            .check_with(&RegisterModel::new(0), &searched(10))
            .is_linearizable());

        // Forty concurrent writes of unknown outcome and a read of a value none wrote: an
        // exhaustive search would visit every subset of the writes.
        let h = Reg::new();
        for i in 0..40 {
            h.invoke(i, RegisterOp::Write(i as u32 + 1), ms(0))
                .unknown(ms(10));
        }
        read(&h, 99, 1000, 1, 2);
        let v = h.check_with(&RegisterModel::new(0), &searched(50_000));
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
        crate::history::register::tests::brute(&RegisterModel::new(0), ops)
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

    /// A small seeded generator (splitmix64), so that the tests need nothing outside the module.
    pub(super) struct TestRng(pub(super) u64);

    impl TestRng {
        pub(super) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            crate::history::hash::mix64(self.0)
        }

        pub(super) fn gen_range(&mut self, r: std::ops::Range<u64>) -> u64 {
            r.start + self.next() % (r.end - r.start)
        }

        pub(super) fn gen_bool(&mut self, p: f64) -> bool {
            ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
        }
    }

    /// A random history of three clients on a register: effects at random instants inside
    /// the intervals, some outcomes unknown, some returns corrupted.
    fn random_history(seed: u64) -> Reg {
        random_history_with(seed, 3, 0.15)
    }

    /// [`random_history`] with `clients` clients and outcomes unknown with probability
    /// `unknown`.
    fn random_history_with(seed: u64, clients: u64, unknown: f64) -> Reg {
        let mut rng = TestRng(seed);
        let mut gen = Vec::new();
        for client in 0..clients {
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
                let unknown = rng.gen_bool(unknown);
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
        crate::history::register::tests::record(&gen, &rets)
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

    #[test]
    fn agrees_with_brute_force_when_many_outcomes_are_unknown() {
        // Exercises the dominance pruning of operations of unknown outcome.
        let mut seen = [0; 2];
        for seed in 0..1_500 {
            let h = random_history_with(seed, 4, 0.5);
            let expected = brute_force(&h.operations());
            let v = reg(&h);
            assert_eq!(v.is_linearizable(), expected, "seed {seed}: {v}");
            seen[usize::from(expected)] += 1;
        }
        assert!(seen[0] > 100 && seen[1] > 100, "{seen:?}");
    }

    /// Forty concurrent writes of unknown outcome and a read of a value none wrote, on key
    /// `hard`: an exhaustive search visits every subset of the writes.
    fn hard_partition(h: &History<KvOp<&'static str, u32>, KvRet<u32>>, hard: &'static str) {
        for i in 0..40 {
            h.invoke(i, KvOp::Put(hard, i as u32 + 1), ms(0))
                .unknown(ms(10));
        }
        h.invoke(99, KvOp::Get(hard), ms(1))
            .ok(KvRet::Value(Some(1000)), ms(2));
    }

    fn stale_kv(h: &History<KvOp<&'static str, u32>, KvRet<u32>>, key: &'static str, t: u64) {
        let ok = |c, op, ret, from, to| h.invoke(c, op, ms(from)).ok(ret, ms(to));
        ok(1, KvOp::Put(key, 1), KvRet::Done, t, t + 1);
        ok(1, KvOp::Put(key, 2), KvRet::Done, t + 2, t + 3);
        ok(2, KvOp::Get(key), KvRet::Value(Some(1)), t + 4, t + 5);
    }

    #[test]
    fn without_shrinking_the_verdict_lists_the_partition_and_shrinks_later() {
        let h = Reg::new();
        for i in 0..50 {
            write(&h, i % 4, i as u32 + 1, 2 * i, 2 * i + 1);
        }
        read(&h, 9, 5, 1000, 1001); // stale
        let model = RegisterModel::new(0);
        let fast = h.check_with(&model, &searched(10_000).shrink(false));
        let v = fast.violation().expect("stale");
        assert_eq!(v.shrinking, Shrinking::Skipped);
        assert!(!v.minimal && v.culprits.is_empty());
        assert_eq!(v.operations.len(), 51);
        assert_eq!(v.explored, v.explored_to_decide);
        assert!(
            fast.to_string()
                .contains("not shrunk: all the 51 operations"),
            "{fast}"
        );
        // Explain second: the same witness as a check that shrinks.
        let full = h.check_with(&model, &searched(10_000));
        let later = v.shrink(&model, 10_000, None);
        assert_eq!(Some(&later), full.violation());
        assert!(later.minimal && later.shrinking == Shrinking::Minimal);
        assert_eq!(later.operations.len(), 3);
        assert!(later.explored > v.explored);
    }

    #[test]
    fn a_spent_shrink_budget_is_reported_as_partial() {
        let h = Reg::new();
        for i in 0..50 {
            write(&h, i % 4, i as u32 + 1, 2 * i, 2 * i + 1);
        }
        read(&h, 9, 5, 1000, 1001);
        let config = searched(10_000).shrink_budget(60, None);
        let verdict = h.check_with(&RegisterModel::new(0), &config);
        let v = verdict.violation().expect("still a violation");
        assert_eq!(
            v.shrinking,
            Shrinking::Partial {
                spent: Spent::States
            }
        );
        assert!(!v.minimal);
        assert!(
            v.operations.len() > 3 && v.operations.len() <= 51,
            "{verdict}"
        );
        assert!(verdict.to_string().contains("partly shrunk"), "{verdict}");
        // What is reported still fails.
        let again: Reg = History::new();
        for op in &v.operations {
            let call = again.invoke(op.client, op.op.clone(), op.invoked);
            match &op.outcome {
                Outcome::Ok { ret, at } => call.ok(ret.clone(), *at),
                _ => call.unknown(op.invoked),
            }
        }
        assert!(reg(&again).is_violation());
        // A time limit of zero stops shrinking at its first clock reading.
        let config = searched(10_000).shrink_budget(u64::MAX, Some(Duration::ZERO));
        let many = History::new();
        for i in 0..3_000u64 {
            write(&many, i % 4, i as u32 + 1, 2 * i, 2 * i + 1);
        }
        read(&many, 9, 5, 10_000, 10_001);
        let v = many.check_with(&RegisterModel::new(0), &config);
        assert_eq!(
            v.violation().expect("stale").shrinking,
            Shrinking::Partial { spent: Spent::Time },
            "{v}"
        );
    }

    #[test]
    fn a_time_limit_gives_unknown() {
        let h = History::new();
        hard_partition(&h, "x");
        let config = searched(u64::MAX).time_limit(Duration::from_millis(50));
        let start = std::time::Instant::now();
        let v = h.check_with(&KvModel::new(), &config);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the limit bounds the search"
        );
        match &v {
            Verdict::Unknown {
                spent,
                operations,
                undecided,
                explored,
                ..
            } => {
                assert_eq!(*spent, Spent::Time);
                assert_eq!((*operations, *undecided), (41, 1));
                assert!(*explored > 1024, "{v}");
            }
            _ => panic!("{v}"),
        }
        assert!(
            v.to_string()
                .starts_with("unknown: the time limit was reached"),
            "{v}"
        );
    }

    #[test]
    fn the_smallest_failing_partition_is_found_first() {
        // Key "a" (sorted first by key) is hard; key "z" has a stale read. Searched one
        // after the other in key order, the budget would go to "a" and the answer would be
        // unknown.
        let h = History::new();
        hard_partition(&h, "a");
        stale_kv(&h, "z", 100);
        let model = KvModel::new();
        let v = h.check_with(&model, &CheckConfig::new(1_000_000).shrink(false));
        let w = v.violation().expect("the stale read of z");
        assert_eq!(w.partition, model.partition(&KvOp::Get("z")));
        assert_eq!(w.partition_len, 3);
        // Only the small partition's states and none of the hard one's: it came first.
        assert!(w.explored_to_decide < 10, "{v}");
        // With two failing partitions of different sizes, the smaller is reported, and the
        // check stops there: the larger one's search never started.
        let h = History::new();
        hard_partition(&h, "a");
        stale_kv(&h, "m", 100);
        for t in 0..5 {
            h.invoke(5, KvOp::Put("b", t), ms(200 + 2 * t as u64))
                .ok(KvRet::Done, ms(201 + 2 * t as u64));
        }
        stale_kv(&h, "b", 300);
        let v = h.check_with(&model, &CheckConfig::new(1_000_000));
        let w = v.violation().expect("a stale read");
        assert_eq!(w.partition, model.partition(&KvOp::Get("m")), "{v}");
        assert!(w.minimal);
        // Deterministic: the same answer every time.
        assert_eq!(v, h.check_with(&model, &CheckConfig::new(1_000_000)));
    }

    #[test]
    fn a_large_partition_gets_slices_until_decided() {
        // A linearizable partition needing more than a slice, next to small ones.
        let h = Reg::new();
        for i in 0..3_000u64 {
            write(&h, i % 3, i as u32 + 1, 2 * i, 2 * i + 1);
        }
        let v = h.check_with(&RegisterModel::new(0), &searched(10_000));
        assert!(v.is_linearizable());
        assert_eq!(v.explored(), 3_000);
        assert!(h
            .check_with(&RegisterModel::new(0), &searched(2_999))
            .is_unknown());
    }

    #[test]
    fn a_pass_can_say_the_order_found() {
        let h = History::new();
        let ok = |c, op, ret, from, to| h.invoke(c, op, ms(from)).ok(ret, ms(to));
        // Client 2's read overlaps client 1's put and saw it: the put comes first.
        ok(2, KvOp::Get("a"), KvRet::Value(Some(1)), 0, 10);
        ok(1, KvOp::Put("a", 1), KvRet::Done, 1, 2);
        ok(1, KvOp::Put("b", 7), KvRet::Done, 3, 4);
        h.invoke(3, KvOp::Put("b", 8), ms(5)).unknown(ms(6));
        ok(2, KvOp::Get("b"), KvRet::Value(Some(8)), 11, 12);
        h.invoke(3, KvOp::Put("a", 9), ms(13)).fail(ms(14));
        let model = KvModel::new();
        let plain = h.check(&model, 1_000);
        assert_eq!(plain.linearization(), None);
        let v = h.check_with(&model, &CheckConfig::new(1_000).linearization(true));
        let lin = v.linearization().expect("asked for");
        let a = model.partition(&KvOp::Get("a"));
        let b = model.partition(&KvOp::Get("b"));
        let mut expected = vec![(a, vec![1, 0]), (b, vec![2, 3, 4])];
        expected.sort();
        assert_eq!(lin.partitions, expected);
        assert_eq!(v.explored(), plain.explored());
        // The order replays: each operation returns what it returned.
        let ops = h.operations();
        for (_, order) in &lin.partitions {
            let mut state = model.init();
            for &id in order {
                let (next, ret) = model.step(&state, &ops[id].op);
                if let Outcome::Ok { ret: r, .. } = &ops[id].outcome {
                    assert_eq!(*r, ret, "#{id}");
                }
                state = next;
            }
        }
        assert!(lin.to_string().contains("#1, #0"), "{lin}");
    }

    #[test]
    fn the_witness_draws_as_a_timeline() {
        let h = Reg::new();
        write(&h, 1, 1, 0, 1);
        write(&h, 1, 2, 2, 3);
        read(&h, 2, 1, 4, 5);
        h.invoke(3, RegisterOp::Write(3), ms(6)).unknown(ms(7));
        let v = reg(&h);
        let w = v.violation().expect("stale");
        let text = w.timeline();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[0],
            "  * #0 client 1  [-]            Write(1) -> Done  (0ns..1ms)"
        );
        assert_eq!(
            lines[1],
            "  * #1 client 1      [-]        Write(2) -> Done  (2ms..3ms)"
        );
        assert_eq!(
            lines[2],
            "  * #2 client 2          [-]    Read -> Value(1)  (4ms..5ms)"
        );
        // An unknown outcome runs on to the right.
        let all = super::super::timeline(&h.operations(), &[]);
        assert!(
            all.lines()
                .nth(3)
                .unwrap()
                .contains("[->  Write(3) -> ? (outcome unknown)  (6ms..)"),
            "{all}"
        );
        let svg = w.to_svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(
            svg.contains("#2 client 2: Read -&gt; Value(1)  (4ms..5ms)"),
            "{svg}"
        );
        assert_eq!(
            svg.matches("fill=\"#c0392b\"").count(),
            6,
            "three red bars, three red labels"
        );
    }
}
