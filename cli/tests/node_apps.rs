//! Unmodified Node apps under the `drover` command (issue 16): an Express app that only calls
//! `app.listen(PORT)` runs as 4 workers on one port, is counted ready when it listens (or on
//! `process.send('ready')` with `--ready node-ipc`), keeps its own NODE_OPTIONS, gets its
//! instance index, and is reloaded under keep-alive load without failing a request.
//!
//! Needs `node` on PATH, the addon at `bindings-node/drover.node` and express in
//! `bindings-node/node_modules` (`npm ci && npm run build` in bindings-node/, as scripts/test.sh
//! does first).

mod common;

use common::*;
use drover_tests::http_load::Load;
use drover_tests::pid_is_running;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("bindings-node")
}

/// The Express app, after checking that what it needs was installed and built.
fn express_app() -> String {
    let package = package_dir();
    for (what, path) in [
        ("the addon (npm run build)", package.join("drover.node")),
        ("express (npm ci)", package.join("node_modules").join("express")),
    ] {
        assert!(
            path.exists(),
            "{} is missing: run `npm ci && npm run build` in bindings-node/ first ({what})",
            path.display()
        );
    }
    package
        .join("test-support")
        .join("express-app.js")
        .display()
        .to_string()
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// Node reads NODE_EXTRA_CA_CERTS at every start (about 90 ms here): not for these workers.
fn no_extra_certs(cmd: &mut std::process::Command) {
    cmd.env_remove("NODE_EXTRA_CA_CERTS");
}

fn pid_of(body: &str) -> Option<u32> {
    body.trim().parse().ok()
}

/// GET `path` on a new connection; the body.
fn get(port: u16, path: &str) -> String {
    let (code, body) = http_get(&format!("127.0.0.1:{port}"), path);
    assert_eq!(code, 200, "{body}");
    body
}

/// `drover reload` while 8 keep-alive clients hammer `port`: what they got.
async fn reload_under_keep_alive_load(drover: &Drover, port: u16) -> drover_tests::http_load::Tally {
    let load = Load::start(&format!("127.0.0.1:{port}"), 8, pid_of);
    load.progress(300).await;
    let socket = drover.socket.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(drover_bin())
            .args(["reload", "--socket"])
            .arg(&socket)
            .output()
            .expect("drover reload runs")
    })
    .await
    .expect("the reload command");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    load.progress(300).await;
    load.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmodified_express_app_shares_its_port_and_reloads_without_failing_a_request() {
    let app = express_app();
    let port = free_port();
    let port_text = port.to_string();
    // The app's own NODE_OPTIONS: kept, with drover's preload after it.
    let drover = Drover::start_with(
        &["-n", "4", "--name", "web", "--", "node", &app],
        &[("PORT", &port_text), ("NODE_OPTIONS", "--max-old-space-size=96")],
        no_extra_certs,
    );
    // Ready when listening: start() resolved for all 4, each counted when its server listened.
    drover.wait_ready();
    drover.wait_line("starting: 4/4 STARTED");
    let pids = drover.worker_pids("web");
    assert_eq!(pids.len(), 4);

    // Each worker: its instance index, its own option in force, and no preload left in the
    // environment it passes to the processes it starts.
    let mut instances = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let info: Value = serde_json::from_str(&get(port, "/env")).expect("JSON from the app");
        assert_eq!(info["nodeOptions"], "--max-old-space-size=96", "{info}");
        assert_eq!(info["instance"], info["droverInstance"], "{info}");
        let limit = info["maxOldSpace"].as_u64().unwrap();
        assert!(
            limit < 200 * 1024 * 1024,
            "the app's own --max-old-space-size=96 applies: {info}"
        );
        instances.insert(info["instance"].as_str().unwrap().to_string());
        seen.insert(info["pid"].as_u64().unwrap() as u32);
        if seen.len() >= 2 && instances.len() >= 2 {
            break;
        }
    }
    assert!(seen.len() >= 2, "requests reach several workers: {seen:?}");
    assert!(seen.iter().all(|p| pids.contains(p)), "{seen:?} not in {pids:?}");
    let status = drover.status();
    let mut by_instance: Vec<u64> = status["groups"][0]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["instance"].as_u64().unwrap())
        .collect();
    by_instance.sort();
    assert_eq!(by_instance, [0, 1, 2, 3], "{status}");

    // A reload under keep-alive load: no request fails, and the new generation serves.
    let tally = reload_under_keep_alive_load(&drover, port).await;
    eprintln!(
        "{} requests answered by {} pids through the reload: {:?}",
        tally.ok,
        tally.by_pid.len(),
        tally.by_pid
    );
    tally.assert_nothing_lost();
    let after = drover.worker_pids("web");
    assert_eq!(after.len(), 4);
    assert!(
        after.iter().all(|p| !pids.contains(p)),
        "a new generation: {pids:?} -> {after:?}"
    );
    assert!(
        tally.by_pid.keys().any(|p| after.contains(p)),
        "the new generation served: {:?}",
        tally.by_pid
    );
    // The old generation drained and exited as asked, not by a signal.
    for pid in &pids {
        drover.wait_line(&format!(
            "pid {pid}] drover: exited: exited with code 0 in status SHUTTED_DOWN, as asked"
        ));
    }

    let mut drover = drover;
    drover.ctl_ok(&["stop"]);
    assert!(drover.wait_exit(Duration::from_secs(20)).success());
    assert!(after.iter().all(|p| !pid_is_running(*p)));
}

