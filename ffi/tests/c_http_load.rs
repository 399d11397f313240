//! Zero downtime from C: the C example (`examples/c/master.c` declaring one port with
//! `drover_config_add_listen`, 4 `examples/c/worker.c` serving it from fd 3 and draining their
//! keep-alive connections on STOP) under keep-alive HTTP load while the master reloads (SIGHUP,
//! forwarded to `drover_master_handle_signal`: a graceful reload) and restarts workers (SIGUSR2:
//! `drover_master_restart_worker`). No request may fail, no connection may be refused, and both
//! the old and the new workers must have served. Master and workers are built with
//! AddressSanitizer and LeakSanitizer: an invalid access or a leak in the drain code makes a
//! worker exit non-zero, which the master reports and this test rejects. Loopback only, bounded.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use drover_tests::c::{compile, Linkage};
use drover_tests::http_load::Load;
use drover_tests::EVENT_DEADLINE;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const CONNECTIONS: usize = 20;
const WORKERS: usize = 4;

/// The example master, running, with its stdout and stderr read line by line.
struct ExampleMaster {
    child: tokio::process::Child,
    out: mpsc::UnboundedReceiver<String>,
    err: mpsc::UnboundedReceiver<String>,
    /// Every stdout line read so far.
    seen: Vec<String>,
}

fn lines_of(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl ExampleMaster {
    fn spawn() -> ExampleMaster {
        let master = compile("examples/c/master.c", Linkage::SharedAsan);
        let worker = compile("examples/c/worker.c", Linkage::SharedAsan);
        let mut child = tokio::process::Command::new(master)
            .arg(worker)
            .arg(WORKERS.to_string())
            .env("LISTEN", "127.0.0.1:0")
            // The workers' defaults: a 500 ms idle grace, a 10 s drain timeout. (With
            // IDLE_GRACE_MS=1, closing idle connections at once, this test sees requests fail.)
            .env_remove("IDLE_GRACE_MS")
            .env_remove("DRAIN_TIMEOUT_MS")
            // Inherited by the workers: any invalid access or leak exits with 98.
            .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=98")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the example master runs");
        let out = lines_of(child.stdout.take().expect("stdout"));
        let err = lines_of(child.stderr.take().expect("stderr"));
        ExampleMaster {
            child,
            out,
            err,
            seen: Vec::new(),
        }
    }

    /// Reads stdout until a line `pick` accepts, within the event deadline.
    async fn line<T>(&mut self, what: &str, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.out.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!(
                    "the master exited before printing {what}; it printed:\n{}",
                    self.seen.join("\n")
                ),
                Err(_) => panic!(
                    "no {what} within {EVENT_DEADLINE:?}; the master printed:\n{}",
                    self.seen.join("\n")
                ),
            };
            self.seen.push(line.clone());
            if let Some(found) = pick(&line) {
                return found;
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("the master runs") as libc::pid_t;
        // SAFETY: kill on the pid of our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}

/// The pid in "event: worker 3 (pid 4121) INITIALIZED -> STARTED".
fn started_pid(line: &str) -> Option<u32> {
    if !line.starts_with("event: worker ") || !line.ends_with("-> STARTED") {
        return None;
    }
    line.split("(pid ").nth(1)?.split(')').next()?.parse().ok()
}

/// "hello from worker 3 (pid 4121)"
fn pid_of(body: &str) -> Option<u32> {
    body.split("(pid ").nth(1)?.split(')').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_example_reloads_and_restarts_under_keep_alive_load_without_failing_a_request() {
    let started = std::time::Instant::now();
    let mut master = ExampleMaster::spawn();
    let addr = master
        .line("its address", |l| l.strip_prefix("listening on ").map(str::to_string))
        .await;
    master
        .line("the start", |l| l.starts_with("started 4 workers").then_some(()))
        .await;
    // "worker 1 pid 4121 STARTED"
    let first: BTreeSet<u32> = master
        .seen
        .iter()
        .filter(|l| l.starts_with("worker "))
        .filter_map(|l| l.split(" pid ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(first.len(), WORKERS, "{:?}", master.seen);

    let load = Load::start(&addr, CONNECTIONS, pid_of);
    load.progress(200).await;

    // A graceful reload: a new generation starts, the old one drains while the load goes on.
    master.signal(libc::SIGHUP);
    master.line("the reload", |l| (l == "reloaded").then_some(())).await;
    load.progress(200).await;
    // Restarts by id, one worker at a time.
    for _ in 0..2 {
        master.signal(libc::SIGUSR2);
        master
            .line("a restart", |l| l.starts_with("restarted worker").then_some(()))
            .await;
        load.progress(200).await;
    }
    master.signal(libc::SIGHUP);
    master
        .line("the second reload", |l| (l == "reloaded").then_some(()))
        .await;
    load.progress(200).await;
    let tally = load.finish().await;

    master.signal(libc::SIGTERM);
    master
        .line("the end", |l| (l == "every worker is gone").then_some(()))
        .await;
    let status = tokio::time::timeout(EVENT_DEADLINE, master.child.wait())
        .await
        .expect("the master exits")
        .expect("wait for the master");
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(5), master.out.recv()).await {
        master.seen.push(line);
    }
    let mut stderr = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(5), master.err.recv()).await {
        stderr.push(line);
    }

    let pids: BTreeSet<u32> = tally.by_pid.keys().copied().collect();
    let later: BTreeSet<u32> = master
        .seen
        .iter()
        .filter_map(|l| started_pid(l))
        .filter(|p| !first.contains(p))
        .collect();
    let drains: Vec<&String> = stderr.iter().filter(|l| l.contains("drained")).collect();
    eprintln!(
        "{} requests answered by {} pids in {:?} ({} first-generation, {} started later): {:?}; \
         {} connect errors, {} failed; drains: {drains:?}",
        tally.ok,
        pids.len(),
        started.elapsed(),
        pids.intersection(&first).count(),
        pids.intersection(&later).count(),
        tally.by_pid,
        tally.connect_errors.len(),
        tally.other_errors.len(),
    );
    assert!(
        status.success(),
        "the master exited with {status}:\n{}",
        stderr.join("\n")
    );
    tally.assert_nothing_lost();
    assert!(
        pids.intersection(&first).count() > 0 && pids.intersection(&later).count() > 0,
        "both the first workers and their replacements serve: served {pids:?}, first {first:?}, later {later:?}"
    );
    // 4 first, 4 per reload, 1 per restart: every one of them drained and exited cleanly, ASan
    // and LeakSanitizer included (they exit 98 on any finding).
    let exits: Vec<&String> = master
        .seen
        .iter()
        .filter(|l| l.contains(" exited ") || l.contains(" killed "))
        .collect();
    assert_eq!(exits.len(), 4 + 4 + 4 + 2, "{exits:#?}");
    assert!(
        exits
            .iter()
            .all(|l| l.contains("exited with code 0 in status SHUTTED_DOWN, as asked")),
        "{exits:#?}\n{}",
        stderr.join("\n")
    );
    assert_eq!(drains.len(), exits.len(), "{stderr:#?}");
    assert!(drains.iter().all(|l| !l.contains("drain timeout")), "{drains:#?}");
}
