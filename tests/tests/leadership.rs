//! Leader election in the master (PROTOCOL.md §5.10) with real workers and a real TCP upstream
//! that counts the connections held to it: one leader at a time, a new one when it dies or is
//! stopped, never two holding the upstream at once.

use drover::{Event, Events, Master, MasterConfig, WorkerId};
use drover_tests::{eventually, next_matching, test_config};
use std::io::{ErrorKind, Read, Write};
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
    /// The last event number written.
    n: Arc<AtomicUsize>,
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
        let n = Arc::new(AtomicUsize::new(0));
        let events = n.clone();
        std::thread::spawn(move || {
            let mut open: Vec<(TcpStream, Vec<u8>)> = Vec::new();
            let mut tick = 0u64;
            while !s.load(Ordering::Relaxed) {
                let new = listener.accept().ok();
                open.retain_mut(|(c, buffered)| {
                    let mut bytes = [0u8; 512];
                    match c.read(&mut bytes) {
                        Ok(0) => false,
                        Ok(got) => {
                            // `GET key` is answered `VALUE key KEY`.
                            buffered.extend_from_slice(&bytes[..got]);
                            while let Some(at) = buffered.iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = buffered.drain(..=at).collect();
                                let line = String::from_utf8_lossy(&line).trim().to_string();
                                if let Some(key) = line.strip_prefix("GET ") {
                                    let _ = c.write_all(format!("VALUE {key} {}\n", key.to_uppercase()).as_bytes());
                                }
                            }
                            true
                        }
                        Err(e) => e.kind() == ErrorKind::WouldBlock,
                    }
                });
                tick += 1;
                if tick.is_multiple_of(3) {
                    // `EVENT n` to every connection, one numbering for all.
                    let number = events.fetch_add(1, Ordering::SeqCst) + 1;
                    open.retain_mut(|(c, _)| {
                        c.write_all(format!("EVENT {number}\n").as_bytes()).is_ok()
                            || matches!(c.take_error(), Ok(None))
                    });
                }
                if let Some((c, _)) = new {
                    c.set_nonblocking(true).unwrap();
                    open.push((c, Vec::new()));
                    a.fetch_add(1, Ordering::SeqCst);
                }
                l.store(open.len(), Ordering::SeqCst);
                m.fetch_max(open.len(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Upstream {
            address,
            n,
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

/// Waits until the master has a leader other than `not`, and every worker of `expected` reported
/// it (with the right `you`).
async fn settled_leader(
    master: &Master,
    events: &mut Events,
    not: Option<WorkerId>,
    expected: &[WorkerId],
) -> (WorkerId, u64) {
    let mut reports = Vec::new();
    loop {
        reports.push(next_leader_report(events).await);
        let Some((Some(leader), term)) = master.leader(KEY) else {
            continue;
        };
        if Some(leader) == not {
            continue;
        }
        let told = |id: &WorkerId| {
            reports
                .iter()
                .any(|(from, l, t, _)| from == id && *l == Some(leader) && *t == term)
        };
        if expected.iter().all(told) {
            for (from, l, t, you) in &reports {
                if *l == Some(leader) && *t == term {
                    assert_eq!(*you, *from == leader, "only the leader is told it leads");
                }
            }
            return (leader, term);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_started_worker_leads_and_a_dead_leader_is_replaced_without_two_upstream_connections() {
    let upstream = Upstream::start();
    let master = Master::new(config(3, &upstream)).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let ids: Vec<WorkerId> = master.workers().iter().map(|w| w.id).collect();
    let (first, term) = settled_leader(&master, &mut events, None, &ids).await;
    assert!(
        eventually(DEADLINE, || upstream.live.load(Ordering::SeqCst) == 1).await,
        "the leader connects upstream"
    );

    let pid = master.worker(first).unwrap().pid;
    // SAFETY: a plain kill of our own worker.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let survivors: Vec<WorkerId> = ids.iter().copied().filter(|id| *id != first).collect();
    let (second, second_term) = settled_leader(&master, &mut events, Some(first), &survivors).await;
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
    let ids: Vec<WorkerId> = master.workers().iter().map(|w| w.id).collect();
    let (first, _) = settled_leader(&master, &mut events, None, &ids).await;
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
    let all = master.leaderships();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].key.as_str(), all[0].leader), (KEY, Some(new_leader)));
    assert_eq!(all[0].term, master.leader(KEY).unwrap().1);
    master.graceful_shutdown().await.unwrap();
}

/// Workers using `drover::leader_client::Cluster` (the Rust face of leader clients): one upstream
/// connection, followers' invokes answered by the leader's client, and across a kill -9 of the
/// leader every event number received or inside a gap the subscriber was told of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_leader_clients_share_one_upstream_connection_and_tell_every_gap() {
    let upstream = Upstream::start();
    let config = test_config("cluster", 3)
        .env("DROVER_TEST_CLUSTER", "up")
        .env("DROVER_TEST_UPSTREAM", upstream.address.clone());
    let master = Master::new(config).unwrap();
    let mut events = master.events();
    let reports: Arc<std::sync::Mutex<std::collections::BTreeMap<WorkerId, Vec<serde_json::Value>>>> =
        Default::default();
    let sink = reports.clone();
    let _subscription = master.on_event(move |e| {
        if let Event::Message { id, data, .. } = e {
            sink.lock().unwrap().entry(*id).or_default().push(data.clone());
        }
    });
    master.start().await.unwrap();
    let ids: Vec<WorkerId> = master.workers().iter().map(|w| w.id).collect();
    let received = |id: WorkerId| -> Vec<u64> {
        reports.lock().unwrap().get(&id).map_or(Vec::new(), |r| {
            r.iter()
                .filter_map(|m| m.get("cluster_events"))
                .flat_map(|e| e.as_array().cloned().unwrap_or_default())
                .filter_map(|n| n.as_u64())
                .collect()
        })
    };
    assert!(
        eventually(DEADLINE, || ids.iter().all(|id| received(*id).len() > 20)).await,
        "events reach every worker"
    );
    assert_eq!(upstream.live.load(Ordering::SeqCst), 1);
    for id in &ids {
        master
            .send(*id, &serde_json::json!({"cmd": "cluster-get", "key": format!("k{id}")}))
            .await
            .unwrap();
        let got = next_matching(&mut events, |e| match e {
            Event::Message { id: from, data, .. } if from == id => data.get("cluster_got").cloned(),
            _ => None,
        })
        .await;
        assert_eq!(got, format!("K{id}"), "worker {id}'s invoke");
    }

    let (leader, _) = master.leader("up").unwrap();
    let leader = leader.expect("a leader");
    let pid = master.worker(leader).unwrap().pid;
    // SAFETY: a plain kill of our own worker.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let killed_at = upstream.n.load(Ordering::SeqCst) as u64;
    let followers: Vec<WorkerId> = ids.iter().copied().filter(|id| *id != leader).collect();
    assert!(
        eventually(DEADLINE, || followers
            .iter()
            .all(|id| received(*id).iter().any(|n| *n > killed_at + 30)))
        .await,
        "events again in every follower after the leader's death"
    );
    assert!(eventually(DEADLINE, || upstream.accepted.load(Ordering::SeqCst) == 2).await);
    assert_eq!(
        upstream.max.load(Ordering::SeqCst),
        1,
        "never two upstream connections at once"
    );
    for id in followers {
        let list = reports.lock().unwrap().get(&id).cloned().unwrap_or_default();
        let mut covered = Vec::new();
        for (i, m) in list.iter().enumerate() {
            if let Some(gap) = m.get("cluster_gap") {
                let next = list[i + 1..]
                    .iter()
                    .filter_map(|r| r.get("cluster_events"))
                    .flat_map(|e| e.as_array().cloned().unwrap_or_default())
                    .find_map(|n| n.as_u64())
                    .unwrap_or(u64::MAX);
                covered.push((gap["last"].as_u64().unwrap_or(0), next));
            }
        }
        let got: std::collections::BTreeSet<u64> = received(id).into_iter().collect();
        let (lo, hi) = (*got.iter().next().unwrap(), *got.iter().last().unwrap());
        let silent: Vec<u64> = (lo..=hi)
            .filter(|n| !got.contains(n) && !covered.iter().any(|(a, b)| n > a && n < b))
            .collect();
        assert!(
            silent.is_empty(),
            "worker {id} lost {silent:?} silently (gaps {covered:?})"
        );
        assert!(!covered.is_empty(), "worker {id} was told of the leader change");
    }
    master.graceful_shutdown().await.unwrap();
}
