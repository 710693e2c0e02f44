//! The harness's environment contract: one table ([`ENV_VARS`]) from which parsing, error
//! messages and the `KELPIE_HELP=1` text are all derived.

use std::fmt;
use std::ops::RangeInclusive;

use kelpie_sim::FaultSchedule;
use kelpie_sim::LogConfig;

/// The most seeds `KELPIE_SEEDS` may select (one trial each, per test).
pub const MAX_SEEDS: u64 = 1_000_000;

/// The shape of an environment variable's value, which decides how it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvForm {
    /// An unsigned 64-bit integer: `42`.
    Seed,
    /// A non-empty range of seeds: `a..b` or `a..=b`.
    SeedRange,
    /// A boolean: `1`, `0`, `true` or `false` (any case).
    Flag,
    /// A fault schedule: `fault:ordinal` pairs separated by commas (`0:1,2:3`).
    Schedule,
    /// A `tracing` target filter: `info`, `debug`, `warn,my_crate=trace`, `off`.
    LogFilter,
    /// A count: `500`.
    Count,
    /// A file path: `target/trace-hashes.txt`.
    Path,
}

/// One environment variable the harness reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable's name.
    pub name: &'static str,
    /// How its value is parsed.
    pub form: EnvForm,
    /// The expected form, as printed after `expected` when a value is rejected.
    pub expected: &'static str,
    /// What it does, one line.
    pub doc: &'static str,
}

const SEED: &str = "KELPIE_SEED";
const SEEDS: &str = "KELPIE_SEEDS";
const CHECK_DETERMINISM: &str = "KELPIE_CHECK_DETERMINISM";
const HELP: &str = "KELPIE_HELP";
const SWARM: &str = "KELPIE_SWARM";
const SHRINK: &str = "KELPIE_SHRINK";
const FAULT_SCHEDULE: &str = "KELPIE_FAULT_SCHEDULE";
const REGRESSIONS: &str = "KELPIE_REGRESSIONS";
const LOG: &str = "KELPIE_LOG";
const LOG_LINES: &str = "KELPIE_LOG_LINES";
const TRACE_HASHES: &str = "KELPIE_TRACE_HASHES";

/// Every variable the harness reads. An empty value counts as unset; any other `KELPIE_*`
/// variable gets a warning naming the closest known one.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar {
        name: SEED,
        form: EnvForm::Seed,
        expected: "a seed, an unsigned integer such as KELPIE_SEED=42",
        doc:
            "run only this seed of each selected test (trials keep their names, `<test>::seed_N`); \
              takes precedence over KELPIE_SEEDS; fault and `sometimes!` coverage is reported, \
              not judged, for a single seed",
    },
    EnvVar {
        name: SEEDS,
        form: EnvForm::SeedRange,
        expected: "a non-empty seed range of at most 1000000 seeds, start..end or start..=last, \
                   such as KELPIE_SEEDS=0..500",
        doc: "run these seeds instead of every test's own `seeds`",
    },
    EnvVar {
        name: CHECK_DETERMINISM,
        form: EnvForm::Flag,
        expected: "1, 0, true or false, such as KELPIE_CHECK_DETERMINISM=1",
        doc: "1: run every seed twice and compare the event traces (tests declared with \
              `check_determinism` are always checked)",
    },
    EnvVar {
        name: SWARM,
        form: EnvForm::Flag,
        expected: "1, 0, true or false, such as KELPIE_SWARM=1",
        doc: "1: swarm mode for every test: each seed keeps a random subset of the declared \
              faults at random intensities up to the declared ones",
    },
    EnvVar {
        name: SHRINK,
        form: EnvForm::Flag,
        expected: "1, 0, true or false, such as KELPIE_SHRINK=0",
        doc: "0: do not shrink a failing seed's fault schedule (default 1: shrink, bounded in \
              time)",
    },
    EnvVar {
        name: FAULT_SCHEDULE,
        form: EnvForm::Schedule,
        expected: "fault:ordinal pairs separated by commas, or none, such as \
                   KELPIE_FAULT_SCHEDULE=0:1,2:3",
        doc: "replay only these fault firings (the N-th firing of the K-th declared fault is \
              `K:N`); printed by shrinking",
    },
    EnvVar {
        name: REGRESSIONS,
        form: EnvForm::Flag,
        expected: "1, 0, true or false, such as KELPIE_REGRESSIONS=0",
        doc: "0: neither replay nor record `dst-regressions/<target>.txt` (default 1)",
    },
    EnvVar {
        name: LOG,
        form: EnvForm::LogFilter,
        expected: "a tracing filter such as KELPIE_LOG=debug, KELPIE_LOG=warn,my_crate=trace or \
                   KELPIE_LOG=off",
        doc: "which `tracing` events each seed captures for its failure report (default info; \
              `--nocapture` also prints them live)",
    },
    EnvVar {
        name: LOG_LINES,
        form: EnvForm::Count,
        expected: "a number of lines, such as KELPIE_LOG_LINES=500",
        doc: "how many of the last captured log lines a failure report shows (default 200)",
    },
    EnvVar {
        name: TRACE_HASHES,
        form: EnvForm::Path,
        expected: "a file path, such as KELPIE_TRACE_HASHES=target/trace-hashes.txt",
        doc: "append `<trial> <trace hash>` for every seed that ran to this file (the golden \
              trace record, see `.ci/golden-traces`)",
    },
    EnvVar {
        name: HELP,
        form: EnvForm::Flag,
        expected: "1, 0, true or false, such as KELPIE_HELP=1",
        doc: "1: print this help and exit",
    },
];

