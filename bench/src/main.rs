//! `drover-bench`: how long drover takes to get workers ready compared with spawning the same
//! processes raw, how fast messages go between a master and a worker, and what an idle master costs.
//!
//! Run from the workspace root (see `bench/README.md`):
//!
//! ```text
//! cargo build --workspace --release && cargo run --release --bin drover-bench
//! ```
//!
//! It supervises `drover-bench-worker` (built next to it) and prints one table per section. It is a
//! benchmark, not a test: it never fails on a slow figure, it only prints the targets beside them.

use drover::{Event, Master, MasterConfig, Timeouts};
use serde_json::{json, Value};
use std::error::Error;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error>>;

/// Worker counts of the start-up section.
const COUNTS: [usize; 4] = [1, 4, 16, 64];
/// Repetitions of each start-up measurement (the median is reported).
const START_ROUNDS: usize = 7;
/// Round trips measured (after `RTT_WARMUP` unmeasured ones).
const RTT_SAMPLES: usize = 20_000;
const RTT_WARMUP: usize = 2_000;
/// Messages per throughput run, and runs (the best is reported; the median too).
const BURST: u64 = 200_000;
const THROUGHPUT_RUNS: usize = 3;
/// The busy-poll window of the `ipc-busy-poll` section, in microseconds.
const BUSY_POLL_US: u64 = 50;
/// The steady rate at which the CPU cost of round trips is measured, and for how long.
const PACED_RATE: u64 = 2_000;
const PACED_SECS: u64 = 3;
/// How long the idle master is watched.
const IDLE: Duration = Duration::from_secs(3);

