//! The master's shared state through the C ABI (issue 18): a C master and four C workers share
//! the store and its watches, load a cache key once for 100 callers, retry after a failed load,
//! answer `drover_master_gather_statuses()` with C status functions, publish an application
//! status, and are recycled, make-before-break, by a C predicate (tests/c/store_master.c and
//! tests/c/worker.c) — natively, and under AddressSanitizer with LeakSanitizer.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use drover_core::{Event, Events, Master, MasterConfig, Timeouts};
use drover_tests::c::{program as c_program, show, Linkage};
use drover_tests::{next_matching, test_worker};
use serde_json::{json, Value};

fn run_store_master(mut cmd: Command) -> String {
    let output = cmd.output().expect("the C test program runs");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "the C test program failed:\n{}", show(&output));
    for step in [
        "ok: C workers and a C master share the store and its watches",
        "ok: get_or_load loads once for 100 callers in 4 C workers, and a failed load is retried",
        "ok: C status functions answer gather_statuses and the app status shows",
        "ok: a C recycle predicate replaces a worker make-before-break",
        "ok: free",
    ] {
        assert!(stderr.contains(step), "{step:?} missing:\n{stderr}");
    }
    stderr
}

#[test]
fn c_workers_and_a_c_master_share_the_store_the_cache_statuses_and_a_recycle_predicate() {
    let mut cmd = Command::new(c_program("store_master", Linkage::Static));
    cmd.arg(c_program("worker", Linkage::Static));
    run_store_master(cmd);
}

#[test]
fn the_c_store_cache_and_callbacks_are_clean_under_address_and_leak_sanitizer() {
    let mut cmd = Command::new(c_program("store_master", Linkage::SharedAsan));
    cmd.arg(c_program("worker", Linkage::SharedAsan));
    cmd.env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=98");
    let stderr = run_store_master(cmd);
    assert!(!stderr.contains("Sanitizer"), "{stderr}");
}

/// Messages from workers, kept by worker until asked for: two workers answer in any order.
struct Inbox {
    events: Events,
    kept: BTreeMap<u64, Vec<Value>>,
}

impl Inbox {
    /// The next message of worker `id` that has `key`.
    async fn next(&mut self, id: u64, key: &str) -> Value {
        if let Some(kept) = self.kept.get_mut(&id) {
            if let Some(i) = kept.iter().position(|m| m.get(key).is_some()) {
                return kept.remove(i);
            }
        }
        loop {
            let (from, data) = next_matching(&mut self.events, |e| match e {
                Event::Message { id, data, .. } => Some((*id, data.clone())),
                _ => None,
            })
            .await;
            if from == id && data.get(key).is_some() {
                return data;
            }
            self.kept.entry(from).or_default().push(data);
        }
    }
}

/// Worker 1 is the Rust test worker (with the status function `id`), 2 the C test worker (with
/// its status functions `c` and `null`), under a Rust master.
fn rust_and_c() -> MasterConfig {
    let script = format!(
        "case \"$DROVER_WORKER_ID\" in 1) exec {};; *) exec {};; esac",
        test_worker().display(),
        c_program("worker", Linkage::Shared).display()
    );
    MasterConfig::program("sh")
        .arg("-c")
        .arg(script)
        .count(2)
        .name("rust-and-c")
        .env("C_WORKER_STATUS", "1")
        .env("DROVER_TEST_HANDLERS", "status.id")
        .timeouts(Timeouts {
            start: Duration::from_secs(30),
            stop: Duration::from_secs(5),
            quit: Duration::from_secs(5),
            kill: Duration::from_secs(1),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_worker_and_a_rust_worker_share_the_store_one_cache_load_and_the_status_registry() {
    let master = Master::new(rust_and_c()).expect("the config is valid");
    let mut inbox = Inbox {
        events: master.events(),
        kept: BTreeMap::new(),
    };
    master.start().await.expect("both workers report STARTED");
    let send = |id: u64, cmd: Value| {
        let master = master.clone();
        async move { master.send(id, &cmd).await.expect("send") }
    };

    // The C worker watches what the Rust worker stores; the Rust master reads what the C worker stores.
    send(2, json!({"cmd": "watch", "path": "shared"})).await;
    let watch = inbox.next(2, "watching").await["watching"].clone();
    let set = json!({"path": "shared.from_rust", "value": [1, 2]});
    send(
        1,
        json!({"cmd": "request", "to": "master", "name": "drover.store.set", "args": set}),
    )
    .await;
    assert_eq!(inbox.next(1, "response").await, json!({"response": true}));
    assert_eq!(
        inbox.next(2, "changed").await,
        json!({"changed": {"watch": watch, "path": "shared.from_rust", "value": [1, 2]}})
    );
    send(
        2,
        json!({"cmd": "store-set", "path": "shared.from_c", "value": {"c": true}}),
    )
    .await;
    inbox.next(2, "stored").await;
    assert_eq!(
        master.store("get", json!({"path": "shared"})).expect("get"),
        json!({"from_c": {"c": true}, "from_rust": [1, 2]})
    );

    // 20 C callers and 20 Rust callers of one key at once: one loader, in either language.
    send(2, json!({"cmd": "cache", "key": "both", "callers": 20})).await;
    send(1, json!({"cmd": "cache", "key": "both", "n": 20, "ms": 500})).await;
    let from_c = inbox.next(2, "cache").await;
    let from_rust = inbox.next(1, "cache").await["cache"].clone();
    assert_eq!(from_c["ok"], 20, "{from_c}");
    let values = from_rust["values"].as_array().cloned().unwrap_or_default();
    assert_eq!(values.len(), 20, "{from_rust}");
    assert!(values.iter().all(|v| *v == from_c["value"]), "{from_c} {from_rust}");
    let loads = from_c["loads"].as_u64().unwrap_or(0) + from_rust["loads"].as_u64().unwrap_or(0);
    assert_eq!(loads, 1, "{from_c} {from_rust}");

    // The status registry gathers the C worker's status functions beside the Rust worker's.
    let gathered = master.gather_statuses(Duration::from_secs(20)).await;
    assert_eq!(gathered["1"], json!({"id": {"id": 1}}), "{gathered}");
    assert_eq!(gathered["2"]["c"]["id"], 2, "{gathered}");
    assert_eq!(gathered["2"]["null"]["error"]["code"], "handler_failed", "{gathered}");

    master.graceful_shutdown().await.expect("shutdown");
}
