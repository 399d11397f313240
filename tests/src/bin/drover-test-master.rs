//! A master process for tests that must kill the master itself: starts `argv[1]` test workers,
//! has each spawn a grandchild, prints one JSON line `{"workers":[..],"grandchildren":[..]}`, and
//! then waits to be killed. With `restart-and-exit` as `argv[2]` it instead restarts its first
//! worker (whose grandchild is then killed) and exits at once, leaving cleanup to its guardian.

use drover::{Event, Master, MasterConfig};
use serde_json::json;

#[tokio::main]
async fn main() {
    let count: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(2);
    let worker = std::env::current_exe()
        .expect("own path")
        .with_file_name("drover-test-worker");
    let master = Master::new(MasterConfig::program(worker).count(count)).expect("valid config");
    let mut events = master.events();
    master.start().await.expect("workers start");
    master
        .broadcast(&json!({"cmd": "spawn-grandchild"}))
        .await
        .expect("broadcast");
    let mut grandchildren = Vec::new();
    while grandchildren.len() < count {
        if let Some(Event::Message { data, .. }) = events.recv().await {
            if let Some(pid) = data.get("grandchild").and_then(|v| v.as_u64()) {
                grandchildren.push(pid);
            }
        }
    }
    let workers: Vec<u32> = master.workers().iter().map(|w| w.pid).collect();
    println!("{}", json!({ "workers": workers, "grandchildren": grandchildren }));
    if std::env::args().nth(2).as_deref() == Some("restart-and-exit") {
        let first = master.workers()[0].id;
        master.restart_worker(first).await.expect("the restart");
        std::process::exit(0);
    }
    std::future::pending::<()>().await;
}
