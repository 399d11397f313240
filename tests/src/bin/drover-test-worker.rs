//! The worker drover's tests supervise. Well-behaved by default; `DROVER_TEST_MODE` and messages
//! make it misbehave in each way the tests need.
//!
//! Modes (`DROVER_TEST_MODE`): `normal`, `exit-before-start:<code>`, `never-start`,
//! `ignore-stop` (ignores stop, quit and SIGTERM), `no-hello` (writes a status without hello),
//! `crash-after-start:<code>`, `crash-after-ms:<ms>` (exit 1 that long after STARTED),
//! `start-after-ms:<ms>`, `notify` (readiness through NOTIFY_SOCKET, on command),
//! `message-after-start:<n>` (sends `{"after_start": i}` for i in 0..n right after STARTED),
//! `store-writer` (after STARTED, sets `w<id>.k<i>` to `i` in the master's store for i = 0, 1...
//! one after the other, and prints `acked w<id>.k<i> <i>` to stdout as each is acknowledged, until
//! a write fails or the master goes).
//!
//! With `DROVER_TEST_SETUID=<uid>` it drops its privileges to that uid first (as a worker that
//! started as root and gave them up would).
//!
//! With `DROVER_TEST_HOST_READS=1` it reads the master's commands as a host loop would
//! ([`BusOptions::host_reads`]): a thread polls the channel and drives the [`CommandReader`].
//!
//! Messages it obeys (`{"cmd": ...}`): `echo` (replies `{"echo": data}`), `exit` with `code`,
//! `malformed`, `oversized`, `illegal`, `spawn-grandchild` (replies with the grandchild's pid),
//! `block` (blocks its runtime for `ms`), `burst` with `n` (sends n messages), `pid`, `busy-poll`
//! (replies its busy-poll window and `DROVER_BUSY_POLL_US`),
//! `listen` with `address` (asks the master for a socket and serves on it, or, on a balanced socket,
//! answers the connections the master hands over; replies
//! `{"listening": local}` or `{"listen_error": ..., "errno": ..., "refused": address}`), `notify-ready` (sends `READY=1` to
//! `NOTIFY_SOCKET`).
//!
//! Hostile ones, written past the MessageBus straight onto the channel: `fd-pair` with `n` (a
//! message `{"with_fd": n}` carrying an fd of /dev/null the master never asked for, then a plain
//! message `{"after_fd": n}`), `flood` with `kind` (`heartbeat` or `message`), `ms` and `pad`
//! (writes those frames as fast as the channel takes them for `ms`, messages of `pad` bytes, then
//! exits 0). `ignore` does nothing but count; `count` replies `{"count": n}` with that count.
//!
//! Requests (PROTOCOL.md §5.5): with `DROVER_TEST_HANDLERS=a,b` it declares those handlers before
//! STARTED and answers them: `echo` (the arguments), `whoami` (`{"id": its id}`), `fail` (fails
//! with "failed on purpose"), `slow` (answers after `args.ms`), `never` (never answers), `exit`
//! (exits 3 without answering). Messages `request` (`to`, `name`, `args`, `timeout_ms`: makes the
//! request, replies `{"response": result}` or `{"request_error": error}`) and `send-to` (`to`,
//! `data`: replies `{"sent": count}` or `{"send_error": error}`); a message from another worker is
//! reported as `{"from": id, "got": data}`, a change under a store watch as `{"changed": {...}}`.
//!
//! Leadership (PROTOCOL.md §5.10): with `DROVER_TEST_LEADERSHIP=key` it joins that leadership
//! before STARTED and reports each `leader` frame as `{"leader": {key, leader, term, you}}`; while
//! it leads it holds one TCP connection to `DROVER_TEST_UPSTREAM` (host:port) if set; deposed, it
//! closes it, waits `DROVER_TEST_RESIGN_AFTER_MS` (default 200) and resigns (`{"resigned": key}`).
//!
//! Leader clients (`drover::leader_client`): with `DROVER_TEST_CLUSTER=name` it joins a [`Cluster`]
//! of [`UpstreamClient`] (one TCP connection to `DROVER_TEST_UPSTREAM`, whose `EVENT n` lines
//! are the topic's events and which answers `GET key` with `VALUE key v`), subscribes to topic
//! `"events"` and reports `{"cluster_events": [n...]}` (batched), `{"cluster_gap": {"last": n}}`
//! and `{"cluster_resubscribed": term}` in order; message `cluster-get` with `key` replies
//! `{"cluster_got": v}` or `{"cluster_error": ...}`.
//! Reconfigure (PROTOCOL.md §5.11): a new config with `"refuse": reason` is refused with that
//! reason, one with `"ignore": true` is never answered, any other is applied. Message `config` replies `{"config": ...}`, the config
//! in force (the welcome's until a reconfigure).
//!
//! Warm-up (PROTOCOL.md §5.11): with `DROVER_TEST_WARMUP=answer|hang|big` it serves a private
//! loopback listener before STARTED (answering each request `200`, never, or with 3 MiB), runs
//! [`MessageBus::warm_up`] against it, then, still before STARTED, sends
//! `{"warmup": {"seen": [x-drover-warmup values in arrival order], "done", "cut", "timed_out",
//! "error"}}` (`{"warmup": null}` when the welcome asked for none).
//!
//! Served sockets (on demand, or inherited when `DROVER_TEST_SERVE_FDS=1`: fds 3.. per
//! `LISTEN_FDS`, checked against `LISTEN_PID`) answer each connection with one line, the worker's
//! pid, and close it.

