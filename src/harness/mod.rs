//! The `dst_harness` runner: registered tests become libtest-mimic trials, one per (test, seed).
//!
//! In a test target with `harness = false`:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode { kelpie::harness::main() }
//! ```
//!
//! Each seed of each `#[kelpie::dst_test]` is one trial named `<module>::<test>::seed_<N>`
//! (the module path without the crate name), so `--list`, name filters, `--exact`, `--skip`,
//! `--test-threads`, `--ignored` and `--include-ignored` work as with libtest, and
//! cargo-nextest runs one process per seed (`--partition` splits seeds). Every `*_dst.rs` file
//! of the package is also a trial, `lint::<path>`, that fails on nondeterministic calls. Each
//! `#[kelpie::chaos_test]` (wall clock, real tokio) is one trial, `chaos::<module>::<test>`,
//! outside the seed counts: see [`ChaosTest`].
//!
//! A failed seed's message holds the failure, the seed, the fault plan (in the attribute's
//! syntax), how often each fault fired, the virtual time, the trace's hash and last events, and
//! a line `reproduce: KELPIE_SEED=3 cargo test -p <package> --test <target> -- --exact <trial>`.
//!
//! The environment variables the runner reads are listed in [`ENV_VARS`]; `KELPIE_HELP=1`
//! prints them with the attribute's keys and the fault table. A bad value stops the run with one
//! line on stderr and exit code 2.

// The attribute keys live in the shared vocabulary crate, which the macro reads too.
use kelpie_spec::attributes;
mod chaos;
mod env;
mod help;
mod line_file;
mod lint_trials;
mod registry;
mod report;
mod running;
mod session;
mod stream;
mod trial;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use libtest_mimic::{Arguments, Conclusion, Trial};

pub use attributes::{AttrKey, ATTRIBUTE_KEYS};
pub use chaos::{registered_chaos, ChaosFuture, ChaosTest};
pub use env::{EnvForm, EnvVar, ENV_VARS, MAX_SEEDS};
pub use registry::{registered, DstTest, IntoTestResult, SeedSet, TestFuture, TestOptions};

#[doc(hidden)]
pub use inventory;

/// Whether libtest's command line (filter, `--exact`, `--skip`, `--ignored`,
/// `--include-ignored`) runs `trial`, by libtest-mimic's own rules.
fn runs(args: &Arguments, trial: &Trial) -> bool {
    !args.is_filtered_out(trial) && !args.is_ignored(trial)
}

/// Exit code for a rejected environment variable (like a usage error).
const USAGE_ERROR: u8 = 2;

/// Runs every registered test, one trial per seed, plus the lint trials; parses libtest's
/// command line and the `KELPIE_*` variables ([`ENV_VARS`]).
///
/// Exit code: 0 if every trial passed, 101 if one failed (or the process was ended early by
/// test code), 2 for a bad `KELPIE_*` value or a `KELPIE_SEED` run that selects no trial.
pub fn main() -> ExitCode {
    let Some(mut config) = read_env() else {
        return ExitCode::from(USAGE_ERROR);
    };
    if config.help {
        print!("{}", help::help_text());
        return ExitCode::SUCCESS;
    }
    let args = Arguments::from_args();
    config.nocapture = args.nocapture;
    let invocation = Arc::new(report::Invocation::current());
    let plan = plan(&config, &invocation);
    let chaos_run = plan
        .others
        .iter()
        .filter(|t| t.name().starts_with("chaos::") && runs(&args, t.probe()))
        .count();
    if let Err(message) = refuse_an_empty_reproduction(&args, &config, &plan) {
        eprintln!("{message}");
        return ExitCode::from(USAGE_ERROR);
    }
    running::guard_early_exit();
    let stop = Arc::new(AtomicBool::new(false));
    let session = plan.session.clone();
    let progress = session.spawn_progress(args.quiet || args.list, stop.clone());
    let conclusion = plan.run(&args, &invocation);
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.join();
    }
    let exit = conclude(&args, &session, conclusion.exit_code());
    if chaos_run > 0 && !args.list {
        println!(
            "kelpie: {chaos_run} chaos test{} on the wall clock and real tokio (not deterministic: \
             no seeds, no trace hashes)",
            if chaos_run == 1 { "" } else { "s" }
        );
    }
    running::finish();
    exit
}

