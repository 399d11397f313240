//! A drover worker in Rust: a tiny HTTP server on the port in `PORT` (+ its worker id), which
//! reports STARTED once it listens, stops accepting on `stop`, and leaves on `quit`.
//!
//! Run it under a master (see `master.rs`); on its own it says it is not a drover worker.

use drover::{BusEvent, MessageBus};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut bus = match MessageBus::connect().await {
        Ok(bus) => bus,
        Err(e) => {
            eprintln!("worker: {e}");
            std::process::exit(2);
        }
    };
    let base: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
    let port = if base == 0 { 0 } else { base + bus.meta().id as u16 };
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("worker {}: cannot listen on port {port}: {e}", bus.meta().id);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("a bound listener has an address");
    let name = bus.meta().name.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                break;
            };
            let name = name.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let body = format!("hello from {name} (pid {})\n", std::process::id());
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(format!("{head}{body}").as_bytes()).await;
            });
        }
    });
    let _ = bus.send_message(&json!({ "listening": addr.to_string() })).await;
    bus.send_started().await.expect("the master is there");
    while let Some(event) = bus.recv().await {
        match event {
            BusEvent::Stop => {
                server.abort(); // stop accepting; in-flight requests finish on their own tasks
                let _ = bus.send_stopped().await;
            }
            BusEvent::Quit => {
                let _ = bus.send_shutted_down().await;
                break;
            }
            BusEvent::Message(data) => {
                let _ = bus.send_message(&json!({ "echo": data })).await;
            }
            BusEvent::Closed(_) => break,
        }
    }
}
