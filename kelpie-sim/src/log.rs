//! Logs captured per seed run: a `tracing` subscriber installed on the seed's thread stamps
//! each event with virtual time and the madsim node and task it ran on, keeps the last lines,
//! and hands them to the failure report; a passing seed prints nothing. `live` (the runner's
//! `--nocapture`) also prints every line as it is logged.

use std::collections::VecDeque;
use std::io;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

/// What a run captures from `tracing`. Default: nothing (`off`), since a subscriber costs
/// every seed about as much again as the simulation itself; the runner therefore runs seeds
/// without one and replays a failing seed with `info` capture to show its log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogConfig {
    /// A `tracing` target filter: `info`, `debug`, `warn,my_crate=trace`; `off` disables
    /// capture (and its cost).
    pub filter: String,
    /// How many of the last lines a failure report shows.
    pub lines: usize,
    /// Print every line as it is logged, too.
    pub live: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "off".to_string(),
            lines: 200,
            live: false,
        }
    }
}

impl LogConfig {
    /// Capture of `info` and above.
    pub fn info() -> Self {
        LogConfig {
            filter: "info".to_string(),
            ..LogConfig::default()
        }
    }

    /// Whether anything is captured.
    pub fn is_off(&self) -> bool {
        self.filter.trim().eq_ignore_ascii_case("off")
    }

    /// Checks the filter's syntax.
    pub fn validate(&self) -> Result<(), String> {
        if self.is_off() {
            return Ok(());
        }
        Targets::from_str(&self.filter)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The captured lines of one run.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    lines: Mutex<VecDeque<String>>,
    cap: usize,
    live: bool,
    dropped: Mutex<u64>,
}

impl Capture {
    fn push(&self, text: &str) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if self.live {
                println!("{line}");
            }
            let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            if lines.len() == self.cap {
                lines.pop_front();
                *self.dropped.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            }
            if self.cap > 0 {
                lines.push_back(line.to_string());
            }
        }
    }

    /// The captured lines, oldest first, preceded by a note if older ones were dropped.
    pub(crate) fn take(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let dropped = *self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        if dropped > 0 {
            lines.insert(0, format!("... {dropped} earlier lines not kept"));
        }
        lines
    }
}

/// Writes one formatted event into the capture.
pub(crate) struct LineWriter {
    capture: Arc<Capture>,
    buf: Vec<u8>,
}

impl io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.capture.push(&String::from_utf8_lossy(&self.buf));
    }
}

#[derive(Clone)]
struct Sink(Arc<Capture>);

impl<'a> MakeWriter<'a> for Sink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            capture: self.0.clone(),
            buf: Vec::new(),
        }
    }
}

/// `[    1.234567s]`: virtual time since the run started, as the run's clock says.
struct VirtualTime(fn() -> Option<Duration>);

impl FormatTime for VirtualTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        match (self.0)() {
            Some(t) => write!(w, "[{:>12.6}s]", t.as_secs_f64()),
            None => write!(w, "[{:>13}]", "setup"),
        }
    }
}

/// Registers, once per process, a second dispatcher that never listens. With exactly one
/// registered dispatcher, tracing-core evaluates a callsite's interest against the default of
/// whichever thread registers it (tokio-rs/tracing#3611): a seed thread without a subscriber
/// could cache "never" for a callsite while another seed's capture is live, and that capture
/// would lose the event. With two, interest is combined over both, and each event asks the
/// current thread's subscriber.
fn keep_two_dispatchers() {
    static NEVER_LISTENS: OnceLock<tracing::Dispatch> = OnceLock::new();
    NEVER_LISTENS
        .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
}

/// Installs the capturing subscriber on this (seed) thread for as long as the guard lives;
/// `clock` stamps each line (`None`: not in a run yet). `None` when the filter is `off`.
pub(crate) fn install(
    config: &LogConfig,
    clock: fn() -> Option<Duration>,
) -> Option<(Arc<Capture>, tracing::subscriber::DefaultGuard)> {
    if config.is_off() {
        return None;
    }
    keep_two_dispatchers();
    let targets = Targets::from_str(&config.filter).ok()?;
    let capture = Arc::new(Capture {
        cap: config.lines,
        live: config.live,
        ..Capture::default()
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(Sink(capture.clone()))
        .with_timer(VirtualTime(clock))
        .with_ansi(false)
        .with_target(true);
    let subscriber =
        tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(layer, targets));
    let guard = tracing::subscriber::set_default(subscriber);
    // A callsite first hit on another seed's thread, where no subscriber listens, may have
    // cached "never interested"; recompute so that this thread's subscriber sees it.
    tracing::callsite::rebuild_interest_cache();
    Some((capture, guard))
}
