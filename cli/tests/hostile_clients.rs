//! Clients that connect and then say nothing, or half a request: a slow-loris crowd on `/health`,
//! a thousand idle control connections. drover's fds are capped (`MAX_CONNECTIONS` each), waiting
//! clients time out, and `drover status`, respawns and a fresh `/health` keep working.
//!
//! Each drover here runs under a hard fd limit the attack exceeds, so without the caps it would run
//! out of fds (and a client talking to it would wait forever: `ctl_within` bounds that).

mod common;

use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// What the attacks may cost drover in fds beyond its baseline: a cap, plus slack.
const HTTP_CAP: usize = 128;
const CONTROL_CAP: usize = 64;
const SLACK: usize = 16;

/// A GET that may be refused while the endpoint is full: retried until 200 or `DEADLINE`.
fn health_eventually(addr: &str) -> Duration {
    let began = Instant::now();
    while began.elapsed() < DEADLINE {
        if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(stream, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if response.starts_with("HTTP/1.1 200") {
                return began.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("/health did not answer 200 within {DEADLINE:?}");
}

#[test]
fn slow_loris_http_clients_do_not_stop_status_respawns_or_health() {
    raise_own_fd_limit();
    let worker = test_worker();
    // 220 fds and no more: 300 held connections would take them all.
    let drover = Drover::start_with(
        &[
            "-n",
            "2",
            "--name",
            "web",
            "--restart",
            "always",
            "--http",
            "127.0.0.1:0",
            "--",
            worker.to_str().unwrap(),
        ],
        &[],
        |cmd| limit_fds(cmd, 220, 220),
    );
    let addr = drover.http_addr();
    drover.wait_ready();
    let pid = drover.pid();
    let (fds_before, rss_before) = (fd_count(pid), rss_kib(pid));

    let mut held = Vec::new();
    for _ in 0..300 {
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect (the kernel's backlog takes it)");
        let _ = stream.write_all(b"GET /hea");
        held.push(stream);
    }
    // Every connection past the cap is refused at once, and said so.
    drover.wait_line(&format!("{} HTTP connection(s) refused so far", 128));
    let out = drover.ctl_within(&["status", "--json"], DEADLINE);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (fds_during, rss_during) = (fd_count(pid), rss_kib(pid));
    eprintln!("slow-loris x300: drover fds {fds_before} -> {fds_during}, RSS {rss_before} -> {rss_during} KiB");
    assert!(
        fds_during <= fds_before + HTTP_CAP + SLACK,
        "fds {fds_before} -> {fds_during} under 300 slow-loris connections"
    );

    // A worker killed now is respawned: the master still has fds for it.
    let victim = drover.worker_pids("web")[0];
    // SAFETY: kill on a worker pid of our drover.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    assert!(
        eventually(|| {
            let pids = drover.worker_pids("web");
            pids.len() == 2 && !pids.contains(&victim)
        }),
        "no respawn after kill -9 under the attack\n{}",
        drover.transcript()
    );
    // The header timeout frees the slots: a fresh /health answers while the attackers stay connected.
    let waited = health_eventually(&addr);
    eprintln!("/health answered after {waited:?}");
    // A request head over 16 KiB is refused, not buffered.
    let mut big = std::net::TcpStream::connect(&addr).expect("connect");
    big.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = write!(big, "GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let mut response = String::new();
    let _ = big.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 431"), "{response:?}");
    assert!(
        eventually(|| fd_count(pid) <= fds_before + SLACK),
        "the held connections were closed"
    );
    eprintln!(
        "after the header timeout: drover fds {}, RSS {} KiB",
        fd_count(pid),
        rss_kib(pid)
    );
    drop(held);
    let mut drover = drover;
    drover.ctl_ok(&["stop"]);
    drover.wait_exit(DEADLINE);
}

#[test]
fn a_thousand_idle_control_connections_do_not_stop_status() {
    let own = raise_own_fd_limit();
    let attackers = 1000.min(own.saturating_sub(64) as usize);
    let worker = test_worker();
    // 400 fds: 1,000 held connections would take them all.
    let drover = Drover::start_with(
        &["-n", "1", "--name", "web", "--", worker.to_str().unwrap()],
        &[],
        |cmd| limit_fds(cmd, 400, 400),
    );
    drover.wait_ready();
    let pid = drover.pid();
    let (fds_before, rss_before) = (fd_count(pid), rss_kib(pid));
    let mut held: Vec<_> = (0..attackers)
        .map(|_| std::os::unix::net::UnixStream::connect(&drover.socket).expect("connect"))
        .collect();
    let held_last = held.pop().expect("one connection at least");
    let began = Instant::now();
    let out = drover.ctl_within(&["status", "--json"], DEADLINE);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answered = began.elapsed();
    let (fds_during, rss_during) = (fd_count(pid), rss_kib(pid));
    eprintln!(
        "{attackers} idle control connections: status answered in {answered:?}; drover fds {fds_before} -> {fds_during}, RSS {rss_before} -> {rss_during} KiB"
    );
    assert!(
        fds_during <= fds_before + CONTROL_CAP + SLACK,
        "fds {fds_before} -> {fds_during} under {attackers} idle control connections"
    );
    // An evicted or timed-out connection is closed, not left hanging: most of them read EOF now.
    let mut closed = 0;
    for mut stream in held.into_iter().take(attackers - CONTROL_CAP) {
        stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        if matches!(stream.read(&mut [0u8; 64]), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed > 0, "no idle connection was closed");
    // One that kept its slot is told, after the request timeout, why it is closed.
    let mut last = held_last;
    last.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut answer = String::new();
    let _ = last.read_to_string(&mut answer);
    assert!(answer.contains("no request within 5s"), "{answer:?}");
    let mut drover = drover;
    drover.ctl_ok(&["stop"]);
    drover.wait_exit(DEADLINE);
}
