//! A queue of events handed from drover's runtime threads to the C program's threads, with an
//! eventfd that is readable exactly while something waits in the queue (or the queue is closed).
//!
//! The runtime side pushes; a C thread pops, blocking with a timeout on a condition variable, or
//! polls the fd in its own loop and pops with a zero timeout. The fd's counter is set when the
//! queue turns non-empty and drained when it turns empty, both under the queue's lock, so the fd's
//! readiness never disagrees with the queue.
//!
//! Masters and buses use it the same way: [`Mailbox::for_c`] makes it, [`Mailbox::feed`] spawns
//! the task that moves every item of a [`Source`] (core's master `Events`, a worker's
//! `MessageBus`) into it, and [`Mailbox::next_for_c`] pops for an exported `*_next_event`.
//!
//! The mailbox holds at most [`MAILBOX_CAPACITY`] items: when a C program reads too slowly, the
//! feeding task waits for room, and the source's own bound applies behind it (a master's event
//! queue then drops messages and heartbeats, and the program reads a `DROPPED` event that counts
//! them, in their place).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::sync::Notify;

use crate::error::{drover_result, Failure};
use crate::ffi::timeout_from_ms;

/// Where a mailbox's items come from: a stream of core's that ends with `None`.
pub(crate) trait Source: Send + 'static {
    type Item: Send + 'static;

    /// The next item; `None` once nothing more will come.
    fn next(&mut self) -> impl Future<Output = Option<Self::Item>> + Send;

    /// Whether `item` is the last one, after which the stream is not read any more.
    fn is_last(_item: &Self::Item) -> bool {
        false
    }
}

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
}

/// What a pop found.
enum Pop<T> {
    /// The next item.
    Item(T),
    /// Nothing arrived within the timeout.
    Timeout,
    /// The queue is closed and empty: nothing more will come.
    Closed,
}

/// The most items a mailbox holds before its feeding task waits for the C program to pop.
pub(crate) const MAILBOX_CAPACITY: usize = 1024;

pub(crate) struct Mailbox<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    /// Woken by every pop: the feeding task waits on it while the mailbox is full.
    room: Notify,
    fd: OwnedFd,
}

