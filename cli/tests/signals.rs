//! Signals to the `drover` process (core's policy: HUP reloads, TERM/INT graceful, a second INT
//! hard), and a drover killed with SIGKILL.

mod common;

use common::*;
use drover_tests::pid_is_running;
use std::time::{Duration, Instant};

#[test]
fn sighup_reloads_and_sigterm_shuts_down_gracefully() {
    let worker = test_worker();
    let mut drover = Drover::start(&["-n", "2", "--name", "web", "--", worker.to_str().unwrap()], &[]);
    drover.wait_ready();
    let before = drover.worker_pids("web");

    drover.signal(libc::SIGHUP);
    drover.wait_line("[web] drover: reloaded in");
    let after = drover.worker_pids("web");
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|p| !before.contains(p)), "{before:?} -> {after:?}");
    assert!(eventually(|| before.iter().all(|p| !pid_is_running(*p))));

    drover.signal(libc::SIGTERM);
    let status = drover.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", drover.transcript());
    for pid in &after {
        // Asked to stop, they stopped on their own: exit 0 in SHUTTED_DOWN.
        assert_eq!(
            drover.count_lines(&format!(
                "pid {pid}] drover: exited: exited with code 0 in status SHUTTED_DOWN, as asked"
            )),
            1,
            "{}",
            drover.transcript()
        );
        assert!(!pid_is_running(*pid));
    }
    drover.wait_line("drover: shutting down (SIGTERM: graceful)");
    assert!(!drover.socket.exists());
}

#[test]
fn a_second_sigint_turns_a_graceful_shutdown_hard() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[groups.stubborn]\nprogram = {:?}\ncount = 2\nstopTimeout = 30000\nquitTimeout = 30000\nkillTimeout = 30000\n",
        test_worker().display().to_string()
    );
    write(dir.path(), "drover.toml", &config);
    // ignore-stop: the workers ignore stop, quit and SIGTERM: a graceful shutdown would take 90 s.
    let mut drover = Drover::start_in(dir, &["-c", "drover.toml"], &[("DROVER_TEST_MODE", "ignore-stop")]);
    drover.wait_ready();
    let pids = drover.worker_pids("stubborn");

    drover.signal(libc::SIGINT);
    drover.wait_line("drover: shutting down (SIGINT: graceful)");
    drover.wait_line("[stubborn] drover: STARTED -> STOPPING");
    let began = Instant::now();
    drover.signal(libc::SIGINT);
    let status = drover.wait_exit(Duration::from_secs(10));
    assert!(began.elapsed() < Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", drover.transcript());
    drover.wait_line("drover: shutting down (SIGINT again: hard, SIGKILL)");
    for pid in pids {
        assert!(!pid_is_running(pid));
        drover.wait_line(&format!("pid {pid}] drover: exited: killed by SIGKILL (9)"));
    }
}

#[test]
fn a_drover_killed_with_sigkill_leaves_no_worker_behind() {
    let worker = test_worker();
    let mut drover = Drover::start(&["-n", "2", "--name", "web", "--", worker.to_str().unwrap()], &[]);
    drover.wait_ready();
    let mut pids = drover.worker_pids("web");
    // A worker's own child too.
    let grandchild = drover.spawn_grandchild("web", 1);
    assert!(pid_is_running(grandchild));
    pids.push(grandchild);

    drover.signal(libc::SIGKILL);
    drover.wait_exit(Duration::from_secs(10));
    for pid in pids {
        assert!(eventually(|| !pid_is_running(pid)), "pid {pid} outlived its drover");
    }
}
