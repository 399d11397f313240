//! The corners of the language matrix no other suite covers, with real processes: a Node master
//! supervising C workers, a C master supervising Node workers, and a Node worker calling a C
//! worker's handler (and the C worker calling the Node one's) — one protocol.
//!
//! Both masters (`tests/fixtures/node/master.js`, `tests/c/cross_master.c`) run the same scenario
//! on two workers and report each outcome as a JSON line: every worker STARTED, a message round
//! trip with each, kill -9 of one, a graceful shutdown. This test asserts the reports, that the
//! master exits 0, and that no worker process is left.
//!
//! Needs `cc`, `node` on PATH, and the Node addon `bindings-node/drover.node`
//! (`cd bindings-node && npm run build`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use drover::request::Target;
use drover::{Event, Master, MasterConfig, WorkerStatus};
use drover_tests::c::{program as c_program, workspace, Linkage};
use drover_tests::{eventually, next_matching, pid_is_running};
use serde_json::{json, Value};

/// How long a master may take for the whole scenario.
const MASTER_DEADLINE: Duration = Duration::from_secs(20);

/// `bindings-node/`, after checking that the addon its index.js loads was built.
fn node_package() -> PathBuf {
    let package = workspace().join("bindings-node");
    let addon = package.join("drover.node");
    assert!(
        addon.is_file(),
        "{} is missing: run `cd bindings-node && npm run build` first (it builds the addon and copies it there)",
        addon.display()
    );
    package
}

/// `node`, without the extra CA certificates that slow each start down (~90 ms) and that no test
/// process here needs; its workers inherit the environment.
fn node() -> Command {
    let mut cmd = Command::new("node");
    cmd.env_remove("NODE_EXTRA_CA_CERTS");
    cmd
}

/// What a master program printed, and how it ended.
struct Run {
    reports: Vec<Value>,
    stdout: String,
    stderr: String,
}

/// Runs a master program to its end (killing it past [`MASTER_DEADLINE`]) and checks it exited 0.
fn run_master(mut cmd: Command) -> Run {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match outcome.recv_timeout(MASTER_DEADLINE) {
        Ok(output) => output.expect("wait for the master"),
        Err(_) => {
            // SAFETY: kill on the pid of our own child, not reaped yet (its waiter is still waiting).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let output = outcome
                .recv()
                .expect("the master's waiter ends")
                .expect("wait for the master");
            panic!(
                "{cmd:?} did not finish within {MASTER_DEADLINE:?}\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    let reports = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON report: {line:?}: {e}")))
        .collect();
    Run {
        reports,
        stdout,
        stderr,
    }
}

/// Checks a master's reports against the scenario; returns the exit reports, killed one first.
async fn assert_scenario(run: &Run) -> [Value; 2] {
    let context = format!("--- stdout\n{}\n--- stderr\n{}", run.stdout, run.stderr);
    let steps: Vec<&str> = run.reports.iter().map(|r| r["step"].as_str().unwrap_or("?")).collect();
    assert_eq!(
        steps,
        ["started", "message", "message", "exit", "exit", "shut-down"],
        "{context}"
    );
    let r = &run.reports;

    // Every worker reached STARTED.
    let workers = r[0]["workers"].as_array().expect("a list of workers");
    assert_eq!(workers.len(), 2, "{context}");
    let started = u64::from(WorkerStatus::Started.code());
    assert!(workers.iter().all(|w| w["status"] == started), "{context}");
    let ids: Vec<u64> = workers.iter().map(|w| w["id"].as_u64().expect("an id")).collect();
    let pids: Vec<u64> = workers.iter().map(|w| w["pid"].as_u64().expect("a pid")).collect();
    assert_ne!(ids[0], ids[1], "{context}");
    assert_ne!(pids[0], pids[1], "{context}");

    // Each worker answered the message with its own pid: the bytes went there and back.
    for (i, reply) in r[1..3].iter().enumerate() {
        assert_eq!(reply["id"], ids[i], "{context}");
        assert_eq!(reply["data"], json!({ "pid": pids[i] }), "{context}");
    }

    // kill -9: ExternalSignal SIGKILL, not asked for, while STARTED.
    let killed = &r[3];
    assert_eq!(killed["id"], ids[1], "{context}");
    assert_eq!(killed["pid"], pids[1], "{context}");
    assert_eq!(killed["reason"], "ExternalSignal", "{context}");
    assert_eq!(killed["signal"], libc::SIGKILL, "{context}");
    assert_eq!(killed["code"], Value::Null, "{context}");
    assert_eq!(killed["requested"], false, "{context}");
    assert_eq!(killed["lastStatus"], started, "{context}");

    // The graceful shutdown: exit(0), asked for, after SHUTTED_DOWN; the master SHUT_DOWN.
    let stopped = &r[4];
    assert_eq!(stopped["id"], ids[0], "{context}");
    assert_eq!(stopped["pid"], pids[0], "{context}");
    assert_eq!(stopped["reason"], "NormalExit", "{context}");
    assert_eq!(stopped["code"], 0, "{context}");
    assert_eq!(stopped["signal"], Value::Null, "{context}");
    assert_eq!(stopped["requested"], true, "{context}");
    assert_eq!(
        stopped["lastStatus"],
        u64::from(WorkerStatus::ShuttedDown.code()),
        "{context}"
    );
    assert_eq!(r[5]["status"], "SHUT_DOWN", "{context}");

    // No worker process is left.
    for pid in pids {
        let pid = u32::try_from(pid).expect("a pid fits in u32");
        assert!(
            eventually(Duration::from_secs(10), || !pid_is_running(pid)).await,
            "worker pid {pid} still runs after its master exited\n{context}"
        );
    }
    [killed.clone(), stopped.clone()]
}

