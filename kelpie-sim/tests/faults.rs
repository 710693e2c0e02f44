//! Every fault fires at its declared rate and demonstrably reaches the code under test.

use std::time::Duration;

use kelpie_sim::{
    ConfigError, Failure, FaultKind, FaultSpec, NodeStatus, SimConfig, SimEnv, SimError,
    Simulation, StorageError,
};

fn sim(seed: u64, faults: impl IntoIterator<Item = FaultSpec>) -> Simulation {
    Simulation::new(SimConfig::with_seed(seed)).with_faults(faults)
}

fn f(kind: FaultKind, p: f64) -> FaultSpec {
    FaultSpec::new(kind, p)
}

/// Asserts that `fired` out of `considered` is within 5 standard deviations of `p`.
fn assert_rate(name: &str, fired: u64, considered: u64, p: f64) {
    assert!(
        considered >= 300,
        "{name}: only considered {considered} times"
    );
    let n = considered as f64;
    let sd = (n * p * (1.0 - p)).sqrt();
    let diff = (fired as f64 - n * p).abs();
    assert!(
        diff <= 5.0 * sd,
        "{name}: fired {fired}/{considered}, expected p = {p}"
    );
}

/// A workload that exercises every operation kind many times.
async fn busy(env: SimEnv) {
    let nodes: Vec<SimEnv> = (0..3)
        .map(|i| env.create_node(format!("n{i}")).build())
        .collect();
    let eps: Vec<_> = nodes
        .iter()
        .map(|n| n.network().endpoint::<u32>())
        .collect();
    for i in 0..200u32 {
        let s = env.storage();
        let _ = s.set(format!("k{}", i % 7), i.to_le_bytes()).await;
        let _ = s.get(format!("k{}", i % 7)).await;
        let _ = s.delete(format!("k{}", (i + 3) % 7)).await;
        let _ = s.scan_prefix("k").await;
        let _ = s.sync().await;
        let mut tx = s.transaction();
        let _ = tx.get("t").await;
        tx.set("t", i.to_le_bytes());
        let _ = tx.commit().await;
        let to = nodes[(i % 3) as usize].node();
        eps[((i + 1) % 3) as usize].send(to, i);
        let _ = env.fault("LlmTimeout");
        env.sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn every_fault_fires_at_its_declared_rate() {
    let p = 0.3;
    for info in kelpie_sim::FAULT_TABLE {
        let spec = match info.kind {
            FaultKind::Custom => FaultSpec::custom("LlmTimeout", p),
            kind => f(kind, p),
        };
        let (mut fired, mut considered) = (0, 0);
        for seed in 0..6 {
            let report = sim(seed, [spec.clone()]).run(busy).unwrap();
            let stat = &report.faults.faults[0];
            fired += stat.fired;
            considered += stat.considered;
        }
        assert_rate(info.name, fired, considered, p);
    }
}

#[test]
fn write_under_write_fail_fails_and_writes_nothing() {
    let r = sim(1, [f(FaultKind::StorageWriteFail, 1.0)])
        .run(|env| async move {
            let s = env.storage();
            (s.set("k", "v").await, s.delete("k").await, s.get("k").await)
        })
        .unwrap();
    assert_eq!(r.output.0, Err(StorageError::Io { op: "write" }));
    assert!(r.output.1.is_err());
    assert_eq!(r.output.2, Ok(None));
    assert_eq!(r.faults.fired(FaultKind::StorageWriteFail), 2);
}

#[test]
fn disk_full_and_read_fail_reach_the_caller() {
    let r = sim(
        1,
        [
            f(FaultKind::DiskFull, 1.0),
            f(FaultKind::StorageReadFail, 1.0),
        ],
    )
    .run(|env| async move {
        let s = env.storage();
        (
            s.set("k", "v").await,
            s.get("k").await,
            s.scan_prefix("").await,
        )
    })
    .unwrap();
    assert_eq!(r.output.0, Err(StorageError::DiskFull));
    assert_eq!(r.output.1, Err(StorageError::Io { op: "get" }));
    assert!(r.output.2.is_err());
}

#[test]
fn corruption_flips_exactly_one_bit() {
    let r = sim(3, [f(FaultKind::StorageCorruption, 1.0)])
        .run(|env| async move {
            let s = env.storage();
            s.set("k", [0u8; 16]).await.unwrap();
            s.get("k").await.unwrap().unwrap()
        })
        .unwrap();
    let bits: u32 = r.output.iter().map(|b| b.count_ones()).sum();
    assert_eq!(bits, 1);
}

#[test]
fn torn_write_leaves_a_prefix_of_the_new_value_over_the_old() {
    let mut torn_seen = 0;
    for seed in 0..20 {
        let r = sim(seed, [f(FaultKind::StoragePartialWrite, 1.0).after_ms(1)])
            .run(|env| async move {
                let s = env.storage();
                s.set("k", "AAAAAAAAAAAAAAAA").await.unwrap();
                env.sleep(Duration::from_millis(2)).await;
                s.set("k", "BBBBBBBBBBBBBBBB").await.unwrap();
                s.get("k").await.unwrap().unwrap()
            })
            .unwrap();
        let v = String::from_utf8(r.output).unwrap();
        let cut = v.find('A').expect("a torn write never completes the value");
        assert!(
            v[..cut].bytes().all(|b| b == b'B') && v[cut..].bytes().all(|b| b == b'A'),
            "{v}"
        );
        assert_eq!(v.len(), 16);
        torn_seen += usize::from(cut > 0);
    }
    assert!(
        torn_seen > 10,
        "the cut point varies and is usually inside the value"
    );
}

#[test]
fn misdirected_write_lands_on_another_key() {
    let r = sim(
        2,
        [f(FaultKind::StorageMisdirectedWrite, 1.0).key_prefix("a")],
    )
    .run(|env| async move {
        let s = env.storage();
        s.set("b", "old-b").await.unwrap();
        s.set("a", "new-a").await.unwrap(); // lands on "b"
        (s.get("a").await.unwrap(), s.get("b").await.unwrap())
    })
    .unwrap();
    assert_eq!(r.output, (None, Some(b"new-a".to_vec())));
}

/// Writes `synced` then syncs, writes `unsynced`, kills and restarts the node; returns what
/// survived.
async fn crash_after_writes(env: SimEnv) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let n = env.create_node("n").build();
    let s = n.storage();
    s.set("synced", "1").await.unwrap();
    s.sync().await.unwrap();
    s.set("unsynced", "2").await.unwrap();
    env.kill(n.node());
    assert_eq!(s.get("synced").await, Err(StorageError::NodeDown));
    env.restart(n.node());
    (
        s.get("synced").await.unwrap(),
        s.get("unsynced").await.unwrap(),
    )
}

#[test]
fn crash_loses_exactly_the_unsynced_writes() {
    let r = sim(0, []).run(crash_after_writes).unwrap();
    assert_eq!(r.output, (Some(b"1".to_vec()), None));
}

#[test]
fn lost_fsync_loses_the_synced_writes_at_the_next_crash() {
    let r = sim(0, [f(FaultKind::StorageFsyncLoss, 1.0)])
        .run(crash_after_writes)
        .unwrap();
    assert_eq!(r.output, (None, None));
}

#[test]
fn storage_latency_delays_operations_within_bound() {
    let r = sim(
        4,
        [f(FaultKind::StorageLatency, 1.0).with_param("max_ms", 30)],
    )
    .run(|env| async move {
        let t0 = env.elapsed();
        env.storage().get("k").await.unwrap();
        env.elapsed() - t0
    })
    .unwrap();
    assert!(
        r.output > Duration::ZERO && r.output <= Duration::from_millis(30),
        "{:?}",
        r.output
    );
}

#[test]
fn crash_during_transaction_is_all_or_nothing() {
    let (mut applied, mut lost) = (0, 0);
    for seed in 0..40 {
        let r = sim(seed, [f(FaultKind::CrashDuringTransaction, 1.0)])
            .run(|env| async move {
                let n = env.create_node("n").build();
                let s = n.storage();
                let mut tx = s.transaction();
                tx.set("a", "1");
                tx.set("b", "2");
                let res = tx.commit().await;
                assert_eq!(n.node_status(n.node()), NodeStatus::Down);
                env.sleep(Duration::from_secs(1)).await; // restarted by then
                (res, s.get("a").await.unwrap(), s.get("b").await.unwrap())
            })
            .unwrap();
        assert_eq!(r.output.0, Err(StorageError::Crashed));
        match (r.output.1, r.output.2) {
            (Some(_), Some(_)) => applied += 1,
            (None, None) => lost += 1,
            torn => panic!("seed {seed}: torn transaction {torn:?}"),
        }
    }
    assert!(
        applied > 5 && lost > 5,
        "both outcomes occur: {applied} applied, {lost} lost"
    );
}

#[test]
fn conflicting_transactions_do_not_both_commit() {
    let r = sim(0, [])
        .run(|env| async move {
            let s = env.storage();
            s.set("x", "0").await.unwrap();
            let mut t1 = s.transaction();
            let mut t2 = s.transaction();
            t1.get("x").await.unwrap();
            t2.get("x").await.unwrap();
            t1.set("x", "1");
            t2.set("x", "2");
            (
                t1.commit().await,
                t2.commit().await,
                s.get("x").await.unwrap(),
            )
        })
        .unwrap();
    assert_eq!(r.output.0, Ok(()));
    assert!(matches!(r.output.1, Err(StorageError::Conflict { .. })));
    assert_eq!(r.output.2, Some(b"1".to_vec()));
}

/// Sends 0..n from a to b, returns what b received within 1 s (in order of arrival).
async fn exchange(env: SimEnv, n: u32) -> Vec<u32> {
    let a = env.create_node("a").build();
    let b = env.create_node("b").build();
    let rx = b.network().endpoint::<u32>();
    let tx = a.network().endpoint::<u32>();
    for i in 0..n {
        tx.send(b.node(), i);
    }
    let mut got = Vec::new();
    while let Ok(Some((_, m))) = env.timeout(Duration::from_secs(1), rx.recv()).await {
        got.push(m);
    }
    got
}

#[test]
fn network_is_fifo_without_faults() {
    let r = sim(0, []).run(|env| exchange(env, 50)).unwrap();
    assert_eq!(r.output, (0..50).collect::<Vec<_>>());
}

/// Every message arrives within the configured latency of its send (no faults): the delivery
/// pump is re-armed when a later send is due earlier than the message it waits for.
#[test]
fn messages_arrive_within_the_latency_range_whatever_else_is_in_flight() {
    for seed in 0..20 {
        let r = sim(seed, [])
            .run(|env| async move {
                let nodes: Vec<SimEnv> = (0..4)
                    .map(|i| env.create_node(format!("n{i}")).build())
                    .collect();
                let eps: Vec<_> = nodes
                    .iter()
                    .map(|n| std::sync::Arc::new(n.network().endpoint::<u64>()))
                    .collect();
                // Receivers: note how long each message took.
                let mut waits = Vec::new();
                for ep in &eps {
                    let (ep, env2) = (ep.clone(), env.clone());
                    waits.push(env.spawn(async move {
                        let mut took = Vec::new();
                        while let Ok(Some((_, sent_ns))) =
                            env2.timeout(Duration::from_millis(50), ep.recv()).await
                        {
                            took.push(env2.elapsed() - Duration::from_nanos(sent_ns));
                        }
                        took
                    }));
                }
                // Senders: bursts at random times to random peers.
                for _ in 0..200 {
                    let from = env.rng().gen_range(0..4) as usize;
                    let to = (from + 1 + env.rng().gen_range(0..3) as usize) % 4;
                    let now = env.elapsed().as_nanos() as u64;
                    eps[from].send(nodes[to].node(), now);
                    if env.rng().gen_bool(0.3) {
                        env.sleep(Duration::from_micros(env.rng().gen_range(1..3000)))
                            .await;
                    }
                }
                let mut all = Vec::new();
                for w in waits {
                    all.extend(w.await.unwrap());
                }
                all
            })
            .unwrap();
        assert_eq!(r.output.len(), 200, "seed {seed}: every message arrives");
        let latency = SimConfig::with_seed(0).net_latency;
        for took in &r.output {
            assert!(
                latency.start <= *took && *took <= latency.end,
                "seed {seed}: a message took {took:?}, outside {latency:?}"
            );
        }
    }
}

#[test]
fn packet_loss_duplicate_and_reorder_reach_the_receiver() {
    let lost = sim(0, [f(FaultKind::PacketLoss, 1.0)])
        .run(|env| exchange(env, 20))
        .unwrap();
    assert!(lost.output.is_empty());
    let dup = sim(0, [f(FaultKind::MessageDuplicate, 1.0)])
        .run(|env| exchange(env, 20))
        .unwrap();
    assert_eq!(dup.output.len(), 40);
    let reordered = sim(
        0,
        [f(FaultKind::MessageReorder, 0.5).with_param("max_ms", 50)],
    )
    .run(|env| exchange(env, 50))
    .unwrap();
    let mut sorted = reordered.output.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>(), "nothing lost");
    assert_ne!(reordered.output, sorted, "some message overtaken");
}