use drover::leader_client::{Cluster, ClusterEvent, EventSink, LeaderClient};
use drover::{BusEvent, BusOptions, BusSender, CommandReader, MessageBus, WorkerStatus};
use serde_json::{json, Value};
use std::io::Write;
use std::os::fd::FromRawFd;
use std::time::Duration;

fn main() {
    // With drover's busy-poll hook, which spins only when the master asked (`DROVER_BUSY_POLL_US`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(drover::busy_poll::park_hook())
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    if let Some(uid) = std::env::var("DROVER_TEST_SETUID")
        .ok()
        .and_then(|u| u.parse::<libc::uid_t>().ok())
    {
        // SAFETY: setgid/setuid with plain ids; a failure is reported and ends the worker.
        if unsafe { libc::setgid(uid) } != 0 || unsafe { libc::setuid(uid) } != 0 {
            eprintln!("drover-test-worker: setuid {uid}: {}", std::io::Error::last_os_error());
            std::process::exit(71);
        }
    }
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
    if std::env::var("DROVER_TEST_SERVE_FDS").as_deref() == Ok("1") {
        serve_inherited();
    }
    let host_reads = std::env::var("DROVER_TEST_HOST_READS").as_deref() == Ok("1");
    let options = BusOptions {
        host_reads,
        ..BusOptions::default()
    };
    let mut bus = match MessageBus::connect_with(options).await {
        Ok(bus) => bus,
        Err(e) => {
            eprintln!("drover-test-worker: {e}");
            std::process::exit(70);
        }
    };
    if let Ok(names) = std::env::var("DROVER_TEST_HANDLERS") {
        let names: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
        bus.sender().set_handlers(&names).await.expect("declare handlers");
    }
    let leadership = std::env::var("DROVER_TEST_LEADERSHIP").ok();
    if let Some(key) = &leadership {
        bus.sender().leader_join(key).await.expect("join the leadership");
    }
    let mut upstream: Option<std::net::TcpStream> = None;
    let cluster = match std::env::var("DROVER_TEST_CLUSTER") {
        Ok(name) => {
            let cluster = Cluster::<UpstreamClient>::join(bus.sender(), &name)
                .await
                .expect("join the cluster");
            bus.sender()
                .set_handlers(&[&cluster.handler_name()])
                .await
                .expect("declare the cluster's handler");
            report_cluster_events(bus.sender(), cluster.clone());
            Some(cluster)
        }
        Err(_) => None,
    };
    if let Ok(how) = std::env::var("DROVER_TEST_WARMUP") {
        warm_up(&bus, &how).await;
    }
    match mode.as_str() {
        "exit-before-start" => std::process::exit(arg as i32),
        "never-start" => {}
        // Readiness comes from NOTIFY_SOCKET: tell the test where it is, then wait to be told.
        "notify" => {
            let socket = std::env::var("NOTIFY_SOCKET").unwrap_or_default();
            bus.send_message(&json!({ "notify_socket": socket }))
                .await
                .expect("send");
        }
        "start-after-ms" => {
            tokio::time::sleep(Duration::from_millis(arg as u64)).await;
            bus.send_started().await.expect("send started");
        }
        _ => bus.send_started().await.expect("send started"),
    }
    if mode == "message-after-start" {
        for i in 0..arg {
            bus.send_message(&json!({ "after_start": i })).await.expect("send");
        }
    }
    if mode == "store-writer" {
        tokio::spawn(write_store(bus.sender(), bus.meta().id));
    }
    if mode == "crash-after-start" {
        std::process::exit(arg as i32);
    }
    if mode == "crash-after-ms" {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(arg as u64)).await;
            std::process::exit(1);
        });
    }
    let ignore = mode == "ignore-stop";
    let mut host_commands = host_reads.then(|| {
        let reader = bus.take_command_reader().expect("host_reads gives a command reader");
        read_on_poll_thread(reader)
    });
    loop {
        let event = match &mut host_commands {
            Some(commands) => commands.recv().await,
            None => bus.recv().await,
        };
        let Some(event) = event else { break };
        let event = match &cluster {
            Some(cluster) => match cluster.handle(event).await {
                Some(event) => event,
                None => continue,
            },
            None => event,
        };
        if let (Some(cluster), BusEvent::Message(msg)) = (&cluster, &event) {
            if msg["cmd"] == "cluster-get" {
                let (cluster, sender, key) = (cluster.clone(), bus.sender(), msg["key"].clone());
                tokio::spawn(async move {
                    let reply = match cluster.invoke("get", key).await {
                        Ok(v) => json!({ "cluster_got": v }),
                        Err(e) => json!({ "cluster_error": e.to_string() }),
                    };
                    let _ = sender.send_message(&reply).await;
                });
                continue;
            }
        }
        match event {
            BusEvent::Stop if !ignore => {
                drain();
                let _ = bus.send_stopped().await;
            }
            BusEvent::Quit if !ignore => {
                let _ = bus.send_shutted_down().await;
                std::process::exit(0);
            }
            BusEvent::Stop | BusEvent::Quit => {}
            BusEvent::Message(msg) => handle(&bus, msg).await,
            BusEvent::Request(request) => {
                tokio::spawn(answer(bus.meta().id, request));
            }
            BusEvent::WorkerMessage { from, data } => {
                let _ = bus.send_message(&json!({ "from": from, "got": data })).await;
            }
            BusEvent::StoreChanged { watch, path, value } => {
                let _ = bus
                    .send_message(&json!({ "changed": { "watch": watch, "path": path, "value": value } }))
                    .await;
            }
            BusEvent::Connection(conn) => {
                // Answered as `serve` answers: this process's pid.
                if let Some(fd) = conn.take_fd() {
                    let mut stream = std::net::TcpStream::from(fd);
                    let _ = writeln!(stream, "{}", std::process::id());
                }
            }
            BusEvent::Leader { key, leader, term, you } => {
                on_leader(&bus, &mut upstream, &key, you).await;
                let _ = bus
                    .send_message(&json!({ "leader": { "key": key, "leader": leader, "term": term, "you": you } }))
                    .await;
            }
            BusEvent::Reconfigure(incoming) => {
                let config = incoming.config.clone();
                if let Some(reason) = config.get("refuse").and_then(Value::as_str) {
                    let _ = incoming.ack(Err(reason.to_string())).await;
                } else if config.get("ignore") != Some(&Value::Bool(true)) {
                    *CONFIG.lock().unwrap_or_else(|p| p.into_inner()) = Some(config);
                    let _ = incoming.ack(Ok(())).await;
                }
            }
            BusEvent::Closed(_) => std::process::exit(0),
            other => eprintln!("drover-test-worker: a command it does not know: {other:?}"),
        }
    }
}

