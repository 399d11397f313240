//! A drover master in Rust, visibly: 4 HTTP workers (the `worker` example) behind one port the
//! master holds; it shows which worker answers, kills one with SIGKILL and shows the exit reason and
//! the automatic restart, reloads them all make-before-break, and shuts down gracefully. Exits by
//! itself.
//!
//! ```text
//! cargo build --workspace --examples && target/debug/examples/master
//! ```

use drover::{Event, Master, MasterConfig, RestartPolicy, WorkerStatus};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let worker = std::env::current_exe()?.with_file_name("worker");
    let address = std::env::var("DROVER_DEMO_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let config = MasterConfig::program(worker)
        .count(4)
        .name("web")
        .listen(address.parse()?)
        .restart(RestartPolicy::OnFailure);
    let master = Master::new(config)?;
    // Print events as they happen, on the task that emits them.
    let _printer = master.on_event(|event| match event {
        Event::Status { id, pid, from, to } if from != to => println!("  worker {id} (pid {pid}): {from} -> {to}"),
        Event::Exit(exit) => println!("  {exit}"),
        Event::Restarting { id, delay, .. } => println!("  restarting worker {id} in {delay:?}"),
        Event::MasterStatus { to, .. } => println!("master: {to}"),
        _ => {}
    });

    master.start().await?;
    let url = format!("http://{}/", master.listeners()[0].1);
    println!("\nlistening on {url} (one socket, held by the master, shared by every worker)");
    print_table(&master);
    ask(&url, 8).await?;

    let victim = master.workers()[1].clone();
    println!("\nkill -9 {} (worker {}):", victim.pid, victim.id);
    let mut events = master.events();
    // SAFETY: signalling our own worker.
    unsafe { libc::kill(victim.pid as i32, libc::SIGKILL) };
    // The restart policy brings it back under the same id; wait for that, not for a fixed time.
    while let Some(event) = events.recv().await {
        if matches!(event, Event::Status { id, to: WorkerStatus::Started, .. } if id == victim.id) {
            break;
        }
    }
    print_table(&master);

    println!("\ngraceful reload (new workers STARTED first, then the old ones drain and go):");
    master.graceful_reload(None).await?;
    print_table(&master);
    ask(&url, 8).await?;

    println!("\ngraceful shutdown:");
    master.graceful_shutdown().await?;
    Ok(())
}

/// Sends `n` requests and prints which pids answered.
async fn ask(url: &str, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut pids = Vec::new();
    for _ in 0..n {
        // A fresh connection each time (Connection: close), so the kernel spreads them.
        let request = hyper::Request::get(url)
            .header("connection", "close")
            .body(Empty::new())?;
        let response = tokio::time::timeout(Duration::from_secs(5), client.request(request)).await??;
        pids.push(String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()).into_owned());
    }
    println!("  {n} requests answered by pids {}", pids.join(" "));
    Ok(())
}

fn print_table(master: &Master) {
    println!("{:>4} {:>8} {:<10} {:>8}", "id", "pid", "status", "restarts");
    for w in master.workers() {
        println!("{:>4} {:>8} {:<10} {:>8}", w.id, w.pid, w.status.name(), w.restarts);
    }
}
