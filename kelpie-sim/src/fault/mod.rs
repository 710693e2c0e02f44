//! Typed fault injection.
//!
//! A [`FaultSpec`] declares one fault: its [`FaultKind`] (a row of the [fault table](FAULT_TABLE)),
//! a probability, its parameters and optional filters (operation kind, key prefix, node, maximum
//! trigger count, active window). At run time every declared fault gets its own random stream,
//! derived from the run's seed and the fault's name, and is *considered* at each operation of a
//! kind it applies to ([`FaultKind::ops`]); [`FaultStats`] counts how often each fault was
//! considered and how often it fired, so a test can show that its faults reached the code.

mod table;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use table::{
    Category, FaultInfo, FaultKind, OpKind, OptionInfo, ParamInfo, ParamKind, FAULT_OPTIONS,
    FAULT_TABLE, OP_TABLE,
};

use crate::error::ConfigError;
use crate::rng::SimRng;

/// The most faults one run may declare.
pub const MAX_FAULTS: usize = 64;

/// One declared fault: kind, probability, parameters and filters.
///
/// ```
/// use kelpie_sim::{FaultKind, FaultSpec};
/// let f = FaultSpec::new(FaultKind::NetworkDelay, 0.1).with_param("max_ms", 250);
/// assert_eq!(f.to_string(), "NetworkDelay(0.1, max_ms = 250)");
/// let g = FaultSpec::custom("LlmTimeout", 0.05).max_triggers(3);
/// assert_eq!(g.to_string(), "Custom(\"LlmTimeout\", 0.05, max = 3)");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    kind: FaultKind,
    custom: Option<Arc<str>>,
    probability: f64,
    /// `Millis` parameters given explicitly, by table name; the others take the table's default.
    params: Vec<(&'static str, u64)>,
    op: Option<OpKind>,
    key_prefix: Option<Vec<u8>>,
    node: Option<String>,
    max_triggers: Option<u64>,
    after: Option<Duration>,
    until: Option<Duration>,
}

impl FaultSpec {
    /// A fault of `kind` that fires with `probability` each time it is considered.
    pub fn new(kind: FaultKind, probability: f64) -> Self {
        FaultSpec {
            kind,
            custom: None,
            probability,
            params: Vec::new(),
            op: None,
            key_prefix: None,
            node: None,
            max_triggers: None,
            after: None,
            until: None,
        }
    }

    /// An application-level fault named `name`, which the code under test checks with
    /// [`SimEnv::fault`](crate::SimEnv::fault).
    pub fn custom(name: impl Into<String>, probability: f64) -> Self {
        let name: String = name.into();
        FaultSpec {
            custom: Some(name.into()),
            ..FaultSpec::new(FaultKind::Custom, probability)
        }
    }

    /// Sets a millisecond parameter by its table name (e.g. `max_ms`, `heal_ms`).
    pub fn with_param(mut self, name: &'static str, value: u64) -> Self {
        self.params.retain(|(n, _)| *n != name);
        self.params.push((name, value));
        self
    }

    /// Considers the fault only at operations of this kind.
    pub fn op(mut self, op: OpKind) -> Self {
        self.op = Some(op);
        self
    }

