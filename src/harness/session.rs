//! What one harness run learns across trials: fault coverage and `sometimes!` coverage per
//! test, and the regression file of failing seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::line_file;
use crate::harness::registry::DstTest;
use crate::harness::running;
use kelpie_sim::SometimesStat;
use kelpie_sim::{FaultKind, FaultStats};

/// A run quieter than this prints no progress line.
const PROGRESS_AFTER: Duration = Duration::from_secs(5);

/// Coverage of one test over the seeds that ran in this process.
#[derive(Debug, Default)]
struct TestCoverage {
    /// Seed trials built for the test (its whole selected range).
    expected: usize,
    /// Seed runs recorded.
    runs: usize,
    /// Per declared fault (by name, in declaration order): considered, fired.
    faults: BTreeMap<String, (usize, u64, u64)>,
    sometimes: BTreeMap<&'static str, SometimesStat>,
    allow_unfired: bool,
    /// Declared faults that act per message (loss, delay, reordering, duplication), by name.
    per_message: BTreeSet<String>,
    /// Messages madsim carried for sockets that never reported to a run, over all seeds.
    unreported_socket_messages: u64,
}

/// Counters for the progress line and the closing summary.
#[derive(Debug, Default)]
struct Progress {
    done: u64,
    failed: BTreeMap<String, Vec<u64>>,
    virtual_time: Duration,
    slowest: Option<(Duration, String, u64)>,
}

/// Shared by every trial of one harness run.
#[derive(Debug)]
pub(crate) struct Session {
    coverage: Mutex<BTreeMap<String, TestCoverage>>,
    regressions: Option<Regressions>,
    /// `KELPIE_TRACE_HASHES`: where each seed's trace hash is recorded.
    trace_hashes: Option<PathBuf>,
    progress: Mutex<Progress>,
    /// Seed runs the progress line counts towards (set once the trials are built).
    total: AtomicU64,
    started: Instant,
    /// Whether coverage can be judged: not when `KELPIE_SEED` picks a single seed (a repro),
    /// where a fault or a `sometimes!` condition may rightly not happen.
    judge: bool,
}

impl Session {
    /// Reports coverage without judging it (a run of one seed picked with `KELPIE_SEED`).
    pub(crate) fn report_coverage_only(&mut self) {
        self.judge = false;
    }

    /// Records every seed's trace hash in `path` (`KELPIE_TRACE_HASHES`).
    pub(crate) fn record_trace_hashes(&mut self, path: PathBuf) {
        self.trace_hashes = Some(path);
    }

    /// Appends `<trial> <hash>` to the trace-hash record, if one was asked for.
    pub(crate) fn record_trace_hash(&self, trial: &str, hash: u64) {
        if let Some(path) = &self.trace_hashes {
            let line = format!("{trial} {hash:016x}");
            if let Err(e) = line_file::append_line(path, "", &line, false) {
                eprintln!(
                    "warning: cannot record the trace hash of {trial} in {}: {e}",
                    path.display()
                );
            }
        }
    }

