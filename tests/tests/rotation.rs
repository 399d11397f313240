//! ECV in core: a group marked down by hand, and the ECV monitor judging a real HTTP server the
//! test flips (healthy, failing, a body past the bound, silent), with real masters and workers.

use drover::ecv::{EcvMonitor, EcvOptions, Rotation};
use drover::{Event, Master};
use drover_tests::{next_matching, test_config};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the health server answers.
const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const HUGE: u8 = 2;
const SILENT: u8 = 3;
const WRONG_BODY: u8 = 4;

/// A health page on 127.0.0.1 answering as `mode` says; its address.
async fn health_server(mode: Arc<AtomicU8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mode = mode.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = match mode.load(Ordering::SeqCst) {
                    HEALTHY => ("200 OK", "ok\n".to_string()),
                    FAILING => ("503 Service Unavailable", "sick\n".to_string()),
                    HUGE => ("200 OK", format!("ok{}", "x".repeat(drover::ecv::MAX_BODY_BYTES))),
                    WRONG_BODY => ("200 OK", "maintenance\n".to_string()),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

fn monitor(addr: &str) -> EcvMonitor {
    let options: EcvOptions = serde_json::from_value(serde_json::json!({
        "url": format!("http://{addr}/health"),
        "validator": "^ok",
        "interval": 100,
        "timeout": 500,
        "failuresBeforeDown": 2,
    }))
    .unwrap();
    EcvMonitor::new(options).unwrap()
}

async fn next_rotation(events: &mut drover::Events) -> Rotation {
    next_matching(events, |e| match e {
        Event::Rotation(r) => Some(r.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_group_marked_down_is_out_of_rotation_and_its_workers_run_on() {
    let master = Master::new(test_config("rotation", 2)).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let pids: Vec<u32> = master.workers().iter().map(|w| w.pid).collect();
    assert!(master.in_rotation());

    master.mark_down();
    master.mark_down(); // no second event: nothing changed
    let rotation = next_rotation(&mut events).await;
    assert_eq!(
        rotation,
        Rotation {
            manual: true,
            monitor: None
        }
    );
    let event = Event::Rotation(rotation);
    assert_eq!(
        event.to_string(),
        "out of rotation (marked down by hand); the workers keep running"
    );
    assert_eq!(event.to_json()["event"], "rotation");
    assert_eq!(event.to_json()["in_rotation"], false);
    assert!(!master.in_rotation());
    let still: Vec<u32> = master
        .workers()
        .iter()
        .filter(|w| w.is_alive())
        .map(|w| w.pid)
        .collect();
    assert_eq!(still, pids);

    master.mark_up();
    assert_eq!(next_rotation(&mut events).await, Rotation::default());
    assert!(master.in_rotation());
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn the_ecv_monitor_follows_the_health_page_and_keeps_its_mark_apart_from_the_manual_one() {
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let addr = health_server(mode.clone()).await;
    let master = Master::new(test_config("ecv", 1)).unwrap();
    let mut events = master.events();
    master.start().await.unwrap();
    let guard = master.monitor_ecv(monitor(&addr));

    mode.store(FAILING, Ordering::SeqCst);
    let down = next_rotation(&mut events).await;
    assert_eq!(
        down.monitor.as_deref(),
        Some(format!("http://{addr}/health answered 503, expected 2xx").as_str())
    );
    assert!(!down.manual);

    // A body that does not match, one past the bound, and silence: each a failure of its own.
    for (what, expected) in [
        (WRONG_BODY, "the body does not match /^ok/".to_string()),
        (
            HUGE,
            format!("the body is longer than {} bytes", drover::ecv::MAX_BODY_BYTES),
        ),
        (SILENT, "no answer within 500ms".to_string()),
    ] {
        mode.store(what, Ordering::SeqCst);
        let rotation = next_rotation(&mut events).await;
        let why = rotation.monitor.unwrap_or_default();
        assert!(why.ends_with(&expected), "{why}");
    }

    // Marked down by hand as well: a passing probe lifts the monitor's mark only.
    master.mark_down();
    next_rotation(&mut events).await;
    mode.store(HEALTHY, Ordering::SeqCst);
    assert_eq!(
        next_rotation(&mut events).await,
        Rotation {
            manual: true,
            monitor: None
        }
    );
    master.mark_up();
    assert_eq!(next_rotation(&mut events).await, Rotation::default());

    // Dropping the guard ends the monitor and lifts its mark.
    mode.store(FAILING, Ordering::SeqCst);
    assert!(next_rotation(&mut events).await.monitor.is_some());
    drop(guard);
    assert_eq!(next_rotation(&mut events).await, Rotation::default());
    assert!(master.workers()[0].is_alive(), "the monitor never touches a worker");
    master.graceful_shutdown().await.unwrap();
}

#[tokio::test]
async fn a_status_validator_wants_that_status_and_no_other() {
    let mode = Arc::new(AtomicU8::new(FAILING));
    let addr = health_server(mode.clone()).await;
    let options: EcvOptions = serde_json::from_value(serde_json::json!({
        "url": format!("http://{addr}/health"),
        "validator": 503,
        "interval": "100ms",
    }))
    .unwrap();
    let monitor = EcvMonitor::new(options).unwrap();
    assert_eq!(monitor.probe().await, Ok(()));
    mode.store(HEALTHY, Ordering::SeqCst);
    let failure = monitor.probe().await.unwrap_err().to_string();
    assert_eq!(failure, format!("http://{addr}/health answered 200, expected 503"));
}
