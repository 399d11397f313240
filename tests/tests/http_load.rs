//! Zero-downtime under load: Rust HTTP workers with keep-alive (`examples/rust/worker.rs`) behind one master-held port, a
//! client hammering them over keep-alive connections while the master reloads, restarts and
//! rescales; and a `kill -9` under load. Loopback only, bounded in time.

use drover::{Master, MasterConfig, Timeouts};
use drover_tests::target_bin;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    by_pid: BTreeMap<u32, usize>,
    connect_errors: Vec<String>,
    other_errors: Vec<String>,
}

/// `CONNECTIONS` keep-alive clients, each sending its next request as soon as the last answer
/// arrives, until `stop`.
fn load(addr: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Tally> {
    tokio::spawn(async move {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(CONNECTIONS)
            .build_http();
        let uri: hyper::Uri = format!("http://{addr}/").parse().expect("a URI");
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            let (client, uri, stop) = (client.clone(), uri.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(uri.clone()).await {
                        Ok(response) => match response.into_body().collect().await {
                            Ok(body) => {
                                let pid = String::from_utf8_lossy(&body.to_bytes()).parse().unwrap_or(0);
                                *tally.by_pid.entry(pid).or_default() += 1;
                                tally.ok += 1;
                            }
                            Err(e) => tally.other_errors.push(format!("body: {e}")),
                        },
                        Err(e) if e.is_connect() => tally.connect_errors.push(format!("{e:?}")),
                        Err(e) => tally.other_errors.push(format!("{e:?}")),
                    }
                }
                tally
            }));
        }
        let mut total = Tally::default();
        for c in clients {
            let t = c.await.expect("a client task");
            total.ok += t.ok;
            for (pid, n) in t.by_pid {
                *total.by_pid.entry(pid).or_default() += n;
            }
            total.connect_errors.extend(t.connect_errors);
            total.other_errors.extend(t.other_errors);
        }
        total
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_restart_and_rescale_under_keep_alive_load_fail_no_request() {
    let master = Master::new(config(4)).unwrap();
    master.start().await.unwrap();
    let addr = master.listeners()[0].1.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let client = load(addr, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await; // let the load ramp up (not a sync point)
    master.graceful_reload(None).await.unwrap();
    let id = master.workers()[0].id;
    master.restart_worker(id).await.unwrap();
    master.rescale(6).await.unwrap();
    master.rescale(3).await.unwrap();
    master.graceful_reload(None).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let tally = client.await.unwrap();
    eprintln!(
        "{} requests answered by {} pids: {:?}",
        tally.ok,
        tally.by_pid.len(),
        tally.by_pid
    );
    assert!(
        tally.connect_errors.is_empty(),
        "connections refused: {:?}",
        tally.connect_errors
    );
    assert!(
        tally.other_errors.is_empty(),
        "{} requests failed: {:?}",
        tally.other_errors.len(),
        &tally.other_errors[..tally.other_errors.len().min(5)]
    );
    assert!(tally.by_pid.len() > 1, "only {:?} served", tally.by_pid);
    assert!(tally.ok > 100, "only {} requests in the whole run", tally.ok);
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_fails_only_requests_in_flight_on_the_killed_worker() {
    let master = Master::new(config(4)).unwrap();
    master.start().await.unwrap();
    let addr = master.listeners()[0].1.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let client = load(addr, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = master.workers()[1].pid;
    // SAFETY: killing our own worker.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    tokio::time::sleep(Duration::from_millis(500)).await; // the survivors keep serving meanwhile
    stop.store(true, Ordering::Relaxed);
    let tally = client.await.unwrap();
    eprintln!(
        "{} answered, {} failed after kill -9 of {victim}",
        tally.ok,
        tally.other_errors.len()
    );
    assert!(
        tally.connect_errors.is_empty(),
        "connections refused: {:?}",
        tally.connect_errors
    );
    // Each client connection has at most one request in flight, so at most one failure per
    // connection the killed worker held.
    assert!(
        tally.other_errors.len() <= CONNECTIONS,
        "{} failures: {:?}",
        tally.other_errors.len(),
        tally.other_errors
    );
    let after: usize = tally
        .by_pid
        .iter()
        .filter(|(pid, _)| **pid != victim)
        .map(|(_, n)| n)
        .sum();
    assert!(after > 0, "the other workers kept serving");
    master.graceful_shutdown().await.unwrap();
}
