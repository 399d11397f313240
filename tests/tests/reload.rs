//! Graceful reload: make-before-break with each strategy, rollback, one reload at a time, and a
//! shutdown that wins over a reload.

use drover::{Error, Event, Master, MasterConfig, MasterStatus, ReloadStrategy, WorkerStatus};
use drover_tests::{next_matching, pid_is_running, test_config};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

fn config(count: usize) -> MasterConfig {
    let mut c = test_config("reload", count);
    c.timeouts.kill = Duration::from_secs(1);
    c
}

/// Follows the events of a master: which workers are STARTED right now, the lowest that number
/// got, and the replies to the client's messages.
struct Observer {
    started: BTreeSet<u64>,
    min_started: usize,
    replies: BTreeSet<u64>,
}

impl Observer {
    fn new(master: &Master) -> Observer {
        let started: BTreeSet<u64> = master
            .workers()
            .iter()
            .filter(|w| w.status == WorkerStatus::Started)
            .map(|w| w.id)
            .collect();
        Observer {
            min_started: started.len(),
            started,
            replies: BTreeSet::new(),
        }
    }

    fn see(&mut self, event: &Event) {
        match event {
            Event::Status {
                id,
                to: WorkerStatus::Started,
                ..
            } => {
                self.started.insert(*id);
            }
            Event::Status { id, .. } | Event::Exit(drover::WorkerExit { id, .. }) => {
                self.started.remove(id);
                self.min_started = self.min_started.min(self.started.len());
            }
            Event::Message { data, .. } => {
                if let Some(seq) = data["echo"]["seq"].as_u64() {
                    self.replies.insert(seq);
                }
            }
            _ => {}
        }
    }
}