#[test]
fn network_delay_delays() {
    let r = sim(
        0,
        [f(FaultKind::NetworkDelay, 1.0).with_param("max_ms", 500)],
    )
    .run(|env| async move {
        let a = env.create_node("a").build();
        let rx = env.network().endpoint::<u8>();
        a.network().endpoint::<u8>().send(env.node(), 1);
        rx.recv().await.unwrap();
        env.elapsed()
    })
    .unwrap();
    assert!(r.output > Duration::from_millis(10), "{:?}", r.output);
}

#[test]
fn partitioned_node_receives_nothing_until_heal() {
    let r = sim(0, [])
        .run(|env| async move {
            let a = env.create_node("a").build();
            let b = env.create_node("b").build();
            let rx = b.network().endpoint::<u32>();
            let tx = a.network().endpoint::<u32>();
            env.network().partition(a.node(), b.node());
            for i in 0..10 {
                tx.send(b.node(), i);
            }
            let during = env.timeout(Duration::from_secs(5), rx.recv()).await.is_ok();
            env.network().heal();
            tx.send(b.node(), 99);
            let after = rx.recv().await.unwrap().1;
            (during, after)
        })
        .unwrap();
    assert_eq!(r.output, (false, 99));
}

#[test]
fn injected_partition_drops_messages_and_heals() {
    let r = sim(
        0,
        [f(FaultKind::NetworkPartition, 0.05).with_param("heal_ms", 200)],
    )
    .run(|env| async move {
        let a = env.create_node("a").build();
        let b = env.create_node("b").build();
        let rx = b.network().endpoint::<u32>();
        let tx = a.network().endpoint::<u32>();
        let mut received = 0;
        for i in 0..300 {
            tx.send(b.node(), i);
            env.sleep(Duration::from_millis(20)).await;
            while rx.try_recv().is_some() {
                received += 1;
            }
        }
        received
    })
    .unwrap();
    assert!(r.faults.fired(FaultKind::NetworkPartition) > 0);
    assert!(
        r.output > 0 && r.output < 300,
        "some dropped, some delivered: {}",
        r.output
    );
}