    /// Considers the fault only for storage keys starting with `prefix`.
    pub fn key_prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.key_prefix = Some(prefix.as_ref().to_vec());
        self
    }

    /// Considers the fault only on the node named `node`.
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Fires at most `n` times per run.
    pub fn max_triggers(mut self, n: u64) -> Self {
        self.max_triggers = Some(n);
        self
    }

    /// Active only from `ms` milliseconds of virtual time on.
    pub fn after_ms(mut self, ms: u64) -> Self {
        self.after = Some(Duration::from_millis(ms));
        self
    }

    /// Active only until `ms` milliseconds of virtual time.
    pub fn until_ms(mut self, ms: u64) -> Self {
        self.until = Some(Duration::from_millis(ms));
        self
    }

    /// The fault's kind.
    pub fn kind(&self) -> FaultKind {
        self.kind
    }

    /// The fault's probability.
    pub fn probability(&self) -> f64 {
        self.probability
    }

    /// The display name: the table name, or a custom fault's own name.
    pub fn name(&self) -> &str {
        match &self.custom {
            Some(n) => n,
            None => self.kind.name(),
        }
    }

    /// The node filter (`node = "..."`), if any.
    pub fn node_filter(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The value of a millisecond parameter, or its table default.
    pub fn param(&self, name: &str) -> Option<u64> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .or_else(|| {
                self.kind
                    .info()
                    .params
                    .iter()
                    .find(|p| p.name == name)
                    .and_then(|p| p.default)
            })
    }

    /// The same fault with another probability (used by swarm mode and shrinking).
    pub fn with_probability(mut self, p: f64) -> Self {
        self.probability = p;
        self
    }

    /// Checks the spec against the table: probability in range, known parameters, a sensible
    /// window.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = self.name().to_string();
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(ConfigError::Probability {
                fault: name,
                value: self.probability,
            });
        }
        for (param, _) in &self.params {
            let known = self
                .kind
                .info()
                .params
                .iter()
                .any(|p| p.name == *param && p.kind == ParamKind::Millis);
            if !known {
                return Err(ConfigError::UnknownParam {
                    fault: name,
                    param: (*param).to_string(),
                });
            }
        }
        if let Some(op) = self.op {
            if !self.kind.ops().contains(&op) {
                return Err(ConfigError::OpNotApplicable {
                    fault: name,
                    op: op.name(),
                });
            }
        }
        if let (Some(a), Some(u)) = (self.after, self.until) {
            if a >= u {
                return Err(ConfigError::EmptyWindow {
                    fault: name,
                    after: a,
                    until: u,
                });
            }
        }
        if self.max_triggers == Some(0) {
            return Err(ConfigError::ZeroMaxTriggers { fault: name });
        }
        if self.kind == FaultKind::Custom && self.custom.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::UnnamedCustomFault);
        }
        Ok(())
    }

    /// Whether the filters and the window admit this operation. `node` and `key` are `None`
    /// for operations that have none (the fault tick picks its targets itself).
    fn applies(&self, op: OpKind, node: Option<&str>, key: Option<&[u8]>, now: Duration) -> bool {
        if self.op.is_some_and(|o| o != op) {
            return false;
        }
        if let (Some(want), Some(node)) = (&self.node, node) {
            if want != node {
                return false;
            }
        }
        if let Some(prefix) = &self.key_prefix {
            if op != OpKind::Tick && !key.is_some_and(|k| k.starts_with(prefix)) {
                return false;
            }
        }
        if self.after.is_some_and(|a| now < a) || self.until.is_some_and(|u| now >= u) {
            return false;
        }
        true
    }
}

/// Prints the spec in the attribute's syntax, so a plan can be pasted back into a test.
impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Swarm mode resolves probabilities like 0.0899796877; four decimals are plenty to read.
        let p = (self.probability * 1e4).round() / 1e4;
        match &self.custom {
            Some(n) => write!(f, "Custom({n:?}, {p}")?,
            None => write!(f, "{}({p}", self.kind.name())?,
        }
        for p in self
            .kind
            .info()
            .params
            .iter()
            .filter(|p| p.kind == ParamKind::Millis)
        {
            if let Some((_, v)) = self.params.iter().find(|(n, _)| *n == p.name) {
                write!(f, ", {} = {v}", p.name)?;
            }
        }
        if let Some(op) = self.op {
            write!(f, ", op = {:?}", op.name())?;
        }
        if let Some(k) = &self.key_prefix {
            write!(f, ", key_prefix = {:?}", String::from_utf8_lossy(k))?;
        }
        if let Some(n) = &self.node {
            write!(f, ", node = {n:?}")?;
        }
        if let Some(m) = self.max_triggers {
            write!(f, ", max = {m}")?;
        }
        if let Some(a) = self.after {
            write!(f, ", after_ms = {}", a.as_millis())?;
        }
        if let Some(u) = self.until {
            write!(f, ", until_ms = {}", u.as_millis())?;
        }
        write!(f, ")")
    }
}

/// How often one declared fault was considered and fired in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultStat {
    /// The fault as declared; its `Display` is the attribute syntax.
    pub spec: FaultSpec,
    /// Its name: the table name, or a custom fault's own name.
    pub name: Arc<str>,
    /// Its kind.
    pub kind: FaultKind,
    /// Times it was considered (an operation it applies to happened).
    pub considered: u64,
    /// Times it fired.
    pub fired: u64,
}

/// Per-run statistics of every declared fault, in declaration order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultStats {
    /// One entry per declared fault.
    pub faults: Vec<FaultStat>,
}

