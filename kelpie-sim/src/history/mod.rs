//! Operation histories and a linearizability checker.
//!
//! A [`History`] records what concurrent clients did: each operation's invocation and its
//! return, with their values and virtual times. [`History::check`] then decides whether the
//! history is *linearizable* against a sequential [`Model`]: whether every operation can be
//! placed at one instant between its invocation and its return so that the operations, run one
//! at a time in that order, return what they returned. A stale read (a read that returns a
//! value overwritten before the read began) is the classic history that is not.
//!
//! ```
//! use std::time::Duration;
//! use kelpie_sim::history::{History, KvModel, KvOp, KvRet};
//!
//! let ms = Duration::from_millis;
//! let history = History::new();
//! // Client 1 writes 1, then 2; client 2 then reads 1: a stale read.
//! history.invoke(1, KvOp::Put("k", 1), ms(0)).ok(KvRet::Done, ms(1));
//! history.invoke(1, KvOp::Put("k", 2), ms(2)).ok(KvRet::Done, ms(3));
//! let read = history.invoke(2, KvOp::Get("k"), ms(4));
//! read.ok(KvRet::Value(Some(1)), ms(5));
//!
//! let verdict = history.check(&KvModel::new(), 100_000);
//! let violation = verdict.violation().expect("a stale read is not linearizable");
//! assert_eq!(violation.operations.len(), 3); // the two writes and the read
//! println!("{verdict}");
//! ```
//!
//! In a simulation, clients share one history (a cheap clone) and time their events with
//! their env: `let call = history.invoke(client, op, &env); ... call.ok(ret, &env)`. An
//! operation whose outcome the client cannot know (a request that timed out) is recorded with
//! [`Call::unknown`]: it may have taken effect at any instant after its invocation, or never.
//!
//! The checker is Wing & Gong's search with Lowe's memoization, as in Porcupine (see
//! [`History::check_with`]): it explores orders of the operations, remembering every pair of
//! (set of operations linearized, model state) already seen, and it stops with
//! [`Verdict::Unknown`] once it has explored a given number of such states or run for a given
//! time ([`CheckConfig`]), never hanging. Models whose operations on different keys are
//! independent check each key on its own ([`Model::partition`], [`PartitionKey`]), smallest
//! partition first, stopping at the first that fails. The verdict comes first; shrinking the
//! witness is optional and has budgets of its own, and the witness can be drawn as a text
//! [`timeline`] or an [`svg`] file ([`Violation::write_svg`]).
//!
//! ```
//! use std::time::Duration;
//! use kelpie_sim::history::{CheckConfig, History, RegisterModel, RegisterOp, RegisterRet};
//!
//! let ms = Duration::from_millis;
//! let history = History::new();
//! history.invoke(1, RegisterOp::Write(1), ms(0)).ok(RegisterRet::Done, ms(1));
//! history.invoke(2, RegisterOp::Read, ms(2)).ok(RegisterRet::Value(0), ms(3));
//!
//! // Decide first (no shrinking, at most a second), explain second.
//! let config = CheckConfig::new(1_000_000).time_limit(Duration::from_secs(1)).shrink(false);
//! let verdict = history.check_with(&RegisterModel::new(0), &config);
//! let violation = verdict.violation().expect("the read missed the write");
//! let witness = violation.shrink(&RegisterModel::new(0), 1_000_000, Some(Duration::from_secs(5)));
//! assert!(witness.minimal);
//! println!("{}", witness.timeline());
//! ```

mod check;
mod hash;
mod model;
mod register;
mod search;
mod shrink;
mod timeline;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use check::{CheckConfig, Linearization, Shrinking, Spent, Verdict, Violation};
pub use hash::{stable_hash, PartitionKey, StableHasher};
pub use model::{Append, KvModel, KvOp, KvRet, Model, RegisterModel, RegisterOp, RegisterRet};
pub use register::RegisterAccess;
pub use timeline::{svg, timeline, TimelineError};

/// The virtual time of an event: a [`Duration`] since the start of the run, or a
/// [`SimEnv`](crate::SimEnv) (its [`elapsed`](crate::SimEnv::elapsed) time).
pub trait Timestamp {
    /// Virtual time since the start of the run.
    fn timestamp(&self) -> Duration;
}

