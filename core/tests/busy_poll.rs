//! Busy polling (`drover::busy_poll`), alone in its own process: the watched set, the window and
//! the activity clock are process-wide.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use drover::busy_poll;
use drover::protocol::channel;

/// How long one call of the park hook takes.
fn timed(hook: &impl Fn()) -> Duration {
    let started = Instant::now();
    hook();
    started.elapsed()
}

/// True if one of five calls returns within `limit` (a preempted call may take longer).
fn returns_within(limit: Duration, mut attempt: impl FnMut() -> Duration) -> bool {
    (0..5).any(|_| attempt() < limit)
}

#[tokio::test]
async fn the_hook_spins_only_after_traffic_and_stops_for_new_data() {
    let hook = busy_poll::park_hook();
    let (ours, theirs) = UnixStream::pair().expect("socketpair");

    // Off: the hook returns at once, even right after traffic.
    let (_read, write) = channel::split(ours.try_clone().expect("dup")).expect("split");
    write.try_write(b"{}\n").expect("write");
    assert!(returns_within(Duration::from_millis(2), || timed(&hook)));
    assert_eq!(busy_poll::window(), Duration::ZERO);

    // On, with the largest window; a channel opened now is watched.
    busy_poll::enable(Duration::from_secs(1));
    assert!(busy_poll::enabled());
    assert_eq!(busy_poll::window(), busy_poll::MAX_WINDOW);
    let (mut peer, watched) = UnixStream::pair().expect("socketpair");
    let (_read, write) = channel::split(watched).expect("split");

    // Right after traffic, with nothing arriving: spins the whole window.
    write.try_write(b"{}\n").expect("write");
    let spun = timed(&hook);
    assert!(
        spun >= busy_poll::MAX_WINDOW - Duration::from_millis(1),
        "spun {spun:?}, expected about {:?}",
        busy_poll::MAX_WINDOW
    );

    // The window has passed since the last traffic: idle, no spin.
    assert!(returns_within(Duration::from_millis(5), || timed(&hook)));

    // Traffic, then data arriving: stops at once instead of spinning the window.
    assert!(returns_within(Duration::from_millis(5), || {
        write.try_write(b"{}\n").expect("write");
        peer.write_all(b"{}\n").expect("peer write");
        timed(&hook)
    }));
    drop(theirs);
}
