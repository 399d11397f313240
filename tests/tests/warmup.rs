//! Warm-up (PROTOCOL.md §5.11) by a Rust worker on drover's MessageBus (`MessageBus::warm_up`),
//! with real worker processes: the app's own server answers every warm-up GET, in order, before
//! the master sees STARTED; a server that never answers ends the warm-up at its timeout and the
//! worker starts all the same; an answer past the read bound is cut and counted.

use drover::Warmup;
use drover_tests::test_config;
use serde_json::{json, Value};
use std::time::Duration;

/// Starts one test worker warming as `how` says under `warmup`, and returns its `warmup` report,
/// checked to come before its STARTED.
async fn warm_worker(how: &str, warmup: Option<Warmup>) -> Value {
    let mut config = test_config("warm", 1).env("DROVER_TEST_WARMUP", how);
    config.warmup = warmup;
    drover_tests::warmup_report_before_started(config).await
}

fn warmup(requests: u32, timeout: Duration) -> Option<Warmup> {
    Some(Warmup {
        requests,
        path: "/warm".into(),
        timeout,
    })
}

#[tokio::test]
async fn the_app_answers_every_warm_up_request_in_order_before_the_master_sees_started() {
    let report = warm_worker("answer", warmup(5, Duration::from_secs(30))).await;
    assert_eq!(report["seen"], json!(["1", "2", "3", "4", "5"]), "{report}");
    assert_eq!(report["done"], 5, "{report}");
    assert_eq!(report["error"], Value::Null, "{report}");
}

#[tokio::test]
async fn a_server_that_never_answers_ends_the_warm_up_at_its_timeout_and_the_worker_starts() {
    let report = warm_worker("hang", warmup(5, Duration::from_millis(500))).await;
    assert_eq!(report["timed_out"], true, "{report}");
    assert_eq!(report["done"], 0, "{report}");
    let seen = report["seen"].as_array().map_or(usize::MAX, Vec::len);
    assert!(seen <= 1, "the first request hung, so no second was sent: {report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("0 of 5 requests answered within 500 ms"), "{report}");
}

#[tokio::test]
async fn an_answer_past_the_read_bound_is_cut_and_counted() {
    let report = warm_worker("big", warmup(2, Duration::from_secs(30))).await;
    assert_eq!(
        (report["done"].as_u64(), report["cut"].as_u64()),
        (Some(2), Some(2)),
        "{report}"
    );
    assert_eq!(report["error"], Value::Null, "{report}");
}

#[tokio::test]
async fn a_worker_whose_master_asked_for_no_warm_up_sends_nothing() {
    let report = warm_worker("answer", None).await;
    assert_eq!(report, Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_example_worker_warms_its_own_handler_before_it_takes_the_shared_socket() {
    let mut config = drover::MasterConfig::program(drover_tests::target_bin("examples/worker"))
        .name("warm-example")
        .listen("127.0.0.1:0".parse().expect("an address"));
    config.timeouts.start = Duration::from_secs(20);
    config.warmup = warmup(5, Duration::from_secs(30));
    let line = drover_tests::example_warm_up_line(config).await;
    assert!(line.contains("warmed up with 5 of 5 requests"), "{line}");
}
