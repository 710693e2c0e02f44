//! Invariants of the cluster runtime; see [`ClusterChecker`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::events::{ms, ClusterEvent, ClusterEventKind, ClusterObserver};
use crate::kv::ActorId;

/// Reads true time.
type TimeFn = Arc<dyn Fn() -> Duration + Send + Sync>;
/// Reads a node's own clock by name.
type NodeClockFn = Arc<dyn Fn(&str) -> Option<Duration> + Send + Sync>;

/// The clocks the checkers read: true time (for reports) and each node's own clock (for
/// validity).
#[derive(Clone)]
pub struct Clocks {
    now: TimeFn,
    node: NodeClockFn,
}

impl fmt::Debug for Clocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clocks")
            .field("now", &(self.now)())
            .finish()
    }
}

impl Clocks {
    /// `now` gives true time (in a simulation, virtual time since the start); `node` gives a
    /// node's own clock by name (`None` for an unknown node, which counts as always valid).
    pub fn new(
        now: impl Fn() -> Duration + Send + Sync + 'static,
        node: impl Fn(&str) -> Option<Duration> + Send + Sync + 'static,
    ) -> Self {
        Clocks {
            now: Arc::new(now),
            node: Arc::new(node),
        }
    }

    /// Every node reads the same clock `now` (nodes of one process).
    pub fn shared(now: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        let now: TimeFn = Arc::new(now);
        let node = now.clone();
        Clocks {
            now,
            node: Arc::new(move |_| Some(node())),
        }
    }

    /// True time now.
    pub fn now(&self) -> Duration {
        (self.now)()
    }

    /// `node`'s own clock now.
    pub fn node(&self, node: &str) -> Option<Duration> {
        (self.node)(node)
    }

    /// Whether `node` still trusts something valid until `valid_until` on its clock.
    fn valid(&self, node: &str, valid_until: Duration) -> bool {
        self.node(node).is_none_or(|c| c < valid_until)
    }
}

/// An instance or lease holder named in a violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The node.
    pub node: String,
    /// Its token.
    pub token: u64,
    /// True time since when it holds (activated or acquired).
    pub since: Duration,
    /// Its own clock when the violation was found.
    pub clock: Option<Duration>,
    /// Its validity deadline on its own clock.
    pub valid_until: Duration,
}

impl fmt::Display for Holding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (token {}, since {}, its clock {} < valid until {})",
            self.node,
            self.token,
            ms(self.since),
            self.clock.map_or("?".to_string(), ms),
            ms(self.valid_until)
        )
    }
}

/// How fencing was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FenceBreach {
    /// A write carrying an older token than the newest granted one committed.
    StaleCommitAccepted {
        /// The fence value the write read.
        fence: u64,
    },
    /// A grant's token was not larger than an earlier grant's.
    TokenNotIncreased,
}

/// How a migration was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationBreach {
    /// The target activated while the source's instance had not deactivated.
    TargetActivatedBeforeSourceDeactivated,
    /// The source handed over a state other than its last committed one.
    TransferredStateNotLastCommitted {
        /// Digest of the source's last committed state.
        last: Option<u64>,
        /// Digest of the state handed over.
        transferred: Option<u64>,
    },
    /// The target activated with a state other than the one handed over.
    RestoredStateDiffers {
        /// Digest of the state handed over.
        transferred: Option<u64>,
        /// Digest of the target's state after activation.
        restored: Option<u64>,
    },
    /// The source handled a message after it handed the actor off.
    SourceActedAfterHandoff,
}

/// How an instance acted outside its lease ([`LeaseBoundActivity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseBreach {
    /// The node held no lease of the actor under the instance's token (never acquired, or
    /// released, lost or handed away before).
    NoLease,
    /// The lease ran out: the last grant or renewal the checker saw was at `renewed_at` (true
    /// time), and a lease lasts `duration` of true time at most.
    Expired {
        /// True time of the last acquisition or renewal of this lease.
        renewed_at: Duration,
        /// The lease duration.
        duration: Duration,
    },
    /// A newer token had been granted (to `newest_holder`).
    Superseded {
        /// The newest granted token.
        newest: u64,
        /// Who it was granted to.
        newest_holder: String,
    },
}

/// A broken cluster invariant, with the facts needed to understand it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterViolation {
    /// Two instances of one actor were active at once.
    SingleActivation {
        /// The actor.
        actor: ActorId,
        /// True time of detection.
        at: Duration,
        /// The active instances.
        active: Vec<Holding>,
    },
    /// Two nodes held a valid lease of one actor at once.
    LeaseUniqueness {
        /// The actor.
        actor: ActorId,
        /// True time of detection.
        at: Duration,
        /// The holders whose lease was valid by their own clock.
        holders: Vec<Holding>,
    },
    /// Fencing tokens went backwards or a stale write committed.
    FencingTokenMonotonic {
        /// The actor.
        actor: ActorId,
        /// True time of detection.
        at: Duration,
        /// The node that wrote or was granted the offending token.
        node: String,
        /// The offending token.
        token: u64,
        /// The newest token granted before.
        newest: u64,
        /// Who it was granted to.
        newest_holder: String,
        /// When (true time).
        granted_at: Duration,
        /// What happened.
        breach: FenceBreach,
    },
    /// A migration ran the actor twice or lost state.
    MigrationAtomicity {
        /// The actor.
        actor: ActorId,
        /// True time of detection.
        at: Duration,
        /// Source node.
        from: String,
        /// Target node.
        to: String,
        /// Source token.
        from_token: u64,
        /// Target token (0 if not assigned yet).
        to_token: u64,
        /// What happened.
        breach: MigrationBreach,
    },
    /// An instance acted (activated or started a message) outside the lease its node held.
    LeaseBoundActivity {
        /// The actor.
        actor: ActorId,
        /// True time of detection.
        at: Duration,
        /// The node of the instance.
        node: String,
        /// The token it runs under.
        token: u64,
        /// What it did (`activated`, `started a message`).
        action: &'static str,
        /// Why that was outside its lease.
        breach: LeaseBreach,
    },
    /// Two nodes believed they owned one actor.
    NoSplitBrain {
        /// The actor.
        actor: ActorId,
        /// True time of detection.
        at: Duration,
        /// The nodes and the tokens they believe they own it under.
        owners: Vec<(String, u64)>,
    },
}

