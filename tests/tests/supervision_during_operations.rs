//! The restart policy keeps working while an operation runs: crashes of a reload's new
//! generation, crashes of the old generation during a reload that rolls back, and crashes while a
//! recycle waits for its successor.

use drover::{Error, Event, Master, MasterConfig, MasterStatus, ReloadStrategy, RestartPolicy, WorkerStatus};
use drover_tests::{next_event, next_matching, test_config};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

fn config(count: usize) -> MasterConfig {
    let mut c = test_config("supervision-during-operations", count);
    c.restart = RestartPolicy::Always;
    c.backoff.initial = Duration::from_millis(50);
    c
}

/// The next STARTED of worker `id` by a process other than `not`; its pid.
async fn started_again(events: &mut drover::Events, id: u64, not: u32) -> u32 {
    next_matching(events, |e| match e {
        Event::Status {
            id: of,
            pid,
            to: WorkerStatus::Started,
            ..
        } if *of == id && *pid != not => Some(*pid),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_new_worker_that_crashes_during_the_rest_of_a_reload_is_restarted() {
    let master = Master::new(config(2)).unwrap();
    master.start().await.unwrap();
    let old: BTreeSet<u64> = master.workers().iter().map(|w| w.id).collect();
    let mut events = master.events();
    // Each new worker takes 1.5 s to start: the second batch keeps the reload going after the
    // first new worker is up.
    let mut new = config(2).env("DROVER_TEST_MODE", "start-after-ms:1500");
    new.reload = ReloadStrategy::Rolling { batch: 1 };
    let reload = {
        let master = master.clone();
        tokio::spawn(async move { master.graceful_reload(Some(new)).await })
    };
    let (first, pid) = next_matching(&mut events, |e| match e {
        Event::Status {
            id,
            pid,
            to: WorkerStatus::Started,
            ..
        } if !old.contains(id) => Some((*id, *pid)),
        _ => None,
    })
    .await;
    master.send(first, &json!({"cmd": "exit", "code": 3})).await.unwrap();
    let restarting_during = next_matching(&mut events, |e| match e {
        Event::Restarting { id, .. } if *id == first => Some(master.status()),
        _ => None,
    })
    .await;
    assert_eq!(
        restarting_during,
        MasterStatus::Reloading,
        "restarted while the reload still runs"
    );
    started_again(&mut events, first, pid).await;
    reload.await.unwrap().unwrap();
    let workers = master.workers();
    assert_eq!(workers.len(), 2);
    assert!(workers
        .iter()
        .all(|w| w.status == WorkerStatus::Started && w.is_alive() && !old.contains(&w.id)));
    let revived = master.worker(first).unwrap();
    assert_ne!(revived.pid, pid);
    assert_eq!(revived.restarts, 1);
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn an_old_worker_that_crashes_during_a_reload_is_restarted_once_the_reload_rolls_back() {
    let master = Master::new(config(2)).unwrap();
    master.start().await.unwrap();
    let victim = master.workers()[0].clone();
    let mut events = master.events();
    // The new release never reports ready: the reload rolls back after its start timeout.
    let mut new = config(2).env("DROVER_TEST_MODE", "never-start");
    new.timeouts.start = Duration::from_millis(1500);
    let reload = {
        let master = master.clone();
        tokio::spawn(async move { master.graceful_reload(Some(new)).await })
    };
    let mut status = master.watch_status();
    status.wait_for(|s| *s == MasterStatus::Reloading).await.unwrap();
    master
        .send(victim.id, &json!({"cmd": "exit", "code": 3}))
        .await
        .unwrap();
    // Left to the reload while it runs...
    loop {
        match next_event(&mut events).await {
            Event::Restarting { id, .. } => panic!("worker {id} restarted while the reload could still replace it"),
            Event::MasterStatus {
                from: MasterStatus::Reloading,
                ..
            } => break,
            _ => {}
        }
    }
    let err = reload.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::ReloadRolledBack { .. }), "{err}");
    // ...and restarted once the rollback kept it.
    let id = next_matching(&mut events, |e| match e {
        Event::Restarting { id, .. } => Some(*id),
        _ => None,
    })
    .await;
    assert_eq!(id, victim.id);
    started_again(&mut events, victim.id, victim.pid).await;
    assert_eq!(master.status(), MasterStatus::Started);
    assert!(master
        .workers()
        .iter()
        .all(|w| w.status == WorkerStatus::Started && w.is_alive()));
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crashed_worker_is_restarted_while_a_recycle_waits_for_its_successor() {
    // Every worker takes 1.5 s to start, so each recycle waits that long for its successor.
    let mut c = config(2).env("DROVER_TEST_MODE", "start-after-ms:1500");
    c.recycle.max_age = Some(Duration::from_millis(500));
    let master = Master::new(c).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let workers = master.workers();
    let victim = next_matching(&mut events, |e| match e {
        Event::Recycling { id, .. } => Some(*id),
        _ => None,
    })
    .await;
    let other = workers.iter().find(|w| w.id != victim).unwrap().clone();
    master.send(other.id, &json!({"cmd": "exit", "code": 3})).await.unwrap();
    // The crashed worker's new process is spawned before the recycle ends (the victim's exit).
    loop {
        match next_event(&mut events).await {
            Event::Spawned { id, pid } if id == other.id && pid != other.pid => break,
            Event::Exit(exit) if exit.id == victim => {
                panic!("the recycle ended before the crashed worker {} was restarted", other.id)
            }
            _ => {}
        }
    }
    started_again(&mut events, other.id, other.pid).await;
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn dropping_the_last_handle_ends_every_worker_even_with_a_restart_waiting_out_its_backoff() {
    let mut c = config(2);
    c.backoff.initial = Duration::from_secs(2);
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let workers = master.workers();
    master
        .send(workers[0].id, &json!({"cmd": "exit", "code": 3}))
        .await
        .unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Restarting { .. }).then_some(())).await;
    drop(master);
    assert!(
        drover_tests::eventually(drover_tests::EVENT_DEADLINE, || !drover_tests::pid_is_running(
            workers[1].pid
        ))
        .await,
        "the live worker outlived its master"
    );
    // The stream ends once the master's loop and every worker's actor are gone: nothing was
    // spawned after the drop, and nothing holds the master.
    let ended = tokio::time::timeout(drover_tests::EVENT_DEADLINE, async {
        while let Some(event) = events.recv().await {
            if let Event::Spawned { .. } = event {
                panic!("a worker was spawned after the last handle was dropped");
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream did not end");
}
