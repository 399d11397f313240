//! The log of `drover run`, end to end: `drover logs` (tail and follow) from the master's ring and
//! its bound, timestamps, JSON levels and exit fields, journald priorities, the log file and its
//! rotation, and a progress line erased before other lines on a terminal.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn run_args<'a>(head: &[&'a str], program: &'a [String]) -> Vec<&'a str> {
    let mut args: Vec<&str> = head.to_vec();
    args.push("--");
    args.extend(program.iter().map(String::as_str));
    args
}

/// `drover run -n 1 --name web EXTRA... -- PROGRAM...`.
fn web(extra: &[&str], program: &[String]) -> Drover {
    let mut head = vec!["-n", "1", "--name", "web"];
    head.extend_from_slice(extra);
    Drover::start(&run_args(&head, program), &[])
}

/// Lines of a `drover logs -f` as they come, read on a thread of their own.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle` from `rx`.
fn expect_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let end = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no line containing {needle:?}; got {seen:#?}");
}

#[test]
fn drover_logs_prints_the_recent_lines_of_a_group_and_follows_new_ones() {
    let program = sh_worker("echo \"first of $DROVER_WORKER_ID\"; echo \"second of $DROVER_WORKER_ID\"; echo bad >&2");
    let drover = Drover::start(&run_args(&["-n", "2", "--name", "web"], &program), &[]);
    drover.wait_ready();
    drover.wait_line("second of 2");
    drover.wait_line("second of 1");

    let all = drover.ctl_ok(&["logs", "--lines", "10000"]);
    assert!(
        all.contains("drover: containment") || all.contains("drover: workers are contained"),
        "{all}"
    );
    assert!(all.contains("] first of 1") && all.contains("] second of 2"), "{all}");
    assert!(all.contains("stderr] bad"), "{all}");
    // As printed: the same lines, in the same order.
    let printed: Vec<String> = drover
        .transcript()
        .lines()
        .filter(|l| l.contains("] first of 1") || l.contains("] second of 1"))
        .map(str::to_string)
        .collect();
    let logged: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("] first of 1") || l.contains("] second of 1"))
        .collect();
    assert_eq!(logged, printed);

    // --lines N: the last N lines.
    let last = drover.ctl_ok(&["logs", "web", "--lines", "2"]);
    assert_eq!(last.lines().count(), 2, "{last}");
    let web = drover.ctl_ok(&["logs", "web", "--lines", "10000"]);
    assert!(
        web.lines().all(|l| l.starts_with("[web")),
        "only the group's lines: {web}"
    );
    assert!(web.trim_end().ends_with(last.trim_end()), "{last}\n---\n{web}");

    let out = drover.ctl(&["logs", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no group \"nope\""));

    // -f: new lines as they come, only of the group asked for.
    let mut follower = KillOnDrop(
        Command::new(drover_bin())
            .args(["logs", "-f", "web", "--lines", "0", "--socket"])
            .arg(&drover.socket)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = lines_of(follower.0.stdout.take().unwrap());
    // Once the follower is connected, every new line reaches it: ask until one does.
    let end = Instant::now() + DEADLINE;
    let got = loop {
        drover.ctl_ok(&["send", "web", "id:2", r#"{"cmd":"echo","data":"followed"}"#]);
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            break line;
        }
        assert!(Instant::now() < end, "the follower printed nothing");
    };
    assert!(got.contains("[web 2 pid") && got.contains("followed"), "{got}");
    drover.ctl_ok(&["send", "web", "id:1", r#"{"cmd":"exit","code":0}"#]);
    expect_line(&rx, "[web 1 pid");
    assert!(follower.0.try_wait().unwrap().is_none(), "-f keeps following");
    drover.ctl_ok(&["stop"]);
    // drover exits: the follower's stream ends, and it exits 0.
    let status = follower.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_log_ring_keeps_only_the_last_ten_thousand_lines() {
    // 12,000 lines in bursts (each smaller than core's output buffer), then a worker.
    let program = sh_worker(
        "i=0; while [ $i -lt 12 ]; do seq $((i*1000+1)) $((i*1000+1000)) | sed 's/^/n /'; i=$((i+1)); sleep 0.05; done",
    );
    let drover = web(&[], &program);
    drover.wait_ready();
    drover.wait_line("] n 12000");
    let out = drover.ctl_ok(&["logs", "--lines", "1000000"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 10_000, "the ring's bound (docs/LIMITS.md)");
    assert!(lines.iter().any(|l| l.ends_with("] n 12000")));
    assert!(!lines.iter().any(|l| l.ends_with("] n 1")), "the oldest lines are gone");
    let five = drover.ctl_ok(&["logs", "web", "--lines", "5"]);
    assert_eq!(five.lines().count(), 5, "{five}");
}

#[test]
fn plain_lines_carry_a_timestamp_and_json_lines_a_level_and_exit_fields() {
    let program = sh_worker("echo to-stdout; echo to-stderr >&2");
    let drover = web(&["--restart", "never", "--timestamps", "always"], &program);
    drover.wait_ready();
    let line = drover.wait_line("] to-stdout");
    // 2026-01-02T03:04:05.678Z [web 1 pid N] to-stdout
    let (stamp, rest) = line.split_once(' ').unwrap();
    assert!(rest.starts_with("[web 1 pid "), "{line}");
    assert_eq!(stamp.len(), 24, "{line}");
    assert!(humantime_like(stamp), "{line}");
    drop(drover);

    let drover = web(&["--restart", "never", "--log-format", "json"], &program);
    let json = |needle: &str| -> Value { serde_json::from_str(&drover.wait_line(needle)).unwrap() };
    drover.wait_line("every group is STARTED");
    let out = json("to-stdout");
    assert_eq!(out["level"], "info");
    assert_eq!(out["group"], "web");
    assert_eq!(out["id"], 1);
    let err = json("to-stderr");
    assert_eq!(err["level"], "error", "stderr lines are errors");
    assert_eq!(err["stream"], "stderr");
    let pid = err["pid"].as_u64().unwrap();
    drover.ctl_ok(&["send", "web", "id:1", r#"{"cmd":"exit","code":3}"#]);
    let exit = json("\"event\":\"exited\"");
    assert_eq!(exit["level"], "error", "{exit}");
    assert_eq!(exit["pid"], pid);
    assert_eq!(exit["exit"]["code"], 3, "{exit}");
    assert_eq!(exit["exit"]["kind"], "ABNORMAL_EXIT", "{exit}");
    assert_eq!(exit["exit"]["name"], "AbnormalExit", "{exit}");
    assert_eq!(exit["exit"]["requested"], false, "{exit}");
    assert!(exit["exit"]["signal"].is_null(), "{exit}");
    assert!(exit["time"].as_f64().unwrap() > 1.7e9);
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn humantime_like(stamp: &str) -> bool {
    let b = stamp.as_bytes();
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
    digits.iter().all(|&i| b[i].is_ascii_digit()) && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && b[23] == b'Z'
}

#[test]
fn under_journald_every_line_carries_its_priority_and_no_timestamp() {
    use std::os::fd::AsRawFd;
    let (reader, writer) = std::io::pipe().unwrap();
    // SAFETY: fstat on an open fd into a zeroed stat.
    let stat = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(writer.as_raw_fd(), &mut stat), 0);
        stat
    };
    let dir = tempfile::tempdir().unwrap();
    // Worker 1 writes a line to each stream; worker 2 fails before it starts, a second later.
    let program =
        sh_worker("if [ \"$DROVER_WORKER_ID\" = 2 ]; then sleep 1; exit 3; fi; echo to-stdout; echo to-stderr >&2");
    let mut args = vec!["run", "--socket", "ctl.sock", "-n", "2", "--name", "web", "--"];
    args.extend(program.iter().map(String::as_str));
    let child = Command::new(drover_bin())
        .args(&args)
        .current_dir(dir.path())
        .env("JOURNAL_STREAM", format!("{}:{}", stat.st_dev, stat.st_ino))
        .env_remove("DROVER_TIMESTAMPS")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::from(writer.try_clone().unwrap()))
        .stderr(Stdio::from(writer))
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    let rx = lines_of(reader);
    // Every line until drover exits (the order of its two streams is not defined).
    let mut lines = Vec::new();
    let end = Instant::now() + DEADLINE;
    let seen = |lines: &[String], needle: &str| lines.iter().any(|l| l.contains(needle));
    while !(seen(&lines, "every worker is stopped") && seen(&lines, "did not start")) {
        let left = end
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("{lines:#?}"));
        lines.push(rx.recv_timeout(left).unwrap_or_else(|_| panic!("{lines:#?}")));
    }
    let find = |needle: &str| lines.iter().find(|l| l.contains(needle)).unwrap().clone();
    let err = find("to-stderr");
    assert!(
        err.starts_with("<3>[web 1 pid ") && err.ends_with(" stderr] to-stderr"),
        "a worker's stderr is priority 3 (err): {err:?}"
    );
    let out = find("to-stdout");
    assert!(
        out.starts_with("<6>[web 1 pid "),
        "stdout is priority 6, no timestamp: {out:?}"
    );
    let contained = find("workers are contained");
    assert!(contained.starts_with("<6>drover: "), "{contained:?}");
    // Failures are errors, on stdout (an unasked failing exit) and stderr (drover's own).
    let exit = find("exited with code 3");
    assert!(exit.starts_with("<3>[web 2 pid "), "{exit:?}");
    let error = find("group web did not start");
    assert!(error.starts_with("<3>drover: group web did not start"), "{error:?}");
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
}

#[test]
fn the_log_file_rotates_by_size_and_keeps_a_bounded_number_of_files() {
    // 400 lines of about 100 bytes: about 40 KiB through a 4 KiB file that keeps 2 rotations.
    let program = sh_worker("i=0; while [ $i -lt 400 ]; do echo \"line $i $(printf '%080d' 0)\"; i=$((i+1)); done");
    let drover = web(
        &[
            "--log-file",
            "drover.log",
            "--log-file-size",
            "4KiB",
            "--log-files",
            "2",
        ],
        &program,
    );
    drover.wait_ready();
    drover.wait_line("] line 399 ");
    let names = || {
        let mut names: Vec<String> = std::fs::read_dir(drover.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("drover.log"))
            .collect();
        names.sort();
        names
    };
    // In whichever file: the lines drover logs after it (the worker's exit...) may rotate it out.
    assert!(
        eventually(|| names()
            .iter()
            .any(|n| std::fs::read_to_string(drover.path(n)).is_ok_and(|t| t.contains("] line 399 ")))),
        "the last line reaches the files"
    );
    assert_eq!(names(), ["drover.log", "drover.log.1", "drover.log.2"]);
    for name in names() {
        let text = std::fs::read_to_string(drover.path(&name)).unwrap();
        assert!(text.len() <= 4096, "{name}: {} bytes", text.len());
        assert!(
            text.ends_with('\n') && text.lines().all(|l| l.starts_with('[') || l.starts_with("drover:")),
            "whole lines: {name}\n{text}"
        );
    }
    // A size below the minimum is refused before anything starts.
    let out = Command::new(drover_bin())
        .args(["run", "--log-file", "x.log", "--log-file-size", "10", "--", "true"])
        .current_dir(drover.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-file-size: 10 bytes is too small"));
}

#[test]
fn on_a_terminal_the_progress_line_is_erased_before_any_other_line() {
    let (terminal, pts) = open_pty();
    let dir = tempfile::tempdir().unwrap();
    // Workers that talk while the start is under way, and start 400 ms apart: the progress line is
    // on the screen when the next lines come.
    let program =
        sh_worker("echo hello-$DROVER_WORKER_ID; export DROVER_TEST_MODE=start-after-ms:$((DROVER_WORKER_ID * 400))");
    let child = three_on_a_terminal(&dir, &program, pts);
    let text = read_terminal(&terminal, "every group is STARTED");
    assert!(
        text.contains("every group is STARTED"),
        "drover started within the deadline: {text:?}"
    );
    // Every line after a progress draw starts on an erased line: nothing is glued to "STARTED".
    let mut draws = 0;
    for n in 1..=3 {
        let progress = format!("[web] starting: {n}/3 STARTED");
        for (i, _) in text.match_indices(&progress) {
            draws += 1;
            let after = &text[i + progress.len()..];
            assert!(
                after.is_empty() || after.starts_with("\r\x1b[K") || after.starts_with("\r\n"),
                "a line glued to the progress line: {text:?}"
            );
        }
    }
    assert!(draws >= 3, "progress drawn: {text:?}");
    assert!(text.contains("\r\x1b["), "erased in place: {text:?}");
    assert!(
        text.contains("[web] starting: 3/3 STARTED\r\n"),
        "the last state is kept: {text:?}"
    );
    drop(child);
    drop(terminal);
}

#[test]
fn followers_are_bounded_and_one_that_hangs_up_frees_its_place() {
    const MAX_FOLLOWERS: usize = 16;
    let program = sh_worker("echo hello");
    let drover = web(&[], &program);
    drover.wait_ready();
    let follow = || {
        let mut child = KillOnDrop(
            Command::new(drover_bin())
                .args(["logs", "-f", "--lines", "1", "--socket"])
                .arg(&drover.socket)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let rx = lines_of(child.0.stdout.take().unwrap());
        (child, rx)
    };
    let mut followers = Vec::new();
    for _ in 0..MAX_FOLLOWERS {
        let (child, rx) = follow();
        // The tail came: this one is connected and counted.
        rx.recv_timeout(DEADLINE).expect("a follower gets the tail");
        followers.push((child, rx));
    }
    let (mut one_more, _) = follow();
    let out = one_more.0.wait().unwrap();
    let mut err = String::new();
    one_more.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(out.code(), Some(1), "{err}");
    assert!(err.contains("busy: 16 `drover logs -f` already follow"), "{err}");
    // Control requests still get through.
    assert_eq!(drover.worker_pids("web").len(), 1);
    // One hangs up while no line comes: its place is free at once, not at the next line.
    drop(followers.pop());
    let end = Instant::now() + DEADLINE;
    loop {
        let (child, rx) = follow();
        if rx.recv_timeout(DEADLINE).is_ok() {
            followers.push((child, rx));
            break;
        }
        assert!(Instant::now() < end, "the freed place was never given again");
    }
    drover.ctl_ok(&["stop"]);
}

#[test]
fn a_failed_start_takes_its_progress_line_away_and_its_error_is_not_glued_to_it() {
    let (terminal, pts) = open_pty();
    let dir = tempfile::tempdir().unwrap();
    // Workers 1 and 2 start; worker 3 dies before it does, a second later: the start fails.
    let program = sh_worker("if [ \"$DROVER_WORKER_ID\" = 3 ]; then sleep 1; exit 7; fi");
    let mut child = three_on_a_terminal(&dir, &program, pts);
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(1), "the start failed");
    let text = read_terminal(&terminal, "exiting");
    assert!(text.contains("[web] starting: 2/3 STARTED"), "progress drawn: {text:?}");
    let error = text
        .find("drover: group web did not start")
        .unwrap_or_else(|| panic!("{text:?}"));
    let before = &text[..error];
    assert!(
        before.ends_with("\r\x1b[K") || before.ends_with('\n'),
        "the error starts on an erased line: {text:?}"
    );
    assert!(
        !text[error..].contains("starting: "),
        "no progress redrawn after the start failed: {text:?}"
    );
}

/// `drover run -n 3 --name web -- PROGRAM` in `dir`, its stdout and stderr on the terminal `pts`.
fn three_on_a_terminal(dir: &tempfile::TempDir, program: &[String], pts: std::os::fd::OwnedFd) -> KillOnDrop {
    let mut args = vec!["run", "--socket", "ctl.sock", "-n", "3", "--name", "web", "--"];
    args.extend(program.iter().map(String::as_str));
    KillOnDrop(
        Command::new(drover_bin())
            .args(&args)
            .current_dir(dir.path())
            .env("DROVER_TIMESTAMPS", "never")
            .stdout(Stdio::from(pts.try_clone().unwrap()))
            .stderr(Stdio::from(pts))
            .spawn()
            .unwrap(),
    )
}

/// What the terminal shows until `until` appears (or drover closed its side).
fn read_terminal(terminal: &std::fs::File, until: &str) -> String {
    let (tx, rx) = mpsc::channel();
    let mut reader = terminal.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Vec::new();
    let end = Instant::now() + DEADLINE;
    while !String::from_utf8_lossy(&screen).contains(until) {
        let Some(left) = end.checked_duration_since(Instant::now()) else {
            break;
        };
        match rx.recv_timeout(left) {
            Ok(bytes) => screen.extend(bytes),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&screen).into_owned()
}

#[test]
fn a_follower_that_falls_behind_is_skipped_ahead_and_told_how_many_lines_it_missed() {
    let program = sh_worker("true");
    let drover = web(&[], &program);
    drover.wait_ready();
    let mut follower = KillOnDrop(
        Command::new(drover_bin())
            .args(["logs", "-f", "--lines", "1", "--socket"])
            .arg(&drover.socket)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = lines_of(follower.0.stdout.take().unwrap());
    rx.recv_timeout(DEADLINE).expect("the follower is connected");
    // The follower stops reading (its process stopped) while 20,000 lines come: far more than its
    // socket buffer and its 1024-line backlog hold.
    let pid = follower.0.id() as i32;
    // SAFETY: SIGSTOP and SIGCONT to our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    drover.ctl_ok(&["send", "web", "id:1", r#"{"cmd":"burst","n":20000}"#]);
    // (A full event queue may drop some of them: what counts is that many came.)
    assert!(
        eventually(|| drover.count_lines("message: {\"seq\":") >= 8000),
        "{} lines of the burst",
        drover.count_lines("message: {\"seq\":")
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let skipped = expect_line(&rx, "line(s) skipped: this `drover logs -f` read too slowly");
    let missed: u64 = skipped
        .strip_prefix("drover: ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{skipped:?}"));
    assert!(missed > 0, "{skipped}");
    // Then it follows on: a line written after the burst reaches it.
    let end = Instant::now() + DEADLINE;
    'echoed: loop {
        drover.ctl_ok(&["send", "web", "id:1", r#"{"cmd":"echo","data":"after"}"#]);
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            if line.contains("\"after\"") {
                break 'echoed;
            }
        }
        assert!(Instant::now() < end, "the follower followed no further");
    }
    drover.ctl_ok(&["stop"]);
}
