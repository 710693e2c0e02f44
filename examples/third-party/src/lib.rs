//! Glue for running [mini-redis](https://github.com/tokio-rs/mini-redis), a published tokio
//! server this project did not write, on a Kelpie node. Only this file is ours; mini-redis's
//! source is used unchanged (its manifest's `tokio` line names madsim-tokio, see
//! `.ci/third-party`), and it may use tokio freely: it is the service, not a `*_dst.rs` test.
//!
//! ```no_run
//! # async fn node(ip: std::net::IpAddr) {
//! // In a node's init: serve until the node is killed.
//! kelpie_third_party::serve(ip).await;
//! # }
//! ```

use std::net::{IpAddr, SocketAddr};

/// The port mini-redis listens on.
pub const PORT: u16 = 6379;

/// The server's address on the node with IP `ip`.
pub fn addr(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, PORT)
}

/// Runs mini-redis's own server (`mini_redis::server::run`) on `ip` until the node dies.
///
/// # Panics
///
/// If the port cannot be bound (another server on the node).
pub async fn serve(ip: IpAddr) {
    let listener = tokio::net::TcpListener::bind(addr(ip))
        .await
        .expect("bind mini-redis's port");
    // mini-redis stops on its shutdown future; ours never resolves: a crash is what stops it.
    let _ = mini_redis::server::run(listener, std::future::pending::<()>()).await;
}
