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
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::future::Future as _;
use std::hash::Hash;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::fault::{FaultKind, OpKind};
use crate::node::{NodeId, NodeStatus};
use crate::rng::SimRng;
use crate::sim::{lock, nanos, SimEnv, State, World};
use crate::trace::{stable_hash, DropReason, EventKind};

/// A message as delivered: sender and payload.
#[derive(Debug)]
struct Envelope<M> {
    from: NodeId,
    msg: M,
}

/// Hands one message (all its copies) to its receiver, or drops it.
type Delivery = Box<dyn FnOnce(&mut State, Duration) + Send>;

/// A message in flight, ordered for a min-heap by delivery time, then send order.
struct InFlight {
    at: Duration,
    id: u64,
    deliver: Delivery,
}

impl InFlight {
    fn key(&self) -> (Duration, u64) {
        (self.at, self.id)
    }
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest delivery must be on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

/// One endpoint's queue of delivered messages and the tasks waiting on it.
struct Mailbox<M> {
    queue: VecDeque<Envelope<M>>,
    waiters: Vec<Waker>,
    /// Replaced by a new binding, or its node was killed: `recv` returns `None`.
    closed: bool,
}

type SharedMailbox<M> = Arc<Mutex<Mailbox<M>>>;

/// The network's side of a bound endpoint. Dropping it (a new binding, the node killed)
/// closes the mailbox: queued messages are lost, waiting receivers get `None`.
struct Inbox<M>(SharedMailbox<M>);

impl<M> Inbox<M> {
    /// Queues a message and wakes every waiting receiver (each re-checks the queue, so a
    /// receiver that stopped waiting cannot swallow the wake-up).
    /// Waking only schedules the tasks (madsim polls them later), so it is done under the
    /// lock, keeping the waiter list's allocation.
    fn push(&self, envelope: Envelope<M>) {
        let mut mb = lock(&self.0);
        mb.queue.push_back(envelope);
        mb.waiters.drain(..).for_each(Waker::wake);
    }
}

impl<M> Drop for Inbox<M> {
    fn drop(&mut self) {
        let mut mb = lock(&self.0);
        mb.closed = true;
        mb.queue.clear();
        mb.waiters.drain(..).for_each(Waker::wake);
    }
}

/// Network state of one run.
pub(crate) struct NetState {
    rng: SimRng,
    /// Base latency range in nanoseconds ([`SimConfig::net_latency`](crate::SimConfig)).
    latency_ns: Range<u64>,
    next_msg: u64,
    /// Cut links, with how many partitions cut each (a link heals when all have healed).
    cuts: BTreeMap<(NodeId, NodeId), u32>,
    /// Delivery time of the last message on each link, for FIFO order.
    last_delivery: BTreeMap<(NodeId, NodeId), Duration>,
    /// Messages in flight, earliest delivery (then earliest sent) on top.
    in_flight: BinaryHeap<InFlight>,
    /// Whether the delivery pump runs (started by the first send).
    pump: bool,
    /// The pump task's waker, once it has run.
    pump_waker: Option<Waker>,
    /// The pump's timer, registered with the pump's waker for the earliest delivery (by the
    /// pump, or by a send that brings the earliest delivery forward, without waking the pump).
    pump_timer: Option<Pin<Box<madsim::time::Sleep>>>,
    /// The delivery time the timer was last registered for.
    armed: Option<Duration>,
    /// Bound endpoints: (node, message type) -> `Inbox<M>`.
    mailboxes: BTreeMap<(NodeId, TypeId), Box<dyn Any + Send>>,
}

impl NetState {
    pub(crate) fn new(seed: u64, latency: &Range<Duration>) -> Self {
        NetState {
            rng: SimRng::stream(seed, "network", 0),
            latency_ns: nanos(latency.start)..nanos(latency.end),
            next_msg: 0,
            cuts: BTreeMap::new(),
            last_delivery: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            pump: false,
            pump_waker: None,
            pump_timer: None,
            armed: None,
            mailboxes: BTreeMap::new(),
        }
    }