/// Drives `reader` from a poll loop on its own thread, as a host's event loop would (reading only
/// when the channel is readable), and hands the commands to the runtime in order.
fn read_on_poll_thread(mut reader: CommandReader) -> tokio::sync::mpsc::UnboundedReceiver<BusEvent> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || loop {
        // First (the commands buffered with the welcome), then whenever the channel is readable.
        if !reader.read_ready(&mut |command| match command.into_event() {
            Ok(event) => {
                let _ = tx.send(event);
            }
            Err(e) => eprintln!("drover-test-worker: a message it cannot decode: {e}"),
        }) {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: reader.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // EINTR or readable: read either way (a read that finds nothing costs one EAGAIN).
        // SAFETY: one valid pollfd; the reader keeps the fd open.
        let _ = unsafe { libc::poll(&mut pfd, 1, -1) };
    });
    rx
}

/// How many cache loaders this worker ran.
static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many `ignore` messages came.
static IGNORED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The user config a reconfigure put in force (none yet: the welcome's).
static CONFIG: std::sync::Mutex<Option<Value>> = std::sync::Mutex::new(None);

async fn handle(bus: &MessageBus, msg: Value) {
    let cmd = msg.get("cmd").and_then(Value::as_str).unwrap_or("echo");
    match cmd {
        "config" => {
            let current = CONFIG.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let config = current.unwrap_or_else(|| bus.meta().config.clone());
            let _ = bus.send_message(&json!({ "config": config })).await;
        }
        "ignore" => {
            IGNORED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        "count" => {
            let n = IGNORED.load(std::sync::atomic::Ordering::Relaxed);
            let _ = bus.send_message(&json!({ "count": n })).await;
        }
        "fd-pair" => {
            let n = msg.get("n").and_then(Value::as_u64).unwrap_or(0);
            let with_fd = format!("{{\"type\":\"message\",\"data\":{{\"with_fd\":{n}}}}}\n");
            send_with_devnull(with_fd.as_bytes());
            raw(format!("{{\"type\":\"message\",\"data\":{{\"after_fd\":{n}}}}}\n").as_bytes());
        }
        "flood" => {
            let ms = msg.get("ms").and_then(Value::as_u64).unwrap_or(3000);
            let pad = msg.get("pad").and_then(Value::as_u64).unwrap_or(100) as usize;
            let frame = match msg.get("kind").and_then(Value::as_str) {
                Some("message") => json!({"type": "message", "data": {"pad": "x".repeat(pad)}}).to_string(),
                _ => json!({"type": "heartbeat", "rss_bytes": 1}).to_string(),
            } + "\n";
            let batch = frame.repeat((64 * 1024 / frame.len()).max(1));
            let until = std::time::Instant::now() + Duration::from_millis(ms);
            while std::time::Instant::now() < until {
                raw(batch.as_bytes());
            }
            std::process::exit(0);
        }
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
        "listen" => {
            let address = msg.get("address").and_then(Value::as_str).unwrap_or("127.0.0.1:0");
            match bus.listen(address).await {
                // A balanced socket: the master accepts, connections come as BusEvent::Connection.
                Ok(listening) if listening.balance.is_some_and(|b| b != drover::Balance::ReusePort) => {
                    let _ = bus.send_message(&json!({ "listening": listening.local })).await;
                }
                Ok(listening) => {
                    serve(std::net::TcpListener::from(listening.fd));
                    let _ = bus.send_message(&json!({ "listening": listening.local })).await;
                }
                Err(e) => {
                    let (errno, refused) = match &e {
                        drover::BusError::Listen(r) => (r.errno, Some(r.address.clone())),
                        _ => (None, None),
                    };
                    let reply = json!({ "listen_error": e.to_string(), "errno": errno, "refused": refused });
                    let _ = bus.send_message(&reply).await;
                }
            }
        }
        "notify-ready" => {
            let socket = std::env::var("NOTIFY_SOCKET").unwrap_or_default();
            let _ = send_notify(&socket, "READY=1\nSTATUS=serving\n");
        }
        "pid" => {
            let _ = bus.send_message(&json!({ "pid": std::process::id() })).await;
        }
        "request" => {
            let target = msg.get("to").and_then(Value::as_str).unwrap_or("master");
            let name = msg.get("name").and_then(Value::as_str).unwrap_or("echo").to_string();
            let args = msg.get("args").cloned().unwrap_or(Value::Null);
            let timeout = Duration::from_millis(msg.get("timeout_ms").and_then(Value::as_u64).unwrap_or(30_000));
            let sender = bus.sender();
            let target = target.parse::<drover::request::Target>();
            // Concurrently: the worker keeps serving (its own handlers too) while it waits.
            tokio::spawn(async move {
                let reply = match target {
                    Err(e) => json!({ "request_error": { "code": "bad_request", "message": e } }),
                    Ok(target) => match sender.request(target, &name, &args, timeout).await {
                        Ok(result) => json!({ "response": result }),
                        Err(error) => json!({ "request_error": error }),
                    },
                };
                let _ = sender.send_message(&reply).await;
            });
        }
        "app-status" => {
            let status = msg.get("status").and_then(Value::as_str);
            let counters: std::collections::BTreeMap<String, f64> = msg
                .get("counters")
                .and_then(|c| serde_json::from_value(c.clone()).ok())
                .unwrap_or_default();
            let sent = bus.sender().set_app_status(status, &counters).await;
            let _ = bus.send_message(&json!({ "app_status_sent": sent.is_ok() })).await;
        }
        "cache" => {
            // `n` concurrent callers of the shared cache for `key`; each loader (if this worker
            // gets to run one) counts itself, sleeps `ms` and returns its worker id, or fails.
            let key = msg.get("key").and_then(Value::as_str).unwrap_or("k").to_string();
            let n = msg.get("n").and_then(Value::as_u64).unwrap_or(1);
            let ms = msg.get("ms").and_then(Value::as_u64).unwrap_or(100);
            let fail = msg.get("fail").and_then(Value::as_bool).unwrap_or(false);
            let id = bus.meta().id;
            let sender = bus.sender();
            tokio::spawn(async move {
                let mut calls = tokio::task::JoinSet::new();
                for _ in 0..n {
                    let (sender, key) = (sender.clone(), key.clone());
                    calls.spawn(async move {
                        sender
                            .cache_get_or_load(&key, None, || async move {
                                LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                if fail {
                                    Err("boom".to_string())
                                } else {
                                    Ok(json!({ "loaded_by": id }))
                                }
                            })
                            .await
                    });
                }
                let results: Vec<_> = calls.join_all().await;
                let values: Vec<Value> = results.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
                let errors: Vec<Value> = results
                    .iter()
                    .filter_map(|r| r.as_ref().err().map(|e| json!(e)))
                    .collect();
                let loads = LOADS.load(std::sync::atomic::Ordering::Relaxed);
                let _ = sender
                    .send_message(&json!({ "cache": { "values": values, "errors": errors, "loads": loads } }))
                    .await;
            });
        }
        "send-to" => {
            let target = msg.get("to").and_then(Value::as_str).unwrap_or("any");
            let data = msg.get("data").cloned().unwrap_or(Value::Null);
            let reply = match target.parse::<drover::request::Target>() {
                Err(e) => json!({ "send_error": { "code": "bad_request", "message": e } }),
                Ok(target) => match bus.sender().send_to(target, &data).await {
                    Ok(count) => json!({ "sent": count }),
                    Err(error) => json!({ "send_error": error }),
                },
            };
            let _ = bus.send_message(&reply).await;
        }
        "busy-poll" => {
            let window = drover::busy_poll::window().as_micros() as u64;
            let env = std::env::var(drover::protocol::env::BUSY_POLL_US).ok();
            let _ = bus.send_message(&json!({ "window_us": window, "env": env })).await;
        }
        _ => {
            let _ = bus.send_message(&json!({ "echo": msg })).await;
        }
    }
}

/// Answers a request for one of the handlers of `DROVER_TEST_HANDLERS`.
async fn answer(id: u64, request: drover::bus::IncomingRequest) {
    let result = match request.name.as_str() {
        "echo" => Ok(request.args.clone()),
        "whoami" => Ok(json!({ "id": id })),
        "fail" => Err("failed on purpose".to_string()),
        "slow" => {
            let ms = request.args.get("ms").and_then(Value::as_u64).unwrap_or(100);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!({ "slept_ms": ms }))
        }
        "never" => return,
        "status.id" => Ok(json!({ "id": id })),
        "status.flaky" if id == 2 => Err("flaky".to_string()),
        "status.flaky" => Ok(json!(true)),
        "exit" => std::process::exit(3),
        other => Err(format!("no handler {other}")),
    };
    let _ = request.reply(result).await;
}

/// Sends one notify datagram to `socket` (`@abstract` or a path).
fn send_notify(socket: &str, text: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => sock.send_to_addr(
            text.as_bytes(),
            &std::os::unix::net::SocketAddr::from_abstract_name(name)?,
        )?,
        None => sock.send_to(text.as_bytes(), socket)?,
    };
    Ok(())
}