impl Timestamp for Duration {
    fn timestamp(&self) -> Duration {
        *self
    }
}

#[cfg(madsim)]
impl Timestamp for crate::env::SimEnv {
    fn timestamp(&self) -> Duration {
        self.elapsed()
    }
}

impl<T: Timestamp + ?Sized> Timestamp for &T {
    fn timestamp(&self) -> Duration {
        (**self).timestamp()
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome<Ret> {
    /// Nothing recorded (the [`Call`] was dropped, e.g. with its crashed client): checked like
    /// [`Outcome::Unknown`] with no return time.
    Pending,
    /// It returned `ret` at `at`; it took effect at one instant between its invocation and `at`.
    Ok {
        /// The returned value.
        ret: Ret,
        /// Virtual time of the return.
        at: Duration,
    },
    /// It definitely did not take effect (an error the client knows to be clean); the checker
    /// ignores it.
    Failed {
        /// Virtual time of the failure.
        at: Duration,
    },
    /// The client cannot know whether it took effect (a timeout): it may have taken effect at
    /// any instant after its invocation, even after `at`, or never.
    Unknown {
        /// Virtual time at which the client gave up.
        at: Duration,
    },
}

impl<Ret: fmt::Debug> fmt::Display for Outcome<Ret> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pending => write!(f, "no outcome recorded"),
            Outcome::Ok { ret, at } => write!(f, "returned {ret:?} at {at:?}"),
            Outcome::Failed { at } => write!(f, "failed at {at:?}"),
            Outcome::Unknown { at } => write!(f, "outcome unknown at {at:?}"),
        }
    }
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation<Op, Ret> {
    /// Its position in the history, in order of invocation recording (from 0).
    pub id: usize,
    /// The client that invoked it, as given to [`History::invoke`].
    pub client: u64,
    /// What was invoked.
    pub op: Op,
    /// Virtual time of the invocation.
    pub invoked: Duration,
    /// How it ended.
    pub outcome: Outcome<Ret>,
    /// Recording order of the invocation and of the outcome (0 while pending); they break ties
    /// between equal virtual times, at which events are still ordered.
    pub(crate) seq: (u64, u64),
}

impl<Op: fmt::Debug, Ret: fmt::Debug> fmt::Display for Operation<Op, Ret> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} client {}: {:?} invoked at {:?}, {}",
            self.id, self.client, self.op, self.invoked, self.outcome
        )
    }
}

/// The shared log behind a [`History`] and its [`Call`]s.
#[derive(Debug)]
struct Log<Op, Ret> {
    ops: Vec<Operation<Op, Ret>>,
    /// Events recorded so far (invocations and outcomes).
    seq: u64,
}

type Shared<Op, Ret> = Arc<Mutex<Log<Op, Ret>>>;

fn lock<Op, Ret>(shared: &Shared<Op, Ret>) -> MutexGuard<'_, Log<Op, Ret>> {
    // Nothing panics while the lock is held; a poisoned log is still consistent.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A recorder of concurrent operations: invocations and returns, with values and virtual
/// times. Clones share one log, so every simulated client can hold its own handle.
///
/// Events are ordered by virtual time and, at equal times, by the order in which they were
/// recorded: record each event when it happens (invoke before sending a request, record the
/// outcome as soon as the reply is in), as a single-threaded simulation does naturally.
///
/// ```
/// use std::time::Duration;
/// use kelpie_sim::history::{History, RegisterModel, RegisterOp, RegisterRet};
/// use kelpie_sim::{SimConfig, Simulation};
///
/// let history = History::new();
/// let h = history.clone();
/// Simulation::new(SimConfig::with_seed(1))
///     .run(|env| async move {
///         let register = std::sync::Arc::new(std::sync::Mutex::new(0));
///         let mut tasks = Vec::new();
///         for client in 0..3u64 {
///             let (env2, h, register) = (env.clone(), h.clone(), register.clone());
///             tasks.push(env.spawn(async move {
///                 let call = h.invoke(client, RegisterOp::Write(client), &env2);
///                 env2.sleep(Duration::from_millis(client + 1)).await;
///                 *register.lock().unwrap() = client;
///                 call.ok(RegisterRet::Done, &env2);
///                 let call = h.invoke(client, RegisterOp::Read, &env2);
///                 let value = *register.lock().unwrap();
///                 call.ok(RegisterRet::Value(value), &env2);
///             }));
///         }
///         for t in tasks {
///             t.await.unwrap();
///         }
///     })
///     .unwrap();
/// assert_eq!(history.len(), 6);
/// assert!(history.check(&RegisterModel::new(0), 10_000).is_linearizable());
/// ```
pub struct History<Op, Ret> {
    shared: Shared<Op, Ret>,
}

