//! The master's shared store (PROTOCOL.md §5.6) from real workers: paths, compare-and-set, time to
//! live, watches told in order, bounds; and across languages. Every test runs twice: with the
//! store embedded in the master (`embedded::`) and kept in a Redis server of its own (`redis::`,
//! skipped with a loud SKIP line when `redis-server` is not installed).

use drover::{Event, Master, MasterConfig};
use drover_tests::{next_matching, test_config, RedisServer, StoreBackend};
use serde_json::{json, Value};
use std::time::Duration;

fn config(count: usize) -> MasterConfig {
    test_config("store", count)
}

use drover_tests::StoreProbe as Probe;

fn probe(master: &Master) -> Probe {
    Probe::new(master)
}

async fn workers_share_a_tree_by_dot_paths_and_watchers_hear_every_change_in_order(backend: StoreBackend) {
    let master = Master::new(backend.apply(config(2))).unwrap();
    let mut p = probe(&master);
    master.start().await.unwrap();

    // Worker 2 watches `users`; worker 1 writes.
    let watch = p.store(&master, 2, "watch", json!({"path": "users"})).await;
    let watch = watch["response"]["watch"].as_u64().expect("a watch number");
    let set = p
        .store(&master, 1, "set", json!({"path": "users.42", "value": {"name": "ada"}}))
        .await;
    assert_eq!(set, json!({"response": true}));
    p.store(&master, 1, "set", json!({"path": "users.43.name", "value": "grace"}))
        .await;
    p.store(&master, 1, "delete", json!({"path": "users.42"})).await;
    p.store(&master, 1, "set", json!({"path": "other", "value": 1})).await;
    for (path, value) in [
        ("users.42", json!({"name": "ada"})),
        ("users.43.name", json!("grace")),
        ("users.42", Value::Null),
    ] {
        assert_eq!(
            p.next_change(2).await,
            json!({"watch": watch, "path": path, "value": value})
        );
    }

    // Reads from the other worker and from the master's user.
    let got = p.store(&master, 2, "get", json!({"path": "users.43.name"})).await;
    assert_eq!(got, json!({"response": "grace"}));
    let keys = p.store(&master, 2, "keys", json!({"path": ""})).await;
    assert_eq!(keys, json!({"response": ["other", "users"]}));
    assert_eq!(
        master.store("get", json!({"path": "users"})).unwrap(),
        json!({"43": {"name": "grace"}})
    );
    // `other` is neither below nor above `users`: not told. Changes are told in order, so the
    // next change worker 2 hears of, made after `other`, is the one under `users`.
    p.store(&master, 1, "set", json!({"path": "users.44", "value": 44}))
        .await;
    assert_eq!(
        p.next_change(2).await,
        json!({"watch": watch, "path": "users.44", "value": 44}),
        "a change outside the watch was told"
    );
    master.graceful_shutdown().await.unwrap();
}

async fn compare_and_set_has_one_winner_and_values_expire_on_time(backend: StoreBackend) {
    let master = Master::new(backend.apply(config(2))).unwrap();
    let mut p = probe(&master);
    master.start().await.unwrap();
    let mut winners = 0;
    for id in [1, 2] {
        let cas = p
            .store(
                &master,
                id,
                "cas",
                json!({"path": "lock", "expected": null, "value": id}),
            )
            .await;
        winners += usize::from(cas == json!({"response": true}));
    }
    assert_eq!(winners, 1);

    // A value with a time to live goes on time, and its watcher hears of it (no other write needed).
    let watch = p.store(&master, 2, "watch", json!({"path": "session"})).await;
    assert!(watch["response"]["watch"].is_u64(), "{watch}");
    p.store(
        &master,
        1,
        "set",
        json!({"path": "session.abc", "value": 1, "ttl_ms": 300}),
    )
    .await;
    assert_eq!(p.next_change(2).await["value"], json!(1));
    let gone = p.next_change(2).await;
    assert_eq!(
        (gone["path"].clone(), gone["value"].clone()),
        (json!("session.abc"), Value::Null)
    );
    assert_eq!(
        master.store("get", json!({"path": "session.abc"})).unwrap(),
        Value::Null
    );
    master.graceful_shutdown().await.unwrap();
}

async fn bad_paths_and_too_many_watches_are_refused_by_name(backend: StoreBackend) {
    let master = Master::new(backend.apply(config(1))).unwrap();
    let mut p = probe(&master);
    master.start().await.unwrap();
    let deep = vec!["x"; 40].join(".");
    let refused = p.store(&master, 1, "set", json!({"path": deep, "value": 1})).await;
    assert_eq!(refused["request_error"]["code"], "bad_request", "{refused}");
    assert!(refused["request_error"]["message"]
        .as_str()
        .unwrap()
        .contains("40 segments, at most 32"));
    let refused = p
        .store(&master, 1, "set", json!({"path": "a", "value": 1, "ttl_ms": -5}))
        .await;
    assert_eq!(refused["request_error"]["code"], "bad_request", "{refused}");
    for i in 0..64 {
        let ok = p.store(&master, 1, "watch", json!({"path": format!("w{i}")})).await;
        assert!(ok["response"]["watch"].is_u64(), "{ok}");
    }
    let refused = p.store(&master, 1, "watch", json!({"path": "one.more"})).await;
    assert_eq!(refused["request_error"]["code"], "overloaded", "{refused}");
    // The master's user may not take a built-in name.
    let err = master
        .handle("drover.store.get", |_, _| async { Ok(Value::Null) })
        .unwrap_err();
    assert!(err.message.contains("built-in"), "{err}");
    master.graceful_shutdown().await.unwrap();
}

