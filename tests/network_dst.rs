//! Network under faults: a retransmitting sender delivers every message exactly once to the
//! application despite loss, duplication, reordering and partitions.

use std::collections::BTreeSet;
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
    let receiver = env.spawn(async move {
        let mut seen = BTreeSet::new();
        let mut delivered = Vec::new();
        while delivered.len() < 50 {
            let Some((from, Msg::Data(n))) = rx.recv().await else {
                continue;
            };
            rx.send(from, Msg::Ack(n));
            if seen.insert(n) {
                delivered.push(n); // deduplicated delivery to the application
            }
        }
        delivered
    });
    for n in 0..50u32 {
        loop {
            tx.send(b.node(), Msg::Data(n));
            match env.timeout(Duration::from_millis(30), tx.recv()).await {
                Ok(Some((_, Msg::Ack(m)))) if m == n => break,
                _ => {}
            }
        }
    }
    let delivered = receiver.await.map_err(|e| e.to_string())?;
    let unique: BTreeSet<u32> = delivered.iter().copied().collect();
    if unique.len() != 50 || delivered.len() != 50 {
        return Err(format!("delivered {delivered:?}"));
    }
    let stats = env.faults();
    if stats.fired(FaultKind::PacketLoss) == 0 {
        return Err(format!("no packet was lost: {stats}"));
    }
    Ok(())
}
