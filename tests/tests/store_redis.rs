//! The store and cache kept in Redis (PROTOCOL.md §5.6, "Redis backend") where only Redis can
//! make it so: two masters share one store, their watchers hear each other's workers, one loader
//! runs for both; a Redis that goes away is answered `unavailable` while the masters go on, and is
//! used again when it is back; the bound on operations in flight. Each test starts its own
//! `redis-server` (skipped with a loud SKIP line when it is not installed).

use drover::request::RequestErrorCode;
use drover::store::redis::MAX_REDIS_PENDING;
use drover::{Event, Events, Master, MasterConfig};
use drover_tests::{next_matching, test_config, RedisServer, StoreBackend, EVENT_DEADLINE};
use serde_json::{json, Value};

fn on(server: &RedisServer, name: &str, count: usize) -> MasterConfig {
    StoreBackend::Redis {
        url: server.url(),
        prefix: "drover:shared:".into(),
    }
    .apply(test_config(name, count))
}

/// A master's events, with the changes its workers report kept aside while waiting for answers
/// (they race with the answers: nothing read may be lost).
struct Probe {
    events: Events,
    changes: std::collections::VecDeque<(u64, Value)>,
}

fn probe(master: &Master) -> Probe {
    Probe {
        events: master.events(),
        changes: Default::default(),
    }
}

/// Has worker `id` of `master` make a store request; its answer (`{"response": ..}` or
/// `{"request_error": ..}`).
async fn store(master: &Master, p: &mut Probe, id: u64, op: &str, args: Value) -> Value {
    let name = format!("drover.store.{op}");
    master
        .send(
            id,
            &json!({"cmd": "request", "to": "master", "name": name, "args": args}),
        )
        .await
        .unwrap();
    let changes = &mut p.changes;
    next_matching(&mut p.events, |e| match e {
        Event::Message { id: from, data, .. } => {
            if let Some(change) = data.get("changed") {
                changes.push_back((*from, change.clone()));
                return None;
            }
            if *from != id {
                return None;
            }
            ["response", "request_error"]
                .iter()
                .find(|k| data.get(**k).is_some())
                .map(|k| json!({ *k: data[*k].clone() }))
        }
        _ => None,
    })
    .await
}

