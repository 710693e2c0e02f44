//! The network model: base latency, FIFO links, partitions, messages in flight and the bound
//! endpoints' mailboxes.
//!
//! A message is delivered after a base latency drawn from the network's own stream, in FIFO
//! order per link (sender, receiver); a message held back (reordered) does not hold back the
//! ones behind it. A cut link drops messages sent over it and messages in flight when they
//! arrive. A plain value: the fault decisions, the node table and the trace are the world's, and
//! reach it as arguments (the latency a fault adds, whether a receiver is down, where events go).
//! Its times are nanoseconds of virtual time since the start of the run (plain integers: the
//! send and delivery paths add and compare them for every message).
//!
//! The messages of each type wait in their type's `Lane`, beside the endpoints bound for that
//! type (a delivered message's slot is reused, so a send allocates nothing once the lane has
//! grown); the delivery order is one heap of (time, send order, lane, slot) over all types.

use std::any::{Any, TypeId};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::future::Future as _;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::ids::NodeId;
use crate::rng::SimRng;
use crate::sync::lock;
use crate::time::nanos;
use crate::trace::{DropReason, EventKind};

/// A message as delivered: sender and payload.
#[derive(Debug)]
struct Envelope<M> {
    from: NodeId,
    msg: M,
}

/// One endpoint's queue of delivered messages and the tasks waiting on it.
pub(crate) struct Mailbox<M> {
    queue: VecDeque<Envelope<M>>,
    waiters: Vec<Waker>,
    /// Replaced by a new binding, or its node was killed: `recv` returns `None`.
    closed: bool,
}

/// A mailbox shared by an endpoint (which receives) and the network (which delivers).
pub(crate) type SharedMailbox<M> = Arc<Mutex<Mailbox<M>>>;

impl<M> Mailbox<M> {
    fn shared() -> SharedMailbox<M> {
        Arc::new(Mutex::new(Mailbox {
            queue: VecDeque::new(),
            waiters: Vec::new(),
            closed: false,
        }))
    }

    /// The next message, `None` once closed, or pending (registering `cx`'s waker).
    #[inline]
    pub(crate) fn poll_recv(&mut self, cx: &Context<'_>) -> Poll<Option<(NodeId, M)>> {
        if let Some(e) = self.queue.pop_front() {
            return Poll::Ready(Some((e.from, e.msg)));
        }
        if self.closed {
            return Poll::Ready(None);
        }
        if !self.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            self.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The next message if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<(NodeId, M)> {
        let e = self.queue.pop_front()?;
        Some((e.from, e.msg))
    }

    /// Messages queued.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether the binding was replaced or its node killed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }
}

/// The network's side of a bound endpoint. Dropping it (a new binding, the node killed)
/// closes the mailbox: queued messages are lost, waiting receivers get `None`.
pub(crate) struct Inbox<M>(SharedMailbox<M>);

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

/// A message of type `M` with its route.
struct Message<M> {
    from: NodeId,
    to: NodeId,
    id: u64,
    copies: u8,
    msg: M,
}

/// The messages of one type `M` in flight, and the endpoints bound for `M`, by node.
struct Lane<M> {
    /// Messages in flight; the slot of a delivered message is listed in `free` and reused.
    slots: Vec<Option<Message<M>>>,
    free: Vec<usize>,
    /// Each node's endpoint for `M`, by node index (none if it never bound one or lost it).
    inboxes: Vec<Option<Inbox<M>>>,
}

impl<M> Lane<M> {
    fn new() -> Self {
        Lane {
            slots: Vec::new(),
            free: Vec::new(),
            inboxes: Vec::new(),
        }
    }

    fn inbox(&self, node: NodeId) -> Option<&Inbox<M>> {
        self.inboxes.get(node.index()).and_then(Option::as_ref)
    }

    /// Files `inbox` as `node`'s endpoint; the one it replaces.
    fn set_inbox(&mut self, node: NodeId, inbox: Inbox<M>) -> Option<Inbox<M>> {
        let i = node.index();
        if self.inboxes.len() <= i {
            self.inboxes.resize_with(i + 1, || None);
        }
        self.inboxes[i].replace(inbox)
    }

