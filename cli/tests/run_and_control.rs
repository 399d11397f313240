//! `drover run` and the control commands, end to end: real drover, real workers, real clients.

mod common;

use common::*;
use drover_tests::pid_is_running;
use std::time::Duration;

fn run_args<'a>(head: &[&'a str], program: &'a [String]) -> Vec<&'a str> {
    let mut args: Vec<&str> = head.to_vec();
    args.push("--");
    args.extend(program.iter().map(String::as_str));
    args
}

#[test]
fn run_captures_output_and_status_send_restart_scale_reload_stop_work() {
    let program = sh_worker("echo \"hello from $DROVER_WORKER_ID\"; echo oops >&2");
    let mut drover = Drover::start(&run_args(&["-n", "2", "--name", "web"], &program), &[]);
    drover.wait_ready();
    let pids = drover.worker_pids("web");
    assert_eq!(pids.len(), 2);

    // Output, line by line, prefixed with group, id and pid; stderr marked.
    drover.wait_line(&format!("[web 1 pid {}] hello from 1", pids[0]));
    drover.wait_line(&format!("[web 2 pid {}] hello from 2", pids[1]));
    drover.wait_line(&format!("[web 1 pid {} stderr] oops", pids[0]));
    drover.wait_line(&format!("[web 2 pid {}] drover: started", pids[1]));
    // Progress of the start, as plain lines when stdout is not a terminal.
    drover.wait_line("starting: 1/2 STARTED");
    drover.wait_line("starting: 2/2 STARTED");

    // The table.
    let table = drover.ctl_ok(&["status"]);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["GROUP", "INSTANCE", "ID", "PID", "STATUS", "UPTIME", "RESTARTS", "RSS", "CPU", "APP"],
        "{table}"
    );
    for (i, pid) in pids.iter().enumerate() {
        let row: Vec<&str> = lines[i + 1].split_whitespace().collect();
        assert_eq!(
            row[..5],
            ["web", &i.to_string(), &(i + 1).to_string(), &pid.to_string(), "STARTED"],
            "{table}"
        );
        assert_eq!(row[6], "0", "{table}");
        assert!(row[7].ends_with('M'), "RSS in MiB: {table}");
        assert!(row[8].ends_with('%'), "CPU percent: {table}");
    }
    assert!(table.contains("web: STARTED (2/2 STARTED)"), "{table}");

    // JSON, with RSS and CPU from /proc.
    let status = drover.status();
    assert_eq!(status["pid"], drover.pid());
    let w = &status["groups"][0]["workers"][0];
    assert!(w["rss_bytes"].as_u64().unwrap() > 0, "{status}");
    assert!(w["cpu_seconds"].as_f64().is_some(), "{status}");

    // send to one worker (instance 0: the first): the test worker echoes, drover logs the
    // worker's message.
    let out = drover.ctl_ok(&["send", "web", "0", r#"{"cmd":"echo","n":7}"#]);
    assert_eq!(out.trim(), "sent to web worker 1");
    drover.wait_line(&format!(
        "[web 1 pid {}] drover: message: {{\"echo\":{{\"cmd\":\"echo\",\"n\":7}}}}",
        pids[0]
    ));
    // ... and to all.
    let out = drover.ctl_ok(&["send", "web", r#"{"cmd":"pid"}"#]);
    assert_eq!(out.trim(), "sent to 2 worker(s) of web");
    drover.wait_line(&format!("message: {{\"pid\":{}}}", pids[1]));

    // restart one worker: a new process under the same id, in the same place.
    let out = drover.ctl_ok(&["restart", "web", "0"]);
    assert!(out.starts_with("web: restarted instance 0 (id 1, pid"), "{out}");
    let after = drover.worker_pids("web");
    assert_ne!(after[0], pids[0]);
    assert_eq!(after[1], pids[1]);
    assert!(eventually(|| !pid_is_running(pids[0])));
    assert_eq!(drover.status()["groups"][0]["workers"][0]["restarts"], 1);
    drover.wait_line(&format!(
        "[web 1 pid {}] drover: exited: exited with code 0 in status SHUTTED_DOWN, as asked",
        pids[0]
    ));

    // Unknown worker: non-zero, with the reason.
    let out = drover.ctl(&["restart", "web", "99"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("web: no instance 99 (instances: 0 (id 1), 1 (id 2))"),
        "{stderr}"
    );
    let out = drover.ctl(&["restart", "web", "id:99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("web: no worker id 99"));
    let out = drover.ctl(&["restart", "web", "first"]);
    assert_eq!(out.status.code(), Some(2), "refused by the command line");
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected an instance index"));
    let out = drover.ctl(&["scale", "api", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no group \"api\""));

    // scale up and down.
    drover.ctl_ok(&["scale", "web", "3"]);
    assert_eq!(drover.worker_pids("web").len(), 3);
    let out = drover.ctl(&["scale", "web", "0"]);
    assert_eq!(out.status.code(), Some(1), "scale to 0 is refused");
    drover.ctl_ok(&["scale", "web", "1"]);
    assert_eq!(drover.worker_pids("web").len(), 1);

    // reload: every worker replaced.
    let before = drover.worker_pids("web");
    let out = drover.ctl_ok(&["reload", "web"]);
    drover.wait_line("reloading: 1/1 STARTED");
    assert_eq!(out.trim(), "reloaded web");
    let after = drover.worker_pids("web");
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
    drover.wait_line("[web] drover: reloaded in");

    // stop: waits for the end; drover exits 0 and removes its socket.
    let out = drover.ctl_ok(&["stop"]);
    assert!(out.starts_with("stopped (graceful): 1 worker process(es)"), "{out}");
    let status = drover.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", drover.transcript());
    assert!(!pid_is_running(after[0]));
    assert!(!drover.socket.exists());
}

#[test]
fn a_reload_that_fails_is_rolled_back_and_the_command_says_why() {
    // The new generation finds the flag and exits before STARTED.
    let program = sh_worker("if [ -e fail-now ]; then echo refusing; exit 3; fi");
    let drover = Drover::start(
        &run_args(&["-n", "2", "--name", "api", "--log-format", "json"], &program),
        &[],
    );
    drover.wait_line("\"every group is STARTED\"");
    let before = drover.worker_pids("api");
    write(drover.dir.path(), "fail-now", "");
    let out = drover.ctl(&["reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("api: reload rolled back: worker"), "{stderr}");
    assert!(
        stderr.contains("exited with code 3 before reporting STARTED"),
        "{stderr}"
    );
    assert_eq!(drover.worker_pids("api"), before, "the old generation keeps serving");

    // JSON logs: the refusing worker's stdout line, with its group, id and pid.
    let line = drover.wait_line_where("a JSON stdout line \"refusing\"", |l| l.contains("\"refusing\""));
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["group"], "api");
    assert_eq!(v["stream"], "stdout");
    assert!(v["id"].as_u64().unwrap() > 2 && v["pid"].as_u64().unwrap() > 0, "{v}");
    let line = drover.wait_line_where("a reload-failed event", |l| l.contains("\"event\":\"reload-failed\""));
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert!(v["message"].as_str().unwrap().contains("rolled back"), "{v}");
    drover.ctl_ok(&["stop", "--hard"]);
}

#[test]
fn a_log_reader_that_does_not_keep_up_loses_lines_never_the_master_its_pace() {
    // 200,000 lines at once into a stdout nobody reads: far more than the pipe and both bounded
    // buffers hold.
    let program = sh_worker("yes 'a line of output' | head -n 200000");
    let mut drover = Drover::start_unread(&run_args(&["-n", "2", "--name", "noisy"], &program));
    // The master still answers, starts and counts while its log is stuck.
    let end = std::time::Instant::now() + DEADLINE;
    let status = loop {
        let out = drover.ctl(&["status", "--json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if v["groups"][0]["started"] == 2 {
                break v;
            }
        }
        assert!(std::time::Instant::now() < end, "drover stalled behind its log");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status["groups"][0]["status"], "STARTED");
    drover.resume_reading();
    let line = drover.wait_line("log line(s) dropped so far: the output could not keep up");
    let dropped: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(dropped > 0 && dropped < 400_000, "{line}");
    drover.ctl_ok(&["stop"]);
    assert!(drover.wait_exit(Duration::from_secs(10)).success());
    drover.wait_stderr("log line(s) were dropped because the output could not keep up");
}