impl FaultStats {
    /// Times faults of `kind` fired.
    pub fn fired(&self, kind: FaultKind) -> u64 {
        self.faults
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.fired)
            .sum()
    }

    /// Times faults of `kind` were considered.
    pub fn considered(&self, kind: FaultKind) -> u64 {
        self.faults
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.considered)
            .sum()
    }

    /// Times the fault named `name` fired (custom faults by their own name).
    pub fn fired_named(&self, name: &str) -> u64 {
        self.faults
            .iter()
            .filter(|f| &*f.name == name)
            .map(|f| f.fired)
            .sum()
    }

    /// Total fires of all faults.
    pub fn total_fired(&self) -> u64 {
        self.faults.iter().map(|f| f.fired).sum()
    }
}

impl fmt::Display for FaultStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.faults.is_empty() {
            return write!(f, "(no faults declared)");
        }
        for (i, s) in self.faults.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{} fired {}/{}", s.spec, s.fired, s.considered)?;
        }
        Ok(())
    }
}

/// A fault that fired: which declared fault, and its spec.
#[derive(Debug, Clone)]
pub(crate) struct Fired {
    pub(crate) index: usize,
    pub(crate) spec: FaultSpec,
    pub(crate) name: Arc<str>,
}

struct Active {
    spec: FaultSpec,
    name: Arc<str>,
    rng: SimRng,
    considered: u64,
    /// Times the fault's stream said "fire" (fires plus those a schedule suppressed).
    drawn: u64,
    fired: u64,
}

/// Which of a run's fault firings may happen, for replaying a shrunk schedule.
///
/// Each firing is named by the declared fault's index and its ordinal among the times that
/// fault's stream said "fire" (`2:3` is the third firing of the third declared fault). Under a
/// schedule, a firing that is not listed is suppressed; the fault's stream still advances, so
/// the decisions of every fault keep their positions.
///
/// ```
/// use kelpie_sim::FaultSchedule;
/// let s: FaultSchedule = "0:1,2:3".parse().unwrap();
/// assert!(s.allows(2, 3) && !s.allows(0, 2));
/// assert_eq!(s.to_string(), "0:1,2:3");
/// assert!("0-1".parse::<FaultSchedule>().is_err());
/// assert_eq!("none".parse::<FaultSchedule>().unwrap(), FaultSchedule::default());
/// assert_eq!(FaultSchedule::default().to_string(), "none");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultSchedule {
    allowed: BTreeSet<(usize, u64)>,
}

impl FaultSchedule {
    /// A schedule allowing exactly these `(fault index, ordinal)` firings.
    pub fn new(firings: impl IntoIterator<Item = (usize, u64)>) -> Self {
        FaultSchedule {
            allowed: firings.into_iter().collect(),
        }
    }

    /// Whether the `ordinal`-th firing of fault `index` may happen.
    pub fn allows(&self, index: usize, ordinal: u64) -> bool {
        self.allowed.contains(&(index, ordinal))
    }

    /// The allowed firings, in order.
    pub fn firings(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.allowed.iter().copied()
    }

    /// Number of allowed firings.
    pub fn len(&self) -> usize {
        self.allowed.len()
    }

    /// Whether no firing is allowed.
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }
}

/// `none` for the empty schedule (no fault fires), else `index:ordinal` pairs.
impl fmt::Display for FaultSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allowed.is_empty() {
            return write!(f, "none");
        }
        for (n, (i, k)) in self.allowed.iter().enumerate() {
            if n > 0 {
                write!(f, ",")?;
            }
            write!(f, "{i}:{k}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FaultSchedule {
    type Err = String;

    /// Parses `index:ordinal` pairs separated by commas (`0:1,2:3`), or `none`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut allowed = BTreeSet::new();
        if s.trim().eq_ignore_ascii_case("none") {
            return Ok(FaultSchedule { allowed });
        }
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = part
                .split_once(':')
                .and_then(|(i, k)| Some((i.parse::<usize>().ok()?, k.parse::<u64>().ok()?)));
            match parsed {
                Some((i, k)) if k >= 1 => allowed.insert((i, k)),
                _ => return Err(format!("`{part}` is not `fault:ordinal` (e.g. `0:1`)")),
            };
        }
        Ok(FaultSchedule { allowed })
    }
}

