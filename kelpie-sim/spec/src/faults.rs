//! The fault table: the one place where every fault's name, parameters and documentation live.
//!
//! `kelpie-macros` validates `faults = [...]` against it at compile time; the simulation
//! (`kelpie_sim::FaultSpec`), the runner, the README table and the `--help` output are all derived
//! from [`FAULT_TABLE`], [`FAULT_OPTIONS`] and [`OP_TABLE`].

/// What a fault parameter means, which decides how the attribute macro validates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A probability in `0.0..=1.0`.
    Probability,
    /// A span of virtual time in milliseconds.
    Millis,
    /// A positive count.
    Count,
    /// A string (a custom fault's name, a key prefix, a node name, an operation name).
    Text,
}

/// One positional parameter of a fault, in declaration order.
#[derive(Debug, Clone, Copy)]
pub struct ParamInfo {
    /// The parameter's name, as documented.
    pub name: &'static str,
    /// How the parameter is validated and converted.
    pub kind: ParamKind,
    /// Default when omitted; `None` means the parameter is required.
    pub default: Option<u64>,
    /// One line of documentation.
    pub doc: &'static str,
}

/// Which part of the simulated system a fault acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// The per-node disk (`kelpie_sim::SimStorage`).
    Storage,
    /// Message passing between nodes (`kelpie_sim::SimNetwork`).
    Network,
    /// Whole-node faults: crash and restart, pause.
    Node,
    /// Per-node clocks.
    Clock,
    /// Application-level faults that the code under test asks for by name.
    Custom,
}

/// One row of the fault table.
#[derive(Debug, Clone, Copy)]
pub struct FaultInfo {
    /// The fault's kind.
    pub kind: FaultKind,
    /// The name users write in `faults = [...]`.
    pub name: &'static str,
    /// What the fault acts on.
    pub category: Category,
    /// Positional parameters, in order.
    pub params: &'static [ParamInfo],
    /// What the fault does, one paragraph.
    pub doc: &'static str,
}

impl FaultInfo {
    /// The positional parameters as written in the attribute, with their defaults:
    /// `probability, max_ms = 50`.
    pub fn params_signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| match (p.kind, p.default) {
                (ParamKind::Millis, Some(d)) => format!("{} = {d}", p.name),
                _ => p.name.to_string(),
            })
            .collect();
        params.join(", ")
    }
}

const P: ParamInfo = ParamInfo {
    name: "probability",
    kind: ParamKind::Probability,
    default: None,
    doc: "chance that the fault fires each time it is considered",
};

const fn ms(name: &'static str, default: u64, doc: &'static str) -> ParamInfo {
    ParamInfo {
        name,
        kind: ParamKind::Millis,
        default: Some(default),
        doc,
    }
}

