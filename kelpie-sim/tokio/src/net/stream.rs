//! [`TcpStream`]: madsim's, with its connect, flushes, reads and close traced, and each
//! segment (the bytes of one flush) held as the loss and delay faults decide.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use kelpie_sim::{sockets, NodeId, SocketOp};
use madsim::net::{lookup_host, ToSocketAddrs};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A TCP stream (madsim's), whose traffic reaches the Kelpie run.
pub struct TcpStream {
    inner: madsim::net::TcpStream,
    /// The Kelpie node that owns it, and its peer; `None` outside a Kelpie run.
    site: Option<(NodeId, SocketAddr)>,
    /// The bytes written since the last flush: the next segment.
    segment: Vec<u8>,
    /// A fault's hold on the flush in progress.
    hold: Option<Pin<Box<madsim::time::Sleep>>>,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl TcpStream {
    pub(super) fn wrap(
        inner: madsim::net::TcpStream,
        node: Option<NodeId>,
        peer: SocketAddr,
    ) -> Self {
        TcpStream {
            inner,
            site: node.map(|n| (n, peer)),
            segment: Vec::new(),
            hold: None,
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
                    if let Some(node) = node {
                        sockets::event(node, SocketOp::Connect, peer, &[]);
                    }
                    return Ok(TcpStream::wrap(inner, node, peer));
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
    /// traced as a read.
    pub fn try_read_buf<B: bytes::BufMut>(&mut self, buf: &mut B) -> io::Result<usize> {
        let mut read = Vec::new();
        let n = self.inner.try_read_buf(&mut read)?;
        self.traced_read(&read);
        buf.put_slice(&read);
        Ok(n)
    }

    fn traced_read(&self, bytes: &[u8]) {
        if let (Some((node, peer)), false) = (self.site, bytes.is_empty()) {
            sockets::event(node, SocketOp::Read, peer, bytes);
        }
    }
}

#[cfg(unix)]
impl std::os::unix::io::AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        self.traced_read(&buf.filled()[before..]);
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

    /// Puts the segment on the wire: traced, held as long as the faults decide (the bytes of
    /// a flush whose future was dropped during a hold wait for the next flush, behind it).
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(hold) = &mut this.hold {
                ready!(hold.as_mut().poll(cx));
                this.hold = None;
            }
            let Some((node, peer)) = this.site else { break };
            if this.segment.is_empty() {
                break;
            }
            let held = sockets::stream_segment(node, peer, &this.segment);
            this.segment.clear();
            if held.is_zero() {
                break;
            }
            this.hold = Some(Box::pin(madsim::time::sleep(held)));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if let Some((node, peer)) = self.site {
            sockets::closed(node, peer);
        }
    }
}