/// Swarm testing: the plan one seed runs with. Each declared fault is kept with probability
/// 1/2, at a random intensity up to its declared probability; which ones and how strong is
/// drawn from the seed's own `swarm` stream, so the same seed always resolves the same plan.
///
/// ```
/// use kelpie_sim::{swarm_plan, FaultKind, FaultSpec};
/// let declared = [FaultSpec::new(FaultKind::PacketLoss, 0.2), FaultSpec::new(FaultKind::DiskFull, 0.1)];
/// let plan = swarm_plan(7, &declared);
/// assert_eq!(plan, swarm_plan(7, &declared));
/// assert!(plan.iter().all(|f| f.probability() <= 0.2));
/// ```
pub fn swarm_plan(seed: u64, declared: &[FaultSpec]) -> Vec<FaultSpec> {
    let mut rng = SimRng::stream(seed, "swarm", 0);
    declared
        .iter()
        .filter_map(|spec| {
            let keep = rng.gen_bool(0.5);
            let intensity = 1.0 - rng.gen_f64(); // in (0, 1]
            keep.then(|| {
                spec.clone()
                    .with_probability(spec.probability() * intensity)
            })
        })
        .collect()
}

/// The per-run fault decider: one stream per declared fault.
pub(crate) struct FaultInjector {
    active: Vec<Active>,
    /// Indices into `active`, per operation kind (`OpKind as usize`).
    by_op: Vec<Vec<usize>>,
    schedule: Option<FaultSchedule>,
    /// Set by the liveness phase: no fault is considered any more.
    stopped: bool,
}

const N_OPS: usize = OP_TABLE.len();

impl FaultInjector {
    pub(crate) fn new(seed: u64, specs: &[FaultSpec]) -> Self {
        let mut active: Vec<Active> = Vec::with_capacity(specs.len());
        let mut by_op = vec![Vec::new(); N_OPS];
        for (i, spec) in specs.iter().enumerate() {
            // The stream is keyed by name and occurrence, not by position: declaring another
            // fault before this one leaves this one's decisions unchanged.
            let name: Arc<str> = spec.name().into();
            let occurrence = active.iter().filter(|a| a.name == name).count() as u64;
            let rng = SimRng::stream_of(seed, "fault/", &name, occurrence);
            for op in spec.kind.ops() {
                if spec.op.is_none_or(|o| o == *op) {
                    by_op[*op as usize].push(i);
                }
            }
            active.push(Active {
                spec: spec.clone(),
                name,
                rng,
                considered: 0,
                drawn: 0,
                fired: 0,
            });
        }
        FaultInjector {
            active,
            by_op,
            schedule: None,
            stopped: false,
        }
    }

    /// Replays only the firings `schedule` allows.
    pub(crate) fn set_schedule(&mut self, schedule: Option<FaultSchedule>) {
        self.schedule = schedule;
    }

