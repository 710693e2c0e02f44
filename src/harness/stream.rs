//! libtest-mimic's `run`, over trials made one at a time: a sweep of a million seeds lists and
//! runs in memory that does not grow with the seed count.
//!
//! `libtest_mimic::run` takes every `Trial` up front, and a `Trial` is at least 72 bytes plus
//! its name and its boxed closure: about 170 MB for 1,000,000 seeds before one runs. Here the
//! trials come from an iterator that makes each one when a worker takes it, and is dropped when
//! it has run. What stays libtest-mimic's own:
//!
//! - the command line: [`Arguments`] as the crate parses it;
//! - which trials run: the crate's [`Arguments::is_filtered_out`] and [`Arguments::is_ignored`],
//!   asked of a name-only [`Trial`] (a probe whose closure is never called);
//! - the output: [`Printer`] writes byte for byte what the crate's printer writes (pretty, terse,
//!   json, `--list`, `--logfile`, `--color`); `tests::same_output_as_libtest_mimic` compares the
//!   two on the same trials.
//!
//! The iterator is walked twice: once for the count and the name width the title and the
//! pretty format's padding need, then once to run (once for `--list`).

use std::io::Write;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use anstream::AutoStream;
use anstyle::{AnsiColor, Color, Style};
use libtest_mimic::{Arguments, ColorSetting, Conclusion, Failed, FormatSetting, Trial};

/// What runs a trial.
pub(crate) type Runner = Box<dyn FnOnce() -> Result<(), Failed> + Send>;

/// One trial, made when it is about to run: its name and ignored flag (as a probe `Trial`, so
/// that the crate's own rules judge it) and what runs it.
pub(crate) struct Pending {
    probe: Trial,
    run: Runner,
}

impl Pending {
    /// A test trial, as `Trial::test(name, run)`.
    pub(crate) fn test(
        name: impl Into<String>,
        run: impl FnOnce() -> Result<(), Failed> + Send + 'static,
    ) -> Pending {
        Pending {
            probe: probe(name),
            run: Box::new(run),
        }
    }

    /// Sets the ignored flag, as `Trial::with_ignored_flag`.
    pub(crate) fn with_ignored_flag(self, ignored: bool) -> Pending {
        Pending {
            probe: self.probe.with_ignored_flag(ignored),
            run: self.run,
        }
    }

    /// The trial's name.
    pub(crate) fn name(&self) -> &str {
        self.probe.name()
    }

    /// The name-only `Trial` the command line's rules are asked about.
    pub(crate) fn probe(&self) -> &Trial {
        &self.probe
    }
}

/// A name-only trial for the crate's filter rules; its closure is never called.
pub(crate) fn probe(name: impl Into<String>) -> Trial {
    Trial::test(name, || Ok(()))
}

/// Whether the command line keeps `trial` in the run (its filter, `--skip`, `--exact`,
/// `--ignored`), as `libtest_mimic::run` decides before running.
fn kept(args: &Arguments, trial: &Trial) -> bool {
    let filtering = args.filter.is_some() || !args.skip.is_empty() || args.ignored;
    !filtering || !args.is_filtered_out(trial)
}

/// The outcome of one trial, as libtest-mimic prints it.
enum Outcome {
    Passed,
    Failed(Option<String>),
    Ignored,
}

