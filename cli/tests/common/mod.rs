//! The harness of the `drover` command's end-to-end tests: a real `drover run` with its stdout read
//! line by line, the control commands run as real processes, and the test worker as the program.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous: a loaded 2-core machine runs several of these at once.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The `drover` binary under test.
pub fn drover_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drover"))
}

pub use drover_tests::test_worker;

#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    closed: bool,
}

type Shared = Arc<(Mutex<Lines>, Condvar)>;

fn collect(stream: impl Read + Send + 'static, gate: Option<std::sync::mpsc::Receiver<()>>) -> Shared {
    let shared: Shared = Arc::default();
    let writer = shared.clone();
    std::thread::spawn(move || {
        if let Some(gate) = gate {
            let _ = gate.recv();
        }
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let (lock, cv) = &*writer;
            lock.lock().unwrap().lines.push(line);
            cv.notify_all();
        }
        let (lock, cv) = &*writer;
        lock.lock().unwrap().closed = true;
        cv.notify_all();
    });
    shared
}

/// A running `drover run`.
pub struct Drover {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    stdout: Shared,
    stderr: Shared,
    resume: Option<std::sync::mpsc::Sender<()>>,
}

impl Drover {
    /// `drover run --socket DIR/ctl.sock ARGS...` with `env` added, in a fresh directory.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Drover {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Drover::start_in(dir, args, env)
    }

    pub fn start_in(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Drover {
        Drover::spawn(dir, args, env, false, |_| {})
    }

    /// Like `start`, with `customize` applied to the command before it is spawned.
    pub fn start_with(args: &[&str], env: &[(&str, &str)], customize: impl FnOnce(&mut Command)) -> Drover {
        Drover::spawn(
            tempfile::tempdir().expect("a temporary directory"),
            args,
            env,
            false,
            customize,
        )
    }

    /// Like `start`, but nobody reads drover's stdout until [`Drover::resume_reading`]: a
    /// terminal that does not keep up.
    pub fn start_unread(args: &[&str]) -> Drover {
        Drover::spawn(tempfile::tempdir().unwrap(), args, &[], true, |_| {})
    }

    pub fn resume_reading(&mut self) {
        if let Some(tx) = self.resume.take() {
            let _ = tx.send(());
        }
    }

    fn spawn(
        dir: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &str)],
        paused: bool,
        customize: impl FnOnce(&mut Command),
    ) -> Drover {
        let socket = dir.path().join("ctl.sock");
        let mut cmd = Command::new(drover_bin());
        cmd.arg("run").arg("--socket").arg(&socket).args(args);
        cmd.current_dir(dir.path());
        cmd.env_remove("NOTIFY_SOCKET").env_remove("DROVER_SOCKET");
        // Lines as they were before timestamps: the tests match their starts. A test of the
        // timestamps passes `--timestamps always` (the flag wins over the environment).
        cmd.env("DROVER_TIMESTAMPS", "never").env_remove("JOURNAL_STREAM");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        customize(&mut cmd);
        let mut child = cmd.spawn().expect("drover starts");
        let (resume, gate) = if paused {
            let (tx, rx) = std::sync::mpsc::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let stdout = collect(child.stdout.take().expect("piped"), gate);
        // Not piped when `customize` sent it elsewhere (a terminal): then nothing is collected.
        let stderr = match child.stderr.take() {
            Some(stream) => collect(stream, None),
            None => Arc::default(),
        };
        Drover {
            child,
            dir,
            socket,
            stdout,
            stderr,
            resume,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Everything printed so far, stdout then stderr.
    pub fn transcript(&self) -> String {
        let out = self.stdout.0.lock().unwrap().lines.join("\n");
        let err = self.stderr.0.lock().unwrap().lines.join("\n");
        format!("--- stdout\n{out}\n--- stderr\n{err}")
    }

    fn wait_in(&self, which: &Shared, what: &str, pred: impl Fn(&str) -> bool, within: Duration) -> String {
        let end = Instant::now() + within;
        let (lock, cv) = &**which;
        let mut guard = lock.lock().unwrap();
        loop {
            if let Some(line) = guard.lines.iter().find(|l| pred(l)) {
                return line.clone();
            }
            let now = Instant::now();
            if now >= end || guard.closed {
                drop(guard);
                panic!("no line {what} within {within:?}\n{}", self.transcript());
            }
            guard = cv.wait_timeout(guard, end - now).unwrap().0;
        }
    }

    /// Waits for a stdout line containing `needle`; returns it.
    pub fn wait_line(&self, needle: &str) -> String {
        self.wait_in(
            &self.stdout,
            &format!("containing {needle:?}"),
            |l| l.contains(needle),
            DEADLINE,
        )
    }

    /// Waits for a stdout line for which `pred` holds.
    pub fn wait_line_where(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_in(&self.stdout, what, pred, DEADLINE)
    }

    /// Waits for a stderr line containing `needle`.
    /// (After drover exits, for its last words.)
    pub fn wait_stderr(&self, needle: &str) -> String {
        self.wait_in(
            &self.stderr,
            &format!("on stderr containing {needle:?}"),
            |l| l.contains(needle),
            DEADLINE,
        )
    }

    /// How many stdout lines contain `needle` now.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.stdout
            .0
            .lock()
            .unwrap()
            .lines
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until every group reported STARTED.
    pub fn wait_ready(&self) {
        self.wait_line("drover: every group is STARTED");
    }

    /// `drover ARGS... --socket THIS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(drover_bin())
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("the drover client runs")
    }

    /// `ctl`, but a client still waiting after `within` is killed and the test fails: against
    /// a drover that accepts nothing, the client would wait forever.
    pub fn ctl_within(&self, args: &[&str], within: Duration) -> Output {
        let mut child = Command::new(drover_bin())
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the drover client runs");
        let end = Instant::now() + within;
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("drover {args:?} got no answer within {within:?}\n{}", self.transcript());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().expect("the client's output")
    }

    /// `ctl`, asserting success; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "drover {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.transcript()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `drover status --json`.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ctl_ok(&["status", "--json"])).expect("status --json is JSON")
    }

    /// Pids of the live workers of `group`, by id order.
    pub fn worker_pids(&self, group: &str) -> Vec<u32> {
        let status = self.status();
        let groups = status["groups"].as_array().expect("groups");
        let g = groups.iter().find(|g| g["name"] == group).expect("the group is listed");
        g["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .filter(|w| w["exit"].is_null())
            .map(|w| w["pid"].as_u64().expect("pid") as u32)
            .collect()
    }

    /// Asks worker `id` of `group` (the test worker) to spawn a child of its own; returns its pid.
    pub fn spawn_grandchild(&self, group: &str, id: u64) -> u32 {
        self.ctl_ok(&["send", group, &format!("id:{id}"), r#"{"cmd":"spawn-grandchild"}"#]);
        let line = self.wait_line("message: {\"grandchild\":");
        line.rsplit(':')
            .next()
            .and_then(|n| n.trim_end_matches('}').parse().ok())
            .unwrap_or_else(|| panic!("no grandchild pid in {line:?}"))
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid() as libc::pid_t, signal) }, 0);
    }

    /// Waits for drover to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= end {
                panic!("drover did not exit within {within:?}\n{}", self.transcript());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address printed by `--http 127.0.0.1:0`.
    pub fn http_addr(&self) -> String {
        let line = self.wait_line("http listening on ");
        line.split("http listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("an address")
            .to_string()
    }
}

impl Drop for Drover {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A process a test started, SIGKILLed when the test ends, passed or failed.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A GET over plain HTTP/1.1; returns the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to drover's HTTP endpoint");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// How many fds process `pid` has open.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Resident memory of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Raises this test process's soft fd limit to its hard limit (for tests that open many
/// connections); returns the new soft limit.
pub fn raise_own_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid pointer to a local rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Gives the process `cmd` spawns these fd limits (set between fork and exec).
pub fn limit_fds(cmd: &mut Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// The value of `series` (name and labels, exactly) in Prometheus text.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Polls `cond` (for what no event announces: another process's death) until `DEADLINE`.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// `sh -c SCRIPT` running the test worker at its end, as `drover run` arguments.
pub fn sh_worker(prelude: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("{prelude}\nexec {}", test_worker().display()),
    ]
}

/// Writes a file in `dir`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path
}

/// A pseudo-terminal: its master side (what a terminal emulator reads and types into) and its
/// slave side (what a program writes to, as to a terminal).
pub fn open_pty() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: posix_openpt, grantpt, unlockpt and ptsname_r on the fd just opened; the fds are
    // owned by the OwnedFds made from them.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let name = std::ffi::CStr::from_ptr(name.as_ptr()).to_owned();
        let slave = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(slave >= 0, "open the terminal's slave side");
        (
            std::fs::File::from(OwnedFd::from_raw_fd(master)),
            OwnedFd::from_raw_fd(slave),
        )
    }
}
