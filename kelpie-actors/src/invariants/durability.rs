//! Durability and isolation checkers: [`SerializableIsolation`] (committed transactions are
//! serializable, no update is lost), [`WalDurability`] (an acknowledged log entry survives
//! crashes and replay and applies exactly once) and [`MessageDurability`] (an acknowledged
//! message is listed exactly once, and a checkpoint is never torn).
//!
//! Each is a cheap, cloneable recorder (clones share one history) that tasks feed while the
//! system runs, and a `check` that reports the first violation as a structured value whose
//! `Display` names the transactions, keys and values involved.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::adapter::{AgentRecord, AgentStorage, Message, NewMessage, SessionRecord};
use crate::error::{ActorError, KvError};
use crate::kv::{ActorKV, KvTransaction};
use crate::wal::WalEntry;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A value for a message: lossy UTF-8, at most 60 characters.
fn show(value: Option<&[u8]>) -> String {
    match value {
        None => "<absent>".to_string(),
        Some(v) => {
            let s = String::from_utf8_lossy(v);
            if s.chars().count() > 60 {
                format!("{:?}...", s.chars().take(60).collect::<String>())
            } else {
                format!("{s:?}")
            }
        }
    }
}

fn key_str(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Serializable isolation
// ---------------------------------------------------------------------------------------------

/// A transaction recorded by [`SerializableIsolation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId(usize);

/// How a recorded transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// The commit returned `Ok`.
    Committed,
    /// The commit (or the transaction) failed and changed nothing.
    Aborted,
    /// The commit's outcome is unknown ([`KvError::OutcomeUnknown`]): applied entirely or not
    /// at all. The checker counts it as applied iff one of its writes was observed.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnState {
    Open,
    /// `commit` called, not returned (the task may have been killed): like `Unknown`.
    Committing,
    Done(TxnOutcome),
}

#[derive(Debug)]
struct TxnRecord {
    label: String,
    /// The first value each key was read with (reads of the transaction's own writes are not
    /// recorded).
    reads: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// A later read of the same key that returned something else.
    reread: Option<(Vec<u8>, Option<Vec<u8>>)>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    state: TxnState,
    /// Place in commit order: when `commit` returned (or was called, if it never returned).
    position: u64,
}

#[derive(Debug, Default)]
struct History {
    initial: BTreeMap<Vec<u8>, Vec<u8>>,
    txns: Vec<TxnRecord>,
    clock: u64,
}

/// Checks that committed transactions are serializable.
///
/// Record each transaction's reads (the values seen) and writes, with
/// [`SerializableIsolation::record`] wrapping a [`KvTransaction`], or by hand with
/// [`begin`](SerializableIsolation::begin) / [`read`](SerializableIsolation::read) /
/// [`write`](SerializableIsolation::write) / [`finish`](SerializableIsolation::finish) for a
/// logical operation that is not one store transaction (which is how a read-modify-write
/// done with a plain `get` + `set` is caught). [`check`](SerializableIsolation::check) then
/// builds the dependency graph of the applied transactions (Adya's direct serialization
/// graph) and fails on a cycle:
///
/// - each read is matched to the transaction that wrote the value it saw, so **every written
///   value must be unique per key** (tag values with the writer); a value that no applied
///   transaction wrote is reported (an aborted write was read, or the store invented it);
/// - the version order of each key is the commit order of its writers, taken as the order in
///   which their commits returned (exact for stores that apply a commit in the poll that
///   completes it, such as `SimKv` and `MemoryKv`);
/// - edges: write→write (consecutive versions), write→read (the reader saw the writer's
///   version), read→write (the reader saw a version that the writer replaced: an
///   anti-dependency). An acyclic graph means a serial order exists consistent with every
///   read; a lost update shows as a 2-cycle `a -rw-> b -ww-> a`;
/// - the store's final state must hold the last applied version of every key.
///
/// ```
/// use kelpie_actors::{ActorKV, KvTransaction, MemoryKv};
/// use kelpie_actors::invariants::SerializableIsolation;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let kv = MemoryKv::new();
/// let checker = SerializableIsolation::new();
/// let mut a = checker.record(kv.transaction(), "a");
/// let mut b = checker.record(kv.transaction(), "b");
/// a.get(b"x").await.unwrap();
/// b.get(b"x").await.unwrap();
/// a.set(b"x", b"from a");
/// b.set(b"x", b"from b");
/// a.commit().await.unwrap();
/// assert!(b.commit().await.is_err()); // the store caught the conflict
/// let state = kv.scan_prefix(b"").await.unwrap().into_iter().collect();
/// assert!(checker.check(&state).is_ok());
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct SerializableIsolation {
    history: Arc<Mutex<History>>,
}

/// What [`SerializableIsolation::check`] found in a history that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IsolationReport {
    /// Transactions whose commit returned `Ok`.
    pub committed: usize,
    /// Transactions that changed nothing (failed, or never committed).
    pub aborted: usize,
    /// Transactions of unknown outcome whose writes were observed: applied.
    pub unknown_applied: usize,
    /// Transactions of unknown outcome with no observed write: counted as not applied.
    pub unknown_unseen: usize,
    /// Dependency edges checked.
    pub edges: usize,
}

impl fmt::Display for IsolationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} committed, {} aborted, {} of unknown outcome applied, {} unseen, {} dependencies",
            self.committed, self.aborted, self.unknown_applied, self.unknown_unseen, self.edges
        )
    }
}

/// A dependency between two transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The second overwrote the first's version.
    WriteWrite,
    /// The second read the first's version.
    WriteRead,
    /// The first read a version that the second replaced.
    ReadWrite,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dependency::WriteWrite => "ww",
            Dependency::WriteRead => "wr",
            Dependency::ReadWrite => "rw",
        })
    }
}

/// One edge of a dependency cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleStep {
    /// The transaction the edge leaves.
    pub from: String,
    /// The dependency.
    pub dependency: Dependency,
    /// The key it is on.
    pub key: String,
    /// The transaction the edge reaches.
    pub to: String,
}

/// A dependency cycle: no serial order is consistent with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Vec<CycleStep>);

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            if i == 0 {
                write!(f, "{}", step.from)?;
            }
            write!(f, " -{}({})-> {}", step.dependency, step.key, step.to)?;
        }
        Ok(())
    }
}