impl<Op, Ret> Clone for History<Op, Ret> {
    fn clone(&self) -> Self {
        History {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<Op, Ret> Default for History<Op, Ret> {
    fn default() -> Self {
        History::new()
    }
}

impl<Op, Ret> fmt::Debug for History<Op, Ret> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("operations", &self.len())
            .finish()
    }
}

impl<Op, Ret> History<Op, Ret> {
    /// An empty history.
    pub fn new() -> Self {
        History {
            shared: Arc::new(Mutex::new(Log {
                ops: Vec::new(),
                seq: 0,
            })),
        }
    }

    /// Records that `client` invoked `op` at `at` (a [`Duration`] or `&env`); the returned
    /// [`Call`] records its outcome.
    pub fn invoke(&self, client: u64, op: Op, at: impl Timestamp) -> Call<Op, Ret> {
        let invoked = at.timestamp();
        let mut log = lock(&self.shared);
        log.seq += 1;
        let id = log.ops.len();
        let seq = (log.seq, 0);
        log.ops.push(Operation {
            id,
            client,
            op,
            invoked,
            outcome: Outcome::Pending,
            seq,
        });
        Call {
            shared: Arc::clone(&self.shared),
            id,
        }
    }

    /// The number of operations recorded.
    pub fn len(&self) -> usize {
        lock(&self.shared).ops.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the operations recorded so far, in order of invocation recording.
    pub fn operations(&self) -> Vec<Operation<Op, Ret>>
    where
        Op: Clone,
        Ret: Clone,
    {
        lock(&self.shared).ops.clone()
    }
}

/// An invoked operation, waiting for its outcome: [`Call::ok`], [`Call::fail`] or
/// [`Call::unknown`]. A call dropped without one stays [`Outcome::Pending`], which the checker
/// treats like an unknown outcome.
#[must_use = "record the outcome with ok(), fail() or unknown(); a dropped call counts as unknown"]
pub struct Call<Op, Ret> {
    shared: Shared<Op, Ret>,
    id: usize,
}

impl<Op, Ret> fmt::Debug for Call<Op, Ret> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call").field("id", &self.id).finish()
    }
}

impl<Op, Ret> Call<Op, Ret> {
    /// The operation's [`Operation::id`].
    pub fn id(&self) -> usize {
        self.id
    }

    /// The operation returned `ret` at `at`. A time before the invocation is taken as the
    /// invocation's time.
    pub fn ok(self, ret: Ret, at: impl Timestamp) {
        self.finish(at, |at| Outcome::Ok { ret, at });
    }

    /// The operation failed at `at` and definitely did not take effect.
    pub fn fail(self, at: impl Timestamp) {
        self.finish(at, |at| Outcome::Failed { at });
    }

    /// The client gave up on the operation at `at` without knowing whether it took effect.
    /// A read that timed out had no effect either way, so [`Call::fail`] says the same for it
    /// and costs the checker less.
    pub fn unknown(self, at: impl Timestamp) {
        self.finish(at, |at| Outcome::Unknown { at });
    }

    fn finish(self, at: impl Timestamp, outcome: impl FnOnce(Duration) -> Outcome<Ret>) {
        let at = at.timestamp();
        let mut log = lock(&self.shared);
        log.seq += 1;
        let seq = log.seq;
        let op = &mut log.ops[self.id];
        op.outcome = outcome(at.max(op.invoked));
        op.seq.1 = seq;
    }
}
