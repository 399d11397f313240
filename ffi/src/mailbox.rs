//! A queue of events handed from drover's runtime threads to the C program's threads, with an
//! eventfd that is readable exactly while something waits in the queue (or the queue is closed).
//!
//! The runtime side pushes; a C thread pops, blocking with a timeout on a condition variable, or
//! polls the fd in its own loop and pops with a zero timeout. The fd's counter is set when the
//! queue turns non-empty and drained when it turns empty, both under the queue's lock, so the fd's
//! readiness never disagrees with the queue.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
}

/// What a pop found.
pub(crate) enum Pop<T> {
    /// The next item.
    Item(T),
    /// Nothing arrived within the timeout.
    Timeout,
    /// The queue is closed and empty: nothing more will come.
    Closed,
}

pub(crate) struct Mailbox<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    fd: OwnedFd,
}

impl<T> Mailbox<T> {
    pub(crate) fn new() -> io::Result<Mailbox<T>> {
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
            // SAFETY: `fd` is a fresh eventfd that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
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
    }

    /// Takes the next item, waiting up to `timeout` (`None`: for ever; zero: not at all).
    pub(crate) fn pop(&self, timeout: Option<Duration>) -> Pop<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        loop {
            if let Some(item) = state.queue.pop_front() {
                if state.queue.is_empty() && !state.closed {
                    self.drain();
                }
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
