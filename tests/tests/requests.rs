//! Requests and worker-to-worker messages routed by the master (PROTOCOL.md §5.5), end to end with
//! real worker processes: every target kind, every way a request fails, and the bounds.

use drover::request::{RequestErrorCode, Target, MAX_PENDING_PER_WORKER};
use drover::{Event, Events, Master, MasterConfig};
use drover_tests::{next_matching, pid_is_running, test_config};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const HANDLERS: &str = "echo,whoami,fail,slow,never,exit";

fn config(count: usize) -> MasterConfig {
    test_config("requests", count).env("DROVER_TEST_HANDLERS", HANDLERS)
}

/// Has worker `id` run `cmd` and returns its reply: the value under `key`.
async fn ask(master: &Master, events: &mut Events, id: u64, cmd: Value, keys: &[&'static str]) -> Value {
    master.send(id, &cmd).await.unwrap();
    next_matching(events, |e| match e {
        Event::Message { id: from, data, .. } if *from == id => keys
            .iter()
            .find(|k| data.get(**k).is_some())
            .map(|k| json!({ *k: data[*k].clone() })),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_calls_workers_by_id_name_any_and_all() {
    let master = Master::new(config(3)).unwrap();
    master.start().await.unwrap();
    let long = Duration::from_secs(20);

    let by_id = master.request(Target::Worker(2), "whoami", &(), long).await.unwrap();
    assert_eq!(by_id, json!({ "id": 2 }));
    let by_name = master
        .request(Target::Name("requests-3".into()), "echo", &json!({"x": [1, 2]}), long)
        .await
        .unwrap();
    assert_eq!(by_name, json!({"x": [1, 2]}));

    // `any` goes round the workers that declared the handler.
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let who = master.request(Target::Any, "whoami", &(), long).await.unwrap();
        seen.insert(who["id"].as_u64().unwrap());
    }
    assert_eq!(seen, BTreeSet::from([1, 2, 3]));

    // `all` gathers every answer, a failure included, by worker.
    let all = master.request(Target::All, "whoami", &(), long).await.unwrap();
    assert_eq!(
        all,
        json!([
            {"worker": 1, "result": {"id": 1}},
            {"worker": 2, "result": {"id": 2}},
            {"worker": 3, "result": {"id": 3}},
        ])
    );
    let failed = master.request(Target::All, "fail", &(), long).await.unwrap();
    assert_eq!(failed[0]["error"]["code"], "handler_failed");
    assert_eq!(failed[0]["error"]["message"], "failed on purpose");
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_is_a_typed_error_never_a_silent_drop() {
    let master = Master::new(config(2)).unwrap();
    master.start().await.unwrap();
    let long = Duration::from_secs(20);
    let code = |r: Result<Value, drover::request::RequestError>| r.err().map(|e| (e.code, e.message));

    let (c, m) = code(master.request(Target::Worker(1), "nope", &(), long).await).unwrap();
    assert_eq!(
        (c, m.as_str()),
        (RequestErrorCode::NoSuchHandler, "worker 1 has no handler \"nope\"")
    );
    let (c, m) = code(master.request(Target::Worker(99), "echo", &(), long).await).unwrap();
    assert_eq!(
        (c, m.as_str()),
        (RequestErrorCode::NoSuchTarget, "no live worker is worker:99")
    );
    let (c, m) = code(master.request(Target::Worker(1), "fail", &(), long).await).unwrap();
    assert_eq!((c, m.as_str()), (RequestErrorCode::HandlerFailed, "failed on purpose"));
    let (c, _) = code(master.request(Target::Master, "echo", &(), long).await).unwrap();
    assert_eq!(c, RequestErrorCode::NoSuchHandler);
    let (c, m) = code(
        master
            .request(Target::Worker(2), "never", &(), Duration::from_millis(300))
            .await,
    )
    .unwrap();
    assert_eq!(
        (c, m.as_str()),
        (RequestErrorCode::Timeout, "worker 2 did not answer within 300 ms")
    );

    // The target dies before it answers: target_gone, at its exit, not at the timeout.
    let pid = master.worker(1).unwrap().pid;
    let began = std::time::Instant::now();
    let (c, m) = code(master.request(Target::Worker(1), "exit", &(), long).await).unwrap();
    assert_eq!(
        (c, m.as_str()),
        (RequestErrorCode::TargetGone, "worker 1 exited before it answered")
    );
    assert!(began.elapsed() < long);
    assert!(drover_tests::eventually(Duration::from_secs(20), || !pid_is_running(pid)).await);
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_call_the_master_and_each_other_and_message_each_other() {
    let master = Master::new(config(3)).unwrap();
    master
        .handle("add", |from, args| async move {
            let numbers: Vec<i64> = serde_json::from_value(args).map_err(|e| format!("add: {e}"))?;
            Ok(json!({ "sum": numbers.iter().sum::<i64>(), "asked_by": from }))
        })
        .unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let replies = ["response", "request_error"];

    // Worker → master.
    let cmd = json!({"cmd": "request", "to": "master", "name": "add", "args": [1, 2, 39]});
    let got = ask(&master, &mut events, 2, cmd, &replies).await;
    assert_eq!(got, json!({"response": {"sum": 42, "asked_by": 2}}));
    let cmd = json!({"cmd": "request", "to": "master", "name": "add", "args": "x"});
    let got = ask(&master, &mut events, 2, cmd, &replies).await;
    assert_eq!(got["request_error"]["code"], "handler_failed");

    // Worker → worker, by id and to all the others (never itself).
    let cmd = json!({"cmd": "request", "to": "worker:3", "name": "whoami"});
    let got = ask(&master, &mut events, 1, cmd, &replies).await;
    assert_eq!(got, json!({"response": {"id": 3}}));
    let cmd = json!({"cmd": "request", "to": "all", "name": "whoami"});
    let got = ask(&master, &mut events, 1, cmd, &replies).await;
    assert_eq!(
        got,
        json!({"response": [{"worker": 2, "result": {"id": 2}}, {"worker": 3, "result": {"id": 3}}]})
    );
    let cmd = json!({"cmd": "request", "to": "name:nobody", "name": "whoami"});
    let got = ask(&master, &mut events, 1, cmd, &replies).await;
    assert_eq!(got["request_error"]["code"], "no_such_target");

    // Messages between workers: acknowledged with a count, and delivered with the sender's id.
    // (The acknowledgement to 1 and the delivery to 2 race: both are awaited together.)
    let cmd = json!({"cmd": "send-to", "to": "worker:2", "data": {"hello": 1}});
    master.send(1, &cmd).await.unwrap();
    let (mut acknowledged, mut delivered) = (None, None);
    while acknowledged.is_none() || delivered.is_none() {
        next_matching(&mut events, |e| match e {
            Event::Message { id: 1, data, .. } if data.get("sent").is_some() => {
                acknowledged = Some(data.clone());
                Some(())
            }
            Event::Message { id: 2, data, .. } if data.get("got").is_some() => {
                delivered = Some(data.clone());
                Some(())
            }
            _ => None,
        })
        .await;
    }
    assert_eq!(acknowledged, Some(json!({"sent": 1})));
    assert_eq!(delivered, Some(json!({"from": 1, "got": {"hello": 1}})));
    let cmd = json!({"cmd": "send-to", "to": "all", "data": "everyone"});
    let got = ask(&master, &mut events, 3, cmd, &["sent", "send_error"]).await;
    assert_eq!(got, json!({"sent": 2}));
    // To a worker that is not there: an error to the sender, not a silent drop.
    let cmd = json!({"cmd": "send-to", "to": "worker:42", "data": 1});
    let got = ask(&master, &mut events, 3, cmd, &["sent", "send_error"]).await;
    assert_eq!(got["send_error"]["code"], "no_such_target");
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_flooding_requests_is_refused_past_its_bound_and_the_others_are_served() {
    let master = Master::new(config(2)).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    // Worker 1 asks worker 2 for a handler that never answers, past its bound.
    for _ in 0..MAX_PENDING_PER_WORKER + 5 {
        let cmd = json!({"cmd": "request", "to": "worker:2", "name": "never", "timeout_ms": 60_000});
        master.send(1, &cmd).await.unwrap();
    }
    let refused = next_matching(&mut events, |e| match e {
        Event::Message { id: 1, data, .. } => data.get("request_error").cloned(),
        _ => None,
    })
    .await;
    assert_eq!(refused["code"], "overloaded", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{MAX_PENDING_PER_WORKER} requests")),
        "{refused}"
    );
    // The master and worker 2 are untouched: worker 2 still answers, the master still routes.
    let who = master
        .request(Target::Worker(2), "whoami", &(), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(who, json!({"id": 2}));
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_workers_are_addressed_by_name_and_publish_an_application_status() {
    let mut c = config(3);
    c.names = vec!["email".into(), "search".into()];
    let master = Master::new(c).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let names: Vec<String> = master.workers().iter().map(|w| w.name.clone()).collect();
    assert_eq!(
        names,
        ["email", "search", "requests-3"],
        "by instance; the others by group and id"
    );
    let who = master
        .request(Target::Name("search".into()), "whoami", &(), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(who, json!({"id": 2}));

    // An application status and counters, beside the lifecycle status.
    let cmd = json!({"cmd": "app-status", "status": "PROCESSING", "counters": {"jobs": 3, "queue": 12.5}});
    let sent = ask(&master, &mut events, 1, cmd, &["app_status_sent"]).await;
    assert_eq!(sent, json!({"app_status_sent": true}));
    assert!(
        drover_tests::eventually(Duration::from_secs(20), || master
            .worker(1)
            .unwrap()
            .app_status
            .as_deref()
            == Some("PROCESSING"))
        .await
    );
    let w = master.worker(1).unwrap();
    assert_eq!(w.counters.get("jobs"), Some(&3.0));
    assert_eq!(w.counters.get("queue"), Some(&12.5));

    // Past its bounds it is a protocol error, and (onProtocolError: fail) the worker is failed.
    let cmd = json!({"cmd": "app-status", "status": "x".repeat(65)});
    master.send(3, &cmd).await.unwrap();
    let error = next_matching(&mut events, |e| match e {
        Event::ProtocolError { id: 3, error, .. } => Some(error.to_string()),
        _ => None,
    })
    .await;
    assert!(
        error.contains("app_status: `status` must be at most 64 bytes"),
        "{error}"
    );
    master.graceful_shutdown().await.unwrap();
}

#[test]
fn worker_names_are_checked() {
    let mut c = config(2);
    c.names = vec!["email".into(), "email".into()];
    let err = c.validate().unwrap_err().to_string();
    assert_eq!(err, "`names`: \"email\" is given twice");
    let mut c = config(2);
    c.names = vec!["has space".into()];
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("1 to 64 letters"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_gathers_every_workers_status_functions() {
    let c = test_config("statuses", 2).env("DROVER_TEST_HANDLERS", "status.id,status.flaky,echo");
    let master = Master::new(c).unwrap();
    master.start().await.unwrap();
    let statuses = master.gather_statuses(Duration::from_secs(20)).await;
    assert_eq!(
        statuses,
        json!({
            "1": {"id": {"id": 1}, "flaky": true},
            "2": {"id": {"id": 2}, "flaky": {"error": {"code": "handler_failed", "message": "flaky"}}},
        })
    );
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recycle_predicate_replaces_the_worker_whose_published_statistics_it_dislikes() {
    let mut c = config(2);
    c.recycle.check_interval = Duration::from_millis(100);
    let master = Master::new(c).unwrap();
    master.recycle_when(|w| {
        let leak = w.counters.get("leak").copied().unwrap_or(0.0);
        (leak > 10.0).then(|| format!("leak {leak}"))
    });
    let mut events = master.events();
    master.start().await.unwrap();
    let before = master.worker(1).unwrap().pid;
    let other = master.worker(2).unwrap().pid;

    let cmd = json!({"cmd": "app-status", "counters": {"leak": 50}});
    master.send(1, &cmd).await.unwrap();
    let reason = next_matching(&mut events, |e| match e {
        Event::Recycling { id: 1, reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, "the recycle predicate: leak 50");
    // Its successor fills its place (instance 0), made before it was stopped.
    assert!(
        drover_tests::eventually(Duration::from_secs(20), || {
            master.workers().iter().any(|w| {
                w.instance == 0 && w.is_alive() && w.pid != before && w.status == drover::WorkerStatus::Started
            })
        })
        .await
    );
    assert!(drover_tests::eventually(Duration::from_secs(20), || !pid_is_running(before)).await);
    assert_eq!(master.worker(2).unwrap().pid, other, "the other worker is left alone");
    // The old process is gone before the master has reaped it: wait for the table to say so.
    assert!(
        drover_tests::eventually(Duration::from_secs(20), || {
            master.workers().iter().filter(|w| w.is_alive()).count() == 2
        })
        .await,
        "two workers in the end: {:?}",
        master.workers()
    );
    master.graceful_shutdown().await.unwrap();
}