    /// Sets how many seed runs the progress line counts towards (those libtest's filter keeps).
    pub(crate) fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    /// A session expecting `trials` seed runs per test path; `regressions` records failures.
    pub(crate) fn new(
        expected: impl IntoIterator<Item = (&'static DstTest, usize)>,
        regressions: Option<Regressions>,
    ) -> Self {
        let mut coverage = BTreeMap::new();
        for (test, n) in expected {
            let declared = (test.faults)();
            let entry: &mut TestCoverage = coverage.entry(test.path()).or_default();
            entry.expected += n;
            entry.allow_unfired = test.options.allow_unfired;
            for (i, spec) in declared.iter().enumerate() {
                entry
                    .faults
                    .entry(spec.name().to_string())
                    .or_insert((i, 0, 0));
            }
        }
        let total = coverage.values().map(|c| c.expected as u64).sum();
        Session {
            coverage: Mutex::new(coverage),
            regressions,
            trace_hashes: None,
            progress: Mutex::default(),
            total: AtomicU64::new(total),
            started: Instant::now(),
            judge: true,
        }
    }

    /// Counts one finished seed run for the progress line and the summary.
    pub(crate) fn finished(
        &self,
        test: &DstTest,
        seed: u64,
        failed: bool,
        virtual_time: Duration,
        wall: Duration,
    ) {
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        p.done += 1;
        p.virtual_time += virtual_time;
        if failed {
            p.failed.entry(test.path()).or_default().push(seed);
        }
        if p.slowest.as_ref().is_none_or(|(d, _, _)| wall > *d) {
            p.slowest = Some((wall, test.path(), seed));
        }
    }

    /// One progress line: seeds done of total, seeds/s, failures, slowest seed.
    pub(crate) fn progress_line(&self) -> String {
        let p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let failures: usize = p.failed.values().map(Vec::len).sum();
        let slowest = p.slowest.as_ref().map_or(String::new(), |(d, t, s)| {
            format!(", slowest {t}::seed_{s} {:.2}s", d.as_secs_f64())
        });
        format!(
            "kelpie: {}/{} seeds, {:.0} seeds/s, {failures} failed{slowest}",
            p.done,
            self.total.load(Ordering::Relaxed),
            p.done as f64 / secs
        )
    }

    /// Prints the progress line on stderr every second once the run has taken more than 5 s,
    /// until `stop` is set. Quiet when stderr is not a terminal or `quiet` is set.
    pub(crate) fn spawn_progress(
        self: &Arc<Self>,
        quiet: bool,
        stop: Arc<AtomicBool>,
    ) -> Option<std::thread::JoinHandle<()>> {
        // The progress line only on a terminal; notes on seeds that overrun in any case.
        let line = !quiet && std::io::stderr().is_terminal();
        let session = self.clone();
        // The runner's own thread, outside any simulation.
        Some(std::thread::spawn(move || {
            let mut printed = false;
            let mut ticks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                ticks += 1;
                if !ticks.is_multiple_of(4) || stop.load(Ordering::Relaxed) {
                    continue;
                }
                for note in running::overrun_notes() {
                    eprintln!("{}{note}", if printed { "\r\x1b[2K" } else { "" });
                }
                if line && session.started.elapsed() > PROGRESS_AFTER {
                    eprint!("\r\x1b[2K{}", session.progress_line());
                    printed = true;
                }
            }
            if printed {
                eprint!("\r\x1b[2K");
            }
        }))
    }

    /// The closing block: tests, seeds, failures by test, virtual and wall time.
    pub(crate) fn summary(&self) -> String {
        let p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let tests = (self
            .coverage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values())
        .filter(|c| c.runs > 0)
        .count();
        let failures: usize = p.failed.values().map(Vec::len).sum();
        let mut out = format!(
            "kelpie: {tests} tests, {} seeds run, {failures} failed; {:.1}s of virtual time \
             simulated in {:.1}s of wall time",
            p.done,
            p.virtual_time.as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        );
        for (test, seeds) in &p.failed {
            let mut seeds = seeds.clone();
            seeds.sort_unstable();
            let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
            let _ = write!(out, "\n  {test}: seeds {}", list.join(", "));
        }
        out
    }

    /// Records one finished seed of `test`.
    pub(crate) fn record(
        &self,
        test: &DstTest,
        faults: &FaultStats,
        sometimes: &BTreeMap<&'static str, SometimesStat>,
    ) {
        let mut coverage = self.coverage.lock().unwrap_or_else(|e| e.into_inner());
        let entry = coverage.entry(test.path()).or_default();
        entry.runs += 1;
        for stat in &faults.faults {
            let slot = entry
                .faults
                .entry(stat.name.to_string())
                .or_insert((usize::MAX, 0, 0));
            slot.1 += stat.considered;
            slot.2 += stat.fired;
            if matches!(
                stat.kind,
                FaultKind::PacketLoss
                    | FaultKind::NetworkDelay
                    | FaultKind::MessageReorder
                    | FaultKind::MessageDuplicate
            ) {
                entry.per_message.insert(stat.name.to_string());
            }
        }
        entry.unreported_socket_messages += faults.unreported_socket_messages;
        for (name, s) in sometimes {
            let slot = entry.sometimes.entry(name).or_default();
            slot.evaluated += s.evaluated;
            slot.hit += s.hit;
        }
    }