impl ClusterViolation {
    /// The invariant's name.
    pub fn invariant(&self) -> &'static str {
        match self {
            ClusterViolation::SingleActivation { .. } => "SingleActivation",
            ClusterViolation::LeaseUniqueness { .. } => "LeaseUniqueness",
            ClusterViolation::FencingTokenMonotonic { .. } => "FencingTokenMonotonic",
            ClusterViolation::MigrationAtomicity { .. } => "MigrationAtomicity",
            ClusterViolation::LeaseBoundActivity { .. } => "LeaseBoundActivity",
            ClusterViolation::NoSplitBrain { .. } => "NoSplitBrain",
        }
    }

    /// The actor concerned.
    pub fn actor(&self) -> &ActorId {
        match self {
            ClusterViolation::SingleActivation { actor, .. }
            | ClusterViolation::LeaseUniqueness { actor, .. }
            | ClusterViolation::FencingTokenMonotonic { actor, .. }
            | ClusterViolation::MigrationAtomicity { actor, .. }
            | ClusterViolation::LeaseBoundActivity { actor, .. }
            | ClusterViolation::NoSplitBrain { actor, .. } => actor,
        }
    }

    /// True time of detection.
    pub fn at(&self) -> Duration {
        match self {
            ClusterViolation::SingleActivation { at, .. }
            | ClusterViolation::LeaseUniqueness { at, .. }
            | ClusterViolation::FencingTokenMonotonic { at, .. }
            | ClusterViolation::MigrationAtomicity { at, .. }
            | ClusterViolation::LeaseBoundActivity { at, .. }
            | ClusterViolation::NoSplitBrain { at, .. } => *at,
        }
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

impl fmt::Display for ClusterViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at {}: {} ",
            self.invariant(),
            ms(self.at()),
            self.actor()
        )?;
        match self {
            ClusterViolation::SingleActivation { active, .. } => write!(
                f,
                "is active in {} instances at once: {}",
                active.len(),
                list(active)
            ),
            ClusterViolation::LeaseUniqueness { holders, .. } => write!(
                f,
                "has {} valid lease holders at once: {}",
                holders.len(),
                list(holders)
            ),
            ClusterViolation::FencingTokenMonotonic {
                node,
                token,
                newest,
                newest_holder,
                granted_at,
                breach,
                ..
            } => match breach {
                FenceBreach::StaleCommitAccepted { fence } => write!(
                    f,
                    "{node} committed a write with token {token} (fence read {fence}) after \
                     token {newest} was granted to {newest_holder} at {}",
                    ms(*granted_at)
                ),
                FenceBreach::TokenNotIncreased => write!(
                    f,
                    "{node} was granted token {token}, not newer than token {newest} granted \
                     to {newest_holder} at {}",
                    ms(*granted_at)
                ),
            },
            ClusterViolation::MigrationAtomicity {
                from,
                to,
                from_token,
                to_token,
                breach,
                ..
            } => {
                write!(
                    f,
                    "migration {from} (token {from_token}) -> {to} (token {to_token}): "
                )?;
                match breach {
                    MigrationBreach::TargetActivatedBeforeSourceDeactivated => {
                        write!(f, "the target activated before the source deactivated")
                    }
                    MigrationBreach::TransferredStateNotLastCommitted { last, transferred } => {
                        write!(
                            f,
                            "the source handed over state {} but last committed {}",
                            digest(*transferred),
                            digest(*last)
                        )
                    }
                    MigrationBreach::RestoredStateDiffers {
                        transferred,
                        restored,
                    } => write!(
                        f,
                        "the target activated with state {} but was handed {}",
                        digest(*restored),
                        digest(*transferred)
                    ),
                    MigrationBreach::SourceActedAfterHandoff => {
                        write!(f, "the source handled a message after handing off")
                    }
                }
            }
            ClusterViolation::LeaseBoundActivity {
                node,
                token,
                action,
                breach,
                ..
            } => {
                write!(f, "{node} {action} under token {token} ")?;
                match breach {
                    LeaseBreach::NoLease => {
                        write!(f, "without holding a lease under that token")
                    }
                    LeaseBreach::Expired {
                        renewed_at,
                        duration,
                    } => write!(
                        f,
                        "after its lease ran out: last acquired or renewed at {} (true time), \
                         a lease lasts at most {}",
                        ms(*renewed_at),
                        ms(*duration)
                    ),
                    LeaseBreach::Superseded {
                        newest,
                        newest_holder,
                    } => write!(f, "after token {newest} was granted to {newest_holder}"),
                }
            }
            ClusterViolation::NoSplitBrain { owners, .. } => {
                let owners: Vec<String> = owners
                    .iter()
                    .map(|(n, t)| format!("{n} (token {t})"))
                    .collect();
                write!(f, "is believed owned by {}", owners.join(" and "))
            }
        }
    }
}

fn digest(d: Option<u64>) -> String {
    d.map_or("<none>".to_string(), |d| format!("{d:016x}"))
}

impl std::error::Error for ClusterViolation {}

/// One invariant, fed every event of a run.
pub trait ClusterInvariant: Send {
    /// Its name, as in [`ClusterViolation::invariant`].
    fn name(&self) -> &'static str;

    /// Updates the invariant's model with `event` and checks it.
    fn observe(&mut self, event: &ClusterEvent, clocks: &Clocks) -> Option<ClusterViolation>;

    /// Re-checks time-dependent conditions now (between events). Default: nothing.
    fn check(&mut self, clocks: &Clocks) -> Option<ClusterViolation> {
        let _ = clocks;
        None
    }
}

#[derive(Debug, Clone)]
struct Held {
    node: String,
    token: u64,
    since: Duration,
    valid_until: Duration,
}

impl Held {
    fn fact(&self, clocks: &Clocks) -> Holding {
        Holding {
            node: self.node.clone(),
            token: self.token,
            since: self.since,
            clock: clocks.node(&self.node),
            valid_until: self.valid_until,
        }
    }
}

/// Finds more than one valid entry among `held`; reports each set of culprits once.
fn conflict(
    held: &[Held],
    clocks: &Clocks,
    reported: &mut BTreeSet<Vec<(String, u64)>>,
) -> Option<Vec<Holding>> {
    let valid: Vec<&Held> = held
        .iter()
        .filter(|h| clocks.valid(&h.node, h.valid_until))
        .collect();
    if valid.len() < 2 {
        return None;
    }
    let key: Vec<(String, u64)> = valid.iter().map(|h| (h.node.clone(), h.token)).collect();
    if !reported.insert(key) {
        return None;
    }
    Some(valid.iter().map(|h| h.fact(clocks)).collect())
}

/// Never two active instances of one actor. An instance is active from its `Activated` event
/// until its `Deactivated` or `LeaseLost` event, or until its lease's validity runs out on its
/// own node's clock (a crashed or paused node reports nothing, but its lease runs out).
/// Checked at every activation, renewal and handled message, and at every
/// [`ClusterInvariant::check`].
#[derive(Debug, Default)]
pub struct SingleActivation {
    instances: BTreeMap<ActorId, Vec<Held>>,
    reported: BTreeSet<Vec<(String, u64)>>,
}

