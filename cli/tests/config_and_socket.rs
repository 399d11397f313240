//! What `drover run` refuses before starting anything (a malformed config, a command line without
//! a program), and the control socket's permissions.

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
    // An unknown key and a wrong type: toml's span.
    let (stderr, _d) = refused("[groups.bad]\nprogram = \"sh\"\ncuont = 2\n");
    assert!(stderr.starts_with("drover: drover.toml:9:1:"), "{stderr}");
    assert!(stderr.contains("unknown field `cuont`"), "{stderr}");
    let (stderr, _d) = refused("[groups.bad]\nprogram = \"sh\"\ncount = \"two\"\n");
    assert!(stderr.starts_with("drover: drover.toml:9:"), "{stderr}");
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

#[test]
fn the_control_socket_is_0600_and_refuses_other_users() {
    let worker = test_worker();
    let drover = Drover::start(&["-n", "1", "--name", "web", "--", worker.to_str().unwrap()], &[]);
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

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the other-uid refusal is covered by the unit test of peer_allowed only");
        return;
    }
    // Open the file and its directory to everyone, so that only drover's SO_PEERCRED check stands
    // between another user and the socket.
    std::fs::set_permissions(drover.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&drover.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = {
        use std::os::unix::process::CommandExt;
        Command::new(drover_bin())
            .args(["stop", "--socket"])
            .arg(&drover.socket)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("the client runs as nobody")
    };
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
