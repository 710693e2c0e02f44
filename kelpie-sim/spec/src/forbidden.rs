//! The forbidden-API table: what a DST test must not call, and what to use instead.
//!
//! One table, [`FORBIDDEN`], read by `#[kelpie::dst_test]` (a compile error at the call in a test
//! body) and by the file lint (every `*_dst.rs` file); the scanner that finds its entries in Rust
//! syntax is `kelpie_spec::scan`, behind the `syn` feature. Most entries are nondeterministic
//! (tokio's runtime, OS threads, the wall clock, OS randomness); `std::process::exit` and `abort`
//! are here because they end the test process before the runner reports anything.

/// How a forbidden path is used in source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A function, type, constant or module, named by a path (`tokio::spawn(..)`,
    /// `let f = tokio::spawn;`, `tokio::time::Instant`).
    Item,
    /// A macro, invoked as `path! { .. }`.
    Macro {
        /// The invocation is allowed when its body starts with `biased;` (tokio's `select!`
        /// then polls its branches in declaration order instead of from a random start).
        biased_ok: bool,
    },
    /// An attribute, written `#[path]` or `#[path(..)]`.
    Attribute,
}

/// Which paths an entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Exactly the entry's path.
    Exact,
    /// The entry's path and every path under it (`tokio::time` covers `tokio::time::sleep` and
    /// `tokio::time::Instant::now`).
    Prefix {
        /// Names known to live directly in the module, so that a glob import of it
        /// (`use tokio::time::*;`) lets a bare `sleep(..)` be recognised.
        members: &'static [&'static str],
        /// Names directly under the prefix that are deterministic and therefore allowed
        /// (`tokio::time::Duration` is `std::time::Duration`).
        allowed: &'static [&'static str],
    },
}

/// One entry of [`FORBIDDEN`]: an API a DST test must not use, why, and what to use instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden {
    /// The absolute path, `::`-separated, without a leading `::` or a trailing `!`
    /// (`"tokio::spawn"`, `"tokio::select"`).
    pub path: &'static str,
    /// How the path is used: item, macro or attribute. Shapes the message only.
    pub kind: Kind,
    /// Whether the entry covers only its path or everything under it.
    pub matching: Match,
    /// What is wrong with it, completing "`path` ...": [`NONDETERMINISTIC`] for most entries.
    pub problem: &'static str,
    /// The advice appended to the message, naming the replacement.
    pub replacement: &'static str,
}

/// The [`Forbidden::problem`] of every entry but the ones that end the process.
pub const NONDETERMINISTIC: &str = "is not deterministic in a DST test";

/// The [`Forbidden::problem`] of randomness that reaches madsim's own stream: deterministic per
/// seed, but only by accident.
pub const GLOBAL_STREAM: &str = "is deterministic per seed only through madsim's global random \
                                 stream (measured: rand 0.8 and 0.9, getrandom 0.2, 0.3 and 0.4, \
                                 uuid), so one extra draw anywhere in the run shifts every later \
                                 value";

/// The [`Forbidden::problem`] of fastrand's global generator and `Rng::new`.
pub const FASTRAND: &str = "is seeded from the thread and the clock, not from the run's seed";

/// The [`Forbidden::problem`] of `std::process::exit` and `abort`.
const ENDS_RUN: &str = "ends the test process before the runner's summary, so this seed and \
                        every later one go unreported";

impl Forbidden {
    const fn item(path: &'static str, replacement: &'static str) -> Self {
        Forbidden {
            path,
            kind: Kind::Item,
            matching: Match::Exact,
            problem: NONDETERMINISTIC,
            replacement,
        }
    }

