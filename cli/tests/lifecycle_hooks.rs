//! Issue 19's operations under the `drover` command, with real processes: `drover reconfigure`
//! (Node workers applying and refusing, a TOML file, JSON output), the `preStart` command (run
//! first; a failing one fails the start with no worker spawned), process titles (the master's
//! and the workers' in /proc), and `drover debug` opening a Node worker's inspector (a live one,
//! a distinct port per worker) and refusing a worker that is not Node.
//!
//! Needs `node` on PATH and the addon at `bindings-node/drover.node` (`npm run build` in
//! bindings-node/, as scripts/test.sh does first).

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

fn reconfig_worker() -> String {
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("bindings-node");
    assert!(
        package.join("drover.node").exists(),
        "bindings-node/drover.node is missing: run `npm run build` in bindings-node/ first"
    );
    package
        .join("test-support")
        .join("reconfig-worker.js")
        .display()
        .to_string()
}

/// Two groups: `web`, 2 Node workers with a `preStart` command; `rs`, one Rust test worker.
fn start_two_groups() -> Drover {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let toml = format!(
        "[groups.web]\nscript = {:?}\ncount = 2\npreStart = \"echo ran > pre-start.txt\"\n\n[groups.rs]\nprogram = {:?}\ncount = 1\n",
        reconfig_worker(),
        drover_tests::test_worker().display().to_string(),
    );
    write(dir.path(), "drover.toml", &toml);
    let drover = Drover::start_in(dir, &["-c", "drover.toml"], &[]);
    drover.wait_ready();
    drover
}

fn ctl(drover: &Drover, args: &[&str]) -> (Option<i32>, String, String) {
    let out = drover.ctl_within(args, Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn proc_text(pid: u32, what: &str) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .trim_end_matches(['\0', '\n'])
        .replace('\0', " ")
}

/// The body of `GET path` from the inspector on `port` (which keeps the connection open: read by
/// its Content-Length); panics unless 200.
fn inspector_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the inspector accepts");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).expect("an answer");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(
                head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
                "{head}"
            );
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|n| n.trim().to_string())
                })
                .and_then(|n| n.parse().ok())
                .expect("a Content-Length");
            if body.len() >= length {
                return body[..length].to_string();
            }
        }
    }
}

