//! The C API, tested from C: programs in tests/c/ compiled against include/drover.h, linked to
//! libdrover.a and to libdrover.so, run natively, under valgrind memcheck, and (the C master, whose
//! workers are tracked by pidfd, a syscall valgrind 3.19 does not know) under AddressSanitizer
//! with LeakSanitizer; and C workers supervised by a Rust master.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use drover_core::{Event, ExitReason, Master, MasterConfig, Timeouts, WorkerStatus};
use drover_tests::c::{compile, program as c_program, serve_and_stop_c_example, show, valgrind, Linkage, ValgrindLogs};
use drover_tests::{ask, next_exit_of, next_matching, next_message_from, pid_is_running, test_worker};
use serde_json::json;

fn run(mut cmd: Command) -> Output {
    let output = cmd.output().expect("the C test program runs");
    assert!(output.status.success(), "the C test program failed:\n{}", show(&output));
    output
}

fn master_program(linkage: Linkage) -> Command {
    let mut cmd = Command::new(c_program("master", linkage));
    cmd.arg(test_worker()).arg(c_program("worker", linkage));
    cmd
}

#[test]
fn a_c_master_supervises_rust_and_c_workers_linked_statically() {
    let output = run(master_program(Linkage::Static));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ok: a C master supervises C workers"), "{stderr}");
    assert!(stderr.contains("ok: free"), "{stderr}");
}

#[test]
fn a_c_master_linked_dynamically_is_clean_under_address_and_leak_sanitizer() {
    let mut cmd = Command::new(c_program("master", Linkage::SharedAsan));
    cmd.arg(test_worker()).arg(c_program("worker", Linkage::Shared));
    // Any invalid access or leak makes the program exit non-zero.
    cmd.env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=98");
    let output = run(cmd);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ok: free"), "{stderr}");
    assert!(!stderr.contains("Sanitizer"), "{stderr}");
}

#[test]
fn every_error_path_is_reported_to_c_statically_linked() {
    run(Command::new(c_program("errors", Linkage::Static)));
}

#[test]
fn every_error_path_is_clean_under_valgrind_dynamically_linked() {
    let mut cmd = valgrind();
    cmd.arg(c_program("errors", Linkage::Shared));
    let output = run(cmd);
    assert!(String::from_utf8_lossy(&output.stderr).contains("ok: every error path"));
}

/// Deadlines, not waits: a healthy worker answers stop and quit in milliseconds, but one under
/// valgrind on a loaded 2-CPU machine has been seen to need more than 3 s, and a worker killed at
/// the deadline would fail the test for the wrong reason.
fn quick(config: MasterConfig) -> MasterConfig {
    config.timeouts(Timeouts {
        start: Duration::from_secs(30),
        stop: Duration::from_secs(15),
        quit: Duration::from_secs(15),
        kill: Duration::from_secs(1),
    })
}

/// A Rust master runs `config`'s C workers: messages both ways, an exit code, a graceful
/// shutdown; returns the exit of the worker that was shut down.
async fn supervise_c_workers(config: MasterConfig) -> drover_core::WorkerExit {
    let master = Master::new(config).expect("valid config");
    let mut events = master.events();
    master.start().await.expect("the C workers start");
    let workers = master.workers();
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|w| w.status == WorkerStatus::Started));
    let (first, second) = (workers[0].clone(), workers[1].clone());

    let data = ask(&master, &mut events, first.id, json!({"cmd": "pid"})).await;
    assert_eq!(data, json!({"pid": first.pid}));

    assert_eq!(master.broadcast(&json!({"n": [1, 2, 3]})).await.expect("broadcast"), 2);
    for _ in 0..2 {
        let data = next_matching(&mut events, |e| match e {
            Event::Message { data, .. } => Some(data.clone()),
            _ => None,
        })
        .await;
        assert_eq!(data, json!({"echo": {"n": [1, 2, 3]}}));
    }

    shares_one_socket(&master, &mut events, &first, &second).await;

    master
        .send(second.id, &json!({"cmd": "exit", "code": 7}))
        .await
        .expect("send");
    let exit = next_exit_of(&mut events, second.id).await;
    assert_eq!(exit.reason, ExitReason::AbnormalExit { code: 7 });
    assert!(!exit.requested);

    master.graceful_shutdown().await.expect("shutdown");
    assert!(!pid_is_running(first.pid));
    next_exit_of(&mut events, first.id).await
}

