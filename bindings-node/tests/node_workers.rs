//! A Rust master supervising Node workers written with the `drover` npm package: one protocol.
//!
//! Needs the addon at `bindings-node/drover.node` (`npm run build` in bindings-node/) and `node` on PATH.

use drover::{Event, ExitReason, Master, MasterConfig, WorkerStatus};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Node worker script, after checking the addon it loads was built.
fn node_worker() -> PathBuf {
    let addon = package_dir().join("drover.node");
    assert!(
        addon.is_file(),
        "{} is missing: run `npm run build` in bindings-node/ first (it builds the addon and copies it there)",
        addon.display()
    );
    package_dir().join("test-support").join("worker.js")
}

/// Waits for the first event that `pick` accepts.
async fn next<T>(events: &mut drover::Events, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = events.recv().await.expect("the master's event stream ended");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    })
    .await
    .expect("no matching event before the deadline")
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

async fn wait_gone(pids: &[u32]) {
    tokio::time::timeout(DEADLINE, async {
        while pids.iter().any(|&p| alive(p)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("worker processes still exist after the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_master_supervises_node_workers() {
    let master = Master::new(MasterConfig::program("node").arg(node_worker()).count(2)).expect("valid config");
    let mut events = master.events();
    master.start().await.expect("the Node workers report STARTED");
    let workers = master.workers();
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|w| w.status == WorkerStatus::Started));

    // A message round trip through the Node MessageBus.
    master.send(workers[0].id, &json!({"cmd": "pid"})).await.expect("send");
    let pid = next(&mut events, |e| match e {
        Event::Message { id, data, .. } if *id == workers[0].id => data.get("pid").and_then(|p| p.as_u64()),
        _ => None,
    })
    .await;
    assert_eq!(pid, u64::from(workers[0].pid));

    // kill -9 of a Node worker: ExternalSignal SIGKILL.
    // SAFETY: sending SIGKILL to our own child.
    unsafe { libc::kill(workers[1].pid as i32, libc::SIGKILL) };
    let reason = next(&mut events, |e| match e {
        Event::Exit(exit) if exit.id == workers[1].id => Some(exit.reason),
        _ => None,
    })
    .await;
    assert_eq!(reason.signal_name().as_deref(), Some("SIGKILL"));

    // A graceful shutdown: the Node worker closes its server and its bus and exits by itself (0).
    master.graceful_shutdown().await.expect("shutdown");
    let exit = next(&mut events, |e| match e {
        Event::Exit(exit) if exit.id == workers[0].id => Some(exit.clone()),
        _ => None,
    })
    .await;
    assert_eq!(exit.reason, ExitReason::NormalExit { code: 0 });
    assert!(exit.requested);
    assert_eq!(exit.last_status, WorkerStatus::ShuttedDown);
    wait_gone(&[workers[0].pid, workers[1].pid]).await;
}