async fn a_python_worker_reads_what_a_rust_worker_stored(backend: StoreBackend) {
    let script = format!(
        "if [ \"$DROVER_WORKER_ID\" = 1 ]; then exec python3 {}/../examples/python/worker.py; else exec {}; fi",
        env!("CARGO_MANIFEST_DIR"),
        drover_tests::test_worker().display()
    );
    let mut config = MasterConfig::program("sh").arg("-c").arg(script).count(2).name("mixed");
    config.timeouts.start = Duration::from_secs(20);
    let master = Master::new(backend.apply(config)).unwrap();
    let mut p = probe(&master);
    master.start().await.unwrap();
    p.store(
        &master,
        2,
        "set",
        json!({"path": "greeting.text", "value": "hello from Rust"}),
    )
    .await;
    let ask = json!({"to": "master", "name": "drover.store.get", "args": {"path": "greeting"}});
    master.send(1, &json!({ "ask": ask })).await.unwrap();
    let got = next_matching(&mut p.events, |e| match e {
        Event::Message { id: 1, data, .. } => data.get("answer").cloned(),
        _ => None,
    })
    .await;
    assert_eq!(got, json!({"text": "hello from Rust"}));
    master.graceful_shutdown().await.unwrap();
}

/// Runs `cmd` (a `cache` command) in every worker at once; each worker's report.
async fn cache_everywhere(master: &Master, p: &mut Probe, cmd: Value) -> Vec<Value> {
    let ids: Vec<u64> = master.workers().iter().map(|w| w.id).collect();
    for id in &ids {
        master.send(*id, &cmd).await.unwrap();
    }
    let mut reports = Vec::new();
    while reports.len() < ids.len() {
        let report = next_matching(&mut p.events, |e| match e {
            Event::Message { data, .. } => data.get("cache").cloned(),
            _ => None,
        })
        .await;
        reports.push(report);
    }
    reports
}

async fn get_or_load_runs_one_loader_for_a_hundred_callers_in_four_workers(backend: StoreBackend) {
    let master = Master::new(backend.apply(config(4))).unwrap();
    let mut p = probe(&master);
    master.start().await.unwrap();

    // 4 workers x 25 concurrent callers: one loader in all, every caller gets its value.
    let reports = cache_everywhere(
        &master,
        &mut p,
        json!({"cmd": "cache", "key": "users", "n": 25, "ms": 300}),
    )
    .await;
    let loads: u64 = reports.iter().map(|r| r["loads"].as_u64().unwrap()).sum();
    assert_eq!(loads, 1, "{reports:?}");
    let values: Vec<&Value> = reports.iter().flat_map(|r| r["values"].as_array().unwrap()).collect();
    assert_eq!(values.len(), 100, "{reports:?}");
    assert!(values.iter().all(|v| *v == values[0]), "one value for all: {reports:?}");

    // A failing loader fails every waiter with its message, and the next call loads again.
    let reports = cache_everywhere(
        &master,
        &mut p,
        json!({"cmd": "cache", "key": "flaky", "n": 25, "ms": 300, "fail": true}),
    )
    .await;
    let errors: Vec<&Value> = reports.iter().flat_map(|r| r["errors"].as_array().unwrap()).collect();
    assert_eq!(errors.len(), 100, "{reports:?}");
    assert!(
        errors
            .iter()
            .all(|e| e["code"] == "handler_failed" && e["message"] == "boom"),
        "{errors:?}"
    );
    let loads_before: u64 = reports.iter().map(|r| r["loads"].as_u64().unwrap()).sum();
    assert_eq!(loads_before, 2, "one load of users, one of flaky: {reports:?}");
    let reports = cache_everywhere(
        &master,
        &mut p,
        json!({"cmd": "cache", "key": "flaky", "n": 1, "ms": 10}),
    )
    .await;
    let loads_after: u64 = reports.iter().map(|r| r["loads"].as_u64().unwrap()).sum();
    assert_eq!(loads_after, 3, "the next call after a failure loads again: {reports:?}");
    master.graceful_shutdown().await.unwrap();
}

/// Each test, once per backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::StoreBackend::Embedded).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(server) = super::RedisServer::start() else { return };
                    let backend = super::StoreBackend::Redis {
                        url: server.url(),
                        prefix: "drover:store-test:".into(),
                    };
                    super::$name(backend).await
                }
            )*
        }
    };
}

on_both_backends!(
    workers_share_a_tree_by_dot_paths_and_watchers_hear_every_change_in_order,
    compare_and_set_has_one_winner_and_values_expire_on_time,
    bad_paths_and_too_many_watches_are_refused_by_name,
    a_python_worker_reads_what_a_rust_worker_stored,
    get_or_load_runs_one_loader_for_a_hundred_callers_in_four_workers
);