    /// Stores a message in flight; its slot.
    fn store(&mut self, message: Message<M>) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(message);
                slot
            }
            None => {
                self.slots.push(Some(message));
                self.slots.len() - 1
            }
        }
    }

    /// Hands one copy of a message to its receiver's endpoint; the event that says so, or why
    /// it was dropped.
    #[inline]
    fn deliver_one(
        &self,
        from: NodeId,
        to: NodeId,
        id: u64,
        msg: M,
        cuts: &Cuts,
        is_down: &dyn Fn(NodeId) -> bool,
    ) -> EventKind {
        let reason = if cuts.contains_key(&(from, to)) {
            Some(DropReason::Partition)
        } else if is_down(to) {
            Some(DropReason::Unreachable)
        } else {
            match self.inbox(to) {
                Some(inbox) => {
                    inbox.push(Envelope { from, msg });
                    None
                }
                None => Some(DropReason::Unreachable),
            }
        };
        match reason {
            None => EventKind::Deliver { from, msg: id },
            Some(reason) => EventKind::Drop {
                to,
                msg: id,
                reason,
            },
        }
    }
}

/// A [`Lane`] with its message type erased, as the network holds it.
trait AnyLane: Send {
    /// Delivers (or drops) each copy of the message in `slot`, reporting an event per copy to
    /// `record` (on the receiver's node), and frees the slot.
    fn deliver(
        &mut self,
        slot: usize,
        cuts: &Cuts,
        is_down: &dyn Fn(NodeId) -> bool,
        record: &mut dyn FnMut(NodeId, EventKind),
    );

    /// Closes `node`'s endpoint for this type, if bound (the node-kill hook).
    fn reset_node(&mut self, node: NodeId);

    /// Drops every message in flight and every endpoint (the run is over).
    fn clear(&mut self);

    /// The lane, to be downcast to its type.
    fn as_any(&mut self) -> &mut dyn Any;
}