#[test]
fn a_pm2_app_is_ready_on_process_send_ready_and_shares_its_port() {
    let app = express_app();
    let port = free_port();
    let port_text = port.to_string();
    let drover = Drover::start_with(
        &["-n", "2", "--name", "pm2", "--ready", "node-ipc", "--", "node", &app],
        &[("PORT", &port_text), ("APP_READY_IPC", "1")],
        no_extra_certs,
    );
    drover.wait_ready();
    let pids = drover.worker_pids("pm2");
    assert_eq!(pids.len(), 2);
    let mut seen = std::collections::BTreeSet::new();
    assert!(
        eventually(|| {
            seen.insert(pid_of(&get(port, "/")).unwrap_or(0));
            seen.len() >= 2
        }),
        "both workers answer on the one port: {seen:?}"
    );
    let mut drover = drover;
    drover.ctl_ok(&["stop"]);
    assert!(drover.wait_exit(Duration::from_secs(20)).success());
    for pid in pids {
        drover.wait_line(&format!(
            "pid {pid}] drover: exited: exited with code 0 in status SHUTTED_DOWN, as asked"
        ));
    }
}

#[test]
fn without_the_preload_a_second_worker_cannot_listen_and_the_run_says_why() {
    let app = express_app();
    let port = free_port();
    let port_text = port.to_string();
    // `--node-preload off`: the app is on its own: the second listen fails (EADDRINUSE), the
    // start fails, and drover exits non-zero naming the worker.
    let mut drover = Drover::start_with(
        &["-n", "2", "--name", "bare", "--node-preload", "off", "--", "node", &app],
        &[("PORT", &port_text)],
        no_extra_certs,
    );
    let status = drover.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{}", drover.transcript());
    drover.wait_line("EADDRINUSE");
    drover.wait_stderr("group bare did not start");

    // A preload path that is not a file is refused before anything starts.
    let out = std::process::Command::new(drover_bin())
        .args(["run", "--node-preload", "/nonexistent/preload.js", "--", "node", &app])
        .output()
        .expect("drover runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--node-preload / nodePreload: \"/nonexistent/preload.js\" is not a file"));
}

/// How many sockets listen on `port` (one per `reuseport` slot).
fn listening_sockets(port: u16) -> usize {
    drover_tests::listening_sockets(port).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmodified_express_app_gets_a_socket_per_worker_with_balance_reuseport_and_reloads_without_failing_a_request(
) {
    let app = express_app();
    let port = free_port();
    let port_text = port.to_string();
    let drover = Drover::start_with(
        &["-n", "4", "--name", "web", "--balance", "reuseport", "--", "node", &app],
        &[("PORT", &port_text)],
        no_extra_certs,
    );
    drover.wait_ready();
    let pids = drover.worker_pids("web");
    assert_eq!(pids.len(), 4);
    assert_eq!(listening_sockets(port), 4, "one SO_REUSEPORT socket per worker");
    let mut seen = std::collections::BTreeSet::new();
    assert!(
        eventually(|| {
            seen.insert(pid_of(&get(port, "/")).unwrap_or(0));
            seen.len() == 4
        }),
        "every worker answers on its own slot: {seen:?}"
    );

    // A reload under keep-alive load: every worker hands its slot to its successor, none lost.
    let mut drover = drover;
    let tally = reload_under_keep_alive_load(&drover, port).await;
    tally.assert_nothing_lost();
    let after = drover.worker_pids("web");
    assert!(after.iter().all(|p| !pids.contains(p)), "{pids:?} -> {after:?}");
    assert_eq!(listening_sockets(port), 4, "the same four slots, no more");
    drover.ctl_ok(&["stop"]);
    assert!(drover.wait_exit(Duration::from_secs(20)).success());
    assert_eq!(listening_sockets(port), 0);
}
