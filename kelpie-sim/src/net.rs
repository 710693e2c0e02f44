//! Typed message passing between simulated nodes.
//!
//! Each node binds an [`Endpoint<M>`] per message type. A sent message is delivered after a
//! base latency drawn from [`SimConfig::net_latency`](crate::SimConfig::net_latency), in FIFO
//! order per link (sender, receiver), unless a fault says otherwise: [`FaultKind::PacketLoss`]
//! drops it, [`FaultKind::NetworkDelay`] delays it (and, FIFO, everything behind it),
//! [`FaultKind::MessageReorder`] holds it back so that later messages overtake it,
//! [`FaultKind::MessageDuplicate`] delivers it twice. A partition (manual or
//! [`FaultKind::NetworkPartition`] / [`FaultKind::NetworkPartitionOneWay`]) drops messages sent
//! over a cut link and messages in flight when they arrive at a cut link. A killed node loses its
//! queued messages; messages to a down node are dropped.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::future::Future as _;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::fault::{FaultKind, OpKind};
use crate::node::{NodeId, NodeStatus};
use crate::rng::SimRng;
use crate::sim::{SimEnv, State, World};
use crate::trace::{stable_hash, DropReason, EventKind};

/// A message as delivered: sender and payload.
#[derive(Debug)]
struct Envelope<M> {
    from: NodeId,
    msg: M,
}

/// Hands one message (all its copies) to its receiver, or drops it.
type Delivery = Box<dyn FnOnce(&mut State, Duration) + Send>;

/// Network state of one run.
pub(crate) struct NetState {
    rng: SimRng,
    next_msg: u64,
    /// Cut links, with how many partitions cut each (a link heals when all have healed).
    cuts: BTreeMap<(NodeId, NodeId), u32>,
    /// Delivery time of the last message on each link, for FIFO order.
    last_delivery: BTreeMap<(NodeId, NodeId), Duration>,
    /// Messages in flight per link, in FIFO order, with their delivery time. A delivery timer
    /// flushes its link's queue up to now, so that timers firing in the same instant (in
    /// madsim's random order) still deliver in order.
    in_flight: BTreeMap<(Duration, u64), Delivery>,
    /// Whether the delivery pump runs (started by the first send).
    pump: bool,
    /// The pump's waker while it waits: woken when a message is due earlier than it sleeps.
    pump_waker: Option<Waker>,
    /// Bound endpoints: (node, message type) -> `mpsc::UnboundedSender<Envelope<M>>`.
    mailboxes: BTreeMap<(NodeId, TypeId), Box<dyn Any + Send>>,
}

impl NetState {
    pub(crate) fn new(seed: u64) -> Self {
        NetState {
            rng: SimRng::stream(seed, "network", 0),
            next_msg: 0,
            cuts: BTreeMap::new(),
            last_delivery: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            pump: false,
            pump_waker: None,
            mailboxes: BTreeMap::new(),
        }
    }

    /// A killed node loses its endpoints and every message queued in them.
    pub(crate) fn reset_node(&mut self, node: NodeId) {
        self.mailboxes.retain(|(n, _), _| *n != node);
    }

    fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cuts.contains_key(&(from, to))
    }

    fn cut(&mut self, from: NodeId, to: NodeId) {
        *self.cuts.entry((from, to)).or_insert(0) += 1;
    }

    fn heal(&mut self, from: NodeId, to: NodeId) {
        if let Some(n) = self.cuts.get_mut(&(from, to)) {
            *n -= 1;
            if *n == 0 {
                self.cuts.remove(&(from, to));
            }
        }
    }
}

/// Cuts `node` off from every other node (both directions); returns the links cut.
pub(crate) fn isolate(world: &World, node: NodeId) -> Vec<(NodeId, NodeId)> {
    let peers: Vec<NodeId> = (0..world.lock().nodes.len() as u32)
        .map(|i| NodeId::from_index(i as usize))
        .filter(|p| *p != node)
        .collect();
    let mut links = Vec::new();
    for peer in peers {
        links.push((node, peer));
        links.push((peer, node));
        cut_link(world, node, peer, false);
    }
    links
}

/// Cuts traffic from `from` to `to`; returns the link cut.
pub(crate) fn cut_one_way(world: &World, from: NodeId, to: NodeId) -> Vec<(NodeId, NodeId)> {
    cut_link(world, from, to, true);
    vec![(from, to)]
}

