//! The network as a node sees it: [`SimNetwork`] and typed [`Endpoint`]s.
//!
//! Each node binds an [`Endpoint<M>`] per message type. A sent message is delivered after a
//! base latency drawn from [`SimConfig::net_latency`](crate::SimConfig::net_latency), in FIFO
//! order per link (sender, receiver), unless a fault says otherwise:
//! [`FaultKind::PacketLoss`](crate::FaultKind::PacketLoss) drops it,
//! [`FaultKind::NetworkDelay`](crate::FaultKind::NetworkDelay) delays it (and, FIFO, everything
//! behind it), [`FaultKind::MessageReorder`](crate::FaultKind::MessageReorder) holds it back so
//! that later messages overtake it, [`FaultKind::MessageDuplicate`](crate::FaultKind::MessageDuplicate)
//! delivers it twice. A partition (manual or a partition fault) drops messages sent over a cut
//! link and messages in flight when they arrive at a cut link. A killed node loses its queued
//! messages; messages to a down node are dropped.

use std::hash::Hash;

use crate::ids::NodeId;
use crate::sync::lock;
use crate::world::net::SharedMailbox;

use super::SimEnv;

/// The network as seen from one node; see [`SimEnv::network`].
#[derive(Clone, Debug)]
pub struct SimNetwork {
    env: SimEnv,
}

impl SimEnv {
    /// The network, as this env's node sees it.
    pub fn network(&self) -> SimNetwork {
        SimNetwork { env: self.clone() }
    }
}

impl SimNetwork {
    /// Binds this node's endpoint for messages of type `M`, replacing an earlier binding (whose
    /// queued messages are lost). A restarted node binds again in its init closure.
    pub fn endpoint<M: Hash + Clone + Send + 'static>(&self) -> Endpoint<M> {
        Endpoint {
            mailbox: self.env.world.bind::<M>(self.env.node),
            env: self.env.clone(),
        }
    }

    /// Cuts both directions between `a` and `b` until [`SimNetwork::heal`].
    pub fn partition(&self, a: NodeId, b: NodeId) {
        self.env.world.cut_link(a, b, false);
    }

    /// Cuts traffic from `from` to `to` until [`SimNetwork::heal`].
    pub fn partition_one_way(&self, from: NodeId, to: NodeId) {
        self.env.world.cut_link(from, to, true);
    }

    /// Cuts `node` off from every other node until [`SimNetwork::heal`].
    pub fn isolate(&self, node: NodeId) {
        self.env.world.isolate(node);
    }

    /// Heals every partition, manual and injected.
    pub fn heal(&self) {
        self.env.world.heal_all_links();
    }

    /// Whether messages from `from` to `to` are currently dropped by a partition.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.env.world.is_cut(from, to)
    }
}

/// A node's mailbox for messages of type `M`, and its way to send them. Any number of tasks
/// may wait in [`Endpoint::recv`] at once; each message goes to one of them.
pub struct Endpoint<M> {
    env: SimEnv,
    mailbox: SharedMailbox<M>,
}

impl<M> std::fmt::Debug for Endpoint<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = lock(&self.mailbox);
        f.debug_struct("Endpoint")
            .field("node", &self.env.node)
            .field("message", &std::any::type_name::<M>())
            .field("queued", &mb.queued())
            .field("closed", &mb.is_closed())
            .finish()
    }
}

impl<M: Hash + Clone + Send + 'static> Endpoint<M> {
    /// The node this endpoint belongs to.
    pub fn node(&self) -> NodeId {
        self.env.node
    }

    /// Sends `msg` to `to`'s endpoint for `M`, like a datagram: no error, no acknowledgement;
    /// the message may be delayed, dropped or duplicated by faults and partitions.
    pub fn send(&self, to: NodeId, msg: M) {
        self.env.world.send(self.env.node, to, msg);
    }

    /// The next message, with its sender. `None` once this endpoint was replaced or its node
    /// killed.
    pub async fn recv(&self) -> Option<(NodeId, M)> {
        std::future::poll_fn(|cx| lock(&self.mailbox).poll_recv(cx)).await
    }

    /// The next message if one is queued.
    pub fn try_recv(&self) -> Option<(NodeId, M)> {
        lock(&self.mailbox).try_recv()
    }
}
