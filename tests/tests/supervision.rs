//! Automatic restarts with backoff and intensity, hung-worker replacement, and recycling.

use drover::{
    Backoff, Event, Heartbeat, Intensity, Master, MasterConfig, MasterStatus, RestartPolicy, WorkerFailure,
    WorkerStatus,
};
use drover_tests::{next_event, next_exit, next_matching, test_config, test_worker};
use serde_json::json;
use std::time::{Duration, Instant};

fn config(count: usize) -> MasterConfig {
    test_config("supervision", count)
}

#[tokio::test]
async fn a_crashed_worker_is_restarted_under_on_failure_but_not_after_a_clean_exit() {
    let mut c = config(2);
    c.restart = RestartPolicy::OnFailure;
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let w = master.workers();
    master.send(w[0].id, &json!({"cmd": "exit", "code": 3})).await.unwrap();
    let (id, pid) = next_matching(&mut events, |e| match e {
        Event::Status {
            id,
            to: WorkerStatus::Started,
            pid,
            ..
        } => Some((*id, *pid)),
        _ => None,
    })
    .await;
    assert_eq!(id, w[0].id, "the crashed worker comes back under its id");
    assert_ne!(pid, w[0].pid);
    assert_eq!(master.worker(w[0].id).unwrap().restarts, 1);
    master.send(w[1].id, &json!({"cmd": "exit", "code": 0})).await.unwrap();
    assert_eq!(next_exit(&mut events).await.id, w[1].id);
    // A clean exit under on-failure stays down; a round trip to the other worker proves time passed.
    master.send(w[0].id, &json!({"cmd": "echo"})).await.unwrap();
    loop {
        match next_event(&mut events).await {
            Event::Message { .. } => break,
            Event::Restarting { id, .. } => panic!("worker {id} restarted after exit(0) under on-failure"),
            _ => {}
        }
    }
    assert!(master.worker(w[1].id).unwrap().exit.is_some());
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn restarts_back_off_exponentially_and_the_master_gives_up_past_the_intensity() {
    // Crashes 300 ms after each STARTED: start() succeeds, then the crash loop begins.
    let mut c = config(1).env("DROVER_TEST_MODE", "crash-after-ms:300");
    c.restart = RestartPolicy::Always;
    c.backoff = Backoff {
        initial: Duration::from_millis(100),
        factor: 2.0,
        max: Duration::from_secs(10),
        reset_after: Duration::from_secs(60),
    };
    c.intensity = Intensity {
        max_restarts: 4,
        window: Duration::from_secs(60),
    };
    c.timeouts.start = Duration::from_secs(10);
    let master = Master::new(c).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let mut delays = Vec::new();
    let mut spawns = 0;
    let mut last_exit = None;
    let mut measured = Vec::new();
    loop {
        match next_event(&mut events).await {
            Event::Exit(_) => last_exit = Some(Instant::now()),
            Event::Restarting { delay, .. } => delays.push(delay),
            Event::Spawned { .. } => {
                spawns += 1;
                if let Some(t) = last_exit.take() {
                    measured.push(t.elapsed());
                }
            }
            Event::GaveUp { restarts, .. } => {
                assert_eq!(restarts, 4);
                break;
            }
            _ => {}
        }
    }
    let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, vec![100, 200, 400, 800], "exponential backoff from 100 ms");
    assert_eq!(spawns, 5, "1 start + 4 restarts, then no more");
    for (planned, actual) in delays.iter().zip(&measured) {
        assert!(
            actual >= planned,
            "restarted after {actual:?}, before the backoff {planned:?}"
        );
        assert!(
            *actual < *planned + Duration::from_secs(2),
            "restart took {actual:?} for a backoff of {planned:?}"
        );
    }
    assert_eq!(master.status(), MasterStatus::Failed);
    // No spinning: nothing more is spawned.
    let quiet = tokio::time::timeout(Duration::from_millis(1000), async {
        loop {
            if let Event::Spawned { .. } = next_event(&mut events).await {
                return;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "a worker was spawned after the master gave up");
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn a_spawn_that_fails_counts_towards_the_intensity() {
    let dir = std::env::temp_dir().join(format!("drover-vanishing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("worker");
    std::fs::copy(test_worker(), &program).unwrap();
    let mut c = MasterConfig::program(&program).count(1);
    c.restart = RestartPolicy::Always;
    c.backoff.initial = Duration::from_millis(10);
    c.intensity = Intensity {
        max_restarts: 3,
        window: Duration::from_secs(60),
    };
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    // The program disappears (a botched deploy), then the worker dies.
    std::fs::remove_file(&program).unwrap();
    master
        .send(master.workers()[0].id, &json!({"cmd": "exit", "code": 1}))
        .await
        .unwrap();
    let mut spawn_failures = 0;
    loop {
        match next_event(&mut events).await {
            Event::Failed {
                failure: WorkerFailure::Spawn { errno, error, .. },
                ..
            } => {
                assert_eq!(errno, Some(libc::ENOENT), "{error}");
                assert!(error.contains("ENOENT"), "{error}");
                spawn_failures += 1;
            }
            Event::GaveUp { .. } => break,
            _ => {}
        }
    }
    assert_eq!(spawn_failures, 3);
    master.graceful_shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_worker_whose_event_loop_is_blocked_is_marked_hung_and_replaced() {
    let mut c = config(2);
    c.heartbeat = Some(Heartbeat {
        interval: Duration::from_millis(100),
        tolerance: Duration::from_millis(300),
    });
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let w = master.workers();
    master
        .send(w[0].id, &json!({"cmd": "block", "ms": 30000}))
        .await
        .unwrap();
    let mut hung = false;
    loop {
        match next_event(&mut events).await {
            Event::Failed {
                id,
                failure: WorkerFailure::Hung { .. },
                ..
            } => {
                assert_eq!(id, w[0].id);
                hung = true;
            }
            Event::Status {
                id,
                to: WorkerStatus::Started,
                pid,
                ..
            } if hung => {
                assert_eq!(id, w[0].id);
                assert_ne!(pid, w[0].pid);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        master.worker(w[1].id).unwrap().pid,
        w[1].pid,
        "the healthy worker is untouched"
    );
    master.graceful_shutdown().await.unwrap();
}

/// Recycles with `limit` and checks make-before-break: each successor is STARTED before the worker
/// it replaces gets `stop`, so the STARTED count never drops below `count`.
async fn recycling_keeps_capacity(configure: impl FnOnce(&mut MasterConfig), reason_part: &str) {
    let count = 2;
    let mut c = config(count);
    configure(&mut c);
    let master = Master::new(c).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let mut started: std::collections::BTreeSet<u64> = master.workers().iter().map(|w| w.id).collect();
    let mut recycled = 0;
    while recycled < 2 {
        match next_event(&mut events).await {
            Event::Recycling { reason, .. } => assert!(reason.contains(reason_part), "{reason}"),
            Event::Status {
                id,
                to: WorkerStatus::Started,
                ..
            } => {
                started.insert(id);
            }
            Event::Status {
                id,
                from: WorkerStatus::Started,
                ..
            } => {
                started.remove(&id);
                assert!(
                    started.len() >= count,
                    "capacity dropped to {} while recycling",
                    started.len()
                );
            }
            Event::Exit(x) => {
                assert!(x.requested);
                recycled += 1;
            }
            _ => {}
        }
    }
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn workers_past_their_max_age_are_replaced_one_at_a_time_successor_first() {
    recycling_keeps_capacity(|c| c.recycle.max_age = Some(Duration::from_millis(300)), "age").await;
}

#[tokio::test]
async fn workers_over_their_memory_limit_are_replaced_successor_first() {
    recycling_keeps_capacity(
        |c| {
            c.recycle.max_rss_bytes = Some(1024);
            c.recycle.check_interval = Duration::from_millis(100);
        },
        "resident memory",
    )
    .await;
}

#[tokio::test]
async fn a_manual_restart_during_the_backoff_makes_the_automatic_one_moot() {
    let mut c = config(1);
    c.restart = RestartPolicy::Always;
    c.backoff.initial = Duration::from_millis(600);
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let id = master.workers()[0].id;
    master.send(id, &json!({"cmd": "exit", "code": 3})).await.unwrap();
    loop {
        if let Event::Restarting { .. } = next_event(&mut events).await {
            break;
        }
    }
    // The user restarts it first; when the backoff ends, the supervisor must not spawn another.
    master.restart_worker(id).await.unwrap();
    let pid = master.worker(id).unwrap().pid;
    let spawned_again = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            match next_event(&mut events).await {
                Event::Spawned { pid: other, .. } if other != pid => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(spawned_again.is_err(), "a second process was spawned for worker {id}");
    let info = master.worker(id).unwrap();
    assert_eq!((info.pid, info.status), (pid, WorkerStatus::Started));
    master.graceful_shutdown().await.unwrap();
}