/// Serving threads and the pipe that tells them to stop accepting.
static SERVERS: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> = std::sync::Mutex::new(Vec::new());
static STOP_PIPE: std::sync::OnceLock<(i32, i32)> = std::sync::OnceLock::new();

fn stop_pipe() -> (i32, i32) {
    *STOP_PIPE.get_or_init(|| {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds.
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        (fds[0], fds[1])
    })
}

/// Answers every connection on `listener` with this process's pid, on a thread, until `stop`.
/// The socket is shared with other workers, so it waits with poll and accepts non-blocking: a
/// connection another worker took first is not waited for.
fn serve(listener: std::net::TcpListener) {
    let _ = listener.set_nonblocking(true);
    let (stop_read, _) = stop_pipe();
    let handle = std::thread::spawn(move || loop {
        let mut fds = [
            libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop_read,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if fds[1].revents != 0 {
            return;
        }
        if let Ok((mut conn, _)) = listener.accept() {
            let _ = conn.set_nonblocking(false);
            let _ = writeln!(conn, "{}", std::process::id());
        }
    });
    SERVERS.lock().unwrap_or_else(|p| p.into_inner()).push(handle);
}

/// Stops accepting and waits until every connection already accepted is answered.
fn drain() {
    let (_, stop_write) = stop_pipe();
    // SAFETY: one byte to our own pipe; it stays readable for every serving thread.
    unsafe { libc::write(stop_write, b"x".as_ptr().cast(), 1) };
    let handles: Vec<_> = SERVERS.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
    for h in handles {
        let _ = h.join();
    }
}

/// Serves the sockets inherited systemd-style, after checking the variables describe them.
fn serve_inherited() {
    let count: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let for_us = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    if count < 1 || !for_us {
        eprintln!("drover-test-worker: LISTEN_FDS={count:?} LISTEN_PID not ours");
        std::process::exit(64);
    }
    for fd in 3..3 + count {
        // SAFETY: systemd's convention: fds 3..3+LISTEN_FDS are ours, each taken once here.
        serve(unsafe { std::net::TcpListener::from_raw_fd(fd) });
    }
}

/// Writes raw bytes on the channel, bypassing the MessageBus (to break the protocol on purpose).
/// The fd is non-blocking (the bus shares it), so wait for room instead of writing half a frame.
/// Writes `bytes` (short: one `sendmsg` takes them) with an fd of /dev/null attached, as
/// `SCM_RIGHTS`, on the channel.
fn send_with_devnull(bytes: &[u8]) {
    use std::os::fd::AsRawFd;
    let fd: i32 = std::env::var("DROVER_IPC_FD")
        .expect("DROVER_IPC_FD")
        .parse()
        .expect("fd number");
    let devnull = std::fs::File::open("/dev/null").expect("open /dev/null");
    let passed = devnull.as_raw_fd();
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer holds one header with room for one int (CMSG_SPACE above), which
    // CMSG_FIRSTHDR/CMSG_DATA point into.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), passed);
    }
    loop {
        // SAFETY: `msg` and everything it points to are valid for the call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n == bytes.len() as isize {
            return;
        }
        let err = std::io::Error::last_os_error();
        assert!(
            n < 0 && err.kind() == std::io::ErrorKind::WouldBlock,
            "sendmsg: {n} {err}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

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

/// The `store-writer` mode: acknowledged writes, each told on stdout once acknowledged (one
/// `write` per line, so that several workers' lines do not mix on a shared pipe).
async fn write_store(bus: drover::BusSender, id: u64) {
    for i in 0u64.. {
        let path = format!("w{id}.k{i}");
        if let Err(e) = bus.store_set(&path, &i, None).await {
            eprintln!("drover-test-worker: store write {path}: {e}");
            return;
        }
        let mut out = std::io::stdout().lock();
        if out
            .write_all(format!("acked {path} {i}\n").as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}
/// A `leader` frame: the leader holds its one upstream connection; a deposed one closes it, then
/// (after a while, to show that nobody is elected meanwhile) resigns.
async fn on_leader(bus: &MessageBus, upstream: &mut Option<std::net::TcpStream>, key: &str, you: bool) {
    let address = std::env::var("DROVER_TEST_UPSTREAM").ok();
    if you {
        if let (None, Some(address)) = (&upstream, address) {
            match std::net::TcpStream::connect(&address) {
                Ok(stream) => *upstream = Some(stream),
                Err(e) => eprintln!("drover-test-worker: upstream {address}: {e}"),
            }
        }
        return;
    }
    let Some(stream) = upstream.take() else { return };
    drop(stream);
    let after = std::env::var("DROVER_TEST_RESIGN_AFTER_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(200);
    let sender = bus.sender();
    let key = key.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(after)).await;
        if sender.leader_resign(&key).await.is_ok() {
            let _ = sender.send_message(&json!({ "resigned": key })).await;
        }
    });
}

/// The real client of `DROVER_TEST_CLUSTER`: one TCP connection to `DROVER_TEST_UPSTREAM`.
struct UpstreamClient {
    write: tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>,
    waiting: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<tokio::sync::oneshot::Sender<String>>>>,
    sink: std::sync::Arc<std::sync::Mutex<Option<EventSink>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl LeaderClient for UpstreamClient {
    async fn connect() -> Result<Self, String> {
        use tokio::io::AsyncBufReadExt;
        let address = std::env::var("DROVER_TEST_UPSTREAM").map_err(|e| e.to_string())?;
        let stream = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| e.to_string())?;
        let (read, write) = stream.into_split();
        let waiting: std::sync::Arc<
            std::sync::Mutex<std::collections::VecDeque<tokio::sync::oneshot::Sender<String>>>,
        > = Default::default();
        let sink: std::sync::Arc<std::sync::Mutex<Option<EventSink>>> = Default::default();
        let (w, k) = (waiting.clone(), sink.clone());
        let reader = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let parts: Vec<&str> = line.split(' ').collect();
                match parts.as_slice() {
                    ["EVENT", n] => {
                        let sink = k.lock().unwrap().clone();
                        if let (Some(sink), Ok(n)) = (sink, n.parse::<u64>()) {
                            sink.emit(json!(n));
                        }
                    }
                    ["VALUE", _, v] => {
                        if let Some(tx) = w.lock().unwrap().pop_front() {
                            let _ = tx.send(v.to_string());
                        }
                    }
                    _ => {}
                }
            }
        });
        Ok(UpstreamClient {
            write: tokio::sync::Mutex::new(write),
            waiting,
            sink,
            reader,
        })
    }

    async fn invoke(&self, method: String, args: Value) -> Result<Value, String> {
        use tokio::io::AsyncWriteExt;
        if method != "get" {
            return Err(format!("no method {method}"));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut write = self.write.lock().await;
        self.waiting.lock().unwrap().push_back(tx);
        let key = args.as_str().unwrap_or_default().to_string();
        write
            .write_all(format!("GET {key}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        drop(write);
        rx.await
            .map(Value::String)
            .map_err(|_| "the upstream closed".to_string())
    }

    async fn publish(&self, _topic: Value, _data: Value) -> Result<(), String> {
        Ok(())
    }

    fn subscribe(&self, _topic: Value, events: EventSink) {
        *self.sink.lock().unwrap() = Some(events);
    }

    async fn close(&self) {
        self.reader.abort();
        use tokio::io::AsyncWriteExt;
        let _ = self.write.lock().await.shutdown().await;
    }
}

impl Drop for UpstreamClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Subscribes to `"events"` and reports what comes, in order (events batched every 50 ms).
fn report_cluster_events(sender: BusSender, cluster: Cluster<UpstreamClient>) {
    tokio::spawn(async move {
        let mut events = match cluster.subscribe(json!("events")).await {
            Ok(rx) => rx,
            Err(e) => {
                let _ = sender.send_message(&json!({ "cluster_error": e.to_string() })).await;
                return;
            }
        };
        let mut batch = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { return };
                    let report = match event {
                        ClusterEvent::Data(n) => { batch.push(n); continue; }
                        ClusterEvent::Gap { last, .. } => json!({ "cluster_gap": { "last": last } }),
                        ClusterEvent::Resubscribed { term } => json!({ "cluster_resubscribed": term }),
                    };
                    if !batch.is_empty() {
                        let _ = sender.send_message(&json!({ "cluster_events": std::mem::take(&mut batch) })).await;
                    }
                    let _ = sender.send_message(&report).await;
                }
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        let _ = sender.send_message(&json!({ "cluster_events": std::mem::take(&mut batch) })).await;
                    }
                }
            }
        }
    });
}

