//! The event stream: channel subscribers and callback subscribers see the same events in order.

use drover::{Event, Master, MasterConfig, WorkerStatus};
use drover_tests::test_worker;
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn a_callback_subscriber_sees_what_a_channel_subscriber_sees_until_it_is_dropped() {
    let master = Master::new(MasterConfig::program(test_worker()).count(2)).unwrap();
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = seen.clone();
    let subscription = master.on_event(move |e| sink.lock().unwrap().push(e.clone()));
    let mut events = master.events();
    master.start().await.unwrap();
    let mut from_channel = Vec::new();
    while let Some(e) = events.try_recv() {
        from_channel.push(e);
    }
    assert_eq!(*seen.lock().unwrap(), from_channel);
    let started = from_channel
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Status {
                    to: WorkerStatus::Started,
                    ..
                }
            )
        })
        .count();
    assert_eq!(started, 2);
    drop(subscription);
    let before = seen.lock().unwrap().len();
    master.graceful_shutdown().await.unwrap();
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "no event after the subscription is dropped"
    );
    assert!(events.try_recv().is_some(), "the channel subscriber still gets them");
}
