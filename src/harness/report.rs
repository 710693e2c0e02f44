//! What a failed trial says: the failure, the facts of the run and one command that reproduces
//! it. libtest-mimic does not capture output, so all of it goes into the trial's message.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use kelpie_sim::FaultStats;
use kelpie_sim::SometimesStat;
use kelpie_sim::TraceSummary;

/// How the running test binary was built, for the `reproduce:` command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Invocation {
    /// `-p <package>`: the runtime `CARGO_PKG_NAME` (cargo sets it for `cargo test`).
    pub(crate) package: Option<String>,
    /// The cargo target of this binary.
    pub(crate) target: Option<Target>,
}

/// A cargo target that can be run by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `--test <name>`: an integration test (`tests/<name>.rs`).
    Test(String),
    /// `--example <name>`, run with `cargo run`.
    Example(String),
}

impl Invocation {
    /// Reads the current process: `CARGO_PKG_NAME` and the executable's name.
    pub(crate) fn current() -> Self {
        let package = std::env::var("CARGO_PKG_NAME")
            .ok()
            .filter(|p| !p.is_empty());
        let target = std::env::current_exe().ok().and_then(|exe| target_of(&exe));
        Invocation { package, target }
    }

    /// The cargo target's name (`dst_harness`), if known.
    pub(crate) fn target_name(&self) -> Option<&str> {
        match &self.target {
            Some(Target::Test(t) | Target::Example(t)) => Some(t),
            None => None,
        }
    }

    /// One shell command that, run from the workspace root, reruns exactly the trial `name`.
    /// `env` are `VAR=value` assignments to put in front.
    pub(crate) fn command(&self, env: &[String], name: &str, include_ignored: bool) -> String {
        let mut cmd = String::new();
        for assignment in env {
            let _ = write!(cmd, "{assignment} ");
        }
        cmd.push_str(match self.target {
            Some(Target::Example(_)) => "cargo run",
            _ => "cargo test",
        });
        if let Some(package) = &self.package {
            let _ = write!(cmd, " -p {}", shell_quote(package));
        }
        match &self.target {
            Some(Target::Test(t)) => {
                let _ = write!(cmd, " --test {}", shell_quote(t));
            }
            Some(Target::Example(t)) => {
                let _ = write!(cmd, " --example {}", shell_quote(t));
            }
            None => {}
        }
        cmd.push_str(" --");
        if include_ignored {
            cmd.push_str(" --include-ignored");
        }
        let _ = write!(cmd, " --exact {}", shell_quote(name));
        cmd
    }
}

/// The cargo target an executable was built from: `target/debug/deps/dst_harness-<16 hex>` is
/// the test `dst_harness`; `target/debug/examples/demo` is the example `demo`.
pub(crate) fn target_of(exe: &Path) -> Option<Target> {
    let stem = exe.file_stem()?.to_str()?;
    let name = strip_hash(stem).to_string();
    let in_examples = exe
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "examples");
    Some(if in_examples {
        Target::Example(name)
    } else {
        Target::Test(name)
    })
}

/// Strips cargo's `-<16 hex digits>` metadata suffix from a binary's file stem.
pub(crate) fn strip_hash(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash))
            if !name.is_empty()
                && hash.len() == 16
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            name
        }
        _ => stem,
    }
}

/// Quotes `s` for a POSIX shell if it needs it.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-:./=+,@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a run left behind, for the report.
#[derive(Debug, Clone)]
pub(crate) struct RunFacts {
    pub(crate) faults: FaultStats,
    pub(crate) virtual_time: Duration,
    pub(crate) trace: TraceSummary,
    pub(crate) sometimes: BTreeMap<&'static str, SometimesStat>,
    pub(crate) log: Vec<String>,
}