    /// Records a failing seed in the regression file (if enabled).
    pub(crate) fn record_failure(&self, test: &DstTest, seed: u64) {
        if let Some(r) = &self.regressions {
            r.append(&test.path(), seed);
        }
    }

    /// The coverage table and the coverage failures of tests whose every selected seed ran in
    /// this process (a filtered or partitioned run cannot judge coverage).
    pub(crate) fn finish(&self) -> (String, Vec<String>) {
        let coverage = self.coverage.lock().unwrap_or_else(|e| e.into_inner());
        let mut table = String::new();
        let mut errors = Vec::new();
        for (path, c) in coverage.iter() {
            if c.runs == 0 || c.runs < c.expected {
                continue;
            }
            if !c.faults.is_empty() || !c.sometimes.is_empty() {
                let _ = writeln!(table, "  {path} ({} seeds)", c.runs);
            }
            let mut faults: Vec<_> = c.faults.iter().collect();
            faults.sort_by_key(|(_, (i, _, _))| *i);
            for (name, (_, considered, fired)) in faults {
                let _ = writeln!(
                    table,
                    "    {name:<28} fired {fired:>7} / considered {considered:>8}"
                );
                if *fired == 0 && !c.allow_unfired {
                    let mut error = format!(
                        "`{path}` declares fault `{name}` but it never fired in {} seeds \
                         (considered {considered} times): the test claims a fault it does not \
                         exercise; raise its probability, make the workload reach it, or mark \
                         the test `allow_unfired`",
                        c.runs
                    );
                    if c.per_message.contains(name) && c.unreported_socket_messages > 0 {
                        let _ = write!(
                            error,
                            "; madsim carried {} socket messages that no kelpie-tokio socket \
                             reported: name `kelpie-tokio` as `tokio` in the service's manifest \
                             (not madsim-tokio) so that loss, delay, reordering and duplication \
                             reach its sockets",
                            c.unreported_socket_messages
                        );
                    }
                    errors.push(error);
                }
            }
            for (name, s) in &c.sometimes {
                let _ = writeln!(
                    table,
                    "    sometimes!({name:?}): true {} / evaluated {}",
                    s.hit, s.evaluated
                );
                if s.hit == 0 {
                    errors.push(format!(
                        "`{path}`: `sometimes!` {name:?} was evaluated {} times in {} seeds but \
                         never true",
                        s.evaluated, c.runs
                    ));
                }
            }
        }
        if !self.judge {
            errors.clear();
        }
        (table, errors)
    }
}

/// The regression file of one harness target: `dst-regressions/<target>.txt` under the
/// package root. Failing seeds are appended; they run first on every later run. I/O errors
/// are warnings, never failures.
#[derive(Debug)]
pub(crate) struct Regressions {
    path: PathBuf,
    known: Mutex<BTreeSet<(String, u64)>>,
}

const HEADER: &str =
    "# Seeds that failed in earlier runs of this DST harness, one `<test> <seed>` per \
line.\n# They run first on every run (as `<test>::regression_seed_N`). Commit this file.\n";

impl Regressions {
    /// Loads the file for `target` under `root` (a missing file is an empty list). A line that
    /// is not `<test> <seed>` or not UTF-8 is skipped with a warning naming the file and line.
    pub(crate) fn load(root: &Path, target: &str) -> (Regressions, Vec<(String, u64)>) {
        let path = root.join("dst-regressions").join(format!("{target}.txt"));
        let entries = match line_file::read_lines(&path) {
            Ok((lines, bad)) => {
                for b in bad {
                    eprintln!(
                        "warning: {}:{}: {}, skipped",
                        path.display(),
                        b.line,
                        b.reason
                    );
                }
                parse(lines, &path)
            }
            Err(e) => {
                eprintln!("warning: cannot read {}: {e}", path.display());
                Vec::new()
            }
        };
        let known = entries.iter().cloned().collect();
        (
            Regressions {
                path,
                known: Mutex::new(known),
            },
            entries,
        )
    }