/// Runs `trials` as `libtest_mimic::run(args, trials.collect())` would, printing the same
/// output. `headers` yields the same trials' probes in the same order (it is walked once, before
/// `trials`), for the count and the name width; `counted` is then told how many trials will run
/// (kept by the command line and not ignored), before the first one does (not for `--list`).
pub(crate) fn run<H, T>(
    args: &Arguments,
    headers: H,
    trials: T,
    counted: impl FnOnce(u64),
) -> Conclusion
where
    H: Iterator<Item = Trial>,
    T: Iterator<Item = Pending> + Send,
{
    let start = Instant::now();
    let mut conclusion = Conclusion {
        num_filtered_out: 0,
        num_passed: 0,
        num_failed: 0,
        num_ignored: 0,
        num_measured: 0,
    };
    let (mut total, mut count, mut runnable, mut name_width) = (0u64, 0u64, 0u64, 0usize);
    // A listing needs neither the count nor the width: one walk, not two.
    for probe in headers.take_while(|_| !args.list) {
        total += 1;
        if kept(args, &probe) {
            count += 1;
            runnable += u64::from(!args.is_ignored(&probe));
            name_width = name_width.max(probe.name().chars().count());
        }
    }
    conclusion.num_filtered_out = total - count;
    let mut printer = Printer::new(args, name_width);
    let mut trials = trials.filter(|t| kept(args, &t.probe));
    if args.list {
        for t in trials {
            printer.list_entry(&t.probe, args.ignored);
        }
        return Conclusion {
            num_filtered_out: 0,
            ..conclusion
        };
    }
    counted(runnable);
    printer.title(count);
    let mut failed: Vec<(String, Option<String>)> = Vec::new();
    let mut handle = |outcome: Outcome, name: String, printer: &mut Printer| {
        printer.outcome(&name, &outcome);
        match outcome {
            Outcome::Passed => conclusion.num_passed += 1,
            Outcome::Failed(message) => {
                failed.push((name, message));
                conclusion.num_failed += 1;
            }
            Outcome::Ignored => conclusion.num_ignored += 1,
        }
    };
    let threads = args
        .test_threads
        .or_else(|| std::thread::available_parallelism().ok().map(Into::into))
        .unwrap_or(1);
    if threads == 1 {
        for t in trials.by_ref() {
            printer.test_started(t.probe.name());
            let outcome = run_one(args, &t.probe, t.run);
            handle(outcome, t.probe.name().to_string(), &mut printer);
        }
    } else {
        let (sender, receiver) = mpsc::channel();
        let source = Mutex::new(trials);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let sender = sender.clone();
                let source = &source;
                scope.spawn(move || loop {
                    let next = source.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some(t) = next else { break };
                    let Pending { probe, run } = t;
                    let outcome = run_one(args, &probe, run);
                    let _ = sender.send((outcome, probe.name().to_string()));
                });
            }
            drop(sender);
            for (outcome, name) in receiver.iter() {
                printer.test_started(&name);
                handle(outcome, name, &mut printer);
            }
        });
    }
    if !failed.is_empty() {
        printer.failures(&failed);
    }
    printer.summary(&conclusion, start.elapsed());
    conclusion
}

/// Runs one trial unless the command line ignores it; a panic is a failure, worded as
/// libtest-mimic words it.
fn run_one(args: &Arguments, probe: &Trial, run: Runner) -> Outcome {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    if args.is_ignored(probe) {
        return Outcome::Ignored;
    }
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(())) => Outcome::Passed,
        Ok(Err(failed)) => Outcome::Failed(failed.message().map(str::to_string)),
        Err(e) => {
            let payload = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or(e.downcast_ref::<&str>().copied());
            Outcome::Failed(Some(match payload {
                Some(p) => format!("test panicked: {p}"),
                None => "test panicked".to_string(),
            }))
        }
    }
}

/// libtest-mimic 0.8's printer, for trials without a kind (the harness gives none) and without
/// benchmarks: the same bytes for each format.
struct Printer {
    out: Box<dyn Write>,
    format: FormatSetting,
    name_width: usize,
}

impl Printer {
    fn new(args: &Arguments, name_width: usize) -> Printer {
        let color = args.color.unwrap_or(ColorSetting::Auto);
        let out: Box<dyn Write> = if let Some(logfile) = &args.logfile {
            let f = std::fs::File::create(logfile).expect("failed to create logfile");
            if color == ColorSetting::Always {
                Box::new(AutoStream::always(f))
            } else {
                Box::new(AutoStream::never(f))
            }
        } else {
            let choice = match color {
                ColorSetting::Auto => anstream::ColorChoice::Auto,
                ColorSetting::Always => anstream::ColorChoice::Always,
                ColorSetting::Never => anstream::ColorChoice::Never,
            };
            Box::new(AutoStream::new(std::io::stdout(), choice))
        };
        let format = if args.quiet {
            FormatSetting::Terse
        } else {
            args.format.unwrap_or(FormatSetting::Pretty)
        };
        Printer {
            out,
            format,
            name_width,
        }
    }

    fn title(&mut self, n: u64) {
        match self.format {
            FormatSetting::Pretty | FormatSetting::Terse => {
                let s = if n == 1 { "" } else { "s" };
                writeln!(self.out).unwrap();
                writeln!(self.out, "running {n} test{s}").unwrap();
            }
            FormatSetting::Json => writeln!(
                self.out,
                r#"{{ "type": "suite", "event": "started", "test_count": {n} }}"#
            )
            .unwrap(),
        }
    }

