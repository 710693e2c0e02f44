//! [`TcpListener`]: madsim's, with each accept traced.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use kelpie_sim::{sockets, SocketOp};
use madsim::net::ToSocketAddrs;

use super::TcpStream;

/// A TCP listener (madsim's), whose accepts are traced.
pub struct TcpListener {
    inner: madsim::net::TcpListener,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl TcpListener {
    /// Binds a listener to `addr` (see `tokio::net::TcpListener::bind`).
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let inner = madsim::net::TcpListener::bind(addr).await?;
        Ok(TcpListener { inner })
    }

    /// Accepts a connection (see `tokio::net::TcpListener::accept`); traced as an accept on
    /// the node that runs this task.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        let node = sockets::current_node();
        if let Some(node) = node {
            sockets::event(node, SocketOp::Accept, peer, &[]);
        }
        // The address the peer connected to: its stream's peer address.
        let local = stream.local_addr()?;
        Ok((TcpStream::wrap(stream, node, local, peer), peer))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
