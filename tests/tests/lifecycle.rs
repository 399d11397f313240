//! Start, status, exit reasons, restart, rescale and shutdown, with real worker processes.

use drover::{
    Error, Event, ExitReason, Master, MasterConfig, MasterStatus, StartFailure, Timeouts, WorkerFailure, WorkerStatus,
};
use drover_tests::{eventually, next_exit, next_exit_of, next_matching, pid_is_running, test_worker};
use serde_json::json;
use std::time::Duration;

fn config(count: usize) -> MasterConfig {
    MasterConfig::program(test_worker()).count(count).name("test")
}

fn quick(mut c: MasterConfig) -> MasterConfig {
    c.timeouts = Timeouts {
        start: Duration::from_secs(10),
        stop: Duration::from_millis(500),
        quit: Duration::from_millis(500),
        kill: Duration::from_millis(500),
    };
    c
}

#[tokio::test]
async fn start_resolves_when_every_worker_is_started_and_shutdown_reaps_them_all() {
    let master = Master::new(config(4)).unwrap();
    assert_eq!(master.status(), MasterStatus::Initialized);
    master.start().await.unwrap();
    assert_eq!(master.status(), MasterStatus::Started);
    let workers = master.workers();
    assert_eq!(workers.len(), 4);
    let mut ids: Vec<_> = workers.iter().map(|w| w.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "ids are unique");
    for w in &workers {
        assert_eq!(w.status, WorkerStatus::Started);
        assert!(w.started_at.is_some());
        assert!(pid_is_running(w.pid));
    }
    let mut events = master.events();
    master.graceful_shutdown().await.unwrap();
    assert_eq!(master.status(), MasterStatus::ShutDown);
    for w in &workers {
        assert!(!pid_is_running(w.pid), "pid {} is gone", w.pid);
    }
    let mut exits = 0;
    while let Some(e) = events.try_recv() {
        if let Event::Exit(exit) = e {
            assert_eq!(exit.reason, ExitReason::NormalExit { code: 0 });
            assert!(exit.requested, "a shutdown exit is a requested one");
            assert_eq!(exit.last_status, WorkerStatus::ShuttedDown);
            exits += 1;
        }
    }
    assert_eq!(exits, 4);
    // Callable twice.
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn a_worker_that_exits_before_started_fails_start_and_nothing_is_left_running() {
    let master = Master::new(quick(config(3)).env("DROVER_TEST_MODE", "exit-before-start:3")).unwrap();
    let err = master.start().await.unwrap_err();
    match &err {
        Error::Start {
            failure: StartFailure::Exited(ExitReason::AbnormalExit { code: 3 }),
            pid: Some(_),
            ..
        } => {}
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        err.to_string().contains("exited with code 3 before reporting STARTED"),
        "{err}"
    );
    assert_eq!(master.status(), MasterStatus::Stopped);
    assert!(master.workers().is_empty());
}

#[tokio::test]
async fn a_worker_that_never_starts_misses_the_start_timeout() {
    let mut c = quick(config(2)).env("DROVER_TEST_MODE", "never-start");
    c.timeouts.start = Duration::from_millis(300);
    let master = Master::new(c).unwrap();
    let err = master.start().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Start {
                failure: StartFailure::Failed(WorkerFailure::StartTimeout { .. }),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("did not report STARTED within 300ms"), "{err}");
    assert!(master.workers().is_empty(), "every worker start() spawned is reaped");
}

#[tokio::test]
async fn exit_reasons_tell_signals_codes_and_unasked_exits_apart() {
    let master = Master::new(quick(config(3))).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let w = master.workers();

    // SAFETY: killing our own worker.
    unsafe { libc::kill(w[0].pid as i32, libc::SIGKILL) };
    let exit = next_exit_of(&mut events, w[0].id).await;
    assert_eq!(
        exit.reason,
        ExitReason::ExternalSignal {
            signal: 9,
            core_dumped: false
        }
    );
    assert!(!exit.requested);

    master.send(w[1].id, &json!({"cmd": "exit", "code": 0})).await.unwrap();
    let exit = next_exit_of(&mut events, w[1].id).await;
    assert_eq!(exit.reason, ExitReason::NormalExit { code: 0 });
    assert!(!exit.requested, "an exit(0) nobody asked for is not a requested exit");
    assert_eq!(exit.last_status, WorkerStatus::Started);

    master.send(w[2].id, &json!({"cmd": "exit", "code": 3})).await.unwrap();
    let exit = next_exit_of(&mut events, w[2].id).await;
    assert_eq!(exit.reason, ExitReason::AbnormalExit { code: 3 });

    // Sending to a worker that died is an error; the master keeps running.
    let err = master.send(w[2].id, &json!("hi")).await.unwrap_err();
    assert!(err.to_string().contains("is gone"), "{err}");
    assert_eq!(master.status(), MasterStatus::Started);
    master.hard_shutdown().await.unwrap();
}

#[tokio::test]
async fn messages_round_trip_and_restart_keeps_the_id_with_a_new_pid() {
    let master = Master::new(quick(config(2))).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let w = master.workers();
    master.send(w[0].id, &json!({"cmd": "echo", "n": 1})).await.unwrap();
    let data = next_matching(&mut events, |e| match e {
        Event::Message { id, data, .. } if *id == w[0].id => Some(data.clone()),
        _ => None,
    })
    .await;
    assert_eq!(data, json!({"echo": {"cmd": "echo", "n": 1}}));

    assert_eq!(master.broadcast(&json!({"cmd": "pid"})).await.unwrap(), 2);

    master.restart_worker(w[0].id).await.unwrap();
    let after = master.worker(w[0].id).unwrap();
    assert_ne!(after.pid, w[0].pid);
    assert_eq!(after.status, WorkerStatus::Started);
    assert_eq!(master.workers().iter().find(|x| x.id == w[0].id).unwrap().restarts, 1);
    assert!(!pid_is_running(w[0].pid));
    assert!(matches!(
        master.restart_worker(999).await,
        Err(Error::UnknownWorker { id: 999 })
    ));
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn rescale_up_starts_newcomers_and_down_stops_the_newest() {
    let master = Master::new(quick(config(2))).unwrap();
    master.start().await.unwrap();
    let before: Vec<u64> = master.workers().iter().map(|w| w.id).collect();
    master.rescale(5).await.unwrap();
    let up = master.workers();
    assert_eq!(up.len(), 5);
    assert!(up.iter().all(|w| w.status == WorkerStatus::Started));
    master.rescale(1).await.unwrap();
    let down = master.workers();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].id, before[0], "the oldest worker stays");
    for w in up.iter().filter(|w| w.id != before[0]) {
        assert!(!pid_is_running(w.pid));
    }
    assert_eq!(master.config().count, 1);
    assert!(matches!(master.rescale(0).await, Err(Error::Config(_))));
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_escalates_to_sigkill_for_a_worker_that_ignores_everything() {
    let master = Master::new(quick(config(1)).env("DROVER_TEST_MODE", "ignore-stop")).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let pid = master.workers()[0].pid;
    master.graceful_shutdown().await.unwrap();
    assert!(!pid_is_running(pid));
    let exit = next_exit(&mut events).await;
    assert_eq!(
        exit.reason,
        ExitReason::ExternalSignal {
            signal: libc::SIGKILL,
            core_dumped: false
        }
    );
    assert!(exit.requested);
}

#[tokio::test]
async fn operations_in_the_wrong_state_are_refused() {
    let master = Master::new(quick(config(1))).unwrap();
    assert!(matches!(
        master.rescale(2).await,
        Err(Error::State {
            operation: "rescale",
            status: MasterStatus::Initialized
        })
    ));
    master.start().await.unwrap();
    assert!(matches!(master.start().await, Err(Error::State { .. })));
    master.graceful_shutdown().await.unwrap();
    let err = master.restart_worker(1).await.unwrap_err();
    assert_eq!(err.to_string(), "cannot restart_worker while the master is SHUT_DOWN");
}

#[tokio::test]
async fn a_missing_program_is_a_config_error_before_anything_runs() {
    let err = Master::new(MasterConfig::program("/nonexistent/worker")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/worker not found"), "{err}");
}

#[tokio::test]
async fn grandchildren_die_with_their_worker() {
    let master = Master::new(quick(config(1))).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let id = master.workers()[0].id;
    master.send(id, &json!({"cmd": "spawn-grandchild"})).await.unwrap();
    let grandchild = next_matching(&mut events, |e| match e {
        Event::Message { data, .. } => data.get("grandchild").and_then(|v| v.as_u64()),
        _ => None,
    })
    .await as u32;
    assert!(pid_is_running(grandchild));
    master.graceful_shutdown().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || !pid_is_running(grandchild)).await,
        "grandchild {grandchild} still runs"
    );
}
