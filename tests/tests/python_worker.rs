//! A worker written in Python from `docs/PROTOCOL.md` alone (`examples/python/worker.py`), supervised
//! by the Rust master: start, a message round trip, a graceful shutdown.

use drover::{Event, ExitReason, Master, MasterConfig, Timeouts, WorkerStatus};
use drover_tests::{next_matching, pid_is_running};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

fn python_worker() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/python/worker.py")
}

fn config(count: usize) -> MasterConfig {
    // `python3` must be on PATH: validation fails with "`program`: python3 not found on PATH" if not.
    let mut config = MasterConfig::program("python3")
        .arg(python_worker())
        .count(count)
        .name("py");
    config.user_config = json!({ "greeting": "hello from the master" });
    config.timeouts = Timeouts {
        start: Duration::from_secs(20),
        stop: Duration::from_secs(10),
        quit: Duration::from_secs(10),
        kill: Duration::from_secs(5),
    };
    config
}

#[tokio::test]
async fn a_python_worker_starts_echoes_and_shuts_down_gracefully() {
    let master = Master::new(config(2)).expect("the config is valid");
    let mut events = master.events();
    master.start().await.expect("both Python workers report STARTED");

    let workers = master.workers();
    assert_eq!(workers.len(), 2);
    for w in &workers {
        assert_eq!(w.status, WorkerStatus::Started);
        assert!(pid_is_running(w.pid), "worker {} (pid {}) runs", w.id, w.pid);
    }

    // Round trip: master -> worker -> master, per worker, with the welcome metadata echoed back.
    for w in &workers {
        master
            .send(w.id, &json!({ "ping": w.id }))
            .await
            .expect("the message is written to the worker's channel");
        let data = next_matching(&mut events, |e| match e {
            Event::Message { id, pid, data } if *id == w.id => {
                assert_eq!(*pid, w.pid);
                Some(data.clone())
            }
            _ => None,
        })
        .await;
        assert_eq!(data["echo"], json!({ "ping": w.id }));
        assert_eq!(data["worker"]["id"], json!(w.id));
        assert_eq!(data["worker"]["name"], json!(format!("py-{}", w.id)));
        assert_eq!(data["worker"]["group"], json!("py"));
        assert_eq!(data["worker"]["config"], json!({ "greeting": "hello from the master" }));
        assert_eq!(data["worker"]["max_frame_bytes"], json!(1024 * 1024));
    }

    let mut events = master.events();
    master.graceful_shutdown().await.expect("the shutdown completes");

    // Every worker went STARTED -> STOPPED -> SHUTTED_DOWN and exited 0, as asked.
    let mut seen: BTreeMap<u64, Vec<WorkerStatus>> = BTreeMap::new();
    let mut exits = BTreeSet::new();
    while let Some(event) = events.try_recv() {
        match event {
            Event::Status { id, to, .. } => seen.entry(id).or_default().push(to),
            Event::Exit(exit) => {
                assert_eq!(exit.reason, ExitReason::NormalExit { code: 0 }, "{exit}");
                assert!(exit.requested, "a shutdown exit is a requested one: {exit}");
                assert_eq!(exit.last_status, WorkerStatus::ShuttedDown, "{exit}");
                exits.insert(exit.id);
            }
            Event::ProtocolError { id, error, .. } => panic!("worker {id} broke the protocol: {error}"),
            Event::Failed { id, failure, .. } => panic!("worker {id} failed: {failure}"),
            _ => {}
        }
    }
    assert_eq!(exits, workers.iter().map(|w| w.id).collect::<BTreeSet<_>>());
    for w in &workers {
        assert_eq!(
            seen.get(&w.id).map(Vec::as_slice),
            Some(&[WorkerStatus::Stopped, WorkerStatus::ShuttedDown][..]),
            "worker {} reported STOPPED then SHUTTED_DOWN during the shutdown",
            w.id
        );
        assert!(!pid_is_running(w.pid), "pid {} is gone", w.pid);
    }
}

