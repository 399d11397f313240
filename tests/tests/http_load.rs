//! Zero-downtime under load: Rust HTTP workers with keep-alive (`examples/rust/worker.rs`)
//! behind one master-held port, a client hammering them over keep-alive connections while the
//! master reloads, restarts and rescales; and a `kill -9` under load. Loopback only, bounded.

use drover::{Master, MasterConfig, Timeouts};
use drover_tests::http_load::Load;
use drover_tests::target_bin;
use std::time::Duration;

const CONNECTIONS: usize = 20;

fn config(count: usize) -> MasterConfig {
    let mut c = MasterConfig::program(target_bin("examples/worker"))
        .count(count)
        .name("http")
        .listen("127.0.0.1:0".parse().expect("an address"));
    c.timeouts = Timeouts {
        start: Duration::from_secs(10),
        stop: Duration::from_secs(10),
        quit: Duration::from_secs(2),
        kill: Duration::from_secs(1),
    };
    c
}

/// The Rust example worker answers with its pid.
fn pid_of(body: &str) -> Option<u32> {
    body.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_restart_and_rescale_under_keep_alive_load_fail_no_request() {
    let master = Master::new(config(4)).unwrap();
    master.start().await.unwrap();
    let load = Load::start(&master.listeners()[0].1, CONNECTIONS, pid_of);
    load.progress(200).await;
    master.graceful_reload(None).await.unwrap();
    load.progress(200).await;
    let id = master.workers()[0].id;
    master.restart_worker(id).await.unwrap();
    master.rescale(6).await.unwrap();
    master.rescale(3).await.unwrap();
    load.progress(200).await;
    master.graceful_reload(None).await.unwrap();
    load.progress(200).await;
    let tally = load.finish().await;
    eprintln!(
        "{} requests answered by {} pids: {:?}",
        tally.ok,
        tally.by_pid.len(),
        tally.by_pid
    );
    tally.assert_nothing_lost();
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_fails_only_requests_in_flight_on_the_killed_worker() {
    let master = Master::new(config(4)).unwrap();
    master.start().await.unwrap();
    let load = Load::start(&master.listeners()[0].1, CONNECTIONS, pid_of);
    load.progress(200).await;
    let victim = master.workers()[1].pid;
    // SAFETY: killing our own worker.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    // The survivors keep serving: 500 more answers after the kill.
    load.progress(500).await;
    let tally = load.finish().await;
    eprintln!(
        "{} answered, {} failed after kill -9 of {victim}",
        tally.ok,
        tally.other_errors.len()
    );
    tally.assert_none_refused();
    // Each client connection has at most one request in flight, so at most one failure per
    // connection the killed worker held.
    assert!(
        tally.other_errors.len() <= CONNECTIONS,
        "{} failures: {:?}",
        tally.other_errors.len(),
        tally.other_errors
    );
    let survivors: usize = tally
        .by_pid
        .iter()
        .filter(|(pid, _)| **pid != victim)
        .map(|(_, n)| n)
        .sum();
    assert!(survivors >= 500, "the other workers kept serving ({survivors} answers)");
    master.graceful_shutdown().await.unwrap();
}
