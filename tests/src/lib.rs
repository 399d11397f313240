//! Helpers shared by drover's real-process tests.

pub mod c;
pub mod http_load;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use drover::{Event, Events, WorkerExit, WorkerId};

/// How long a test waits for an event it expects: generous (a loaded machine, valgrind), since
/// it is only reached when something is wrong.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(30);

/// A binary of the workspace's target dir (`target/debug/<name>`), found from the running test's
/// own path (`target/debug/deps/<test>`), so it works whatever `CARGO_TARGET_DIR` is.
pub fn target_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    dir.join(name)
}

/// The test worker binary built from this package.
pub fn test_worker() -> PathBuf {
    target_bin("drover-test-worker")
}

/// A master config of `count` test workers named `name`, with the tests' deadlines: 10 s to start
/// (a loaded machine), then 2 s to stop and to quit and 500 ms from SIGTERM to SIGKILL, so that a
/// worker that ignores everything is ended quickly.
pub fn test_config(name: &str, count: usize) -> drover::MasterConfig {
    let mut c = drover::MasterConfig::program(test_worker()).count(count).name(name);
    c.timeouts = drover::Timeouts {
        start: Duration::from_secs(10),
        stop: Duration::from_secs(2),
        quit: Duration::from_secs(2),
        kill: Duration::from_millis(500),
    };
    c
}

/// Whether a process with this pid exists (zombies count as existing).
pub fn pid_exists(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Whether `pid` is gone or only a zombie that is not ours (its parent is init or a subreaper).
pub fn pid_is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state is the field after the parenthesised command name.
            let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// Polls `cond` until it holds or `deadline` passes. For conditions no event announces
/// (another process's death); the deadline is generous, the poll interval short.
pub async fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// The next event of a master, within [`EVENT_DEADLINE`].
pub async fn next_event(events: &mut Events) -> Event {
    next_event_by(tokio::time::Instant::now() + EVENT_DEADLINE, events).await
}

/// Waits for the first event `pick` accepts (passing over the others), within [`EVENT_DEADLINE`].
pub async fn next_matching<T>(events: &mut Events, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    loop {
        if let Some(found) = pick(&next_event_by(deadline, events).await) {
            return found;
        }
    }
}

/// The next message from worker `id`, within [`EVENT_DEADLINE`].
pub async fn next_message_from(events: &mut Events, id: WorkerId) -> serde_json::Value {
    next_matching(events, |e| match e {
        Event::Message { id: from, data, .. } if *from == id => Some(data.clone()),
        _ => None,
    })
    .await
}

/// Sends `message` to worker `id` and returns its next message (its answer).
pub async fn ask(
    master: &drover::Master,
    events: &mut Events,
    id: WorkerId,
    message: serde_json::Value,
) -> serde_json::Value {
    master.send(id, &message).await.expect("send");
    next_message_from(events, id).await
}

/// The next exit of any worker, within [`EVENT_DEADLINE`].
pub async fn next_exit(events: &mut Events) -> WorkerExit {
    next_matching(events, |e| match e {
        Event::Exit(exit) => Some(exit.clone()),
        _ => None,
    })
    .await
}

/// The next exit of worker `id`, within [`EVENT_DEADLINE`].
pub async fn next_exit_of(events: &mut Events, id: WorkerId) -> WorkerExit {
    next_matching(events, |e| match e {
        Event::Exit(exit) if exit.id == id => Some(exit.clone()),
        _ => None,
    })
    .await
}

async fn next_event_by(deadline: tokio::time::Instant, events: &mut Events) -> Event {
    tokio::time::timeout_at(deadline, events.recv())
        .await
        .unwrap_or_else(|_| panic!("the expected event did not arrive within {EVENT_DEADLINE:?}"))
        .expect("the event stream stays open")
}

/// Open fds of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Children of this process that are zombies.
pub fn zombie_children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut zombies = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return zombies;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let mut fields = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        let state = fields.next();
        let ppid = fields.next();
        if state == Some("Z") && ppid == Some(me.as_str()) {
            zombies.push(pid);
        }
    }
    zombies
}