#[test]
fn node_crash_restarts_and_reruns_init_with_volatile_state_lost() {
    let r = sim(
        5,
        [f(FaultKind::NodeCrash, 0.02).with_param("restart_ms", 50)],
    )
    .run(|env| async move {
        let n = env
            .create_node("n")
            .init(|env| async move {
                let s = env.storage();
                let boots = s.get("boots").await.ok().flatten().map_or(0, |v| v[0]);
                s.set("boots", [boots + 1]).await.unwrap();
                s.sync().await.unwrap();
            })
            .build();
        for _ in 0..500 {
            env.sleep(Duration::from_millis(10)).await;
        }
        n.storage()
            .get("boots")
            .await
            .ok()
            .flatten()
            .map_or(0, |v| v[0])
    })
    .unwrap();
    let crashes = r.faults.fired(FaultKind::NodeCrash);
    assert!(crashes > 0);
    assert!(
        r.output as u64 >= crashes,
        "init re-ran after each restart: {} boots",
        r.output
    );
}

#[test]
fn clock_faults_move_only_the_node_clock() {
    let r = sim(
        0,
        [
            f(FaultKind::ClockSkew, 1.0).max_triggers(1),
            f(FaultKind::ClockJump, 1.0).max_triggers(1),
        ],
    )
    .run(|env| async move {
        let n = env.create_node("n").build();
        env.sleep(Duration::from_millis(50)).await;
        (env.local_time() == env.elapsed(), n.clock_offset_ns())
    })
    .unwrap();
    assert!(r.output.0, "the supervisor's clock is never skewed");
    assert_ne!(r.output.1, 0);
    assert_eq!(
        r.faults.fired(FaultKind::ClockSkew) + r.faults.fired(FaultKind::ClockJump),
        2
    );
}