impl SingleActivation {
    fn check_actor(&mut self, actor: &ActorId, clocks: &Clocks) -> Option<ClusterViolation> {
        let held = self.instances.get(actor)?;
        conflict(held, clocks, &mut self.reported).map(|active| {
            ClusterViolation::SingleActivation {
                actor: actor.clone(),
                at: clocks.now(),
                active,
            }
        })
    }
}

impl ClusterInvariant for SingleActivation {
    fn name(&self) -> &'static str {
        "SingleActivation"
    }

    fn observe(&mut self, e: &ClusterEvent, clocks: &Clocks) -> Option<ClusterViolation> {
        let same = |h: &Held, token: u64| h.node == e.node && h.token == token;
        match &e.kind {
            ClusterEventKind::Activated {
                token, valid_until, ..
            } => {
                let list = self.instances.entry(e.actor.clone()).or_default();
                list.retain(|h| !same(h, *token));
                list.push(Held {
                    node: e.node.clone(),
                    token: *token,
                    since: clocks.now(),
                    valid_until: *valid_until,
                });
            }
            ClusterEventKind::LeaseRenewed { token, valid_until } => {
                let list = self.instances.get_mut(&e.actor)?;
                for h in list.iter_mut().filter(|h| same(h, *token)) {
                    h.valid_until = *valid_until;
                }
            }
            ClusterEventKind::Deactivated { token, .. }
            | ClusterEventKind::LeaseLost { token, .. } => {
                if let Some(list) = self.instances.get_mut(&e.actor) {
                    list.retain(|h| !same(h, *token));
                }
                return None;
            }
            ClusterEventKind::Handled { .. } => {}
            _ => return None,
        }
        self.check_actor(&e.actor, clocks)
    }

    fn check(&mut self, clocks: &Clocks) -> Option<ClusterViolation> {
        let actors: Vec<ActorId> = self.instances.keys().cloned().collect();
        actors.iter().find_map(|a| self.check_actor(a, clocks))
    }
}

/// At most one node holds a lease of an actor that is valid by its own clock. A node holds a
/// lease from `LeaseAcquired` until `LeaseReleased` or `LeaseLost` (or until it runs out).
#[derive(Debug, Default)]
pub struct LeaseUniqueness {
    holders: BTreeMap<ActorId, Vec<Held>>,
    reported: BTreeSet<Vec<(String, u64)>>,
}

impl LeaseUniqueness {
    fn check_actor(&mut self, actor: &ActorId, clocks: &Clocks) -> Option<ClusterViolation> {
        let held = self.holders.get(actor)?;
        conflict(held, clocks, &mut self.reported).map(|holders| {
            ClusterViolation::LeaseUniqueness {
                actor: actor.clone(),
                at: clocks.now(),
                holders,
            }
        })
    }
}

impl ClusterInvariant for LeaseUniqueness {
    fn name(&self) -> &'static str {
        "LeaseUniqueness"
    }

    fn observe(&mut self, e: &ClusterEvent, clocks: &Clocks) -> Option<ClusterViolation> {
        let list = self.holders.entry(e.actor.clone()).or_default();
        match &e.kind {
            ClusterEventKind::LeaseAcquired {
                token, valid_until, ..
            } => {
                list.retain(|h| h.node != e.node);
                list.push(Held {
                    node: e.node.clone(),
                    token: *token,
                    since: clocks.now(),
                    valid_until: *valid_until,
                });
            }
            ClusterEventKind::LeaseRenewed { token, valid_until } => {
                match list
                    .iter_mut()
                    .find(|h| h.node == e.node && h.token == *token)
                {
                    Some(h) => h.valid_until = *valid_until,
                    None => list.push(Held {
                        node: e.node.clone(),
                        token: *token,
                        since: clocks.now(),
                        valid_until: *valid_until,
                    }),
                }
            }
            ClusterEventKind::LeaseReleased { token }
            | ClusterEventKind::LeaseLost { token, .. } => {
                list.retain(|h| !(h.node == e.node && h.token == *token));
                return None;
            }
            _ => return None,
        }
        self.check_actor(&e.actor, clocks)
    }

    fn check(&mut self, clocks: &Clocks) -> Option<ClusterViolation> {
        let actors: Vec<ActorId> = self.holders.keys().cloned().collect();
        actors.iter().find_map(|a| self.check_actor(a, clocks))
    }
}

#[derive(Debug, Clone)]
struct Grant {
    token: u64,
    node: String,
    at: Duration,
    /// Set when the grant is a migration hand-off that this node may claim.
    handoff_to: Option<String>,
}

/// Fencing tokens strictly increase with every grant (acquisition, takeover, hand-off; a
/// hand-off's target claims the token it was handed), and no fenced write carrying a token
/// older than the newest granted one commits.
#[derive(Debug, Default)]
pub struct FencingTokenMonotonic {
    granted: BTreeMap<ActorId, Grant>,
}

impl FencingTokenMonotonic {
    fn violation(
        &self,
        e: &ClusterEvent,
        node: &str,
        token: u64,
        breach: FenceBreach,
        clocks: &Clocks,
    ) -> Option<ClusterViolation> {
        let g = self.granted.get(&e.actor)?;
        Some(ClusterViolation::FencingTokenMonotonic {
            actor: e.actor.clone(),
            at: clocks.now(),
            node: node.to_string(),
            token,
            newest: g.token,
            newest_holder: g.node.clone(),
            granted_at: g.at,
            breach,
        })
    }

    fn grant(
        &mut self,
        e: &ClusterEvent,
        grant: Grant,
        claim: bool,
        clocks: &Clocks,
    ) -> Option<ClusterViolation> {
        let found = match self.granted.get(&e.actor) {
            Some(g) if grant.token < g.token => true,
            Some(g) if grant.token == g.token => {
                !(claim && g.handoff_to.as_deref() == Some(grant.node.as_str()))
            }
            _ => false,
        };
        let v = if found {
            self.violation(
                e,
                &grant.node,
                grant.token,
                FenceBreach::TokenNotIncreased,
                clocks,
            )
        } else {
            None
        };
        let newer = self
            .granted
            .get(&e.actor)
            .is_none_or(|g| grant.token >= g.token);
        if newer {
            self.granted.insert(e.actor.clone(), grant);
        }
        v
    }
}