    /// Appends `test seed` unless already listed (by this process or when it loaded the
    /// file): one locked write per entry, so concurrent harness processes lose nothing.
    pub(crate) fn append(&self, test: &str, seed: u64) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if !known.insert((test.to_string(), seed)) {
            return;
        }
        if let Err(e) = line_file::append_line(&self.path, HEADER, &format!("{test} {seed}"), true)
        {
            eprintln!(
                "warning: cannot record seed {seed} of {test} in {}: {e}",
                self.path.display()
            );
        }
    }
}

/// The `<test> <seed>` entries of the regression file, without duplicates, in file order.
fn parse(lines: Vec<line_file::NumberedLine>, path: &Path) -> Vec<(String, u64)> {
    let mut seen = BTreeSet::new();
    let mut entries = Vec::new();
    for (n, line) in lines {
        match line
            .split_once(' ')
            .map(|(t, s)| (t, s.trim().parse::<u64>()))
        {
            Some((test, Ok(seed))) => {
                if seen.insert((test.to_string(), seed)) {
                    entries.push((test.to_string(), seed));
                }
            }
            _ => eprintln!(
                "warning: {}:{n}: expected `<test> <seed>`, skipped",
                path.display(),
            ),
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::registry::{SeedSet, TestFuture, TestOptions};
    use kelpie_sim::SimEnv;
    use kelpie_sim::{FaultKind, FaultSpec, FaultStat};

    fn declared() -> Vec<FaultSpec> {
        vec![
            FaultSpec::new(FaultKind::StorageWriteFail, 0.1),
            FaultSpec::new(FaultKind::DiskFull, 0.1),
        ]
    }

    fn body(_: SimEnv) -> TestFuture {
        Box::pin(async { Ok(()) })
    }

    const fn test(name: &'static str, allow_unfired: bool) -> DstTest {
        DstTest {
            name,
            module_path: "dst_harness::cov_dst",
            file: "tests/cov_dst.rs",
            line: 1,
            seeds: SeedSet::Range { start: 0, end: 2 },
            faults: declared,
            options: TestOptions {
                allow_unfired,
                ..TestOptions::DEFAULT
            },
            run: body,
        }
    }

    static STRICT: DstTest = test("strict", false);
    static LENIENT: DstTest = test("lenient", true);

    fn stats(write_fired: u64) -> FaultStats {
        let stat = |kind: FaultKind, fired| FaultStat {
            spec: FaultSpec::new(kind, 0.1),
            name: kind.name().into(),
            kind,
            considered: 10,
            fired,
        };
        FaultStats {
            faults: vec![
                stat(FaultKind::StorageWriteFail, write_fired),
                stat(FaultKind::DiskFull, 0),
            ],
            unreported_socket_messages: 0,
        }
    }

    #[test]
    fn a_declared_fault_that_never_fired_fails_the_test_unless_allowed() {
        let session = Session::new([(&STRICT, 2), (&LENIENT, 2)], None);
        let mut sometimes = BTreeMap::new();
        sometimes.insert(
            "leader elected",
            SometimesStat {
                evaluated: 3,
                hit: 0,
            },
        );
        for test in [&STRICT, &LENIENT] {
            session.record(test, &stats(1), &BTreeMap::new());
            session.record(test, &stats(0), &sometimes);
        }
        let (table, errors) = session.finish();
        assert!(table.contains("cov_dst::strict (2 seeds)"), "{table}");
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("`cov_dst::lenient`: `sometimes!` \"leader elected\" was evaluated 3 times in 2 seeds but never true"));
        assert!(errors[1].starts_with("`cov_dst::strict` declares fault `DiskFull` but it never fired in 2 seeds (considered 20 times)"));
        assert!(errors[2].contains("sometimes!"));
    }

    fn lossy() -> Vec<FaultSpec> {
        vec![FaultSpec::new(FaultKind::PacketLoss, 0.1)]
    }

    static LOSSY: DstTest = DstTest {
        name: "lossy",
        faults: lossy,
        ..test("lossy", false)
    };

    #[test]
    fn unfired_loss_on_sockets_that_never_reported_names_kelpie_tokio() {
        let session = Session::new([(&LOSSY, 2)], None);
        let never = |unreported| FaultStats {
            faults: vec![FaultStat {
                spec: FaultSpec::new(FaultKind::PacketLoss, 0.1),
                name: "PacketLoss".into(),
                kind: FaultKind::PacketLoss,
                considered: 0,
                fired: 0,
            }],
            unreported_socket_messages: unreported,
        };
        session.record(&LOSSY, &never(40), &BTreeMap::new());
        session.record(&LOSSY, &never(2), &BTreeMap::new());
        let errors = session.finish().1;
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains("declares fault `PacketLoss` but it never fired"));
        assert!(
            errors[0].contains("madsim carried 42 socket messages that no kelpie-tokio socket reported: name `kelpie-tokio` as `tokio`"),
            "{}",
            errors[0]
        );

        // Without unreported socket traffic, the plain message.
        let session = Session::new([(&LOSSY, 1)], None);
        session.record(&LOSSY, &never(0), &BTreeMap::new());
        let errors = session.finish().1;
        assert!(!errors[0].contains("kelpie-tokio"), "{}", errors[0]);
    }

    #[test]
    fn coverage_of_a_single_picked_seed_is_reported_not_judged() {
        let mut session = Session::new([(&STRICT, 1)], None);
        session.report_coverage_only();
        session.record(&STRICT, &stats(0), &BTreeMap::new());
        let (table, errors) = session.finish();
        assert!(table.contains("DiskFull"), "{table}");
        assert_eq!(errors, Vec::<String>::new());
    }

    #[test]
    fn coverage_is_not_judged_when_only_some_seeds_ran() {
        let session = Session::new([(&STRICT, 5)], None);
        session.record(&STRICT, &stats(0), &BTreeMap::new());
        assert_eq!(session.finish().1, Vec::<String>::new());
    }

    #[test]
    fn regressions_round_trip_and_skip_duplicates() {
        let dir = std::env::temp_dir().join(format!("kelpie-regr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (r, entries) = Regressions::load(&dir, "dst_harness");
        assert!(entries.is_empty());
        r.append("a::b", 3);
        r.append("a::b", 3);
        r.append("c::d", 7);
        let text = std::fs::read_to_string(dir.join("dst-regressions/dst_harness.txt")).unwrap();
        assert!(text.starts_with("# Seeds that failed"));
        assert!(text.contains("Commit this file"));
        let (_, entries) = Regressions::load(&dir, "dst_harness");
        assert_eq!(
            entries,
            vec![("a::b".to_string(), 3), ("c::d".to_string(), 7)]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_lines_and_bytes_are_skipped_alone_and_duplicates_once() {
        let dir = std::env::temp_dir().join(format!("kelpie-regr-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("dst-regressions")).unwrap();
        std::fs::write(
            dir.join("dst-regressions/t.txt"),
            b"# x\na::b 1\nnonsense\nc::d x\nq::\xfe 4\n\ne::f 2\na::b 1\n",
        )
        .unwrap();
        let (_, entries) = Regressions::load(&dir, "t");
        assert_eq!(
            entries,
            vec![("a::b".to_string(), 1), ("e::f".to_string(), 2)]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_file_is_a_warning_not_a_failure() {
        let r = Regressions {
            path: PathBuf::from("/proc/forbidden/x.txt"),
            known: Mutex::default(),
        };
        r.append("a::b", 1); // must not panic
    }
}
