//! The worker drover's tests supervise. Well-behaved by default; `DROVER_TEST_MODE` and messages
//! make it misbehave in each way the tests need.
//!
//! Modes (`DROVER_TEST_MODE`): `normal`, `exit-before-start:<code>`, `never-start`,
//! `ignore-stop` (ignores stop, quit and SIGTERM), `no-hello` (writes a status without hello),
//! `crash-after-start:<code>`, `start-after-ms:<ms>`.
//!
//! Messages it obeys (`{"cmd": ...}`): `echo` (replies `{"echo": data}`), `exit` with `code`,
//! `malformed`, `oversized`, `illegal`, `spawn-grandchild` (replies with the grandchild's pid),
//! `block` (blocks its runtime for `ms`), `burst` with `n` (sends n messages), `pid`.

use drover::{BusEvent, MessageBus, WorkerStatus};
use serde_json::{json, Value};
use std::io::Write;
use std::os::fd::FromRawFd;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mode = std::env::var("DROVER_TEST_MODE").unwrap_or_else(|_| "normal".into());
    let (mode, arg) = match mode.split_once(':') {
        Some((m, a)) => (m.to_string(), a.parse::<i64>().unwrap_or(0)),
        None => (mode, 0),
    };
    if mode == "no-hello" {
        let fd: i32 = std::env::var("DROVER_IPC_FD")
            .expect("DROVER_IPC_FD")
            .parse()
            .expect("fd number");
        // SAFETY: the fd is the inherited channel, used only here.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let _ = f.write_all(b"{\"type\":\"status\",\"status\":3}\n");
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    if mode == "ignore-stop" {
        // SAFETY: ignoring SIGTERM is what this mode is for.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    let mut bus = match MessageBus::connect().await {
        Ok(bus) => bus,
        Err(e) => {
            eprintln!("drover-test-worker: {e}");
            std::process::exit(70);
        }
    };
    match mode.as_str() {
        "exit-before-start" => std::process::exit(arg as i32),
        "never-start" => {}
        "start-after-ms" => {
            tokio::time::sleep(Duration::from_millis(arg as u64)).await;
            bus.send_started().await.expect("send started");
        }
        _ => bus.send_started().await.expect("send started"),
    }
    if mode == "crash-after-start" {
        std::process::exit(arg as i32);
    }
    let ignore = mode == "ignore-stop";
    while let Some(event) = bus.recv().await {
        match event {
            BusEvent::Stop if !ignore => {
                let _ = bus.send_stopped().await;
            }
            BusEvent::Quit if !ignore => {
                let _ = bus.send_shutted_down().await;
                std::process::exit(0);
            }
            BusEvent::Stop | BusEvent::Quit => {}
            BusEvent::Message(msg) => handle(&bus, msg).await,
            BusEvent::Closed(_) => std::process::exit(0),
        }
    }
}

async fn handle(bus: &MessageBus, msg: Value) {
    let cmd = msg.get("cmd").and_then(Value::as_str).unwrap_or("echo");
    match cmd {
        "exit" => std::process::exit(msg.get("code").and_then(Value::as_i64).unwrap_or(0) as i32),
        "malformed" => raw(b"{this is not json\n"),
        "oversized" => {
            let mut big = vec![b'x'; bus.meta().max_frame_bytes + 10];
            big.push(b'\n');
            raw(&big);
        }
        "illegal" => {
            let _ = bus.send_status(WorkerStatus::Starting).await;
        }
        "spawn-grandchild" => {
            let child = std::process::Command::new("sleep")
                .arg("1000")
                .spawn()
                .expect("spawn sleep");
            let _ = bus.send_message(&json!({ "grandchild": child.id() })).await;
            std::mem::forget(child);
        }
        "block" => std::thread::sleep(Duration::from_millis(
            msg.get("ms").and_then(Value::as_u64).unwrap_or(1000),
        )),
        "burst" => {
            let n = msg.get("n").and_then(Value::as_u64).unwrap_or(10);
            let sender = bus.sender();
            for i in 0..n {
                let _ = sender.send_message(&json!({ "seq": i })).await;
            }
        }
        "pid" => {
            let _ = bus.send_message(&json!({ "pid": std::process::id() })).await;
        }
        _ => {
            let _ = bus.send_message(&json!({ "echo": msg })).await;
        }
    }
}

/// Writes raw bytes on the channel, bypassing the MessageBus (to break the protocol on purpose).
/// The fd is non-blocking (the bus shares it), so wait for room instead of writing half a frame.
fn raw(mut bytes: &[u8]) {
    let fd: i32 = std::env::var("DROVER_IPC_FD")
        .expect("DROVER_IPC_FD")
        .parse()
        .expect("fd number");
    while !bytes.is_empty() {
        // SAFETY: writing from a valid buffer to the inherited channel fd.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n >= 0 {
            bytes = &bytes[n as usize..];
            continue;
        }
        match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, -1) };
            }
            std::io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}
