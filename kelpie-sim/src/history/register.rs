//! The register fast path: a partition whose operations are all plain reads and blind writes,
//! no two writes of the same value, is decided in O(n log n) by Gibbons & Korach's zone
//! conditions instead of by a search that is exponential in the operations in flight.
//!
//! The fast path only proposes. A pass comes with a linearization that is replayed against
//! [`Model::step`] and checked against real time; a violation comes with a witness of at most
//! six operations that the exact search confirms. Anything it cannot certify, and any
//! partition it does not apply to, goes to the search.
//!
//! **Why it works.** With unique values every read knows its write, so a linearization is a
//! sequence of *blocks*, one per value: its write, then the reads of it. Each operation is
//! placed at an instant of its interval, so the block of a value must cover its *zone*: from
//! the earliest return among its operations (`first_return`) to the latest invocation
//! (`last_call`). If `first_return < last_call` the zone is a *forward* zone, an interval the
//! block must span; otherwise all its operations overlap, and the block fits at any instant of
//! `[last_call, first_return]` (a *backward* zone). The history is linearizable if and only if
//! (a) no read returns before its write is invoked (and every value read was written or is the
//! initial one), (b) no two forward zones overlap, and (c) no backward zone lies inside a
//! forward zone. The initial value is a write before everything.

use std::collections::HashMap;

use super::search::{entry, At, Found, Search, Work};
use super::{Model, Operation};

/// An operation seen as an access to a register ([`Model::register_access`]): a plain read or
/// a blind write of a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterAccess<S> {
    /// A read that returned what a read returns in state `S` (and changed nothing).
    Read(S),
    /// A write that leaves the state `S`, whatever it was before.
    Write(S),
    /// A read whose return is not known (its outcome is unknown): it changes nothing and
    /// constrains nothing.
    Unobserved,
}

/// What the fast path found for one partition.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Linearizable: a certified order, as [`Operation::id`]s.
    Linearizable(Vec<usize>),
    /// Not linearizable: a witness the search confirmed (`explored` states), as indices into
    /// the partition.
    Violation { witness: Vec<usize>, explored: u64 },
    /// The fast path does not apply (or could not certify its answer): search.
    Search,
}

/// A point in time: before everything (the initial write), an event, or never (no return).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Time {
    Start,
    At(At),
    Never,
}

/// The operations that wrote and read one value; `write: None` for the initial value.
struct Block {
    write: Option<usize>,
    reads: Vec<usize>,
}

/// A block's zone: its latest invocation and earliest return, and the operations (indices into
/// the partition; `None`: the initial write) they belong to.
#[derive(Clone, Copy)]
struct Zone {
    block: usize,
    last_call: (Time, Option<usize>),
    first_return: (Time, Option<usize>),
}

impl Zone {
    fn forward(&self) -> bool {
        self.first_return.0 < self.last_call.0
    }
}