/// A violation of serializability found by [`SerializableIsolation::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IsolationViolation {
    /// The applied transactions' dependencies form a cycle (a lost update, write skew, a
    /// non-atomic commit...).
    #[error("not serializable: dependency cycle {cycle}")]
    Cycle {
        /// The cycle.
        cycle: Cycle,
    },
    /// An applied transaction read a value written only by a transaction that did not
    /// commit.
    #[error("{reader} read {key} = {value}, written only by {writer}, which did not commit")]
    AbortedRead {
        /// The reader.
        reader: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The transaction that wrote it.
        writer: String,
    },
    /// An applied transaction read a value that no transaction wrote.
    #[error("{reader} read {key} = {value}, which no transaction wrote")]
    UnknownValue {
        /// The reader.
        reader: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Several applied transactions wrote the same value to one key, so a read of it cannot
    /// be attributed (a bug in the test: values must be unique per key).
    #[error(
        "ambiguous history: {writers:?} all wrote {key} = {value}; make written values unique"
    )]
    AmbiguousValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// The writers (the initial state is `<initial>`).
        writers: Vec<String>,
    },
    /// A committed transaction read one key twice and saw two values.
    #[error("{reader} read {key} twice and saw {first} then {second}")]
    NonRepeatableRead {
        /// The reader.
        reader: String,
        /// The key.
        key: String,
        /// The first value.
        first: String,
        /// The second value.
        second: String,
    },
    /// The store's final state does not hold the last applied version of a key.
    #[error(
        "final state of {key} is {found}, but the last applied write was {expected} by {writer}"
    )]
    FinalState {
        /// The key.
        key: String,
        /// The last applied value.
        expected: String,
        /// What the store holds.
        found: String,
        /// Its writer.
        writer: String,
    },
}

/// Which version of a key a read saw: the initial one, or the one written by a transaction
/// (with its place in the key's version order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Initial,
    By(usize, usize),
}

impl SerializableIsolation {
    /// A checker with an empty initial state.
    pub fn new() -> Self {
        Self::default()
    }

    /// A checker whose history starts from `initial` (the store's content before the first
    /// recorded transaction).
    pub fn with_initial(initial: BTreeMap<Vec<u8>, Vec<u8>>) -> Self {
        let checker = Self::default();
        lock(&checker.history).initial = initial;
        checker
    }

    fn history(&self) -> MutexGuard<'_, History> {
        lock(&self.history)
    }

    /// Starts recording a transaction named `label` (shown in violations).
    pub fn begin(&self, label: impl Into<String>) -> TxnId {
        let mut h = self.history();
        h.txns.push(TxnRecord {
            label: label.into(),
            reads: BTreeMap::new(),
            reread: None,
            writes: BTreeMap::new(),
            state: TxnState::Open,
            position: u64::MAX,
        });
        TxnId(h.txns.len() - 1)
    }

    /// Records that `txn` read `value` at `key` from the store (not its own write).
    pub fn read(&self, txn: TxnId, key: &[u8], value: Option<&[u8]>) {
        let mut h = self.history();
        let t = &mut h.txns[txn.0];
        if t.writes.contains_key(key) {
            return;
        }
        match t.reads.get(key) {
            None => {
                t.reads.insert(key.to_vec(), value.map(<[u8]>::to_vec));
            }
            Some(first) if first.as_deref() != value && t.reread.is_none() => {
                t.reread = Some((key.to_vec(), value.map(<[u8]>::to_vec)));
            }
            Some(_) => {}
        }
    }

    /// Records that `txn` wrote `value` at `key` (`None`: deleted it).
    pub fn write(&self, txn: TxnId, key: &[u8], value: Option<&[u8]>) {
        self.history().txns[txn.0]
            .writes
            .insert(key.to_vec(), value.map(<[u8]>::to_vec));
    }

    /// Records that `txn`'s commit started (if it never returns, the transaction counts as
    /// of unknown outcome, placed here in commit order).
    pub fn committing(&self, txn: TxnId) {
        let mut h = self.history();
        h.clock += 1;
        let at = h.clock;
        let t = &mut h.txns[txn.0];
        t.state = TxnState::Committing;
        t.position = at;
    }

    /// Records how `txn` ended; call it as soon as the commit returns.
    pub fn finish(&self, txn: TxnId, outcome: TxnOutcome) {
        let mut h = self.history();
        h.clock += 1;
        let at = h.clock;
        let t = &mut h.txns[txn.0];
        t.state = TxnState::Done(outcome);
        t.position = at;
    }

    /// Records how `txn` ended from its commit's result.
    pub fn finish_with(&self, txn: TxnId, result: &Result<(), KvError>) {
        self.finish(
            txn,
            match result {
                Ok(()) => TxnOutcome::Committed,
                Err(KvError::OutcomeUnknown) => TxnOutcome::Unknown,
                Err(_) => TxnOutcome::Aborted,
            },
        );
    }

    /// Wraps `txn` so that its reads, writes and commit are recorded under `label`.
    pub fn record<T: KvTransaction>(&self, txn: T, label: impl Into<String>) -> RecordingTxn<T> {
        RecordingTxn {
            id: self.begin(label),
            checker: self.clone(),
            inner: txn,
        }
    }

    /// Number of transactions recorded.
    pub fn len(&self) -> usize {
        self.history().txns.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the history against the store's `final_state` (its content after every writer
    /// stopped: at least every key the history wrote; a missing key is absent).
    pub fn check(
        &self,
        final_state: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<IsolationReport, IsolationViolation> {
        let h = self.history();
        let applied = h.applied(final_state);
        let mut report = h.tally(&applied);
        let versions = Versions::of(&h, &applied);
        let edges = h.dependencies(&applied, &versions)?;
        report.edges = edges.values().map(BTreeMap::len).sum();
        if let Some(cycle) = find_cycle(&edges) {
            return Err(h.cycle_violation(&edges, &cycle));
        }
        h.check_final_state(&versions, final_state)?;
        Ok(report)
    }
}

/// The dependency graph: `edges[from][to]` is the first dependency found between them, with
/// its key.
type Edges = BTreeMap<usize, BTreeMap<usize, (Dependency, Vec<u8>)>>;

/// Adds the edge `from -dep(key)-> to` unless it is a self-loop or the pair already has one.
fn add_edge(edges: &mut Edges, from: usize, to: usize, dep: Dependency, key: &[u8]) {
    if from != to {
        edges
            .entry(from)
            .or_default()
            .entry(to)
            .or_insert_with(|| (dep, key.to_vec()));
    }
}

/// (key, value) -> its applied writers, each with its place in the key's version order.
type Written<'a> = BTreeMap<(&'a [u8], Option<&'a [u8]>), Vec<(usize, usize)>>;

/// The version order of every key written by an applied transaction.
struct Versions<'a> {
    /// The applied transactions in commit order.
    order: Vec<usize>,
    /// Each key's applied writers in commit order.
    writers: BTreeMap<&'a [u8], Vec<usize>>,
    /// (key, value) -> its applied writers, each with its place in the key's version order.
    written: Written<'a>,
}

impl<'a> Versions<'a> {
    /// The version orders of `h`'s applied transactions: their commit order.
    fn of(h: &'a History, applied: &[bool]) -> Self {
        let mut order: Vec<usize> = (0..h.txns.len()).filter(|&i| applied[i]).collect();
        order.sort_by_key(|&i| (h.txns[i].position, i));
        let mut writers: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
        let mut written = Written::new();
        for &i in &order {
            for (k, v) in &h.txns[i].writes {
                let list = writers.entry(k.as_slice()).or_default();
                written
                    .entry((k.as_slice(), v.as_deref()))
                    .or_default()
                    .push((i, list.len()));
                list.push(i);
            }
        }
        Versions {
            order,
            writers,
            written,
        }
    }

    /// The applied writers of `key`, in version order.
    fn of_key(&self, key: &[u8]) -> &[usize] {
        self.writers.get(key).map_or(&[][..], Vec::as_slice)
    }
}