impl ClusterInvariant for FencingTokenMonotonic {
    fn name(&self) -> &'static str {
        "FencingTokenMonotonic"
    }

    fn observe(&mut self, e: &ClusterEvent, clocks: &Clocks) -> Option<ClusterViolation> {
        match &e.kind {
            ClusterEventKind::LeaseAcquired {
                token,
                claimed_handoff,
                ..
            } => {
                let grant = Grant {
                    token: *token,
                    node: e.node.clone(),
                    at: clocks.now(),
                    handoff_to: None,
                };
                self.grant(e, grant, *claimed_handoff, clocks)
            }
            ClusterEventKind::Transferred { to, to_token, .. } => {
                let grant = Grant {
                    token: *to_token,
                    node: to.clone(),
                    at: clocks.now(),
                    handoff_to: Some(to.clone()),
                };
                self.grant(e, grant, false, clocks)
            }
            ClusterEventKind::FencedCommit {
                token,
                current,
                committed: true,
            } => {
                let stale = self.granted.get(&e.actor).is_some_and(|g| *token < g.token);
                if stale {
                    self.violation(
                        e,
                        &e.node,
                        *token,
                        FenceBreach::StaleCommitAccepted { fence: *current },
                        clocks,
                    )
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Migration {
    from: String,
    to: String,
    from_token: u64,
    to_token: Option<u64>,
    state: Option<u64>,
}

/// Migrations never run an actor twice and carry exactly the last committed state: the target
/// activates (with the token it was handed) only after the source's instance deactivated, with
/// the state the source handed over, which must be the state of the source's last handled
/// message; and the source handles no message after handing off.
#[derive(Debug, Default)]
pub struct MigrationAtomicity {
    last_state: BTreeMap<(ActorId, String, u64), Option<u64>>,
    deactivated: BTreeSet<(ActorId, String, u64)>,
    migrations: BTreeMap<ActorId, Migration>,
    /// Source instances that handed their actor off, with their migration.
    handed_off: BTreeMap<(ActorId, String, u64), Migration>,
}

impl MigrationAtomicity {
    fn violation(
        e: &ClusterEvent,
        m: &Migration,
        breach: MigrationBreach,
        clocks: &Clocks,
    ) -> ClusterViolation {
        ClusterViolation::MigrationAtomicity {
            actor: e.actor.clone(),
            at: clocks.now(),
            from: m.from.clone(),
            to: m.to.clone(),
            from_token: m.from_token,
            to_token: m.to_token.unwrap_or(0),
            breach,
        }
    }
}

impl ClusterInvariant for MigrationAtomicity {
    fn name(&self) -> &'static str {
        "MigrationAtomicity"
    }

    fn observe(&mut self, e: &ClusterEvent, clocks: &Clocks) -> Option<ClusterViolation> {
        let key = |token: u64| (e.actor.clone(), e.node.clone(), token);
        match &e.kind {
            ClusterEventKind::MigrationStarted { to, token } => {
                self.migrations.insert(
                    e.actor.clone(),
                    Migration {
                        from: e.node.clone(),
                        to: to.clone(),
                        from_token: *token,
                        to_token: None,
                        state: None,
                    },
                );
                None
            }
            ClusterEventKind::Deactivated { token, .. } => {
                self.deactivated.insert(key(*token));
                None
            }
            ClusterEventKind::Handled { token, state } => {
                self.last_state.insert(key(*token), *state);
                let m = self.handed_off.get(&key(*token))?;
                Some(Self::violation(
                    e,
                    m,
                    MigrationBreach::SourceActedAfterHandoff,
                    clocks,
                ))
            }
            ClusterEventKind::Transferred {
                from_token,
                to_token,
                state,
                ..
            } => {
                let last = self.last_state.get(&key(*from_token)).copied().flatten();
                let m = self.migrations.get_mut(&e.actor)?;
                if m.from != e.node || m.from_token != *from_token {
                    return None;
                }
                m.to_token = Some(*to_token);
                m.state = *state;
                let m = m.clone();
                self.handed_off.insert(key(*from_token), m.clone());
                (last.is_some() && state.is_some() && last != *state).then(|| {
                    Self::violation(
                        e,
                        &m,
                        MigrationBreach::TransferredStateNotLastCommitted {
                            last,
                            transferred: *state,
                        },
                        clocks,
                    )
                })
            }
            ClusterEventKind::Activated { token, state, .. } => {
                self.last_state.insert(key(*token), *state);
                let m = self.migrations.get(&e.actor)?;
                if m.to != e.node || m.to_token != Some(*token) {
                    return None;
                }
                let m = self.migrations.remove(&e.actor)?;
                let source = (e.actor.clone(), m.from.clone(), m.from_token);
                if !self.deactivated.contains(&source) {
                    return Some(Self::violation(
                        e,
                        &m,
                        MigrationBreach::TargetActivatedBeforeSourceDeactivated,
                        clocks,
                    ));
                }
                (m.state.is_some() && state.is_some() && m.state != *state).then(|| {
                    Self::violation(
                        e,
                        &m,
                        MigrationBreach::RestoredStateDiffers {
                            transferred: m.state,
                            restored: *state,
                        },
                        clocks,
                    )
                })
            }
            _ => None,
        }
    }
}

/// Every instance acts only inside a lease its node holds, judged from independent facts
/// rather than from the validity the runtime reports: the lease grants, renewals, releases
/// and losses the checker saw, the fencing tokens granted, and true (virtual) time.
///
/// When an instance activates or starts a message (an [`Activated`] or [`Handling`] event,
/// emitted right after the runtime decided it may act), its node must hold a lease under the
/// instance's token (acquired or claimed, not released, lost or handed away since), that
/// lease must have been acquired or renewed less than one lease `duration` of *true time*
/// ago, and no newer token may have been granted. The bound follows from the lease protocol
/// alone: a holder reads its clock before the transaction that acquires or renews, so its
/// validity ends before true time `t0 + D` (see [`LeaseManager`](crate::LeaseManager)), and
/// the checker sees the grant at a true time after `t0`. It does not trust `valid_until`: an
/// instance that keeps acting after its lease ran out — a check done before a wait, a
/// validity computed wrongly, a paused holder — breaks it even when the runtime's own claims
/// look consistent. Together with [`FencingTokenMonotonic`] (tokens are granted once) it
/// implies single activation without believing the runtime.
///
/// [`Activated`]: ClusterEventKind::Activated
/// [`Handling`]: ClusterEventKind::Handling
#[derive(Debug)]
pub struct LeaseBoundActivity {
    duration: Duration,
    /// Per actor: the leases held, `(node, token)` -> true time of the last grant or renewal.
    held: BTreeMap<ActorId, BTreeMap<(String, u64), Duration>>,
    /// Per actor: the newest granted token and its holder.
    newest: BTreeMap<ActorId, (u64, String)>,
}

impl LeaseBoundActivity {
    /// The invariant for leases lasting `duration` ([`LeaseConfig::duration`](crate::LeaseConfig)).
    pub fn new(duration: Duration) -> Self {
        LeaseBoundActivity {
            duration,
            held: BTreeMap::new(),
            newest: BTreeMap::new(),
        }
    }

    fn granted(&mut self, actor: &ActorId, token: u64, node: &str) {
        let newest = self
            .newest
            .entry(actor.clone())
            .or_insert((0, String::new()));
        if token >= newest.0 {
            *newest = (token, node.to_string());
        }
    }

    fn judge(
        &self,
        e: &ClusterEvent,
        token: u64,
        action: &'static str,
        clocks: &Clocks,
    ) -> Option<ClusterViolation> {
        let now = clocks.now();
        let breach = match self
            .held
            .get(&e.actor)
            .and_then(|h| h.get(&(e.node.clone(), token)))
        {
            None => LeaseBreach::NoLease,
            Some(renewed_at) if now >= *renewed_at + self.duration => LeaseBreach::Expired {
                renewed_at: *renewed_at,
                duration: self.duration,
            },
            Some(_) => match self.newest.get(&e.actor) {
                Some((newest, holder)) if *newest > token => LeaseBreach::Superseded {
                    newest: *newest,
                    newest_holder: holder.clone(),
                },
                _ => return None,
            },
        };
        Some(ClusterViolation::LeaseBoundActivity {
            actor: e.actor.clone(),
            at: now,
            node: e.node.clone(),
            token,
            action,
            breach,
        })
    }
}

impl ClusterInvariant for LeaseBoundActivity {
    fn name(&self) -> &'static str {
        "LeaseBoundActivity"
    }

    fn observe(&mut self, e: &ClusterEvent, clocks: &Clocks) -> Option<ClusterViolation> {
        let key = |token: u64| (e.node.clone(), token);
        match &e.kind {
            ClusterEventKind::LeaseAcquired { token, .. } => {
                self.granted(&e.actor, *token, &e.node);
                self.held
                    .entry(e.actor.clone())
                    .or_default()
                    .insert(key(*token), clocks.now());
                None
            }
            ClusterEventKind::LeaseRenewed { token, .. } => {
                if let Some(at) = self
                    .held
                    .get_mut(&e.actor)
                    .and_then(|h| h.get_mut(&key(*token)))
                {
                    *at = clocks.now();
                }
                None
            }
            ClusterEventKind::LeaseReleased { token }
            | ClusterEventKind::LeaseLost { token, .. } => {
                if let Some(h) = self.held.get_mut(&e.actor) {
                    h.remove(&key(*token));
                }
                None
            }
            ClusterEventKind::Transferred { to, to_token, .. } => {
                self.granted(&e.actor, *to_token, to);
                None
            }
            ClusterEventKind::Activated { token, .. } => self.judge(e, *token, "activated", clocks),
            ClusterEventKind::Handling { token } => {
                self.judge(e, *token, "started a message", clocks)
            }
            _ => None,
        }
    }
}

/// No two nodes believe they own one actor. Unlike the event-driven invariants, this one is
/// checked on snapshots of the runtimes' own beliefs
/// ([`ActorRuntime::active_actors`](crate::ActorRuntime::active_actors)), typically right after
/// a partition heals and periodically besides.
#[derive(Debug, Default)]
pub struct NoSplitBrain {
    checks: u64,
}

impl NoSplitBrain {
    /// Checks one snapshot: `beliefs` maps each node to the actors (with tokens) it believes it
    /// owns; `at` is the true time of the snapshot. Returns the violation, if any.
    pub fn check(
        &mut self,
        at: Duration,
        beliefs: &BTreeMap<String, Vec<(ActorId, u64)>>,
    ) -> Option<ClusterViolation> {
        self.checks += 1;
        let mut owners: BTreeMap<&ActorId, Vec<(String, u64)>> = BTreeMap::new();
        for (node, actors) in beliefs {
            for (actor, token) in actors {
                owners
                    .entry(actor)
                    .or_default()
                    .push((node.clone(), *token));
            }
        }
        owners
            .into_iter()
            .find(|(_, o)| o.len() > 1)
            .map(|(actor, owners)| ClusterViolation::NoSplitBrain {
                actor: actor.clone(),
                at,
                owners,
            })
    }

    /// How many snapshots were checked.
    pub fn checks(&self) -> u64 {
        self.checks
    }
}

/// What a [`ClusterChecker`] saw, for tests to show their workload did something.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckerStats {
    /// Events observed.
    pub events: u64,
    /// Leases acquired (including claims of hand-offs).
    pub acquisitions: u64,
    /// Acquisitions by a node other than the previous holder, not by hand-off.
    pub takeovers: u64,
    /// Renewals.
    pub renewals: u64,
    /// Leases found lost by their holder.
    pub losses: u64,
    /// Activations.
    pub activations: u64,
    /// Deactivations.
    pub deactivations: u64,
    /// Messages handled.
    pub handled: u64,
    /// Fenced commits that committed.
    pub commits: u64,
    /// Fenced commits rejected for a stale token.
    pub stale_rejected: u64,
    /// Migrations whose hand-off committed.
    pub transfers: u64,
    /// Activations that restored a handed-off state.
    pub restored: u64,
}

impl fmt::Display for CheckerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events: {} acquisitions ({} takeovers), {} renewals, {} losses, {} activations, \
             {} deactivations, {} handled, {} commits, {} stale writes rejected, {} transfers, \
             {} restored",
            self.events,
            self.acquisitions,
            self.takeovers,
            self.renewals,
            self.losses,
            self.activations,
            self.deactivations,
            self.handled,
            self.commits,
            self.stale_rejected,
            self.transfers,
            self.restored
        )
    }
}