    const fn prefix(
        path: &'static str,
        members: &'static [&'static str],
        allowed: &'static [&'static str],
        replacement: &'static str,
    ) -> Self {
        Forbidden {
            path,
            kind: Kind::Item,
            matching: Match::Prefix { members, allowed },
            problem: NONDETERMINISTIC,
            replacement,
        }
    }

    const fn macro_(path: &'static str, biased_ok: bool, replacement: &'static str) -> Self {
        Forbidden {
            path,
            kind: Kind::Macro { biased_ok },
            matching: Match::Exact,
            problem: NONDETERMINISTIC,
            replacement,
        }
    }

    const fn attribute(path: &'static str, replacement: &'static str) -> Self {
        Forbidden {
            path,
            kind: Kind::Attribute,
            matching: Match::Exact,
            problem: NONDETERMINISTIC,
            replacement,
        }
    }

    /// An entry with its own problem statement.
    const fn with_problem(mut self, problem: &'static str) -> Self {
        self.problem = problem;
        self
    }

    /// A call that ends the process: the run stops before the runner reports anything.
    const fn ends_run(path: &'static str) -> Self {
        Forbidden {
            path,
            kind: Kind::Item,
            matching: Match::Exact,
            problem: ENDS_RUN,
            replacement: "return an error from the test or panic instead",
        }
    }

    /// The path's segments.
    fn segments(&self) -> impl Iterator<Item = &'static str> {
        self.path.split("::")
    }

    /// How the API is written in source: `tokio::spawn`, `tokio::select!` or `#[tokio::test]`.
    fn display(&self, resolved: &str) -> String {
        match self.kind {
            Kind::Item => resolved.to_string(),
            Kind::Macro { .. } => format!("{resolved}!"),
            Kind::Attribute => format!("#[{resolved}]"),
        }
    }

    /// The message for a use of this entry: `resolved` is the absolute path the use names,
    /// `written` the path as written (mentioned when it differs, e.g. after a renaming import).
    ///
    /// ```
    /// let entry = kelpie_spec::forbidden::lookup(&["tokio", "spawn"]).unwrap();
    /// assert_eq!(
    ///     entry.message("tokio::spawn", "go"),
    ///     "`tokio::spawn` (written `go`) is not deterministic in a DST test: use `env.spawn(...)`",
    /// );
    /// ```
    pub fn message(&self, resolved: &str, written: &str) -> String {
        let mut message = format!("`{}`", self.display(resolved));
        if written != resolved {
            message.push_str(&format!(" (written `{written}`)"));
        }
        message.push_str(&format!(" {}: {}", self.problem, self.replacement));
        message
    }
}

const USE_SPAWN: &str = "use `env.spawn(...)`";
const USE_SLEEP: &str = "use `env.sleep(...)`";
const USE_NOW: &str = "use `env.now()`";
const USE_RNG: &str = "use `env.rng()`";
/// A wall-clock test in a `*_dst.rs` file.
const RENAME_OR_DST: &str = "rename to `_chaos.rs` or use `#[kelpie::dst_test]`";