impl History {
    /// Transaction `i` as violations name it.
    fn name(&self, i: usize) -> String {
        format!("t{i}:{}", self.txns[i].label)
    }

    /// Which transactions were applied: committed ones, plus those of unknown outcome (or
    /// killed mid-commit) whose writes someone observed, in `final_state` or in a read of an
    /// applied transaction (to a fixed point).
    fn applied(&self, final_state: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<bool> {
        let mut applied = vec![false; self.txns.len()];
        let mut maybe = Vec::new();
        for (i, t) in self.txns.iter().enumerate() {
            match t.state {
                TxnState::Done(TxnOutcome::Committed) => applied[i] = true,
                TxnState::Done(TxnOutcome::Unknown) | TxnState::Committing => maybe.push(i),
                TxnState::Open | TxnState::Done(TxnOutcome::Aborted) => {}
            }
        }
        let observed_in_final = |i: usize| {
            self.txns[i]
                .writes
                .iter()
                .any(|(k, v)| v.is_some() && final_state.get(k) == v.as_ref())
        };
        loop {
            let mut changed = false;
            for &m in &maybe {
                if applied[m] {
                    continue;
                }
                let seen = observed_in_final(m)
                    || self.txns.iter().enumerate().any(|(r, t)| {
                        applied[r]
                            && t.reads
                                .iter()
                                .any(|(k, v)| v.is_some() && self.txns[m].writes.get(k) == Some(v))
                    });
                if seen {
                    applied[m] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        applied
    }

    /// The report's counts of transactions by outcome (its `edges` left at zero).
    fn tally(&self, applied: &[bool]) -> IsolationReport {
        let mut report = IsolationReport::default();
        for (i, t) in self.txns.iter().enumerate() {
            match (t.state, applied[i]) {
                (TxnState::Done(TxnOutcome::Committed), _) => report.committed += 1,
                (TxnState::Done(TxnOutcome::Unknown) | TxnState::Committing, true) => {
                    report.unknown_applied += 1
                }
                (TxnState::Done(TxnOutcome::Unknown) | TxnState::Committing, false) => {
                    report.unknown_unseen += 1
                }
                _ => report.aborted += 1,
            }
        }
        report
    }

    /// The dependency graph of the applied transactions: write→write edges from the version
    /// orders, then write→read and read→write edges from each applied transaction's reads, in
    /// commit order. Fails on a read that cannot be attributed to exactly one version.
    fn dependencies(
        &self,
        applied: &[bool],
        versions: &Versions<'_>,
    ) -> Result<Edges, IsolationViolation> {
        let mut edges = Edges::new();
        for (k, writers) in &versions.writers {
            for w in writers.windows(2) {
                add_edge(&mut edges, w[0], w[1], Dependency::WriteWrite, k);
            }
        }
        for &r in &versions.order {
            let t = &self.txns[r];
            if let Some((key, second)) = &t.reread {
                return Err(IsolationViolation::NonRepeatableRead {
                    reader: self.name(r),
                    key: key_str(key),
                    first: show(t.reads[key].as_deref()),
                    second: show(second.as_deref()),
                });
            }
            for (k, v) in &t.reads {
                let writers = versions.of_key(k);
                let next = match self.source(applied, versions, r, k, v.as_deref())? {
                    Version::Initial => writers.first(),
                    Version::By(w, at) => {
                        add_edge(&mut edges, w, r, Dependency::WriteRead, k);
                        writers.get(at + 1)
                    }
                };
                if let Some(&next) = next {
                    add_edge(&mut edges, r, next, Dependency::ReadWrite, k);
                }
            }
        }
        Ok(edges)
    }

    /// The version that reader `r`'s read of `key` = `value` saw: the initial state's or one
    /// applied writer's. Fails if no applied transaction wrote it (naming an unapplied writer
    /// if there is one), or if several versions hold that value.
    fn source(
        &self,
        applied: &[bool],
        versions: &Versions<'_>,
        r: usize,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Version, IsolationViolation> {
        let mut sources: Vec<Version> = versions
            .written
            .get(&(key, value))
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|&(w, at)| Version::By(w, at))
            .collect();
        if self.initial.get(key).map(Vec::as_slice) == value {
            sources.insert(0, Version::Initial);
        }
        match sources.as_slice() {
            [one] => Ok(*one),
            [] => {
                let shown = show(value);
                let writer = (0..self.txns.len()).find(|&w| {
                    !applied[w] && self.txns[w].writes.get(key).map(Option::as_deref) == Some(value)
                });
                Err(match writer {
                    Some(w) => IsolationViolation::AbortedRead {
                        reader: self.name(r),
                        key: key_str(key),
                        value: shown,
                        writer: self.name(w),
                    },
                    None => IsolationViolation::UnknownValue {
                        reader: self.name(r),
                        key: key_str(key),
                        value: shown,
                    },
                })
            }
            many => Err(IsolationViolation::AmbiguousValue {
                key: key_str(key),
                value: show(value),
                writers: many
                    .iter()
                    .map(|s| match s {
                        Version::Initial => "<initial>".to_string(),
                        Version::By(w, _) => self.name(*w),
                    })
                    .collect(),
            }),
        }
    }

    /// The violation for `cycle`, a node path of `edges` whose last node is its first.
    fn cycle_violation(&self, edges: &Edges, cycle: &[usize]) -> IsolationViolation {
        let steps = cycle
            .windows(2)
            .map(|w| {
                let (dep, key) = &edges[&w[0]][&w[1]];
                CycleStep {
                    from: self.name(w[0]),
                    dependency: *dep,
                    key: key_str(key),
                    to: self.name(w[1]),
                }
            })
            .collect();
        IsolationViolation::Cycle {
            cycle: Cycle(steps),
        }
    }

    /// Checks that `final_state` holds the last applied version of every written key.
    fn check_final_state(
        &self,
        versions: &Versions<'_>,
        final_state: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(), IsolationViolation> {
        for (k, writers) in &versions.writers {
            let last = *writers.last().expect("a version list is never empty");
            let expected = self.txns[last].writes[*k].as_ref();
            let found = final_state.get(*k);
            if expected != found {
                return Err(IsolationViolation::FinalState {
                    key: key_str(k),
                    expected: show(expected.map(Vec::as_slice)),
                    found: show(found.map(Vec::as_slice)),
                    writer: self.name(last),
                });
            }
        }
        Ok(())
    }
}

/// A cycle in `edges` as a node path whose last node is its first, if there is one.
fn find_cycle(edges: &Edges) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let nodes: BTreeSet<usize> = edges
        .iter()
        .flat_map(|(from, to)| std::iter::once(*from).chain(to.keys().copied()))
        .collect();
    let mut mark: BTreeMap<usize, Mark> = nodes.iter().map(|&n| (n, Mark::New)).collect();
    for &start in &nodes {
        if mark[&start] != Mark::New {
            continue;
        }
        // Iterative DFS: the path, and for each node on it the successors left to visit.
        let succ = |n: usize| -> Vec<usize> {
            edges
                .get(&n)
                .map_or_else(Vec::new, |m| m.keys().copied().collect())
        };
        let mut path = vec![start];
        let mut todo = vec![succ(start)];
        mark.insert(start, Mark::OnPath);
        while let Some(next) = todo.last_mut() {
            match next.pop() {
                Some(n) => match mark[&n] {
                    Mark::OnPath => {
                        let at = path.iter().position(|&p| p == n).expect("on the path");
                        let mut cycle = path[at..].to_vec();
                        cycle.push(n);
                        return Some(cycle);
                    }
                    Mark::New => {
                        mark.insert(n, Mark::OnPath);
                        path.push(n);
                        todo.push(succ(n));
                    }
                    Mark::Done => {}
                },
                None => {
                    let done = path.pop().expect("path and todo have the same length");
                    mark.insert(done, Mark::Done);
                    todo.pop();
                }
            }
        }
    }
    None
}

/// A [`KvTransaction`] that records its reads, writes and outcome in a
/// [`SerializableIsolation`] (see [`SerializableIsolation::record`]).
#[derive(Debug)]
pub struct RecordingTxn<T> {
    inner: T,
    checker: SerializableIsolation,
    id: TxnId,
}

impl<T> RecordingTxn<T> {
    /// The transaction's id in the checker.
    pub fn id(&self) -> TxnId {
        self.id
    }
}

impl<T: KvTransaction> KvTransaction for RecordingTxn<T> {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let value = self.inner.get(key).await?;
        self.checker.read(self.id, key, value.as_deref());
        Ok(value)
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.checker.write(self.id, key, Some(value));
        self.inner.set(key, value);
    }

    fn delete(&mut self, key: &[u8]) {
        self.checker.write(self.id, key, None);
        self.inner.delete(key);
    }

    async fn commit(self) -> Result<(), KvError> {
        self.checker.committing(self.id);
        let result = self.inner.commit().await;
        self.checker.finish_with(self.id, &result);
        result
    }
}

// ---------------------------------------------------------------------------------------------
// WAL durability
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct WalHistory {
    /// Every key a client submitted, with its payload.
    attempted: BTreeMap<String, serde_json::Value>,
    /// Keys whose append was acknowledged.
    acked: BTreeSet<String>,
}

/// Checks a [`Wal`](crate::Wal)'s promise: an entry whose append was acknowledged survives
/// crashes and replay, and every idempotency key takes effect exactly once.
///
/// Record each client submission ([`attempt`](WalDurability::attempt)) and acknowledgement
/// ([`ack`](WalDurability::ack)); after the final replay, [`check`](WalDurability::check)
/// the log's entries against how many times each key's effect is visible in the store.
#[derive(Debug, Clone, Default)]
pub struct WalDurability {
    history: Arc<Mutex<WalHistory>>,
}

/// What [`WalDurability::check`] found in a log that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalReport {
    /// Keys submitted.
    pub attempted: usize,
    /// Keys acknowledged.
    pub acked: usize,
    /// Entries in the log (acknowledged or not).
    pub entries: usize,
}

impl fmt::Display for WalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys submitted, {} acknowledged, {} entries logged and applied once",
            self.attempted, self.acked, self.entries
        )
    }
}