macro_rules! fault_table {
    ($( $(#[doc = $doc:literal])+ $name:ident : $cat:ident [$($param:expr),* $(,)?] ),+ $(,)?) => {
        /// Every kind of fault the simulation can inject. Parameters live in
        /// `kelpie_sim::FaultSpec`; names and docs in [`FAULT_TABLE`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum FaultKind {
            $( $(#[doc = $doc])+ $name, )+
        }

        /// The fault table, in declaration order (which is also [`FaultKind`]'s order).
        pub const FAULT_TABLE: &[FaultInfo] = &[
            $( FaultInfo {
                kind: FaultKind::$name,
                name: stringify!($name),
                category: Category::$cat,
                params: &[$($param),*],
                doc: concat!($($doc),+),
            }, )+
        ];
    };
}

fault_table! {
    /// A write (`set`, `delete`, a transaction's commit) fails with an I/O error; nothing is written.
    StorageWriteFail: Storage [P],
    /// A read (`get`, `scan_prefix`) fails with an I/O error.
    StorageReadFail: Storage [P],
    /// A read returns the stored value with one bit flipped (silent corruption).
    StorageCorruption: Storage [P],
    /// A write is torn: it reports success, but only a prefix of the new value reaches the disk and
    /// the rest of the old value (if any) stays behind it.
    StoragePartialWrite: Storage [P],
    /// A write reports success but lands on another existing key; the intended key is unchanged.
    StorageMisdirectedWrite: Storage [P],
    /// `sync` reports success but persists nothing: a later crash loses the writes it claimed to sync.
    StorageFsyncLoss: Storage [P],
    /// A storage operation is delayed by a random virtual time up to `max_ms`.
    StorageLatency: Storage [P, ms("max_ms", 50, "upper bound of the added delay")],
    /// A write fails with `DiskFull`; nothing is written.
    DiskFull: Storage [P],
    /// The node crashes in the middle of a commit: the transaction applies all or nothing, the
    /// volatile layer is lost and the commit returns `Crashed`; a node's disk restarts the node.
    CrashDuringTransaction: Storage [P],
    /// A symmetric partition isolates one node from all others for up to `heal_ms`. On
    /// `tokio::net` sockets (kelpie-tokio or madsim-tokio): a connect is refused, an open stream's bytes wait and
    /// arrive after the heal (madsim retries with a backoff of up to 10 s), a datagram is dropped.
    NetworkPartition: Network [P, ms("heal_ms", 1000, "longest time until the partition heals")],
    /// A one-way partition: messages from one node to another are dropped for up to `heal_ms`.
    /// On sockets, in that direction only: a connect is refused, a stream's bytes wait until the
    /// heal, a datagram is dropped.
    NetworkPartitionOneWay: Network [P, ms("heal_ms", 1000, "longest time until the partition heals")],
    /// A message is dropped. On `tokio::net` sockets (kelpie-tokio), decided per stream segment
    /// (the bytes of one flush) and per datagram: a stream cannot lose bytes, so the segment is
    /// retransmitted after 200 ms (Linux's minimum RTO): its reader waits for it and every later
    /// byte, its writer does not; a datagram is dropped.
    PacketLoss: Network [P],
    /// A message is delayed by an extra random virtual time up to `max_ms`. On sockets
    /// (kelpie-tokio): a stream segment reaches its reader that much later (later bytes behind
    /// it); a datagram is sent that much later.
    NetworkDelay: Network [P, ms("max_ms", 100, "upper bound of the added delay")],
    /// A message is held back by up to `max_ms`, so that later messages overtake it. On sockets
    /// (kelpie-tokio): a datagram is sent that much later; streams deliver in order, so it is
    /// not considered on a stream.
    MessageReorder: Network [P, ms("max_ms", 20, "upper bound of the hold-back")],
    /// A message is delivered twice. On sockets (kelpie-tokio): a datagram is sent twice;
    /// streams deliver once, so it is not considered on a stream.
    MessageDuplicate: Network [P],
    /// A node is killed (its tasks dropped, its volatile storage lost) and restarted after up to
    /// `restart_ms`, re-running its init closure. Its `tokio::spawn`ed tasks and its sockets go
    /// with it: peers' requests fail until init listens again.
    NodeCrash: Node [P, ms("restart_ms", 500, "longest time until the node restarts")],
    /// A node stops running its tasks for up to `pause_ms` of virtual time (its sockets stay
    /// open; peers' requests wait).
    NodePause: Node [P, ms("pause_ms", 500, "longest pause")],
    /// A node's clock is set off by a random offset within `±max_ms`: `env.local_time()` only;
    /// `tokio::time`, `Instant::now` and `SystemTime::now` are one clock for every node.
    ClockSkew: Clock [P, ms("max_ms", 500, "largest offset either way")],
    /// A node's clock jumps forward by up to `max_ms` (`env.local_time()` only, as `ClockSkew`).
    ClockJump: Clock [P, ms("max_ms", 5000, "largest jump")],
    /// An application-level fault that the code under test asks for by name
    /// (`env.fault("LlmTimeout")`), e.g. an LLM or tool call that times out.
    Custom: Custom [ParamInfo { name: "name", kind: ParamKind::Text, default: None, doc: "the name the code asks for" }, P],
}

/// A named option accepted by every fault after its positional parameters, e.g.
/// `StorageWriteFail(0.1, key_prefix = "wal/", max = 3)`.
#[derive(Debug, Clone, Copy)]
pub struct OptionInfo {
    /// The option's name.
    pub name: &'static str,
    /// How its value is validated.
    pub kind: ParamKind,
    /// One line of documentation.
    pub doc: &'static str,
}

/// The options every fault accepts, by name.
pub const FAULT_OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        name: "op",
        kind: ParamKind::Text,
        doc: "only operations of this kind (see the operation table)",
    },
    OptionInfo {
        name: "key_prefix",
        kind: ParamKind::Text,
        doc: "only storage operations on keys with this prefix",
    },
    OptionInfo {
        name: "node",
        kind: ParamKind::Text,
        doc: "only this node (by name)",
    },
    OptionInfo {
        name: "max",
        kind: ParamKind::Count,
        doc: "fire at most this many times per run",
    },
    OptionInfo {
        name: "after_ms",
        kind: ParamKind::Millis,
        doc: "active from this virtual time on",
    },
    OptionInfo {
        name: "until_ms",
        kind: ParamKind::Millis,
        doc: "active until this virtual time",
    },
];

/// The kind of a simulated operation, the unit at which faults are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum OpKind {
    /// A storage `get`.
    Get,
    /// A storage `set`.
    Set,
    /// A storage `delete`.
    Delete,
    /// A storage `scan_prefix`.
    Scan,
    /// A transaction commit.
    Commit,
    /// A storage `sync` (fsync).
    Sync,
    /// A network message send.
    Send,
    /// A periodic fault tick, at which node, clock and partition faults are decided.
    Tick,
    /// A custom fault check by name.
    Custom,
}

