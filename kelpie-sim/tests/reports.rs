//! What a failed run's report says: a deadlock names every live task by node and spawn site,
//! a virtual-time limit carries the virtual time reached. And tasks spawned on a restarted
//! node run on its new incarnation, traced, and are reaped at the end of the run.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kelpie_sim::{
    EventKind, FailedRun, Failure, NodeAction, SimConfig, SimError, Simulation, TraceMode,
};

fn failed(err: &SimError) -> &FailedRun {
    err.failed_run().expect("the run started")
}

fn deadlock_report(run: &FailedRun) -> &str {
    match &run.failure {
        Failure::Deadlock { waiting } => waiting,
        other => panic!("expected a deadlock, got: {other}"),
    }
}

#[test]
fn a_deadlock_lists_a_task_spawned_on_the_supervisor_with_its_spawn_site() {
    static SPAWN_LINE: AtomicU32 = AtomicU32::new(0);
    let err = Simulation::new(SimConfig::with_seed(1))
        .run(|env| async move {
            let quiet = env.network().endpoint::<u16>();
            // This task waits for a message nobody sends; the body waits for the task.
            let (task, line) = (env.spawn(async move { quiet.recv().await }), line!());
            SPAWN_LINE.store(line, Ordering::Relaxed);
            let _ = task.await;
        })
        .unwrap_err();
    let run = failed(&err);
    let waiting = deadlock_report(run);
    let site = format!("{}:{}:", file!(), SPAWN_LINE.load(Ordering::Relaxed));
    let line = waiting
        .lines()
        .find(|l| l.contains(&site))
        .unwrap_or_else(|| panic!("no line names the spawn site {site}:\n{}", run.failure));
    assert!(line.trim_start().starts_with("main"), "{line}");
    assert!(line.trim_end().ends_with("x1"), "{line}");
}

#[test]
fn a_deadlock_lists_tasks_on_created_nodes_and_their_init_tasks() {
    static SPAWN_LINE: AtomicU32 = AtomicU32::new(0);
    let err = Simulation::new(SimConfig::with_seed(2))
        .run(|env| async move {
            let server = env
                .create_node("server")
                .init(|env| async move {
                    let ep = env.network().endpoint::<u8>();
                    let (task, line) = (env.spawn(async move { ep.recv().await }), line!());
                    SPAWN_LINE.store(line, Ordering::Relaxed);
                    let _ = task.await;
                })
                .build();
            let quiet = server.network().endpoint::<u32>();
            quiet.recv().await
        })
        .unwrap_err();
    let run = failed(&err);
    let waiting = deadlock_report(run);
    let site = format!("{}:{}:", file!(), SPAWN_LINE.load(Ordering::Relaxed));
    assert!(
        waiting
            .lines()
            .any(|l| l.contains("n1 (server)") && l.contains(&site)),
        "{}",
        run.failure
    );
    assert!(
        waiting
            .lines()
            .any(|l| l.contains("n1 (server)") && l.contains("init")),
        "{}",
        run.failure
    );
}

#[test]
fn a_virtual_time_limit_report_carries_the_virtual_time_reached() {
    let mut sim = Simulation::new(SimConfig::with_seed(3));
    sim.config_mut().max_time = Duration::from_secs(10);
    // Nothing the simulator traces happens before the limit: only madsim timers.
    let err = sim
        .run(|_env| async move {
            loop {
                madsim::time::sleep(Duration::from_secs(1)).await;
            }
        })
        .unwrap_err();
    let run = failed(&err);
    assert!(
        matches!(run.failure, Failure::VirtualTimeLimit { limit } if limit == Duration::from_secs(10)),
        "{}",
        run.failure
    );
    assert!(
        run.virtual_time >= Duration::from_secs(10),
        "virtual time reached: {:?}",
        run.virtual_time
    );
}

#[test]
fn a_spawn_through_a_restarted_nodes_env_runs_on_its_new_incarnation_traced_and_is_reaped() {
    let ran = Arc::new(AtomicU32::new(0));
    let alive = Arc::new(AtomicU32::new(0));
    let (ran2, alive2) = (ran.clone(), alive.clone());
    let mut sim = Simulation::new(SimConfig::with_seed(4));
    sim.config_mut().trace = TraceMode::Full;
    let report = sim
        .run(move |env| async move {
            let n = env.create_node("n").build();
            env.sleep(Duration::from_millis(1)).await;
            env.kill(n.node());
            env.restart(n.node());
            // A task spawned through the env kept from before the crash.
            let (ran, alive) = (ran2.clone(), alive2.clone());
            let task = n.spawn(async move {
                ran.fetch_add(1, Ordering::Relaxed);
                // Alive until the end of the run: the reaping must cancel it.
                let _guard = Guard::new(alive);
                std::future::pending::<()>().await;
            });
            env.sleep(Duration::from_millis(5)).await;
            assert_eq!(ran2.load(Ordering::Relaxed), 1, "the task never ran");
            assert_eq!(alive2.load(Ordering::Relaxed), 1);
            assert!(!task.is_finished());
            n.node()
        })
        .unwrap();
    let node = report.output;
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    assert_eq!(alive.load(Ordering::Relaxed), 0, "the task was not reaped");
    let events = report.trace.full.as_deref().unwrap();
    let restart = events
        .iter()
        .position(|e| {
            e.node == node
                && matches!(
                    e.kind,
                    EventKind::Node {
                        action: NodeAction::Restart
                    }
                )
        })
        .expect("restart traced");
    assert!(
        events[restart..]
            .iter()
            .any(|e| e.node == node && matches!(e.kind, EventKind::Spawn { .. })),
        "the spawn after the restart is not traced"
    );
}

/// Counts itself alive until dropped.
struct Guard(Arc<AtomicU32>);

impl Guard {
    fn new(count: Arc<AtomicU32>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Guard(count)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
