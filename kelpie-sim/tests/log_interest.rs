//! A seed's log capture keeps an event whose callsite another thread, with no subscriber, saw
//! first while the capture was live (tokio-rs/tracing#3611: with a single registered
//! dispatcher, that thread's "not interested" used to be cached for every thread).
//!
//! Its own test binary: the bug needs a process where the capture is the only dispatcher.

use std::sync::mpsc;
use std::time::Duration;

use kelpie_sim::{LogConfig, SimConfig, Simulation};

fn probe() {
    tracing::info!("probe");
}

#[test]
fn an_event_first_seen_on_a_thread_without_a_subscriber_is_still_captured() {
    let (capturing, go) = mpsc::channel::<()>();
    let (seen, wait) = mpsc::channel::<()>();
    // A thread without a subscriber that hits the callsite first, once the capture is live.
    let other = std::thread::spawn(move || {
        go.recv().unwrap();
        probe();
        seen.send(()).unwrap();
    });
    let mut config = SimConfig::with_seed(0);
    config.log = LogConfig::info();
    config.wall_timeout = Duration::from_secs(30);
    let report = Simulation::new(config)
        .run(move |_env| async move {
            capturing.send(()).unwrap();
            // Blocks the seed thread on purpose: the other thread registers the callsite now.
            wait.recv().unwrap();
            probe();
            panic!("fail, so that the captured log is reported");
        })
        .unwrap_err();
    other.join().unwrap();
    let log = &report.failed_run().unwrap().log;
    assert!(
        log.iter().any(|l| l.ends_with("probe")),
        "the capture lost the event: {log:#?}"
    );
}