    fn test_started(&mut self, name: &str) {
        match self.format {
            FormatSetting::Pretty => {
                write!(self.out, "test {: <1$} ... ", name, self.name_width).unwrap();
                self.out.flush().unwrap();
            }
            FormatSetting::Terse => {}
            FormatSetting::Json => writeln!(
                self.out,
                r#"{{ "type": "test", "event": "started", "name": "{}" }}"#,
                escape8259::escape(name)
            )
            .unwrap(),
        }
    }

    fn outcome(&mut self, name: &str, outcome: &Outcome) {
        match self.format {
            FormatSetting::Pretty => {
                self.pretty(outcome);
                writeln!(self.out).unwrap();
            }
            FormatSetting::Terse => {
                let c = match outcome {
                    Outcome::Passed => '.',
                    Outcome::Failed(_) => 'F',
                    Outcome::Ignored => 'i',
                };
                let style = style_of(outcome);
                write!(self.out, "{style}{c}{style:#}").unwrap();
            }
            FormatSetting::Json => {
                let event = match outcome {
                    Outcome::Passed => "ok",
                    Outcome::Failed(_) => "failed",
                    Outcome::Ignored => "ignored",
                };
                let stdout = match outcome {
                    Outcome::Failed(Some(msg)) => {
                        format!(r#", "stdout": "Error: \"{}\"\n""#, escape8259::escape(msg))
                    }
                    _ => String::new(),
                };
                writeln!(
                    self.out,
                    r#"{{ "type": "test", "name": "{}", "event": "{event}"{stdout} }}"#,
                    escape8259::escape(name)
                )
                .unwrap();
            }
        }
    }

    fn summary(&mut self, c: &Conclusion, time: Duration) {
        match self.format {
            FormatSetting::Pretty | FormatSetting::Terse => {
                let outcome = if c.has_failed() {
                    Outcome::Failed(None)
                } else {
                    Outcome::Passed
                };
                writeln!(self.out).unwrap();
                write!(self.out, "test result: ").unwrap();
                self.pretty(&outcome);
                writeln!(
                    self.out,
                    ". {} passed; {} failed; {} ignored; {} measured; {} filtered out; finished \
                     in {:.2}s",
                    c.num_passed,
                    c.num_failed,
                    c.num_ignored,
                    c.num_measured,
                    c.num_filtered_out,
                    time.as_secs_f64()
                )
                .unwrap();
                writeln!(self.out).unwrap();
            }
            FormatSetting::Json => writeln!(
                self.out,
                concat!(
                    r#"{{ "type": "suite", "event": "{}", "passed": {}, "failed": {},"#,
                    r#" "ignored": {}, "measured": {}, "filtered_out": {}, "exec_time": {} }}"#,
                ),
                if c.num_failed > 0 { "failed" } else { "ok" },
                c.num_passed,
                c.num_failed,
                c.num_ignored,
                c.num_measured,
                c.num_filtered_out,
                time.as_secs_f64()
            )
            .unwrap(),
        }
    }

    /// One line of `--list`: every trial, or only the ignored ones with `--ignored`.
    fn list_entry(&mut self, trial: &Trial, ignored: bool) {
        if ignored && !trial.has_ignored_flag() {
            return;
        }
        writeln!(self.out, "{}: test", trial.name()).unwrap();
    }

    fn failures(&mut self, failed: &[(String, Option<String>)]) {
        if self.format == FormatSetting::Json {
            return;
        }
        writeln!(self.out).unwrap();
        writeln!(self.out, "failures:").unwrap();
        writeln!(self.out).unwrap();
        for (name, msg) in failed {
            writeln!(self.out, "---- {name} ----").unwrap();
            if let Some(msg) = msg {
                writeln!(self.out, "{msg}").unwrap();
            }
            writeln!(self.out).unwrap();
        }
        writeln!(self.out).unwrap();
        writeln!(self.out, "failures:").unwrap();
        for (name, _) in failed {
            writeln!(self.out, "    {name}").unwrap();
        }
    }

    fn pretty(&mut self, outcome: &Outcome) {
        let style = style_of(outcome);
        let s = match outcome {
            Outcome::Passed => "ok",
            Outcome::Failed(_) => "FAILED",
            Outcome::Ignored => "ignored",
        };
        write!(self.out, "{style}{s}{style:#}").unwrap();
    }
}

fn style_of(outcome: &Outcome) -> Style {
    let color = match outcome {
        Outcome::Passed => AnsiColor::Green,
        Outcome::Failed(_) => AnsiColor::Red,
        Outcome::Ignored => AnsiColor::Yellow,
    };
    Style::new().fg_color(Some(Color::Ansi(color)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trial's name, ignored flag and body.
    type Case = (&'static str, bool, fn() -> Result<(), Failed>);

    /// The same five trials, as libtest-mimic's and as ours.
    fn cases() -> Vec<Case> {
        vec![
            ("a::passes", false, || Ok(())),
            ("a::fails", false, || Err("boom\nsecond \"line\"".into())),
            ("a::panics", false, || panic!("oops")),
            ("b::ignored_one", true, || Ok(())),
            ("b::a_much_longer_trial_name::seed_12", false, || Ok(())),
        ]
    }

    /// The run's output with the wall-clock times blanked.
    fn normalized(path: &std::path::Path) -> String {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(
                |l| match (l.find("finished in "), l.find("\"exec_time\": ")) {
                    (Some(i), _) => format!("{}finished in <t>", &l[..i]),
                    (_, Some(i)) => format!("{}\"exec_time\": <t>", &l[..i]),
                    _ => l.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn same_output_as_libtest_mimic() {
        let dir = std::env::temp_dir().join(format!("kelpie-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (theirs, ours) = (dir.join("theirs.txt"), dir.join("ours.txt"));
        let command_lines: &[&[&str]] = &[
            &[],
            &["--quiet"],
            &["--format", "terse"],
            &["--format", "json", "-Z", "unstable-options"],
            &["--color", "always"],
            &["a::"],
            &["--exact", "a::passes"],
            &["--exact", "a::"],
            &["--skip", "fails", "--skip", "panics"],
            &["--exact", "--skip", "a::fails"],
            &["--ignored"],
            &["--include-ignored"],
            &["--bench"],
            &["--list"],
            &["--list", "--format", "terse"],
            &["--list", "--format", "terse", "--ignored"],
            &["--list", "b"],
            &["--list", "--exact", "a::panics"],
        ];
        for extra in command_lines {
            let argv = |log: &std::path::Path| {
                let mut v = vec!["harness", "--test-threads", "1", "--logfile"];
                v.push(log.to_str().unwrap());
                v.extend_from_slice(extra);
                Arguments::from_iter(v)
            };
            let expected = libtest_mimic::run(
                &argv(&theirs),
                cases()
                    .into_iter()
                    .map(|(n, ig, f)| Trial::test(n, f).with_ignored_flag(ig))
                    .collect(),
            );
            let got = run(
                &argv(&ours),
                cases()
                    .into_iter()
                    .map(|(n, ig, _)| probe(n).with_ignored_flag(ig)),
                cases()
                    .into_iter()
                    .map(|(n, ig, f)| Pending::test(n, f).with_ignored_flag(ig)),
                |_| {},
            );
            assert_eq!(got, expected, "conclusion with {extra:?}");
            assert_eq!(
                normalized(&ours),
                normalized(&theirs),
                "output with {extra:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn two_threads_run_every_kept_trial_once() {
        let dir = std::env::temp_dir().join(format!("kelpie-stream2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("out.txt");
        let args = Arguments::from_iter([
            "harness",
            "--test-threads",
            "2",
            "--logfile",
            log.to_str().unwrap(),
            "seed_1",
        ]);
        let names = || (0..200).map(|i| format!("t::seed_{i}"));
        let mut told = None;
        let c = run(
            &args,
            names().map(probe),
            names().map(|n| Pending::test(n, || Ok(()))),
            |n| told = Some(n),
        );
        assert_eq!(told, Some(111));
        // seed_1, seed_10..19, seed_100..199.
        assert_eq!((c.num_passed, c.num_filtered_out), (111, 89));
        let text = std::fs::read_to_string(&log).unwrap();
        let mut ran: Vec<&str> = text
            .lines()
            .filter(|l| l.ends_with(" ... ok"))
            .filter_map(|l| l.strip_prefix("test ")?.split_whitespace().next())
            .collect();
        ran.sort_unstable();
        ran.dedup();
        assert_eq!(ran.len(), 111, "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