/// The one table of APIs a DST test must not use, shared by `#[kelpie::dst_test]` and the lint.
///
/// Not here, on purpose: `tokio::sync::*` (runtime-agnostic), `tokio::join!` and `try_join!` (poll
/// in order), `madsim::*` (the simulation itself), and `std::collections::HashMap` (the simulation
/// seeds hash keys per run).
pub const FORBIDDEN: &[Forbidden] = &[
    // tokio's tasks run on tokio's executor, not the simulation's.
    Forbidden::item("tokio::spawn", USE_SPAWN),
    Forbidden::item("tokio::task::spawn", USE_SPAWN),
    Forbidden::item("tokio::task::spawn_local", USE_SPAWN),
    Forbidden::item(
        "tokio::task::spawn_blocking",
        "use `env.spawn(...)`: the simulation has no blocking pool",
    ),
    Forbidden::item(
        "tokio::task::block_in_place",
        "`.await` the work instead: the simulation has no blocking pool",
    ),
    Forbidden::prefix(
        "tokio::task::JoinSet",
        &[],
        &[],
        "use `env.spawn(...)` and keep the handles",
    ),
    Forbidden::prefix("tokio::task::LocalSet", &[], &[], USE_SPAWN),
    // tokio's clock is the wall clock.
    Forbidden::item("tokio::time::sleep", USE_SLEEP),
    Forbidden::item("tokio::time::sleep_until", USE_SLEEP),
    Forbidden::item("tokio::time::timeout", "use `env.timeout(...)`"),
    Forbidden::item("tokio::time::timeout_at", "use `env.timeout(...)`"),
    Forbidden::prefix("tokio::time::Instant", &[], &[], USE_NOW),
    Forbidden::prefix(
        "tokio::time",
        &[
            "sleep",
            "sleep_until",
            "timeout",
            "timeout_at",
            "interval",
            "interval_at",
            "Instant",
            "Interval",
            "Sleep",
            "Timeout",
            "MissedTickBehavior",
            "advance",
            "pause",
            "resume",
            "error",
        ],
        &["Duration"],
        "use the simulation's clock: `env.sleep(...)`, `env.timeout(...)`, `env.now()`",
    ),
    Forbidden::prefix(
        "tokio::runtime",
        &[
            "Runtime",
            "Builder",
            "Handle",
            "EnterGuard",
            "RuntimeFlavor",
            "RuntimeMetrics",
            "TryCurrentError",
            "LocalRuntime",
            "Id",
        ],
        &[],
        "the simulation is the runtime: rename to `_chaos.rs` or use `#[kelpie::dst_test]` and its `env`",
    ),
    Forbidden::macro_(
        "tokio::select",
        true,
        "write `biased;` as its first line so that branches are polled in declaration order",
    ),
    Forbidden::macro_(
        "futures::select",
        false,
        "use `futures::select_biased!`, which polls branches in declaration order",
    ),
    // Wall-clock tests have their own files and runner: `*_chaos.rs`, `#[kelpie::chaos_test]`.
    Forbidden::attribute("tokio::main", RENAME_OR_DST),
    Forbidden::attribute("tokio::test", RENAME_OR_DST),
    Forbidden::attribute("kelpie::chaos_test", RENAME_OR_DST).with_problem(
        "runs on the wall clock and real tokio, so it does not belong in a DST file",
    ),
    // OS threads and the wall clock.
    Forbidden::item("std::thread::spawn", USE_SPAWN),
    Forbidden::item("std::thread::scope", USE_SPAWN),
    Forbidden::prefix("std::thread::Builder", &[], &[], USE_SPAWN),
    Forbidden::item("std::thread::sleep", USE_SLEEP),
    Forbidden::item("std::time::Instant::now", USE_NOW),
    Forbidden::item("std::time::SystemTime::now", USE_NOW),
    // Randomness. Which of the two cases applies is in each message; a test draws from `env.rng()`
    // either way, a stream of its own seeded by the run's seed.
    Forbidden::item("rand::thread_rng", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::random", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::prefix("rand::rngs::ThreadRng", &[], &[], USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::prefix("rand::rngs::OsRng", &[], &[], USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::prefix("rand_core::OsRng", &[], &[], USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::rngs::StdRng::from_entropy", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::rngs::SmallRng::from_entropy", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::SeedableRng::from_entropy", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::rng", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::random_range", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::random_bool", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::random_ratio", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::random_iter", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::fill", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::rngs::StdRng::from_os_rng", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::rngs::SmallRng::from_os_rng", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("rand::SeedableRng::from_os_rng", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::prefix(
        "getrandom",
        &[
            "getrandom",
            "getrandom_uninit",
            "fill",
            "fill_uninit",
            "u32",
            "u64",
        ],
        &["Error"],
        USE_RNG,
    )
    .with_problem(GLOBAL_STREAM),
    Forbidden::item("getrandom::getrandom", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item("getrandom::getrandom_uninit", USE_RNG).with_problem(GLOBAL_STREAM),
    Forbidden::item(
        "uuid::Uuid::new_v4",
        "use `uuid::Uuid::from_u64_pair(env.rng().next_u64(), env.rng().next_u64())`",
    )
    .with_problem(GLOBAL_STREAM),
    Forbidden::item(
        "fastrand::Rng::new",
        "use `fastrand::Rng::with_seed(..)` seeded from `env.rng()`, or `env.rng()`",
    )
    .with_problem(FASTRAND),
    Forbidden::prefix(
        "fastrand",
        &[
            "bool",
            "u8",
            "u16",
            "u32",
            "u64",
            "u128",
            "usize",
            "i8",
            "i16",
            "i32",
            "i64",
            "i128",
            "isize",
            "f32",
            "f64",
            "char",
            "digit",
            "alphabetic",
            "alphanumeric",
            "lowercase",
            "uppercase",
            "shuffle",
            "choice",
            "choose_multiple",
            "fill",
            "seed",
            "get_seed",
        ],
        &["Rng"],
        USE_RNG,
    )
    .with_problem(FASTRAND),
    // Executors and spawners outside the simulation's scheduler.
    Forbidden::prefix(
        "futures::executor",
        &[
            "block_on",
            "block_on_stream",
            "ThreadPool",
            "ThreadPoolBuilder",
            "LocalPool",
            "LocalSpawner",
            "enter",
        ],
        &[],
        "`.await` the future, or use `env.spawn(...)`",
    ),
    Forbidden::item(
        "futures::executor::block_on",
        "`.await` the future instead: `block_on` runs it outside the simulation's scheduler",
    ),
    Forbidden::prefix("futures::executor::ThreadPool", &[], &[], USE_SPAWN),
    Forbidden::prefix("tokio::task::Builder", &[], &[], USE_SPAWN),
    // Ending the process: the runner never prints its summary, so the run can look green.
    Forbidden::ends_run("std::process::exit"),
    Forbidden::ends_run("std::process::abort"),
];

/// Re-exports the scanner replaces by the path they re-export before looking the table up, so that
/// a glob of a known prelude (`use rand::prelude::*;`) brings its forbidden names and a path
/// through a re-export (`rand::prelude::thread_rng`) is recognised.
pub const REEXPORTS: &[(&str, &str)] = &[
    ("rand::prelude::thread_rng", "rand::thread_rng"),
    ("rand::prelude::random", "rand::random"),
    ("rand::prelude::rng", "rand::rng"),
    ("rand::prelude::random_range", "rand::random_range"),
    ("rand::prelude::random_bool", "rand::random_bool"),
    ("rand::prelude::random_ratio", "rand::random_ratio"),
    ("rand::prelude::random_iter", "rand::random_iter"),
    ("rand::prelude::ThreadRng", "rand::rngs::ThreadRng"),
    ("rand::prelude::StdRng", "rand::rngs::StdRng"),
    ("rand::prelude::SmallRng", "rand::rngs::SmallRng"),
    ("rand::prelude::SeedableRng", "rand::SeedableRng"),
    ("rand_core::SeedableRng", "rand::SeedableRng"),
    ("rand_core::rngs::OsRng", "rand_core::OsRng"),
    ("futures_executor", "futures::executor"),
    ("futures::prelude::executor", "futures::executor"),
];

/// Crates that are tokio under another name: madsim-tokio and kelpie-tokio re-export tokio's
/// API (its spawn, time, runtime), so a path through them is the tokio path it names.
const TOKIO_UNDER_OTHER_NAMES: &[&str] = &["madsim_tokio", "kelpie_tokio"];

/// `segment`, with a tokio-under-another-name crate read as `tokio` when it is the first.
fn canonical(index: usize, segment: &str) -> &str {
    if index == 0 && TOKIO_UNDER_OTHER_NAMES.contains(&segment) {
        "tokio"
    } else {
        segment
    }
}

/// The most specific entry covering the absolute `path` (by segments), if any. A path through
/// madsim-tokio or kelpie-tokio is read as the tokio path it names.
///
/// ```
/// use kelpie_spec::forbidden::lookup;
///
/// assert_eq!(lookup(&["tokio", "time", "sleep"]).unwrap().path, "tokio::time::sleep");
/// assert_eq!(lookup(&["tokio", "time", "interval"]).unwrap().path, "tokio::time");
/// assert!(lookup(&["tokio", "time", "Duration"]).is_none());
/// assert_eq!(lookup(&["kelpie_tokio", "spawn"]).unwrap().path, "tokio::spawn");
/// assert_eq!(lookup(&["madsim_tokio", "time", "sleep"]).unwrap().path, "tokio::time::sleep");
/// ```
pub fn lookup<S: AsRef<str>>(path: &[S]) -> Option<&'static Forbidden> {
    FORBIDDEN
        .iter()
        .filter(|entry| {
            let len = entry.segments().count();
            let under = path.len() >= len
                && entry
                    .segments()
                    .zip(path)
                    .enumerate()
                    .all(|(i, (a, b))| a == canonical(i, b.as_ref()));
            match entry.matching {
                Match::Exact => under && path.len() == len,
                Match::Prefix { allowed, .. } => {
                    let next = path.get(len).map(AsRef::as_ref);
                    under && !next.is_some_and(|next| allowed.contains(&next))
                }
            }
        })
        .max_by_key(|entry| entry.segments().count())
}

/// Whether `name` is known to exist in the module `module`, for glob imports: some entry lies at
/// or under `module::name`, or `module` is a prefix entry listing `name` among its members.
#[cfg(feature = "syn")]
pub(crate) fn known_member(module: &[String], name: &str) -> bool {
    // The table's paths split once: this runs for every name looked up through a glob.
    static SEGMENTED: std::sync::OnceLock<Vec<(Vec<&'static str>, &'static Forbidden)>> =
        std::sync::OnceLock::new();
    let segmented = SEGMENTED.get_or_init(|| {
        FORBIDDEN
            .iter()
            .map(|entry| (entry.segments().collect(), entry))
            .collect()
    });
    segmented.iter().any(|(segs, entry)| {
        let module = || {
            module
                .iter()
                .enumerate()
                .map(|(i, s)| canonical(i, s.as_str()))
        };
        let under = segs.len() > module().count()
            && segs
                .iter()
                .zip(module().chain([name]))
                .all(|(a, b)| *a == b);
        let listed = match entry.matching {
            Match::Prefix { members, allowed } => {
                segs.iter().copied().eq(module())
                    && (members.contains(&name) || allowed.contains(&name))
            }
            Match::Exact => false,
        };
        under || listed
    })
}
