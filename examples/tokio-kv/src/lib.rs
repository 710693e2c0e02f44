//! A small replicated key-value store over TCP, written only against `tokio`: the service
//! that Kelpie's tokio suite runs unchanged under faults (`tests/suites/src/tokio_kv_dst.rs`).
//! Nothing here knows about Kelpie or madsim; the manifest names `madsim-tokio` as `tokio`,
//! which is plain tokio unless the build has `--cfg madsim`.
//!
//! Each key is an ABD register replicated on every replica: a write asks a majority for the
//! highest version, then stores a higher one on a majority; a read asks a majority for the
//! highest version and writes it back to a majority before answering. State lives in memory,
//! so a replica that restarts must catch up before it serves: it copies the state of enough
//! ready peers that every acknowledged write is among them (all but a minority of the
//! replicas, itself excluded). A brand-new cluster starts with [`Config::bootstrap`].
//!
//! The planted bug, [`Config::catch_up_from_one_peer`]: a restarted replica copies the first
//! peer that answers and serves. If that peer missed a write (it was cut off when the write
//! ran), the restarted replica forgets an acknowledged write. Only a crash (made likelier by a
//! partition) exposes it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use tokio_kv::{Client, Config};
//!
//! let replicas: Vec<std::net::SocketAddr> =
//!     vec!["127.0.0.1:7001".parse().unwrap(), "127.0.0.1:7002".parse().unwrap()];
//! for id in 0..replicas.len() {
//!     let config = Config::new(id, replicas.clone()).bootstrap(true);
//!     tokio::spawn(tokio_kv::serve(config));
//! }
//! let client = Client::new(replicas[0], Duration::from_secs(1));
//! client.put("k", 1).await.unwrap();
//! assert_eq!(client.get("k").await.unwrap(), Some(1));
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A version: (sequence, writer: a number unique to the write); higher wins.
type Tag = (u64, u64);

/// How one replica runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// This replica's index in `replicas`.
    pub id: usize,
    /// Every replica's address, this one's included.
    pub replicas: Vec<SocketAddr>,
    /// Limit on one request to a peer.
    pub rpc_timeout: Duration,
    /// Start serving with an empty state (a new cluster) instead of catching up from peers.
    pub bootstrap: bool,
    /// The planted bug: catch up from the first peer that answers instead of enough peers.
    pub catch_up_from_one_peer: bool,
}

impl Config {
    /// Replica `id` of `replicas`: 100 ms per peer request, catching up on start.
    pub fn new(id: usize, replicas: Vec<SocketAddr>) -> Self {
        Config {
            id,
            replicas,
            rpc_timeout: Duration::from_millis(100),
            bootstrap: false,
            catch_up_from_one_peer: false,
        }
    }

    /// Sets [`Config::bootstrap`].
    pub fn bootstrap(mut self, on: bool) -> Self {
        self.bootstrap = on;
        self
    }

    /// Sets [`Config::catch_up_from_one_peer`] (the planted bug).
    pub fn catch_up_from_one_peer(mut self, on: bool) -> Self {
        self.catch_up_from_one_peer = on;
        self
    }

    fn majority(&self) -> usize {
        self.replicas.len() / 2 + 1
    }
}

/// One replica's memory.
#[derive(Default)]
struct Store {
    ready: bool,
    map: BTreeMap<String, (Tag, u64)>,
}

impl Store {
    fn get(&self, key: &str) -> (Tag, Option<u64>) {
        match self.map.get(key) {
            Some((tag, v)) => (*tag, Some(*v)),
            None => ((0, 0), None),
        }
    }

    fn set(&mut self, key: &str, tag: Tag, value: u64) {
        let e = self.map.entry(key.to_string()).or_insert(((0, 0), 0));
        if tag > e.0 {
            *e = (tag, value);
        }
    }
}

struct Replica {
    config: Config,
    store: Mutex<Store>,
    /// Writes coordinated so far: with the replica's id, makes each write's tag unique even
    /// when two writes through this replica read the same highest version.
    writes: AtomicU64,
}

