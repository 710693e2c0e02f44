//! [`FaultSpec`]: one declared fault (kind, probability, parameters, filters), its validation
//! against the fault table, its attribute syntax, and swarm mode's resolution of a plan.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::rng::SimRng;

use super::{FaultKind, OpKind, ParamKind};

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
    pub(super) kind: FaultKind,
    pub(super) custom: Option<Arc<str>>,
    pub(super) probability: f64,
    /// `Millis` parameters given explicitly, by table name; the others take the table's default.
    pub(super) params: Vec<(&'static str, u64)>,
    pub(super) op: Option<OpKind>,
    pub(super) key_prefix: Option<Vec<u8>>,
    pub(super) node: Option<String>,
    pub(super) max_triggers: Option<u64>,
    pub(super) after: Option<Duration>,
    pub(super) until: Option<Duration>,
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
    pub(super) fn applies(
        &self,
        op: OpKind,
        node: Option<&str>,
        key: Option<&[u8]>,
        now: Duration,
    ) -> bool {
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
