//! `tokio::net` in a simulation build: madsim's sockets, wrapped so that their traffic reaches
//! the Kelpie run ([`kelpie_sim::sockets`]): each event is traced on the node that owns the
//! socket, and the network faults are decided on each stream segment and datagram. Outside a
//! Kelpie run (raw madsim) the wrappers only pass through.

mod datagram;
mod listener;
mod stream;

pub use madsim::net::*;

pub use datagram::UdpSocket;
pub use listener::TcpListener;
pub use stream::TcpStream;