#[test]
fn reconfigure_pre_start_and_titles() {
    let drover = start_two_groups();
    let pre_start = drover.path("pre-start.txt");
    assert_eq!(std::fs::read_to_string(&pre_start).unwrap_or_default().trim(), "ran");

    // Titles: the master's comm and command line, each worker's (Node rewrites both).
    assert_eq!(proc_text(drover.pid(), "comm"), "drover: master");
    assert_eq!(proc_text(drover.pid(), "cmdline"), "drover: master rs,web");
    let web = drover.worker_pids("web");
    assert_eq!(web.len(), 2);
    // A Node worker sets it when its bus takes the welcome, which may be just after STARTED.
    let titles = || {
        let mut titles: Vec<String> = web.iter().map(|p| proc_text(*p, "cmdline")).collect();
        titles.sort();
        titles
    };
    eventually(|| titles() == ["drover: web #0", "drover: web #1"]);
    assert_eq!(titles(), ["drover: web #0", "drover: web #1"]);
    for pid in &web {
        assert!(proc_text(*pid, "comm").starts_with("drover: web #"), "pid {pid}");
    }
    // A Rust worker on drover's bus sets its comm (its command line is its program's).
    let rs = drover.worker_pids("rs");
    assert_eq!(proc_text(rs[0], "comm"), "drover: rs #0");

    // Applied by every worker, each answer printed; nobody restarted.
    let (code, out, err) = ctl(&drover, &["reconfigure", "web", r#"{"level":2}"#]);
    assert_eq!(code, Some(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, instance) in lines.iter().zip(0..) {
        assert!(line.starts_with(&format!("web instance {instance} (id ")), "{line}");
        assert!(line.ends_with(": applied"), "{line}");
    }
    assert_eq!(drover.worker_pids("web"), web);

    // Refused with the worker's reason: exit 1.
    let (code, out, _) = ctl(
        &drover,
        &["reconfigure", "web", r#"{"refuse":"level must be a number"}"#],
    );
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out.matches(": refused: level must be a number").count(), 2, "{out}");

    // A TOML file, answers as JSON.
    let file = write(drover.dir.path(), "new.toml", "level = 3\n[db]\npool = 8\n");
    let (code, out, err) = ctl(&drover, &["reconfigure", "web", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let acks: Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(acks.as_array().map(Vec::len), Some(2), "{acks}");
    assert!(
        acks.as_array().unwrap().iter().all(|a| a["outcome"] == "applied"),
        "{acks}"
    );

    // The Rust test worker never answers `ignore`: timeout, within the deadline given.
    let (code, out, _) = ctl(
        &drover,
        &["reconfigure", "rs", r#"{"ignore":true}"#, "--timeout", "300ms"],
    );
    assert_eq!(code, Some(1));
    assert!(out.trim().ends_with(": timeout"), "{out}");

    // Bad input: named, exit 2; an unknown group: exit 1, named.
    let (code, _, err) = ctl(&drover, &["reconfigure", "web", "{not json"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("neither JSON nor a readable file"), "{err}");
    let (code, _, err) = ctl(&drover, &["reconfigure", "nosuch", "{}"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("nosuch"), "{err}");
    drover.ctl_ok(&["stop"]);
}

#[test]
fn debug_opens_a_live_inspector_per_node_worker_and_refuses_others() {
    let drover = start_two_groups();
    let mut ports = Vec::new();
    for instance in ["0", "1"] {
        let (code, out, err) = ctl(&drover, &["debug", "web", instance]);
        assert_eq!(code, Some(0), "{out}{err}");
        let url = out.trim();
        assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
        let port: u16 = url["ws://127.0.0.1:".len()..]
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        // Live: the inspector answers its HTTP endpoint.
        let body = inspector_get(port, "/json/version");
        assert!(body.contains("\"Protocol-Version\""), "{body}");
        ports.push(port);
        // A second `debug` finds the inspector already open: the same address.
        let (code, again, _) = ctl(&drover, &["debug", "web", instance]);
        assert_eq!((code, again.trim()), (Some(0), url));
    }
    assert_ne!(ports[0], ports[1], "each worker's inspector has a port of its own");

    // The Rust worker catches no SIGUSR1: refused, not signalled (it still runs).
    let rs = drover.worker_pids("rs");
    let (code, _, err) = ctl(&drover, &["debug", "rs", "0"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("does not catch SIGUSR1"), "{err}");
    assert_eq!(drover.worker_pids("rs"), rs);
    let (code, _, err) = ctl(&drover, &["debug", "web", "7"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no instance 7"), "{err}");
    let (code, _, err) = ctl(&drover, &["debug", "nosuch", "0"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("nosuch"), "{err}");
    drover.ctl_ok(&["stop"]);
}

#[test]
fn a_failing_pre_start_command_fails_the_start_and_spawns_nothing() {
    let worker = drover_tests::test_worker().display().to_string();
    // 5000 bytes of noise first: the error quotes only the last 2048 bytes of stderr.
    let command = r"head -c 5000 /dev/zero | tr '\0' x >&2; echo >&2; echo 'migrations pending' >&2; exit 3";
    let mut drover = Drover::start(
        &["-n", "2", "--name", "api", "--pre-start", command, "--", &worker],
        &[],
    );
    let status = drover.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let transcript = drover.transcript();
    let line = transcript
        .lines()
        .find(|l| l.contains("start failed: the pre-start hook failed:"))
        .unwrap_or_else(|| panic!("no start failure:\n{transcript}"));
    assert!(line.contains("exited with status 3: "), "{line}");
    assert!(line.ends_with("migrations pending"), "{line}");
    assert!(
        line.len() < 2048 + command.len() + 200,
        "the quoted stderr is bounded: {} bytes",
        line.len()
    );
    // No worker was spawned: none was ever INITIALIZED, and drover says it had none to stop.
    assert!(!transcript.contains("spawned"), "a worker was spawned:\n{transcript}");
    assert!(!transcript.contains("pid "), "a worker process existed:\n{transcript}");
}
