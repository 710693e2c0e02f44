//! The simulated cluster the cluster suites (`lease_dst`, `activation_dst`, `migration_dst`)
//! share: a database node `db` whose disk backs the store ([`SimKv`]), service nodes
//! `n2..n{N+1}` each running a service on its own [`NodePlatform`], and a [`ClusterChecker`] fed
//! every event.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie::{NodeId, SimEnv, SimNetwork};
use kelpie_actors::invariants::{Clocks, ClusterChecker};
use kelpie_actors::{
    ActorId, ActorKV, KvError, KvPairs, KvTransaction, LeaseConfig, Platform, SimKv, SimKvTxn,
    SimPlatform,
};

/// The store as one node sees it: the database node's disk ([`SimKv`]), reachable only
/// while the network links between this node and the database are up. A request sent over
/// a cut link fails with nothing done; a reply lost on a cut link turns a write into an
/// unknown outcome.
#[derive(Debug, Clone)]
pub struct NetKv {
    kv: SimKv,
    net: SimNetwork,
    me: NodeId,
    db: NodeId,
}

impl NetKv {
    fn reachable(&self) -> bool {
        !self.net.is_cut(self.me, self.db) && !self.net.is_cut(self.db, self.me)
    }

    fn request(&self) -> Result<(), KvError> {
        if self.reachable() {
            Ok(())
        } else {
            Err(KvError::Unavailable("partitioned from the store".into()))
        }
    }

    fn read_reply<T>(&self, r: Result<T, KvError>) -> Result<T, KvError> {
        self.request()?;
        r
    }

    fn write_reply(&self, r: Result<(), KvError>) -> Result<(), KvError> {
        match r {
            Ok(()) if !self.reachable() => Err(KvError::OutcomeUnknown),
            other => other,
        }
    }
}

impl ActorKV for NetKv {
    type Txn = NetTxn;

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.request()?;
        let r = self.kv.get(key).await;
        self.read_reply(r)
    }

    async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.request()?;
        let r = self.kv.set(key, value).await;
        self.write_reply(r)
    }

    async fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        self.request()?;
        let r = self.kv.delete(key).await;
        self.write_reply(r)
    }

    async fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, KvError> {
        self.request()?;
        let r = self.kv.scan_prefix(prefix).await;
        self.read_reply(r)
    }

    fn transaction(&self) -> NetTxn {
        NetTxn {
            txn: self.kv.transaction(),
            kv: self.clone(),
        }
    }
}

/// A [`NetKv`] transaction.
#[derive(Debug)]
pub struct NetTxn {
    txn: SimKvTxn,
    kv: NetKv,
}

impl KvTransaction for NetTxn {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.kv.request()?;
        let r = self.txn.get(key).await;
        self.kv.read_reply(r)
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.txn.set(key, value);
    }

    fn delete(&mut self, key: &[u8]) {
        self.txn.delete(key);
    }

    async fn commit(self) -> Result<(), KvError> {
        self.kv.request()?;
        let r = self.txn.commit().await;
        self.kv.write_reply(r)
    }
}

/// One cluster node's platform: [`SimPlatform`]'s clock (skewed by clock faults), timers
/// and randomness, the store through [`NetKv`], and tasks spawned on the node's *current*
/// incarnation.
///
/// Why not `SimPlatform::spawn`: it spawns through `SimEnv::spawn`, which keeps the madsim
/// node handle of the node's first incarnation; after a crash and restart, tasks spawned
/// that way never run. madsim's `Handle::get_node(name)` returns the current incarnation.
#[derive(Debug, Clone)]
pub struct NodePlatform {
    sim: SimPlatform,
    kv: NetKv,
}

/// Spawns `task` on the current incarnation of the node named `node`; a task spawned on a
/// node that is down never runs (its handle reports it cancelled).
pub fn spawn_on<F>(node: &str, task: F) -> madsim::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    madsim::runtime::Handle::current()
        .get_node(node)
        .expect("every cluster node exists")
        .spawn(task)
}

/// Runs `task` on node `node` and returns its output; `None` if the node is down or crashes
/// before the task finishes.
pub async fn run_on<F>(node: &str, task: F) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if madsim::runtime::Handle::current().is_exit(node) {
        return None;
    }
    spawn_on(node, task).await.ok()
}

impl Platform for NodePlatform {
    type Kv = NetKv;

    fn node(&self) -> &str {
        self.sim.node()
    }

    fn kv(&self) -> NetKv {
        self.kv.clone()
    }

    fn now(&self) -> Duration {
        self.sim.now()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        self.sim.sleep(duration)
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        // Through the node's env: traced, reaped at the end of the run, and on the node's
        // current incarnation after a restart (kelpie-sim/tests/reports.rs).
        self.sim.spawn(task);
    }

    fn random(&self) -> u64 {
        self.sim.random()
    }