/// Connects to `addr` and reads the one line the test worker answers a connection with: its pid.
/// Blocking; from async code, run it with `spawn_blocking`.
pub fn ask_pid(addr: &str) -> std::io::Result<u32> {
    use std::io::BufRead;
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    line.trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("bad answer {line:?}")))
}

/// Runs `drover-test-master` with `count` workers, each with a grandchild, and returns the running
/// master and every worker's and grandchild's pid (from the one JSON line it prints).
pub fn spawn_test_master(count: usize) -> (std::process::Child, Vec<u32>) {
    spawn_test_master_with(count, &[])
}

/// [`spawn_test_master`] with more arguments for it (`restart-and-exit`).
pub fn spawn_test_master_with(count: usize, more: &[&str]) -> (std::process::Child, Vec<u32>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(target_bin("drover-test-master"))
        .arg(count.to_string())
        .args(more)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("test master runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("pids line");
    let pids: serde_json::Value = serde_json::from_str(&line).expect("json line");
    let all: Vec<u32> = ["workers", "grandchildren"]
        .iter()
        .flat_map(|k| {
            pids[k]
                .as_array()
                .expect("array")
                .iter()
                .map(|p| p.as_u64().expect("pid") as u32)
        })
        .collect();
    assert_eq!(all.len(), 2 * count, "{line}");
    (child, all)
}

/// A `redis-server` of a test's own, on a free port, saving nothing, stopped when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<std::process::Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one and waits until it answers PING; `None`, after a loud SKIP line naming why,
    /// when `redis-server` is not installed (`scripts/test.sh` installs it where it can).
    pub fn start() -> Option<RedisServer> {
        if std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!(
                "SKIP: the Redis backend's tests did not run: `redis-server` is not installed \
                 (apt-get install redis-server; scripts/test.sh does it when root)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("drover-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut server = RedisServer { child: None, port, dir };
        server.restart();
        Some(server)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Sends one command (RESP, over a connection of its own) and returns the first line of the
    /// answer, e.g. `+OK`.
    pub fn command(&self, args: &[&str]) -> String {
        use std::io::{BufRead, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("redis answers");
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(request.as_bytes()).expect("redis takes a command");
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).expect("redis answers");
        line.trim_end().to_string()
    }

    /// Stops the server (SIGKILL) and waits for it: the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: it saves nothing) and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        let deadline = Instant::now() + EVENT_DEADLINE;
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let mut pong = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut pong).is_ok() && &pong == b"+PONG\r\n" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where a test's master keeps its store: in itself, or in a Redis server.
#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// The default.
    Embedded,
    /// This server's URL, under this prefix.
    Redis {
        /// `redis://...`.
        url: String,
        /// The keys' prefix.
        prefix: String,
    },
}

impl StoreBackend {
    /// `config` with its store here.
    pub fn apply(&self, mut config: drover::MasterConfig) -> drover::MasterConfig {
        if let StoreBackend::Redis { url, prefix } = self {
            config.store.redis = Some(drover::store::redis::RedisConfig {
                url: url.clone(),
                prefix: prefix.clone(),
            });
        }
        config
    }
}

/// A master's events for tests of the shared store (tests/store.rs, store_redis.rs), with the store changes workers reported kept aside while waiting for
/// answers (they race with the answers: nothing read may be lost).
pub struct StoreProbe {
    /// The master's events.
    pub events: Events,
    changes: std::collections::VecDeque<(u64, serde_json::Value)>,
}

impl StoreProbe {
    /// Reads `master`'s events from now on.
    pub fn new(master: &drover::Master) -> StoreProbe {
        StoreProbe {
            events: master.events(),
            changes: Default::default(),
        }
    }

    /// Has worker `id` call `drover.store.OP` with `args`; its answer (`{"response": ...}` or
    /// `{"request_error": ...}`).
    pub async fn store(
        &mut self,
        master: &drover::Master,
        id: u64,
        op: &str,
        args: serde_json::Value,
    ) -> serde_json::Value {
        let name = format!("drover.store.{op}");
        master
            .send(
                id,
                &serde_json::json!({"cmd": "request", "to": "master", "name": name, "args": args}),
            )
            .await
            .unwrap();
        let changes = &mut self.changes;
        next_matching(&mut self.events, |e| match e {
            Event::Message { id: from, data, .. } => {
                if let Some(change) = data.get("changed") {
                    changes.push_back((*from, change.clone()));
                    return None;
                }
                if *from != id {
                    return None;
                }
                ["response", "request_error"]
                    .iter()
                    .find(|k| data.get(**k).is_some())
                    .map(|k| serde_json::json!({ *k: data[*k].clone() }))
            }
            _ => None,
        })
        .await
    }

    /// The next change worker `id` reported.
    pub async fn next_change(&mut self, id: u64) -> serde_json::Value {
        if let Some(at) = self.changes.iter().position(|(from, _)| *from == id) {
            return self.changes.remove(at).map(|(_, c)| c).unwrap_or_default();
        }
        next_matching(&mut self.events, |e| match e {
            Event::Message { id: from, data, .. } if *from == id => data.get("changed").cloned(),
            _ => None,
        })
        .await
    }
}

/// Starts a master on `config` whose worker reports its warm-up (a message `{"warmup": ...}`,
/// as the test workers and the example workers send it), and returns that report, checked to
/// come before the worker's STARTED; the master is shut down after.
pub async fn warmup_report_before_started(config: drover::MasterConfig) -> serde_json::Value {
    let master = drover::Master::new(config).expect("a valid config");
    let mut events = master.events();
    master.start().await.expect("the worker starts, warmed or not");
    let report = next_matching(&mut events, |e| match e {
        Event::Message { data, .. } if data.get("warmup").is_some() => Some(Ok(data["warmup"].clone())),
        Event::Status {
            to: drover::WorkerStatus::Started,
            ..
        } => Some(Err(())),
        _ => None,
    })
    .await
    .expect("the warm-up report comes before STARTED");
    master.graceful_shutdown().await.expect("shutdown");
    report
}

/// Starts a master on `config` whose example worker prints how its warm-up went (a line with
/// "warmed up"), and returns that line; the master is shut down after.
pub async fn example_warm_up_line(mut config: drover::MasterConfig) -> String {
    config.capture_output = true;
    let master = drover::Master::new(config).expect("a valid config");
    let mut output = master.output();
    master.start().await.expect("the example worker starts");
    let line = tokio::time::timeout(EVENT_DEADLINE, async {
        while let Some(line) = output.recv().await {
            if line.line.contains("warmed up") {
                return line.line;
            }
        }
        String::from("(output ended)")
    })
    .await
    .expect("the worker says how its warm-up went");
    master.graceful_shutdown().await.expect("shutdown");
    line
}

/// A TCP socket listening on a port, as `/proc/net/tcp` and `tcp6` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListeningSocket {
    /// Its inode (as in `/proc/PID/fd/N -> socket:[INODE]`).
    pub inode: u64,
    /// Connections waiting in its accept queue (`rx_queue` of a LISTEN line).
    pub queued: usize,
}

/// The TCP sockets listening on `port` in this network namespace (several with `SO_REUSEPORT`).
pub fn listening_sockets(port: u16) -> Vec<ListeningSocket> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = cols
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // State 0A is LISTEN.
            if local_port != Some(port) || cols.get(3) != Some(&"0A") {
                continue;
            }
            let queued = cols
                .get(4)
                .and_then(|q| q.split(':').nth(1))
                .and_then(|r| usize::from_str_radix(r, 16).ok())
                .unwrap_or(0);
            if let Some(inode) = cols.get(9).and_then(|i| i.parse().ok()) {
                found.push(ListeningSocket { inode, queued });
            }
        }
    }
    found
}
