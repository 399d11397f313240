//! Busy polling: a little CPU right after IPC traffic, for round trips without a thread wake-up.
//!
//! A request/response round trip between two processes is, on an idle machine, mostly the cost of
//! waking the two sleeping threads: on the 2-vCPU VM drover is built on, one line bounced over a
//! socketpair takes 20 µs (p50) when both sides wait in `epoll_wait`, 11 µs with blocking `read`s,
//! and 5 µs when both sides spin on a non-blocking read instead of sleeping (`bench/` has the
//! figures). A thread that spins for a few tens of microseconds after traffic, before it sleeps,
//! therefore answers the next frame without the wake-up, and costs no CPU once traffic stops.
//!
//! The spin happens where a tokio thread would otherwise go to sleep: [`park_hook`] is the function
//! for tokio's `on_thread_park`. Once busy polling is [`enable`]d, and until the window has passed
//! since the last frame this process read or wrote on any drover channel, it polls a private epoll
//! set holding every drover channel (edge-triggered, so it sees only new arrivals) and returns as
//! soon as one has data; the runtime's own `epoll_wait` then finds the data without sleeping. It
//! never delays a ready task (tokio calls it only when it has nothing to run), never runs while the
//! process is idle, and costs one atomic load per park while busy polling is off. Between two
//! polls it yields its CPU (`sched_yield`): a thread ready to run there goes first. That matters
//! when threads outnumber CPUs: in Node, a runtime thread that spun without yielding kept the JS
//! thread that had to answer waiting (2 CPUs: round trip p50 36–62 µs and p99 139–168 µs; yielding,
//! 22–31 µs and 41–83 µs).
//!
//! Who enables it: a [`crate::Master`] whose config sets [`crate::MasterConfig::busy_poll`], and a
//! worker's [`crate::MessageBus`] when its master passed a window in `DROVER_BUSY_POLL_US`; but
//! neither when a host reads the channels on its own thread ([`crate::Master::set_channel_host`],
//! [`crate::BusOptions::host_reads`], as the Node addon does): the runtime does not read them
//! then, and its spinning would only take a CPU from the host's thread. The
//! runtimes drover builds (the C library's, the Node addon's, the `drover` command's) install the
//! hook; a Rust program installs it on its own runtime:
//!
//! ```
//! use std::time::Duration;
//!
//! let runtime = tokio::runtime::Builder::new_current_thread()
//!     .enable_all()
//!     .on_thread_park(drover::busy_poll::park_hook())
//!     .build()
//!     .expect("a runtime");
//! let config = drover::MasterConfig::program("./worker").busy_poll(Duration::from_micros(50));
//! # drop((runtime, config));
//! ```
//!
//! It pays off on a current-thread runtime, whose one thread is also the one waiting on the I/O
//! driver. On a multi-thread runtime the thread that spun may not be the one tokio parks on the
//! driver, so the wake-up is not always saved; only one thread spins at a time there.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::protocol::env;

/// The epoll set of drover channels, made when busy polling is first enabled (close-on-exec: no
/// worker inherits it). `None`: epoll failed, and busy polling is off for this process.
static WATCHED: OnceLock<Option<OwnedFd>> = OnceLock::new();
/// When this process last read or wrote a frame, in nanoseconds since [`epoch`].
static LAST_ACTIVITY: AtomicU64 = AtomicU64::new(0);
/// The window, in nanoseconds: the largest one enabled in this process (0: off).
static WINDOW_NS: AtomicU64 = AtomicU64::new(0);
/// True while one thread spins (on a multi-thread runtime, one spinner is enough).
static SPINNING: AtomicBool = AtomicBool::new(false);

/// The longest window accepted: a longer spin is a polling loop, not a wait for a reply.
pub const MAX_WINDOW: Duration = Duration::from_millis(10);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn watched() -> Option<RawFd> {
    WATCHED.get().and_then(|ep| ep.as_ref()).map(AsRawFd::as_raw_fd)
}

/// True once busy polling was enabled in this process: channels are watched, activity is recorded.
#[doc(hidden)]
pub fn enabled() -> bool {
    watched().is_some()
}

