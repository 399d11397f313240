//! Loud failures, stable instances and per-group operations (issue 16), end to end through the
//! `drover` binary with the test worker.

mod common;

use common::*;
use drover_tests::pid_is_running;
use serde_json::Value;
use std::time::Duration;

/// `drover run -c drover.toml` with `config` as the file, `{w}` in it standing for the test
/// worker's path.
fn run_config(config: &str) -> Drover {
    let dir = tempfile::tempdir().unwrap();
    let text = config.replace("{w}", &test_worker().display().to_string());
    write(dir.path(), "drover.toml", &text);
    Drover::start_in(dir, &["-c", "drover.toml"], &[])
}

fn run_args<'a>(head: &[&'a str], program: &'a [String]) -> Vec<&'a str> {
    let mut args: Vec<&str> = head.to_vec();
    args.push("--");
    args.extend(program.iter().map(String::as_str));
    args
}

/// The live worker filling `instance` in `group`: (id, pid, restarts).
fn at_instance(status: &Value, group: &str, instance: u64) -> (u64, u32, u64) {
    let g = status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == group)
        .unwrap_or_else(|| panic!("no group {group} in {status}"));
    let w = g["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["instance"] == instance && w["exit"].is_null())
        .max_by_key(|w| w["id"].as_u64())
        .unwrap_or_else(|| panic!("no live instance {instance} in {status}"));
    (
        w["id"].as_u64().unwrap(),
        w["pid"].as_u64().unwrap() as u32,
        w["restarts"].as_u64().unwrap(),
    )
}

fn instances(status: &Value, group: &str) -> Vec<u64> {
    let g = status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == group)
        .unwrap();
    let mut out: Vec<u64> = g["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["exit"].is_null())
        .map(|w| w["instance"].as_u64().unwrap())
        .collect();
    out.sort();
    out
}

