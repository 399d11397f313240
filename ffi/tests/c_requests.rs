//! Requests and worker-to-worker messages through the C ABI: a C master calling Rust and C
//! workers and serving their requests (tests/c/requests_master.c, natively and under AddressSanitizer
//! with LeakSanitizer), and a C worker answering a Rust master and a Rust worker and calling a
//! Python worker's handler, all under one master.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use drover_core::request::{RequestErrorCode, Target};
use drover_core::{Event, ExitReason, Master, MasterConfig, Timeouts};
use drover_tests::c::{program as c_program, show, workspace, Linkage, ValgrindLogs};
use drover_tests::{next_exit, next_matching, test_worker};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(20);

fn run_requests_master(mut cmd: Command) -> String {
    let output = cmd.output().expect("the C test program runs");
    assert!(output.status.success(), "the C test program failed:\n{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    for step in [
        "ok: a C master calls Rust and C workers",
        "ok: Rust and C workers call the C master's handler",
        "ok: Rust and C workers call each other",
        "ok: free",
    ] {
        assert!(stderr.contains(step), "{step:?} missing:\n{stderr}");
    }
    stderr
}

#[test]
fn a_c_master_calls_rust_and_c_workers_gets_typed_errors_and_serves_their_requests() {
    let mut cmd = Command::new(c_program("requests_master", Linkage::Static));
    cmd.arg(test_worker()).arg(c_program("worker", Linkage::Static));
    run_requests_master(cmd);
}

#[test]
fn a_c_master_serving_requests_is_clean_under_address_and_leak_sanitizer() {
    let mut cmd = Command::new(c_program("requests_master", Linkage::SharedAsan));
    cmd.arg(test_worker()).arg(c_program("worker", Linkage::Shared));
    cmd.env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=98");
    let stderr = run_requests_master(cmd);
    assert!(!stderr.contains("Sanitizer"), "{stderr}");
}

fn python_worker() -> PathBuf {
    workspace().join("examples/python/worker.py")
}

/// Worker 1 is the Python example worker, 2 the C test worker (with its handlers), 3 the Rust
/// test worker: one master, one program choosing by `DROVER_WORKER_ID`.
fn three_languages() -> MasterConfig {
    let script = format!(
        "case \"$DROVER_WORKER_ID\" in 1) exec python3 {};; 2) exec {};; *) exec {};; esac",
        python_worker().display(),
        c_program("worker", Linkage::Shared).display(),
        test_worker().display()
    );
    let mut config = MasterConfig::program("sh")
        .arg("-c")
        .arg(script)
        .count(3)
        .name("three-languages")
        .env("C_WORKER_HANDLERS", "1")
        .env("DROVER_TEST_HANDLERS", "whoami");
    config.timeouts = quick_timeouts();
    config
}

