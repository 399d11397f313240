//! `drover` started by systemd with sockets (`LISTEN_FDS`, `LISTEN_PID` = its pid) serves those
//! sockets to its workers instead of binding its own. systemd is played by a drover master (core),
//! which passes sockets exactly that way.

mod common;

use common::{drover_bin, test_worker};
use drover::{Master, MasterConfig, ReadySource};
use std::time::Duration;

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drover_run_under_socket_activation_serves_the_inherited_socket() {
    // A free port for "systemd" to bind (and hold for the whole test).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    let systemd = Master::new(
        MasterConfig::program(drover_bin())
            .args([
                "run",
                "--socket",
                socket.to_str().unwrap(),
                "-n",
                "2",
                "--listen",
                &addr,
                "--",
            ])
            .arg(test_worker())
            .count(1)
            .name("systemd")
            .env("DROVER_TEST_SERVE_FDS", "1")
            .listen(addr.parse().unwrap())
            .ready(ReadySource::Spawn),
    )
    .unwrap();
    systemd.start().await.unwrap();
    let drover_pid = systemd.workers()[0].pid;
    // Had drover bound the address itself, it would have failed with EADDRINUSE and exited.
    let mut served = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while served.len() < 2 && std::time::Instant::now() < deadline {
        let a = addr.clone();
        match tokio::task::spawn_blocking(move || drover_tests::ask_pid(&a))
            .await
            .unwrap()
        {
            Ok(pid) => {
                assert_eq!(
                    parent_of(pid),
                    Some(drover_pid),
                    "pid {pid} is a worker of the activated drover"
                );
                served.insert(pid);
            }
            // Until drover's workers are up, the connection waits in the backlog or is answered
            // by nobody; both resolve once they start.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        assert!(
            systemd.workers()[0].is_alive(),
            "drover exited: {:?}",
            systemd.workers()[0].exit
        );
    }
    assert_eq!(served.len(), 2, "both of drover's workers serve the inherited socket");
    systemd.graceful_shutdown().await.unwrap(); // SIGTERM to drover: it shuts its workers down
    for pid in served {
        assert!(!drover_tests::pid_is_running(pid));
    }
}
