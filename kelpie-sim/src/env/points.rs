//! Fault points on [`SimEnv`]: the code under test names a place (`env.reach_point("lease.release")`),
//! a test arms it (`env.arm_point("lease.release", Some(node), PointAction::Pause(..))`), and
//! the node that reaches it crashes, pauses, is delayed or fails there — so a rare
//! interleaving (a holder paused past its lease just before it releases) becomes a targeted
//! scenario with its own seeds. Points that were never armed do nothing and record nothing.

use std::time::Duration;

use crate::ids::NodeId;
use crate::world::points::PointAction;

use super::SimEnv;

/// How often a fault point was reached and how often it fired, as
/// [`SimEnv::point_stats`] reports it. Reaches are counted from the first arming on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PointStats {
    /// Times a node reached the point.
    pub reached: u64,
    /// Times an armed action fired there.
    pub fired: u64,
}

impl SimEnv {
    /// Arms fault point `name` on `node` (every node if `None`): the next node to reach it
    /// does `action`, once.
    pub fn arm_point(&self, name: &str, node: Option<NodeId>, action: PointAction) {
        self.arm_point_times(name, node, action, 1, 0);
    }

    /// Arms fault point `name` on `node` (every node if `None`) to do `action` the next
    /// `times` times it is reached, after letting the first `skip` reaches pass.
    pub fn arm_point_times(
        &self,
        name: &str,
        node: Option<NodeId>,
        action: PointAction,
        times: u32,
        skip: u32,
    ) {
        self.world.arm_point(name, node, action, times, skip);
    }

    /// Called by the code under test, on its node, at the place named `name`. Returns `true`
    /// if the test armed the point to fail the operation ([`PointAction::Fail`]); crashes,
    /// pauses or delays this node (or task) for the other actions. A crash never returns (the
    /// node's tasks are dropped).
    pub async fn reach_point(&self, name: &str) -> bool {
        let Some(action) = self.world.hit_point(self.node, name) else {
            return false;
        };
        match action {
            PointAction::Fail => return true,
            PointAction::Delay(d) => madsim::time::sleep(d).await,
            PointAction::Pause(d) => {
                self.world.pause(self.node);
                self.world.resume_later(self.node, d);
                // The pause takes effect when this task yields: yield now.
                madsim::time::sleep(Duration::from_nanos(1)).await;
            }
            PointAction::Crash | PointAction::CrashRestart(_) => {
                if let PointAction::CrashRestart(d) = action {
                    self.world.kill(self.node);
                    self.world.restart_later(self.node, d);
                } else {
                    self.world.kill(self.node);
                }
                if self.node != NodeId::MAIN {
                    std::future::pending::<()>().await;
                }
            }
        }
        false
    }

    /// How often fault point `name` was reached and fired so far.
    pub fn point_stats(&self, name: &str) -> PointStats {
        let (reached, fired) = self.world.point_stats(name);
        PointStats { reached, fired }
    }
}