async fn reply_of(events: &mut drover_core::Events, id: u64, key: &'static str) -> Value {
    next_matching(events, |e| match e {
        Event::Message { id: from, data, .. } if *from == id => data.get(key).cloned().map(|v| (v, data.clone())),
        _ => None,
    })
    .await
    .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_worker_answers_a_rust_master_and_a_rust_worker_and_calls_the_python_workers_add() {
    let master = Master::new(three_languages()).expect("the config is valid");
    let mut events = master.events();
    master.start().await.expect("the three workers report STARTED");

    // The Rust master calls the C worker's handlers.
    let echoed = master
        .request(Target::Worker(2), "c-echo", &json!({"n": [1, 2]}), LONG)
        .await
        .expect("the C worker answers");
    assert_eq!(echoed, json!({"c_echo": {"n": [1, 2]}}));
    let failed = master
        .request(Target::Worker(2), "c-fail", &json!(null), LONG)
        .await
        .expect_err("c-fail fails");
    assert_eq!(failed.code, RequestErrorCode::HandlerFailed);
    assert_eq!(failed.message, "C failed on purpose");
    let missing = master
        .request(Target::Worker(2), "add", &json!([1]), LONG)
        .await
        .expect_err("the C worker has no add");
    assert_eq!(missing.code, RequestErrorCode::NoSuchHandler);

    // The Rust worker calls the C worker.
    master
        .send(3, &json!({"cmd": "request", "to": "worker:2", "name": "c-whoami"}))
        .await
        .expect("send");
    let got = reply_of(&mut events, 3, "response").await;
    assert_eq!(got, json!({"response": {"id": 2}}));

    // The C worker calls the Python worker's add, and the Rust worker's whoami.
    master
        .send(
            2,
            &json!({"cmd": "request", "to": "worker:1", "name": "add", "args": [40, 1.5, 0.5]}),
        )
        .await
        .expect("send");
    let got = reply_of(&mut events, 2, "response").await;
    assert_eq!(got, json!({"response": 42.0}));
    master
        .send(
            2,
            &json!({"cmd": "request", "to": "worker:1", "name": "add", "args": "not numbers"}),
        )
        .await
        .expect("send");
    let got = reply_of(&mut events, 2, "request_error").await;
    assert_eq!(got["request_error"], "DROVER_RESULT_HANDLER_FAILED", "{got}");
    master
        .send(2, &json!({"cmd": "request", "to": "worker:3", "name": "whoami"}))
        .await
        .expect("send");
    let got = reply_of(&mut events, 2, "response").await;
    assert_eq!(got, json!({"response": {"id": 3}}));

    // The C worker sends to every other worker; the Rust one reports it.
    master
        .send(
            2,
            &json!({"cmd": "send-to", "to": "worker:3", "data": {"from_c": true}}),
        )
        .await
        .expect("send");
    // Two workers answer, in either order.
    let (mut got, mut sent) = (None, None);
    while got.is_none() || sent.is_none() {
        let (id, data) = next_matching(&mut events, |e| match e {
            Event::Message { id, data, .. } if *id == 2 || *id == 3 => Some((*id, data.clone())),
            _ => None,
        })
        .await;
        if id == 3 && data.get("got").is_some() {
            got = Some(data);
        } else if id == 2 && data.get("sent").is_some() {
            sent = Some(data);
        }
    }
    assert_eq!(got, Some(json!({"from": 2, "got": {"from_c": true}})));
    assert_eq!(sent, Some(json!({"sent": 1})));

    master.graceful_shutdown().await.expect("shutdown");
}

fn quick_timeouts() -> Timeouts {
    Timeouts {
        start: Duration::from_secs(30),
        stop: Duration::from_secs(15),
        quit: Duration::from_secs(15),
        kill: Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_workers_serving_and_making_requests_are_clean_under_valgrind() {
    let logs = ValgrindLogs::fresh(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("valgrind-requests"));
    let mut config = logs
        .config(&c_program("worker", Linkage::Static))
        .env("C_WORKER_HANDLERS", "1")
        .count(2);
    config.timeouts = quick_timeouts();
    let master = Master::new(config).expect("valid config");
    let mut events = master.events();
    master.start().await.expect("the C workers start under valgrind");

    for (name, want) in [
        ("c-echo", Ok(json!({"c_echo": [1]}))),
        ("c-whoami", Ok(json!({"id": 1}))),
        ("c-fail", Err("C failed on purpose".to_string())),
    ] {
        let got = master.request(Target::Worker(1), name, &json!([1]), LONG).await;
        assert_eq!(got.map_err(|e| e.message), want, "{name}");
    }
    master
        .send(2, &json!({"cmd": "request", "to": "worker:1", "name": "c-whoami"}))
        .await
        .expect("send");
    assert_eq!(
        reply_of(&mut events, 2, "response").await,
        json!({"response": {"id": 1}})
    );
    master
        .send(1, &json!({"cmd": "send-to", "to": "all", "data": [true]}))
        .await
        .expect("send");
    assert_eq!(reply_of(&mut events, 2, "got").await, json!({"from": 1, "got": [true]}));

    master.graceful_shutdown().await.expect("shutdown");
    for _ in [1, 2] {
        // valgrind exits with 99 on any error: a clean exit 0 after the shutdown is a clean run.
        let exit = next_exit(&mut events).await;
        assert_eq!(
            exit.reason,
            ExitReason::NormalExit { code: 0 },
            "valgrind reported:\n{}",
            logs.read()
        );
    }
}

/// Two C workers join one leadership (PROTOCOL.md §5.10): both get LEADER events naming the same
/// leader, which answers the leader client's requests while the other refuses them; killed, the
/// other leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_worker_leads_answers_as_the_leader_and_is_replaced_when_killed() {
    let mut config = MasterConfig::program(c_program("worker", Linkage::Shared))
        .count(2)
        .name("c-leaders")
        .env("C_WORKER_LEADERSHIP", "cc");
    config.timeouts = quick_timeouts();
    let master = Master::new(config).expect("the config is valid");
    let mut events = master.events();
    master.start().await.expect("both report STARTED");

    // Every C worker is told the same leader, with the key, term and `you` as the frame says.
    let mut told = std::collections::BTreeMap::new();
    while told.len() < 2 || told.values().collect::<std::collections::BTreeSet<_>>().len() != 1 {
        let (from, event) = next_matching(&mut events, |e| match e {
            Event::Message { id, data, .. } => data.get("leader_event").map(|l| (*id, l.clone())),
            _ => None,
        })
        .await;
        assert_eq!(event["key"], "cc");
        assert_eq!(event["data"]["term"], event["term"]);
        if event["from"].as_u64() != Some(0) {
            told.insert(from, event["from"].as_u64().unwrap_or(0));
        }
    }
    let leader = *told.values().next().unwrap();
    assert_eq!(master.leader("cc").and_then(|(l, _)| l), Some(leader));
    let follower = if leader == 1 { 2 } else { 1 };

    let answer = master
        .request(
            Target::Worker(leader),
            "leader:cc",
            &json!({"op": "invoke", "method": "get", "args": ["k"]}),
            LONG,
        )
        .await
        .expect("the C leader answers");
    assert_eq!(answer["result"]["c_leader"], leader);
    assert_eq!(answer["result"]["args"]["method"], "get");
    let refused = master
        .request(Target::Worker(follower), "leader:cc", &json!({"op": "invoke"}), LONG)
        .await
        .expect_err("a follower refuses");
    assert_eq!(refused.code, RequestErrorCode::HandlerFailed);
    assert!(refused.message.starts_with("not-leader:"), "{}", refused.message);

    let pid = master.worker(leader).expect("the leader").pid;
    // SAFETY: a plain kill of our own worker.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    next_matching(&mut events, |e| match e {
        Event::Message { id, data, .. } if *id == follower => data
            .get("leader_event")
            .filter(|l| l["from"].as_u64() == Some(follower) && l["data"]["you"] == true)
            .map(|_| ()),
        _ => None,
    })
    .await;
    assert_eq!(master.leader("cc").and_then(|(l, _)| l), Some(follower));
    master.graceful_shutdown().await.expect("shutdown");
}
