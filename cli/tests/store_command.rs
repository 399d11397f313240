//! `drover store`, end to end: a real drover, its group's master store read and written from the
//! command line, typed failures, and the usage errors caught before anything is sent.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// `drover store ARGS...`: whether it succeeded, its stdout as JSON, its stderr.
fn store(drover: &Drover, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = vec!["store"];
    all.extend_from_slice(args);
    let out = drover.ctl_within(&all, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code(),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn drover_store_sets_gets_lists_expires_and_deletes_values_of_a_groups_master() {
    let worker = drover_tests::test_worker().display().to_string();
    let mut drover = Drover::start(&["-n", "1", "--name", "api", "--", &worker], &[]);
    drover.wait_ready();

    assert_eq!(
        store(&drover, &["api", "get", "users.42"]).1,
        Value::Null,
        "nothing yet"
    );
    let (code, result, stderr) = store(&drover, &["api", "set", "users.42", r#"{"name":"ada"}"#]);
    assert_eq!((code, result), (Some(0), json!(true)), "{stderr}");
    store(&drover, &["api", "set", "users.7", "7"]);
    assert_eq!(store(&drover, &["api", "get", "users.42.name"]).1, json!("ada"));
    assert_eq!(
        store(&drover, &["api", "get", ""]).1,
        json!({"users": {"42": {"name": "ada"}, "7": 7}})
    );
    assert_eq!(store(&drover, &["api", "keys", "users"]).1, json!(["42", "7"]));
    assert_eq!(store(&drover, &["api", "delete", "users.7"]).1, json!(true));
    assert_eq!(store(&drover, &["api", "delete", "users.7"]).1, json!(false));
    assert_eq!(store(&drover, &["api", "keys", "users"]).1, json!(["42"]));

    // A value with a time to live is gone after it (the master expires it within about a second).
    let (code, _, stderr) = store(&drover, &["api", "set", "session.x", "1", "--ttl", "200ms"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(eventually(|| store(&drover, &["api", "get", "session.x"]).1.is_null()));

    // Refused by the master: exit 1, "CODE: message".
    let (code, _, stderr) = store(&drover, &["api", "set", "users.42.name.first", "1"]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("drover: bad_request: "), "{stderr}");
    let (code, _, stderr) = store(&drover, &["api", "set", "a..b", "1"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("a..b"), "{stderr}");
    let (code, _, stderr) = store(&drover, &["nope", "get", "x"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("nope"), "{stderr}");

    // Usage errors, before anything is sent: exit 2.
    for (args, why) in [
        (&["api", "set", "x"][..], "`set` needs a VALUE"),
        (&["api", "set", "x", "{bad"][..], "the VALUE is not JSON"),
        (&["api", "get", "x", "1"][..], "only `set` takes a VALUE"),
        (&["api", "get", "x", "--ttl", "1s"][..], "only `set` takes --ttl"),
    ] {
        let (code, _, stderr) = store(&drover, args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = store(&drover, &["api", "put", "x", "1"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("put"), "{stderr}");

    drover.ctl_ok(&["stop"]);
    assert!(drover.wait_exit(DEADLINE).success());
}