/// Decides the partition `ops` (no failed operations) by the zone conditions, if `model` sees
/// every operation as a register access and no two writes write the same state.
pub(crate) fn decide<M: Model>(model: &M, ops: &[&Operation<M::Op, M::Ret>]) -> Decision {
    let Some(first) = ops.first() else {
        return Decision::Linearizable(Vec::new());
    };
    let initial = model.register_initial(&first.op);
    let mut call = Vec::with_capacity(ops.len());
    let mut ret = Vec::with_capacity(ops.len());
    let mut blocks = vec![Block {
        write: None,
        reads: Vec::new(),
    }];
    let mut block_of: HashMap<M::State, usize> = HashMap::new();
    block_of.insert(initial.clone(), 0);
    let mut unwritten: Vec<(M::State, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let Some(e) = entry(op, None) else {
            return Decision::Search;
        };
        call.push(Time::At(e.call));
        ret.push(e.returned.map_or(Time::Never, Time::At));
        if model.register_initial(&op.op) != initial {
            return Decision::Search;
        }
        match model.register_access(&op.op, e.ret) {
            None => return Decision::Search,
            Some(RegisterAccess::Unobserved) => {}
            Some(RegisterAccess::Write(state)) => {
                if block_of.contains_key(&state) {
                    // Two writes of one value (or a write of the initial one).
                    return Decision::Search;
                }
                block_of.insert(state, blocks.len());
                blocks.push(Block {
                    write: Some(i),
                    reads: Vec::new(),
                });
            }
            Some(RegisterAccess::Read(state)) => unwritten.push((state, i)),
        }
    }
    for (state, i) in unwritten {
        match block_of.get(&state) {
            Some(&b) => blocks[b].reads.push(i),
            // A read of a value nobody wrote.
            None => return confirm(model, ops, vec![i]),
        }
    }
    let time = |op: Option<usize>, of: &[Time]| op.map_or(Time::Start, |i| of[i]);
    let mut zones = Vec::new();
    for (b, block) in blocks.iter().enumerate() {
        if let Some(w) = block.write {
            // (a) A read that returned before its write was invoked.
            if let Some(&r) = block.reads.iter().find(|&&r| ret[r] < call[w]) {
                return confirm(model, ops, vec![w, r]);
            }
            if block.reads.is_empty() && ret[w] == Time::Never {
                continue; // a write of unknown outcome nobody saw: it may never have happened
            }
        } else if block.reads.is_empty() {
            continue;
        }
        // The reads, then the write (`None`: the initial write, before everything).
        let members = block.reads.iter().map(|&r| Some(r)).chain([block.write]);
        let mut zone = Zone {
            block: b,
            last_call: (Time::Start, None),
            first_return: (Time::Never, None),
        };
        for op in members {
            let (c, r) = (time(op, &call), time(op, &ret));
            if c >= zone.last_call.0 {
                zone.last_call = (c, op);
            }
            if r < zone.first_return.0 {
                zone.first_return = (r, op);
            }
        }
        zones.push(zone);
    }
    let witness = |zones: &[&Zone]| {
        let mut w: Vec<usize> = zones
            .iter()
            .flat_map(|z| {
                [z.last_call.1, z.first_return.1, blocks[z.block].write]
                    .into_iter()
                    .flatten()
            })
            .collect();
        w.sort_unstable();
        w.dedup();
        w
    };
    // (b) Forward zones, by start: each must start after every earlier one ends.
    let mut forward: Vec<&Zone> = zones.iter().filter(|z| z.forward()).collect();
    forward.sort_by_key(|z| z.first_return.0);
    let mut reach: Option<&Zone> = None;
    for &z in &forward {
        if let Some(r) = reach {
            if z.first_return.0 < r.last_call.0 {
                return confirm(model, ops, witness(&[r, z]));
            }
        }
        if reach.is_none_or(|r| z.last_call.0 > r.last_call.0) {
            reach = Some(z);
        }
    }
    // (c) A backward zone inside a forward one: only the forward zone that starts last before
    // the backward one starts can hold it (forward zones are disjoint now).
    let inside = |t: Time| {
        let n = forward.partition_point(|f| f.first_return.0 < t);
        n.checked_sub(1)
            .map(|k| forward[k])
            .filter(|f| t < f.last_call.0)
    };
    let mut keyed: Vec<((Time, u8), usize)> = Vec::with_capacity(zones.len());
    for z in &zones {
        if z.forward() {
            keyed.push(((z.first_return.0, 0), z.block));
            continue;
        }
        let key = match inside(z.last_call.0) {
            Some(f) if z.first_return.0 < f.last_call.0 => {
                return confirm(model, ops, witness(&[f, z]));
            }
            // Right after the forward zone it starts in.
            Some(f) => (f.last_call.0, 1),
            None => (z.last_call.0, 0),
        };
        keyed.push((key, z.block));
    }
    keyed.sort();
    certify(model, ops, &call, &ret, &blocks, &zones, &keyed)
}