/// The message of a failed seed trial:
///
/// ```text
/// <headline, e.g. the Failure's Display; may span lines>
/// seed: 3
/// fault plan: [StorageWriteFail(0.5)]
/// faults fired: StorageWriteFail(0.5) fired 1/2
/// virtual time: 12ms
/// trace: hash 0x0123456789abcdef, 5 events
/// last 5 trace events:
///     [    0.000000s] main spawn task#1
///     ...
/// reproduce: KELPIE_SEED=3 cargo test -p kelpie --test dst_harness -- --exact a::b::seed_3
/// ```
///
/// Without `run` (the config was rejected before any run) the run's lines are left out.
pub(crate) fn failure_message(
    headline: &str,
    seed: u64,
    plan: &[String],
    run: Option<&RunFacts>,
    reproduce: &str,
) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "{headline}");
    let _ = writeln!(m, "seed: {seed}");
    let _ = writeln!(m, "fault plan: [{}]", plan.join(", "));
    if let Some(run) = run {
        let _ = writeln!(m, "faults fired: {}", run.faults);
        let _ = writeln!(m, "virtual time: {:?}", run.virtual_time);
        let _ = writeln!(
            m,
            "trace: hash {:#018x}, {} events",
            run.trace.hash, run.trace.len
        );
        if !run.log.is_empty() {
            let _ = writeln!(m, "captured log ({} lines):", run.log.len());
            for line in &run.log {
                let _ = writeln!(m, "    {line}");
            }
        }
        let named: Vec<String> = (run.trace.nodes.iter().enumerate().skip(1))
            .map(|(i, name)| format!("n{i} = {name}"))
            .collect();
        if !named.is_empty() {
            let _ = writeln!(m, "nodes: {}", named.join(", "));
        }
        if run.trace.tail.is_empty() {
            let _ = writeln!(m, "last trace events: (none)");
        } else {
            let _ = writeln!(m, "last {} trace events:", run.trace.tail.len());
            for event in &run.trace.tail {
                let _ = writeln!(m, "    {event}");
            }
        }
    }
    let _ = write!(m, "reproduce: {reproduce}");
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use kelpie_sim::NodeId;
    use kelpie_sim::{EventKind, TraceEvent};
    use kelpie_sim::{FaultKind, FaultSpec, FaultStat};

    #[test]
    fn strips_cargo_hash_only() {
        assert_eq!(strip_hash("dst_harness-0123456789abcdef"), "dst_harness");
        assert_eq!(strip_hash("my-test-0123456789abcdef"), "my-test");
        assert_eq!(strip_hash("dst_harness"), "dst_harness");
        assert_eq!(strip_hash("my-test"), "my-test");
        assert_eq!(strip_hash("x-0123456789ABCDEF"), "x-0123456789ABCDEF");
        assert_eq!(strip_hash("x-0123456789abcde"), "x-0123456789abcde");
        assert_eq!(strip_hash("-0123456789abcdef"), "-0123456789abcdef");
    }

    #[test]
    fn target_from_executable_path() {
        let t = |p: &str| target_of(Path::new(p));
        assert_eq!(
            t("/w/target/debug/deps/dst_harness-0123456789abcdef"),
            Some(Target::Test("dst_harness".into()))
        );
        assert_eq!(
            t("/w/target/debug/deps/dst_harness-0123456789abcdef.exe"),
            Some(Target::Test("dst_harness".into()))
        );
        assert_eq!(
            t("/w/target/debug/examples/demo"),
            Some(Target::Example("demo".into()))
        );
    }

    #[test]
    fn reproduce_command() {
        let inv = Invocation {
            package: Some("kelpie".into()),
            target: Some(Target::Test("dst_harness".into())),
        };
        let seed = ["KELPIE_SEED=3".to_string()];
        assert_eq!(
            inv.command(&seed, "lease_dst::lease_is_unique::seed_3", false),
            "KELPIE_SEED=3 cargo test -p kelpie --test dst_harness -- --exact lease_dst::lease_is_unique::seed_3"
        );
        assert_eq!(
            inv.command(&seed, "a::seed_3", true),
            "KELPIE_SEED=3 cargo test -p kelpie --test dst_harness -- --include-ignored --exact a::seed_3"
        );
        let bare = Invocation::default();
        assert_eq!(
            bare.command(&[], "lint::tests/a b.rs", false),
            "cargo test -- --exact 'lint::tests/a b.rs'"
        );
        let example = Invocation {
            package: None,
            target: Some(Target::Example("demo".into())),
        };
        assert_eq!(
            example.command(&seed, "t::seed_3", false),
            "KELPIE_SEED=3 cargo run --example demo -- --exact t::seed_3"
        );
    }

    #[test]
    fn node_names_are_listed_for_the_trace() {
        let run = RunFacts {
            faults: FaultStats::default(),
            sometimes: BTreeMap::new(),
            log: Vec::new(),
            virtual_time: Duration::ZERO,
            trace: TraceSummary {
                nodes: vec!["main".into(), "db".into(), "c0".into()],
                hash: 1,
                len: 0,
                tail: Vec::new(),
                full: None,
            },
        };
        let msg = failure_message("boom", 1, &[], Some(&run), "cmd");
        assert!(msg.contains("\nnodes: n1 = db, n2 = c0\n"), "{msg}");
    }

    #[test]
    fn message_lists_every_fact() {
        let event = |ms, label: &str| TraceEvent {
            at: Duration::from_millis(ms),
            node: NodeId::MAIN,
            kind: EventKind::User {
                label: label.into(),
            },
        };
        let run = RunFacts {
            faults: FaultStats {
                faults: vec![FaultStat {
                    spec: FaultSpec::new(FaultKind::StorageWriteFail, 0.5),
                    name: "StorageWriteFail".into(),
                    kind: FaultKind::StorageWriteFail,
                    considered: 2,
                    fired: 1,
                }],
                unreported_socket_messages: 0,
            },
            sometimes: BTreeMap::new(),
            log: vec!["[    0.003000s]  INFO node{id=0}: kelpie: wrote k".into()],
            virtual_time: Duration::from_millis(12),
            trace: TraceSummary {
                nodes: vec!["main".into()],
                hash: 0xabc,
                len: 9,
                tail: vec![event(1, "a"), event(12, "b")],
                full: None,
            },
        };
        let msg = failure_message(
            "panicked: boom",
            3,
            &["StorageWriteFail(0.5)".to_string()],
            Some(&run),
            "KELPIE_SEED=3 cargo test -- --exact t::seed_3",
        );
        assert_eq!(
            msg,
            "panicked: boom\n\
             seed: 3\n\
             fault plan: [StorageWriteFail(0.5)]\n\
             faults fired: StorageWriteFail(0.5) fired 1/2\n\
             virtual time: 12ms\n\
             trace: hash 0x0000000000000abc, 9 events\n\
             captured log (1 lines):\n    \
             [    0.003000s]  INFO node{id=0}: kelpie: wrote k\n\
             last 2 trace events:\n    \
             [    0.001000s] main user: a\n    \
             [    0.012000s] main user: b\n\
             reproduce: KELPIE_SEED=3 cargo test -- --exact t::seed_3"
        );
        let bare = failure_message("invalid", 4, &[], None, "cmd");
        assert_eq!(bare, "invalid\nseed: 4\nfault plan: []\nreproduce: cmd");
    }
}
