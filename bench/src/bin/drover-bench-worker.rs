//! The tiny worker `drover-bench` supervises.
//!
//! - With `DROVER_BENCH_RAW` set it is the *raw spawn* baseline: it writes one byte to stdout as
//!   soon as `main` runs (no runtime, no protocol), then waits for stdin to close.
//! - With `DROVER_BENCH_RAW=echo` it is the *raw IPC* baseline: blocking reads of stdin (a Unix
//!   stream socket), every chunk written back to stdout (the same socket) at once. No drover.
//! - Otherwise it is a drover worker on a current-thread tokio runtime (busy-polling when the master
//!   asks, `DROVER_BUSY_POLL_US`): hello/welcome, STARTED, and
//!   then, per message (`{"cmd": ...}`):
//!   - anything without a known `cmd`: echoed back verbatim (round-trip latency);
//!   - `{"cmd":"burst","n":N}`: sends N messages `{"seq":i}` back, 256 in flight at a time
//!     (worker → master throughput);
//!   - `{"cmd":"count","n":N}`: counts the next N messages, then replies `{"counted":N}`
//!     (master → worker throughput).
//!
//!   - `{"cmd":"routing","n":N,"redis":"HOST:PORT"}`: times N sequential shared-store gets
//!     (`drover.store.get` of `bench.key`), N requests to another worker's `echo` handler
//!     (worker → master → worker → master → worker) and, with `redis`, N Redis `GET bench.key` over
//!     one TCP connection; replies `{"routing": {NAME: {"p50_us", "p99_us"}}}`.
//!
//!   It declares an `echo` handler (answers its arguments). `stop` is answered with STOPPED,
//!   `quit` with SHUTTED_DOWN and exit 0.

use drover::{BusEvent, BusSender, MessageBus};
use serde_json::{json, Value};
use std::io::{Read, Write};

fn main() {
    if std::env::var_os("DROVER_BENCH_RAW").is_some_and(|v| v == "echo") {
        raw_echo();
        return;
    }
    if std::env::var_os("DROVER_BENCH_RAW").is_some() {
        let _ = std::io::stdout().write_all(b"R");
        let _ = std::io::stdout().flush();
        let mut rest = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut rest);
        return;
    }
    // Spins only if the master asked for it (`DROVER_BUSY_POLL_US`, read by the MessageBus).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(drover::busy_poll::park_hook())
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("drover-bench-worker: cannot build a runtime: {e}");
            std::process::exit(70);
        }
    };
    std::process::exit(runtime.block_on(run()));
}

/// Echoes whatever arrives on stdin to stdout, with one blocking `read` and one `write` per chunk.
fn raw_echo() {
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut buf = vec![0u8; 65536];
    loop {
        match input.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if output.write_all(&buf[..n]).and_then(|()| output.flush()).is_err() {
                    return;
                }
            }
        }
    }
}