/// Names of operation kinds, as written in a fault's `op = "..."` option.
pub const OP_TABLE: &[(&str, OpKind)] = &[
    ("get", OpKind::Get),
    ("set", OpKind::Set),
    ("delete", OpKind::Delete),
    ("scan", OpKind::Scan),
    ("commit", OpKind::Commit),
    ("sync", OpKind::Sync),
    ("send", OpKind::Send),
    ("tick", OpKind::Tick),
    ("custom", OpKind::Custom),
];

impl FaultKind {
    /// This fault's row of the table.
    pub fn info(self) -> &'static FaultInfo {
        // The table is generated in the enum's declaration order.
        &FAULT_TABLE[self as usize]
    }

    /// The name users write in `faults = [...]`.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Looks a fault up by the name users write.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FAULT_TABLE.iter().find(|f| f.name == name).map(|f| f.kind)
    }

    /// The operation kinds at which this fault is considered.
    pub fn ops(self) -> &'static [OpKind] {
        use FaultKind::*;
        use OpKind::*;
        match self {
            StorageWriteFail | DiskFull => &[Set, Delete, Commit],
            StorageReadFail | StorageCorruption => &[Get, Scan],
            StoragePartialWrite | StorageMisdirectedWrite => &[Set],
            StorageFsyncLoss => &[Sync],
            StorageLatency => &[Get, Set, Delete, Scan, Commit, Sync],
            CrashDuringTransaction => &[Commit],
            PacketLoss | NetworkDelay | MessageReorder | MessageDuplicate => &[Send],
            NetworkPartition
            | NetworkPartitionOneWay
            | NodeCrash
            | NodePause
            | ClockSkew
            | ClockJump => &[Tick],
            FaultKind::Custom => &[OpKind::Custom],
        }
    }
}

impl OpKind {
    /// The name used in a fault's `op = "..."` option.
    pub fn name(self) -> &'static str {
        OP_TABLE
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// Looks an operation kind up by name.
    pub fn from_name(name: &str) -> Option<OpKind> {
        OP_TABLE.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }
}