fn cut_link(world: &World, a: NodeId, b: NodeId, one_way: bool) {
    {
        let mut st = world.lock();
        st.net.cut(a, b);
        if !one_way {
            st.net.cut(b, a);
        }
    }
    world.record(
        a,
        EventKind::Partition {
            peer: b,
            one_way,
            cut: true,
        },
    );
}

/// Heals every cut link.
pub(crate) fn heal_all(world: &World) {
    let links: Vec<(NodeId, NodeId)> = {
        let mut st = world.lock();
        std::mem::take(&mut st.net.cuts).into_keys().collect()
    };
    for (a, b) in links {
        world.record(
            a,
            EventKind::Partition {
                peer: b,
                one_way: true,
                cut: false,
            },
        );
    }
}

/// Heals links cut earlier (each once).
pub(crate) fn heal_links(world: &World, links: &[(NodeId, NodeId)]) {
    let mut st = world.lock();
    for (a, b) in links {
        st.net.heal(*a, *b);
    }
    drop(st);
    if let Some((a, b)) = links.first() {
        let one_way = links.len() == 1;
        world.record(
            *a,
            EventKind::Partition {
                peer: *b,
                one_way,
                cut: false,
            },
        );
    }
}

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
        let (tx, rx) = mpsc::unbounded_channel::<Envelope<M>>();
        let key = (self.env.node, TypeId::of::<M>());
        self.env
            .world
            .lock()
            .net
            .mailboxes
            .insert(key, Box::new(tx));
        Endpoint {
            env: self.env.clone(),
            rx: tokio::sync::Mutex::new(rx),
            _m: PhantomData,
        }
    }

    /// Cuts both directions between `a` and `b` until [`SimNetwork::heal`].
    pub fn partition(&self, a: NodeId, b: NodeId) {
        cut_link(&self.env.world, a, b, false);
    }

    /// Cuts traffic from `from` to `to` until [`SimNetwork::heal`].
    pub fn partition_one_way(&self, from: NodeId, to: NodeId) {
        cut_link(&self.env.world, from, to, true);
    }

    /// Cuts `node` off from every other node until [`SimNetwork::heal`].
    pub fn isolate(&self, node: NodeId) {
        isolate(&self.env.world, node);
    }

    /// Heals every partition, manual and injected.
    pub fn heal(&self) {
        heal_all(&self.env.world);
    }

    /// Whether messages from `from` to `to` are currently dropped by a partition.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.env.world.lock().net.is_cut(from, to)
    }
}

/// A node's mailbox for messages of type `M`, and its way to send them.
#[derive(Debug)]
pub struct Endpoint<M> {
    env: SimEnv,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Envelope<M>>>,
    _m: PhantomData<fn() -> M>,
}

impl<M: Hash + Clone + Send + 'static> Endpoint<M> {
    /// The node this endpoint belongs to.
    pub fn node(&self) -> NodeId {
        self.env.node
    }

    /// Sends `msg` to `to`'s endpoint for `M`, like a datagram: no error, no acknowledgement;
    /// the message may be delayed, dropped or duplicated by faults and partitions.
    pub fn send(&self, to: NodeId, msg: M) {
        send(&self.env, to, msg);
    }

    /// The next message, with its sender. `None` once this endpoint was replaced or its node
    /// killed.
    pub async fn recv(&self) -> Option<(NodeId, M)> {
        let env = self.rx.lock().await.recv().await?;
        Some((env.from, env.msg))
    }

    /// The next message if one is queued.
    pub fn try_recv(&self) -> Option<(NodeId, M)> {
        let mut rx = self.rx.try_lock().ok()?;
        rx.try_recv().ok().map(|e| (e.from, e.msg))
    }
}