/// Serves a private loopback listener as `how` says, warms up against it and tells the master
/// what the server saw (before STARTED: the master sees it first).
async fn warm_up(bus: &MessageBus, how: &str) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a private loopback listener");
    let addr = listener.local_addr().expect("its address");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (how, log) = (how.to_string(), seen.clone());
    std::thread::spawn(move || serve_warmup(listener, &how, &log));
    // Blocks this (current-thread) runtime for the warm-up: the server answers on its own thread.
    let report = bus.warm_up(addr);
    let seen = seen.lock().expect("the warm-up log").clone();
    let data = report.map(|r| {
        json!({
            "seen": seen,
            "done": r.done,
            "cut": r.cut,
            "timed_out": matches!(r.ended_early, Some(drover::warmup::WarmupError::TimedOut { .. })),
            "error": r.ended_early.map(|e| e.to_string()),
        })
    });
    bus.send_message(&json!({ "warmup": data })).await.expect("send");
}

/// The app's handler for warm-up requests: records each `x-drover-warmup` value, then answers
/// `200 ok`, never (`hang`: holds the connection open), or 3 MiB (`big`).
fn serve_warmup(listener: std::net::TcpListener, how: &str, seen: &std::sync::Mutex<Vec<String>>) {
    use std::io::{BufRead, BufReader};
    let mut held = Vec::new();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("x-drover-warmup") {
                    seen.lock().expect("the warm-up log").push(value.trim().to_string());
                }
            }
            line.clear();
        }
        let mut stream = reader.into_inner();
        match how {
            "hang" => held.push(stream),
            "big" => {
                let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
                answer.resize(3 << 20, b'x');
                let _ = stream.write_all(&answer);
            }
            _ => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            }
        }
    }
}
