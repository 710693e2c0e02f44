//! The per-run fault decider: one random stream per declared fault, considered at each
//! operation the fault applies to, with its statistics.

use std::sync::Arc;
use std::time::Duration;

use crate::rng::SimRng;

use super::{FaultSchedule, FaultSpec, FaultStat, FaultStats, OpKind, OP_TABLE};

/// A fault that fired: which declared fault, and its spec.
#[derive(Debug, Clone)]
pub(crate) struct Fired {
    pub(crate) index: usize,
    /// Shared with the injector: a firing copies no spec.
    pub(crate) spec: Arc<FaultSpec>,
    pub(crate) name: Arc<str>,
}

struct Active {
    spec: Arc<FaultSpec>,
    /// Whether the spec has a filter or a window ([`FaultSpec::applies`] has something to
    /// check); most declared faults have none.
    filtered: bool,
    name: Arc<str>,
    rng: SimRng,
    considered: u64,
    /// Times the fault's stream said "fire" (fires plus those a schedule suppressed).
    drawn: u64,
    fired: u64,
}

impl Active {
    /// Whether the fault's filters and window admit this operation (no check at all for a
    /// fault without any).
    #[inline]
    fn admits(&self, op: OpKind, node: Option<&str>, key: Option<&[u8]>, now: Duration) -> bool {
        !self.filtered || self.spec.applies(op, node, key, now)
    }
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
                spec: Arc::new(spec.clone()),
                // Not the operation filter: `by_op` lists a fault only under the operations it
                // admits.
                filtered: spec.node.is_some()
                    || spec.key_prefix.is_some()
                    || spec.after.is_some()
                    || spec.until.is_some(),
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
            custom.is_none_or(|c| *c == *a.name) && a.admits(op, Some(node), key, now)
        })
    }

    /// Like [`FaultInjector::decide`], considering only the faults `keep` accepts (the others
    /// draw nothing): a stream segment considers only the faults a stream can suffer.
    pub(crate) fn decide_if(
        &mut self,
        op: OpKind,
        node: &str,
        now: Duration,
        keep: impl Fn(&FaultSpec) -> bool,
    ) -> Vec<Fired> {
        self.decide_inner(op, |a| a.admits(op, Some(node), None, now) && keep(&a.spec))
    }

    /// Like [`FaultInjector::decide`] for operations without a node or key of their own (the
    /// fault tick): a fault is considered if its window is open and `eligible` accepts it.
    pub(crate) fn decide_where(
        &mut self,
        op: OpKind,
        now: Duration,
        eligible: impl Fn(&FaultSpec) -> bool,
    ) -> Vec<Fired> {
        self.decide_inner(op, |a| a.admits(op, None, None, now) && eligible(&a.spec))
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
                    spec: FaultSpec::clone(&a.spec),
                    name: a.name.clone(),
                    kind: a.spec.kind,
                    considered: a.considered,
                    fired: a.fired,
                })
                .collect(),
            unreported_socket_messages: 0,
        }
    }
}
