//! Fault points: named places in the code under test where a test has armed an action (crash,
//! pause, fail, delay) for one node or every node, a bounded number of times. The table is a
//! plain value; [`World::hit_point`] decides a hit and records it in the trace, and the env
//! layer (`env/points.rs`) carries the action out.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ids::NodeId;
use crate::trace::EventKind;

use super::World;

/// What an armed fault point does to the node that reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PointAction {
    /// Kills the node (its tasks are dropped; restart it with `SimEnv::restart`, or arm
    /// `CrashRestart`).
    Crash,
    /// Kills the node and restarts it after the duration.
    CrashRestart(Duration),
    /// Pauses the whole node (every task, timers included) for the duration.
    Pause(Duration),
    /// Delays only the task that reached the point, by the duration; the node's other tasks
    /// keep running.
    Delay(Duration),
    /// Tells the code under test to fail the operation it is about to do.
    Fail,
}

impl std::fmt::Display for PointAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointAction::Crash => write!(f, "crash"),
            PointAction::CrashRestart(d) => write!(f, "crash, restart after {d:?}"),
            PointAction::Pause(d) => write!(f, "pause {d:?}"),
            PointAction::Delay(d) => write!(f, "delay {d:?}"),
            PointAction::Fail => write!(f, "fail"),
        }
    }
}

#[derive(Debug, Clone)]
struct Armed {
    node: Option<NodeId>,
    action: PointAction,
    /// Hits left before the point disarms itself.
    remaining: u32,
    /// Reaches to let pass before the first hit.
    skip: u32,
}

/// The armed points of a run and how often each was reached and fired.
#[derive(Debug, Default)]
pub(crate) struct PointTable {
    armed: BTreeMap<String, Vec<Armed>>,
    reached: BTreeMap<String, (u64, u64)>,
}

impl PointTable {
    fn arm(
        &mut self,
        name: &str,
        node: Option<NodeId>,
        action: PointAction,
        times: u32,
        skip: u32,
    ) {
        self.armed.entry(name.to_string()).or_default().push(Armed {
            node,
            action,
            remaining: times,
            skip,
        });
    }

    /// Whether `name` fires on `node` now (and counts the reach).
    fn hit(&mut self, name: &str, node: NodeId) -> Option<PointAction> {
        let counts = self.reached.entry(name.to_string()).or_default();
        counts.0 += 1;
        let list = self.armed.get_mut(name)?;
        let armed = list
            .iter_mut()
            .find(|a| a.remaining > 0 && a.node.is_none_or(|n| n == node))?;
        if armed.skip > 0 {
            armed.skip -= 1;
            return None;
        }
        armed.remaining -= 1;
        counts.1 += 1;
        Some(armed.action)
    }

    fn stats(&self, name: &str) -> (u64, u64) {
        self.reached.get(name).copied().unwrap_or_default()
    }
}

impl World {
    /// Arms point `name` on `node` (every node if `None`) to do `action` the next `times`
    /// times it is reached, after letting `skip` reaches pass.
    pub(crate) fn arm_point(
        &self,
        name: &str,
        node: Option<NodeId>,
        action: PointAction,
        times: u32,
        skip: u32,
    ) {
        self.points_lock().arm(name, node, action, times, skip);
        self.points_armed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether point `name`, reached by `node`, fires now; a firing is recorded in the trace.
    /// Reaching a point while nothing was ever armed costs one atomic load and records
    /// nothing (so adding points to code leaves every trace as it was).
    pub(crate) fn hit_point(&self, node: NodeId, name: &str) -> Option<PointAction> {
        if !self.points_armed.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let action = self.points_lock().hit(name, node)?;
        self.record(
            node,
            EventKind::User {
                label: format!("fault point {name}: {action}"),
            },
        );
        Some(action)
    }

    /// How often point `name` was reached and fired (reaches are counted only once some
    /// point was armed).
    pub(crate) fn point_stats(&self, name: &str) -> (u64, u64) {
        self.points_lock().stats(name)
    }

    fn points_lock(&self) -> std::sync::MutexGuard<'_, PointTable> {
        crate::sync::lock(&self.points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_fire_on_their_node_after_skips_and_disarm() {
        let mut t = PointTable::default();
        let (a, b) = (NodeId::from_index(1), NodeId::from_index(2));
        t.arm("p", Some(a), PointAction::Fail, 2, 1);
        assert_eq!(t.hit("p", b), None);
        assert_eq!(t.hit("p", a), None, "the first reach is skipped");
        assert_eq!(t.hit("p", a), Some(PointAction::Fail));
        assert_eq!(t.hit("p", a), Some(PointAction::Fail));
        assert_eq!(t.hit("p", a), None, "disarmed after two hits");
        assert_eq!(t.hit("other", a), None);
        assert_eq!(t.stats("p"), (5, 2));
    }
}