#[test]
fn node_pause_stops_tasks_for_a_while() {
    let r = sim(
        1,
        [f(FaultKind::NodePause, 1.0)
            .max_triggers(1)
            .with_param("pause_ms", 300)],
    )
    .run(|env| async move {
        let n = env.create_node("n").build();
        env.sleep(Duration::from_millis(15)).await;
        let paused = env.node_status(n.node());
        env.sleep(Duration::from_millis(400)).await;
        (paused, env.node_status(n.node()))
    })
    .unwrap();
    assert_eq!(r.output, (NodeStatus::Paused, NodeStatus::Up));
}

#[test]
fn custom_faults_fire_by_name_only() {
    let r = sim(0, [FaultSpec::custom("LlmTimeout", 1.0)])
        .run(|env| async move { (env.fault("LlmTimeout"), env.fault("ToolError")) })
        .unwrap();
    assert_eq!(r.output, (true, false));
    assert_eq!(r.faults.fired_named("LlmTimeout"), 1);
}

#[test]
fn nonsense_config_is_an_error_not_a_panic() {
    let bad_fault = sim(0, [f(FaultKind::PacketLoss, 1.5)])
        .run(|_| async {})
        .unwrap_err();
    assert!(
        matches!(bad_fault, SimError::Config(ConfigError::Probability { .. })),
        "{bad_fault}"
    );
    let window = sim(
        0,
        [f(FaultKind::PacketLoss, 0.5).after_ms(100).until_ms(50)],
    )
    .run(|_| async {})
    .unwrap_err();
    assert!(
        window.to_string().contains("empty active window"),
        "{window}"
    );
    let mut s = sim(0, []);
    s.config_mut().fault_tick = Duration::ZERO;
    assert!(matches!(
        s.run(|_| async {}).unwrap_err(),
        SimError::Config(ConfigError::ZeroDuration { .. })
    ));
}

