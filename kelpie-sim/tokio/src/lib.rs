//! tokio for a service under Kelpie: the one manifest change that puts an existing tokio
//! service under Kelpie's network faults and into its trace. Its sockets take the run's faults:
//!
//! ```
//! # #[cfg(madsim)] {
//! use kelpie_sim::{FaultKind, FaultSpec, SimConfig, Simulation};
//! use kelpie_tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use kelpie_tokio::net::{TcpListener, TcpStream};
//!
//! let report = Simulation::new(SimConfig::with_seed(3))
//!     .with_fault(FaultSpec::new(FaultKind::PacketLoss, 1.0)) // every segment is lost once
//!     .run(|env| async move {
//!         let server = env
//!             .create_node("server")
//!             .init(|env| async move {
//!                 let listener = TcpListener::bind((env.ip(), 7000)).await.unwrap();
//!                 let (mut s, _) = listener.accept().await.unwrap();
//!                 let mut buf = [0; 4];
//!                 s.read_exact(&mut buf).await.unwrap();
//!                 s.write_all(&buf).await.unwrap();
//!                 s.flush().await.unwrap();
//!             })
//!             .build();
//!         env.sleep(std::time::Duration::from_millis(1)).await;
//!         let mut s = TcpStream::connect((server.node().ip(), 7000)).await.unwrap();
//!         let start = env.elapsed();
//!         s.write_all(b"ping").await.unwrap();
//!         s.flush().await.unwrap();
//!         let mut buf = [0; 4];
//!         s.read_exact(&mut buf).await.unwrap();
//!         (buf, env.elapsed() - start)
//!     })
//!     .unwrap();
//! let (echo, round_trip) = report.output;
//! assert_eq!(&echo, b"ping");
//! // Each way, the segment waited for its retransmission.
//! assert!(round_trip >= 2 * kelpie_sim::sockets::RETRANSMIT);
//! assert_eq!(report.faults.fired(FaultKind::PacketLoss), 2);
//! # }
//! ```
//!
//! The change, in the service's manifest:
//!
//! ```toml
//! [dependencies]
//! tokio = { package = "kelpie-tokio", version = "0.1", features = ["full"] }
//! ```
//!
//! Without `--cfg madsim` this crate is plain tokio (through madsim-tokio, which is plain tokio
//! then), so the service ships unchanged. With it, it is madsim-tokio (`tokio::spawn`,
//! `tokio::time`, … on madsim's deterministic executor) except for [`net`]: its
//! [`TcpStream`](net::TcpStream), [`TcpListener`](net::TcpListener) and
//! [`UdpSocket`](net::UdpSocket) wrap madsim's and report every connect, accept, close, flush,
//! read and datagram to the Kelpie run (size and hash into the trace), which decides
//! `PacketLoss`, `NetworkDelay`, `MessageReorder` and `MessageDuplicate` on each stream segment
//! and datagram. Partitions and crashes reach these sockets as they reach madsim-tokio's.
//!
//! What madsim-tokio's sockets do differently from the kernel's (bytes leave on `flush`,
//! `shutdown` sends no EOF, no `into_split`) is unchanged: see the README's "Testing an
//! existing tokio service".

pub use madsim_tokio::*;

#[cfg(madsim)]
pub mod net;
