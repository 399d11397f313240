//! `drover request`, end to end: a real drover, a group of test workers declaring handlers
//! (`DROVER_TEST_HANDLERS`), the command printing results and exiting 1 with "CODE: message".

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn request(drover: &Drover, args: &[&str]) -> (bool, Value, String) {
    let mut all = vec!["request"];
    all.extend_from_slice(args);
    let out = drover.ctl_within(&all, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        out.status.success(),
        result,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The command's failure: exit 1 and one line "drover: CODE: message".
fn failure(drover: &Drover, args: &[&str]) -> String {
    let mut all = vec!["request"];
    all.extend_from_slice(args);
    let out = drover.ctl_within(&all, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "drover {all:?}: {out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[test]
fn drover_request_calls_a_workers_handler_and_says_why_a_request_failed() {
    let worker = drover_tests::test_worker().display().to_string();
    let drover = Drover::start(
        &["-n", "2", "--name", "api", "--", &worker],
        &[("DROVER_TEST_HANDLERS", "echo,whoami,fail,never,exit")],
    );
    drover.wait_ready();

    let (ok, result, stderr) = request(&drover, &["api", "worker:2", "echo", r#"{"n":[1,2,3]}"#]);
    assert!(ok, "{stderr}");
    assert_eq!(result, json!({"n": [1, 2, 3]}));
    let (ok, result, _) = request(&drover, &["api", "worker:1", "whoami"]);
    assert!(ok);
    assert_eq!(result, json!({"id": 1}), "no arguments: null");
    let (ok, result, _) = request(&drover, &["api", "all", "whoami"]);
    assert!(ok);
    let ids: Vec<Value> = result
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["result"]["id"].clone())
        .collect();
    assert_eq!(ids.len(), 2, "{result}");
    assert!(ids.contains(&json!(1)) && ids.contains(&json!(2)), "{result}");
    let (ok, result, _) = request(&drover, &["api", "any", "whoami"]);
    assert!(ok && result["id"].is_u64(), "{result}");

    assert_eq!(
        failure(&drover, &["api", "worker:1", "fail"]),
        "drover: handler_failed: failed on purpose"
    );
    assert!(failure(&drover, &["api", "worker:1", "nope"]).starts_with("drover: no_such_handler: "));
    assert!(failure(&drover, &["api", "worker:9", "echo"]).starts_with("drover: no_such_target: "));
    let started = Instant::now();
    let timeout = failure(&drover, &["api", "worker:1", "never", "--timeout", "300ms"]);
    assert!(timeout.starts_with("drover: timeout: "), "{timeout}");
    assert!(started.elapsed() < Duration::from_secs(20), "the timeout was kept");
    assert!(failure(&drover, &["api", "worker:2", "exit"]).starts_with("drover: target_gone: "));
    assert!(failure(&drover, &["nosuchgroup", "any", "echo"]).contains("nosuchgroup"));

    // Bad input is refused by the command itself, naming what was wrong (exit 2, as `send`).
    for (args, says) in [
        (&["api", "everyone", "echo"][..], "is not a target"),
        (&["api", "any", "echo", "{not json"][..], "not JSON"),
    ] {
        let mut all = vec!["request"];
        all.extend_from_slice(args);
        let out = drover.ctl(&all);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{out:?}");
    }
    let out = drover.ctl(&["request", "api", "any", "echo", "--timeout", "soon"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"), "{out:?}");
}
