//! ECV and the monitor's HTTP API, end to end: a real `drover run` supervising a real Node HTTP
//! worker whose health page the test flips (a flag file), probed over real sockets.
//!
//! Needs `node` on PATH.

mod common;

use common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Generous: a loaded 2-CPU machine runs several of these at once.
const WAIT: Duration = Duration::from_secs(30);

/// A worker serving `/` (always 200 "hello") and `/health` (200 "ok", or 503 "sick" while the
/// file `$FLAG` exists) on `$PORT`.
const WORKER: &str = r#"
const fs = require('fs');
require('http').createServer((req, res) => {
  if (req.url === '/health') {
    const sick = fs.existsSync(process.env.FLAG);
    res.writeHead(sick ? 503 : 200);
    res.end(sick ? 'sick\n' : 'ok\n');
  } else {
    res.end('hello\n');
  }
}).listen(Number(process.env.PORT), '127.0.0.1');
setInterval(() => {}, 1 << 30);
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One HTTP/1.1 request; the status code and the body.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    try_http(addr, method, path, headers, body).expect("connect")
}

/// [`http`], or the error connecting.
fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Waits until GET `path` answers `code` with a body that contains `needle`; the body.
fn wait_for_body(addr: &str, path: &str, code: u16, needle: &str) -> String {
    let end = Instant::now() + WAIT;
    loop {
        let answer = try_http(addr, "GET", path, &[], "");
        if let Ok((got, body)) = &answer {
            if *got == code && body.contains(needle) {
                return body.clone();
            }
        }
        assert!(
            Instant::now() < end,
            "{path} still answers {answer:?}, expected {code} with {needle:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until GET `path` answers `code` (a server not listening yet is waited for too).
fn wait_for(addr: &str, path: &str, code: u16) -> String {
    wait_for_body(addr, path, code, "")
}

/// `drover run -c drover.toml` with one group `web` of the Node worker; `extra` goes in the group.
fn start(extra: &str, top: &str, flag: &Path, port: u16) -> Drover {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "worker.js", WORKER);
    write(
        dir.path(),
        "drover.toml",
        &format!(
            "http = \"127.0.0.1:0\"\n{top}\n[groups.web]\nprogram = \"node\"\nargs = [\"worker.js\"]\nready = \"spawn\"\ncount = 1\nenv = {{ PORT = \"{port}\", FLAG = \"{}\" }}\n{extra}\n",
            flag.display()
        ),
    );
    let drover = Drover::start_in(dir, &["-c", "drover.toml"], &[]);
    drover.wait_ready();
    drover
}

#[test]
fn a_group_marked_down_is_out_of_rotation_while_its_worker_keeps_serving() {
    let port = free_port();
    let flag = std::env::temp_dir().join(format!("drover-ecv-unused-{port}"));
    let drover = start("", "", &flag, port);
    let addr = drover.http_addr();
    let worker = format!("127.0.0.1:{port}");
    wait_for(&worker, "/", 200);
    assert_eq!(wait_for(&addr, "/readyz", 200), "ok\n");
    assert_eq!(http(&addr, "GET", "/ecv", &[], ""), (200, "status=AVAILABLE\n".into()));

    let said = drover.ctl_ok(&["down", "web"]);
    assert!(said.contains("web: out of rotation (marked down by hand)"), "{said}");
    let (code, body) = http(&addr, "GET", "/readyz", &[], "");
    assert_eq!(
        (code, body.as_str()),
        (503, "web: out of rotation (marked down by hand)\n")
    );
    let (code, body) = http(&addr, "GET", "/ecv", &[], "");
    assert_eq!(code, 503);
    assert!(
        body.starts_with("status=OUT_OF_ROTATION\nweb: out of rotation"),
        "{body}"
    );
    // The worker runs on and serves.
    assert_eq!(http(&worker, "GET", "/", &[], ""), (200, "hello\n".into()));
    let status = drover.status();
    assert_eq!(status["groups"][0]["in_rotation"], false);
    assert_eq!(status["groups"][0]["workers"][0]["status"], "STARTED");
    assert!(drover
        .ctl_ok(&["status"])
        .contains("OUT OF ROTATION: marked down by hand"));
    drover.wait_line("out of rotation (marked down by hand); the workers keep running");

    assert!(drover.ctl_ok(&["up", "web"]).contains("web: in rotation"));
    assert_eq!(http(&addr, "GET", "/readyz", &[], ""), (200, "ok\n".into()));
    drover.wait_line("back in rotation");
    let refused = drover.ctl(&["down", "nope"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no group \"nope\""));
}

#[test]
fn the_ecv_monitor_takes_a_group_out_while_its_health_url_fails_and_back_when_it_passes() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("sick");
    let ecv = format!(
        "ecv = {{ url = \"http://127.0.0.1:{port}/health\", validator = \"^ok\", interval = \"200ms\", timeout = \"2s\", failuresBeforeDown = 2 }}"
    );
    let drover = start(&ecv, "", &flag, port);
    let addr = drover.http_addr();
    let worker = format!("127.0.0.1:{port}");
    drover.wait_line("ECV monitor probes http://127.0.0.1:");
    // Until the worker listens, the monitor's probes are refused: out of rotation meanwhile.
    wait_for(&worker, "/health", 200);
    wait_for(&addr, "/readyz", 200);

    std::fs::write(&flag, "").unwrap();
    let why = format!("web: out of rotation (monitor: http://127.0.0.1:{port}/health answered 503, expected 2xx)");
    wait_for_body(&addr, "/readyz", 503, &why);
    assert_eq!(
        wait_for(&addr, "/ecv", 503).lines().next(),
        Some("status=OUT_OF_ROTATION")
    );
    // Out of rotation, never stopped: the same worker answers.
    let pids = drover.worker_pids("web");
    assert_eq!(http(&worker, "GET", "/", &[], ""), (200, "hello\n".into()));

    // Marked down by hand too: a passing probe lifts only the monitor's mark.
    drover.ctl_ok(&["down", "web"]);
    std::fs::remove_file(&flag).unwrap();
    let end = Instant::now() + WAIT;
    loop {
        let status = drover.status();
        let why = status["groups"][0]["out_of_rotation"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if why == "marked down by hand" {
            break;
        }
        assert!(Instant::now() < end, "the monitor's mark stays: {why}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http(&addr, "GET", "/readyz", &[], "").0, 503);
    drover.ctl_ok(&["up", "web"]);
    assert_eq!(wait_for(&addr, "/readyz", 200), "ok\n");
    assert_eq!(drover.worker_pids("web"), pids, "no worker was restarted");
}

#[test]
fn a_bad_ecv_option_is_refused_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "drover.toml",
        "[groups.web]\nprogram = \"sleep\"\nargs = [\"100\"]\necv = { url = \"http://127.0.0.1:1/\", interval = \"10ms\" }\n",
    );
    let out = std::process::Command::new(drover_bin())
        .args(["run", "--check", "-c"])
        .arg(dir.path().join("drover.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":4: [groups.web] `ecv`: ecv `interval`: must be from 100ms to 3600s, got 10 ms"),
        "{stderr}"
    );
}

#[test]
fn the_monitor_api_wants_its_token_and_an_action_wants_it_in_the_header() {
    let token = "0123456789abcdef-test";
    let drover = Drover::start(
        &[
            "--http",
            "127.0.0.1:0",
            "--monitor",
            "--monitor-token",
            token,
            "-n",
            "2",
            "--ready",
            "spawn",
            "--",
            "sleep",
            "1000",
        ],
        &[],
    );
    drover.wait_ready();
    let addr = drover.http_addr();
    drover.wait_line("monitor page: http://127.0.0.1:");
    assert_eq!(http(&addr, "GET", "/api/workers", &[], "").0, 401);
    assert_eq!(
        http(
            &addr,
            "GET",
            "/api/workers",
            &[("x-drover-token", "wrong-token-0000000")],
            ""
        )
        .0,
        403
    );
    assert_eq!(http(&addr, "GET", "/monitor", &[], "").0, 401);
    assert_eq!(http(&addr, "GET", "/monitor?token=nope", &[], "").0, 403);
    let down = r#"{"cmd":"down","group":"sleep"}"#;
    let cookie = format!("drover_monitor={token}");
    // A cross-site form carries the cookie, never the header: refused.
    assert_eq!(http(&addr, "POST", "/api/action", &[("cookie", &cookie)], down).0, 403);
    assert_eq!(
        http(&addr, "POST", "/groups/sleep/down", &[("cookie", &cookie)], "").0,
        403
    );
    assert_eq!(http(&addr, "GET", "/readyz", &[], "").0, 200, "nothing was marked down");

    let (code, body) = http(&addr, "GET", "/api/workers", &[("cookie", &cookie)], "");
    assert_eq!(code, 200);
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["groups"][0]["workers"].as_array().unwrap().len(), 2);

    let (code, body) = http(&addr, "POST", "/groups/sleep/down", &[("x-drover-token", token)], "");
    assert_eq!(code, 200, "{body}");
    assert_eq!(http(&addr, "GET", "/readyz", &[], "").0, 503);
    let up = r#"{"cmd":"up","group":"sleep"}"#;
    assert_eq!(
        http(&addr, "POST", "/api/action", &[("x-drover-token", token)], up).0,
        200
    );
    assert_eq!(http(&addr, "GET", "/readyz", &[], "").0, 200);
    // Only the monitor's actions; a bad request and an oversized one say why.
    let stop = r#"{"cmd":"stop","hard":true}"#;
    let (code, body) = http(&addr, "POST", "/api/action", &[("x-drover-token", token)], stop);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("the monitor takes reload, scale, restart, down and up"),
        "{body}"
    );
    assert_eq!(
        http(&addr, "POST", "/api/action", &[("x-drover-token", token)], "{").0,
        400
    );
    let (code, _) = http(&addr, "POST", "/groups/nope/down", &[("x-drover-token", token)], "");
    assert_eq!(code, 409);
    let huge = format!(r#"{{"cmd":"up","group":"{}"}}"#, "x".repeat(70 * 1024));
    assert_eq!(
        http(&addr, "POST", "/api/action", &[("x-drover-token", token)], &huge).0,
        413
    );
    assert_eq!(drover.worker_pids("sleep").len(), 2, "both workers still run");
}

#[test]
fn the_monitor_is_off_by_default_and_refused_on_a_public_address() {
    let drover = Drover::start(
        &["--http", "127.0.0.1:0", "--ready", "spawn", "--", "sleep", "1000"],
        &[],
    );
    drover.wait_ready();
    let addr = drover.http_addr();
    let (code, body) = http(&addr, "GET", "/monitor", &[], "");
    assert_eq!(code, 404);
    assert!(body.contains("the monitor is off"), "{body}");
    assert_eq!(http(&addr, "POST", "/groups/sleep/down", &[], "").0, 404);

    let out = std::process::Command::new(drover_bin())
        .args(["run", "--check", "--http", "0.0.0.0:0", "--monitor", "--", "sleep", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("--monitor-public"),
        "{stderr}"
    );
    let out = std::process::Command::new(drover_bin())
        .args([
            "run",
            "--check",
            "--http",
            "0.0.0.0:0",
            "--monitor",
            "--monitor-public",
            "--",
            "sleep",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(drover_bin())
        .args([
            "run",
            "--check",
            "--monitor",
            "--monitor-token",
            "short",
            "--http",
            "127.0.0.1:0",
            "--",
            "sleep",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 characters"));
}

/// A health page the test serves itself, always answering 503; its address.
fn failing_health_page() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nconnection: close\r\n\r\nsick\n");
        }
    });
    addr
}

#[test]
fn a_reload_applies_an_added_or_removed_ecv_key_and_keeps_an_unchanged_monitor() {
    let health = failing_health_page();
    let dir = tempfile::tempdir().unwrap();
    let toml = |ecv: &str| {
        format!(
            "http = \"127.0.0.1:0\"\n[groups.web]\nprogram = \"sleep\"\nargs = [\"1000\"]\nready = \"spawn\"\n{ecv}\n"
        )
    };
    write(dir.path(), "drover.toml", &toml(""));
    let drover = Drover::start_in(dir, &["-c", "drover.toml"], &[]);
    drover.wait_ready();
    let addr = drover.http_addr();
    assert_eq!(http(&addr, "GET", "/readyz", &[], "").0, 200);

    let ecv = format!("ecv = {{ url = \"http://{health}/health\", interval = \"100ms\" }}");
    write(drover.dir.path(), "drover.toml", &toml(&ecv));
    drover.ctl_ok(&["reload", "web"]);
    drover.wait_line(&format!("ECV monitor now probes http://{health}/health every 100ms"));
    wait_for_body(
        &addr,
        "/readyz",
        503,
        &format!("web: out of rotation (monitor: http://{health}/health answered 503, expected 2xx)"),
    );

    // Unchanged: the monitor runs on (no new line); removed: its mark goes with it.
    drover.ctl_ok(&["reload", "web"]);
    assert_eq!(drover.count_lines("ECV monitor now probes"), 1);
    write(drover.dir.path(), "drover.toml", &toml(""));
    drover.ctl_ok(&["reload", "web"]);
    drover.wait_line("ECV monitor removed");
    assert_eq!(wait_for(&addr, "/readyz", 200), "ok\n");
}