/// Runs replica `config.id`: listens on its address, serves clients and peers (a task per
/// connection), and catches up first unless bootstrapping. Returns only if binding fails.
pub async fn serve(config: Config) -> io::Result<()> {
    let listener = TcpListener::bind(config.replicas[config.id]).await?;
    let replica = Arc::new(Replica {
        store: Mutex::new(Store {
            ready: config.bootstrap,
            map: BTreeMap::new(),
        }),
        config,
        writes: AtomicU64::new(0),
    });
    if !replica.config.bootstrap {
        tokio::spawn(replica.clone().catch_up());
    }
    loop {
        let (stream, _) = listener.accept().await?;
        let replica = replica.clone();
        tokio::spawn(async move {
            let _ = replica.connection(stream).await;
        });
    }
}

impl Replica {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn peers(&self) -> Vec<SocketAddr> {
        let me = self.config.id;
        (self.config.replicas.iter().enumerate())
            .filter(|(i, _)| *i != me)
            .map(|(_, a)| *a)
            .collect()
    }

    /// Copies the state of enough ready peers, then serves (retrying until it has them).
    async fn catch_up(self: Arc<Self>) {
        let n = self.config.replicas.len();
        let needed = if self.config.catch_up_from_one_peer {
            1
        } else {
            n - n / 2
        };
        loop {
            let replies = self.ask_peers("DUMP".into(), needed).await;
            if replies.len() >= needed {
                let mut st = self.store();
                for dump in replies {
                    for entry in dump.split(',').filter(|e| !e.is_empty()) {
                        if let Some((key, tag, v)) = parse_entry(entry) {
                            st.set(key, tag, v);
                        }
                    }
                }
                st.ready = true;
                return;
            }
            tokio::time::sleep(self.config.rpc_timeout).await;
        }
    }

    /// Serves one connection, a request per line.
    async fn connection(self: Arc<Self>, stream: TcpStream) -> io::Result<()> {
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        while stream.read_line(&mut line).await? > 0 {
            let reply = self.clone().handle(line.trim_end()).await;
            line.clear();
            stream.get_mut().write_all(reply.as_bytes()).await?;
            stream.get_mut().write_all(b"\n").await?;
            stream.get_mut().flush().await?;
        }
        Ok(())
    }

    async fn handle(self: Arc<Self>, request: &str) -> String {
        let words: Vec<&str> = request.split(' ').collect();
        if !self.store().ready {
            return "NOTREADY".into();
        }
        match words.as_slice() {
            ["RGET", key] => {
                let (tag, v) = self.store().get(key);
                format!("TAG {} {} {}", tag.0, tag.1, opt(v))
            }
            ["RSET", key, seq, writer, v] => match (seq.parse(), writer.parse(), v.parse()) {
                (Ok(seq), Ok(writer), Ok(v)) => {
                    self.store().set(key, (seq, writer), v);
                    "ACK".into()
                }
                _ => "ERR bad request".into(),
            },
            ["DUMP"] => {
                let st = self.store();
                let entries: Vec<String> = (st.map.iter())
                    .map(|(k, ((s, w), v))| format!("{k}:{s}:{w}:{v}"))
                    .collect();
                format!("DUMP {}", entries.join(","))
            }
            ["PUT", key, v] => match v.parse() {
                Ok(v) => match self.write(key, v).await {
                    true => "OK".into(),
                    false => "ERR no quorum".into(),
                },
                Err(_) => "ERR bad value".into(),
            },
            ["GET", key] => match self.read(key).await {
                Some(v) => format!("VAL {}", opt(v)),
                None => "ERR no quorum".into(),
            },
            _ => "ERR unknown request".into(),
        }
    }

    /// The highest version of `key` among a majority (this replica included).
    async fn highest(&self, key: &str) -> Option<(Tag, Option<u64>)> {
        let mine = self.store().get(key);
        let replies = self
            .ask_peers(format!("RGET {key}"), self.config.majority() - 1)
            .await;
        if replies.len() + 1 < self.config.majority() {
            return None;
        }
        let mut best = mine;
        for r in replies {
            let w: Vec<&str> = r.split(' ').collect();
            if let [seq, writer, v] = w.as_slice() {
                if let (Ok(seq), Ok(writer)) = (seq.parse(), writer.parse()) {
                    let tag: Tag = (seq, writer);
                    if tag > best.0 {
                        best = (tag, v.parse().ok());
                    }
                }
            }
        }
        Some(best)
    }

