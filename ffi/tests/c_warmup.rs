//! Warm-up (PROTOCOL.md §5.11) by a C worker (`drover_bus_warm_up()`, tests/c/worker.c), with real
//! processes: the app's own server answers every warm-up GET, in order, before the master sees
//! STARTED; one that never answers ends the warm-up at its timeout and the worker starts all the
//! same.

use std::path::Path;
use std::time::Duration;

use drover_core::ExitReason;
use drover_core::{Event, Master, MasterConfig, Timeouts, Warmup};
use drover_tests::c::{program as c_program, Linkage, ValgrindLogs};
use drover_tests::{next_exit, next_matching};
use serde_json::{json, Value};

/// Starts one C worker warming as `how` says under `warmup`, and returns its `warmup` report,
/// checked to come before its STARTED.
async fn warm_c_worker(how: &str, warmup: Warmup) -> Value {
    let mut config = MasterConfig::program(c_program("worker", Linkage::Shared))
        .name("warm-c")
        .env("C_WORKER_WARMUP", how);
    config.timeouts = Timeouts {
        start: Duration::from_secs(20),
        ..Timeouts::default()
    };
    config.warmup = Some(warmup);
    drover_tests::warmup_report_before_started(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_workers_app_answers_every_warm_up_request_in_order_before_the_master_sees_started() {
    let warmup = Warmup {
        requests: 5,
        path: "/warm".into(),
        timeout: Duration::from_secs(30),
    };
    let report = warm_c_worker("answer", warmup).await;
    assert_eq!(
        report,
        json!({"asked": true, "seen": "1,2,3,4,5", "done": 5, "timed_out": false, "error": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_worker_whose_app_never_answers_ends_the_warm_up_at_its_timeout_and_starts() {
    let warmup = Warmup {
        requests: 3,
        path: "/warm".into(),
        timeout: Duration::from_millis(500),
    };
    let report = warm_c_worker("hang", warmup).await;
    assert_eq!(
        (&report["asked"], &report["done"], &report["timed_out"]),
        (&json!(true), &json!(0), &json!(true))
    );
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("0 of 3 requests answered within 500 ms"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_example_worker_warms_its_own_handler_before_it_takes_the_shared_socket() {
    let mut config = MasterConfig::program(drover_tests::c::compile("examples/c/worker.c", Linkage::Shared))
        .name("warm-example")
        .env("LISTEN_ADDRESS", "127.0.0.1:0");
    config.timeouts = Timeouts {
        start: Duration::from_secs(20),
        ..Timeouts::default()
    };
    config.warmup = Some(Warmup {
        requests: 5,
        path: "/warm".into(),
        timeout: Duration::from_secs(30),
    });
    let line = drover_tests::example_warm_up_line(config).await;
    assert!(line.contains("warmed up with 5 of 5 requests"), "{line}");
    assert!(!line.contains("timed out"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_worker_warming_up_is_clean_under_valgrind() {
    let logs = ValgrindLogs::fresh(Path::new(env!("CARGO_TARGET_TMPDIR")).join("valgrind-warmup"));
    let mut config = logs
        .config(&c_program("worker", Linkage::Static))
        .name("warm-valgrind")
        .env("C_WORKER_WARMUP", "answer");
    config.timeouts = Timeouts {
        start: Duration::from_secs(60),
        stop: Duration::from_secs(20),
        quit: Duration::from_secs(20),
        ..Timeouts::default()
    };
    config.warmup = Some(Warmup {
        requests: 3,
        path: "/warm".into(),
        timeout: Duration::from_secs(30),
    });
    let master = Master::new(config).expect("a valid config");
    let mut events = master.events();
    master.start().await.expect("the C worker starts under valgrind");
    let report = next_matching(&mut events, |e| match e {
        Event::Message { data, .. } if data.get("warmup").is_some() => Some(data["warmup"].clone()),
        _ => None,
    })
    .await;
    assert_eq!(report["done"], 3, "{report}");
    master.graceful_shutdown().await.expect("shutdown");
    let exit = next_exit(&mut events).await;
    assert_eq!(
        exit.reason,
        ExitReason::NormalExit { code: 0 },
        "valgrind reported:\n{}",
        logs.read()
    );
}