/// The run was reported as a wall-clock timeout, with the trace up to the spin.
fn assert_wall_timeout_after_spin(err: &SimError) {
    let run = err.failed_run().unwrap();
    assert!(
        matches!(run.failure, Failure::WallTimeout { .. }),
        "{}",
        run.failure
    );
    assert!(run
        .trace
        .tail
        .iter()
        .any(|e| e.to_string().contains("about to spin")));
}

#[test]
fn watchdog_reports_a_loop_that_never_awaits() {
    let mut s = sim(0, []);
    s.config_mut().wall_timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = s
        .run(|env| async move {
            env.trace("about to spin");
            loop {
                // Never awaits; the watchdog's abort flag unwinds it at its next env call.
                std::hint::black_box(env.faults());
            }
        })
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_wall_timeout_after_spin(&err);
}

#[test]
fn watchdog_leaves_behind_a_loop_that_never_calls_kelpie() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static RELEASE: AtomicBool = AtomicBool::new(false);
    let mut s = sim(0, []);
    s.config_mut().wall_timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let err = s
        .run(|env| async move {
            env.trace("about to spin");
            // No kelpie call can unwind this loop: the run is reported and the thread is
            // left (detached) until the test releases it.
            while !RELEASE.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
        .unwrap_err();
    // The limit, then the one-second grace for unwinding; not the loop's lifetime.
    assert!(started.elapsed() < Duration::from_secs(5));
    RELEASE.store(true, Ordering::Relaxed);
    assert_wall_timeout_after_spin(&err);
}

#[test]
fn deadlock_is_reported_with_what_was_waiting() {
    let err = sim(0, [])
        .run(|env| async move {
            let rx = env.network().endpoint::<u8>();
            rx.recv().await // nobody ever sends
        })
        .unwrap_err();
    let run = err.failed_run().unwrap();
    let Failure::Deadlock { waiting } = &run.failure else {
        panic!("{}", run.failure)
    };
    assert!(!waiting.is_empty());
}

#[test]
fn virtual_time_limit_is_reported() {
    let mut s = sim(0, []);
    s.config_mut().max_time = Duration::from_secs(10);
    let err = s
        .run(|env| async move { env.sleep(Duration::from_secs(60)).await })
        .unwrap_err();
    assert!(matches!(
        err.failed_run().unwrap().failure,
        Failure::VirtualTimeLimit { .. }
    ));
}

#[test]
fn spawns_on_a_restarted_node_run_and_init_may_return() {
    let r = sim(0, [])
        .run(|env| async move {
            let ran = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let counter = ran.clone();
            let n = env
                .create_node("n")
                .init(move |env| {
                    // Work done in the closure itself, before the future: runs on the init
                    // task, not inside madsim's restart (which would deadlock on a fault tick).
                    let counter = counter.clone();
                    drop(env.spawn(async move {
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }));
                    async {} // init returns at once; the node stays up
                })
                .build();
            env.sleep(Duration::from_millis(1)).await;
            env.restart(n.node());
            env.sleep(Duration::from_millis(1)).await;
            let later = n.spawn(async { 7 });
            let seven = env.timeout(Duration::from_secs(1), later).await;
            (
                ran.load(std::sync::atomic::Ordering::Relaxed),
                seven.ok().and_then(Result::ok),
                env.node_status(n.node()),
            )
        })
        .unwrap();
    assert_eq!(r.output, (2, Some(7), NodeStatus::Up));
}

/// A run frees what it held: a task still asleep when the body returns, a node's init closure
/// holding an env, a message in flight, and a fault's delayed restart (madsim's runtime does not
/// drop pending tasks, and a closure in its node table would keep the world alive).
#[test]
fn a_finished_run_frees_pending_tasks_init_closures_and_the_world() {
    let token = std::sync::Arc::new(());
    for seed in 0..5 {
        let t = token.clone();
        sim(seed, [f(FaultKind::NodeCrash, 0.5)])
            .run(move |env| async move {
                let main = env.clone();
                let t2 = t.clone();
                let n = env
                    .create_node("n")
                    .init(move |node| {
                        let (main, t) = (main.clone(), t2.clone());
                        async move {
                            let _keep = (&main, &t);
                            node.sleep(Duration::from_secs(3600)).await;
                        }
                    })
                    .build();
                let t3 = t.clone();
                let e = env.clone();
                env.spawn(async move {
                    let _keep = t3;
                    e.sleep(Duration::from_secs(3600)).await;
                });
                let ep = n.network().endpoint::<u32>();
                env.network().endpoint::<u32>().send(n.node(), 1);
                env.sleep(Duration::from_millis(100)).await;
                drop(ep);
            })
            .unwrap();
    }
    assert_eq!(
        std::sync::Arc::strong_count(&token),
        1,
        "a finished run still holds what its tasks and closures captured"
    );
}
