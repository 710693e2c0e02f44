//! The crate's unchanged tokio server and client under Kelpie's faults: the server runs on a
//! Kelpie node (started by its init, started again by every restart); a client on the
//! supervisor sends a request every 20 ms. The faults are Kelpie's own NetworkPartition and
//! NodeCrash, decided on virtual time although neither side ever calls Kelpie.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kelpie::{FaultKind, NodeId, NodeStatus, SimEnv};

const PORT: u16 = 8080;

#[kelpie::dst_test(
    seeds = 0..20,
    faults = [NetworkPartition(0.02, 300), NodeCrash(0.01, 300)]
)]
async fn faults_reach_the_unchanged_tokio_service(env: SimEnv) -> Result<(), String> {
    let boots = Arc::new(AtomicU64::new(0));
    let heartbeats = Arc::new(AtomicU64::new(0));
    let server = {
        let (boots, heartbeats) = (boots.clone(), heartbeats.clone());
        env.create_node("server")
            .init(move |env| {
                boots.fetch_add(1, Ordering::SeqCst);
                let addr = SocketAddr::new(env.ip(), PORT);
                let heartbeats = heartbeats.clone();
                async move {
                    let _ = outside_service::serve(addr, heartbeats).await;
                }
            })
            .build()
            .node()
    };
    let addr = SocketAddr::new(env.node_ip(server), PORT);
    let net = env.network();
    let cut = |net: &kelpie::net::SimNetwork| {
        net.is_cut(NodeId::MAIN, server) || net.is_cut(server, NodeId::MAIN)
    };
    let (mut ok_while_cut, mut failed_while_cut, mut ok_after_heal) = (0, 0, 0);
    let mut was_cut = false;
    for _ in 0..200 {
        let before = (cut(&net), env.node_status(server));
        let beats = heartbeats.load(Ordering::SeqCst);
        let reply = outside_service::increment(addr, Duration::from_millis(100)).await;
        let after = (cut(&net), env.node_status(server));
        // A request that began and ended with the link cut never gets an answer.
        if before.0 && after.0 {
            match reply {
                Ok(_) => ok_while_cut += 1,
                Err(_) => failed_while_cut += 1,
            }
        }
        if reply.is_ok() && was_cut && !before.0 {
            ok_after_heal += 1;
        }
        was_cut = before.0;
        // While the server is down, its spawned heartbeat task does not run.
        if before.1 == NodeStatus::Down && after.1 == NodeStatus::Down {
            let now = heartbeats.load(Ordering::SeqCst);
            if now != beats {
                return Err(format!("a crashed node's task ran: {beats} -> {now}"));
            }
        }
        env.sleep(Duration::from_millis(20)).await;
    }
    if ok_while_cut > 0 {
        return Err(format!("{ok_while_cut} requests crossed a partition"));
    }
    // Every restart re-ran init: one boot per restart, plus the first.
    let crashes = env.faults().fired(FaultKind::NodeCrash);
    let boots = boots.load(Ordering::SeqCst);
    if boots > crashes + 1 {
        return Err(format!("{boots} boots for {crashes} crashes"));
    }
    kelpie::sometimes!(failed_while_cut > 0, "a request failed during a partition");
    kelpie::sometimes!(ok_after_heal > 0, "a request succeeded after a heal");
    kelpie::sometimes!(boots > 1, "a crashed server's init ran again");
    Ok(())
}

fn main() -> std::process::ExitCode {
    kelpie::harness::main()
}