/// Has worker `id` accept one connection on its socket (from `drover_bus_listen`), and returns
/// what it wrote: its pid.
async fn served_by(master: &Master, events: &mut drover_core::Events, id: u64, local: &str) -> u32 {
    use tokio::io::AsyncReadExt;
    master.send(id, &json!({"cmd": "accept"})).await.expect("send");
    let mut stream = tokio::net::TcpStream::connect(local)
        .await
        .expect("the shared socket accepts");
    let mut answer = String::new();
    tokio::time::timeout(drover_tests::EVENT_DEADLINE, stream.read_to_string(&mut answer))
        .await
        .expect("the worker answers in time")
        .expect("read the answer");
    let accepted = next_message_from(events, id).await;
    assert_eq!(accepted, json!({"accepted": answer.parse::<u32>().unwrap_or(0)}));
    answer.parse().unwrap_or_else(|_| panic!("not a pid: {answer:?}"))
}

/// Two C workers ask for the same address with `drover_bus_listen`: they get one socket (same
/// bound address, same inode), both serve connections on it, and a taken port is a clear error.
async fn shares_one_socket(
    master: &Master,
    events: &mut drover_core::Events,
    first: &drover_core::WorkerInfo,
    second: &drover_core::WorkerInfo,
) {
    let listen = json!({"cmd": "listen", "address": "127.0.0.1:0"});
    let a = ask(master, events, first.id, listen.clone()).await;
    let b = ask(master, events, second.id, listen).await;
    let local = a["local"]
        .as_str()
        .unwrap_or_else(|| panic!("no socket: {a}"))
        .to_string();
    assert!(local.starts_with("127.0.0.1:") && !local.ends_with(":0"), "{a}");
    assert_eq!(a, b, "both workers hold the same socket");
    assert_eq!(master.listeners(), vec![("127.0.0.1:0".to_string(), local.clone())]);
    assert_eq!(served_by(master, events, first.id, &local).await, first.pid);
    assert_eq!(served_by(master, events, second.id, &local).await, second.pid);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port of our own");
    let taken = taken.local_addr().expect("its address").to_string();
    let refused = ask(master, events, first.id, json!({"cmd": "listen", "address": taken})).await;
    assert_eq!(refused["error"], "DROVER_RESULT_LISTEN_FAILED", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains(&taken) && message.contains("EADDRINUSE"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_master_supervises_c_workers() {
    let worker = c_program("worker", Linkage::Shared);
    let exit = supervise_c_workers(quick(MasterConfig::program(worker).count(2).name("rust-master"))).await;
    assert_eq!(exit.reason, ExitReason::NormalExit { code: 0 });
    assert!(exit.requested);
    assert_eq!(exit.last_status, WorkerStatus::ShuttedDown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_worker_is_clean_under_valgrind() {
    let worker = c_program("worker", Linkage::Static);
    let logs = ValgrindLogs::fresh(Path::new(env!("CARGO_TARGET_TMPDIR")).join("valgrind-worker"));
    let config = logs.config(&worker).env("C_WORKER_MODE", "blocking").count(2);
    let exit = supervise_c_workers(quick(config)).await;
    assert_eq!(
        exit.reason,
        ExitReason::NormalExit { code: 0 },
        "valgrind reported:\n{}",
        logs.read()
    );
    assert!(exit.requested);
}

#[test]
fn the_c_example_serves_http_from_every_worker_and_stops_on_sigterm() {
    let master = compile("examples/c/master.c", Linkage::Shared);
    let worker = compile("examples/c/worker.c", Linkage::Shared);
    serve_and_stop_c_example(&master, &worker);
}

/// Node marks its own fds 0-2 close-on-exec at start-up, and any C host may: a worker must still
/// get the master's stdout and stderr exactly (docs/PROTOCOL.md §2.3), whether they are pipes or
/// files. The program also checks that the worker, once killed, is FAILED and not alive.
#[test]
fn a_worker_writes_to_its_c_masters_stdout_and_stderr_even_when_they_are_close_on_exec() {
    let program = c_program("stdio_master", Linkage::Static);
    let dir = std::env::temp_dir().join(format!("drover-stdio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");

    let mut piped = Command::new(&program);
    piped.arg(dir.join("written-piped"));
    let output = run(piped);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("worker-to-stdout\n"),
        "{}",
        show(&output)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("worker-to-stderr\n"),
        "{}",
        show(&output)
    );

    let (out, err) = (dir.join("out"), dir.join("err"));
    let mut to_files = Command::new(&program);
    to_files.arg(dir.join("written-files"));
    to_files.stdout(std::fs::File::create(&out).expect("create out"));
    to_files.stderr(std::fs::File::create(&err).expect("create err"));
    let status = to_files.status().expect("the C test program runs");
    let (stdout, stderr) = (
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("worker-to-stdout\n"), "stdout file:\n{stdout}");
    assert!(stderr.contains("worker-to-stderr\n"), "stderr file:\n{stderr}");
}
