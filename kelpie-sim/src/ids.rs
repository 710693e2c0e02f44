//! Identifiers shared by every part of a run: [`NodeId`].

use std::fmt;

/// Identifies a simulated node within one run. [`NodeId::MAIN`] is the supervisor that runs the
/// test body; nodes made with [`SimEnv::create_node`](crate::SimEnv::create_node) are numbered
/// from 1 in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct NodeId(u32);

impl NodeId {
    /// The supervisor node running the test body. Faults never crash, pause or skew it.
    pub const MAIN: NodeId = NodeId(0);

    pub(crate) const fn from_index(i: usize) -> NodeId {
        NodeId(i as u32)
    }

    /// The node's index (0 for [`NodeId::MAIN`]).
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The node's IP address in the simulated network: `10.0.0.1` for [`NodeId::MAIN`], then
    /// one more per node in creation order (`n1` is `10.0.0.2`). A `tokio::net` socket
    /// (madsim-tokio) on the node binds to it (or to `0.0.0.0`); peers connect to it. The
    /// address survives restarts.
    pub fn ip(self) -> std::net::IpAddr {
        std::net::Ipv4Addr::from(0x0A00_0001u32.wrapping_add(self.0)).into()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == NodeId::MAIN {
            write!(f, "main")
        } else {
            write!(f, "n{}", self.0)
        }
    }
}