/// A violation of WAL durability found by [`WalDurability::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalViolation {
    /// An acknowledged key has no entry: the acknowledgement came before durability.
    #[error("acknowledged key {key:?} has no log entry: lost")]
    LostAcked {
        /// The key.
        key: String,
    },
    /// One key was logged more than once.
    #[error("key {key:?} was logged {} times, at seqs {seqs:?}", seqs.len())]
    DuplicateKey {
        /// The key.
        key: String,
        /// Its entries' seqs.
        seqs: Vec<u64>,
    },
    /// An entry whose key no client submitted, or with another payload.
    #[error("entry {seq} for key {key:?} holds {logged}, but the client submitted {submitted}")]
    PayloadMismatch {
        /// The entry's seq.
        seq: u64,
        /// The key.
        key: String,
        /// What the entry holds.
        logged: String,
        /// What the client sent (`<nothing>` if the key was never submitted).
        submitted: String,
    },
    /// An entry still pending after the final replay.
    #[error("entry {seq} for key {key:?} is still pending after replay")]
    NotApplied {
        /// The entry's seq.
        seq: u64,
        /// The key.
        key: String,
    },
    /// A key's effect is visible a number of times other than once (or, for an entry still
    /// pending, other than zero).
    #[error("key {key:?} (entry {seq:?}) took effect {times} times, expected {expected}")]
    AppliedTimes {
        /// The key.
        key: String,
        /// Its entry's seq, if it has one.
        seq: Option<u64>,
        /// How often its effect is visible.
        times: u64,
        /// How often it should be.
        expected: u64,
    },
    /// The log's seqs are not 0, 1, 2, ... without gaps.
    #[error("log entries are not dense: expected seq {expected}, found {found}")]
    SeqGap {
        /// The seq expected.
        expected: u64,
        /// The seq found.
        found: u64,
    },
}

