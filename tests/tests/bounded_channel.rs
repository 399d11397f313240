//! A worker's channel under hostile or careless workers: fds it passes unasked, a worker that
//! stops reading while the master broadcasts.

use drover::{Event, Master, SendError, BROADCAST_TIMEOUT};
use drover_tests::{next_matching, open_fds, test_config};
use serde_json::json;
use std::time::{Duration, Instant};

/// One test at a time: the first counts this process's open fds, which the other's workers move.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_after_an_fd_carrying_frame_arrives_promptly_and_the_fd_is_closed() {
    let _serial = SERIAL.lock().await;
    let master = Master::new(test_config("fd-pair", 1)).unwrap();
    master.start().await.unwrap();
    let id = master.workers()[0].id;
    let mut events = master.events();
    let fds_before = open_fds();
    // Several rounds: a reader that took the short read at the fd for "empty" leaves the second
    // frame unread until the worker writes again, which it does not (no heartbeats here).
    for n in 0..5u64 {
        master.send(id, &json!({"cmd": "fd-pair", "n": n})).await.unwrap();
        let sent = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut got = Vec::new();
        while got.len() < 2 {
            let event = tokio::time::timeout_at(deadline, events.recv())
                .await
                .unwrap_or_else(|_| panic!("round {n}: only {got:?} within 2 s"))
                .expect("the stream stays open");
            if let Event::Message { data, .. } = event {
                got.push(data);
            }
        }
        assert_eq!(got, vec![json!({"with_fd": n}), json!({"after_fd": n})], "in order");
        eprintln!("round {n}: both frames within {:?}", sent.elapsed());
    }
    // The passed fds were closed on arrival: the master holds no more fds than before.
    let fds_after = open_fds();
    assert!(
        fds_after <= fds_before,
        "the master's open fds went from {fds_before} to {fds_after} after 5 unasked fds"
    );
    assert_eq!(master.workers()[0].failure, None, "the worker is not failed for it");
    master.hard_shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_does_not_read_does_not_hold_up_a_broadcast_to_the_others() {
    let _serial = SERIAL.lock().await;
    let master = Master::new(test_config("broadcast-stall", 3)).unwrap();
    master.start().await.unwrap();
    let mut events = master.events();
    let ids: Vec<u64> = master.workers().iter().map(|w| w.id).collect();
    let deaf = ids[0];
    // It blocks its only thread: it reads nothing more from its channel.
    master
        .send(deaf, &json!({"cmd": "block", "ms": 120_000}))
        .await
        .unwrap();
    // 900 KB: more than a socket buffer takes.
    let data = json!({"cmd": "ignore", "pad": "x".repeat(900 * 1024)});
    let check = |took: Duration, report: &drover::BroadcastReport| {
        assert!(
            took <= BROADCAST_TIMEOUT + Duration::from_secs(3),
            "a broadcast took {took:?}"
        );
        let mut reached = report.reached.clone();
        reached.sort();
        assert_eq!(reached, ids[1..].to_vec(), "the reading workers got it: {report:?}");
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.failed[0].0, deaf);
        eprintln!("broadcast answered in {took:?}: {}", report.failed[0].1);
        report.failed[0].1.clone()
    };
    // Its queue has room: the broadcast waits for it, but only so long.
    let began = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(30), master.broadcast_report(&data))
        .await
        .expect("the broadcast answers within 30 s")
        .expect("the message encodes");
    let why = check(began.elapsed(), &report);
    assert!(matches!(why, SendError::Timeout { id, .. } if id == deaf), "{why}");
    // More for it alone, until its unwritten bytes reach the bound: then it is refused at once.
    let sends: Vec<_> = (0..12)
        .map(|_| {
            let (master, data) = (master.clone(), data.clone());
            tokio::spawn(async move { master.send(deaf, &data).await })
        })
        .collect();
    let mut refused = None;
    for send in sends {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_millis(500), send).await {
            refused = Some(e);
        }
    }
    let refused = refused.expect("a send past the bound is refused at once");
    assert!(
        refused.to_string().contains("not reading its channel") && refused.to_string().contains("limit 8388608"),
        "{refused}"
    );
    // Now a broadcast does not wait for it at all.
    let began = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(30), master.broadcast_report(&data))
        .await
        .expect("the broadcast answers within 30 s")
        .expect("the message encodes");
    let took = began.elapsed();
    let why = check(took, &report);
    assert!(matches!(why, SendError::Backlogged { id, .. } if id == deaf), "{why}");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} with the deaf worker at its bound"
    );
    let rounds = 2;
    // The others took every one of them.
    for id in &ids[1..] {
        master.send(*id, &json!({"cmd": "count"})).await.unwrap();
        let count = next_matching(&mut events, |e| match e {
            Event::Message { id: from, data, .. } if from == id && data.get("count").is_some() => {
                data["count"].as_u64()
            }
            _ => None,
        })
        .await;
        assert_eq!(count, rounds as u64, "worker {id} got every broadcast");
    }
    master.hard_shutdown().await.unwrap();
}