fn main() {
    if let Err(e) = run() {
        eprintln!("drover-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let worker = worker_bin()?;
    println!("drover-bench: worker {}", worker.display());
    println!(
        "machine: {} CPUs, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        kernel()
    );
    // Sections to run: all by default, or those named on the command line.
    let args: Vec<String> = std::env::args().skip(1).collect();
    const SECTIONS: [&str; 8] = [
        "startup",
        "reload",
        "raw-ipc",
        "ipc",
        "ipc-current-thread",
        "ipc-busy-poll",
        "idle",
        "rtt-only",
    ];
    if let Some(bad) = args.iter().find(|a| !SECTIONS.contains(&a.as_str())) {
        return Err(format!("unknown section {bad:?}; sections: {}", SECTIONS.join(", ")).into());
    }
    let wanted = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    if args.iter().any(|a| a == "rtt-only") && args.len() > 1 {
        return Err("`rtt-only` runs alone".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    if wanted("startup") {
        startup(&rt, &worker)?;
        println!();
    }
    if wanted("reload") {
        reload(&rt, &worker)?;
        println!();
    }
    if wanted("raw-ipc") {
        raw_ipc(&worker)?;
        println!();
    }
    if wanted("ipc") {
        println!(
            "## IPC through drover, multi-thread runtime ({} worker threads)",
            num_workers()
        );
        ipc(&rt, &worker, true, Duration::ZERO)?;
        println!();
    }
    // Not part of the default run: round trips only, for profiling under strace or valgrind.
    if args.iter().any(|a| a == "rtt-only") {
        ipc(&rt, &worker, false, Duration::ZERO)?;
    }
    if wanted("ipc-current-thread") {
        println!("## IPC through drover, current-thread runtime");
        let current = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        ipc(&current, &worker, true, Duration::ZERO)?;
        println!();
    }
    // Last: once busy polling is enabled, it stays on in this process.
    if wanted("ipc-busy-poll") {
        println!("## IPC through drover, current-thread runtime, busy-polling {BUSY_POLL_US} µs (master and worker)");
        let window = Duration::from_micros(BUSY_POLL_US);
        ipc(
            &busy_polling(tokio::runtime::Builder::new_current_thread())?,
            &worker,
            true,
            window,
        )?;
        println!();
        println!("## IPC through drover, multi-thread runtime, busy-polling {BUSY_POLL_US} µs (master and worker)");
        ipc(
            &busy_polling(tokio::runtime::Builder::new_multi_thread())?,
            &worker,
            false,
            window,
        )?;
        println!();
    }
    if wanted("idle") {
        idle(&rt, &worker, Duration::ZERO)?;
        println!();
        // Busy polling spins only after traffic: an idle master and idle workers stay at ~0.
        let window = Duration::from_micros(BUSY_POLL_US);
        idle(
            &busy_polling(tokio::runtime::Builder::new_current_thread())?,
            &worker,
            window,
        )?;
        println!();
    }
    println!("For scale (from the issue): Node's process.send between a parent and a forked child: round trip");
    println!("31 µs median, 217 µs p99, 78,000 messages/s one way.");
    Ok(())
}

/// A runtime from `builder` with drover's busy-poll hook.
fn busy_polling(mut builder: tokio::runtime::Builder) -> std::io::Result<tokio::runtime::Runtime> {
    builder
        .enable_all()
        .on_thread_park(drover::busy_poll::park_hook())
        .build()
}

fn num_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "unknown kernel".into())
}

/// `drover-bench-worker`, next to this binary.
fn worker_bin() -> Res<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .ok_or("the benchmark binary has no parent directory")?
        .join("drover-bench-worker");
    if !path.is_file() {
        return Err(format!(
            "{} not found: build it first with `cargo build --workspace --release`",
            path.display()
        )
        .into());
    }
    Ok(path)
}

fn config(worker: &PathBuf, count: usize) -> MasterConfig {
    MasterConfig::program(worker)
        .count(count)
        .name("bench")
        .timeouts(Timeouts {
            start: Duration::from_secs(30),
            stop: Duration::from_secs(5),
            quit: Duration::from_secs(5),
            kill: Duration::from_secs(2),
        })
}

// ---------------------------------------------------------------------------------------------
// Start-up

fn startup(rt: &tokio::runtime::Runtime, worker: &PathBuf) -> Res<()> {
    println!("## Start-up: start() until every worker reported STARTED, against raw spawn");
    println!(
        "median of {START_ROUNDS} rounds (min in brackets); raw = same binary, spawn + wait for one byte on a pipe"
    );
    println!();
    println!("| workers | drover start() | raw posix_spawn | raw fork/exec | drover / fork/exec | target |");
    println!("|---:|---:|---:|---:|---:|---|");
    for n in COUNTS {
        let mut drover = Vec::new();
        let mut spawn = Vec::new();
        let mut fork = Vec::new();
        for _ in 0..START_ROUNDS {
            spawn.push(raw_start(worker, n, false)?);
            fork.push(raw_start(worker, n, true)?);
            drover.push(rt.block_on(drover_start(worker, n))?);
        }
        let (d, s, f) = (median(&mut drover), median(&mut spawn), median(&mut fork));
        let ratio = d.as_secs_f64() / f.as_secs_f64();
        println!(
            "| {n} | {} ({}) | {} ({}) | {} ({}) | {ratio:.2}x | {} |",
            fmt(d),
            fmt(min(&drover)),
            fmt(s),
            fmt(min(&spawn)),
            fmt(f),
            fmt(min(&fork)),
            if n == 64 {
                if ratio <= 1.5 {
                    "≤ 1.5x: met"
                } else {
                    "≤ 1.5x: MISSED"
                }
            } else {
                ""
            }
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reload

const RELOAD_ROUNDS: usize = 5;

/// Reload duration (all at once, idle) for 4 and 16 workers beside one worker's own start time,
/// with no boot and with a 200 ms simulated boot.
fn reload(rt: &tokio::runtime::Runtime, worker: &PathBuf) -> Res<()> {
    println!("## Graceful reload (all at once): graceful_reload() until the old generation is reaped");
    println!("median of {RELOAD_ROUNDS} reloads (min in brackets); one worker's start = start() of a 1-worker master");
    println!();
    println!("| worker boot | workers | one worker's start | reload | reload / one start | target |");
    println!("|---:|---:|---:|---:|---:|---|");
    for boot in [0u64, 200] {
        let one = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..RELOAD_ROUNDS {
                let master = Master::new(config(worker, 1).env("DROVER_BENCH_BOOT_MS", boot.to_string()))?;
                let t = Instant::now();
                master.start().await?;
                v.push(t.elapsed());
                master.hard_shutdown().await?;
            }
            Ok::<_, Box<dyn std::error::Error>>(v)
        })?;
        let mut one = one;
        let one_start = median(&mut one);
        for n in [4usize, 16] {
            let mut reloads = rt.block_on(async {
                let master = Master::new(config(worker, n).env("DROVER_BENCH_BOOT_MS", boot.to_string()))?;
                master.start().await?;
                let mut v = Vec::new();
                for _ in 0..RELOAD_ROUNDS {
                    let t = Instant::now();
                    master.graceful_reload(None).await?;
                    v.push(t.elapsed());
                }
                master.graceful_shutdown().await?;
                Ok::<_, Box<dyn std::error::Error>>(v)
            })?;
            let r = median(&mut reloads);
            let ratio = r.as_secs_f64() / one_start.as_secs_f64();
            println!(
                "| {boot} ms | {n} | {} | {} ({}) | {ratio:.2}x | {} |",
                fmt(one_start),
                fmt(r),
                fmt(min(&reloads)),
                match (boot > 0, ratio < 1.2) {
                    (false, _) => "",
                    (true, true) => "< 1.2x: met",
                    (true, false) => "< 1.2x: MISSED",
                }
            );
        }
    }
    Ok(())
}

async fn drover_start(worker: &PathBuf, n: usize) -> Res<Duration> {
    let master = Master::new(config(worker, n))?;
    let t = Instant::now();
    master.start().await?;
    let elapsed = t.elapsed();
    master.hard_shutdown().await?;
    Ok(elapsed)
}

/// Spawns `n` copies of the worker in raw mode and waits for one byte from each.
/// `fork`: force std's fork/exec path (as drover's spawn has a pre-exec hook) instead of posix_spawn.
fn raw_start(worker: &PathBuf, n: usize, fork: bool) -> Res<Duration> {
    let t = Instant::now();
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        let mut cmd = Command::new(worker);
        cmd.env("DROVER_BENCH_RAW", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0);
        if fork {
            // SAFETY: the hook runs between fork and exec and does nothing at all.
            unsafe {
                cmd.pre_exec(|| Ok(()));
            }
        }
        children.push(cmd.spawn()?);
    }
    for child in &mut children {
        let mut byte = [0u8; 1];
        child
            .stdout
            .as_mut()
            .ok_or("raw child without a stdout pipe")?
            .read_exact(&mut byte)?;
    }
    let elapsed = t.elapsed();
    for mut child in children {
        drop(child.stdin.take());
        child.wait()?;
    }
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------------------
// IPC

/// The floor: the same frame bounced off the same binary over a Unix socketpair, with blocking
/// `write` and `read` on both sides, no runtime, no JSON decoding, no drover.
fn raw_ipc(worker: &PathBuf) -> Res<()> {
    use std::io::Write;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    println!("## Raw IPC floor: socketpair, blocking write + read on both sides, no drover");
    let (mut ours, theirs) = UnixStream::pair()?;
    let theirs_out: OwnedFd = theirs.try_clone()?.into();
    let theirs_in: OwnedFd = theirs.into();
    let mut child = Command::new(worker)
        .env("DROVER_BENCH_RAW", "echo")
        .stdin(Stdio::from(theirs_in))
        .stdout(Stdio::from(theirs_out))
        .spawn()?;
    let mut samples = Vec::with_capacity(RTT_SAMPLES);
    let mut buf = vec![0u8; 4096];
    for i in 0..RTT_WARMUP + RTT_SAMPLES {
        let line = format!("{{\"type\":\"message\",\"data\":{{\"i\":{i}}}}}\n");
        let t = Instant::now();
        ours.write_all(line.as_bytes())?;
        let mut got = 0;
        while got < line.len() {
            let n = ours.read(&mut buf[got..])?;
            if n == 0 {
                return Err("the raw echo child closed the socket".into());
            }
            got += n;
        }
        let elapsed = t.elapsed();
        if i >= RTT_WARMUP {
            samples.push(elapsed);
        }
    }
    drop(ours);
    child.wait()?;
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!("| measure | result |");
    println!("|---|---:|");
    println!(
        "| raw round trip p50 / p99 ({RTT_SAMPLES} samples) | {} / {} |",
        fmt(p(0.5)),
        fmt(p(0.99))
    );
    Ok(())
}

fn ipc(rt: &tokio::runtime::Runtime, worker: &PathBuf, throughput: bool, busy_poll: Duration) -> Res<()> {
    rt.block_on(async {
        let master = Master::new(config(worker, 1).busy_poll(busy_poll))?;
        master.start().await?;
        let id = master.workers().first().ok_or("no worker after start()")?.id;
        let mut events = master.events();

        println!("| measure | result | target |");
        println!("|---|---:|---|");
        // Round trip: send, the worker echoes, the master's event stream delivers it; first from
        // the runtime's `block_on` future (like code in `#[tokio::main]`), then from a spawned task.
        let samples = round_trips(&master, id, &mut events).await?;
        print_rtt("from block_on", samples);
        let (m, e) = (master.clone(), events);
        let (samples, returned) = tokio::spawn(async move {
            let mut events = e;
            let samples = round_trips(&m, id, &mut events).await;
            (samples, events)
        })
        .await?;
        let mut events = returned;
        print_rtt("from a spawned task", samples?);

        if !throughput {
            master.graceful_shutdown().await?;
            return Ok(());
        }

        // What busy polling costs: CPU of both processes at a steady, modest rate.
        let pid = master.workers().first().ok_or("no worker")?.pid;
        let (master_before, worker_before) = (usage().cpu, proc_cpu_ticks(pid).unwrap_or(0));
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / PACED_RATE));
        for i in 0..PACED_RATE * PACED_SECS {
            tick.tick().await;
            let msg = json!({ "i": i });
            master.send(id, &msg).await?;
            next_message(&mut events).await?;
        }
        let master_cpu = (usage().cpu - master_before).as_secs_f64() / PACED_SECS as f64 * 100.0;
        // SAFETY: sysconf is always safe to call.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let worker_ticks = proc_cpu_ticks(pid).unwrap_or(0).saturating_sub(worker_before) as f64;
        let worker_cpu = worker_ticks / hz / PACED_SECS as f64 * 100.0;
        println!(
            "| CPU at {PACED_RATE} round trips/s for {PACED_SECS} s: master / worker | {master_cpu:.1} % / {worker_cpu:.1} % of a CPU | |"
        );

        // Worker -> master.
        let mut rates = Vec::new();
        let mut burst_dropped = 0;
        for _ in 0..THROUGHPUT_RUNS {
            let t = Instant::now();
            master.send(id, &json!({ "cmd": "burst", "n": BURST })).await?;
            // The subscription is bounded (EVENT_QUEUE_EVENTS): a reader that falls behind the
            // worker reads a count of dropped messages where they were. Counted, and said below.
            let mut expected = 0;
            while expected < BURST {
                match next_message_or_gap(&mut events).await? {
                    Ok(data) => {
                        if data["seq"] != json!(expected) {
                            return Err(format!("burst out of order: expected seq {expected}, got {data}").into());
                        }
                        expected += 1;
                    }
                    Err(dropped) => {
                        burst_dropped += dropped;
                        expected += dropped;
                    }
                }
            }
            rates.push(BURST as f64 / t.elapsed().as_secs_f64());
        }
        print_rate("worker → master (MessageBus, 256 in flight)", &mut rates);
        if burst_dropped > 0 {
            println!(
                "| (worker → master: the bench's `events()` reader fell behind; {burst_dropped} of {} messages dropped by its bounded queue) | | |",
                BURST * THROUGHPUT_RUNS as u64
            );
        }

        // Master -> worker, one `send().await` after another.
        let mut rates = Vec::new();
        for _ in 0..THROUGHPUT_RUNS {
            master.send(id, &json!({ "cmd": "count", "n": BURST })).await?;
            let t = Instant::now();
            for i in 0..BURST {
                master.send(id, &json!({ "seq": i })).await?;
            }
            let done = next_message(&mut events).await?;
            rates.push(BURST as f64 / t.elapsed().as_secs_f64());
            check_counted(&done)?;
        }
        print_rate("master → worker (send().await in a loop)", &mut rates);

        // Master -> worker, 256 sends in flight.
        let mut rates = Vec::new();
        for _ in 0..THROUGHPUT_RUNS {
            master.send(id, &json!({ "cmd": "count", "n": BURST })).await?;
            let t = Instant::now();
            let mut i = 0;
            while i < BURST {
                let end = (i + 256).min(BURST);
                let msgs: Vec<Value> = (i..end).map(|seq| json!({ "seq": seq })).collect();
                let results = futures_util::future::join_all(msgs.iter().map(|m| master.send(id, m))).await;
                for r in results {
                    r?;
                }
                i = end;
            }
            let done = next_message(&mut events).await?;
            rates.push(BURST as f64 / t.elapsed().as_secs_f64());
            check_counted(&done)?;
        }
        print_rate("master → worker (256 sends in flight)", &mut rates);

        master.graceful_shutdown().await?;
        Ok(())
    })
}

