//! The store and cache kept in Redis (PROTOCOL.md §5.6, "Redis backend") where only Redis can
//! make it so: two masters share one store, their watchers hear each other's workers, one loader
//! runs for both; a Redis that goes away is answered `unavailable` while the masters go on, and is
//! used again when it is back; the bound on operations in flight. Each test starts its own
//! `redis-server` (skipped with a loud SKIP line when it is not installed).

use drover::request::RequestErrorCode;
use drover::store::redis::MAX_REDIS_PENDING;
use drover::{Event, Master, MasterConfig};
use drover_tests::{next_matching, test_config, RedisServer, StoreBackend, EVENT_DEADLINE};
use serde_json::{json, Value};

fn on(server: &RedisServer, name: &str, count: usize) -> MasterConfig {
    StoreBackend::Redis {
        url: server.url(),
        prefix: "drover:shared:".into(),
    }
    .apply(test_config(name, count))
}

use drover_tests::StoreProbe as Probe;

fn probe(master: &Master) -> Probe {
    Probe::new(master)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_on_one_redis_share_the_store_and_a_watcher_in_one_hears_a_worker_of_the_other() {
    let Some(server) = RedisServer::start() else { return };
    let a = Master::new(on(&server, "a", 1)).unwrap();
    let b = Master::new(on(&server, "b", 1)).unwrap();
    let (mut ea, mut eb) = (probe(&a), probe(&b));
    a.start().await.unwrap();
    b.start().await.unwrap();

    let watch = eb.store(&b, 1, "watch", json!({"path": "users"})).await;
    let watch = watch["response"]["watch"].as_u64().expect("a watch");
    let set = ea
        .store(&a, 1, "set", json!({"path": "users.42", "value": {"name": "ada"}}))
        .await;
    assert_eq!(set, json!({"response": true}));
    ea.store(&a, 1, "delete", json!({"path": "users.42.name"})).await;
    assert_eq!(
        eb.next_change(1).await,
        json!({"watch": watch, "path": "users.42", "value": {"name": "ada"}})
    );
    assert_eq!(
        eb.next_change(1).await,
        json!({"watch": watch, "path": "users.42.name", "value": null})
    );
    // Read from the other master, by a worker and by the master's user.
    let got = eb.store(&b, 1, "get", json!({"path": "users"})).await;
    assert_eq!(got, json!({"response": {"42": {}}}));
    assert_eq!(
        b.store_async("keys", json!({"path": ""})).await.unwrap(),
        json!(["users"])
    );
    // Compare-and-set has one winner across masters.
    let cas = json!({"path": "lock", "expected": null, "value": "mine"});
    let wins = [
        ea.store(&a, 1, "cas", cas.clone()).await,
        eb.store(&b, 1, "cas", cas).await,
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
    let watch = events.store(&master, 2, "watch", json!({"path": "k"})).await;
    let watch = watch["response"]["watch"].as_u64().expect("a watch");
    assert_eq!(
        events.store(&master, 1, "set", json!({"path": "k", "value": 1})).await,
        json!({"response": true})
    );
    assert_eq!(events.next_change(2).await["value"], json!(1));

    server.stop();
    let refused = events.store(&master, 1, "set", json!({"path": "k", "value": 2})).await;
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
        let set = events.store(&master, 1, "set", json!({"path": "k", "value": 3})).await;
        if set == json!({"response": true}) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "Redis is not used again: {set}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    loop {
        // Changes made before the subscription is back are not told: write until one is.
        let change = tokio::time::timeout(std::time::Duration::from_millis(500), events.next_change(2)).await;
        if let Ok(change) = change {
            assert_eq!(change["watch"], json!(watch));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the watcher never hears again");
        events.store(&master, 1, "set", json!({"path": "k", "value": 4})).await;
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