impl WalDurability {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that a client submitted `key` with `payload` (call before sending it; a retry
    /// with the same key and payload is fine).
    pub fn attempt(&self, key: &str, payload: &serde_json::Value) {
        lock(&self.history)
            .attempted
            .insert(key.to_string(), payload.clone());
    }

    /// Records that `key`'s append was acknowledged.
    pub fn ack(&self, key: &str) {
        lock(&self.history).acked.insert(key.to_string());
    }

    /// Keys acknowledged so far.
    pub fn acked(&self) -> usize {
        lock(&self.history).acked.len()
    }

    /// Checks the log's `entries` (all of them, after the final replay) and `applied`: how
    /// many times each key's effect is visible in the store (missing: zero).
    pub fn check(
        &self,
        entries: &[WalEntry],
        applied: &BTreeMap<String, u64>,
    ) -> Result<WalReport, WalViolation> {
        let h = lock(&self.history);
        let mut by_key: BTreeMap<&str, Vec<&WalEntry>> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            if e.seq != i as u64 {
                return Err(WalViolation::SeqGap {
                    expected: i as u64,
                    found: e.seq,
                });
            }
            by_key.entry(&e.key).or_default().push(e);
        }
        for (key, es) in &by_key {
            if es.len() > 1 {
                return Err(WalViolation::DuplicateKey {
                    key: key.to_string(),
                    seqs: es.iter().map(|e| e.seq).collect(),
                });
            }
            let e = es[0];
            if h.attempted.get(*key) != Some(&e.payload) {
                return Err(WalViolation::PayloadMismatch {
                    seq: e.seq,
                    key: key.to_string(),
                    logged: e.payload.to_string(),
                    submitted: h
                        .attempted
                        .get(*key)
                        .map_or("<nothing>".to_string(), ToString::to_string),
                });
            }
            if !e.is_complete() {
                return Err(WalViolation::NotApplied {
                    seq: e.seq,
                    key: key.to_string(),
                });
            }
        }
        for key in &h.acked {
            if !by_key.contains_key(key.as_str()) {
                return Err(WalViolation::LostAcked { key: key.clone() });
            }
        }
        let keys: BTreeSet<&str> = by_key
            .keys()
            .copied()
            .chain(applied.keys().map(String::as_str))
            .collect();
        for key in keys {
            let times = applied.get(key).copied().unwrap_or(0);
            let entry = by_key.get(key).map(|es| es[0]);
            let expected = u64::from(entry.is_some_and(|e| e.is_complete()));
            if times != expected {
                return Err(WalViolation::AppliedTimes {
                    key: key.to_string(),
                    seq: entry.map(|e| e.seq),
                    times,
                    expected,
                });
            }
        }
        Ok(WalReport {
            attempted: h.attempted.len(),
            acked: h.acked.len(),
            entries: entries.len(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Message durability
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct MessageHistory {
    /// (agent, request id) -> (session, content) of every message a client sent.
    attempted: BTreeMap<(String, String), (String, String)>,
    /// (agent, request id) -> every seq it was acknowledged with.
    acked: BTreeMap<(String, String), BTreeSet<u64>>,
}

/// What the API lists for one agent: its record, sessions and messages (see
/// [`AgentSnapshot::read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSnapshot {
    /// The agent's id.
    pub agent: String,
    /// Its record.
    pub record: Option<AgentRecord>,
    /// Its sessions.
    pub sessions: Vec<SessionRecord>,
    /// Its messages, as listed.
    pub messages: Vec<Message>,
}

impl AgentSnapshot {
    /// Reads `agent`'s record, sessions and messages through the API, in that order. Not
    /// atomic: read it while no checkpoint of this agent is in flight, or use
    /// [`AgentSnapshot::read_stable`].
    pub async fn read<K: ActorKV>(api: &AgentStorage<K>, agent: &str) -> Result<Self, ActorError> {
        Ok(AgentSnapshot {
            agent: agent.to_string(),
            record: api.get_agent(agent).await?,
            sessions: api.list_sessions(agent).await?,
            messages: api.list_messages(agent).await?,
        })
    }

    /// Like [`AgentSnapshot::read`] while checkpoints may be in flight: reads the agent record
    /// again after the lists and retries (up to `tries` times) until it did not change. Every
    /// whole checkpoint advances the record in the same transaction as its message, so an
    /// unchanged record means no whole checkpoint landed in between; a torn one still shows.
    /// `Ok(None)` if the record kept changing.
    pub async fn read_stable<K: ActorKV>(
        api: &AgentStorage<K>,
        agent: &str,
        tries: u32,
    ) -> Result<Option<Self>, ActorError> {
        for _ in 0..tries {
            let snap = Self::read(api, agent).await?;
            if api.get_agent(agent).await? == snap.record {
                return Ok(Some(snap));
            }
        }
        Ok(None)
    }
}

/// How many acknowledged messages a listing lost or repeated; see [`MessageDurability::tally`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageTally {
    /// Messages listed.
    pub listed: u64,
    /// Messages acknowledged to clients.
    pub acked: u64,
    /// Acknowledged messages not listed at their seq.
    pub lost: u64,
    /// Request ids listed more than once (each extra copy counts).
    pub duplicated: u64,
}

impl fmt::Display for MessageTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} listed, {} acknowledged, {} lost, {} duplicated",
            self.listed, self.acked, self.lost, self.duplicated
        )
    }
}

impl std::ops::AddAssign for MessageTally {
    fn add_assign(&mut self, other: Self) {
        self.listed += other.listed;
        self.acked += other.acked;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
    }
}

/// Checks an agent's message log as the API lists it: every acknowledged message is there
/// exactly once, at the seq it was acknowledged with, unchanged; nothing appears that no
/// client sent; and each checkpoint is whole (seqs dense, the agent's counter and each
/// session's count and last seq agree with the messages listed).
#[derive(Debug, Clone, Default)]
pub struct MessageDurability {
    history: Arc<Mutex<MessageHistory>>,
}

/// A violation found by [`MessageDurability::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageViolation {
    /// An acknowledged message is not listed at its seq.
    #[error("agent {agent}: acknowledged message {request_id:?} (seq {seq}) is lost")]
    Lost {
        /// The agent.
        agent: String,
        /// The request id.
        request_id: String,
        /// The seq it was acknowledged with.
        seq: u64,
    },
    /// A request was stored or acknowledged more than once.
    #[error("agent {agent}: message {request_id:?} appears at seqs {seqs:?}")]
    Duplicated {
        /// The agent.
        agent: String,
        /// The request id.
        request_id: String,
        /// Every seq it appears (or was acknowledged) at.
        seqs: Vec<u64>,
    },
    /// A listed message no client sent, or sent differently.
    #[error("agent {agent}: message at seq {seq} ({request_id:?}) was never sent in this form")]
    Phantom {
        /// The agent.
        agent: String,
        /// Its seq.
        seq: u64,
        /// Its request id.
        request_id: String,
    },
    /// The log has a gap or is out of order.
    #[error("agent {agent}: expected seq {expected} at position {expected}, found {found}")]
    Gap {
        /// The agent.
        agent: String,
        /// The seq expected.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// Messages exist but the agent record is missing (state the API cannot see).
    #[error("agent {agent}: {messages} messages listed but no agent record")]
    MissingAgent {
        /// The agent.
        agent: String,
        /// Messages listed.
        messages: usize,
    },
    /// The agent's counter disagrees with its messages: a torn checkpoint.
    #[error("agent {agent}: next_seq is {next_seq} but {messages} messages are listed (torn checkpoint)")]
    Counter {
        /// The agent.
        agent: String,
        /// The counter.
        next_seq: u64,
        /// Messages listed.
        messages: usize,
    },
    /// A session disagrees with its messages: a torn checkpoint.
    #[error("agent {agent}: session {session} records {count} messages ending at {last_seq:?}, but lists {listed} ending at {listed_last:?} (torn checkpoint)")]
    Session {
        /// The agent.
        agent: String,
        /// The session.
        session: String,
        /// Its `message_count`.
        count: u64,
        /// Its `last_seq`.
        last_seq: Option<u64>,
        /// Messages of the session listed.
        listed: u64,
        /// Seq of the last one.
        listed_last: Option<u64>,
    },
}

