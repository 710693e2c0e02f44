//! What the runner does when things go wrong, checked end to end: `tests/harness_selftest.rs`
//! (a kelpie harness with misbehaving, `ignore`d tests) runs as a child process, in a scratch
//! package root so that its regression file is its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `harness_selftest` test binary, built (if `cargo test` has not already) and located by
/// cargo itself.
fn selftest() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "test",
            "--no-run",
            "--message-format=json",
            "--test",
            "harness_selftest",
        ]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "building harness_selftest failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("\"name\":\"harness_selftest\""))
            .find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                Some(PathBuf::from(v["executable"].as_str()?))
            })
            .expect("cargo names the harness_selftest executable")
    })
    .clone()
}

/// A fresh package root for one child run.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kelpie-behaviour-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The selftest harness with `args`, `env` and `root` as its package root.
fn harness(root: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(selftest());
    cmd.env("CARGO_MANIFEST_DIR", root)
        .env("KELPIE_LOG", "off")
        .env_remove("KELPIE_SEED")
        .env_remove("KELPIE_SEEDS")
        .args(["--include-ignored", "--test-threads", "2"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn regression_file(root: &Path) -> PathBuf {
    root.join("dst-regressions/harness_selftest.txt")
}

#[test]
fn an_early_exit_in_test_code_fails_the_run_and_names_the_trial() {
    let root = scratch("exit");
    let out = harness(&root, &[], &["exits_early"]).output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(
        all.contains("the test process exited before the kelpie harness finished"),
        "{all}"
    );
    assert!(all.contains("running: exits_early::seed_"), "{all}");
}

#[test]
fn two_processes_at_once_record_every_failing_seed_exactly_once() {
    for round in 0..10 {
        let root = scratch(&format!("concurrent-{round}"));
        // Overlapping ranges: seeds 101..299 fail in both processes.
        let a = harness(&root, &[("KELPIE_SEEDS", "0..300")], &["fails_odd_seeds"]).output_async();
        let b =
            harness(&root, &[("KELPIE_SEEDS", "100..400")], &["fails_odd_seeds"]).output_async();
        for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
            assert_eq!(out.status.code(), Some(101), "{}", text(&out));
        }
        let file = std::fs::read_to_string(regression_file(&root)).unwrap();
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        for line in file.lines().filter(|l| !l.starts_with('#')) {
            let (test, seed) = line.split_once(' ').expect("`<test> <seed>`");
            assert_eq!(test, "fails_odd_seeds", "round {round}: line {line:?}");
            *seen.entry(seed.parse().expect("a seed")).or_default() += 1;
        }
        let want: Vec<u64> = (0..400).filter(|s| s % 2 == 1).collect();
        assert_eq!(
            seen.keys().copied().collect::<Vec<_>>(),
            want,
            "round {round}"
        );
        assert!(
            seen.values().all(|&n| n == 1),
            "round {round}: duplicates {seen:?}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// Runs a child; returns it with `cmd`'s output collected on a thread.
trait OutputAsync {
    fn output_async(self) -> std::process::Child;
}

impl OutputAsync for Command {
    fn output_async(mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn a_regression_seed_runs_once_and_its_reproduce_line_works_without_the_file() {
    let root = scratch("repro");
    std::fs::create_dir_all(root.join("dst-regressions")).unwrap();
    // 3 is in the range (runs once, first, as `seed_3`); 777 is not (`regression_seed_777`).
    std::fs::write(
        regression_file(&root),
        "fails_odd_seeds 3\nfails_odd_seeds 777\nno_such_test 5\n",
    )
    .unwrap();
    let out = harness(&root, &[("KELPIE_SEEDS", "0..6")], &["fails_odd_seeds"])
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    let ran = |trial: &str| {
        all.lines()
            .filter(|l| {
                l.strip_prefix("test ")
                    .and_then(|l| l.split_whitespace().next())
                    == Some(trial)
            })
            .count()
    };
    assert_eq!(ran("fails_odd_seeds::seed_3"), 1, "{all}");
    assert!(!all.contains("regression_seed_3"), "{all}");
    assert_eq!(ran("fails_odd_seeds::regression_seed_777"), 1, "{all}");
    assert!(all.contains("7 seeds run, 4 failed"), "{all}");
    assert!(
        all.contains("no registered test is named `no_such_test`"),
        "{all}"
    );

    // The regression seed's reproduce line names the trial by its seed alone...
    let repro = all
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("reproduce: KELPIE_SEED=777 "))
        .unwrap_or_else(|| panic!("no reproduce line for seed 777 in:\n{all}"));
    assert!(
        repro.ends_with("--include-ignored --exact fails_odd_seeds::seed_777"),
        "{repro}"
    );
    // ...so that it fails the same way where no regression file lists the seed.
    let elsewhere = scratch("repro-elsewhere");
    let out = Command::new(selftest())
        .env("CARGO_MANIFEST_DIR", &elsewhere)
        .env("KELPIE_LOG", "off")
        .env("KELPIE_SEED", "777")
        .args(["--include-ignored", "--exact", "fails_odd_seeds::seed_777"])
        .output()
        .unwrap();
    let again = text(&out);
    assert_eq!(out.status.code(), Some(101), "{again}");
    assert!(again.contains("returned an error: odd seed 777"), "{again}");
}

#[test]
fn a_seed_with_a_filter_that_selects_nothing_is_an_error_not_a_pass() {
    let root = scratch("nothing");
    let out = harness(
        &root,
        &[("KELPIE_SEED", "12")],
        &["--exact", "fails_odd_seeds::regression_seed_12"],
    )
    .output()
    .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("KELPIE_SEED=12 is set but the command line selects no trial to run"),
        "{all}"
    );
}

#[test]
fn a_watchdog_failure_is_reported_and_never_replayed() {
    let root = scratch("watchdog");
    // With log capture on (the default), as a user would run it: a failing seed is normally
    // replayed once for its log, which for a seed stuck in a loop would double the wait.
    let out = Command::new(selftest())
        .env("CARGO_MANIFEST_DIR", &root)
        .args(["--include-ignored", "spins_forever"])
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(all.contains("wall-clock watchdog fired after 2s"), "{all}");
    assert_eq!(
        all.matches("spins_forever: started seed 0").count(),
        1,
        "the seed ran more than once:\n{all}"
    );
}

/// The lines of a `--list` run's stdout.
fn listed(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_large_sweep_keeps_libtests_names_filters_and_listing() {
    let root = scratch("sweep");
    let env = [("KELPIE_SEEDS", "0..100000"), ("KELPIE_REGRESSIONS", "0")];
    // nextest's listing: `<name>: test`, one line per kept trial, in seed order.
    let out = harness(
        &root,
        &env,
        &["--list", "--format", "terse", "fails_odd_seeds::seed_999"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = listed(&out);
    // A substring filter: seed_999, seed_9990..9999 and seed_99900..99999.
    assert_eq!(lines.len(), 111, "{lines:?}");
    assert_eq!(lines[0], "fails_odd_seeds::seed_999: test");
    assert_eq!(lines[1], "fails_odd_seeds::seed_9990: test");
    assert_eq!(lines[110], "fails_odd_seeds::seed_99999: test");
    // nextest lists ignored trials apart: every selftest test is `ignore`d.
    let ignored = harness(
        &root,
        &env,
        &[
            "--list",
            "--format",
            "terse",
            "--ignored",
            "--exact",
            "exits_early::seed_5",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(listed(&ignored), ["exits_early::seed_5: test"]);
    // `--skip` takes out by substring; `--exact` needs the whole name.
    let skipped = harness(
        &root,
        &env,
        &[
            "--list",
            "fails_odd_seeds::seed_9999",
            "--skip",
            "seed_99990",
            "--skip",
            "seed_99991",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(listed(&skipped).len(), 9, "{}", text(&skipped));
    let exact = harness(
        &root,
        &env,
        &["--list", "--exact", "fails_odd_seeds::seed_99"],
    )
    .output()
    .unwrap();
    assert_eq!(listed(&exact), ["fails_odd_seeds::seed_99: test"]);
    // Running one seed out of the sweep (nextest's one process per trial): every other trial of
    // every test counts as filtered out.
    let one = harness(&root, &env, &["--exact", "fails_odd_seeds::seed_4"])
        .output()
        .unwrap();
    let all = text(&one);
    assert_eq!(one.status.code(), Some(0), "{all}");
    assert!(all.contains("running 1 test\n"), "{all}");
    assert!(
        all.contains("test fails_odd_seeds::seed_4 ... ok\n"),
        "{all}"
    );
    let filtered = all
        .lines()
        .find_map(|l| {
            let rest =
                l.strip_prefix("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; ")?;
            rest.split(' ').next()?.parse::<u64>().ok()
        })
        .unwrap_or_else(|| panic!("no summary line in:\n{all}"));
    // Three tests of 100,000 seeds each, one trial run.
    assert_eq!(filtered, 3 * 100_000 - 1, "{all}");
}