impl<M: Clone + Send + 'static> AnyLane for Lane<M> {
    fn deliver(
        &mut self,
        slot: usize,
        cuts: &Cuts,
        is_down: &dyn Fn(NodeId) -> bool,
        record: &mut dyn FnMut(NodeId, EventKind),
    ) {
        let Message {
            from,
            to,
            id,
            copies,
            msg,
        } = self.slots[slot]
            .take()
            .expect("a message in flight has a slot");
        self.free.push(slot);
        // One call site for every copy (the last one moves the message), so that delivery
        // folds into this function.
        let mut msg = Some(msg);
        for copy in 0..copies {
            let this = if copy + 1 == copies {
                msg.take()
            } else {
                msg.clone()
            };
            let this = this.expect("moved by the last copy");
            let kind = self.deliver_one(from, to, id, this, cuts, is_down);
            record(to, kind);
        }
    }

    fn reset_node(&mut self, node: NodeId) {
        if let Some(inbox) = self.inboxes.get_mut(node.index()) {
            *inbox = None;
        }
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.inboxes.clear();
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// Cut links, with how many partitions cut each (a link heals when all have healed).
type Cuts = BTreeMap<(NodeId, NodeId), u32>;

/// A message in flight, ordered for a min-heap by delivery time, then send order; it waits in
/// slot `slot` of lane `lane`.
struct InFlight {
    /// Delivery time, in nanoseconds.
    at: u64,
    id: u64,
    lane: usize,
    slot: usize,
}

impl InFlight {
    fn key(&self) -> (u64, u64) {
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

/// What a queued message asks of the delivery pump.
pub(crate) enum Enqueued {
    /// Nothing: the pump's timer is already set early enough.
    Nothing,
    /// The pump is not running yet: start it.
    StartPump,
    /// The message is due before every other: bring the pump's timer forward to its time
    /// (in nanoseconds).
    Earlier(u64),
}

/// A message to send, with what the faults decided for it.
pub(crate) struct Outgoing {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) id: u64,
    /// Base latency plus what delay faults add, in nanoseconds.
    pub(crate) latency_ns: u64,
    /// How long a reordering fault holds it back beyond its FIFO place, in nanoseconds.
    pub(crate) hold_back_ns: u64,
    /// 2 if a fault duplicates it.
    pub(crate) copies: u8,
}

/// The network state of one run.
pub(crate) struct Network {
    rng: SimRng,
    /// Base latency range in nanoseconds ([`SimConfig::net_latency`](crate::SimConfig)).
    latency_ns: Range<u64>,
    next_msg: u64,
    cuts: Cuts,
    /// Delivery time of the last message on each link, for FIFO order: `[from][to]` by node
    /// index (grown as nodes send).
    last_delivery: Vec<Vec<u64>>,
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
    armed: Option<u64>,
    /// One lane per message type (a `Lane<M>`), in the order the types were first used;
    /// `lane_of` finds a type's lane, and lists the lanes in the order of their types' ids.
    lanes: Vec<Box<dyn AnyLane>>,
    lane_of: BTreeMap<TypeId, usize>,
    /// The type last looked up and its lane (a run mostly sends one type): no map search.
    last_lane: Option<(TypeId, usize)>,
}

impl Network {
    pub(crate) fn new(seed: u64, latency: &Range<Duration>) -> Self {
        Network {
            rng: SimRng::stream(seed, "network", 0),
            latency_ns: nanos(latency.start)..nanos(latency.end),
            next_msg: 0,
            cuts: BTreeMap::new(),
            last_delivery: Vec::new(),
            in_flight: BinaryHeap::new(),
            pump: false,
            pump_waker: None,
            pump_timer: None,
            armed: None,
            lanes: Vec::new(),
            lane_of: BTreeMap::new(),
            last_lane: None,
        }
    }

    /// Drops every message in flight and every mailbox (the run is over).
    pub(crate) fn clear(&mut self) {
        self.in_flight.clear();
        self.lanes.iter_mut().for_each(|lane| lane.clear());
        self.pump_timer = None;
        self.pump_waker = None;
    }

    /// The node-kill hook: a killed node loses its endpoints and every message queued in them.
    pub(crate) fn reset_node(&mut self, node: NodeId) {
        // In the order of the types' ids, as ever (closing wakes the endpoint's receivers).
        for &lane in self.lane_of.values() {
            self.lanes[lane].reset_node(node);
        }
    }

    /// The lane of message type `M` (made on first use), with its index.
    #[inline]
    fn lane<M: Clone + Send + 'static>(&mut self) -> (usize, &mut Lane<M>) {
        let ty = TypeId::of::<M>();
        let index = match self.last_lane {
            Some((last, index)) if last == ty => index,
            _ => {
                let index = *self.lane_of.entry(ty).or_insert_with(|| {
                    self.lanes.push(Box::new(Lane::<M>::new()));
                    self.lanes.len() - 1
                });
                self.last_lane = Some((ty, index));
                index
            }
        };
        let lane = self.lanes[index]
            .as_any()
            .downcast_mut::<Lane<M>>()
            .expect("a lane holds the type it is filed under");
        (index, lane)
    }

    /// Binds `node`'s endpoint for messages of type `M`; returns its mailbox and the binding
    /// it replaces (to be dropped, which closes it, outside the caller's locks).
    pub(crate) fn bind<M: Clone + Send + 'static>(
        &mut self,
        node: NodeId,
    ) -> (SharedMailbox<M>, Option<Inbox<M>>) {
        let mailbox = Mailbox::shared();
        let old = self.lane::<M>().1.set_inbox(node, Inbox(mailbox.clone()));
        (mailbox, old)
    }

    #[inline]
    pub(crate) fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cuts.contains_key(&(from, to))
    }

    /// Cuts the link from `from` to `to` (once more, if already cut).
    pub(crate) fn cut(&mut self, from: NodeId, to: NodeId) {
        *self.cuts.entry((from, to)).or_insert(0) += 1;
    }

    /// Heals one cut of the link from `from` to `to`.
    pub(crate) fn heal(&mut self, from: NodeId, to: NodeId) {
        if let Some(n) = self.cuts.get_mut(&(from, to)) {
            *n -= 1;
            if *n == 0 {
                self.cuts.remove(&(from, to));
            }
        }
    }

    /// Heals every cut link; returns them, in order.
    pub(crate) fn heal_all(&mut self) -> Vec<(NodeId, NodeId)> {
        std::mem::take(&mut self.cuts).into_keys().collect()
    }

    /// Numbers a new message and draws its base latency (in nanoseconds).
    #[inline]
    pub(crate) fn new_message(&mut self) -> (u64, u64) {
        self.next_msg += 1;
        let range = self.latency_ns.clone();
        let latency = range.start + self.rng.gen_range(0..range.end - range.start);
        (self.next_msg, latency)
    }

    /// Queues `msg` for delivery at its time (sent at `now`, in nanoseconds): never before the
    /// previous message on its link, then held back as the faults said.
    #[inline]
    pub(crate) fn enqueue<M: Clone + Send + 'static>(
        &mut self,
        now: u64,
        out: Outgoing,
        msg: M,
    ) -> Enqueued {
        let Outgoing {
            from,
            to,
            id,
            latency_ns,
            hold_back_ns,
            copies,
        } = out;
        // FIFO per link: never deliver before the previous message on this link. A held-back
        // (reordered) message does not hold back the ones behind it.
        let last = grown(grown(&mut self.last_delivery, from.index()), to.index());
        let at = (now + latency_ns).max(*last + 1);
        *last = at;
        let at = at + hold_back_ns;
        // One delivery pump per run hands every message over at its time, in (time, send
        // order): no task per message. FIFO per link holds because a link's delivery times
        // only grow.
        let earlier = self.in_flight.peek().is_none_or(|first| at < first.at);
        let (lane, messages) = self.lane::<M>();
        let slot = messages.store(Message {
            from,
            to,
            id,
            copies,
            msg,
        });
        self.in_flight.push(InFlight { at, id, lane, slot });
        if !std::mem::replace(&mut self.pump, true) {
            Enqueued::StartPump
        } else if earlier && self.pump_waker.is_some() {
            Enqueued::Earlier(at)
        } else {
            Enqueued::Nothing
        }
    }

    /// Brings the pump's timer forward to `at` (see [`Network::arm`]).
    #[inline]
    pub(crate) fn rearm(
        &mut self,
        at: u64,
        deadline: impl FnOnce() -> Instant,
        timer: impl FnOnce() -> madsim::time::Sleep,
    ) {
        // Taken out for the call and put back: no clone of the waker.
        if let Some(waker) = self.pump_waker.take() {
            self.arm(at, deadline, timer, &waker);
            self.pump_waker = Some(waker);
        }
    }

    /// Registers the pump's timer for delivery time `at` (whose instant `deadline` gives), to
    /// wake `waker` (the pump's); `timer` makes the timer on first use. A timer registered
    /// earlier for a later time still fires, and the pump finds nothing due then.
    #[inline]
    fn arm(
        &mut self,
        at: u64,
        deadline: impl FnOnce() -> Instant,
        timer: impl FnOnce() -> madsim::time::Sleep,
        waker: &Waker,
    ) {
        if self.armed == Some(at) {
            return;
        }
        self.armed = Some(at);
        let timer = self.pump_timer.get_or_insert_with(|| Box::pin(timer()));
        timer.as_mut().reset(deadline());
        if timer
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_ready()
        {
            waker.wake_by_ref();
        }
    }

    /// One wake-up of the delivery pump at virtual time `now` (in nanoseconds): delivers (or drops) every
    /// message due, in order, each copy reporting its event to `record` (on the receiver's
    /// node; `is_down` says whether a receiver is down), then arms the pump's timer for the
    /// earliest message still in flight. `deadline(at)` is the instant of delivery time `at`.
    #[inline]
    pub(crate) fn pump(
        &mut self,
        now: u64,
        cx: &Context<'_>,
        is_down: impl Fn(NodeId) -> bool,
        mut record: impl FnMut(NodeId, EventKind),
        deadline: impl FnOnce(u64) -> Instant,
        timer: impl FnOnce() -> madsim::time::Sleep,
    ) {
        if !self
            .pump_waker
            .as_ref()
            .is_some_and(|k| k.will_wake(cx.waker()))
        {
            self.pump_waker = Some(cx.waker().clone());
        }
        if self.in_flight.peek().is_some_and(|m| m.at <= now) {
            self.armed = None;
            while self.in_flight.peek().is_some_and(|m| m.at <= now) {
                let m = self.in_flight.pop().expect("peeked");
                self.lanes[m.lane].deliver(m.slot, &self.cuts, &is_down, &mut record);
            }
        }
        if let Some(at) = self.in_flight.peek().map(|m| m.at) {
            self.arm(at, || deadline(at), timer, cx.waker());
        }
    }
}

/// Element `i` of `v`, which is first grown with default values if it is shorter.
#[inline]
fn grown<T: Default>(v: &mut Vec<T>, i: usize) -> &mut T {
    if v.len() <= i {
        v.resize_with(i + 1, T::default);
    }
    &mut v[i]
}