/// Reloads while a client keeps messaging the STARTED workers: every message whose send succeeded
/// is answered, and the number of STARTED workers never drops below `count`.
async fn reload_under_traffic(strategy: ReloadStrategy, count: usize) {
    let mut c = config(count);
    c.reload = strategy;
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let old: Vec<_> = master.workers();
    let mut events = master.events();
    let mut observer = Observer::new(&master);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let master = master.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut delivered = Vec::new();
            let mut refused = 0;
            let mut seq = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for w in master.workers().iter().filter(|w| w.status == WorkerStatus::Started) {
                    seq += 1;
                    match master.send(w.id, &json!({ "cmd": "echo", "seq": seq })).await {
                        Ok(()) => delivered.push(seq),
                        // A worker told to quit refuses; that is an error the client sees, not a loss.
                        Err(_) => refused += 1,
                    }
                }
                tokio::task::yield_now().await;
            }
            (delivered, refused)
        })
    };
    let reload = {
        let master = master.clone();
        tokio::spawn(async move { master.graceful_reload(None).await })
    };
    while !reload.is_finished() {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(50), events.recv()).await {
            observer.see(&e);
        }
    }
    reload.await.unwrap().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (delivered, refused) = client.await.unwrap();
    assert!(
        delivered.len() > 50,
        "the client kept talking during the reload ({} messages)",
        delivered.len()
    );
    // Collect the remaining replies.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while delivered.iter().any(|s| !observer.replies.contains(s)) && tokio::time::Instant::now() < deadline {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
            observer.see(&e);
        }
    }
    let lost: Vec<_> = delivered.iter().filter(|s| !observer.replies.contains(s)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} delivered messages were never answered: {lost:?}",
        lost.len(),
        delivered.len()
    );
    assert!(
        observer.min_started >= count,
        "STARTED workers dropped to {} (< {count})",
        observer.min_started
    );
    eprintln!(
        "{strategy:?}: {} messages answered, {refused} refused by quitting workers",
        delivered.len()
    );

    let new = master.workers();
    assert_eq!(new.len(), count);
    assert!(new
        .iter()
        .all(|w| w.status == WorkerStatus::Started && w.generation == 1));
    for w in &old {
        assert!(!pid_is_running(w.pid), "old worker {} still runs", w.pid);
        assert!(new.iter().all(|n| n.id != w.id), "new workers get new ids");
    }
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_at_once_reload_starts_the_new_generation_before_stopping_the_old_and_loses_nothing() {
    reload_under_traffic(ReloadStrategy::AllAtOnce, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_reload_replaces_one_at_a_time_and_loses_nothing() {
    reload_under_traffic(ReloadStrategy::Rolling { batch: 1 }, 3).await;
}

async fn rollback_case(strategy: ReloadStrategy) {
    let mut c = config(3);
    c.reload = strategy;
    let master = Master::new(c.clone()).unwrap();
    master.start().await.unwrap();
    let before: Vec<_> = master.workers();
    // The new release crashes before it is ready.
    let broken = c.env("DROVER_TEST_MODE", "exit-before-start:4");
    let err = master.graceful_reload(Some(broken)).await.unwrap_err();
    let Error::ReloadRolledBack { cause } = &err else {
        panic!("expected a rollback, got {err:?}")
    };
    assert!(
        cause
            .to_string()
            .contains("exited with code 4 before reporting STARTED"),
        "{err}"
    );
    assert_eq!(master.status(), MasterStatus::Started);
    let after = master.workers();
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|w| w.status == WorkerStatus::Started));
    if strategy == ReloadStrategy::AllAtOnce {
        assert_eq!(
            before.iter().map(|w| w.pid).collect::<Vec<_>>(),
            after.iter().map(|w| w.pid).collect::<Vec<_>>(),
            "the old generation is untouched"
        );
    }
    // The config in force is still the old one.
    assert!(!master.config().env.contains_key("DROVER_TEST_MODE"));
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn a_new_worker_that_crashes_rolls_the_all_at_once_reload_back() {
    rollback_case(ReloadStrategy::AllAtOnce).await;
}

#[tokio::test]
async fn a_new_worker_that_crashes_rolls_the_rolling_reload_back() {
    rollback_case(ReloadStrategy::Rolling { batch: 1 }).await;
}

#[tokio::test]
async fn a_new_worker_that_never_reports_ready_is_never_assumed_ready() {
    let mut c = config(2);
    c.timeouts.start = Duration::from_millis(400);
    let master = Master::new(c.clone()).unwrap();
    master.start().await.unwrap();
    let err = master
        .graceful_reload(Some(c.env("DROVER_TEST_MODE", "never-start")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not report STARTED within 400ms"), "{err}");
    assert_eq!(master.workers().len(), 2);
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reload_with_a_new_config_deploys_a_new_count_and_env() {
    let master = Master::new(config(2)).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    master
        .graceful_reload(Some(config(3).env("RELEASE", "2")))
        .await
        .unwrap();
    assert_eq!(master.workers().len(), 3);
    assert_eq!(master.config().count, 3);
    assert_eq!(master.config().env["RELEASE"], "2");
    let mut statuses: HashMap<u64, WorkerStatus> = HashMap::new();
    while let Some(e) = events.try_recv() {
        if let Event::Status { id, to, .. } = e {
            statuses.insert(id, to);
        }
    }
    assert!(statuses.values().filter(|s| **s == WorkerStatus::ShuttedDown).count() >= 2);
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_reload_and_a_rescale_during_a_reload_are_refused() {
    let master = Master::new(config(2)).unwrap();
    master.start().await.unwrap();
    let slow = config(2).env("DROVER_TEST_MODE", "start-after-ms:1500");
    let reload = {
        let master = master.clone();
        tokio::spawn(async move { master.graceful_reload(Some(slow)).await })
    };
    let mut status = master.watch_status();
    status.wait_for(|s| *s == MasterStatus::Reloading).await.unwrap();
    let second = master.graceful_reload(None).await.unwrap_err();
    assert_eq!(
        second.to_string(),
        "cannot graceful_reload while the master is RELOADING"
    );
    assert!(matches!(
        master.rescale(5).await,
        Err(Error::State {
            status: MasterStatus::Reloading,
            ..
        })
    ));
    let id = master.workers()[0].id;
    assert!(matches!(master.restart_worker(id).await, Err(Error::State { .. })));
    reload.await.unwrap().unwrap();
    assert_eq!(master.workers().len(), 2);
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn a_shutdown_during_a_reload_wins_and_leaves_nothing_running() {
    let master = Master::new(config(2)).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let slow = config(2).env("DROVER_TEST_MODE", "start-after-ms:30000");
    let reload = {
        let master = master.clone();
        tokio::spawn(async move { master.graceful_reload(Some(slow)).await })
    };
    // Wait until the new generation's processes exist.
    let mut spawned = BTreeSet::new();
    while spawned.len() < 2 {
        spawned.insert(
            next_matching(&mut events, |e| match e {
                Event::Spawned { id, pid } => Some((*id, *pid)),
                _ => None,
            })
            .await,
        );
    }
    let all_pids: Vec<u32> = master.workers().iter().map(|w| w.pid).collect();
    assert_eq!(all_pids.len(), 4);
    master.graceful_shutdown().await.unwrap();
    let result = reload.await.unwrap();
    assert!(
        matches!(
            result,
            Err(Error::Cancelled {
                operation: "graceful_reload"
            })
        ),
        "{result:?}"
    );
    assert_eq!(master.status(), MasterStatus::ShutDown);
    for pid in all_pids {
        assert!(!pid_is_running(pid), "pid {pid} survived the shutdown");
    }
}

#[tokio::test]
async fn sighup_through_handle_signal_reloads() {
    let master = Master::new(config(1)).unwrap();
    master.start().await.unwrap();
    let before = master.workers()[0].pid;
    assert_eq!(
        master.handle_signal(libc::SIGHUP).await.unwrap(),
        drover::SignalAction::Reload
    );
    assert_ne!(master.workers()[0].pid, before);
    assert_eq!(
        master.handle_signal(libc::SIGTERM).await.unwrap(),
        drover::SignalAction::GracefulShutdown
    );
    assert_eq!(master.status(), MasterStatus::ShutDown);
}