#[tokio::test]
async fn a_node_master_supervises_c_workers() {
    node_package();
    let mut cmd = node();
    cmd.arg(workspace().join("tests/fixtures/node/master.js"))
        .arg(c_program("worker", Linkage::Shared));
    let [killed, _] = assert_scenario(&run_master(cmd)).await;
    assert_eq!(killed["signalName"], "SIGKILL");
}

#[tokio::test]
async fn a_c_master_supervises_node_workers() {
    let worker = node_package().join("test-support").join("worker.js");
    let mut cmd = Command::new(c_program("cross_master", Linkage::Shared));
    cmd.arg("node").arg(worker).env_remove("NODE_EXTRA_CA_CERTS");
    assert_scenario(&run_master(cmd)).await;
}

/// Worker `id`'s next message carrying `key`.
async fn reply_of(events: &mut drover::Events, id: u64, key: &str) -> Value {
    let wait = next_matching(events, |e| match e {
        Event::Message { id: from, data, .. } if *from == id && data.get(key).is_some() => Some(data.clone()),
        _ => None,
    });
    tokio::time::timeout(MASTER_DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("no {key:?} from worker {id} within {MASTER_DEADLINE:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_worker_calls_a_c_workers_handler_and_the_c_worker_calls_the_node_one() {
    // Worker 1 is a Node worker (test-support/request-worker.js), worker 2 the C test worker with
    // its handlers: one master, one program choosing by DROVER_WORKER_ID.
    let node_worker = node_package().join("test-support").join("request-worker.js");
    let script = format!(
        // Without NODE_EXTRA_CA_CERTS, which slows each Node start (see `node()`).
        "case \"$DROVER_WORKER_ID\" in 1) exec env -u NODE_EXTRA_CA_CERTS node {};; *) exec {};; esac",
        node_worker.display(),
        c_program("worker", Linkage::Shared).display()
    );
    let config = MasterConfig::program("sh")
        .arg("-c")
        .arg(script)
        .count(2)
        .name("node-and-c")
        .env("C_WORKER_HANDLERS", "1");
    let master = Master::new(config).expect("the config is valid");
    let mut events = master.events();
    master.start().await.expect("both workers report STARTED");

    // The Node worker calls the C worker's handlers, by id and by name.
    let ask = |to: &str, name: &str, args: Value| json!({"cmd": "request", "to": to, "name": name, "args": args});
    master
        .send(1, &ask("worker:2", "c-echo", json!({"ü": [1, 2]})))
        .await
        .expect("send");
    assert_eq!(
        reply_of(&mut events, 1, "response").await,
        json!({"response": {"c_echo": {"ü": [1, 2]}}})
    );
    master
        .send(1, &ask("name:node-and-c-2", "c-whoami", Value::Null))
        .await
        .expect("send");
    assert_eq!(
        reply_of(&mut events, 1, "response").await,
        json!({"response": {"id": 2}})
    );

    // The C handler's failure and a handler the C worker lacks reach the Node worker typed.
    master
        .send(1, &ask("worker:2", "c-fail", Value::Null))
        .await
        .expect("send");
    let failed = reply_of(&mut events, 1, "request_error").await;
    assert_eq!(failed["request_error"]["code"], "handler_failed", "{failed}");
    assert_eq!(failed["request_error"]["message"], "C failed on purpose", "{failed}");
    assert_eq!(failed["request_error"]["isRequestError"], true, "{failed}");
    master
        .send(1, &ask("worker:2", "whoami", Value::Null))
        .await
        .expect("send");
    let missing = reply_of(&mut events, 1, "request_error").await;
    assert_eq!(missing["request_error"]["code"], "no_such_handler", "{missing}");

    // And back: the C worker calls the Node worker's handler.
    master
        .send(2, &json!({"cmd": "request", "to": "worker:1", "name": "whoami"}))
        .await
        .expect("send");
    assert_eq!(
        reply_of(&mut events, 2, "response").await,
        json!({"response": {"id": 1, "lang": "node", "asker": 2}})
    );
    // The master's own request to the Node worker, for good measure: the same handler.
    let answer = master
        .request(Target::Worker(1), "echo", &json!([1]), MASTER_DEADLINE)
        .await
        .expect("the Node worker answers");
    assert_eq!(answer, json!([1]));

    master.graceful_shutdown().await.expect("shutdown");
}