    /// Drops every message in flight and every mailbox (the run is over).
    pub(crate) fn clear(&mut self) {
        self.in_flight.clear();
        self.mailboxes.clear();
        self.pump_timer = None;
        self.pump_waker = None;
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
        let mailbox: SharedMailbox<M> = Arc::new(Mutex::new(Mailbox {
            queue: VecDeque::new(),
            waiters: Vec::new(),
            closed: false,
        }));
        let key = (self.env.node, TypeId::of::<M>());
        let old = self
            .env
            .world
            .lock()
            .net
            .mailboxes
            .insert(key, Box::new(Inbox(mailbox.clone())));
        // Closed outside the world's lock: closing wakes the old endpoint's receivers.
        drop(old);
        Endpoint {
            env: self.env.clone(),
            mailbox,
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
            .field("queued", &mb.queue.len())
            .field("closed", &mb.closed)
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
        send(&self.env, to, msg);
    }

    /// The next message, with its sender. `None` once this endpoint was replaced or its node
    /// killed.
    pub async fn recv(&self) -> Option<(NodeId, M)> {
        std::future::poll_fn(|cx| {
            let mut mb = lock(&self.mailbox);
            if let Some(e) = mb.queue.pop_front() {
                return Poll::Ready(Some((e.from, e.msg)));
            }
            if mb.closed {
                return Poll::Ready(None);
            }
            if !mb.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                mb.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// The next message if one is queued.
    pub fn try_recv(&self) -> Option<(NodeId, M)> {
        let e = lock(&self.mailbox).queue.pop_front()?;
        Some((e.from, e.msg))
    }
}

fn send<M: Hash + Clone + Send + 'static>(env: &SimEnv, to: NodeId, msg: M) {
    let world = &env.world;
    let from = env.node;
    crate::node::catch_up(world);
    let now = world.elapsed();
    let content = stable_hash(&msg);
    let mut st = world.lock();
    let fired = world.decide_locked(&mut st, now, OpKind::Send, from, None);
    st.net.next_msg += 1;
    let id = st.net.next_msg;
    let range = st.net.latency_ns.clone();
    let mut latency =
        Duration::from_nanos(range.start + st.net.rng.gen_range(0..range.end - range.start));
    let mut hold_back = Duration::ZERO;
    let mut copies = 1;
    let mut lost = false;
    for f in &fired {
        let max = Duration::from_millis(f.spec.param("max_ms").unwrap_or(0).max(1));
        let extra = |st: &mut State| {
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
    let record = |st: &mut State, kind| {
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
        return;
    }
    // FIFO per link: never deliver before the previous message on this link. A held-back
    // (reordered) message does not hold back the ones behind it.
    let last = st.net.last_delivery.entry((from, to)).or_default();
    let at = (now + latency).max(*last + Duration::from_nanos(1));
    *last = at;
    let at = at + hold_back;
    let deliver: Delivery = Box::new(move |st, now| {
        for _ in 1..copies {
            deliver(st, now, from, to, id, msg.clone());
        }
        deliver(st, now, from, to, id, msg);
    });
    // One delivery pump per run hands every message over at its time, in (time, send order):
    // no task per message. FIFO per link holds because a link's delivery times only grow.
    let earlier = st.net.in_flight.peek().is_none_or(|first| at < first.at);
    st.net.in_flight.push(InFlight { at, id, deliver });
    if !std::mem::replace(&mut st.net.pump, true) {
        drop(st);
        start_pump(world);
    } else if earlier {
        if let Some(waker) = st.net.pump_waker.clone() {
            arm(world, &mut st, at, now, &waker);
        }
    }
}

/// Registers the pump's timer for delivery time `at`, to wake `waker` (the pump's). A timer
/// registered earlier for a later time still fires, and the pump finds nothing due then.
fn arm(world: &World, st: &mut State, at: Duration, now: Duration, waker: &Waker) {
    if st.net.armed == Some(at) {
        return;
    }
    st.net.armed = Some(at);
    let timer = st
        .net
        .pump_timer
        .get_or_insert_with(|| Box::pin(world.timer()));
    timer.as_mut().reset(world.now_instant() + (at - now));
    if timer
        .as_mut()
        .poll(&mut Context::from_waker(waker))
        .is_ready()
    {
        waker.wake_by_ref();
    }
}

/// The delivery pump: sleeps until the earliest message in flight is due, then delivers
/// everything due, in order. It is woken only by its timer: a send that brings the earliest
/// delivery forward re-registers the timer itself (see [`arm`]).
fn start_pump(world: &Arc<World>) {
    let w = world.clone();
    let task = world.sys().spawn(async move {
        loop {
            std::future::poll_fn(|cx| {
                let now = w.elapsed();
                let mut st = w.lock();
                if !st
                    .net
                    .pump_waker
                    .as_ref()
                    .is_some_and(|k| k.will_wake(cx.waker()))
                {
                    st.net.pump_waker = Some(cx.waker().clone());
                }
                match st.net.in_flight.peek().map(|m| m.at) {
                    Some(at) if at <= now => Poll::Ready(()),
                    Some(at) => {
                        arm(&w, &mut st, at, now, cx.waker());
                        Poll::Pending
                    }
                    None => Poll::Pending,
                }
            })
            .await;
            let now = w.elapsed();
            let mut st = w.lock();
            st.net.armed = None;
            while st.net.in_flight.peek().is_some_and(|m| m.at <= now) {
                let m = st.net.in_flight.pop().expect("peeked");
                (m.deliver)(&mut st, now);
            }
        }
    });
    world.lock().track(&task);
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
        let inbox = st
            .net
            .mailboxes
            .get(&(to, TypeId::of::<M>()))
            .and_then(|b| b.downcast_ref::<Inbox<M>>());
        match inbox {
            Some(inbox) => {
                inbox.push(Envelope { from, msg });
                None
            }
            None => Some(DropReason::Unreachable),
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
