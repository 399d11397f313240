//! Leader election in the master (PROTOCOL.md §5.9) with real workers and a real TCP upstream
//! that counts the connections held to it: one leader at a time, a new one when it dies or is
//! stopped, never two holding the upstream at once.

use drover::{Event, Events, Master, MasterConfig, WorkerId};
use drover_tests::{eventually, next_matching, test_config};
use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const KEY: &str = "upstream-client";
const DEADLINE: Duration = Duration::from_secs(30);

/// A TCP server that counts the connections open to it and the most ever open at once. Before it
/// counts a new connection it reads every open one to see if it ended, so a connection its peer
/// closed is never counted with the next one.
struct Upstream {
    address: String,
    live: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (live, max, accepted, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (l, m, a, s) = (live.clone(), max.clone(), accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut open: Vec<TcpStream> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let new = listener.accept().ok();
                open.retain_mut(|c| {
                    let mut bytes = [0u8; 64];
                    match c.read(&mut bytes) {
                        Ok(0) => false,
                        Ok(_) => true,
                        Err(e) => e.kind() == ErrorKind::WouldBlock,
                    }
                });
                if let Some((c, _)) = new {
                    c.set_nonblocking(true).unwrap();
                    open.push(c);
                    a.fetch_add(1, Ordering::SeqCst);
                }
                l.store(open.len(), Ordering::SeqCst);
                m.fetch_max(open.len(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Upstream {
            address,
            live,
            max,
            accepted,
            stop,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn config(count: usize, upstream: &Upstream) -> MasterConfig {
    test_config("leadership", count)
        .env("DROVER_TEST_LEADERSHIP", KEY)
        .env("DROVER_TEST_UPSTREAM", upstream.address.clone())
        .env("DROVER_TEST_RESIGN_AFTER_MS", "300")
}

/// The next `leader` frame a worker reported: (reporting worker, leader, term, you).
async fn next_leader_report(events: &mut Events) -> (WorkerId, Option<WorkerId>, u64, bool) {
    next_matching(events, |e| match e {
        Event::Message { id, data, .. } => data.get("leader").map(|l| {
            (
                *id,
                l["leader"].as_u64(),
                l["term"].as_u64().unwrap_or(0),
                l["you"].as_bool().unwrap_or(false),
            )
        }),
        _ => None,
    })
    .await
}

/// Waits until the master has a leader other than `not`, and every live worker reported it.
async fn settled_leader(master: &Master, events: &mut Events, not: Option<WorkerId>) -> (WorkerId, u64) {
    let (leader, term) = loop {
        let _ = next_leader_report(events).await;
        if let Some((Some(l), term)) = master.leader(KEY) {
            if Some(l) != not {
                break (l, term);
            }
        }
    };
    let live: Vec<WorkerId> = master
        .workers()
        .iter()
        .filter(|w| w.is_alive() && w.status == drover::WorkerStatus::Started)
        .map(|w| w.id)
        .collect();
    let mut told = std::collections::BTreeSet::new();
    // Those told before this call count too: the master's own answer is the check for them.
    told.insert(leader);
    let until = tokio::time::Instant::now() + DEADLINE;
    while !live.iter().all(|id| told.contains(id)) && tokio::time::Instant::now() < until {
        let (from, l, t, you) = next_leader_report(events).await;
        if l == Some(leader) && t == term {
            assert_eq!(you, from == leader, "only the leader is told it leads");
            told.insert(from);
        }
    }
    (leader, term)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_started_worker_leads_and_a_dead_leader_is_replaced_without_two_upstream_connections() {
    let upstream = Upstream::start();
    let master = Master::new(config(3, &upstream)).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let (first, term) = settled_leader(&master, &mut events, None).await;
    assert!(
        eventually(DEADLINE, || upstream.live.load(Ordering::SeqCst) == 1).await,
        "the leader connects upstream"
    );

    let pid = master.worker(first).unwrap().pid;
    // SAFETY: a plain kill of our own worker.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let (second, second_term) = settled_leader(&master, &mut events, Some(first)).await;
    assert_ne!(second, first);
    assert!(second_term > term, "the term grows: {term} then {second_term}");
    assert!(
        eventually(DEADLINE, || upstream.accepted.load(Ordering::SeqCst) == 2
            && upstream.live.load(Ordering::SeqCst) == 1)
        .await,
        "the new leader connects upstream"
    );
    assert_eq!(
        upstream.max.load(Ordering::SeqCst),
        1,
        "never two upstream connections at once"
    );
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_is_deposed_and_nobody_leads_until_it_resigns() {
    let upstream = Upstream::start();
    let master = Master::new(config(2, &upstream)).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let (first, _) = settled_leader(&master, &mut events, None).await;
    assert!(eventually(DEADLINE, || upstream.live.load(Ordering::SeqCst) == 1).await);

    // A restart stops the leader gracefully: it is told it no longer leads, closes its
    // connection, and resigns 300 ms later; only then is another elected.
    let old_pid = master.worker(first).unwrap().pid;
    let restart = {
        let master = master.clone();
        tokio::spawn(async move { master.restart_worker(first).await })
    };
    let mut resigned = false;
    let mut deposed = false;
    let new_leader = loop {
        let found = next_matching(&mut events, |e| match e {
            Event::Message { id, data, .. } => Some((*id, data.clone())),
            _ => None,
        })
        .await;
        let (from, data) = found;
        if data.get("resigned").is_some() && from == first {
            resigned = true;
        }
        if let Some(l) = data.get("leader") {
            if from == first && !l["you"].as_bool().unwrap_or(true) {
                deposed = true;
            }
            if let Some(leader) = l["leader"].as_u64() {
                if leader != first {
                    assert!(
                        resigned || !drover_tests::pid_exists(old_pid),
                        "a new leader ({leader}) was told before the old one let go"
                    );
                    break leader;
                }
            }
        }
    };
    assert!(deposed, "the stopping leader was told first");
    restart.await.unwrap().unwrap();
    assert!(
        eventually(DEADLINE, || upstream.accepted.load(Ordering::SeqCst) >= 2
            && upstream.live.load(Ordering::SeqCst) == 1)
        .await
    );
    assert_eq!(upstream.max.load(Ordering::SeqCst), 1);
    assert_eq!(master.leader(KEY).and_then(|(l, _)| l), Some(new_leader));
    master.graceful_shutdown().await.unwrap();
}
