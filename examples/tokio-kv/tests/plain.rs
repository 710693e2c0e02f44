//! The service on whatever tokio the build has: plain tokio (`RUSTFLAGS=""`) or madsim's
//! (`--cfg madsim`, inside madsim's test runtime). Three replicas on loopback; a replica that
//! is stopped and started again catches up before it serves.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_kv::{Client, Config};

#[tokio::test]
async fn three_replicas_serve_reads_and_writes_and_a_restarted_one_catches_up() {
    let replicas: Vec<SocketAddr> = (0..3)
        .map(|i| format!("127.0.0.1:{}", 17_101 + i).parse().unwrap())
        .collect();
    let mut tasks: Vec<_> = (0..3)
        .map(|id| {
            tokio::spawn(tokio_kv::serve(
                Config::new(id, replicas.clone()).bootstrap(true),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let limit = Duration::from_secs(2);
    let c0 = Client::new(replicas[0], limit);
    c0.put("k", 1).await.unwrap();
    c0.put("k", 2).await.unwrap();
    assert_eq!(
        Client::new(replicas[1], limit).get("k").await.unwrap(),
        Some(2)
    );
    assert_eq!(c0.get("absent").await.unwrap(), None);

    // Replica 2 stops (its memory is lost) and starts again: it catches up, then serves.
    tasks.remove(2).abort();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tasks.push(tokio::spawn(tokio_kv::serve(Config::new(
        2,
        replicas.clone(),
    ))));
    let c2 = Client::new(replicas[2], limit);
    let mut value = None;
    for _ in 0..50 {
        match c2.get("k").await {
            Ok(v) => {
                value = v;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert_eq!(value, Some(2));
    for t in tasks {
        t.abort();
    }
}
