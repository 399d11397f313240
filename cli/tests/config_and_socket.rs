//! What `drover run` refuses before starting anything (a malformed config, a command line without
//! a program, an unsafe socket directory, a socket path another drover owns), and the control
//! socket's permissions both ways: the server refuses other users, the client refuses a socket
//! another user serves.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

/// A config with a group that would leave a marker if it ever ran, and a broken group.
fn refused(config_tail: &str) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let config = format!(
        "# drover config\n[groups.good]\nprogram = \"sh\"\nargs = [\"-c\", \"touch {}; exec {}\"]\ncount = 1\n\n{config_tail}",
        marker.display(),
        test_worker().display()
    );
    write(dir.path(), "drover.toml", &config);
    let socket = dir.path().join("ctl.sock");
    let out = Command::new(drover_bin())
        .current_dir(dir.path())
        .args(["run", "-c", "drover.toml", "--socket"])
        .arg(&socket)
        .output()
        .expect("drover runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing was logged: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!marker.exists(), "a worker was started");
    assert!(!socket.exists(), "the control socket was created");
    (stderr, dir)
}

#[test]
fn a_malformed_config_names_file_line_and_field_and_starts_nothing() {
    // A value core refuses: the line of the key in its group's table.
    let (stderr, _d) = refused("[groups.bad]\nprogram = \"sh\"\ncount = 2\nstopTimeout = -5\n");
    assert_eq!(
        stderr.trim(),
        "drover: drover.toml:10: [groups.bad] `stopTimeout`: `stopTimeout` must be a positive number of milliseconds, got -5"
    );
    // A missing program: the group's table.
    let (stderr, _d) = refused("[groups.bad]\ncount = 2\n");
    assert!(
        stderr.starts_with("drover: drover.toml:7: [groups.bad] `program`:"),
        "{stderr}"
    );
    // An unknown key and a wrong type: the key's line, and the key.
    let (stderr, _d) = refused("[groups.bad]\nprogram = \"sh\"\ncuont = 2\n");
    assert!(
        stderr.starts_with("drover: drover.toml:9: [groups.bad] `cuont`:"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `cuont`"), "{stderr}");
    let (stderr, _d) = refused("[groups.bad]\nprogram = \"sh\"\ncount = \"two\"\n");
    assert!(
        stderr.starts_with("drover: drover.toml:9: [groups.bad] `count`: invalid type"),
        "{stderr}"
    );
    // A program that is not there.
    let (stderr, _d) = refused("[groups.bad]\nprogram = \"/nope/server\"\n");
    assert!(
        stderr.contains("drover.toml:8: [groups.bad] `program`: `program`: /nope/server not found"),
        "{stderr}"
    );
}

#[test]
fn a_command_line_without_a_program_or_with_a_bad_count_is_refused() {
    let out = Command::new(drover_bin()).args(["run", "-n", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to run"));
    let out = Command::new(drover_bin())
        .args(["run", "-n", "0", "--", "sh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-n/--count: `count` must be at least 1, got 0"));
}

#[test]
fn commands_without_a_running_drover_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(drover_bin())
        .args(["status", "--socket"])
        .arg(dir.path().join("none.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach drover at"));
}

/// A copy of the drover binary in a fresh directory under /tmp that every user can reach and run:
/// the build tree may sit under a 0700 directory (root's home, a `mktemp -d`).
fn drover_for_everyone() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("drover-bin-")
        .tempdir_in("/tmp")
        .expect("a directory under /tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("drover");
    std::fs::copy(drover_bin(), &bin).expect("copy the drover binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin)
}

/// Runs `start` again while the copied binary is "busy": a process forked by another test thread
/// while the copy was being written holds its write fd until that process execs.
fn unless_busy<T>(mut start: impl FnMut() -> std::io::Result<T>) -> T {
    let mut tries = 0;
    loop {
        match start() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.expect("the copied drover runs"),
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `drover run --socket SOCKET -- WORKER`, which is expected to refuse with exit code 1 (killed,
/// and the test failed, if it is still running after `DEADLINE`); returns its stderr.
fn run_refused(socket: &std::path::Path) -> String {
    let mut child = KillOnDrop(
        Command::new(drover_bin())
            .arg("run")
            .arg("--socket")
            .arg(socket)
            .arg("--")
            .arg(test_worker())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("drover runs"),
    );
    assert!(
        eventually(|| child.0.try_wait().expect("try_wait").is_some()),
        "drover did not refuse: it is running"
    );
    let stderr = child.0.stderr.take().map(std::io::read_to_string);
    let stderr = stderr.and_then(Result::ok).unwrap_or_default();
    assert_eq!(child.0.wait().expect("its status").code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn the_control_socket_is_0600_and_refuses_other_users() {
    let worker = test_worker();
    // Under /tmp, so that another user can reach the socket once its directory is opened below.
    let home = tempfile::tempdir_in("/tmp").expect("a directory under /tmp");
    let drover = Drover::start_in(home, &["-n", "1", "--name", "web", "--", worker.to_str().unwrap()], &[]);
    drover.wait_ready();
    let mode = std::fs::metadata(&drover.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    // A second drover on the same socket is refused before it starts anything.
    let out = Command::new(drover_bin())
        .args(["run", "--socket"])
        .arg(&drover.socket)
        .args(["--", "sh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another drover is running there"));

    if !is_root() {
        eprintln!("not root: the other-uid refusal is covered by the unit test of peer_allowed only");
        return;
    }
    // Open the file and its directory to everyone, so that only drover's SO_PEERCRED check stands
    // between another user and the socket.
    std::fs::set_permissions(drover.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&drover.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (_bin_dir, bin) = drover_for_everyone();
    let out = unless_busy(|| {
        use std::os::unix::process::CommandExt;
        Command::new(&bin)
            .args(["stop", "--socket"])
            .arg(&drover.socket)
            .uid(65534)
            .gid(65534)
            .output()
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("permission denied: uid 65534 may not control this drover"),
        "{stderr}"
    );
    drover.wait_line("refused a control connection from uid 65534");
    // Still running, still serving its owner.
    assert_eq!(drover.worker_pids("web").len(), 1);
    let mut drover = drover;
    drover.ctl_ok(&["stop"]);
    drover.wait_exit(Duration::from_secs(10));
}

#[test]
fn a_client_refuses_a_socket_another_user_serves() {
    if !is_root() {
        eprintln!("not root: no other uid to serve a socket; covered by the unit test of server_trusted");
        return;
    }
    use std::os::unix::process::CommandExt;
    // A drover run by nobody, on a socket in nobody's directory: to root's client, a stranger's.
    let (_bin_dir, bin) = drover_for_everyone();
    let home = tempfile::tempdir_in("/tmp").expect("a directory under /tmp");
    nix::unistd::chown(
        home.path(),
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    let socket = home.path().join("ctl.sock");
    let mut stranger = KillOnDrop(unless_busy(|| {
        Command::new(&bin)
            .args(["run", "-n", "1", "--ready", "spawn", "--socket"])
            .arg(&socket)
            .args(["--", "sleep", "600"])
            .current_dir("/")
            .env_remove("NOTIFY_SOCKET")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .uid(65534)
            .gid(65534)
            .spawn()
    }));
    assert!(
        eventually(|| socket.exists()),
        "nobody's drover did not bind its socket"
    );
    let out = Command::new(drover_bin())
        .args(["stop", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("it is served by uid 65534, neither you (uid 0) nor root; it is not your drover"),
        "{stderr}"
    );
    assert!(
        stranger.0.try_wait().unwrap().is_none(),
        "the request reached the stranger"
    );
}

#[test]
fn root_controls_a_drover_another_user_runs_in_a_directory_root_gave_it() {
    if !is_root() {
        eprintln!("not root: covered by the unit tests of root_may_trust and peer_allowed only");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // As systemd makes /run/drover for a `User=` unit: a directory of that user's, 0700, in a
    // directory only root may write.
    let (_bin_dir, bin) = drover_for_everyone();
    let runtime = tempfile::tempdir_in("/run").expect("a directory under /run");
    std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    nix::unistd::chown(
        runtime.path(),
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    let socket = runtime.path().join("drover.sock");
    let mut service = KillOnDrop(unless_busy(|| {
        Command::new(&bin)
            .args(["run", "-n", "1", "--ready", "spawn", "--", "sleep", "600"])
            .env("RUNTIME_DIRECTORY", runtime.path())
            .env_remove("DROVER_SOCKET")
            .env_remove("NOTIFY_SOCKET")
            .current_dir("/")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .uid(65534)
            .gid(65534)
            .spawn()
    }));
    assert!(eventually(|| socket.exists()), "the service did not bind its socket");
    let out = Command::new(drover_bin())
        .args(["status", "--json"])
        .env("RUNTIME_DIRECTORY", runtime.path())
        .env_remove("DROVER_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "root may control it: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pid"], service.0.id());
    let out = Command::new(drover_bin())
        .args(["stop"])
        .env("RUNTIME_DIRECTORY", runtime.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(service.0.wait().unwrap().success());
}

#[test]
fn the_socket_directory_must_be_a_real_directory_only_we_can_write() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    for (socket, expected) in [
        (link.join("ctl.sock"), "is a symbolic link or not a directory"),
        (open.join("ctl.sock"), "is writable by other users (mode 777)"),
    ] {
        let stderr = run_refused(&socket);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!socket.exists(), "a socket was bound at {}", socket.display());
    }
}

#[test]
fn one_drover_owns_a_socket_path_even_before_it_binds() {
    let worker = test_worker();
    // Another drover that has taken the lock and not bound yet: no socket to find, the lock says.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    let lock_file = std::fs::File::create(dir.path().join("ctl.sock.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("the lock");
    let stderr = run_refused(&socket);
    assert!(stderr.contains("another drover is running there"), "{stderr}");
    drop(held);

    // Two drovers started at once on one path: exactly one runs, every time.
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ctl.sock");
        let start = || {
            Command::new(drover_bin())
                .args(["run", "-n", "1", "--socket"])
                .arg(&socket)
                .arg("--")
                .arg(&worker)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("drover runs")
        };
        let mut pair = [KillOnDrop(start()), KillOnDrop(start())];
        let mut exited = [None, None];
        assert!(
            eventually(|| {
                for (child, exit) in pair.iter_mut().zip(exited.iter_mut()) {
                    if exit.is_none() {
                        *exit = child.0.try_wait().unwrap();
                    }
                }
                exited.iter().any(Option::is_some)
            }),
            "round {round}: neither drover was refused"
        );
        let loser = exited.iter().position(Option::is_some).unwrap();
        assert_eq!(exited[loser].unwrap().code(), Some(1), "round {round}");
        let winner = &mut pair[1 - loser];
        // The loser may be refused before the winner has bound its socket: ask until it answers.
        let stopped = || {
            Command::new(drover_bin())
                .args(["stop", "--socket"])
                .arg(&socket)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        assert!(eventually(stopped), "round {round}: the other drover does not answer");
        assert!(
            eventually(|| winner.0.try_wait().unwrap().is_some()),
            "round {round}: no exit after stop"
        );
        let _ = exited;
    }
}