#[test]
fn a_killed_worker_is_restarted_by_default_and_keeps_its_instance_across_restarts_reloads_and_scales() {
    let program = sh_worker("echo \"instance=$DROVER_INSTANCE node=${NODE_APP_INSTANCE:-unset}\"");
    let drover = Drover::start(&run_args(&["-n", "3", "--name", "web"], &program), &[]);
    drover.wait_ready();
    let status = drover.status();
    assert_eq!(instances(&status, "web"), [0, 1, 2]);
    for i in 0..3u64 {
        let (id, pid, _) = at_instance(&status, "web", i);
        // Not a Node program: no NODE_APP_INSTANCE.
        drover.wait_line(&format!("[web {id} pid {pid}] instance={i} node=unset"));
    }

    // kill -9: no --restart given, and the default restarts on failure, in the same place.
    let (id, victim, _) = at_instance(&status, "web", 1);
    // SAFETY: killing our own test's worker.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    drover.wait_line(&format!("[web {id}] drover: restarting in"));
    drover.wait_line_where("instance 1 in a new process", |l| {
        l.starts_with(&format!("[web {id} pid "))
            && l.ends_with("instance=1 node=unset")
            && !l.contains(&format!("pid {victim}]"))
    });
    assert!(eventually(|| at_instance(&drover.status(), "web", 1).2 == 1));

    // After a reload, ids are new, instances the same: `restart web 1` still names instance 1.
    drover.ctl_ok(&["reload"]);
    let status = drover.status();
    assert_eq!(instances(&status, "web"), [0, 1, 2]);
    let (new_id, before, _) = at_instance(&status, "web", 1);
    assert!(new_id > 3, "a new generation has new ids: {status}");
    let out = drover.ctl_ok(&["restart", "web", "1"]);
    assert!(
        out.starts_with(&format!("web: restarted instance 1 (id {new_id}, pid")),
        "{out}"
    );
    let (same_id, after, restarts) = at_instance(&drover.status(), "web", 1);
    assert_eq!((same_id, restarts), (new_id, 1));
    assert_ne!(after, before);
    drover.wait_line(&format!("[web {new_id} pid {after}] instance=1 node=unset"));
    // `send` names workers the same way.
    let out = drover.ctl_ok(&["send", "web", "2", r#"{"cmd":"echo"}"#]);
    let (id2, _, _) = at_instance(&drover.status(), "web", 2);
    assert_eq!(out.trim(), format!("sent to web worker {id2}"));

    // Scaling down removes the highest places; scaling up fills the lowest free ones.
    drover.ctl_ok(&["scale", "web", "2"]);
    assert_eq!(instances(&drover.status(), "web"), [0, 1]);
    drover.ctl_ok(&["scale", "web", "4"]);
    assert_eq!(instances(&drover.status(), "web"), [0, 1, 2, 3]);

    let mut drover = drover;
    drover.ctl_ok(&["stop"]);
    assert!(drover.wait_exit(Duration::from_secs(15)).success());
}

#[test]
fn a_group_left_without_workers_ends_the_run_with_status_3() {
    // --restart never: the workers that exit are not replaced; once none is left and none is
    // coming, drover says so, shuts down and exits 3 (systemd's Restart=on-failure acts on it).
    let worker = test_worker();
    let worker = worker.to_str().unwrap();
    let mut drover = Drover::start(&["-n", "2", "--name", "web", "--restart", "never", "--", worker], &[]);
    drover.wait_ready();
    let pids = drover.worker_pids("web");
    drover.ctl_ok(&["send", "web", "0", r#"{"cmd":"exit","code":1}"#]);
    drover.wait_line(&format!("pid {}] drover: exited: exited with code 1", pids[0]));
    // One is left: the run goes on, and says the group is short.
    let status = drover.status();
    assert_eq!(status["groups"][0]["status"], "STARTED", "{status}");
    assert_eq!(status["groups"][0]["started"], 1, "{status}");
    drover.ctl_ok(&["send", "web", "1", r#"{"cmd":"exit","code":1}"#]);
    drover.wait_line("[web] drover: no worker left: every worker exited and none is being restarted");
    let status = drover.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(3), "{}", drover.transcript());
    drover.wait_stderr("group web FAILED (no worker left");
}

#[test]
fn a_group_that_gives_up_restarting_ends_the_run_with_status_3() {
    // Ready at once, then crashes: restarted until the budget (1 restart in a minute) is spent.
    let mut drover = run_config(
        "[groups.crashy]\nprogram = \"sh\"\nargs = [\"-c\", \"exit 7\"]\ncount = 1\nready = \"spawn\"\nrestartDelay = 10\nmaxRestarts = 1\nmaxRestartsWindow = 60000\n",
    );
    drover.wait_line("[crashy] drover: gave up restarting");
    let status = drover.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(3), "{}", drover.transcript());
    drover.wait_stderr("group crashy FAILED (gave up restarting");
}

#[test]
fn with_keep_a_failed_group_is_reported_failed_while_the_others_run_and_a_restart_revives_it() {
    let mut drover = run_config(
        "onGroupFailure = \"keep\"\nhttp = \"127.0.0.1:0\"\n[groups.web]\nprogram = \"{w}\"\ncount = 2\n[groups.job]\nprogram = \"{w}\"\ncount = 1\nrestart = \"never\"\n",
    );
    let addr = drover.http_addr();
    drover.wait_ready();
    let (_, job_pid, _) = at_instance(&drover.status(), "job", 0);
    drover.ctl_ok(&["send", "job", "0", r#"{"cmd":"exit","code":2}"#]);
    drover.wait_line("[job] drover: no worker left");
    drover.wait_stderr("group job FAILED (no worker left: every worker exited and none is being restarted); the other groups keep running");
    assert!(!pid_is_running(job_pid) || eventually(|| !pid_is_running(job_pid)));

    // status and /metrics say FAILED; the other group is untouched.
    let table = drover.ctl_ok(&["status"]);
    assert!(table.contains("job: FAILED (0/1 STARTED)"), "{table}");
    assert!(table.contains("web: STARTED (2/2 STARTED)"), "{table}");
    let (code, text) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(metric(&text, r#"drover_group_failed{group="job"}"#), 1.0);
    assert_eq!(metric(&text, r#"drover_group_failed{group="web"}"#), 0.0);
    assert_eq!(metric(&text, r#"drover_workers{group="job",status="FAILED"}"#), 1.0);
    assert_eq!(metric(&text, r#"drover_workers{group="web",status="STARTED"}"#), 2.0);

    // `drover restart job` brings it back.
    drover.ctl_ok(&["restart", "job"]);
    let table = drover.ctl_ok(&["status"]);
    assert!(table.contains("job: STARTED (1/1 STARTED)"), "{table}");
    let (_, text) = http_get(&addr, "/metrics");
    assert_eq!(metric(&text, r#"drover_group_failed{group="job"}"#), 0.0);
    assert_eq!(metric(&text, r#"drover_workers{group="job",status="FAILED"}"#), 0.0);

    drover.ctl_ok(&["stop"]);
    let status = drover.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "keep: a later stop exits 0: {status:?}");
}

#[test]
fn one_group_is_stopped_started_and_restarted_while_the_others_run() {
    let mut drover =
        run_config("[groups.api]\nprogram = \"{w}\"\ncount = 2\n[groups.web]\nprogram = \"{w}\"\ncount = 3\n");
    drover.wait_ready();
    let api = drover.worker_pids("api");
    let web = drover.worker_pids("web");

    // stop GROUP: that group's workers end; drover and the other group go on.
    let out = drover.ctl_ok(&["stop", "api"]);
    assert!(
        out.starts_with("api: stopped (graceful): 2 worker process(es)"),
        "{out}"
    );
    assert!(api.iter().all(|p| !pid_is_running(*p)));
    assert_eq!(drover.worker_pids("web"), web);
    let table = drover.ctl_ok(&["status"]);
    assert!(table.contains("api: SHUT_DOWN (0/2 STARTED)"), "{table}");
    assert!(drover.child.try_wait().unwrap().is_none(), "drover keeps running");
    let out = drover.ctl(&["start", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("web is STARTED: nothing to start"));

    // start GROUP: it runs again, in new processes.
    let out = drover.ctl_ok(&["start", "api"]);
    assert_eq!(out.trim(), "api: 2 worker(s) STARTED");
    let api_again = drover.worker_pids("api");
    assert_eq!(api_again.len(), 2);
    assert!(api_again.iter().all(|p| !api.contains(p)));
    assert_eq!(instances(&drover.status(), "api"), [0, 1]);

    // restart GROUP: every worker of the group replaced, one after the other; the other group
    // untouched.
    let out = drover.ctl_ok(&["restart", "web"]);
    assert!(
        out.contains("instance 0") && out.contains("instance 1") && out.contains("instance 2"),
        "{out}"
    );
    let web_again = drover.worker_pids("web");
    assert_eq!(web_again.len(), 3);
    assert!(web_again.iter().all(|p| !web.contains(p)), "{web:?} -> {web_again:?}");
    assert_eq!(drover.worker_pids("api"), api_again);

    // `drover stop` still ends everything, and the run exits 0.
    drover.ctl_ok(&["stop", "api"]);
    let out = drover.ctl_ok(&["stop"]);
    assert!(out.starts_with("stopped (graceful): 3 worker process(es)"), "{out}");
    assert!(drover.wait_exit(Duration::from_secs(15)).success());
    assert!(web_again.iter().all(|p| !pid_is_running(*p)));
}

#[test]
fn with_every_group_stopped_on_its_own_drover_waits_and_a_sigterm_still_ends_it() {
    let mut drover =
        run_config("[groups.api]\nprogram = \"{w}\"\ncount = 1\n[groups.web]\nprogram = \"{w}\"\ncount = 1\n");
    drover.wait_ready();
    drover.ctl_ok(&["stop", "api"]);
    drover.ctl_ok(&["stop", "web"]);
    // Nothing runs, but a group may be started again: drover waits.
    let table = drover.ctl_ok(&["status"]);
    assert!(
        table.contains("api: SHUT_DOWN") && table.contains("web: SHUT_DOWN"),
        "{table}"
    );
    drover.signal(libc::SIGTERM);
    let status = drover.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", drover.transcript());
}
