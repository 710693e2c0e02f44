//! Each seed captures the `tracing` events of the code under test, stamped with virtual time
//! and the node and task they ran on, for its failure report.

use std::time::Duration;

use kelpie_sim::{LogConfig, SimConfig, Simulation};

fn body_that_logs_then_fails(
) -> impl FnOnce(kelpie_sim::SimEnv) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send
{
    |env| {
        Box::pin(async move {
            tracing::info!("starting");
            let n = env
                .create_node("n1")
                .init(|env| async move {
                    env.sleep(Duration::from_millis(5)).await;
                    tracing::warn!(key = 7, "node n1 writes");
                })
                .build();
            env.sleep(Duration::from_millis(20)).await;
            tracing::debug!("not captured at info");
            assert_eq!(n.node_name(), "n2", "planted failure");
        })
    }
}

#[test]
fn a_failing_seed_reports_its_log_with_virtual_time_and_node() {
    let mut config = SimConfig::with_seed(1);
    config.log = LogConfig::info();
    let err = Simulation::new(config)
        .run(body_that_logs_then_fails())
        .unwrap_err();
    let log = &err.failed_run().unwrap().log;
    assert_eq!(log.len(), 2, "{log:#?}");
    assert!(log[0].starts_with("[    0.000000s]  INFO"), "{}", log[0]);
    assert!(log[0].ends_with("starting"), "{}", log[0]);
    assert!(
        log[1].starts_with("[    0.005"),
        "virtual time of the node's event: {}",
        log[1]
    );
    assert!(
        log[1].contains("name=\"n1\""),
        "the node's name: {}",
        log[1]
    );
    assert!(
        log[1].contains("WARN") && log[1].contains("key=7"),
        "{}",
        log[1]
    );
}

#[test]
fn the_filter_and_the_line_limit_apply() {
    let mut config = SimConfig::with_seed(1);
    config.log = LogConfig {
        filter: "logs=debug".into(),
        lines: 2,
        live: false,
    };
    let err = Simulation::new(config)
        .run(body_that_logs_then_fails())
        .unwrap_err();
    let log = &err.failed_run().unwrap().log;
    assert_eq!(log.len(), 3, "{log:#?}");
    assert_eq!(log[0], "... 1 earlier lines not kept");
    assert!(log[2].contains("not captured at info"));
    let mut off = SimConfig::with_seed(1);
    off.log.filter = "off".into();
    let err = Simulation::new(off)
        .run(body_that_logs_then_fails())
        .unwrap_err();
    assert!(err.failed_run().unwrap().log.is_empty());
}

#[test]
fn a_bad_filter_is_a_config_error() {
    let mut config = SimConfig::with_seed(1);
    config.log.filter = "logs=loud".into();
    let err = Simulation::new(config).run(|_| async {}).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid simulation config: log filter"),
        "{err}"
    );
}