async fn next_change(p: &mut Probe, id: u64) -> Value {
    if let Some(at) = p.changes.iter().position(|(from, _)| *from == id) {
        return p.changes.remove(at).map(|(_, c)| c).unwrap_or_default();
    }
    next_matching(&mut p.events, |e| match e {
        Event::Message { id: from, data, .. } if *from == id => data.get("changed").cloned(),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_on_one_redis_share_the_store_and_a_watcher_in_one_hears_a_worker_of_the_other() {
    let Some(server) = RedisServer::start() else { return };
    let a = Master::new(on(&server, "a", 1)).unwrap();
    let b = Master::new(on(&server, "b", 1)).unwrap();
    let (mut ea, mut eb) = (probe(&a), probe(&b));
    a.start().await.unwrap();
    b.start().await.unwrap();

    let watch = store(&b, &mut eb, 1, "watch", json!({"path": "users"})).await;
    let watch = watch["response"]["watch"].as_u64().expect("a watch");
    let set = store(
        &a,
        &mut ea,
        1,
        "set",
        json!({"path": "users.42", "value": {"name": "ada"}}),
    )
    .await;
    assert_eq!(set, json!({"response": true}));
    store(&a, &mut ea, 1, "delete", json!({"path": "users.42.name"})).await;
    assert_eq!(
        next_change(&mut eb, 1).await,
        json!({"watch": watch, "path": "users.42", "value": {"name": "ada"}})
    );
    assert_eq!(
        next_change(&mut eb, 1).await,
        json!({"watch": watch, "path": "users.42.name", "value": null})
    );
    // Read from the other master, by a worker and by the master's user.
    let got = store(&b, &mut eb, 1, "get", json!({"path": "users"})).await;
    assert_eq!(got, json!({"response": {"42": {}}}));
    assert_eq!(
        b.store_async("keys", json!({"path": ""})).await.unwrap(),
        json!(["users"])
    );
    // Compare-and-set has one winner across masters.
    let cas = json!({"path": "lock", "expected": null, "value": "mine"});
    let wins = [
        store(&a, &mut ea, 1, "cas", cas.clone()).await,
        store(&b, &mut eb, 1, "cas", cas).await,
    ];
    assert_eq!(
        wins.iter().filter(|w| **w == json!({"response": true})).count(),
        1,
        "{wins:?}"
    );
    a.graceful_shutdown().await.unwrap();
    b.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_or_load_runs_one_loader_for_the_callers_of_two_masters() {
    let Some(server) = RedisServer::start() else { return };
    let a = Master::new(on(&server, "a", 2)).unwrap();
    let b = Master::new(on(&server, "b", 2)).unwrap();
    let (mut ea, mut eb) = (probe(&a), probe(&b));
    a.start().await.unwrap();
    b.start().await.unwrap();
    let cmd = json!({"cmd": "cache", "key": "users", "n": 20, "ms": 300});
    for m in [&a, &b] {
        for w in m.workers() {
            m.send(w.id, &cmd).await.unwrap();
        }
    }
    let mut reports = Vec::new();
    for p in [&mut ea, &mut eb] {
        for _ in 0..2 {
            reports.push(
                next_matching(&mut p.events, |e| match e {
                    Event::Message { data, .. } => data.get("cache").cloned(),
                    _ => None,
                })
                .await,
            );
        }
    }
    let loads: u64 = reports.iter().map(|r| r["loads"].as_u64().unwrap()).sum();
    assert_eq!(
        loads, 1,
        "one loader for 80 callers in 4 workers of 2 masters: {reports:?}"
    );
    let values: Vec<&Value> = reports.iter().flat_map(|r| r["values"].as_array().unwrap()).collect();
    assert_eq!(values.len(), 80, "{reports:?}");
    assert!(values.iter().all(|v| *v == values[0]), "{reports:?}");
    a.graceful_shutdown().await.unwrap();
    b.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_goes_away_is_answered_unavailable_the_master_supervises_on_and_uses_it_again() {
    let Some(mut server) = RedisServer::start() else { return };
    let master = Master::new(on(&server, "away", 2)).unwrap();
    let mut events = probe(&master);
    master.start().await.unwrap();
    let watch = store(&master, &mut events, 2, "watch", json!({"path": "k"})).await;
    let watch = watch["response"]["watch"].as_u64().expect("a watch");
    assert_eq!(
        store(&master, &mut events, 1, "set", json!({"path": "k", "value": 1})).await,
        json!({"response": true})
    );
    assert_eq!(next_change(&mut events, 2).await["value"], json!(1));

    server.stop();
    let refused = store(&master, &mut events, 1, "set", json!({"path": "k", "value": 2})).await;
    assert_eq!(refused["request_error"]["code"], json!("unavailable"), "{refused}");
    let err = master.store_async("get", json!({"path": "k"})).await.unwrap_err();
    assert_eq!(err.code, RequestErrorCode::Unavailable, "{err}");
    // The master goes on: its workers are there and answer.
    let echo = drover_tests::ask(&master, &mut events.events, 1, json!({"cmd": "echo", "data": 7})).await;
    assert_eq!(echo["echo"]["data"], json!(7), "{echo}");
    assert_eq!(master.workers().len(), 2);

    // Back (empty: it saved nothing): used again, and the watcher hears again.
    server.restart();
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    loop {
        let set = store(&master, &mut events, 1, "set", json!({"path": "k", "value": 3})).await;
        if set == json!({"response": true}) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "Redis is not used again: {set}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    loop {
        // Changes made before the subscription is back are not told: write until one is.
        let change = tokio::time::timeout(std::time::Duration::from_millis(500), next_change(&mut events, 2)).await;
        if let Ok(change) = change {
            assert_eq!(change["watch"], json!(watch));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the watcher never hears again");
        store(&master, &mut events, 1, "set", json!({"path": "k", "value": 4})).await;
    }
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_bound_of_operations_in_flight_on_redis_a_master_answers_overloaded_at_once() {
    let Some(server) = RedisServer::start() else { return };
    let master = Master::new(on(&server, "bound", 1)).unwrap();
    master
        .store_async("set", json!({"path": "k", "value": 1}))
        .await
        .unwrap();
    // Redis holds every client's commands for 3 s: what is sent piles up in flight.
    assert_eq!(server.command(&["CLIENT", "PAUSE", "3000", "ALL"]), "+OK");
    let calls = (0..MAX_REDIS_PENDING + 200).map(|_| master.store_async("get", json!({"path": "k"})));
    let results = futures_util::future::join_all(calls).await;
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code == RequestErrorCode::Overloaded))
        .count();
    let answered = results.iter().filter(|r| matches!(r, Ok(v) if *v == json!(1))).count();
    assert_eq!(overloaded, 200, "past the bound, at once");
    assert_eq!(answered, MAX_REDIS_PENDING, "within it, answered once Redis goes on");
    assert_eq!(master.store_async("get", json!({"path": "k"})).await.unwrap(), json!(1));
}
