//! Bounds the `drover` command enforces on what it is asked and on what it needs: a huge scale is
//! refused and harms nothing, the soft fd limit is raised so that many workers start, and output
//! nobody reads never keeps drover from stopping and exiting.

mod common;

use common::*;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_huge_scale_is_refused_clearly_and_the_group_is_unharmed() {
    let worker = test_worker();
    let mut drover = Drover::start(&["-n", "2", "--name", "web", "--", worker.to_str().unwrap()], &[]);
    drover.wait_ready();
    let before = drover.worker_pids("web");
    let rss_before = rss_kib(drover.pid());
    for (count, expected) in [
        ("1099511627776", "`count` must be at most 10000, got 1099511627776"),
        ("0", "must be at least 1"),
        ("-3", "must be at least 1"),
    ] {
        let out = drover.ctl_within(&["scale", "web", count], DEADLINE);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "scale {count}: {stderr}");
        assert!(stderr.contains(expected), "scale {count}: {stderr}");
    }
    assert!(
        drover.child.try_wait().unwrap().is_none(),
        "drover died\n{}",
        drover.transcript()
    );
    assert_eq!(drover.worker_pids("web"), before, "the workers were touched");
    let rss_after = rss_kib(drover.pid());
    eprintln!("scale 2^40: drover RSS {rss_before} -> {rss_after} KiB");
    assert!(
        rss_after < rss_before + 50 * 1024,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    drover.ctl_ok(&["stop"]);
    drover.wait_exit(DEADLINE);
}

#[test]
fn the_soft_fd_limit_is_raised_so_that_many_workers_start() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid pointer to a local rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    let hard = limit.rlim_max;
    assert!(hard >= 512, "this test needs a hard fd limit of 512, have {hard}");
    let worker = test_worker();
    // Soft 64: about a dozen workers' worth of fds, unless drover raises it.
    let drover = Drover::start_with(
        &["-n", "32", "--name", "web", "--", worker.to_str().unwrap()],
        &[],
        |cmd| limit_fds(cmd, 64, hard),
    );
    drover.wait_ready();
    drover.wait_line(&format!(
        "raised the open-file limit (RLIMIT_NOFILE) from 64 to the hard limit, {hard}"
    ));
    assert_eq!(drover.worker_pids("web").len(), 32);
    let status = drover.status();
    assert_eq!(status["groups"][0]["started"], 32, "{status}");
    let mut drover = drover;
    drover.ctl_ok(&["stop"]);
    drover.wait_exit(DEADLINE);
}

/// Bytes waiting in a pipe, and its capacity.
fn pipe_fill(fd: &impl AsRawFd) -> (usize, usize) {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int; F_GETPIPE_SZ takes no argument; fd is an open pipe.
    let (a, capacity) = unsafe {
        (
            libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut queued),
            libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ),
        )
    };
    assert!(a == 0 && capacity > 0, "pipe ioctls");
    (queued as usize, capacity as usize)
}

#[test]
fn stdout_and_stderr_on_a_pipe_nobody_reads_do_not_keep_drover_from_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    let (unread, write_end) = nix::unistd::pipe().expect("a pipe");
    // Our own way into the pipe, a file description of its own (O_NONBLOCK here must not make
    // drover's writes non-blocking): to fill the pipe to the last byte.
    let filler = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", write_end.as_raw_fd()))
        .expect("the pipe's write end, opened anew");
    // A worker that floods its stdout (200,000 lines), then serves as usual.
    let flood = sh_worker("yes 'a line of flood from the worker, long enough to fill pipes' | head -n 200000 &");
    let mut cmd = Command::new(drover_bin());
    cmd.args(["run", "-n", "1", "--name", "web", "--socket"])
        .arg(&socket)
        .arg("--")
        .args(&flood)
        .current_dir(dir.path())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("DROVER_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end.try_clone().expect("dup")))
        .stderr(Stdio::from(write_end));
    let mut child = KillOnDrop(cmd.spawn().expect("drover starts"));
    let pid = child.0.id();
    let ctl = |args: &[&str]| {
        Command::new(drover_bin())
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .expect("the client runs")
    };
    assert!(
        eventually(|| {
            let out = ctl(&["status", "--json"]);
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"started\": 1")
        }),
        "drover did not start its worker"
    );
    // drover has printed plenty, then the pipe is filled to the last byte: every write to its
    // stdout or stderr now blocks.
    assert!(
        eventually(|| {
            let (queued, capacity) = pipe_fill(&unread);
            queued + 16 * 1024 >= capacity
        }),
        "drover printed little: {:?}",
        pipe_fill(&unread)
    );
    let full = loop {
        if let Err(error) = (&filler).write(b"x") {
            break error;
        }
    };
    assert_eq!(full.kind(), std::io::ErrorKind::WouldBlock, "the pipe is full");
    let (fds, rss) = (fd_count(pid), rss_kib(pid));
    let out = ctl(&["status", "--json"]);
    assert!(out.status.success(), "status while the output is blocked");
    let began = Instant::now();
    let out = ctl(&["stop"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            eprintln!(
                "blocked output: drover fds {fds}, RSS {rss} KiB; exited {status} {:?} after stop",
                began.elapsed()
            );
            break;
        }
        if began.elapsed() > deadline {
            panic!("drover did not exit within {deadline:?} of `drover stop` with its output blocked");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(unread);
}

#[test]
fn a_paused_terminal_on_stderr_freezes_neither_start_nor_control_nor_stop() {
    // A pseudo-terminal for drover's stderr (so it redraws its progress there), with its output
    // stopped as Ctrl-S stops it: every write to it blocks until Ctrl-Q.
    let (terminal, pts) = open_pty();
    (&terminal).write_all(&[0x13]).expect("Ctrl-S");
    let worker = test_worker();
    let mut drover = Drover::start_with(
        &["-n", "4", "--name", "web", "--", worker.to_str().unwrap()],
        &[],
        |cmd| {
            cmd.stderr(Stdio::from(pts));
        },
    );
    drover.wait_ready();
    let pid = drover.pid();
    let (fds, rss) = (fd_count(pid), rss_kib(pid));
    let out = drover.ctl_within(&["status", "--json"], DEADLINE);
    assert!(out.status.success(), "status with stderr paused");
    let began = Instant::now();
    let out = drover.ctl_within(&["stop"], DEADLINE);
    assert!(out.status.success(), "stop with stderr paused");
    drover.wait_exit(DEADLINE);
    eprintln!(
        "paused terminal: drover fds {fds}, RSS {rss} KiB; exited {:?} after stop",
        began.elapsed()
    );
    drop(terminal);
}
