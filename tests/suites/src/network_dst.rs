//! Network under faults: a retransmitting sender delivers every message exactly once to the
//! application despite loss, duplication, reordering and partitions.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kelpie::{FaultKind, SimEnv};

#[derive(Debug, Clone, Hash)]
enum Msg {
    Data(u32),
    Ack(u32),
}

#[kelpie::dst_test(
    seeds = 0..30,
    faults = [PacketLoss(0.1), MessageDuplicate(0.1), MessageReorder(0.1, 20), NetworkPartition(0.01, 300)]
)]
async fn retransmission_delivers_exactly_once(env: SimEnv) -> Result<(), String> {
    let a = env.create_node("a").build();
    let b = env.create_node("b").build();
    let rx = b.network().endpoint::<Msg>();
    let tx = a.network().endpoint::<Msg>();
    // The receiver acks every copy (a lost ack makes the sender retransmit) and delivers each
    // message to the application once.
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let app = delivered.clone();
    env.spawn(async move {
        let mut seen = BTreeSet::new();
        while let Some((from, msg)) = rx.recv().await {
            if let Msg::Data(n) = msg {
                rx.send(from, Msg::Ack(n));
                if seen.insert(n) {
                    app.lock().unwrap().push(n);
                }
            }
        }
    });
    for n in 0..50u32 {
        let mut attempts = 0;
        loop {
            attempts += 1;
            tx.send(b.node(), Msg::Data(n));
            match env.timeout(Duration::from_millis(30), tx.recv()).await {
                Ok(Some((_, Msg::Ack(m)))) if m == n => break,
                _ => {}
            }
        }
        // The faults must actually force retransmissions in some seed, or this suite tests
        // only the happy path.
        kelpie::sometimes!(attempts > 1, "a message needed retransmission");
        kelpie::sometimes!(attempts > 3, "a message needed four or more attempts");
    }
    let delivered = delivered.lock().unwrap().clone();
    if delivered != (0..50).collect::<Vec<u32>>() {
        return Err(format!("delivered {delivered:?}"));
    }
    kelpie::sometimes!(
        env.faults().fired(FaultKind::PacketLoss) > 0,
        "a packet was lost"
    );
    Ok(())
}