/// Builds the order the zones imply (blocks by key; in a block, the write first and the reads
/// by the instants they can take), replays it against the model and checks it against real
/// time. Returns it if both hold.
fn certify<M: Model>(
    model: &M,
    ops: &[&Operation<M::Op, M::Ret>],
    call: &[Time],
    ret: &[Time],
    blocks: &[Block],
    zones: &[Zone],
    keyed: &[((Time, u8), usize)],
) -> Decision {
    let zone_of: HashMap<usize, &Zone> = zones.iter().map(|z| (z.block, z)).collect();
    let mut order: Vec<usize> = Vec::with_capacity(ops.len());
    for &(_, b) in keyed {
        let block = &blocks[b];
        let zone = zone_of[&b];
        // The write's instant: as early as its interval and the block allow.
        let start = if zone.forward() {
            zone.first_return.0
        } else {
            zone.last_call.0
        };
        let at = block.write.map_or(start, |w| call[w].max(start));
        let mut reads: Vec<(Time, usize)> =
            block.reads.iter().map(|&r| (call[r].max(at), r)).collect();
        reads.sort_unstable();
        order.extend(block.write);
        order.extend(reads.into_iter().map(|(_, r)| r));
    }
    let mut state = model.init();
    let mut latest_call = Time::Start;
    for &i in &order {
        let e = entry(ops[i], None).expect("failed operations are not in a partition");
        latest_call = latest_call.max(call[i]);
        if ret[i] < latest_call {
            return Decision::Search; // an operation placed after one invoked after it returned
        }
        let (next, got) = model.step(&state, e.op);
        if e.ret.is_some_and(|r| *r != got) {
            return Decision::Search;
        }
        state = next;
    }
    Decision::Linearizable(order.into_iter().map(|i| ops[i].id).collect())
}

/// The budget for confirming a witness of at most six operations (far more than needed).
const CONFIRM_STATES: u64 = 10_000;