fn send<M: Hash + Clone + Send + 'static>(env: &SimEnv, to: NodeId, msg: M) {
    let world = &env.world;
    let from = env.node;
    crate::node::catch_up(world);
    let fired = world.decide(OpKind::Send, from, None);
    let now = world.elapsed();
    let content = stable_hash(&msg);
    let plan = {
        let mut st = world.lock();
        st.net.next_msg += 1;
        let id = st.net.next_msg;
        let cfg = &world.config.net_latency;
        let span = (cfg.end - cfg.start).as_nanos() as u64;
        let mut latency = cfg.start + Duration::from_nanos(st.net.rng.gen_range(0..span));
        let mut hold_back = Duration::ZERO;
        let mut copies = 1;
        let mut lost = false;
        for f in &fired {
            let max = Duration::from_millis(f.spec.param("max_ms").unwrap_or(0).max(1));
            let extra = |st: &mut crate::sim::State| {
                Duration::from_nanos(st.faults.draw(f.index, 1..max.as_nanos() as u64 + 1))
            };
            match f.spec.kind() {
                FaultKind::PacketLoss => lost = true,
                FaultKind::NetworkDelay => latency += extra(&mut st),
                FaultKind::MessageReorder => hold_back += extra(&mut st),
                FaultKind::MessageDuplicate => copies = 2,
                _ => {}
            }
        }
        let record = |st: &mut crate::sim::State, kind| {
            st.trace.record(crate::trace::TraceEvent {
                at: now,
                node: from,
                kind,
            })
        };
        record(
            &mut st,
            EventKind::Send {
                to,
                msg: id,
                content,
            },
        );
        if lost || st.net.is_cut(from, to) {
            let reason = if lost {
                DropReason::Loss
            } else {
                DropReason::Partition
            };
            record(
                &mut st,
                EventKind::Drop {
                    to,
                    msg: id,
                    reason,
                },
            );
            None
        } else {
            // FIFO per link: never deliver before the previous message on this link. A held-back
            // (reordered) message does not hold back the ones behind it.
            let link = (from, to);
            let earliest = st.net.last_delivery.get(&link).copied().unwrap_or_default();
            let at = (now + latency).max(earliest + Duration::from_nanos(1));
            st.net.last_delivery.insert(link, at);
            Some((id, at + hold_back, copies))
        }
    };
    let Some((id, at, copies)) = plan else {
        return;
    };
    let delivery: Delivery = Box::new(move |st, now| {
        for _ in 0..copies {
            deliver(st, now, from, to, id, msg.clone());
        }
    });
    // One delivery pump per run hands every message over at its time, in (time, send order):
    // no task per message. FIFO per link holds because a link's delivery times only grow.
    let (wake, start) = {
        let mut st = world.lock();
        let earlier = st
            .net
            .in_flight
            .keys()
            .next()
            .is_none_or(|(first, _)| at < *first);
        st.net.in_flight.insert((at, id), delivery);
        let start = !std::mem::replace(&mut st.net.pump, true);
        let wake = if earlier {
            st.net.pump_waker.take()
        } else {
            None
        };
        (wake, start)
    };
    if start {
        start_pump(world);
    } else if let Some(waker) = wake {
        waker.wake();
    }
}

/// The delivery pump: sleeps until the earliest message in flight is due (woken early when an
/// earlier one is sent), then delivers everything due, in order.
fn start_pump(world: &Arc<World>) {
    let w = world.clone();
    world.sys().spawn(async move {
        // One timer, re-armed for the earliest delivery.
        let mut timer = Box::pin(madsim::time::sleep(Duration::from_secs(1 << 32)));
        let mut armed: Option<Duration> = None;
        loop {
            std::future::poll_fn(|cx| {
                let now = w.elapsed();
                let mut st = w.lock();
                let next = st.net.in_flight.keys().next().map(|(at, _)| *at);
                match next {
                    Some(at) if at <= now => return Poll::Ready(()),
                    _ => st.net.pump_waker = Some(cx.waker().clone()),
                }
                drop(st);
                let Some(at) = next else { return Poll::Pending };
                if armed != Some(at) {
                    timer
                        .as_mut()
                        .reset(madsim::time::Instant::now() + (at - now));
                    armed = Some(at);
                }
                timer.as_mut().poll(cx)
            })
            .await;
            armed = None;
            let now = w.elapsed();
            let mut st = w.lock();
            while let Some(entry) = st.net.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let deliver = entry.remove();
                deliver(&mut st, now);
            }
        }
    });
}

fn deliver<M: Send + 'static>(
    st: &mut State,
    at: Duration,
    from: NodeId,
    to: NodeId,
    id: u64,
    msg: M,
) {
    let reason = if st.net.is_cut(from, to) {
        Some(DropReason::Partition)
    } else if st
        .nodes
        .get(to.index())
        .is_none_or(|n| n.status == NodeStatus::Down)
    {
        Some(DropReason::Unreachable)
    } else {
        let tx = st
            .net
            .mailboxes
            .get(&(to, TypeId::of::<M>()))
            .and_then(|b| b.downcast_ref::<mpsc::UnboundedSender<Envelope<M>>>());
        match tx.map(|tx| tx.send(Envelope { from, msg })) {
            Some(Ok(())) => None,
            _ => Some(DropReason::Unreachable),
        }
    };
    let kind = match reason {
        None => EventKind::Deliver { from, msg: id },
        Some(reason) => EventKind::Drop {
            to,
            msg: id,
            reason,
        },
    };
    st.trace
        .record(crate::trace::TraceEvent { at, node: to, kind });
}
