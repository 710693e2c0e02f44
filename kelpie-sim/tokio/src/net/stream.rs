//! [`TcpStream`]: madsim's, with its connect, flushes, reads and close traced, and each
//! segment (the bytes of one flush) held from its reader as the loss and delay faults decide
//! (the writer's flush returns at once, as the kernel's does).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BufMut as _;
use kelpie_sim::sockets::{self, Readable};
use kelpie_sim::{NodeId, SocketOp};
use madsim::net::{lookup_host, ToSocketAddrs};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A TCP stream (madsim's), whose traffic reaches the Kelpie run.
pub struct TcpStream {
    inner: madsim::net::TcpStream,
    /// Where it is, when in a Kelpie run.
    site: Option<Site>,
    /// The bytes written since the last flush: the next segment.
    segment: Vec<u8>,
    /// Bytes read so far (the reader's place in its flow).
    read: u64,
    /// A fault's hold on the next bytes to read.
    hold: Option<Pin<Box<madsim::time::Sleep>>>,
    /// Where a read limited by a hold lands before it is copied out.
    scratch: Vec<u8>,
}

/// A stream's place in the run: the Kelpie node that owns it, and its two ends as its peer's
/// stream names them the other way round.
#[derive(Debug, Clone, Copy)]
struct Site {
    node: NodeId,
    local: SocketAddr,
    peer: SocketAddr,
    /// Whether a fault can hold a segment in this run (else reads never ask).
    may_hold: bool,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl TcpStream {
    /// Wraps `inner`, owned by `node` (if in a Kelpie run) and connected to `peer`; `local`
    /// is this end's address as the peer sees it.
    pub(super) fn wrap(
        inner: madsim::net::TcpStream,
        node: Option<NodeId>,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Self {
        TcpStream {
            inner,
            site: node.map(|node| Site {
                node,
                local,
                peer,
                may_hold: sockets::streams_may_be_held(),
            }),
            segment: Vec::new(),
            read: 0,
            hold: None,
            scratch: Vec::new(),
        }
    }

    /// Opens a connection to `addr` (see `tokio::net::TcpStream::connect`): each address it
    /// resolves to is tried in turn, and each attempt is traced.
    pub async fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        let node = sockets::current_node();
        let mut last = None;
        for peer in lookup_host(addr).await? {
            match madsim::net::TcpStream::connect(peer).await {
                Ok(inner) => {
                    // This end as the peer sees it: madsim sends from the node's address (the
                    // loopback address to a loopback peer) and this stream's port.
                    let port = inner.local_addr()?.port();
                    let local = match node {
                        Some(n) if !peer.ip().is_loopback() => SocketAddr::new(n.ip(), port),
                        _ => SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port),
                    };
                    if let Some(node) = node {
                        sockets::event(node, SocketOp::Connect, peer, &[]);
                    }
                    return Ok(TcpStream::wrap(inner, node, local, peer));
                }
                Err(e) => {
                    if let Some(node) = node {
                        sockets::event(node, SocketOp::ConnectFailed, peer, &[]);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "could not resolve to any addresses",
            )
        }))
    }

    /// Sets `TCP_NODELAY` (no effect in the simulation, as in madsim).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// Reads what has arrived without waiting (see `tokio::net::TcpStream::try_read_buf`);
    /// traced as a read. Bytes a fault still holds have not arrived (`WouldBlock`).
    pub fn try_read_buf<B: bytes::BufMut>(&mut self, buf: &mut B) -> io::Result<usize> {
        let limit = match self.readable() {
            Readable::Upto(n) => n,
            Readable::Wait(_) => return Err(io::ErrorKind::WouldBlock.into()),
        };
        let want = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .min(buf.remaining_mut());
        // Not preallocated: `want` may be nearly `isize::MAX` (a `Vec`'s or `BytesMut`'s room).
        let mut read = Vec::new();
        let n = self.inner.try_read_buf(&mut (&mut read).limit(want))?;
        traced_read(&mut self.read, self.site, &read);
        buf.put_slice(&read);
        Ok(n)
    }

    /// How far this stream may read now.
    fn readable(&self) -> Readable {
        match self.site {
            Some(s) if s.may_hold => sockets::stream_readable(s.local, s.peer, self.read),
            _ => Readable::Upto(u64::MAX),
        }
    }
}

/// Adds `bytes` to a stream's count of bytes read and traces them (in a Kelpie run).
fn traced_read(read: &mut u64, site: Option<Site>, bytes: &[u8]) {
    *read += bytes.len() as u64;
    if let (Some(s), false) = (site, bytes.is_empty()) {
        sockets::event(s.node, SocketOp::Read, s.peer, bytes);
    }
}

#[cfg(unix)]
impl std::os::unix::io::AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsyncRead for TcpStream {
    /// Reads what has arrived, up to the first byte a fault still holds; waits out a hold on
    /// the next byte.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let limit = loop {
            if let Some(hold) = &mut this.hold {
                ready!(hold.as_mut().poll(cx));
                this.hold = None;
            }
            match this.readable() {
                Readable::Upto(n) => break usize::try_from(n).unwrap_or(usize::MAX),
                Readable::Wait(d) => this.hold = Some(Box::pin(madsim::time::sleep(d))),
            }
        };
        if limit >= buf.remaining() {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            traced_read(&mut this.read, this.site, &buf.filled()[before..]);
            return Poll::Ready(Ok(()));
        }
        this.scratch.resize(limit, 0);
        let mut part = ReadBuf::new(&mut this.scratch);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
        let n = part.filled().len();
        buf.put_slice(&this.scratch[..n]);
        traced_read(&mut this.read, this.site, &this.scratch[..n]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        if self.site.is_some() {
            self.segment.extend_from_slice(&buf[..n]);
        }
        Poll::Ready(Ok(n))
    }

    /// Puts the segment on the wire: traced, and the faults decided on it (a hold is the
    /// reader's to wait out).
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let (Some(s), false) = (this.site, this.segment.is_empty()) {
            sockets::stream_segment(s.node, s.local, s.peer, &this.segment);
            this.segment.clear();
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if let Some(s) = self.site {
            sockets::closed(s.node, s.local, s.peer);
        }
    }
}
