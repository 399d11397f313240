//! Reconfigure (PROTOCOL.md §5.11) and the pre-start hook, with real worker processes: every
//! answer a worker can give (applied, refused, none), the config reaching a replacement in its
//! welcome, the frame bound, and a failing hook that spawns nothing.

use drover::master::reconfigure::ReconfigureOutcome;
use drover::{Error, Event, Master, MasterStatus, RestartPolicy};
use drover_tests::{ask, next_matching, test_config};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

fn outcomes(acks: &[drover::master::reconfigure::ReconfigureAck]) -> Vec<(u64, ReconfigureOutcome)> {
    acks.iter().map(|a| (a.id, a.outcome.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_workers_apply_refuse_or_miss_a_new_config_and_replacements_start_with_it() {
    let mut config = test_config("reconf", 3).restart(RestartPolicy::Always);
    config.user_config = json!({ "level": 1 });
    let master = Master::new(config).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let pids: Vec<u32> = master.workers().iter().map(|w| w.pid).collect();

    let acks = master.reconfigure(json!({ "level": 2 }), LONG).await.unwrap();
    assert_eq!(
        outcomes(&acks),
        vec![
            (1, ReconfigureOutcome::Applied),
            (2, ReconfigureOutcome::Applied),
            (3, ReconfigureOutcome::Applied)
        ]
    );
    for id in 1..=3 {
        let reply = ask(&master, &mut events, id, json!({ "cmd": "config" })).await;
        assert_eq!(reply, json!({ "config": { "level": 2 } }), "worker {id}");
    }
    // Nobody was restarted for it.
    assert_eq!(master.workers().iter().map(|w| w.pid).collect::<Vec<_>>(), pids);
    assert_eq!(master.config().user_config, json!({ "level": 2 }));

    // A replacement starts with the latest config, in its welcome.
    master.send(2, &json!({ "cmd": "exit", "code": 1 })).await.unwrap();
    next_matching(&mut events, |e| match e {
        Event::Status { id: 2, pid, to, .. } if *to == drover::WorkerStatus::Started && !pids.contains(pid) => Some(()),
        _ => None,
    })
    .await;
    let reply = ask(&master, &mut events, 2, json!({ "cmd": "config" })).await;
    assert_eq!(reply, json!({ "config": { "level": 2 } }));

    // A refusal carries the worker's reason; the worker keeps its config.
    let acks = master
        .reconfigure(json!({ "refuse": "level must be a number" }), LONG)
        .await
        .unwrap();
    assert!(acks
        .iter()
        .all(|a| a.outcome == ReconfigureOutcome::Refused("level must be a number".into())));
    assert_eq!(acks[0].to_json()["outcome"], "refused");
    assert_eq!(acks[0].to_json()["error"], "level must be a number");
    let reply = ask(&master, &mut events, 1, json!({ "cmd": "config" })).await;
    assert_eq!(reply, json!({ "config": { "level": 2 } }));

    // No answer within the deadline: timeout, and the call returns at the deadline.
    let asked = std::time::Instant::now();
    let acks = master
        .reconfigure(json!({ "ignore": true }), Duration::from_millis(800))
        .await
        .unwrap();
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert!(
        acks.iter().all(|a| a.outcome == ReconfigureOutcome::Timeout),
        "{acks:?}"
    );

    // Too large for one frame: an error before anything changes.
    let huge = Value::String("x".repeat(master.config().max_frame_bytes + 1));
    let err = master.reconfigure(huge, LONG).await.unwrap_err();
    assert!(matches!(err, Error::Reconfigure(_)), "{err}");
    assert_eq!(master.config().user_config, json!({ "ignore": true }));
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_a_message_bus_times_out_and_an_exiting_one_is_gone() {
    // `ready: spawn` — a program that never reads the bus.
    let mut config = drover::MasterConfig::program("/bin/sleep")
        .args(["60"])
        .count(1)
        .name("mute")
        .ready(drover::ReadySource::Spawn);
    config.timeouts.kill = Duration::from_millis(500);
    let master = Master::new(config).unwrap();
    master.start().await.unwrap();
    let acks = master
        .reconfigure(json!({ "a": 1 }), Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(outcomes(&acks), vec![(1, ReconfigureOutcome::Timeout)]);
    master.hard_shutdown().await.unwrap();

    let master = Master::new(test_config("leaving", 1).restart(RestartPolicy::Never)).unwrap();
    master.start().await.unwrap();
    master.send(1, &json!({ "cmd": "exit", "code": 0 })).await.unwrap();
    let acks = master.reconfigure(json!({ "ignore": true }), LONG).await.unwrap();
    assert_eq!(outcomes(&acks), vec![(1, ReconfigureOutcome::Gone)]);
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_start_hook_fails_the_start_and_spawns_nothing() {
    let master = Master::new(test_config("hooked", 2)).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    master.pre_start(move || {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Err("the database is not migrated".to_string())
            } else {
                Ok(())
            }
        }
    });
    let mut events = master.events();
    let err = master.start().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the pre-start hook failed: the database is not migrated"
    );
    assert!(master.workers().is_empty());
    assert_eq!(master.status(), MasterStatus::Initialized);
    assert!(
        !std::iter::from_fn(|| events.try_recv()).any(|e| matches!(e, Event::Spawned { .. })),
        "a worker was spawned"
    );

    // The hook runs again at the next start, and this time lets it through.
    master.start().await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(master.workers().len(), 2);
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_outlives_the_start_timeout_fails_the_start() {
    let mut config = test_config("slow-hook", 1);
    config.timeouts.start = Duration::from_millis(300);
    let master = Master::new(config).unwrap();
    master.pre_start(|| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    });
    let err = master.start().await.unwrap_err();
    assert!(matches!(err, Error::PreStart { .. }), "{err}");
    assert!(err.to_string().contains("start timeout"), "{err}");
    assert!(master.workers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_reason_is_cut_to_its_bound() {
    use drover::master::reconfigure::MAX_RECONFIGURE_ERROR_BYTES;
    let master = Master::new(test_config("long-no", 1)).unwrap();
    master.start().await.unwrap();
    // Multi-byte characters across the cut: it falls on a character boundary.
    let reason = "é".repeat(MAX_RECONFIGURE_ERROR_BYTES);
    let acks = master.reconfigure(json!({ "refuse": reason }), LONG).await.unwrap();
    let ReconfigureOutcome::Refused(got) = &acks[0].outcome else {
        panic!("{acks:?}");
    };
    assert!(
        got.len() <= MAX_RECONFIGURE_ERROR_BYTES + '…'.len_utf8(),
        "{}",
        got.len()
    );
    assert!(got.ends_with('…'));
    assert!(reason.starts_with(got.trim_end_matches('…')));
    master.graceful_shutdown().await.unwrap();
}

#[test]
fn warmup_options_are_checked_and_named() {
    let options = |warmup: Value| -> drover::MasterOptions {
        serde_json::from_value(json!({ "program": "/bin/true", "warmup": warmup })).unwrap()
    };
    let config = options(json!({ "requests": 20, "path": "/health", "timeout": "2s" }))
        .into_config()
        .unwrap();
    assert_eq!(
        config.warmup,
        Some(drover::Warmup {
            requests: 20,
            path: "/health".into(),
            timeout: Duration::from_secs(2)
        })
    );
    let defaults = options(json!({})).into_config().unwrap().warmup.unwrap();
    assert_eq!((defaults.requests, defaults.path.as_str()), (1, "/"));
    for (bad, field) in [
        (json!({ "requests": 0 }), "warmup.requests"),
        (json!({ "requests": 10_001 }), "warmup.requests"),
        (json!({ "path": "health" }), "warmup.path"),
        (json!({ "path": format!("/{}", "a".repeat(2048)) }), "warmup.path"),
        (json!({ "timeout": -1 }), "warmup.timeout"),
    ] {
        let err = options(bad.clone()).into_config().unwrap_err().to_string();
        assert!(err.contains(field), "{bad}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_new_config_ends_the_reconfigured_one() {
    let master = Master::new(test_config("reloaded", 1)).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    master.reconfigure(json!({ "pushed": true }), LONG).await.unwrap();
    // A reload without a new config keeps the pushed one (the new generation's welcome has it).
    master.graceful_reload(None).await.unwrap();
    let id = master.workers()[0].id;
    assert_eq!(
        ask(&master, &mut events, id, json!({ "cmd": "config" })).await,
        json!({ "config": { "pushed": true } })
    );
    // A new config's user config wins from then on.
    let mut next = test_config("reloaded", 1);
    next.user_config = json!({ "released": 2 });
    master.graceful_reload(Some(next)).await.unwrap();
    let id = master.workers()[0].id;
    assert_eq!(
        ask(&master, &mut events, id, json!({ "cmd": "config" })).await,
        json!({ "config": { "released": 2 } })
    );
    assert_eq!(master.config().user_config, json!({ "released": 2 }));
    master.graceful_shutdown().await.unwrap();
}
