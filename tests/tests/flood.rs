//! A worker that floods its channel cannot take the master's memory. Alone in its test binary:
//! it measures this process's resident memory, which other tests running beside it would blur.

use drover::{Event, Master, RestartPolicy, EVENT_QUEUE_EVENTS};
use drover_tests::{next_matching, open_fds, test_config};
use serde_json::json;
use std::time::{Duration, Instant};

/// This process's resident memory, bytes, from /proc.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// The bound this test holds the master to: generous (the queues' own bounds are 16 MiB of
/// messages per subscriber), and far below what an unbounded queue reaches in the same time.
const GROWTH_LIMIT: u64 = 64 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_flooding_heartbeats_and_messages_keep_the_master_memory_bounded() {
    let mut config = test_config("flood", 2);
    config.restart = RestartPolicy::Never;
    let master = Master::new(config).unwrap();
    master.start().await.unwrap();
    let ids: Vec<u64> = master.workers().iter().map(|w| w.id).collect();
    // One subscriber that reads (lifecycle events are never dropped: it sees both exits), and one
    // that reads nothing while the flood lasts, as a stalled log or program would.
    let mut reading = master.events();
    let mut stalled = master.events();
    let (rss_before, fds_before) = (rss_bytes(), open_fds());
    let flood_ms = 3000;
    master
        .send(ids[0], &json!({"cmd": "flood", "kind": "heartbeat", "ms": flood_ms}))
        .await
        .unwrap();
    master
        .send(
            ids[1],
            &json!({"cmd": "flood", "kind": "message", "ms": flood_ms, "pad": 16384}),
        )
        .await
        .unwrap();
    let began = Instant::now();
    let mut peak = rss_before;
    let mut exits = 0;
    let mut heard = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut sample = tokio::time::interval(Duration::from_millis(50));
    while exits < 2 {
        tokio::select! {
            event = reading.recv() => match event.expect("the stream stays open") {
                Event::Exit(_) => exits += 1,
                _ => heard += 1,
            },
            _ = sample.tick() => peak = peak.max(rss_bytes()),
            _ = tokio::time::sleep_until(deadline) => panic!("the flooding workers did not exit within 60 s"),
        }
    }
    peak = peak.max(rss_bytes());
    let growth = peak.saturating_sub(rss_before);
    eprintln!(
        "flood of {:?}: master RSS {} MiB before, peak {} MiB (+{} MiB); fds {fds_before} before, {} after; \
         the reading subscriber got {heard} events",
        began.elapsed(),
        rss_before >> 20,
        peak >> 20,
        growth >> 20,
        open_fds()
    );
    // The stalled subscriber: what it holds is bounded, and what it lost is counted, in place.
    let (mut kept, mut dropped, mut stalled_exits) = (0u64, 0u64, 0);
    let mut tally = |event: Event| match event {
        Event::Dropped { count } => dropped += count,
        Event::Exit(_) => stalled_exits += 1,
        _ => kept += 1,
    };
    // One emit pushes an event to each subscriber in turn: the second exit may reach this queue
    // just after the reading subscriber saw it. Wait for it (with a deadline), never race it.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut exits_seen = 0;
    while exits_seen < 2 {
        let Ok(Some(event)) = tokio::time::timeout_at(until, stalled.recv()).await else {
            break;
        };
        exits_seen += usize::from(matches!(event, Event::Exit(_)));
        tally(event);
    }
    while let Some(event) = stalled.try_recv() {
        tally(event);
    }
    eprintln!("the stalled subscriber kept {kept} events and was told of {dropped} dropped");
    assert!(
        growth < GROWTH_LIMIT,
        "the master's RSS grew by {} MiB under the flood (limit {} MiB)",
        growth >> 20,
        GROWTH_LIMIT >> 20
    );
    assert!(
        dropped > 0,
        "a subscriber that stalled under a flood loses counted events"
    );
    assert!(kept <= EVENT_QUEUE_EVENTS as u64 + 8, "it held {kept} events");
    assert_eq!(stalled_exits, 2, "no exit is dropped for room");
    // The master still answers: a new worker starts and talks.
    master.restart_worker(ids[0]).await.unwrap();
    let id = ids[0];
    master.send(id, &json!({"cmd": "pid"})).await.unwrap();
    next_matching(&mut reading, |e| match e {
        Event::Message { id: from, data, .. } if *from == id && data.get("pid").is_some() => Some(()),
        _ => None,
    })
    .await;
    master.graceful_shutdown().await.unwrap();
}