/// The settings the environment selected.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EnvConfig {
    /// `KELPIE_SEED`.
    pub(crate) seed: Option<u64>,
    /// `KELPIE_SEEDS`, as an inclusive range.
    pub(crate) seeds: Option<RangeInclusive<u64>>,
    /// `KELPIE_CHECK_DETERMINISM`.
    pub(crate) check_determinism: bool,
    /// `KELPIE_HELP`.
    pub(crate) help: bool,
    /// `KELPIE_SWARM`.
    pub(crate) swarm: bool,
    /// `KELPIE_SHRINK`, on unless set to 0.
    pub(crate) no_shrink: bool,
    /// `KELPIE_FAULT_SCHEDULE`.
    pub(crate) schedule: Option<FaultSchedule>,
    /// `KELPIE_REGRESSIONS`, on unless set to 0.
    pub(crate) no_regressions: bool,
    /// `KELPIE_LOG`.
    pub(crate) log_filter: Option<String>,
    /// `KELPIE_LOG_LINES`.
    pub(crate) log_lines: Option<usize>,
    /// `KELPIE_TRACE_HASHES`.
    pub(crate) trace_hashes: Option<std::path::PathBuf>,
    /// libtest's `--nocapture` (set by `main`, not from the environment).
    pub(crate) nocapture: bool,
}

/// What [`parse_env`] found: the settings and one warning line per unknown variable.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ParsedEnv {
    pub(crate) config: EnvConfig,
    pub(crate) warnings: Vec<String>,
}

/// A rejected value; displays as `KELPIE_SEED=abc: expected a seed, ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvError {
    pub(crate) var: &'static EnvVar,
    pub(crate) value: String,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={}: expected {}",
            self.var.name, self.value, self.var.expected
        )
    }
}

/// Parsed value of one variable.
enum Value {
    Seed(u64),
    Range(RangeInclusive<u64>),
    Flag(bool),
    Schedule(FaultSchedule),
    Text(String),
    Count(usize),
}

fn parse_value(form: EnvForm, value: &str) -> Option<Value> {
    let value = value.trim();
    match form {
        EnvForm::Seed => parse_seed(value).map(Value::Seed),
        EnvForm::SeedRange => {
            let range = if let Some((a, b)) = value.split_once("..=") {
                let (a, b) = (parse_seed(a)?, parse_seed(b)?);
                (a <= b).then_some(a..=b)?
            } else {
                let (a, b) = value.split_once("..")?;
                let (a, b) = (parse_seed(a)?, parse_seed(b)?);
                (a < b).then(|| a..=b - 1)?
            };
            let count = (range.end() - range.start()).saturating_add(1);
            (count <= MAX_SEEDS).then_some(Value::Range(range))
        }
        EnvForm::Flag => match value.to_ascii_lowercase().as_str() {
            "1" | "true" => Some(Value::Flag(true)),
            "0" | "false" => Some(Value::Flag(false)),
            _ => None,
        },
        EnvForm::Schedule => value.parse().ok().map(Value::Schedule),
        EnvForm::LogFilter => {
            // tracing reads a bare word as a target at every level (`not_a_level` would show
            // only that target's events, i.e. nothing): each directive must name a level.
            if !value.split(',').all(names_a_level) {
                return None;
            }
            let config = LogConfig {
                filter: value.to_string(),
                ..LogConfig::default()
            };
            config
                .validate()
                .ok()
                .map(|()| Value::Text(value.to_string()))
        }
        EnvForm::Path => Some(Value::Text(value.to_string())),
        EnvForm::Count => parse_seed(value)
            .and_then(|n| usize::try_from(n).ok())
            .map(Value::Count),
    }
}

/// Whether one directive of a log filter names a level: `debug`, or `my_crate=trace`.
fn names_a_level(directive: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let level = directive
        .rsplit_once('=')
        .map_or(directive, |(_, level)| level)
        .trim();
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level))
}

fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    // `u64::from_str` accepts a leading `+`; a seed is plain digits.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses the harness's variables out of `vars` (the process environment in `main`; any
/// `(name, value)` pairs in tests). Variables not starting with `KELPIE_` (in any case) are
/// ignored. Every rejected value is an error, in name order.
pub(crate) fn parse_env<I, K, V>(vars: I) -> Result<ParsedEnv, Vec<EnvError>>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
        .filter(|(k, _)| {
            k.get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("KELPIE_"))
        })
        .collect();
    vars.sort();
    let mut parsed = ParsedEnv::default();
    let mut errors = Vec::new();
    for (name, value) in vars {
        let Some(var) = ENV_VARS.iter().find(|v| v.name == name) else {
            parsed.warnings.push(unknown_warning(&name));
            continue;
        };
        if value.trim().is_empty() {
            continue;
        }
        let config = &mut parsed.config;
        match (var.name, parse_value(var.form, &value)) {
            (SEED, Some(Value::Seed(s))) => config.seed = Some(s),
            (SEEDS, Some(Value::Range(r))) => config.seeds = Some(r),
            (CHECK_DETERMINISM, Some(Value::Flag(b))) => config.check_determinism = b,
            (HELP, Some(Value::Flag(b))) => config.help = b,
            (SWARM, Some(Value::Flag(b))) => config.swarm = b,
            (SHRINK, Some(Value::Flag(b))) => config.no_shrink = !b,
            (FAULT_SCHEDULE, Some(Value::Schedule(s))) => config.schedule = Some(s),
            (REGRESSIONS, Some(Value::Flag(b))) => config.no_regressions = !b,
            (LOG, Some(Value::Text(f))) => config.log_filter = Some(f),
            (LOG_LINES, Some(Value::Count(n))) => config.log_lines = Some(n),
            (TRACE_HASHES, Some(Value::Text(p))) => config.trace_hashes = Some(p.into()),
            _ => errors.push(EnvError { var, value }),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

fn unknown_warning(name: &str) -> String {
    let known: Vec<&str> = ENV_VARS.iter().map(|v| v.name).collect();
    match kelpie_spec::closest(name, &known) {
        Some(known) => format!("warning: unknown variable {name} (did you mean {known}?)"),
        None => format!(
            "warning: unknown variable {name} (known: {})",
            known.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<ParsedEnv, Vec<String>> {
        parse_env(vars.iter().copied())
            .map_err(|errors| errors.iter().map(|e| format!("error: {e}")).collect())
    }

    fn config(vars: &[(&str, &str)]) -> EnvConfig {
        let parsed = parse(vars).unwrap();
        assert_eq!(parsed.warnings, Vec::<String>::new());
        parsed.config
    }

    #[test]
    fn nothing_set_is_the_default() {
        assert_eq!(
            config(&[("PATH", "/bin"), ("HOME", "/root")]),
            EnvConfig::default()
        );
    }

    #[test]
    fn good_values() {
        assert_eq!(config(&[("KELPIE_SEED", "42")]).seed, Some(42));
        assert_eq!(config(&[("KELPIE_SEED", " 7 ")]).seed, Some(7));
        assert_eq!(
            config(&[("KELPIE_SEED", "18446744073709551615")]).seed,
            Some(u64::MAX)
        );
        assert_eq!(config(&[("KELPIE_SEEDS", "0..500")]).seeds, Some(0..=499));
        assert_eq!(config(&[("KELPIE_SEEDS", "5..=5")]).seeds, Some(5..=5));
        assert_eq!(config(&[("KELPIE_SEEDS", "10..20")]).seeds, Some(10..=19));
        for (v, b) in [
            ("1", true),
            ("true", true),
            ("TRUE", true),
            ("0", false),
            ("false", false),
        ] {
            assert_eq!(
                config(&[("KELPIE_CHECK_DETERMINISM", v)]).check_determinism,
                b
            );
            assert_eq!(config(&[("KELPIE_HELP", v)]).help, b);
        }
        // An empty value counts as unset.
        assert_eq!(
            config(&[("KELPIE_SEED", ""), ("KELPIE_SEEDS", " ")]),
            EnvConfig::default()
        );
    }

    #[test]
    fn bad_values_are_one_line_each_naming_variable_value_and_form() {
        let err = |name: &str, value: &str| parse(&[(name, value)]).unwrap_err();
        assert_eq!(
            err("KELPIE_SEED", "abc"),
            ["error: KELPIE_SEED=abc: expected a seed, an unsigned integer such as KELPIE_SEED=42"]
        );
        for bad in ["-1", "+3", "1.5", "0x10", "18446744073709551616", "1..2"] {
            assert_eq!(
                err("KELPIE_SEED", bad),
                [format!("error: KELPIE_SEED={bad}: expected a seed, an unsigned integer such as KELPIE_SEED=42")]
            );
        }
        let seeds = "expected a non-empty seed range of at most 1000000 seeds, start..end or \
                     start..=last, such as KELPIE_SEEDS=0..500";
        for bad in [
            "5..2",
            "5..5",
            "5..=4",
            "abc",
            "3",
            "..5",
            "1..",
            "a..b",
            "0..1000001",
            "1...3",
        ] {
            assert_eq!(
                err("KELPIE_SEEDS", bad),
                [format!("error: KELPIE_SEEDS={bad}: {seeds}")]
            );
        }
        assert_eq!(
            config(&[("KELPIE_SEEDS", "0..1000000")]).seeds,
            Some(0..=999_999)
        );
        for bad in ["yes", "2", "on"] {
            assert_eq!(
                err("KELPIE_CHECK_DETERMINISM", bad),
                [format!(
                    "error: KELPIE_CHECK_DETERMINISM={bad}: expected 1, 0, true or false, such as \
                     KELPIE_CHECK_DETERMINISM=1"
                )]
            );
        }
        assert_eq!(
            err("KELPIE_HELP", "please"),
            ["error: KELPIE_HELP=please: expected 1, 0, true or false, such as KELPIE_HELP=1"]
        );
    }

    #[test]
    fn every_log_filter_directive_must_name_a_level() {
        for good in ["debug", "OFF", "warn,my_crate=trace", "info, a::b=debug"] {
            assert_eq!(
                config(&[("KELPIE_LOG", good)]).log_filter.as_deref(),
                Some(good.trim())
            );
        }
        for bad in [
            "not_a_level",
            "warn,my_crate",
            "my_crate=loud",
            "info,,debug",
        ] {
            assert_eq!(
                parse(&[("KELPIE_LOG", bad)]).unwrap_err(),
                [format!(
                    "error: KELPIE_LOG={bad}: expected a tracing filter such as KELPIE_LOG=debug, \
                     KELPIE_LOG=warn,my_crate=trace or KELPIE_LOG=off"
                )]
            );
        }
    }

    #[test]
    fn every_bad_value_is_reported_in_name_order() {
        let errors = parse(&[("KELPIE_SEEDS", "5..2"), ("KELPIE_SEED", "abc")]).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].starts_with("error: KELPIE_SEED=abc: "));
        assert!(errors[1].starts_with("error: KELPIE_SEEDS=5..2: "));
    }

    #[test]
    fn unknown_variables_warn_with_the_closest_name() {
        let parsed = parse(&[
            ("KELPIE_SEEED", "3"),
            ("KELPIE_CHECK_DETERMINSM", "1"),
            ("kelpie_seeds", "0..2"),
        ])
        .unwrap();
        assert_eq!(
            parsed.warnings,
            [
                "warning: unknown variable KELPIE_CHECK_DETERMINSM (did you mean KELPIE_CHECK_DETERMINISM?)",
                "warning: unknown variable KELPIE_SEEED (did you mean KELPIE_SEED?)",
                "warning: unknown variable kelpie_seeds (did you mean KELPIE_SEEDS?)",
            ]
        );
        // Unknown variables are not applied.
        assert_eq!(parsed.config, EnvConfig::default());
        let far = parse(&[("KELPIE_VERBOSE", "1")]).unwrap();
        assert_eq!(
            far.warnings,
            [
                "warning: unknown variable KELPIE_VERBOSE (known: KELPIE_SEED, KELPIE_SEEDS, \
              KELPIE_CHECK_DETERMINISM, KELPIE_SWARM, KELPIE_SHRINK, KELPIE_FAULT_SCHEDULE, \
              KELPIE_REGRESSIONS, KELPIE_LOG, KELPIE_LOG_LINES, KELPIE_TRACE_HASHES, KELPIE_HELP)"
            ]
        );
    }

    #[test]
    fn table_is_consistent() {
        let seeds = ENV_VARS
            .iter()
            .find(|v| v.form == EnvForm::SeedRange)
            .unwrap();
        assert!(
            seeds.expected.contains(&format!(" {MAX_SEEDS} ")),
            "{}",
            seeds.expected
        );
        for var in ENV_VARS {
            assert!(var.name.starts_with("KELPIE_"), "{}", var.name);
            assert!(
                var.expected.contains(&format!("{}=", var.name)),
                "{}",
                var.name
            );
            assert_eq!(ENV_VARS.iter().filter(|v| v.name == var.name).count(), 1);
        }
    }
}