#[tokio::test]
async fn a_worker_speaking_another_version_gets_an_error_frame_and_is_terminated() {
    // A worker that claims version 2, records what the master answers, then waits to be ended. It
    // ignores SIGTERM: the master sends SIGTERM right after queueing the error frame (possibly before
    // the frame is written), so a worker that dies on SIGTERM may never read it.
    let answer = std::env::temp_dir().join(format!("drover-version-mismatch-{}.txt", std::process::id()));
    let script = r#"
      trap '' TERM
      exec 3<&"$DROVER_IPC_FD"
      printf '{"type":"hello","version":2}\n' >&3
      read -r answer <&3
      printf '%s\n' "$answer" > "$ANSWER_FILE"
      read -r more <&3
    "#;
    let mut config = MasterConfig::program("sh")
        .args(["-c", script])
        .env("ANSWER_FILE", answer.display().to_string())
        .count(1)
        .name("v2");
    config.timeouts.kill = Duration::from_millis(500);
    let master = Master::new(config).expect("the config is valid");
    let mut events = master.events();
    let err = master.start().await.expect_err("a version-2 worker cannot start");
    assert!(
        err.to_string()
            .contains("protocol version mismatch: worker speaks 2, master speaks 1"),
        "{err}"
    );
    let (mut mismatch, mut failed, mut exit) = (false, false, None);
    while let Some(event) = events.try_recv() {
        match event {
            Event::ProtocolError { error, .. } => {
                mismatch |= matches!(
                    error,
                    drover::protocol::ProtocolError::VersionMismatch { worker: 2, master: 1 }
                )
            }
            Event::Failed { .. } => failed = true,
            Event::Exit(e) => exit = Some(e),
            _ => {}
        }
    }
    assert!(
        mismatch && failed,
        "a version_mismatch protocol error and a failure are reported"
    );
    let exit = exit.expect("the worker was reaped before start() returned");
    assert_eq!(
        exit.reason,
        ExitReason::ExternalSignal {
            signal: libc::SIGKILL,
            core_dumped: false
        },
        "{exit}"
    );
    assert_eq!(exit.last_status, WorkerStatus::Failed);
    let written = std::fs::read_to_string(&answer).expect("the worker recorded the master's answer");
    let _ = std::fs::remove_file(&answer);
    assert_eq!(
        written,
        "{\"type\":\"error\",\"code\":\"version_mismatch\",\"message\":\"protocol version mismatch: worker speaks 2, master speaks 1\"}\n"
    );
}

/// Worker 1 the Python worker, the others the Rust test worker (one program per master: a shell
/// that picks by `DROVER_WORKER_ID`).
fn mixed_config(count: usize) -> MasterConfig {
    let script = format!(
        "if [ \"$DROVER_WORKER_ID\" = 1 ]; then exec python3 {}; else exec {}; fi",
        python_worker().display(),
        drover_tests::test_worker().display()
    );
    let mut config = MasterConfig::program("sh")
        .arg("-c")
        .arg(script)
        .count(count)
        .name("mixed")
        .env("DROVER_TEST_HANDLERS", "whoami");
    config.timeouts = config_timeouts();
    config
}

fn config_timeouts() -> Timeouts {
    config(1).timeouts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cross_languages_a_rust_worker_calls_python_and_python_calls_rust_and_the_master() {
    let master = Master::new(mixed_config(2)).expect("the config is valid");
    master
        .handle("double", |_from, args| async move {
            Ok(json!(args.as_i64().unwrap_or(0) * 2))
        })
        .expect("a handler name");
    let mut events = master.events();
    master.start().await.expect("both workers report STARTED");
    let long = Duration::from_secs(20);

    // The master calls the Python worker's handler.
    let sum = master
        .request(drover::request::Target::Worker(1), "add", &json!([1, 2, 3]), long)
        .await
        .expect("python answers");
    assert_eq!(sum, json!(6));

    // The Rust worker calls the Python worker.
    master
        .send(
            2,
            &json!({"cmd": "request", "to": "worker:1", "name": "add", "args": [40, 2]}),
        )
        .await
        .unwrap();
    let got = next_matching(&mut events, |e| match e {
        Event::Message { id: 2, data, .. } => data.get("response").cloned(),
        _ => None,
    })
    .await;
    assert_eq!(got, json!(42));

    // The Python worker calls the Rust worker, then the master; and a handler nobody has.
    for (ask, key, want) in [
        (json!({"to": "worker:2", "name": "whoami"}), "answer", json!({"id": 2})),
        (
            json!({"to": "master", "name": "double", "args": 21}),
            "answer",
            json!(42),
        ),
        (
            json!({"to": "any", "name": "nope"}),
            "answer_error",
            json!("no_such_handler"),
        ),
    ] {
        master.send(1, &json!({ "ask": ask })).await.unwrap();
        let got = next_matching(&mut events, |e| match e {
            Event::Message { id: 1, data, .. } => data.get(key).cloned(),
            _ => None,
        })
        .await;
        let got = if key == "answer_error" {
            got["code"].clone()
        } else {
            got
        };
        assert_eq!(got, want, "{ask}");
    }
    master.graceful_shutdown().await.expect("a graceful shutdown");
}

#[tokio::test]
async fn the_python_worker_warms_its_app_with_every_request_in_order_before_started() {
    let mut config = config(1);
    config.warmup = Some(drover::Warmup {
        requests: 5,
        path: "/warm".into(),
        timeout: Duration::from_secs(30),
    });
    let report = drover_tests::warmup_report_before_started(config).await;
    assert_eq!(
        report,
        json!({"seen": ["1", "2", "3", "4", "5"], "done": 5, "error": null})
    );
}