impl<T> Mailbox<T> {
    fn new() -> io::Result<Mailbox<T>> {
        // SAFETY: eventfd takes no pointers; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Mailbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            room: Notify::new(),
            // SAFETY: `fd` is a fresh eventfd that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// A mailbox for an object handed to C: an eventfd that cannot be created is DROVER_RESULT_OS.
    pub(crate) fn for_c() -> Result<Arc<Mailbox<T>>, Failure> {
        Mailbox::new()
            .map(Arc::new)
            .map_err(|e| Failure::new(drover_result::Os, format!("cannot create an eventfd: {e}")))
    }

    /// Spawns on `runtime` a task that pushes every item of `source` into the mailbox and closes
    /// it when the source ends (or after its last item).
    pub(crate) fn feed<S>(self: &Arc<Self>, runtime: &Runtime, mut source: S)
    where
        S: Source<Item = T>,
        T: Send + 'static,
    {
        let sink = self.clone();
        runtime.spawn(async move {
            while let Some(item) = source.next().await {
                let last = S::is_last(&item);
                sink.push_when_room(item).await;
                if last {
                    break;
                }
            }
            sink.close();
        });
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fd that is readable while items wait (or once closed). Owned by the mailbox.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd. It cannot block (EFD_NONBLOCK)
        // and can only fail when the counter is already huge, which still reads as readable.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd; EAGAIN (already
        // zero) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }

    /// Adds an item (dropped if the mailbox is closed).
    pub(crate) fn push(&self, item: T) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.queue.push_back(item);
        if state.queue.len() == 1 {
            self.signal();
        }
        self.ready.notify_one();
    }

    /// Adds an item once fewer than [`MAILBOX_CAPACITY`] wait (dropped if the mailbox is closed).
    pub(crate) async fn push_when_room(&self, item: T) {
        loop {
            {
                let state = self.lock();
                if state.closed || state.queue.len() < MAILBOX_CAPACITY {
                    drop(state);
                    return self.push(item);
                }
            }
            // A pop in between left a permit: this returns at once then.
            self.room.notified().await;
        }
    }

    /// Closes the mailbox: items already queued can still be popped, then `Closed`.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        if !state.closed {
            state.closed = true;
            if state.queue.is_empty() {
                self.signal();
            }
        }
        self.ready.notify_all();
        self.room.notify_one();
    }

    /// Takes the next item, waiting up to `timeout` (`None`: for ever; zero: not at all).
    fn pop(&self, timeout: Option<Duration>) -> Pop<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        loop {
            if let Some(item) = state.queue.pop_front() {
                if state.queue.is_empty() && !state.closed {
                    self.drain();
                }
                self.room.notify_one();
                return Pop::Item(item);
            }
            if state.closed {
                return Pop::Closed;
            }
            state = match deadline {
                None => self.ready.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Pop::Timeout;
                    }
                    self.ready
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Takes the next item for an exported `*_next_event` function, waiting up to `timeout_ms`
    /// (C's convention: negative waits for ever). Nothing in time is DROVER_RESULT_TIMEOUT,
    /// "`nothing` within N ms"; a closed and empty mailbox is DROVER_RESULT_CLOSED, `closed`.
    pub(crate) fn next_for_c(&self, timeout_ms: i64, nothing: &str, closed: &str) -> Result<T, Failure> {
        match self.pop(timeout_from_ms(timeout_ms)) {
            Pop::Item(item) => Ok(item),
            Pop::Timeout => Err(Failure::new(
                drover_result::Timeout,
                format!("{nothing} within {timeout_ms} ms"),
            )),
            Pop::Closed => Err(Failure::new(drover_result::Closed, closed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }

    /// 0, 1, 2, ... up to a number.
    struct Count(u32, u32);

    impl Source for Count {
        type Item = u32;
        async fn next(&mut self) -> Option<u32> {
            (self.0 < self.1).then(|| {
                self.0 += 1;
                self.0 - 1
            })
        }
    }

    #[test]
    fn a_full_mailbox_holds_its_capacity_and_the_feed_goes_on_as_the_program_pops() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mb = Arc::new(Mailbox::new().unwrap());
        let total = MAILBOX_CAPACITY as u32 + 100;
        mb.feed(&runtime, Count(0, total));
        let len = |mb: &Mailbox<u32>| mb.lock().queue.len();
        let deadline = Instant::now() + Duration::from_secs(10);
        while len(&mb) < MAILBOX_CAPACITY && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(len(&mb), MAILBOX_CAPACITY, "the feed stops at the capacity");
        for i in 0..total {
            assert!(matches!(mb.pop(Some(Duration::from_secs(10))), Pop::Item(n) if n == i));
        }
        assert!(matches!(mb.pop(Some(Duration::from_secs(10))), Pop::Closed));
    }

    #[test]
    fn the_fd_is_readable_exactly_while_items_wait() {
        let mb = Mailbox::new().unwrap();
        assert!(!readable(mb.fd()));
        mb.push(1);
        mb.push(2);
        assert!(readable(mb.fd()));
        assert!(matches!(mb.pop(Some(Duration::ZERO)), Pop::Item(1)));
        assert!(readable(mb.fd()));
        assert!(matches!(mb.pop(Some(Duration::ZERO)), Pop::Item(2)));
        assert!(!readable(mb.fd()));
        assert!(matches!(mb.pop(Some(Duration::from_millis(10))), Pop::Timeout));
        mb.push(3);
        mb.close();
        assert!(matches!(mb.pop(None), Pop::Item(3)));
        assert!(readable(mb.fd()), "a closed mailbox stays readable");
        assert!(matches!(mb.pop(None), Pop::Closed));
    }

    #[test]
    fn a_blocked_pop_wakes_on_push_from_another_thread() {
        let mb = std::sync::Arc::new(Mailbox::new().unwrap());
        let pusher = mb.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            pusher.push(7);
        });
        assert!(matches!(mb.pop(Some(Duration::from_secs(20))), Pop::Item(7)));
        t.join().unwrap();
    }
}
