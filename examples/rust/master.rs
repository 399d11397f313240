//! A drover master in Rust, visibly: starts 4 HTTP workers (the `worker` example), shows their
//! statuses, kills one with SIGKILL and shows the exit reason and the automatic restart, reloads
//! them all with zero downtime, and shuts down gracefully. Exits by itself.
//!
//! ```text
//! cargo build --workspace --examples && target/debug/examples/master
//! ```

use drover::{Event, Master, MasterConfig, RestartPolicy};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let worker = std::env::current_exe()?.with_file_name("worker");
    let config = MasterConfig::program(worker)
        .count(4)
        .name("web")
        .env("PORT", "18080")
        .restart(RestartPolicy::OnFailure);
    let master = Master::new(config)?;
    let mut events = master.events();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Status { id, pid, from, to } if from != to => {
                    println!("  worker {id} (pid {pid}): {from} -> {to}")
                }
                Event::Exit(exit) => println!("  {exit}"),
                Event::Message { id, data, .. } => println!("  worker {id} says {data}"),
                Event::Restarting { id, delay, .. } => println!("  restarting worker {id} in {delay:?}"),
                Event::MasterStatus { to, .. } => println!("master: {to}"),
                _ => {}
            }
        }
    });

    master.start().await?;
    print_table(&master);

    let victim = master.workers()[1].clone();
    println!("\nkill -9 {} (worker {}):", victim.pid, victim.id);
    let mut watch = master.events();
    // SAFETY: signalling our own worker.
    unsafe { libc::kill(victim.pid as i32, libc::SIGKILL) };
    // The restart policy brings it back under the same id; wait for that, not for a fixed time.
    while let Some(event) = watch.recv().await {
        if let Event::Status {
            id,
            to: drover::WorkerStatus::Started,
            ..
        } = event
        {
            if id == victim.id {
                break;
            }
        }
    }
    print_table(&master);

    println!("\ngraceful reload:");
    master.graceful_reload(None).await?;
    print_table(&master);

    println!("\ngraceful shutdown:");
    master.graceful_shutdown().await?;
    tokio::time::sleep(Duration::from_millis(50)).await; // let the event printer catch up
    Ok(())
}

fn print_table(master: &Master) {
    println!("{:>4} {:>8} {:<10} {:>8}", "id", "pid", "status", "restarts");
    for w in master.workers() {
        println!("{:>4} {:>8} {:<10} {:>8}", w.id, w.pid, w.status.name(), w.restarts);
    }
}