    /// Stops all faults for the rest of the run.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
    }

    /// Whether any declared fault applies to operations of kind `op`.
    pub(crate) fn any_for(&self, op: OpKind) -> bool {
        !self.stopped && !self.by_op[op as usize].is_empty()
    }

    /// Considers every fault that applies to this operation (each draws from its own stream,
    /// whether or not another fires) and returns those that fired, in declaration order.
    pub(crate) fn decide(
        &mut self,
        op: OpKind,
        node: &str,
        key: Option<&[u8]>,
        custom: Option<&str>,
        now: Duration,
    ) -> Vec<Fired> {
        self.decide_inner(op, |a| {
            custom.is_none_or(|c| *c == *a.name) && a.spec.applies(op, Some(node), key, now)
        })
    }

    /// Like [`FaultInjector::decide`] for operations without a node or key of their own (the
    /// fault tick): a fault is considered if its window is open and `eligible` accepts it.
    pub(crate) fn decide_where(
        &mut self,
        op: OpKind,
        now: Duration,
        eligible: impl Fn(&FaultSpec) -> bool,
    ) -> Vec<Fired> {
        self.decide_inner(op, |a| {
            a.spec.applies(op, None, None, now) && eligible(&a.spec)
        })
    }

    fn decide_inner(&mut self, op: OpKind, consider: impl Fn(&Active) -> bool) -> Vec<Fired> {
        let mut fired = Vec::new();
        if self.stopped {
            return fired;
        }
        for &i in &self.by_op[op as usize] {
            let a = &mut self.active[i];
            if a.spec.max_triggers.is_some_and(|m| a.fired >= m) || !consider(a) {
                continue;
            }
            a.considered += 1;
            if a.rng.gen_bool(a.spec.probability) {
                a.drawn += 1;
                if self
                    .schedule
                    .as_ref()
                    .is_some_and(|s| !s.allows(i, a.drawn))
                {
                    continue;
                }
                a.fired += 1;
                fired.push(Fired {
                    index: i,
                    spec: a.spec.clone(),
                    name: a.name.clone(),
                });
            }
        }
        fired
    }

    /// A value in `range` from fault `index`'s own stream (targets, delays, offsets).
    pub(crate) fn draw(&mut self, index: usize, range: std::ops::Range<u64>) -> u64 {
        self.active[index].rng.gen_range(range)
    }

    pub(crate) fn stats(&self) -> FaultStats {
        FaultStats {
            faults: self
                .active
                .iter()
                .map(|a| FaultStat {
                    spec: a.spec.clone(),
                    name: a.name.clone(),
                    kind: a.spec.kind,
                    considered: a.considered,
                    fired: a.fired,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order_and_names_round_trip() {
        for (i, info) in FAULT_TABLE.iter().enumerate() {
            assert_eq!(info.kind as usize, i, "{}", info.name);
            assert_eq!(FaultKind::from_name(info.name), Some(info.kind));
            assert!(!info.doc.is_empty());
            assert!(!info.kind.ops().is_empty());
        }
        for (name, op) in OP_TABLE {
            assert_eq!(OpKind::from_name(name), Some(*op));
            assert_eq!(
                (*op) as usize,
                OP_TABLE.iter().position(|(_, o)| o == op).unwrap()
            );
        }
    }

    #[test]
    fn validate_rejects_nonsense() {
        let bad = [
            FaultSpec::new(FaultKind::StorageWriteFail, 1.5),
            FaultSpec::new(FaultKind::StorageWriteFail, -0.1),
            FaultSpec::new(FaultKind::StorageWriteFail, f64::NAN),
            FaultSpec::new(FaultKind::StorageWriteFail, 0.1)
                .after_ms(10)
                .until_ms(10),
            FaultSpec::new(FaultKind::StorageWriteFail, 0.1).max_triggers(0),
            FaultSpec::new(FaultKind::StorageWriteFail, 0.1).with_param("max_ms", 3),
            FaultSpec::new(FaultKind::StorageWriteFail, 0.1).op(OpKind::Get),
            FaultSpec::custom("", 0.1),
        ];
        for spec in bad {
            let err = spec.validate().expect_err(&spec.to_string());
            assert!(!err.to_string().is_empty());
        }
        FaultSpec::new(FaultKind::StorageLatency, 1.0)
            .with_param("max_ms", 3)
            .validate()
            .unwrap();
    }

    #[test]
    fn decisions_of_one_fault_ignore_others() {
        let spec = FaultSpec::new(FaultKind::StorageWriteFail, 0.5);
        let run = |specs: &[FaultSpec]| {
            let mut inj = FaultInjector::new(9, specs);
            (0..200)
                .map(|_| {
                    inj.decide(OpKind::Set, "n", None, None, Duration::ZERO)
                        .iter()
                        .any(|f| f.spec.kind == FaultKind::StorageWriteFail)
                })
                .collect::<Vec<_>>()
        };
        let alone = run(std::slice::from_ref(&spec));
        let with_other = run(&[FaultSpec::new(FaultKind::DiskFull, 0.7), spec.clone()]);
        assert_eq!(alone, with_other);
    }

    #[test]
    fn filters_window_and_max() {
        let spec = FaultSpec::new(FaultKind::StorageWriteFail, 1.0)
            .key_prefix("wal/")
            .node("a")
            .after_ms(10)
            .until_ms(20)
            .max_triggers(2);
        let mut inj = FaultInjector::new(1, &[spec]);
        let t = Duration::from_millis(15);
        let mut fire = |node: &str, key: &[u8], now| {
            !inj.decide(OpKind::Set, node, Some(key), None, now)
                .is_empty()
        };
        assert!(!fire("a", b"data/1", t));
        assert!(!fire("b", b"wal/1", t));
        assert!(!fire("a", b"wal/1", Duration::from_millis(5)));
        assert!(!fire("a", b"wal/1", Duration::from_millis(20)));
        assert!(fire("a", b"wal/1", t));
        assert!(fire("a", b"wal/2", t));
        assert!(!fire("a", b"wal/3", t), "max = 2");
        assert_eq!(inj.stats().faults[0].fired, 2);
        assert_eq!(inj.stats().faults[0].considered, 2);
    }
}
