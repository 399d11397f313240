//! Routing and shared-state latency (issue 18): from a Rust worker and from a Node worker, a
//! shared-store get (worker → master → worker) and a request to another worker's handler
//! (worker → master → worker → master → worker), against a Redis GET from the same worker (the peer
//! one would otherwise use for shared state) and, for Node, clusterfy-style storage over Node's IPC
//! (`bench/node/ipc-storage.js`), in the same run; then the Rust worker's store get with the store
//! kept in that Redis (the Redis backend: worker → master → Redis → master → worker).
//!
//! ```sh
//! cargo build --workspace --release
//! env -u NODE_EXTRA_CA_CERTS DROVER_NODE_ADDON=$PWD/target/release/libdrover_node.so \
//!     target/release/drover-bench-routing [N]     # N samples each (default 20000)
//! ```
//!
//! Redis: `redis-server` from PATH is started on a free port for the run (skipped, and said so,
//! when it is not installed: `apt-get install redis-server`). Node: `node` from PATH, with the
//! addon `DROVER_NODE_ADDON` names (else the package's own `bindings-node/drover.node`); the Node
//! rows are skipped, and said so, without `node`.

use drover::{Event, Master, MasterConfig};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `bench/node/`, where the Node workers and the IPC peer are.
fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// Runs one master of two workers (`config`), has worker 1 time the operations, and gives its report.
async fn worker_report(config: MasterConfig, n: u64, redis: Option<String>) -> Result<Value, String> {
    let master = Master::new(config.count(2).name("bench")).map_err(|e| e.to_string())?;
    let mut events = master.events();
    master.start().await.map_err(|e| e.to_string())?;
    master
        .store_async("set", json!({"path": "bench.key", "value": "x".repeat(64)}))
        .await
        .map_err(|e| e.to_string())?;
    master
        .send(1, &json!({"cmd": "routing", "n": n, "redis": redis}))
        .await
        .map_err(|e| e.to_string())?;
    let report = loop {
        match tokio::time::timeout(Duration::from_secs(600), events.recv()).await {
            Ok(Some(Event::Message { data, .. })) if data.get("routing").is_some() => break data["routing"].clone(),
            Ok(Some(_)) => {}
            _ => return Err("no report from the worker".to_string()),
        }
    };
    master.graceful_shutdown().await.map_err(|e| e.to_string())?;
    Ok(report)
}

/// clusterfy-style storage over Node's IPC (`bench/node/ipc-storage.js`): its p50/p99 line.
fn ipc_storage(n: u64) -> Result<Value, String> {
    let output = Command::new("node")
        .arg(node_dir().join("ipc-storage.js"))
        .arg(n.to_string())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("node: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line: Value = serde_json::from_str(text.trim()).map_err(|e| format!("ipc-storage.js printed {text:?}: {e}"))?;
    Ok(line["ipc_storage_get"].clone())
}

fn print_rows(report: &Value, rows: &[(&str, &str)]) {
    println!("| operation | p50 µs | p99 µs |\n| --- | --- | --- |");
    for (name, label) in rows {
        if let Some(r) = report.get(*name) {
            match r.get("error") {
                Some(e) => println!("| {label} | error: {e} | |"),
                None => println!("| {label} | {} | {} |", r["p50_us"], r["p99_us"]),
            }
        }
    }
}

fn bench_worker() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name("drover-bench-worker")
}

/// Starts `redis-server` on a free port with `bench.key` set; its address, or why not.
fn start_redis() -> Result<(std::process::Child, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e} (apt-get install redis-server)"))?;
    let address = format!("127.0.0.1:{port}");
    for _ in 0..200 {
        if let Ok(mut s) = std::net::TcpStream::connect(&address) {
            use std::io::{Read, Write};
            let value = "x".repeat(64);
            let set = format!("*3\r\n$3\r\nSET\r\n$9\r\nbench.key\r\n${}\r\n{value}\r\n", value.len());
            let mut ok = [0u8; 5];
            if s.write_all(set.as_bytes()).is_ok() && s.read_exact(&mut ok).is_ok() {
                return Ok((child, address));
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err("redis-server did not answer".into())
}

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let redis = start_redis();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drover-bench-routing: {e}");
            std::process::exit(1);
        }
    };
    let redis_address = redis.as_ref().ok().map(|(_, a)| a.clone());
    let node_redis = redis_address.clone();
    let result = runtime.block_on(async move {
        let rust = worker_report(MasterConfig::program(bench_worker()), n, node_redis.clone()).await?;
        let node = MasterConfig::program("node").arg(node_dir().join("routing-worker.js"));
        let node = worker_report(node, n, node_redis).await.map(|mut report| {
            report["ipc_storage_get"] = ipc_storage(n).unwrap_or_else(|e| json!({ "error": e }));
            report
        });
        Ok::<(Value, Result<Value, String>), String>((rust, node))
    });
    // The same get with the store kept in Redis.
    let on_redis = redis_address.as_ref().map(|address| {
        let mut config = MasterConfig::program(bench_worker());
        config.store.redis = Some(drover::store::redis::RedisConfig {
            url: format!("redis://{address}/0"),
            prefix: "drover:bench:".into(),
        });
        runtime.block_on(worker_report(config, n, None))
    });
    if let Ok((mut child, _)) = redis {
        let _ = child.kill();
        let _ = child.wait();
    } else if let Err(why) = &redis {
        println!("(Redis skipped: {why})");
    }
    match result {
        Ok((rust, node)) => {
            println!("{n} samples each, sequential, from a Rust worker (p50 / p99 µs):\n");
            print_rows(
                &rust,
                &[
                    ("store_get", "drover shared-store get (worker → master → worker)"),
                    (
                        "request_worker_to_worker",
                        "drover request to another worker's handler (round trip)",
                    ),
                    ("redis_get", "Redis GET over TCP (same worker, same run)"),
                ],
            );
            match node {
                Ok(node) => {
                    println!("\n{n} samples each, sequential, from a Node worker (p50 / p99 µs):\n");
                    print_rows(
                        &node,
                        &[
                            (
                                "store_get",
                                "drover shared-store get, `mb.store.get` (worker → master → worker)",
                            ),
                            (
                                "request_worker_to_worker",
                                "drover request, Node worker → Node worker's handler (round trip)",
                            ),
                            ("redis_get", "Redis GET over TCP (same Node worker, same run)"),
                            (
                                "ipc_storage_get",
                                "clusterfy-style storage get over Node IPC (`process.send`, same run)",
                            ),
                        ],
                    );
                }
                Err(e) => println!("\n(Node workers skipped: {e})"),
            }
            match on_redis {
                Some(Ok(report)) => {
                    let r = &report["store_get"];
                    println!(
                        "| drover shared-store get, Redis backend (worker → master → Redis → master → worker) | {} | {} |",
                        r["p50_us"], r["p99_us"]
                    );
                }
                Some(Err(e)) => eprintln!("drover-bench-routing: the Redis backend's run: {e}"),
                None => {}
            }
        }
        Err(e) => {
            eprintln!("drover-bench-routing: {e}");
            std::process::exit(1);
        }
    }
}