/// A violation if the exact search finds `witness` (indices into `ops`) not linearizable.
fn confirm<M: Model>(
    model: &M,
    ops: &[&Operation<M::Op, M::Ret>],
    witness: Vec<usize>,
) -> Decision {
    let entries = witness
        .iter()
        .filter_map(|&i| entry(ops[i], None))
        .collect();
    let mut work = Work::new(CONFIRM_STATES, None);
    match Search::new(model, entries).run(model, &mut work) {
        Found::Violation => Decision::Violation {
            witness,
            explored: work.explored,
        },
        Found::Linearizable | Found::Exhausted => Decision::Search,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::search::Entry;
    use crate::history::{
        CheckConfig, History, KvModel, KvOp, KvRet, Outcome, RegisterModel, RegisterOp, RegisterRet,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// splitmix64, so that the tests need nothing outside the module.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            crate::history::hash::mix64(self.0) % n
        }
    }

    /// Linearizability by brute force: every order of the operations (those of unknown
    /// outcome optional) that respects real time. Shared with the search's tests.
    pub(crate) fn brute<M: Model>(model: &M, ops: &[Operation<M::Op, M::Ret>]) -> bool {
        fn go<M: Model>(
            model: &M,
            ops: &[Entry<'_, M::Op, M::Ret>],
            done: &mut Vec<bool>,
            state: M::State,
        ) -> bool {
            let pending = |j: usize, done: &[bool]| !done[j] && ops[j].returned.is_some();
            if !(0..ops.len()).any(|j| pending(j, done)) {
                return true;
            }
            for i in 0..ops.len() {
                let blocked = (0..ops.len())
                    .any(|j| pending(j, done) && ops[j].returned.is_some_and(|r| r < ops[i].call));
                if done[i] || blocked {
                    continue;
                }
                let (next, ret) = model.step(&state, ops[i].op);
                if ops[i].ret.is_none_or(|r| *r == ret) {
                    done[i] = true;
                    let ok = go(model, ops, done, next);
                    done[i] = false;
                    if ok {
                        return true;
                    }
                }
            }
            false
        }
        let entries: Vec<_> = ops.iter().filter_map(|op| entry(op, None)).collect();
        go(
            model,
            &entries,
            &mut vec![false; entries.len()],
            model.init(),
        )
    }

    type Reg = History<RegisterOp<u32>, RegisterRet<u32>>;

    /// A random register history with unique written values: `clients` clients doing up to
    /// `per_client` reads and writes each, effects at random instants inside the intervals,
    /// some outcomes unknown, some reads returning another value (written, initial or never
    /// written).
    fn unique_history(seed: u64, clients: u64, per_client: u64) -> Reg {
        let mut rng = Rng(seed);
        let mut next_value = 1;
        let mut gen = Vec::new();
        for client in 0..clients {
            let mut t = rng.below(4);
            for _ in 0..1 + rng.below(per_client) {
                let op = if rng.below(2) == 0 {
                    RegisterOp::Read
                } else {
                    next_value += 1;
                    RegisterOp::Write(next_value - 1)
                };
                let len = 2 + rng.below(12);
                let effect = t + 1 + rng.below(len - 1);
                let unknown = rng.below(6) == 0;
                let applied = !unknown || rng.below(2) == 0;
                gen.push((client, op, t, effect, t + len, unknown, applied));
                t += len + rng.below(3);
            }
        }
        let mut order: Vec<usize> = (0..gen.len()).collect();
        order.sort_by_key(|&i| (gen[i].3, i));
        let mut rets = vec![RegisterRet::Done; gen.len()];
        let mut state = 0;
        for i in order {
            if gen[i].6 {
                let (next, ret) = RegisterModel::new(0).step(&state, &gen[i].1);
                (state, rets[i]) = (next, ret);
            }
            if matches!(gen[i].1, RegisterOp::Read) && rng.below(8) == 0 {
                rets[i] = RegisterRet::Value(rng.below(u64::from(next_value) + 1) as u32);
            }
        }
        record(&gen, &rets)
    }

    /// A generated register operation: client, operation, invocation, effect instant, return
    /// (ms), whether its outcome is unknown to the client, whether it took effect.
    pub(crate) type GenOp = (u64, RegisterOp<u32>, u64, u64, u64, bool, bool);

    /// Records generated operations in a history, their invocations and returns in time order;
    /// `rets[i]` is what `gen[i]` returned.
    pub(crate) fn record(gen: &[GenOp], rets: &[RegisterRet<u32>]) -> Reg {
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for (i, g) in gen.iter().enumerate() {
            events.push((g.2, false, i));
            events.push((g.4, true, i));
        }
        events.sort_unstable();
        let h = Reg::new();
        let mut calls: Vec<_> = gen.iter().map(|_| None).collect();
        for (t, is_return, i) in events {
            if !is_return {
                calls[i] = Some(h.invoke(gen[i].0, gen[i].1.clone(), ms(t)));
            } else if let Some(call) = calls[i].take() {
                if gen[i].5 {
                    call.unknown(ms(t));
                } else {
                    call.ok(rets[i].clone(), ms(t));
                }
            }
        }
        h
    }

    fn decide_all<M: Model>(model: &M, ops: &[Operation<M::Op, M::Ret>]) -> Decision {
        let refs: Vec<_> = ops.iter().collect();
        decide(model, &refs)
    }

    #[test]
    fn agrees_with_brute_force_and_always_certifies() {
        let model = RegisterModel::new(0);
        let mut seen = [0; 2];
        for seed in 0..4_000 {
            let ops = unique_history(seed, 2 + seed % 3, 3).operations();
            let expected = brute(&model, &ops);
            match decide_all(&model, &ops) {
                Decision::Linearizable(order) => {
                    assert!(expected, "seed {seed}: a pass brute force refutes");
                    let returned = ops
                        .iter()
                        .filter(|op| matches!(op.outcome, Outcome::Ok { .. }))
                        .count();
                    assert!(order.len() >= returned, "seed {seed}: {order:?}");
                }
                Decision::Violation { witness, .. } => {
                    assert!(!expected, "seed {seed}: a violation brute force refutes");
                    assert!(witness.len() <= 6, "seed {seed}: {witness:?}");
                    let sub: Vec<_> = witness.iter().map(|&i| ops[i].clone()).collect();
                    assert!(!brute(&model, &sub), "seed {seed}: the witness passes");
                }
                // Every history here is plain reads and unique writes: the zone conditions
                // decide it, and the certificate never fails.
                Decision::Search => panic!("seed {seed}: the fast path could not certify"),
            }
            seen[usize::from(expected)] += 1;
        }
        assert!(seen[0] > 400 && seen[1] > 2_000, "{seen:?}");
    }

    #[test]
    fn agrees_with_the_search_on_many_clients() {
        let model = RegisterModel::new(0);
        let mut seen = [0; 2];
        for seed in 0..1_500 {
            let h = unique_history(seed, 4 + seed % 5, 6);
            let fast = h.check(&model, 1_000_000);
            let searched = h.check_with(
                &model,
                &CheckConfig::new(1_000_000).register_fast_path(false),
            );
            assert!(!searched.is_unknown(), "seed {seed}: {searched}");
            assert_eq!(
                fast.is_linearizable(),
                searched.is_linearizable(),
                "seed {seed}"
            );
            if let (Some(f), Some(s)) = (fast.violation(), searched.violation()) {
                assert!(f.minimal, "seed {seed}: {fast}");
                assert!(
                    f.operations.len() <= s.operations.len().max(6),
                    "seed {seed}"
                );
            }
            seen[usize::from(fast.is_linearizable())] += 1;
        }
        assert!(seen[0] > 300 && seen[1] > 300, "{seen:?}");
    }

    #[test]
    fn fifty_clients_need_no_search() {
        // Fifty clients, a thousand operations, every write in flight with forty-nine others:
        // decided with a budget of zero states.
        let h = Reg::new();
        let mut value = 0;
        for round in 0..20u64 {
            let base = 100 * round;
            for c in 0..50u64 {
                let op = if c % 2 == 0 {
                    value += 1;
                    h.invoke(c, RegisterOp::Write(value), ms(base + c))
                } else {
                    h.invoke(c, RegisterOp::Read, ms(base + c))
                };
                let _ = op;
            }
        }
        // Rebuild with returns: every write takes effect at its invocation, reads see the
        // latest write invoked before them.
        let h2 = Reg::new();
        let mut last = 0;
        let mut pending = Vec::new();
        for op in h.operations() {
            let call = h2.invoke(op.client, op.op.clone(), op.invoked);
            let ret = match op.op {
                RegisterOp::Write(v) => {
                    last = v;
                    RegisterRet::Done
                }
                _ => RegisterRet::Value(last),
            };
            pending.push((call, ret, op.invoked + ms(60)));
        }
        for (call, ret, at) in pending {
            call.ok(ret, at);
        }
        assert_eq!(h2.len(), 1_000);
        let v = h2.check(&RegisterModel::new(0), 0);
        assert!(v.is_linearizable(), "{v}");
        assert_eq!(v.explored(), 0);
        // A stale read at the end is found, with a witness of three operations.
        h2.invoke(99, RegisterOp::Read, ms(5_000))
            .ok(RegisterRet::Value(1), ms(5_001));
        let config = CheckConfig::new(0).shrink_budget(1_000, None);
        let v = h2.check_with(&RegisterModel::new(0), &config);
        let w = v.violation().expect("a stale read");
        assert!(w.minimal, "{v}");
        assert_eq!(w.operations.len(), 3, "{v}");
    }

    #[test]
    fn writes_of_unknown_outcome_cost_nothing() {
        // Forty writes of unknown outcome in flight and a read of a value none wrote: the
        // search visits every subset of the writes; the fast path names the read.
        let h = Reg::new();
        for i in 0..40 {
            h.invoke(i, RegisterOp::Write(i as u32 + 1), ms(0))
                .unknown(ms(10));
        }
        h.invoke(99, RegisterOp::Read, ms(1))
            .ok(RegisterRet::Value(1000), ms(2));
        let v = h.check(&RegisterModel::new(0), 100);
        let w = v.violation().expect("nobody wrote 1000");
        assert_eq!(w.operations.len(), 1, "{v}");
        assert_eq!(w.culprits, vec![40]);
    }

    #[test]
    fn other_partitions_are_searched() {
        let model = RegisterModel::new(0);
        let decision = |h: &Reg| decide_all(&model, &h.operations());
        // A compare-and-swap, two writes of one value, a write of the initial value.
        let h = Reg::new();
        h.invoke(
            1,
            RegisterOp::Cas {
                expected: 0,
                new: 1,
            },
            ms(0),
        )
        .ok(RegisterRet::Swapped(true), ms(1));
        assert_eq!(decision(&h), Decision::Search);
        let h = Reg::new();
        h.invoke(1, RegisterOp::Write(1), ms(0))
            .ok(RegisterRet::Done, ms(1));
        h.invoke(1, RegisterOp::Write(1), ms(2))
            .ok(RegisterRet::Done, ms(3));
        assert_eq!(decision(&h), Decision::Search);
        let h = Reg::new();
        h.invoke(1, RegisterOp::Write(0), ms(0))
            .ok(RegisterRet::Done, ms(1));
        assert_eq!(decision(&h), Decision::Search);
        // Still checked, by the search.
        h.invoke(1, RegisterOp::Read, ms(2))
            .ok(RegisterRet::Value(7), ms(3));
        assert!(h.check(&model, 1_000).is_violation());
    }

    /// A random key-value history on keys that are prefixes of each other, with unique put
    /// values, some deletes (which make a key's partition searched: two deletes write the same
    /// state) and some corrupted reads.
    fn kv_history(seed: u64) -> History<KvOp<&'static str, u32>, KvRet<u32>> {
        const KEYS: [&str; 3] = ["a", "ab", ""];
        let mut rng = Rng(seed);
        let h = History::new();
        let mut value = 10;
        let mut model_state = KvModel::<&str, u32>::new().init();
        let model = KvModel::new();
        // Sequential clients with overlapping intervals: each op takes effect at its call.
        let mut open = Vec::new();
        for step in 0..24u64 {
            let key = KEYS[rng.below(3) as usize];
            let op = match rng.below(7) {
                0..=2 => KvOp::Get(key),
                3 if rng.below(3) == 0 => KvOp::Delete(key),
                _ => {
                    value += 1;
                    KvOp::Put(key, value)
                }
            };
            let (next, mut ret) = model.step(&model_state, &op);
            model_state = next;
            if matches!(op, KvOp::Get(_)) && rng.below(10) == 0 {
                ret = KvRet::Value(Some(rng.below(value as u64 + 2) as u32));
            }
            let call = h.invoke(step % 4, op, ms(3 * step));
            open.push((call, ret, 3 * step + 1 + rng.below(8)));
        }
        open.sort_by_key(|(_, _, at)| *at);
        for (call, ret, at) in open {
            call.ok(ret, ms(at));
        }
        h
    }

    #[test]
    fn key_value_partitions_agree_with_the_search() {
        let mut seen = [0; 2];
        for seed in 0..1_500 {
            let h = kv_history(seed);
            for model in [KvModel::new(), KvModel::new().with_missing(0)] {
                let fast = h.check(&model, 1_000_000);
                let searched = h.check_with(
                    &model,
                    &CheckConfig::new(1_000_000).register_fast_path(false),
                );
                assert_eq!(
                    fast.is_linearizable(),
                    searched.is_linearizable(),
                    "seed {seed}"
                );
                assert!(!fast.is_unknown(), "seed {seed}: {fast}");
                seen[usize::from(fast.is_linearizable())] += 1;
            }
        }
        assert!(seen[0] > 300 && seen[1] > 300, "{seen:?}");
    }
}
