//! The settings of one run, [`SimConfig`], with every default and their validation.

use std::ops::Range;
use std::time::Duration;

use crate::error::ConfigError;
use crate::log::LogConfig;
use crate::trace::TraceMode;

/// Settings of one simulation run. Every field has a default ([`SimConfig::default`]):
///
/// | field | default |
/// |---|---|
/// | `seed` | `0` |
/// | `max_time` | 600 s of virtual time |
/// | `wall_timeout` | 60 s of wall-clock time |
/// | `fault_tick` | 10 ms of virtual time |
/// | `net_latency` | 1 ms..10 ms |
/// | `trace` | [`TraceMode::Tail`] |
/// | `trace_tail` | 32 events |
/// | `log` | off; with a filter, the last 200 lines ([`LogConfig`]) |
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimConfig {
    /// The run's root seed: madsim's scheduler and every random stream derive from it.
    pub seed: u64,
    /// Virtual-time limit; exceeding it fails the run with [`Failure::VirtualTimeLimit`](crate::Failure::VirtualTimeLimit).
    pub max_time: Duration,
    /// Wall-clock watchdog; a run still going after this fails with [`Failure::WallTimeout`](crate::Failure::WallTimeout).
    pub wall_timeout: Duration,
    /// Interval at which node, clock and partition faults are considered.
    pub fault_tick: Duration,
    /// Base one-way message latency, drawn uniformly from this range.
    pub net_latency: Range<Duration>,
    /// How much of the trace to keep besides its hash.
    pub trace: TraceMode,
    /// How many of the last events a failure report shows.
    pub trace_tail: usize,
    /// What the run captures from `tracing` for its report.
    pub log: LogConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            max_time: Duration::from_secs(600),
            wall_timeout: Duration::from_secs(60),
            fault_tick: Duration::from_millis(10),
            net_latency: Duration::from_millis(1)..Duration::from_millis(10),
            trace: TraceMode::Tail,
            trace_tail: 32,
            log: LogConfig::default(),
        }
    }
}

impl SimConfig {
    /// The default config with `seed`.
    pub fn with_seed(seed: u64) -> Self {
        SimConfig {
            seed,
            ..SimConfig::default()
        }
    }

    /// Rejects settings that make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (setting, d) in [
            ("max_time", self.max_time),
            ("wall_timeout", self.wall_timeout),
            ("fault_tick", self.fault_tick),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration { setting });
            }
        }
        if let Err(reason) = self.log.validate() {
            return Err(ConfigError::LogFilter {
                filter: self.log.filter.clone(),
                reason,
            });
        }
        if self.net_latency.start >= self.net_latency.end {
            return Err(ConfigError::EmptyLatency {
                start: self.net_latency.start,
                end: self.net_latency.end,
            });
        }
        Ok(())
    }
}