impl MessageDurability {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that a client sent `message` to `session` of `agent` (before sending; retries
    /// of the same message are fine).
    pub fn attempt(&self, agent: &str, session: &str, message: &NewMessage) {
        lock(&self.history).attempted.insert(
            (agent.to_string(), message.request_id.clone()),
            (session.to_string(), message.content.clone()),
        );
    }

    /// Records that `request_id` was acknowledged as stored at `seq`.
    pub fn ack(&self, agent: &str, request_id: &str, seq: u64) {
        lock(&self.history)
            .acked
            .entry((agent.to_string(), request_id.to_string()))
            .or_default()
            .insert(seq);
    }

    /// Messages acknowledged so far (all agents).
    pub fn acked(&self) -> usize {
        lock(&self.history).acked.len()
    }

    /// Counts, for one agent's snapshot, the acknowledged messages it lost and the requests
    /// it lists more than once (all of them, where [`MessageDurability::check`] stops at the
    /// first violation).
    pub fn tally(&self, snap: &AgentSnapshot) -> MessageTally {
        let h = lock(&self.history);
        let mut copies: BTreeMap<&str, u64> = BTreeMap::new();
        for m in &snap.messages {
            *copies.entry(&m.request_id).or_default() += 1;
        }
        let mut tally = MessageTally {
            listed: snap.messages.len() as u64,
            duplicated: copies.values().map(|n| n - 1).sum(),
            ..MessageTally::default()
        };
        let acked = h
            .acked
            .range((snap.agent.clone(), String::new())..)
            .take_while(|((a, _), _)| *a == snap.agent);
        for ((_, request_id), seqs) in acked {
            tally.acked += 1;
            let present = seqs.iter().all(|&seq| {
                snap.messages
                    .iter()
                    .any(|m| m.seq == seq && m.request_id == *request_id)
            });
            if !present {
                tally.lost += 1;
            }
        }
        tally
    }

    /// Checks one agent's snapshot; returns the number of messages checked.
    pub fn check(&self, snap: &AgentSnapshot) -> Result<usize, MessageViolation> {
        let h = lock(&self.history);
        check_listing(&h, snap)?;
        check_acks(&h, snap)?;
        check_counter(snap)?;
        check_sessions(snap)?;
        Ok(snap.messages.len())
    }
}

/// The listing is gapless, each message is one that was sent to this agent, none twice.
fn check_listing(h: &MessageHistory, snap: &AgentSnapshot) -> Result<(), MessageViolation> {
    let agent = &snap.agent;
    let mut seen: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (i, m) in snap.messages.iter().enumerate() {
        if m.seq != i as u64 {
            return Err(MessageViolation::Gap {
                agent: agent.clone(),
                expected: i as u64,
                found: m.seq,
            });
        }
        let sent = h.attempted.get(&(agent.clone(), m.request_id.clone()));
        if m.agent != *agent || sent != Some(&(m.session.clone(), m.content.clone())) {
            return Err(MessageViolation::Phantom {
                agent: agent.clone(),
                seq: m.seq,
                request_id: m.request_id.clone(),
            });
        }
        seen.entry(&m.request_id).or_default().push(m.seq);
    }
    if let Some((request_id, seqs)) = seen.iter().find(|(_, s)| s.len() > 1) {
        return Err(MessageViolation::Duplicated {
            agent: agent.clone(),
            request_id: request_id.to_string(),
            seqs: seqs.clone(),
        });
    }
    Ok(())
}

/// Every acknowledged message was acknowledged once and is listed at its acknowledged seq.
fn check_acks(h: &MessageHistory, snap: &AgentSnapshot) -> Result<(), MessageViolation> {
    let agent = &snap.agent;
    let acked = h
        .acked
        .range((agent.clone(), String::new())..)
        .take_while(|((a, _), _)| a == agent);
    for ((_, request_id), seqs) in acked {
        if seqs.len() > 1 {
            return Err(MessageViolation::Duplicated {
                agent: agent.clone(),
                request_id: request_id.clone(),
                seqs: seqs.iter().copied().collect(),
            });
        }
        let seq = *seqs.first().expect("an ack has a seq");
        let listed = snap.messages.get(seq as usize);
        if listed.is_none_or(|m| m.request_id != *request_id) {
            return Err(MessageViolation::Lost {
                agent: agent.clone(),
                request_id: request_id.clone(),
                seq,
            });
        }
    }
    Ok(())
}

/// The agent record exists if anything of the agent does, and its counter matches the listing.
fn check_counter(snap: &AgentSnapshot) -> Result<(), MessageViolation> {
    match &snap.record {
        None if !snap.messages.is_empty() || !snap.sessions.is_empty() => {
            Err(MessageViolation::MissingAgent {
                agent: snap.agent.clone(),
                messages: snap.messages.len(),
            })
        }
        Some(r) if r.next_seq != snap.messages.len() as u64 => Err(MessageViolation::Counter {
            agent: snap.agent.clone(),
            next_seq: r.next_seq,
            messages: snap.messages.len(),
        }),
        _ => Ok(()),
    }
}

/// Each session record's count and last seq match the messages listed in that session.
fn check_sessions(snap: &AgentSnapshot) -> Result<(), MessageViolation> {
    let mut per_session: BTreeMap<&str, (u64, Option<u64>)> = BTreeMap::new();
    for m in &snap.messages {
        let e = per_session.entry(&m.session).or_default();
        e.0 += 1;
        e.1 = Some(m.seq);
    }
    let recorded: BTreeMap<&str, &SessionRecord> =
        snap.sessions.iter().map(|s| (s.id.as_str(), s)).collect();
    let names: BTreeSet<&str> = per_session.keys().chain(recorded.keys()).copied().collect();
    for session in names {
        let (listed, listed_last) = per_session.get(session).copied().unwrap_or_default();
        let (count, last_seq) = recorded
            .get(session)
            .map_or((0, None), |s| (s.message_count, s.last_seq));
        if (count, last_seq) != (listed, listed_last) {
            return Err(MessageViolation::Session {
                agent: snap.agent.clone(),
                session: session.to_string(),
                count,
                last_seq,
                listed,
                listed_last,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{NewAgent, Role};
    use crate::kv::MemoryKv;

    fn state(kv: &[(&str, &str)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        kv.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_lost_update_is_a_cycle() {
        let c = SerializableIsolation::new();
        let (a, b) = (c.begin("a"), c.begin("b"));
        c.read(a, b"x", None);
        c.read(b, b"x", None);
        c.write(a, b"x", Some(b"1 by a"));
        c.write(b, b"x", Some(b"1 by b"));
        c.finish(a, TxnOutcome::Committed);
        c.finish(b, TxnOutcome::Committed);
        let err = c.check(&state(&[("x", "1 by b")])).unwrap_err();
        assert!(matches!(err, IsolationViolation::Cycle { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("-rw(x)->") && text.contains("-ww(x)->"),
            "{text}"
        );
    }

    #[test]
    fn serial_histories_pass_and_final_state_is_checked() {
        let c = SerializableIsolation::with_initial(state(&[("x", "0")]));
        let (a, b) = (c.begin("a"), c.begin("b"));
        c.read(a, b"x", Some(b"0"));
        c.write(a, b"x", Some(b"1"));
        c.finish(a, TxnOutcome::Committed);
        c.read(b, b"x", Some(b"1"));
        c.write(b, b"x", Some(b"2"));
        c.write(b, b"y", Some(b"2"));
        c.finish(b, TxnOutcome::Committed);
        let report = c.check(&state(&[("x", "2"), ("y", "2")])).unwrap();
        assert_eq!((report.committed, report.aborted), (2, 0));
        let lost = c.check(&state(&[("x", "2")])).unwrap_err();
        assert!(
            matches!(lost, IsolationViolation::FinalState { .. }),
            "{lost}"
        );
    }

    #[test]
    fn unknown_outcomes_count_only_when_observed() {
        let c = SerializableIsolation::new();
        let (u, v, r) = (c.begin("u"), c.begin("v"), c.begin("r"));
        c.write(u, b"x", Some(b"u"));
        c.finish(u, TxnOutcome::Unknown);
        c.write(v, b"y", Some(b"v"));
        c.committing(v); // killed mid-commit, never observed
        c.read(r, b"x", Some(b"u"));
        c.finish(r, TxnOutcome::Committed);
        let report = c.check(&state(&[("x", "u")])).unwrap();
        assert_eq!((report.unknown_applied, report.unknown_unseen), (1, 1));
    }

    #[test]
    fn reading_an_aborted_or_invented_value_is_reported() {
        let c = SerializableIsolation::new();
        let (a, r) = (c.begin("a"), c.begin("r"));
        c.write(a, b"x", Some(b"dirty"));
        c.finish(a, TxnOutcome::Aborted);
        c.read(r, b"x", Some(b"dirty"));
        c.finish(r, TxnOutcome::Committed);
        assert!(matches!(
            c.check(&BTreeMap::new()),
            Err(IsolationViolation::AbortedRead { .. })
        ));
        let c = SerializableIsolation::new();
        let r = c.begin("r");
        c.read(r, b"x", Some(b"??"));
        c.finish(r, TxnOutcome::Committed);
        assert!(matches!(
            c.check(&BTreeMap::new()),
            Err(IsolationViolation::UnknownValue { .. })
        ));
    }

    #[test]
    fn write_skew_is_a_cycle() {
        // Each reads both keys and writes the other: serializable only if one saw the other.
        let c = SerializableIsolation::with_initial(state(&[("x", "0"), ("y", "0")]));
        let (a, b) = (c.begin("a"), c.begin("b"));
        for t in [a, b] {
            c.read(t, b"x", Some(b"0"));
            c.read(t, b"y", Some(b"0"));
        }
        c.write(a, b"x", Some(b"a"));
        c.write(b, b"y", Some(b"b"));
        c.finish(a, TxnOutcome::Committed);
        c.finish(b, TxnOutcome::Committed);
        assert!(matches!(
            c.check(&state(&[("x", "a"), ("y", "b")])),
            Err(IsolationViolation::Cycle { .. })
        ));
    }

    #[tokio::test]
    async fn recorded_memory_kv_transactions_are_serializable() {
        let kv = MemoryKv::new();
        let c = SerializableIsolation::new();
        let mut txns: Vec<_> = (0..4)
            .map(|i| (i, c.record(kv.transaction(), format!("t{i}"))))
            .collect();
        for (_, t) in txns.iter_mut() {
            t.get(b"n").await.unwrap();
        }
        for (i, mut t) in txns {
            t.set(b"n", format!("by {i}").as_bytes());
            let _ = t.commit().await;
        }
        let final_state = kv.scan_prefix(b"").await.unwrap().into_iter().collect();
        let report = c.check(&final_state).unwrap();
        assert_eq!((report.committed, report.aborted), (1, 3));
    }

    fn entry(seq: u64, key: &str, payload: u64, complete: bool) -> WalEntry {
        WalEntry {
            seq,
            key: key.to_string(),
            payload: payload.into(),
            status: if complete {
                crate::wal::WalStatus::Complete {
                    result: serde_json::Value::Null,
                    completed_ms: 0,
                }
            } else {
                crate::wal::WalStatus::Pending
            },
            appended_ms: 0,
        }
    }

    #[test]
    fn wal_checker_finds_lost_duplicate_and_double_applied_keys() {
        let c = WalDurability::new();
        for k in ["a", "b", "c"] {
            c.attempt(k, &1.into());
        }
        c.ack("a");
        c.ack("b");
        let once: BTreeMap<String, u64> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
        let ok = c
            .check(&[entry(0, "a", 1, true), entry(1, "b", 1, true)], &once)
            .unwrap();
        assert_eq!((ok.acked, ok.entries), (2, 2));
        let lost = c.check(&[entry(0, "a", 1, true)], &once).unwrap_err();
        assert_eq!(lost, WalViolation::LostAcked { key: "b".into() });
        let dup = c
            .check(
                &[
                    entry(0, "a", 1, true),
                    entry(1, "b", 1, true),
                    entry(2, "a", 1, true),
                ],
                &once,
            )
            .unwrap_err();
        assert!(matches!(dup, WalViolation::DuplicateKey { .. }), "{dup}");
        let twice: BTreeMap<String, u64> = [("a".to_string(), 2), ("b".to_string(), 1)].into();
        let err = c
            .check(&[entry(0, "a", 1, true), entry(1, "b", 1, true)], &twice)
            .unwrap_err();
        assert!(
            matches!(err, WalViolation::AppliedTimes { times: 2, .. }),
            "{err}"
        );
        let pending = c
            .check(&[entry(0, "a", 1, true), entry(1, "b", 1, false)], &once)
            .unwrap_err();
        assert!(
            matches!(pending, WalViolation::NotApplied { .. }),
            "{pending}"
        );
    }

    #[tokio::test]
    async fn message_checker_accepts_whole_checkpoints_and_finds_torn_ones() {
        let kv = MemoryKv::new();
        let api = AgentStorage::new(kv.clone());
        api.create_agent(&NewAgent::new("ag", "A", ""), 0)
            .await
            .unwrap();
        let c = MessageDurability::new();
        for i in 0..3 {
            let m = NewMessage::new(format!("r{i}"), Role::User, format!("m{i}"));
            c.attempt("ag", "s", &m);
            let done = api.checkpoint("ag", "s", &m).await.unwrap();
            c.ack("ag", &m.request_id, done.seq);
        }
        let snap = AgentSnapshot::read(&api, "ag").await.unwrap();
        assert_eq!(c.check(&snap), Ok(3));
        // A message written without its session and counter: torn.
        let m = NewMessage::new("r3", Role::User, "m3");
        c.attempt("ag", "s", &m);
        let torn = Message {
            agent: "ag".into(),
            session: "s".into(),
            seq: 3,
            request_id: "r3".into(),
            role: Role::User,
            content: "m3".into(),
        };
        kv.set(
            &crate::AgentKeys::message("ag", 3),
            &serde_json::to_vec(&torn).unwrap(),
        )
        .await
        .unwrap();
        let snap = AgentSnapshot::read(&api, "ag").await.unwrap();
        assert!(matches!(
            c.check(&snap),
            Err(MessageViolation::Counter { .. })
        ));
        // An acknowledged message that is gone.
        c.ack("ag", "r9", 9);
        let err = c
            .check(&AgentSnapshot {
                messages: snap.messages[..3].to_vec(),
                ..snap
            })
            .unwrap_err();
        assert!(matches!(err, MessageViolation::Lost { .. }), "{err}");
    }

    #[test]
    fn a_reread_that_changed_is_a_non_repeatable_read() {
        let c = SerializableIsolation::with_initial(state(&[("x", "0")]));
        let (w, r) = (c.begin("w"), c.begin("r"));
        c.read(r, b"x", Some(b"0"));
        c.write(w, b"x", Some(b"1"));
        c.finish(w, TxnOutcome::Committed);
        c.read(r, b"x", Some(b"1"));
        c.finish(r, TxnOutcome::Committed);
        assert_eq!(
            c.check(&state(&[("x", "1")])),
            Err(IsolationViolation::NonRepeatableRead {
                reader: "t1:r".into(),
                key: "x".into(),
                first: "\"0\"".into(),
                second: "\"1\"".into(),
            })
        );
    }

    #[test]
    fn a_value_written_twice_is_ambiguous() {
        let c = SerializableIsolation::with_initial(state(&[("x", "same")]));
        let (a, r) = (c.begin("a"), c.begin("r"));
        c.write(a, b"x", Some(b"same"));
        c.finish(a, TxnOutcome::Committed);
        c.read(r, b"x", Some(b"same"));
        c.finish(r, TxnOutcome::Committed);
        assert_eq!(
            c.check(&state(&[("x", "same")])),
            Err(IsolationViolation::AmbiguousValue {
                key: "x".into(),
                value: "\"same\"".into(),
                writers: vec!["<initial>".into(), "t0:a".into()],
            })
        );
    }

    #[test]
    fn violations_name_their_transactions_keys_and_values() {
        // A lost update: the exact cycle, and the report of a serial history.
        let c = SerializableIsolation::new();
        let (a, b) = (c.begin("a"), c.begin("b"));
        c.read(a, b"x", None);
        c.read(b, b"x", None);
        c.write(a, b"x", Some(b"1 by a"));
        c.write(b, b"x", Some(b"1 by b"));
        c.finish(a, TxnOutcome::Committed);
        c.finish(b, TxnOutcome::Committed);
        let err = c.check(&state(&[("x", "1 by b")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not serializable: dependency cycle t0:a -ww(x)-> t1:b -rw(x)-> t0:a"
        );
        let c = SerializableIsolation::with_initial(state(&[("x", "0")]));
        let (a, u, r) = (c.begin("a"), c.begin("u"), c.begin("r"));
        c.read(a, b"x", Some(b"0"));
        c.write(a, b"x", Some(b"1"));
        c.finish(a, TxnOutcome::Committed);
        c.write(u, b"y", Some(b"u"));
        c.finish(u, TxnOutcome::Unknown);
        c.read(r, b"x", Some(b"1"));
        c.read(r, b"y", Some(b"u"));
        c.write(r, b"x", Some(b"2"));
        c.finish(r, TxnOutcome::Committed);
        let report = c.check(&state(&[("x", "2"), ("y", "u")])).unwrap();
        assert_eq!(
            report,
            IsolationReport {
                committed: 2,
                aborted: 0,
                unknown_applied: 1,
                unknown_unseen: 0,
                edges: 2,
            }
        );
        assert_eq!(
            c.check(&state(&[("x", "1"), ("y", "u")])),
            Err(IsolationViolation::FinalState {
                key: "x".into(),
                expected: "\"2\"".into(),
                found: "\"1\"".into(),
                writer: "t2:r".into(),
            })
        );
    }

    fn listed(seq: u64, request_id: &str, session: &str) -> Message {
        Message {
            agent: "ag".into(),
            session: session.into(),
            seq,
            request_id: request_id.into(),
            role: Role::User,
            content: format!("content of {request_id}"),
        }
    }

    fn snapshot(messages: Vec<Message>, next_seq: Option<u64>) -> AgentSnapshot {
        let mut sessions: Vec<SessionRecord> = Vec::new();
        for m in &messages {
            match sessions.iter_mut().find(|s| s.id == m.session) {
                Some(s) => {
                    s.message_count += 1;
                    s.last_seq = Some(m.seq);
                }
                None => sessions.push(SessionRecord {
                    agent: "ag".into(),
                    id: m.session.clone(),
                    message_count: 1,
                    last_seq: Some(m.seq),
                }),
            }
        }
        AgentSnapshot {
            agent: "ag".into(),
            record: next_seq.map(|next_seq| AgentRecord {
                id: "ag".into(),
                name: "A".into(),
                system: String::new(),
                created_ms: 0,
                next_seq,
            }),
            sessions,
            messages,
        }
    }

    fn sent(ids: &[&str]) -> MessageDurability {
        let c = MessageDurability::new();
        for id in ids {
            c.attempt(
                "ag",
                "s",
                &NewMessage::new(*id, Role::User, format!("content of {id}")),
            );
        }
        c
    }

    #[test]
    fn the_message_checker_reports_each_kind_of_violation() {
        let c = sent(&["r0", "r1"]);
        let ok = snapshot(vec![listed(0, "r0", "s"), listed(1, "r1", "s")], Some(2));
        assert_eq!(c.check(&ok), Ok(2));
        // A gap in the listing.
        let gap = snapshot(vec![listed(0, "r0", "s"), listed(2, "r1", "s")], Some(2));
        assert_eq!(
            c.check(&gap),
            Err(MessageViolation::Gap {
                agent: "ag".into(),
                expected: 1,
                found: 2,
            })
        );
        // A message nobody sent, and one sent to another session.
        let phantom = snapshot(vec![listed(0, "r0", "s"), listed(1, "r9", "s")], Some(2));
        assert_eq!(
            c.check(&phantom),
            Err(MessageViolation::Phantom {
                agent: "ag".into(),
                seq: 1,
                request_id: "r9".into(),
            })
        );
        let moved = snapshot(vec![listed(0, "r0", "other")], Some(1));
        assert!(matches!(
            c.check(&moved),
            Err(MessageViolation::Phantom { seq: 0, .. })
        ));
        // One message stored twice.
        let twice = snapshot(vec![listed(0, "r0", "s"), listed(1, "r0", "s")], Some(2));
        assert_eq!(
            c.check(&twice),
            Err(MessageViolation::Duplicated {
                agent: "ag".into(),
                request_id: "r0".into(),
                seqs: vec![0, 1],
            })
        );
        // Messages without an agent record.
        let orphan = snapshot(vec![listed(0, "r0", "s")], None);
        assert_eq!(
            c.check(&orphan),
            Err(MessageViolation::MissingAgent {
                agent: "ag".into(),
                messages: 1,
            })
        );
        // A session record that disagrees with the listing.
        let mut torn = snapshot(vec![listed(0, "r0", "s"), listed(1, "r1", "s")], Some(2));
        torn.sessions[0].message_count = 1;
        assert_eq!(
            c.check(&torn),
            Err(MessageViolation::Session {
                agent: "ag".into(),
                session: "s".into(),
                count: 1,
                last_seq: Some(1),
                listed: 2,
                listed_last: Some(1),
            })
        );
        // One message acknowledged at two seqs, then one acknowledged where another is.
        c.ack("ag", "r0", 0);
        c.ack("ag", "r1", 0);
        assert_eq!(
            c.check(&ok),
            Err(MessageViolation::Lost {
                agent: "ag".into(),
                request_id: "r1".into(),
                seq: 0,
            })
        );
        c.ack("ag", "r0", 1);
        assert_eq!(
            c.check(&ok),
            Err(MessageViolation::Duplicated {
                agent: "ag".into(),
                request_id: "r0".into(),
                seqs: vec![0, 1],
            })
        );
    }
}
