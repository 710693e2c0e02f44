//! [`UdpSocket`]: madsim's, with each datagram traced and the network faults decided on it
//! (lost, sent late, sent twice).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use kelpie_sim::{sockets, NodeId, SocketOp};
use madsim::net::{lookup_host, ToSocketAddrs};

/// A UDP socket (madsim's), whose datagrams reach the Kelpie run.
pub struct UdpSocket {
    /// Shared with the tasks that send a delayed datagram late.
    inner: Arc<madsim::net::UdpSocket>,
    /// The Kelpie node that owns it; `None` outside a Kelpie run.
    node: Option<NodeId>,
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl UdpSocket {
    /// Binds a socket to `addr` (see `tokio::net::UdpSocket::bind`).
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let inner = Arc::new(madsim::net::UdpSocket::bind(addr).await?);
        let node = sockets::current_node();
        Ok(UdpSocket { inner, node })
    }

    /// Sets the default destination (see `tokio::net::UdpSocket::connect`).
    pub async fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        self.inner.connect(addr).await
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The default destination's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// Sends a datagram to `dst`, as the network faults decide (as madsim's, returns `()`).
    pub async fn send_to(&self, dst: impl ToSocketAddrs, buf: &[u8]) -> io::Result<()> {
        let dst = lookup_host(dst)
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to send to"))?;
        self.send_faulted(dst, buf).await
    }

    /// Sends a datagram to the default destination, as the network faults decide.
    pub async fn send(&self, buf: &[u8]) -> io::Result<()> {
        let dst = self.inner.peer_addr()?;
        self.send_faulted(dst, buf).await
    }

    /// Receives a datagram and its sender's address; traced.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.inner.recv_from(buf).await?;
        if let Some(node) = self.node {
            sockets::event(node, SocketOp::RecvFrom, from, &buf[..n]);
        }
        Ok((n, from))
    }

    /// Receives a datagram from the default destination; traced.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.recv(buf).await?;
        if let (Some(node), Ok(from)) = (self.node, self.inner.peer_addr()) {
            sockets::event(node, SocketOp::RecvFrom, from, &buf[..n]);
        }
        Ok(n)
    }

    /// Sends `buf` to `dst` as the faults decide: dropped, sent late by a task on this node
    /// (later datagrams may overtake it; it dies with the node), or sent twice.
    async fn send_faulted(&self, dst: SocketAddr, buf: &[u8]) -> io::Result<()> {
        let Some(node) = self.node else {
            return self.inner.send_to(dst, buf).await;
        };
        let fate = sockets::datagram(node, dst, buf);
        if fate.lost {
            return Ok(());
        }
        for _ in 0..fate.copies {
            if fate.delay.is_zero() {
                self.inner.send_to(dst, buf).await?;
            } else {
                let inner = self.inner.clone();
                let late = buf.to_vec();
                let delay = fate.delay;
                madsim::task::spawn(async move {
                    madsim::time::sleep(delay).await;
                    let _ = inner.send_to(dst, &late).await;
                });
            }
        }
        Ok(())
    }
}