    /// Stores `value` at `tag` on a majority (this replica included).
    async fn store_majority(&self, key: &str, tag: Tag, value: u64) -> bool {
        self.store().set(key, tag, value);
        let request = format!("RSET {key} {} {} {value}", tag.0, tag.1);
        let acks = self.ask_peers(request, self.config.majority() - 1).await;
        acks.len() + 1 >= self.config.majority()
    }

    async fn write(&self, key: &str, value: u64) -> bool {
        let Some((tag, _)) = self.highest(key).await else {
            return false;
        };
        let n = self.config.replicas.len() as u64;
        let write = self.writes.fetch_add(1, Ordering::Relaxed);
        let tag = (tag.0 + 1, write * n + self.config.id as u64);
        self.store_majority(key, tag, value).await
    }

    /// `Some(value)` once a majority holds it; `None` without a quorum.
    async fn read(&self, key: &str) -> Option<Option<u64>> {
        let (tag, v) = self.highest(key).await?;
        if let Some(v) = v {
            if !self.store_majority(key, tag, v).await {
                return None;
            }
        }
        Some(v)
    }

    /// Sends `request` to every peer at once; returns the successful replies (their text
    /// after the first word) as soon as `wanted` arrived or every peer answered or failed.
    async fn ask_peers(&self, request: String, wanted: usize) -> Vec<String> {
        let peers = self.peers();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for peer in &peers {
            let tx = tx.clone();
            let request = request.clone();
            let (peer, limit) = (*peer, self.config.rpc_timeout);
            tokio::spawn(async move {
                let reply = tokio::time::timeout(limit, call(peer, &request)).await;
                let _ = tx.send(reply.ok().and_then(Result::ok));
            });
        }
        drop(tx);
        let mut ok = Vec::new();
        let mut answered = 0;
        while ok.len() < wanted && answered < peers.len() {
            let Some(reply) = rx.recv().await else { break };
            answered += 1;
            match reply.as_deref().and_then(|r| r.split_once(' ')) {
                Some(("TAG" | "DUMP", rest)) => ok.push(rest.to_string()),
                _ if reply.as_deref() == Some("ACK") => ok.push(String::new()),
                _ if reply.as_deref() == Some("DUMP") => ok.push(String::new()),
                _ => {}
            }
        }
        ok
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

fn parse_entry(entry: &str) -> Option<(&str, Tag, u64)> {
    let mut p = entry.split(':');
    let key = p.next()?;
    let seq = p.next()?.parse().ok()?;
    let writer = p.next()?.parse().ok()?;
    let v = p.next()?.parse().ok()?;
    Some((key, (seq, writer), v))
}

/// One request on a new connection: the reply line.
async fn call(addr: SocketAddr, request: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(b"\n").await?;
    stream.flush().await?;
    let mut reply = String::new();
    let n = BufReader::new(stream).read_line(&mut reply).await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(reply.trim_end().to_string())
}

/// Why a client request has no answer.
#[derive(Debug)]
pub enum Error {
    /// No reply within the client's limit.
    Timeout,
    /// The connection failed.
    Io(io::Error),
    /// The replica refused it (no quorum, not ready, a bad request).
    Rejected(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout => write!(f, "timed out"),
            Error::Io(e) => write!(f, "connection failed: {e}"),
            Error::Rejected(why) => write!(f, "rejected: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// A client of one replica.
#[derive(Debug, Clone)]
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
}

impl Client {
    /// A client sending to the replica at `addr`, waiting at most `timeout` per request.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Client { addr, timeout }
    }

    async fn request(&self, request: String) -> Result<String, Error> {
        match tokio::time::timeout(self.timeout, call(self.addr, &request)).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(e)) => Err(Error::Io(e)),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    /// Writes `value` under `key`.
    pub async fn put(&self, key: &str, value: u64) -> Result<(), Error> {
        match self.request(format!("PUT {key} {value}")).await? {
            r if r == "OK" => Ok(()),
            r => Err(Error::Rejected(r)),
        }
    }

    /// Reads `key`.
    pub async fn get(&self, key: &str) -> Result<Option<u64>, Error> {
        let reply = self.request(format!("GET {key}")).await?;
        match reply.strip_prefix("VAL ") {
            Some("-") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::Rejected(reply.clone())),
            None => Err(Error::Rejected(reply)),
        }
    }
}