async fn run() -> i32 {
    let mut bus = match MessageBus::connect().await {
        Ok(bus) => bus,
        Err(e) => {
            eprintln!("drover-bench-worker: {e}");
            return 70;
        }
    };
    // A simulated boot (DROVER_BENCH_BOOT_MS) before reporting ready, for the reload section.
    if let Some(ms) = std::env::var("DROVER_BENCH_BOOT_MS").ok().and_then(|v| v.parse().ok()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if let Err(e) = bus.sender().set_handlers(&["echo"]).await {
        eprintln!("drover-bench-worker: {e}");
        return 70;
    }
    if let Err(e) = bus.send_started().await {
        eprintln!("drover-bench-worker: {e}");
        return 70;
    }
    // While counting, messages are counted instead of handled.
    let mut counting: Option<(u64, u64)> = None;
    while let Some(event) = bus.recv().await {
        match event {
            BusEvent::Message(msg) => {
                if let Some((seen, target)) = counting.as_mut() {
                    *seen += 1;
                    if *seen == *target {
                        let n = *target;
                        counting = None;
                        let _ = bus.send_message(&json!({ "counted": n })).await;
                    }
                    continue;
                }
                match msg.get("cmd").and_then(Value::as_str) {
                    Some("burst") => burst(bus.sender(), msg.get("n").and_then(Value::as_u64).unwrap_or(0)).await,
                    Some("routing") => {
                        let n = msg.get("n").and_then(Value::as_u64).unwrap_or(1000);
                        let redis = msg.get("redis").and_then(Value::as_str).map(str::to_string);
                        let sender = bus.sender();
                        // On its own task: the worker keeps answering requests meanwhile.
                        tokio::spawn(async move {
                            let report = routing(&sender, n, redis.as_deref()).await;
                            let _ = sender.send_message(&json!({ "routing": report })).await;
                        });
                    }
                    Some("count") => {
                        let n = msg.get("n").and_then(Value::as_u64).unwrap_or(0);
                        if n == 0 {
                            let _ = bus.send_message(&json!({ "counted": 0 })).await;
                        } else {
                            counting = Some((0, n));
                        }
                    }
                    _ => {
                        let _ = bus.send_message(&msg).await;
                    }
                }
            }
            BusEvent::Request(request) => {
                let args = request.args.clone();
                tokio::spawn(request.reply(Ok(args)));
            }
            BusEvent::Stop => {
                let _ = bus.send_stopped().await;
            }
            BusEvent::Quit => {
                let _ = bus.send_shutted_down().await;
                return 0;
            }
            BusEvent::Closed(_) => return 0,
            _ => {}
        }
    }
    0
}

/// Sends `n` messages, keeping up to 256 in flight so the bus's writer can batch them.
async fn burst(sender: BusSender, n: u64) {
    const WINDOW: u64 = 256;
    let mut i = 0;
    while i < n {
        let end = (i + WINDOW).min(n);
        let sends = (i..end).map(|seq| {
            let sender = sender.clone();
            async move { sender.send_message(&json!({ "seq": seq })).await }
        });
        if futures_util::future::join_all(sends).await.iter().any(Result::is_err) {
            return;
        }
        i = end;
    }
}

/// p50 and p99 of `samples`, in microseconds.
fn percentiles(mut samples: Vec<std::time::Duration>) -> Value {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    json!({ "p50_us": (at(0.50) * 10.0).round() / 10.0, "p99_us": (at(0.99) * 10.0).round() / 10.0 })
}

/// Times `n` of each: a store get, a request to another worker's handler, and a Redis GET.
async fn routing(sender: &BusSender, n: u64, redis: Option<&str>) -> Value {
    let mut report = serde_json::Map::new();
    let mut samples = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = std::time::Instant::now();
        if sender.store_get("bench.key").await.is_err() {
            return json!({ "error": "store get failed" });
        }
        samples.push(t.elapsed());
    }
    report.insert("store_get".into(), percentiles(std::mem::take(&mut samples)));
    for _ in 0..n {
        let t = std::time::Instant::now();
        let answer = sender
            .request(
                drover::request::Target::Any,
                "echo",
                &json!({"x": 1}),
                std::time::Duration::from_secs(10),
            )
            .await;
        if answer.is_err() {
            return json!({ "error": format!("request failed: {answer:?}") });
        }
        samples.push(t.elapsed());
    }
    report.insert(
        "request_worker_to_worker".into(),
        percentiles(std::mem::take(&mut samples)),
    );
    if let Some(address) = redis {
        match redis_gets(address, n) {
            Ok(times) => {
                report.insert("redis_get".into(), percentiles(times));
            }
            Err(e) => {
                report.insert("redis_get".into(), json!({ "error": e.to_string() }));
            }
        }
    }
    Value::Object(report)
}

/// `n` sequential `GET bench.key` on one connection, in Redis's wire protocol (RESP), blocking:
/// the peer a worker would otherwise use for shared state.
fn redis_gets(address: &str, n: u64) -> std::io::Result<Vec<std::time::Duration>> {
    use std::io::BufRead;
    let stream = std::net::TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let request = b"*2\r\n$3\r\nGET\r\n$9\r\nbench.key\r\n";
    let mut times = Vec::with_capacity(n as usize);
    let mut line = String::new();
    for _ in 0..n {
        let t = std::time::Instant::now();
        writer.write_all(request)?;
        line.clear();
        reader.read_line(&mut line)?; // $len or $-1
        if let Some(len) = line.trim_end().strip_prefix('$').and_then(|l| l.parse::<i64>().ok()) {
            if len >= 0 {
                let mut body = vec![0u8; len as usize + 2];
                reader.read_exact(&mut body)?;
            }
        }
        times.push(t.elapsed());
    }
    Ok(times)
}
