//! What workers publish about themselves, through the command: their status functions gathered
//! (`drover status --app`, `/status/app`) and their application status and counters
//! (`drover status`, `/metrics`).

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn status_app_gathers_the_workers_status_functions_and_status_shows_their_app_status() {
    let program = test_worker().display().to_string();
    let mut drover = Drover::start(
        &["-n", "2", "--name", "web", "--http", "127.0.0.1:0", "--", &program],
        &[("DROVER_TEST_HANDLERS", "status.id,status.flaky")],
    );
    drover.wait_ready();

    let out = drover.ctl_ok(&["status", "--app"]);
    let gathered: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        gathered,
        json!({"web": {
            "1": {"id": {"id": 1}, "flaky": true},
            "2": {"id": {"id": 2}, "flaky": {"error": {"code": "handler_failed", "message": "flaky"}}},
        }}),
        "{out}"
    );
    let (code, body) = http_get(&drover.http_addr(), "/status/app");
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), gathered);

    // An application status and counters, in the table and the metrics.
    drover.ctl_ok(&[
        "send",
        "web",
        "0",
        r#"{"cmd":"app-status","status":"PROCESSING","counters":{"jobs":3}}"#,
    ]);
    assert!(
        eventually(|| drover
            .ctl_ok(&["status"])
            .lines()
            .nth(1)
            .is_some_and(|l| l.ends_with("PROCESSING jobs=3"))),
        "{}",
        drover.ctl_ok(&["status"])
    );
    let (_, metrics) = http_get(&drover.http_addr(), "/metrics");
    assert!(
        metrics.contains("drover_worker_app_status{group=\"web\",instance=\"0\",status=\"PROCESSING\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("drover_worker_app_counter{group=\"web\",instance=\"0\",counter=\"jobs\"} 3"),
        "{metrics}"
    );
    drover.ctl_ok(&["stop"]);
    assert!(drover.wait_exit(DEADLINE).success());
}
