//! The node table: each simulated node's name, status, epoch, clock offset, madsim handle and
//! init closure. A plain value: it records transitions; what a transition does to the rest of
//! the run (the disk, the network, the trace, madsim) is the world's business.

use std::sync::Arc;

use crate::ids::NodeId;

/// Whether a node is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum NodeStatus {
    /// Running its tasks.
    Up,
    /// Killed: tasks dropped, volatile storage lost; [`SimEnv::restart`](crate::SimEnv::restart)
    /// brings it back.
    Down,
    /// Paused: tasks kept but not polled until [`SimEnv::resume`](crate::SimEnv::resume).
    Paused,
}

/// One node's row. `I` is the init closure's type, which the table stores without calling.
struct Node<I> {
    name: Arc<str>,
    /// `None` for the supervisor, which madsim does not let us address.
    madsim: Option<madsim::runtime::NodeHandle>,
    status: NodeStatus,
    /// Incremented at every kill, restart, pause and resume, so that a delayed fault action
    /// (restart after a crash, resume after a pause) applies only to the state it created.
    epoch: u64,
    clock_offset_ns: i64,
    init: Option<I>,
}

/// Every node of a run, the supervisor ([`NodeId::MAIN`]) first.
pub(crate) struct NodeTable<I> {
    nodes: Vec<Node<I>>,
}

impl<I: Clone> NodeTable<I> {
    /// A table holding only the supervisor.
    pub(crate) fn new() -> Self {
        NodeTable {
            nodes: vec![Node {
                name: "main".into(),
                madsim: None,
                status: NodeStatus::Up,
                epoch: 0,
                clock_offset_ns: 0,
                init: None,
            }],
        }
    }

    /// Number of nodes, the supervisor included.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Adds a node that is up; returns its id.
    pub(crate) fn add(&mut self, name: Arc<str>, init: Option<I>) -> NodeId {
        let id = NodeId::from_index(self.nodes.len());
        self.nodes.push(Node {
            name,
            madsim: None,
            status: NodeStatus::Up,
            epoch: 0,
            clock_offset_ns: 0,
            init,
        });
        id
    }

    pub(crate) fn name(&self, node: NodeId) -> &Arc<str> {
        &self.nodes[node.index()].name
    }

    /// Every node's name, by index.
    pub(crate) fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.to_string()).collect()
    }

    pub(crate) fn status(&self, node: NodeId) -> NodeStatus {
        self.nodes[node.index()].status
    }

    /// Whether messages to `node` cannot arrive: it is down or does not exist.
    #[inline]
    pub(crate) fn is_down(&self, node: NodeId) -> bool {
        self.nodes
            .get(node.index())
            .is_none_or(|n| n.status == NodeStatus::Down)
    }

    pub(crate) fn epoch(&self, node: NodeId) -> u64 {
        self.nodes[node.index()].epoch
    }

    pub(crate) fn clock_offset(&self, node: NodeId) -> i64 {
        self.nodes[node.index()].clock_offset_ns
    }

    pub(crate) fn set_clock_offset(&mut self, node: NodeId, offset_ns: i64) {
        self.nodes[node.index()].clock_offset_ns = offset_ns;
    }

    /// The node's current madsim incarnation (`None` for the supervisor).
    pub(crate) fn madsim(&self, node: NodeId) -> Option<&madsim::runtime::NodeHandle> {
        self.nodes[node.index()].madsim.as_ref()
    }

    /// The node whose current madsim incarnation has madsim id `id`, if any.
    pub(crate) fn by_madsim(&self, id: madsim::task::NodeId) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.madsim.as_ref().is_some_and(|h| h.id() == id))
            .map(NodeId::from_index)
    }

    pub(crate) fn set_madsim(&mut self, node: NodeId, handle: Option<madsim::runtime::NodeHandle>) {
        self.nodes[node.index()].madsim = handle;
    }

    pub(crate) fn init(&self, node: NodeId) -> Option<I> {
        self.nodes[node.index()].init.clone()
    }

    /// Marks `node` down; `false` (no change) for the supervisor and a node already down.
    pub(crate) fn mark_down(&mut self, node: NodeId) -> bool {
        let n = &mut self.nodes[node.index()];
        if node == NodeId::MAIN || n.status == NodeStatus::Down {
            return false;
        }
        n.status = NodeStatus::Down;
        n.epoch += 1;
        true
    }

    /// Marks `node` up again (a restart).
    pub(crate) fn mark_up(&mut self, node: NodeId) {
        let n = &mut self.nodes[node.index()];
        n.status = NodeStatus::Up;
        n.epoch += 1;
    }

    /// Marks `node` paused; `false` (no change) for the supervisor and a node not up.
    pub(crate) fn mark_paused(&mut self, node: NodeId) -> bool {
        let n = &mut self.nodes[node.index()];
        if node == NodeId::MAIN || n.status != NodeStatus::Up {
            return false;
        }
        n.status = NodeStatus::Paused;
        n.epoch += 1;
        true
    }

    /// Marks a paused `node` up; `false` (no change) if it is not paused.
    pub(crate) fn mark_resumed(&mut self, node: NodeId) -> bool {
        let n = &mut self.nodes[node.index()];
        if n.status != NodeStatus::Paused {
            return false;
        }
        n.status = NodeStatus::Up;
        n.epoch += 1;
        true
    }

    /// The created nodes (not the supervisor) for which `pred` holds, in order.
    pub(crate) fn created_where(&self, pred: impl Fn(NodeStatus, i64) -> bool) -> Vec<NodeId> {
        (1..self.nodes.len())
            .filter(|&i| pred(self.nodes[i].status, self.nodes[i].clock_offset_ns))
            .map(NodeId::from_index)
            .collect()
    }

    /// Every node's id, name and status (the fault tick's view).
    pub(crate) fn snapshot(&self) -> Vec<(NodeId, Arc<str>, NodeStatus)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (NodeId::from_index(i), n.name.clone(), n.status))
            .collect()
    }

    /// The madsim handles of the nodes that have an init task (spawned by madsim, not by us).
    pub(crate) fn with_init(&self) -> Vec<madsim::runtime::NodeHandle> {
        (self.nodes.iter())
            .filter(|n| n.init.is_some())
            .filter_map(|n| n.madsim.clone())
            .collect()
    }

    /// The nodes whose init task is alive: they have an init and are not down.
    pub(crate) fn running_inits(&self) -> Vec<NodeId> {
        (1..self.nodes.len())
            .filter(|&i| self.nodes[i].init.is_some() && self.nodes[i].status != NodeStatus::Down)
            .map(NodeId::from_index)
            .collect()
    }

    /// Drops every init closure (they often hold an env, which holds the world).
    pub(crate) fn drop_inits(&mut self) {
        self.nodes.iter_mut().for_each(|n| n.init = None);
    }
}
