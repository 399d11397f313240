//! A worker and everything it starts stay reachable: a worker that leaves its process group is
//! still stopped, a grandchild that calls `setsid()` dies with its worker where cgroups contain
//! workers, and a guardian that is killed is replaced.

use drover::{Containment, Master, MasterConfig, ReadySource};
use drover_tests::{eventually, pid_is_running};
use std::time::Duration;

/// A worker in Python (speaking nothing: ready at spawn) that runs `body` and then sleeps.
fn python_worker(name: &str, body: &str, count: usize) -> MasterConfig {
    let mut c = MasterConfig::program("python3")
        .args([
            "-c",
            &format!("import os, signal, sys, time\n{body}\nwhile True: time.sleep(1000)\n"),
        ])
        .count(count)
        .name(name);
    c.ready = ReadySource::Spawn;
    c.timeouts.stop = Duration::from_millis(300);
    c.timeouts.quit = Duration::from_millis(300);
    c.timeouts.kill = Duration::from_millis(300);
    c
}

/// Reads pids that workers wrote, one per line, into `file`, until there are `n`.
async fn pids_in(file: &std::path::Path, n: usize) -> Vec<u32> {
    let mut pids = Vec::new();
    let found = eventually(Duration::from_secs(10), || {
        pids = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        pids.len() >= n
    })
    .await;
    assert!(found, "workers wrote {} of {n} pids to {}", pids.len(), file.display());
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_leaves_its_process_group_is_still_stopped() {
    // The worker joins the test process's group (same session, so setpgid allows it) and ignores
    // SIGTERM: only a signal to the worker itself, through its pidfd, can end it.
    let config = python_worker(
        "leaves-group",
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nos.setpgid(0, os.getpgid(os.getppid()))",
        1,
    );
    let master = Master::new(config).unwrap();
    master.start().await.unwrap();
    let pid = master.workers()[0].pid;
    let left = eventually(Duration::from_secs(10), || {
        // SAFETY: getpgid of a live child.
        let pgid = unsafe { libc::getpgid(pid as libc::pid_t) };
        pgid != pid as libc::pid_t
    })
    .await;
    assert!(left, "the worker never left its process group");
    tokio::time::timeout(Duration::from_secs(20), master.graceful_shutdown())
        .await
        .expect("a worker outside its group is stopped within 20 s (stop, quit, SIGTERM, SIGKILL)")
        .unwrap();
    assert!(!pid_is_running(pid), "worker {pid} survived the shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchild_that_calls_setsid_dies_with_its_worker_where_cgroups_contain_workers() {
    let dir = tempfile_dir("setsid");
    let file = dir.join("pids");
    // Each worker starts a grandchild in a session of its own, out of the worker's process group.
    let body = format!(
        "pid = os.fork()\n\
         if pid == 0:\n    os.setsid()\n    open({file:?}, 'a').write(f'{{os.getpid()}}\\n')\n    time.sleep(1000)\n    sys.exit(0)",
        file = file.display().to_string()
    );
    let master = Master::new(python_worker("setsid", &body, 2)).unwrap();
    master.start().await.unwrap();
    let escaped = pids_in(&file, 2).await;
    // A restart too: escaped grandchildren must not pile up with each restart.
    let id = master.workers()[0].id;
    master.restart_worker(id).await.unwrap();
    let escaped = [escaped, pids_in(&file, 3).await].concat();
    master.graceful_shutdown().await.unwrap();
    match drover::containment() {
        Containment::Cgroup(dir) => {
            let gone = eventually(Duration::from_secs(10), || escaped.iter().all(|p| !pid_is_running(*p))).await;
            let left: Vec<_> = escaped.iter().filter(|p| pid_is_running(**p)).collect();
            assert!(
                gone,
                "setsid grandchildren {left:?} survived (cgroups under {})",
                dir.display()
            );
        }
        Containment::ProcessGroup(why) => {
            // Documented: without cgroups a process that leaves its group escapes. Clean up.
            eprintln!("no cgroup containment here ({why}): escaped grandchildren are not stopped");
            for p in escaped {
                // SAFETY: kill of a pid this test's workers started.
                unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_guardian_is_replaced_and_a_master_killed_after_that_leaves_nothing() {
    // The test master starts 2 workers, each with a grandchild (in the worker's group), and prints
    // their pids and its guardian's. We kill the guardian, then the master.
    let (mut child, all) = drover_tests::spawn_test_master(2);
    let master_pid = child.id();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let guardian = guardians_of(master_pid);
    assert_eq!(guardian.len(), 1, "one guardian child of the master: {guardian:?}");
    // SAFETY: kill of the guardian, a process the test master started.
    unsafe { libc::kill(guardian[0] as libc::pid_t, libc::SIGKILL) };
    let replaced = rt.block_on(eventually(Duration::from_secs(10), || {
        let now = guardians_of(master_pid);
        now.len() == 1 && now[0] != guardian[0]
    }));
    assert!(
        replaced,
        "the guardian was not replaced: {:?}",
        guardians_of(master_pid)
    );
    child.kill().expect("SIGKILL the master");
    child.wait().expect("reap the master");
    let gone = rt.block_on(eventually(Duration::from_secs(5), || {
        all.iter().all(|p| !pid_is_running(*p))
    }));
    assert!(
        gone,
        "still running after the master's SIGKILL: {:?}",
        all.iter().filter(|p| pid_is_running(**p)).collect::<Vec<_>>()
    );
}

/// The master's children that are not drover workers: its guardian (a fork of the master, so it
/// has the master's name in /proc/PID/comm, and no `DROVER_IPC_FD`).
fn guardians_of(master: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") || fields.get(1).and_then(|p| p.parse::<u32>().ok()) != Some(master) {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let is_worker = environ.split(|b| *b == 0).any(|v| v.starts_with(b"DROVER_IPC_FD="));
        if !is_worker {
            found.push(pid);
        }
    }
    found
}

fn tempfile_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("drover-containment-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A master that exits while a reaped worker's cgroup is still busy (its grandchild being killed)
/// leaves no cgroup behind: its guardian removes every worker's cgroup and its own.
#[test]
fn a_master_that_exits_mid_cleanup_leaves_no_cgroup_behind() {
    let Containment::Cgroup(own) = drover::containment() else {
        eprintln!("no cgroup containment here: nothing to leave behind");
        return;
    };
    let (mut child, _) = drover_tests::spawn_test_master_with(2, &["restart-and-exit"]);
    let base = own.with_file_name(format!("drover.{}", child.id()));
    child.wait().expect("the test master exits");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let gone = rt.block_on(eventually(Duration::from_secs(10), || !base.exists()));
    let left: Vec<_> = std::fs::read_dir(&base)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(gone, "{} is left, with worker cgroups {left:?}", base.display());
}

/// A worker that is itself a supervisor makes cgroups inside its own (its `drover.<pid>`), which
/// its guardian cannot remove (the worker's `cgroup.kill` ended it too): when the worker is reaped
/// its master removes them, deepest first, and the worker's cgroup with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_cgroup_is_removed_with_the_cgroups_a_nested_supervisor_made_in_it() {
    let Containment::Cgroup(own) = drover::containment() else {
        eprintln!("no cgroup containment here: nothing to nest");
        return;
    };
    let master = drover::Master::new(drover_tests::test_config("nested", 1)).expect("config");
    let mut events = master.events();
    master.start().await.expect("start");
    let pid = master.worker(1).expect("worker 1").pid;
    let worker_cgroup = own.join(pid.to_string());
    // What a nested master leaves: drover.<its pid>/<its worker's pid>, empty of processes.
    let nested = worker_cgroup.join("drover.4242").join("4243");
    std::fs::create_dir_all(&nested).expect("a nested cgroup");
    master
        .send(1, &serde_json::json!({"cmd": "exit", "code": 0}))
        .await
        .expect("send");
    drover_tests::next_exit(&mut events).await;
    assert!(
        eventually(Duration::from_secs(10), || !worker_cgroup.exists()).await,
        "{} is left (with {:?})",
        worker_cgroup.display(),
        std::fs::read_dir(&worker_cgroup).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    master.graceful_shutdown().await.expect("shutdown");
}