/// `RTT_WARMUP + RTT_SAMPLES` echoes; returns the measured ones, sorted.
async fn round_trips(master: &Master, id: u64, events: &mut drover::Events) -> Result<Vec<Duration>, String> {
    let mut samples = Vec::with_capacity(RTT_SAMPLES);
    for i in 0..RTT_WARMUP + RTT_SAMPLES {
        let msg = json!({ "i": i });
        let t = Instant::now();
        master.send(id, &msg).await.map_err(|e| e.to_string())?;
        let data = next_message(events).await.map_err(|e| e.to_string())?;
        let elapsed = t.elapsed();
        if data != msg {
            return Err(format!("echo mismatch: sent {msg}, got {data}"));
        }
        if i >= RTT_WARMUP {
            samples.push(elapsed);
        }
    }
    samples.sort();
    Ok(samples)
}

fn print_rtt(from: &str, samples: Vec<Duration>) {
    let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let (p50, p99) = (p(0.50), p(0.99));
    println!(
        "| round trip {from}: p50 ({RTT_SAMPLES} samples) | {} | < 15 µs: {} |",
        fmt(p50),
        met(p50 < Duration::from_micros(15))
    );
    println!(
        "| round trip {from}: p99 | {} | < 60 µs: {} |",
        fmt(p99),
        met(p99 < Duration::from_micros(60))
    );
    println!(
        "| round trip {from}: p99.9 / max | {} / {} | |",
        fmt(p(0.999)),
        fmt(samples[samples.len() - 1])
    );
}