    fn fault_point(&self, name: &'static str) -> impl Future<Output = bool> + Send + 'static {
        self.sim.fault_point(name)
    }
}

/// A database node `db` (id `n1` in traces) and service nodes `n2..n{N+1}`, with a checker
/// fed every event.
pub struct Cluster<S> {
    /// The supervisor's env.
    pub env: SimEnv,
    /// The database node.
    pub db: SimEnv,
    /// The service nodes, in order.
    pub nodes: Vec<SimEnv>,
    /// Their names (`n2`, ...).
    pub names: Vec<String>,
    /// The invariant checker every service reports to.
    pub checker: Arc<ClusterChecker>,
    /// The store, read directly (as an operator would, bypassing partitions).
    pub kv: SimKv,
    services: Arc<Mutex<BTreeMap<String, S>>>,
}

/// The current service of each node, updated at every (re)start.
pub struct Services<S>(Arc<Mutex<BTreeMap<String, S>>>);

impl<S> Clone for Services<S> {
    fn clone(&self) -> Self {
        Services(self.0.clone())
    }
}

impl<S: Clone> Services<S> {
    /// Node `name`'s current service.
    pub fn get(&self, name: &str) -> Option<S> {
        self.0.lock().unwrap().get(name).cloned()
    }
}

/// What a node runs besides its service (e.g. a renewal loop); dropped when it crashes.
pub type Background = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

impl<S: Clone + Send + Sync + 'static> Cluster<S> {
    /// Starts the cluster: `make` builds a node's service (and optional background task)
    /// at every start and restart of the node. The checker knows the services' `lease`
    /// config ([`ClusterChecker::for_leases`]): it judges activity from the lease grants and
    /// true time.
    pub fn start<F>(env: &SimEnv, nodes: usize, lease: &LeaseConfig, make: F) -> Self
    where
        F: Fn(NodePlatform, Arc<ClusterChecker>) -> (S, Option<Background>) + Send + Sync + 'static,
    {
        let db = env.create_node("db").build();
        let kv = SimKv::new(&db);
        let clocks_of: Arc<Mutex<BTreeMap<String, SimEnv>>> = Arc::default();
        let now_env = env.clone();
        let node_clocks = clocks_of.clone();
        let checker = Arc::new(ClusterChecker::for_leases(
            Clocks::new(
                move || now_env.elapsed(),
                move |name| {
                    let envs = node_clocks.lock().unwrap();
                    envs.get(name).map(SimEnv::local_time)
                },
            ),
            lease,
        ));
        let services: Arc<Mutex<BTreeMap<String, S>>> = Arc::default();
        let make = Arc::new(make);
        let mut envs = Vec::new();
        let mut names = Vec::new();
        // Named after their ids (`n2`..): the trace prints nodes by id, and `db` is `n1`.
        for i in 2..=nodes + 1 {
            let name = format!("n{i}");
            let (kv, db_id, checker, services, make) = (
                kv.clone(),
                db.node(),
                checker.clone(),
                services.clone(),
                make.clone(),
            );
            let node_name = name.clone();
            let node = env
                .create_node(name.clone())
                .init(move |node_env: SimEnv| {
                    let platform = NodePlatform {
                        kv: NetKv {
                            kv: kv.clone(),
                            net: node_env.network(),
                            me: node_env.node(),
                            db: db_id,
                        },
                        sim: SimPlatform::new(node_env, kv.clone()),
                    };
                    let (service, background) = make(platform, checker.clone());
                    services.lock().unwrap().insert(node_name.clone(), service);
                    // A node whose main task returns has exited (madsim kills it): keep it
                    // running until it is killed.
                    async move {
                        if let Some(task) = background {
                            task.await;
                        }
                        std::future::pending::<()>().await;
                    }
                })
                .build();
            clocks_of.lock().unwrap().insert(name.clone(), node.clone());
            envs.push(node);
            names.push(name);
        }
        Cluster {
            env: env.clone(),
            db,
            nodes: envs,
            names,
            checker,
            kv,
            services,
        }
    }

    /// A handle on the current services, for tasks that outlive a borrow of the cluster.
    pub fn services(&self) -> Services<S> {
        Services(self.services.clone())
    }

    /// Checks the time-dependent invariants every `every` until `stop` is set; returns how
    /// many partitions it saw heal.
    pub fn monitor(
        &self,
        every: Duration,
        stop: Arc<std::sync::atomic::AtomicBool>,
        mut extra: impl FnMut() + Send + 'static,
    ) -> madsim::task::JoinHandle<u64>
    where
        S: 'static,
    {
        let env = self.env.clone();
        let checker = self.checker.clone();
        let (net, db, nodes) = (self.env.network(), self.db.node(), self.nodes.clone());
        self.env.spawn(async move {
            let mut cut: Vec<bool> = vec![false; nodes.len()];
            let mut heals = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                env.sleep(every).await;
                checker.check_now();
                for (i, n) in nodes.iter().enumerate() {
                    let now = net.is_cut(n.node(), db) || net.is_cut(db, n.node());
                    if cut[i] && !now {
                        heals += 1;
                    }
                    cut[i] = now;
                }
                extra();
            }
            heals
        })
    }
}

/// That the faults reached the code: each declared fault fires somewhere in the seed range
/// (the harness's fault-coverage check), and some seed saw one fire. Not a per-seed demand:
/// it would fail seeds where rare faults happened not to fire, which long sweeps have.
pub fn faults_reached(env: &SimEnv) -> Result<(), String> {
    let stats = env.faults();
    if !stats.faults.is_empty() {
        kelpie::sometimes!(stats.total_fired() > 0, "a declared fault fired");
    }
    Ok(())
}

/// A uniformly random element of `items`.
pub fn pick<'a, T>(env: &SimEnv, items: &'a [T]) -> &'a T {
    env.rng().choose(items).expect("a non-empty list")
}

/// The ids `ns/a0..a{n-1}`.
pub fn actors(n: usize) -> Vec<ActorId> {
    (0..n)
        .map(|i| ActorId::new("ns", format!("a{i}")).unwrap())
        .collect()
}
