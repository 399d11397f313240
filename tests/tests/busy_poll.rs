//! Busy polling end to end: a master on a current-thread runtime with drover's park hook and a
//! `busy_poll` window, and real workers that spin because the master asked them to.

use drover::{Master, MasterConfig};
use drover_tests::{ask, test_worker};
use serde_json::json;
use std::time::Duration;

#[test]
fn workers_get_the_window_and_every_message_survives_spinning() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(drover::busy_poll::park_hook())
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let config = MasterConfig::program(test_worker())
            .count(2)
            .busy_poll(Duration::from_micros(200));
        let master = Master::new(config).expect("a valid config");
        let mut events = master.events();
        master.start().await.expect("start");
        assert_eq!(drover::busy_poll::window(), Duration::from_micros(200));
        let ids: Vec<u64> = master.workers().iter().map(|w| w.id).collect();
        for &id in &ids {
            let got = ask(&master, &mut events, id, json!({ "cmd": "busy-poll" })).await;
            assert_eq!(got, json!({ "window_us": 200, "env": "200" }), "worker {id}");
        }
        // Round trips alternating between the workers: each echo comes back, whole and in order.
        for i in 0..2000 {
            let id = ids[i % ids.len()];
            let got = ask(&master, &mut events, id, json!({ "i": i })).await;
            assert_eq!(got, json!({ "echo": { "i": i } }));
        }
        master.graceful_shutdown().await.expect("shutdown");
    });
}

#[tokio::test]
async fn without_a_window_workers_are_not_asked_to_spin() {
    let master = Master::new(MasterConfig::program(test_worker()).count(1)).expect("a valid config");
    let mut events = master.events();
    master.start().await.expect("start");
    let id = master.workers()[0].id;
    let got = ask(&master, &mut events, id, json!({ "cmd": "busy-poll" })).await;
    assert_eq!(got, json!({ "window_us": 0, "env": null }));
    master.graceful_shutdown().await.expect("shutdown");
}

#[test]
fn a_window_over_the_limit_is_refused_naming_the_field() {
    let config = MasterConfig::program(test_worker()).busy_poll(Duration::from_millis(11));
    let error = Master::new(config).expect_err("over the limit").to_string();
    assert!(error.contains("busyPollUs"), "{error}");
}
