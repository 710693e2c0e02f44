//! A counter service over TCP, written against tokio only: a server that answers each `INC`
//! line with the count so far and keeps a heartbeat task ticking, and a client. Kelpie never
//! appears here; `tests/service_dst.rs` runs it under Kelpie's faults.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Runs the server on `addr`: a heartbeat task that adds one to `heartbeats` every
/// millisecond, and a task per connection. Returns only if binding fails.
pub async fn serve(addr: SocketAddr, heartbeats: Arc<AtomicU64>) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            heartbeats.fetch_add(1, Ordering::SeqCst);
        }
    });
    let count = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await?;
        let count = count.clone();
        tokio::spawn(async move {
            let mut stream = BufReader::new(stream);
            let mut line = String::new();
            while stream.read_line(&mut line).await.unwrap_or(0) > 0 {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                line.clear();
                let reply = format!("{n}\n");
                if stream.get_mut().write_all(reply.as_bytes()).await.is_err()
                    || stream.get_mut().flush().await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// One `INC` on a new connection, within `limit`: the count, or why there is none.
pub async fn increment(addr: SocketAddr, limit: Duration) -> io::Result<u64> {
    let call = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"INC\n").await?;
        stream.flush().await?;
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).await?;
        reply
            .trim_end()
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, reply.clone()))
    };
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
}