/// The `KELPIE_*` settings, with warnings printed; `None` (errors printed) if a value is bad.
fn read_env() -> Option<env::EnvConfig> {
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())));
    match env::parse_env(vars) {
        Ok(parsed) => {
            for warning in &parsed.warnings {
                eprintln!("{warning}");
            }
            Some(parsed.config)
        }
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            None
        }
    }
}

/// Every trial of this run — regression seeds first, then every other seed of every test, then
/// canaries and lints — and the session that records their coverage and failures. The seed
/// trials are made one at a time as they run (see [`stream`]).
struct Plan {
    seeds: trial::SeedPlan,
    /// Canaries and lints: a few trials, made up front.
    others: Vec<stream::Pending>,
    session: Arc<session::Session>,
}

impl Plan {
    /// The name-only trial of every trial, in order.
    fn probes(&self) -> impl Iterator<Item = Trial> + '_ {
        let others = self
            .others
            .iter()
            .map(|p| stream::probe(p.name()).with_ignored_flag(p.probe().has_ignored_flag()));
        self.seeds.probes().chain(others)
    }

    /// Runs (or lists) the trials the command line keeps.
    fn run(self, args: &Arguments, invocation: &Arc<report::Invocation>) -> Conclusion {
        let headers: Vec<Trial> = self
            .others
            .iter()
            .map(|p| stream::probe(p.name()).with_ignored_flag(p.probe().has_ignored_flag()))
            .collect();
        let session = &self.session;
        let seeds = self
            .seeds
            .trials()
            .map(|t| t.into_trial(invocation.clone(), Some(session.clone())));
        // The progress line counts the seed runs (not canaries or lints) the command line
        // keeps: every trial that will run but the other ones.
        let others = headers.iter().filter(|t| runs(args, t)).count() as u64;
        stream::run(
            args,
            self.seeds.probes().chain(headers),
            seeds.chain(self.others),
            |runnable| session.set_total(runnable.saturating_sub(others)),
        )
    }
}

fn plan(config: &env::EnvConfig, invocation: &Arc<report::Invocation>) -> Plan {
    let tests = registered();
    let (regressions, entries) = if config.no_regressions {
        (None, Vec::new())
    } else {
        let target = invocation.target_name().unwrap_or("dst_harness");
        let (r, entries) = session::Regressions::load(&lint_trials::root(), target);
        (Some(r), entries)
    };
    let seeds = trial::SeedPlan::new(&tests, &entries, config);
    for warning in &seeds.warnings {
        eprintln!("{warning}");
    }
    let mut session = session::Session::new(seeds.per_test(), regressions);
    if config.seed.is_some() {
        session.report_coverage_only();
    }
    if let Some(path) = &config.trace_hashes {
        session.record_trace_hashes(path.clone());
    }
    let mut others: Vec<stream::Pending> = trial::canary_trials(&tests, config)
        .into_iter()
        .map(|t| t.into_trial(invocation.clone()))
        .collect();
    others.extend(lint_trials::lint_trials(&lint_trials::root(), invocation));
    // Chaos tests (wall clock, real tokio): one trial each, never counted among the seeds.
    others.extend(chaos::chaos_trials(invocation));
    Plan {
        seeds,
        others,
        session: Arc::new(session),
    }
}

/// A reproduce line (`KELPIE_SEED` set) whose filter selects nothing must not pass as if it
/// had run: `Err` is the message.
fn refuse_an_empty_reproduction(
    args: &Arguments,
    config: &env::EnvConfig,
    plan: &Plan,
) -> Result<(), String> {
    let Some(seed) = config.seed else {
        return Ok(());
    };
    let any = plan.probes().any(|t| runs(args, &t));
    if any || args.list {
        return Ok(());
    }
    Err(format!(
        "error: KELPIE_SEED={seed} is set but the command line selects no trial to run; a \
         seed's trials are named `<module>::<test>::seed_{seed}` (list them with -- --list)"
    ))
}

/// Prints the fault coverage, the summary and coverage errors; the exit code.
fn conclude(args: &Arguments, session: &session::Session, trials_exit: ExitCode) -> ExitCode {
    let (table, errors) = session.finish();
    if !args.list {
        if !table.is_empty() {
            println!("fault coverage (fired / considered over all seeds that ran):\n{table}");
        }
        println!("{}", session.summary());
    }
    for e in &errors {
        println!("error: {e}");
    }
    if errors.is_empty() {
        trials_exit
    } else {
        ExitCode::from(101)
    }
}