fn check_counted(done: &Value) -> Res<()> {
    if done["counted"] != json!(BURST) {
        return Err(format!("the worker counted {done}, expected {BURST}").into());
    }
    Ok(())
}

fn print_rate(what: &str, rates: &mut [f64]) {
    rates.sort_by(f64::total_cmp);
    let best = rates[rates.len() - 1];
    let median = rates[rates.len() / 2];
    println!(
        "| {what}, {BURST} msgs, best (median) of {THROUGHPUT_RUNS} | {} msg/s ({}) | > 300,000 msg/s: {} |",
        thousands(best),
        thousands(median),
        met(best > 300_000.0)
    );
}

/// The next user message, or how many the bounded subscription dropped in its place.
async fn next_message_or_gap(events: &mut drover::Events) -> Res<Result<Value, u64>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Err(_) => return Err("no message from the worker within 30 s".into()),
            Ok(None) => return Err("the event stream closed".into()),
            Ok(Some(Event::Message { data, .. })) => return Ok(Ok(data)),
            Ok(Some(Event::Dropped { count })) => return Ok(Err(count)),
            Ok(Some(Event::Exit(exit))) => return Err(format!("the worker exited: {exit}").into()),
            Ok(Some(_)) => {}
        }
    }
}

/// The next user message from the master's event stream (other events are skipped).
async fn next_message(events: &mut drover::Events) -> Res<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Err(_) => return Err("no message from the worker within 30 s".into()),
            Ok(None) => return Err("the event stream closed".into()),
            Ok(Some(Event::Message { data, .. })) => return Ok(data),
            Ok(Some(Event::Exit(exit))) => return Err(format!("the worker exited: {exit}").into()),
            Ok(Some(_)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Idle

fn idle(rt: &tokio::runtime::Runtime, worker: &PathBuf, busy_poll: Duration) -> Res<()> {
    const N: usize = 16;
    let how = if busy_poll.is_zero() {
        String::new()
    } else {
        format!(", busy-polling {} µs (master and workers)", busy_poll.as_micros())
    };
    println!(
        "## Idle: {N} workers STARTED, nothing to do, for {} s{how}",
        IDLE.as_secs()
    );
    rt.block_on(async {
        let master = Master::new(config(worker, N).busy_poll(busy_poll))?;
        master.start().await?;
        let pids: Vec<u32> = master.workers().iter().map(|w| w.pid).collect();
        // Let start-up work settle, then watch.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let workers_before: u64 = pids.iter().filter_map(|&p| proc_cpu_ticks(p)).sum();
        let before = usage();
        tokio::time::sleep(IDLE).await;
        let after = usage();
        let workers_after: u64 = pids.iter().filter_map(|&p| proc_cpu_ticks(p)).sum();
        let cpu = (after.cpu - before.cpu).as_secs_f64() * 1e6;
        println!("| measure | result | target |");
        println!("|---|---:|---|");
        println!(
            "| master CPU time (user+sys, all threads) | {cpu:.0} µs in {} s ({:.4} %) | ~0: {} |",
            IDLE.as_secs(),
            cpu / IDLE.as_secs_f64() / 1e4,
            met(cpu < 2_000.0)
        );
        println!(
            "| master context switches (voluntary / involuntary) | {} / {} | |",
            after.voluntary - before.voluntary,
            after.involuntary - before.involuntary
        );
        // SAFETY: sysconf is always safe to call.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        println!(
            "| CPU time of the {N} workers together | {:.0} ms | |",
            (workers_after.saturating_sub(workers_before)) as f64 / hz * 1e3
        );
        master.graceful_shutdown().await?;
        Ok(())
    })
}

struct Usage {
    cpu: Duration,
    voluntary: i64,
    involuntary: i64,
}

/// This process's CPU time (every thread) and context switches.
fn usage() -> Usage {
    // SAFETY: rusage is plain data, and getrusage fills it for RUSAGE_SELF.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Usage {
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        voluntary: ru.ru_nvcsw,
        involuntary: ru.ru_nivcsw,
    }
}

/// utime + stime of a process, in clock ticks, from `/proc/<pid>/stat`.
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit(')').next()?.split_whitespace();
    // After the command name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn min(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap_or_default()
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1e3)
    }
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}
