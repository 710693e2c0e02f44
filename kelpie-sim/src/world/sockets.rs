//! The nodes in madsim's network, where `tokio::net` sockets (madsim-tokio) live: each node's
//! IP address, and the links our partitions cut.
//!
//! There is one set of rules: our network model ([`Network`](super::net::Network)) decides
//! which links are cut, for our endpoints and for sockets alike; every change of a link's state
//! is mirrored onto madsim's network as a clogged (or unclogged) link between the two nodes'
//! madsim ids. A clogged link refuses new connections and drops datagrams; bytes of an open
//! stream wait (madsim retries them with a backoff from 1 ms doubling to 10 s) and arrive after
//! the heal.

use std::net::IpAddr;

use crate::config::SimConfig;
use crate::ids::NodeId;

use super::{State, World};

/// Gives the supervisor's madsim node its address and madsim's network our base latency.
pub(super) fn init_network(
    netsim: &madsim::net::NetSim,
    main: madsim::task::NodeId,
    config: &SimConfig,
) {
    netsim.set_ip(main, NodeId::MAIN.ip());
    let latency = config.net_latency.clone();
    netsim.update_config(|c| c.send_latency = latency);
}

impl State {
    /// `node`'s madsim id (stable across restarts), if it has one yet.
    fn madsim_id(&self, main: madsim::task::NodeId, node: NodeId) -> Option<madsim::task::NodeId> {
        if node == NodeId::MAIN {
            Some(main)
        } else {
            self.nodes.madsim(node).map(|h| h.id())
        }
    }
}

impl World {
    /// `node`'s address in madsim's network.
    pub(crate) fn node_ip(&self, node: NodeId) -> IpAddr {
        node.ip()
    }

    /// Makes madsim's link from `from` to `to` clogged exactly when our network has it cut.
    pub(super) fn sync_link(&self, st: &State, from: NodeId, to: NodeId) {
        let ids = (
            st.madsim_id(self.main_madsim, from),
            st.madsim_id(self.main_madsim, to),
        );
        if let (Some(a), Some(b)) = ids {
            if st.net.is_cut(from, to) {
                self.netsim.clog_link(a, b);
            } else {
                self.netsim.unclog_link(a, b);
            }
        }
    }
}