/// Adds a channel socket to the watched set (a no-op while busy polling is off).
pub(crate) fn watch(fd: RawFd) {
    let Some(ep) = watched() else { return };
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
        u64: 0,
    };
    // SAFETY: `ep` is our open epoll fd, `fd` an open socket owned by the caller, `event` valid.
    if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut event) } != 0 {
        tracing::debug!(fd, error = %std::io::Error::last_os_error(), "busy poll: cannot watch a channel");
    }
}

/// Removes a channel socket from the watched set, before its fd is closed.
pub(crate) fn unwatch(fd: RawFd) {
    let Some(ep) = watched() else { return };
    // SAFETY: as in `watch`; deleting an fd that was never added only returns ENOENT.
    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
}

/// Records that a frame was just read or written.
pub(crate) fn touch() {
    if enabled() {
        LAST_ACTIVITY.store(now_ns(), Ordering::Relaxed);
    }
}

/// Turns busy polling on for this process with (at least) `window`, capped at [`MAX_WINDOW`]:
/// channels opened from now on are watched, and [`park_hook`] spins. Several callers: the largest
/// window wins. A zero window does nothing.
#[doc(hidden)]
pub fn enable(window: Duration) {
    let window_ns = u64::try_from(window.min(MAX_WINDOW).as_nanos()).unwrap_or(0);
    if window_ns == 0 {
        return;
    }
    WATCHED.get_or_init(|| {
        // SAFETY: epoll_create1 takes flags only; a non-negative result is a new fd we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "busy poll off: epoll_create1 failed");
            return None;
        }
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    });
    if enabled() {
        WINDOW_NS.fetch_max(window_ns, Ordering::Relaxed);
    }
}

/// The busy-poll window in force in this process (zero: off).
pub fn window() -> Duration {
    Duration::from_nanos(WINDOW_NS.load(Ordering::Relaxed))
}

/// The function to pass to tokio's `Builder::on_thread_park`: before the thread sleeps, while
/// fewer than [`window`] have passed since the last frame, it spins until a drover channel has new
/// data. Does nothing until busy polling is [`enable`]d.
pub fn park_hook() -> impl Fn() + Send + Sync + 'static {
    || {
        let window_ns = WINDOW_NS.load(Ordering::Relaxed);
        if window_ns > 0 {
            spin(window_ns);
        }
    }
}

/// Spins until `window_ns` after the last activity, or until a watched channel has new data.
fn spin(window_ns: u64) {
    let Some(ep) = watched() else { return };
    if now_ns() >= LAST_ACTIVITY.load(Ordering::Relaxed).saturating_add(window_ns) {
        return;
    }
    if SPINNING.swap(true, Ordering::Acquire) {
        return;
    }
    let mut event = libc::epoll_event { events: 0, u64: 0 };
    while now_ns() < LAST_ACTIVITY.load(Ordering::Relaxed).saturating_add(window_ns) {
        // SAFETY: `ep` is our open epoll fd; room for one event; timeout 0 never blocks.
        if unsafe { libc::epoll_wait(ep, &mut event, 1, 0) } > 0 {
            break;
        }
        // Not a pure spin: a thread that is ready to run on this CPU (the host's event loop, say
        // Node's JS thread, when there are fewer CPUs than busy threads) gets it first.
        std::thread::yield_now();
    }
    SPINNING.store(false, Ordering::Release);
}

/// The window a master asked its workers to busy-poll for (`DROVER_BUSY_POLL_US`), if any.
#[doc(hidden)]
pub fn window_from_env() -> Option<Duration> {
    parse_window(&std::env::var(env::BUSY_POLL_US).ok()?)
}

/// Microseconds, capped at [`MAX_WINDOW`]; `None` for zero or anything but a number.
fn parse_window(micros: &str) -> Option<Duration> {
    let micros: u64 = micros.trim().parse().ok()?;
    (micros > 0).then(|| Duration::from_micros(micros).min(MAX_WINDOW))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_window_is_parsed_and_capped() {
        assert_eq!(parse_window("40"), Some(Duration::from_micros(40)));
        assert_eq!(parse_window(" 40\n"), Some(Duration::from_micros(40)));
        assert_eq!(parse_window("999999999"), Some(MAX_WINDOW));
        assert_eq!(parse_window("0"), None);
        assert_eq!(parse_window("fast"), None);
        assert_eq!(parse_window("-5"), None);
    }
}