struct CheckerState {
    invariants: Vec<Box<dyn ClusterInvariant>>,
    violations: Vec<ClusterViolation>,
    /// The recent events of each violation's actor when it was found.
    contexts: Vec<Vec<(Duration, ClusterEvent)>>,
    stats: CheckerStats,
    last_holder: BTreeMap<ActorId, String>,
    /// The last events of each actor, with the true time they were observed.
    recent: BTreeMap<ActorId, std::collections::VecDeque<(Duration, ClusterEvent)>>,
}

/// How many recent events per actor a checker keeps for reports.
const RECENT_EVENTS: usize = 24;

impl CheckerState {
    fn record(&mut self, v: ClusterViolation) {
        if self.violations.len() < MAX_VIOLATIONS {
            let context = self
                .recent
                .get(v.actor())
                .map(|q| q.iter().cloned().collect())
                .unwrap_or_default();
            self.violations.push(v);
            self.contexts.push(context);
        }
    }
}

/// The most violations a checker keeps (the first one is what matters).
const MAX_VIOLATIONS: usize = 64;

/// A [`ClusterObserver`] that checks [`SingleActivation`], [`LeaseUniqueness`],
/// [`FencingTokenMonotonic`] and [`MigrationAtomicity`] on every event, keeps the violations
/// found (in order) and counts what happened.
///
/// Invariants of the cluster runtime (leases, activation, migration), checked on every
/// [`ClusterEvent`] as it happens and, for the time-dependent ones, whenever the test asks
/// ([`ClusterChecker::check_now`]).
///
/// | invariant | holds when |
/// |---|---|
/// | [`SingleActivation`] | no two instances of an actor are active at once; an instance is active from its activation until it deactivates, learns it lost its lease, or its lease's validity runs out *on its own node's clock* |
/// | [`LeaseUniqueness`] | at most one node holds a lease of an actor that is valid by that node's own (possibly skewed) clock |
/// | [`FencingTokenMonotonic`] | tokens grow with every grant, and no write carrying a token older than the newest granted one commits |
/// | [`MigrationAtomicity`] | a migration target activates only after the source deactivated, with exactly the state the source last committed, and the source acts no more after handing off |
/// | [`LeaseBoundActivity`] ([`ClusterChecker::for_leases`]) | an instance activates or starts a message only while its node holds a lease under its token, granted or renewed less than one lease duration of true time ago, with no newer token granted — judged from the grants and true time, not from the validity the runtime reports |
/// | [`NoSplitBrain`] | no two nodes believe they own the same actor (checked on the runtimes' own beliefs, e.g. after a partition heals) |
///
/// Validity is judged with each node's own clock, read at check time through [`Clocks`]: in a
/// simulation, the node's skewed clock; in a single process, one shared clock.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use kelpie_actors::invariants::{ClusterChecker, Clocks};
/// use kelpie_actors::{ActorId, ClusterEvent, ClusterEventKind, ClusterObserver};
///
/// let checker = ClusterChecker::new(Clocks::shared(|| Duration::from_secs(1)));
/// let activated = |node: &str, token| ClusterEvent {
///     node: node.into(),
///     actor: ActorId::new("ns", "a").unwrap(),
///     clock: Duration::from_secs(1),
///     kind: ClusterEventKind::Activated {
///         token,
///         valid_until: Duration::from_secs(2),
///         state: None,
///         restored_from: None,
///     },
/// };
/// checker.on_event(&activated("n1", 1));
/// assert!(checker.first_violation().is_none());
/// checker.on_event(&activated("n2", 2));
/// let v = checker.first_violation().unwrap();
/// assert_eq!(v.invariant(), "SingleActivation");
/// ```
pub struct ClusterChecker {
    clocks: Clocks,
    state: Mutex<CheckerState>,
}

