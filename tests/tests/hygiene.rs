//! No orphans, no zombies, no leaked fds; protocol errors fail one worker and spare the others.

use drover::{Event, Master, MasterConfig, OnProtocolError, ProtocolError, WorkerStatus};
use drover_tests::{eventually, next_exit_of, next_matching, open_fds, pid_is_running, test_config, zombie_children};
use serde_json::json;
use std::time::Duration;

fn config(count: usize) -> MasterConfig {
    let mut c = test_config("hygiene", count);
    c.timeouts.stop = Duration::from_millis(500);
    c.timeouts.quit = Duration::from_millis(500);
    c
}

#[test]
fn a_master_killed_with_sigkill_takes_every_worker_and_grandchild_with_it() {
    let (mut child, all) = drover_tests::spawn_test_master(3);
    assert!(all.iter().all(|p| pid_is_running(*p)));
    child.kill().expect("SIGKILL the master");
    child.wait().expect("reap the master");
    let start = std::time::Instant::now();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gone = rt.block_on(eventually(Duration::from_secs(1), || {
        all.iter().all(|p| !pid_is_running(*p))
    }));
    assert!(
        gone,
        "still running after 1 s: {:?}",
        all.iter().filter(|p| pid_is_running(**p)).collect::<Vec<_>>()
    );
    eprintln!("all 6 processes gone {:?} after the master's SIGKILL", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_spawn_exit_cycles_leak_no_fd_and_leave_no_zombie() {
    let master = Master::new(config(1)).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let baseline = open_fds();
    for cycle in 0..200 {
        let id = master.workers()[0].id;
        // Half the workers die on their own (unasked exit), half are restarted by the master.
        if cycle % 2 == 0 {
            master.send(id, &json!({"cmd": "exit", "code": 3})).await.unwrap();
            next_exit_of(&mut events, id).await;
        }
        master.restart_worker(id).await.unwrap();
    }
    let after = open_fds();
    assert!(
        after <= baseline + 2,
        "open fds grew from {baseline} to {after} over 200 cycles"
    );
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
    master.graceful_shutdown().await.unwrap();
    assert!(zombie_children().is_empty());
    assert_eq!(master.workers().len(), 0);
}

async fn protocol_error_case(cmd: &str, expected: fn(&ProtocolError) -> bool) {
    let master = Master::new(config(3)).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let w = master.workers();
    master.send(w[0].id, &json!({ "cmd": cmd })).await.unwrap();
    let error = next_matching(&mut events, |e| match e {
        Event::ProtocolError { id, error, .. } if *id == w[0].id => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(expected(&error), "unexpected protocol error: {error}");
    let exit = next_exit_of(&mut events, w[0].id).await;
    assert_eq!(exit.last_status, WorkerStatus::Failed);
    assert!(!exit.requested, "failing a worker is not an exit anyone asked for");
    // The others are untouched and still answer.
    for other in &w[1..] {
        let info = master.worker(other.id).unwrap();
        assert_eq!((info.status, info.pid), (WorkerStatus::Started, other.pid));
        master.send(other.id, &json!({"cmd": "echo"})).await.unwrap();
        next_matching(&mut events, |e| {
            matches!(e, Event::Message { id, .. } if *id == other.id).then_some(())
        })
        .await;
    }
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_json_fails_only_that_worker() {
    protocol_error_case("malformed", |e| matches!(e, ProtocolError::Malformed { .. })).await;
}

#[tokio::test]
async fn an_oversized_frame_fails_only_that_worker() {
    protocol_error_case("oversized", |e| {
        matches!(e, ProtocolError::FrameTooLarge { limit: 1048576 })
    })
    .await;
}

#[tokio::test]
async fn an_illegal_transition_fails_only_that_worker() {
    protocol_error_case("illegal", |e| {
        matches!(
            e,
            ProtocolError::IllegalTransition {
                from: WorkerStatus::Started,
                to: WorkerStatus::Starting
            }
        )
    })
    .await;
}

#[tokio::test]
async fn with_on_protocol_error_ignore_the_worker_keeps_running() {
    let mut c = config(1);
    c.on_protocol_error = OnProtocolError::Ignore;
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let w = master.workers()[0].clone();
    master.send(w.id, &json!({"cmd": "malformed"})).await.unwrap();
    next_matching(&mut events, |e| matches!(e, Event::ProtocolError { .. }).then_some(())).await;
    master.send(w.id, &json!({"cmd": "echo"})).await.unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Message { .. }).then_some(())).await;
    assert_eq!(master.worker(w.id).unwrap().status, WorkerStatus::Started);
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn a_status_before_hello_is_refused() {
    let master = Master::new(config(1).env("DROVER_TEST_MODE", "no-hello")).unwrap();
    let mut events = master.events();
    let err = master.start().await.unwrap_err();
    assert!(err.to_string().contains("expected a hello frame first"), "{err}");
    next_matching(&mut events, |e| matches!(e, Event::ProtocolError { .. }).then_some(())).await;
    assert!(master.workers().is_empty());
}

#[tokio::test]
async fn a_message_sent_right_before_exit_is_delivered_before_the_exit_event() {
    let master = Master::new(config(1)).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let id = master.workers()[0].id;
    // The worker sends 500 messages and then exits at once; every message precedes the exit.
    master.send(id, &json!({"cmd": "burst", "n": 500})).await.unwrap();
    master.send(id, &json!({"cmd": "exit", "code": 0})).await.unwrap();
    let mut seen = 0;
    while let Some(data) = next_matching(&mut events, |e| match e {
        Event::Message { data, .. } => Some(Some(data.clone())),
        Event::Exit(_) => Some(None),
        _ => None,
    })
    .await
    {
        assert_eq!(data["seq"], seen);
        seen += 1;
    }
    assert_eq!(seen, 500);
    assert!(eventually(Duration::from_secs(1), || master.workers()[0].exit.is_some()).await);
    master.graceful_shutdown().await.unwrap();
}