impl fmt::Debug for ClusterChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterChecker")
            .field("stats", &self.stats())
            .field("violations", &self.violations().len())
            .finish()
    }
}

impl ClusterChecker {
    /// A checker of the four event-driven invariants.
    pub fn new(clocks: Clocks) -> Self {
        Self::with_invariants(
            clocks,
            vec![
                Box::new(SingleActivation::default()),
                Box::new(LeaseUniqueness::default()),
                Box::new(FencingTokenMonotonic::default()),
                Box::new(MigrationAtomicity::default()),
            ],
        )
    }

    /// A checker of the four event-driven invariants plus [`LeaseBoundActivity`] for leases
    /// of `config`'s duration: the checker for runtimes whose lease config the test knows.
    pub fn for_leases(clocks: Clocks, config: &crate::LeaseConfig) -> Self {
        Self::with_invariants(
            clocks,
            vec![
                Box::new(SingleActivation::default()),
                Box::new(LeaseUniqueness::default()),
                Box::new(FencingTokenMonotonic::default()),
                Box::new(MigrationAtomicity::default()),
                Box::new(LeaseBoundActivity::new(config.duration)),
            ],
        )
    }

    /// A checker of the given invariants.
    pub fn with_invariants(clocks: Clocks, invariants: Vec<Box<dyn ClusterInvariant>>) -> Self {
        ClusterChecker {
            clocks,
            state: Mutex::new(CheckerState {
                invariants,
                violations: Vec::new(),
                contexts: Vec::new(),
                stats: CheckerStats::default(),
                last_holder: BTreeMap::new(),
                recent: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CheckerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The clocks the checker reads.
    pub fn clocks(&self) -> &Clocks {
        &self.clocks
    }

    /// Re-checks the time-dependent invariants now (call it periodically: a node's clock can
    /// change between events).
    pub fn check_now(&self) {
        let mut st = self.lock();
        let found: Vec<ClusterViolation> = st
            .invariants
            .iter_mut()
            .filter_map(|inv| inv.check(&self.clocks))
            .collect();
        for v in found {
            st.record(v);
        }
    }

    /// Every violation found so far, in the order found.
    pub fn violations(&self) -> Vec<ClusterViolation> {
        self.lock().violations.clone()
    }

    /// The first violation found, if any.
    pub fn first_violation(&self) -> Option<ClusterViolation> {
        self.lock().violations.first().cloned()
    }

    /// The first violation of the invariant named `invariant`, if any.
    pub fn violation_of(&self, invariant: &str) -> Option<ClusterViolation> {
        self.lock()
            .violations
            .iter()
            .find(|v| v.invariant() == invariant)
            .cloned()
    }

    /// The last events (up to 24) of `actor` so far, with the true time each was observed.
    pub fn recent_events(&self, actor: &ActorId) -> Vec<(Duration, ClusterEvent)> {
        self.lock()
            .recent
            .get(actor)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A violation this checker found, followed by the events of its actor that led to it
    /// (those observed up to the moment it was found), one per line.
    pub fn explain(&self, violation: &ClusterViolation) -> String {
        let st = self.lock();
        let mut out = violation.to_string();
        let Some(i) = st.violations.iter().position(|v| v == violation) else {
            return out;
        };
        out.push_str("\n  events of the actor up to the violation (true time, then the event):");
        for (at, e) in &st.contexts[i] {
            out.push_str(&format!("\n    [{}] {e}", ms(*at)));
        }
        out
    }

    /// What the checker saw so far.
    pub fn stats(&self) -> CheckerStats {
        self.lock().stats.clone()
    }
}

impl ClusterObserver for ClusterChecker {
    fn on_event(&self, event: &ClusterEvent) {
        let mut st = self.lock();
        let CheckerState {
            invariants,
            stats,
            last_holder,
            recent,
            ..
        } = &mut *st;
        stats.events += 1;
        let queue = recent.entry(event.actor.clone()).or_default();
        if queue.len() == RECENT_EVENTS {
            queue.pop_front();
        }
        queue.push_back((self.clocks.now(), event.clone()));
        match &event.kind {
            ClusterEventKind::LeaseAcquired {
                claimed_handoff, ..
            } => {
                stats.acquisitions += 1;
                let previous = last_holder.insert(event.actor.clone(), event.node.clone());
                if !claimed_handoff && previous.is_some_and(|p| p != event.node) {
                    stats.takeovers += 1;
                }
            }
            ClusterEventKind::LeaseRenewed { .. } => stats.renewals += 1,
            ClusterEventKind::LeaseLost { .. } => stats.losses += 1,
            ClusterEventKind::Activated { restored_from, .. } => {
                stats.activations += 1;
                stats.restored += u64::from(restored_from.is_some());
            }
            ClusterEventKind::Deactivated { .. } => stats.deactivations += 1,
            ClusterEventKind::Handled { .. } => stats.handled += 1,
            ClusterEventKind::FencedCommit { committed, .. } => {
                if *committed {
                    stats.commits += 1;
                } else {
                    stats.stale_rejected += 1;
                }
            }
            ClusterEventKind::Transferred { .. } => stats.transfers += 1,
            _ => {}
        }
        let found: Vec<ClusterViolation> = invariants
            .iter_mut()
            .filter_map(|inv| inv.observe(event, &self.clocks))
            .collect();
        for v in found {
            st.record(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::DeactivationReason;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn actor() -> ActorId {
        ActorId::new("ns", "a").unwrap()
    }

    fn ev(node: &str, kind: ClusterEventKind) -> ClusterEvent {
        ClusterEvent {
            node: node.into(),
            actor: actor(),
            clock: Duration::ZERO,
            kind,
        }
    }

    /// A clock per node (ms), settable by the test; true time is n1's clock.
    fn clocks() -> (Clocks, Arc<BTreeMap<&'static str, AtomicU64>>) {
        let c: Arc<BTreeMap<&'static str, AtomicU64>> = Arc::new(
            ["n1", "n2", "n3"]
                .into_iter()
                .map(|n| (n, AtomicU64::new(0)))
                .collect(),
        );
        let (a, b) = (c.clone(), c.clone());
        let clocks = Clocks::new(
            move || Duration::from_millis(a["n1"].load(Ordering::Relaxed)),
            move |n| {
                b.get(n)
                    .map(|v| Duration::from_millis(v.load(Ordering::Relaxed)))
            },
        );
        (clocks, c)
    }

    fn set(c: &BTreeMap<&'static str, AtomicU64>, node: &str, ms: u64) {
        c[node].store(ms, Ordering::Relaxed);
    }

    fn activated(token: u64, until_ms: u64) -> ClusterEventKind {
        ClusterEventKind::Activated {
            token,
            valid_until: Duration::from_millis(until_ms),
            state: None,
            restored_from: None,
        }
    }

    #[test]
    fn single_activation_counts_only_instances_valid_by_their_own_clock() {
        let (clocks, c) = clocks();
        let mut inv = SingleActivation::default();
        assert!(inv
            .observe(&ev("n1", activated(1, 1000)), &clocks)
            .is_none());
        // n1 is silent (crashed); n2 activates once n1's clock passed its deadline.
        set(&c, "n1", 1000);
        assert!(inv
            .observe(&ev("n2", activated(2, 2000)), &clocks)
            .is_none());
        // n1's clock is skewed back: its dead instance counts as active again.
        set(&c, "n1", 900);
        let v = inv
            .check(&clocks)
            .expect("resurrected instance not flagged");
        assert_eq!(v.invariant(), "SingleActivation");
        let text = v.to_string();
        assert!(
            text.contains("n1 (token 1") && text.contains("n2 (token 2"),
            "{text}"
        );
        // Reported once.
        assert!(inv.check(&clocks).is_none());
        // A deactivated instance never counts.
        let mut inv = SingleActivation::default();
        inv.observe(&ev("n1", activated(1, 5000)), &clocks);
        let deactivated = ClusterEventKind::Deactivated {
            token: 1,
            reason: DeactivationReason::Migrated,
        };
        inv.observe(&ev("n1", deactivated), &clocks);
        assert!(inv
            .observe(&ev("n2", activated(2, 5000)), &clocks)
            .is_none());
    }

    #[test]
    fn lease_uniqueness_flags_overlapping_valid_holders() {
        let (clocks, c) = clocks();
        let mut inv = LeaseUniqueness::default();
        let acquired = |token, until| ClusterEventKind::LeaseAcquired {
            token,
            valid_until: Duration::from_millis(until),
            claimed_handoff: false,
        };
        assert!(inv.observe(&ev("n1", acquired(1, 800)), &clocks).is_none());
        set(&c, "n2", 900);
        let v = inv.observe(&ev("n2", acquired(2, 1900)), &clocks).unwrap();
        assert!(
            matches!(v, ClusterViolation::LeaseUniqueness { ref holders, .. } if holders.len() == 2)
        );
        // After a release, no violation.
        let mut inv = LeaseUniqueness::default();
        inv.observe(&ev("n1", acquired(1, 800)), &clocks);
        inv.observe(
            &ev("n1", ClusterEventKind::LeaseReleased { token: 1 }),
            &clocks,
        );
        assert!(inv.observe(&ev("n2", acquired(2, 1900)), &clocks).is_none());
    }

    #[test]
    fn fencing_flags_stale_commits_and_reused_tokens() {
        let (clocks, _) = clocks();
        let mut inv = FencingTokenMonotonic::default();
        let acquired = |token, claimed_handoff| ClusterEventKind::LeaseAcquired {
            token,
            valid_until: Duration::from_secs(1),
            claimed_handoff,
        };
        let commit = |token, current| ClusterEventKind::FencedCommit {
            token,
            current,
            committed: true,
        };
        assert!(inv
            .observe(&ev("n1", acquired(1, false)), &clocks)
            .is_none());
        assert!(inv.observe(&ev("n1", commit(1, 1)), &clocks).is_none());
        assert!(inv
            .observe(&ev("n2", acquired(2, false)), &clocks)
            .is_none());
        let v = inv.observe(&ev("n1", commit(1, 2)), &clocks).unwrap();
        assert_eq!(
            v.to_string(),
            "FencingTokenMonotonic violated at 0.000s: ns/a n1 committed a write with token 1 \
             (fence read 2) after token 2 was granted to n2 at 0.000s"
        );
        let v = inv.observe(&ev("n3", acquired(2, false)), &clocks).unwrap();
        assert!(matches!(
            v,
            ClusterViolation::FencingTokenMonotonic {
                breach: FenceBreach::TokenNotIncreased,
                ..
            }
        ));
        // A hand-off's target claims the token it was handed.
        let transferred = ClusterEventKind::Transferred {
            to: "n3".into(),
            from_token: 2,
            to_token: 3,
            state: None,
        };
        assert!(inv.observe(&ev("n2", transferred), &clocks).is_none());
        assert!(inv.observe(&ev("n3", acquired(3, true)), &clocks).is_none());
    }

    #[test]
    fn migration_atomicity_checks_order_and_state() {
        let (clocks, _) = clocks();
        let run = |deactivate_first: bool, restored: Option<u64>| {
            let mut inv = MigrationAtomicity::default();
            let mut found = Vec::new();
            let mut feed = |node: &str, kind| {
                if let Some(v) = inv.observe(&ev(node, kind), &clocks) {
                    found.push(v);
                }
            };
            feed(
                "n1",
                ClusterEventKind::Handled {
                    token: 1,
                    state: Some(7),
                },
            );
            feed(
                "n1",
                ClusterEventKind::MigrationStarted {
                    to: "n2".into(),
                    token: 1,
                },
            );
            let deactivated = ClusterEventKind::Deactivated {
                token: 1,
                reason: DeactivationReason::Migrated,
            };
            if deactivate_first {
                feed("n1", deactivated.clone());
            }
            feed(
                "n1",
                ClusterEventKind::Transferred {
                    to: "n2".into(),
                    from_token: 1,
                    to_token: 2,
                    state: Some(7),
                },
            );
            feed(
                "n2",
                ClusterEventKind::Activated {
                    token: 2,
                    valid_until: Duration::from_secs(1),
                    state: restored,
                    restored_from: Some(1),
                },
            );
            if !deactivate_first {
                feed(
                    "n1",
                    ClusterEventKind::Handled {
                        token: 1,
                        state: Some(8),
                    },
                );
                feed("n1", deactivated);
            }
            found
        };
        assert!(run(true, Some(7)).is_empty());
        let early = run(false, Some(7));
        assert!(matches!(
            early[0],
            ClusterViolation::MigrationAtomicity {
                breach: MigrationBreach::TargetActivatedBeforeSourceDeactivated,
                ..
            }
        ));
        assert!(early.iter().any(|v| matches!(
            v,
            ClusterViolation::MigrationAtomicity {
                breach: MigrationBreach::SourceActedAfterHandoff,
                ..
            }
        )));
        let lost = run(true, Some(6));
        assert!(
            lost[0].to_string().contains("activated with state"),
            "{}",
            lost[0]
        );
    }

    #[test]
    fn split_brain_names_both_owners() {
        let mut inv = NoSplitBrain::default();
        let mut beliefs = BTreeMap::new();
        beliefs.insert("n1".to_string(), vec![(actor(), 3)]);
        assert!(inv.check(Duration::ZERO, &beliefs).is_none());
        beliefs.insert("n2".to_string(), vec![(actor(), 4)]);
        let v = inv.check(Duration::from_millis(1500), &beliefs).unwrap();
        assert_eq!(
            v.to_string(),
            "NoSplitBrain violated at 1.500s: ns/a is believed owned by n1 (token 3) and n2 (token 4)"
        );
        assert_eq!(inv.checks(), 2);
    }

    fn acquired(token: u64, until_ms: u64) -> ClusterEventKind {
        ClusterEventKind::LeaseAcquired {
            token,
            valid_until: Duration::from_millis(until_ms),
            claimed_handoff: false,
        }
    }

    #[test]
    fn lease_bound_activity_judges_from_grants_and_true_time_not_reported_validity() {
        let (clocks, c) = clocks();
        let mut inv = LeaseBoundActivity::new(Duration::from_millis(500));
        let handling = |token| ClusterEventKind::Handling { token };
        // Without any grant: acting is outside a lease.
        let v = inv.observe(&ev("n2", handling(1)), &clocks).unwrap();
        assert!(matches!(
            v,
            ClusterViolation::LeaseBoundActivity {
                breach: LeaseBreach::NoLease,
                ..
            }
        ));
        assert_eq!(v.invariant(), "LeaseBoundActivity");
        // A grant at true time 100 ms covers acting until (not at) 600 ms, whatever validity
        // the runtime reports (here a generous 10 s).
        set(&c, "n1", 100);
        assert!(inv
            .observe(&ev("n2", acquired(1, 10_000)), &clocks)
            .is_none());
        set(&c, "n1", 599);
        assert!(inv.observe(&ev("n2", handling(1)), &clocks).is_none());
        assert!(inv
            .observe(&ev("n2", activated(1, 10_000)), &clocks)
            .is_none());
        set(&c, "n1", 600);
        let v = inv.observe(&ev("n2", handling(1)), &clocks).unwrap();
        assert_eq!(
            v.to_string(),
            "LeaseBoundActivity violated at 0.600s: ns/a n2 started a message under token 1 \
             after its lease ran out: last acquired or renewed at 0.100s (true time), a lease \
             lasts at most 0.500s"
        );
        // A renewal extends it; a renewal of another token does not.
        let renewed = |token| ClusterEventKind::LeaseRenewed {
            token,
            valid_until: Duration::from_secs(60),
        };
        assert!(inv.observe(&ev("n2", renewed(7)), &clocks).is_none());
        assert!(inv.observe(&ev("n2", handling(1)), &clocks).is_some());
        assert!(inv.observe(&ev("n2", renewed(1)), &clocks).is_none());
        set(&c, "n1", 1000);
        assert!(inv.observe(&ev("n2", handling(1)), &clocks).is_none());
        // A newer grant elsewhere supersedes the token even while it has not run out.
        assert!(inv.observe(&ev("n3", acquired(2, 0)), &clocks).is_none());
        let v = inv.observe(&ev("n2", handling(1)), &clocks).unwrap();
        assert!(
            v.to_string().ends_with("after token 2 was granted to n3"),
            "{v}"
        );
        assert!(inv.observe(&ev("n3", handling(2)), &clocks).is_none());
        // A released or lost lease covers nothing any more.
        let released = ClusterEventKind::LeaseReleased { token: 2 };
        assert!(inv.observe(&ev("n3", released), &clocks).is_none());
        assert!(matches!(
            inv.observe(&ev("n3", handling(2)), &clocks),
            Some(ClusterViolation::LeaseBoundActivity {
                breach: LeaseBreach::NoLease,
                ..
            })
        ));
        // A hand-off grants the target's token: the source's is superseded at once.
        assert!(inv.observe(&ev("n3", acquired(3, 0)), &clocks).is_none());
        let transferred = ClusterEventKind::Transferred {
            to: "n2".into(),
            from_token: 3,
            to_token: 4,
            state: None,
        };
        assert!(inv.observe(&ev("n3", transferred), &clocks).is_none());
        assert!(inv.observe(&ev("n3", handling(3)), &clocks).is_some());
    }

    #[test]
    fn for_leases_adds_lease_bound_activity_to_the_checker() {
        let (clocks, _) = clocks();
        let checker = ClusterChecker::for_leases(clocks, &crate::LeaseConfig::default());
        checker.on_event(&ev("n2", ClusterEventKind::Handling { token: 1 }));
        assert_eq!(
            checker.first_violation().map(|v| v.invariant()),
            Some("LeaseBoundActivity")
        );
    }
}
