//! The write side of a channel, shared by the master (per worker) and the worker's MessageBus.
//!
//! A frame is written straight from the caller's task when nothing is queued before it (one
//! `write` system call, no task hand-off: this is the round-trip fast path). Otherwise it is queued
//! in order and a flush task writes it as soon as the socket is writable, so a peer that stops
//! reading never blocks the caller and never reorders frames.
//!
//! The queue is bounded ([`MAX_QUEUED_BYTES`], or [`FrameWriter::with_limit`]): a message that
//! would take a peer's unread backlog past the bound is refused at once with [`WriteFailure::Full`]
//! (its sender hears of it; nothing is dropped silently). Control frames (`stop`, `quit`, answers
//! to `listen`) are not refused below twice the bound; past that the peer has read nothing for a
//! long time and the channel is failed, as if its socket had failed.
//!
//! The gate enforces the protocol's ordering rules for the master: nothing but a `welcome` (or a
//! refusal) is written first, and nothing after `quit` (a late message is refused with
//! [`WriteFailure::Quitting`], not silently lost).

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{oneshot, Notify};

use super::channel::ChannelWrite;

/// How a frame moves the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A welcome or a refusal: the first frame a worker may read.
    Opens,
    /// `quit`: the last frame a worker will read.
    Closes,
    /// Anything else.
    Plain,
}

/// The default bound on the bytes a channel's writer holds unwritten (the peer is not reading).
pub const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;

/// A channel that failed: the OS error's number where the OS gave one (`EPIPE`, `ECONNRESET`, ...),
/// and what happened, so that no face has to parse the text for the errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoFailure {
    /// The errno, for an OS error; `None` when drover itself gave up on the channel.
    pub errno: Option<i32>,
    /// What happened, with the errno's name when there is one.
    pub message: String,
}

impl IoFailure {
    /// From an OS error: its errno and its message with the errno's name.
    pub fn os(error: &io::Error) -> IoFailure {
        let errno = error.raw_os_error();
        let message = match errno {
            Some(n) => format!("{error} ({})", crate::listen::errno_name(n)),
            None => error.to_string(),
        };
        IoFailure { errno, message }
    }

    /// drover's own reason (the channel closed, the peer read nothing for too long).
    pub fn other(message: impl Into<String>) -> IoFailure {
        IoFailure {
            errno: None,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for IoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a frame was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFailure {
    /// The socket failed (the peer is gone).
    Io(IoFailure),
    /// `quit` was already written.
    Quitting,
    /// The peer is not reading: `queued` bytes wait unwritten, and this frame would take them past
    /// `limit`. Nothing of it was queued.
    Full {
        /// Bytes waiting.
        queued: usize,
        /// The bound.
        limit: usize,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Gate {
    Held,
    Open,
    Closed,
}

struct Pending {
    bytes: Vec<u8>,
    written: usize,
    fd: Option<Arc<OwnedFd>>,
    done: Option<oneshot::Sender<Result<(), WriteFailure>>>,
}

impl Pending {
    fn finish(self, result: Result<(), WriteFailure>) {
        if let Some(done) = self.done {
            let _ = done.send(result);
        }
    }
}

struct State {
    gate: Gate,
    held: Vec<Pending>,
    queue: VecDeque<Pending>,
    /// Bytes of the frames in `held` and `queue`.
    queued: usize,
    limit: usize,
    failed: Option<IoFailure>,
    closed: bool,
}

struct Shared {
    half: ChannelWrite,
    state: Mutex<State>,
    wake: Notify,
}

/// A cloneable handle on one channel's write side.
#[derive(Clone)]
pub struct FrameWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameWriter")
    }
}

/// What [`FrameWriter::submit`] did with a frame.
enum Submitted {
    Done(Result<(), WriteFailure>),
    Queued(oneshot::Receiver<Result<(), WriteFailure>>),
}

impl FrameWriter {
    /// Takes over `half`. With `gated`, frames wait for an [`FrameKind::Opens`] frame.
    /// Must be called within a tokio runtime (it spawns the flush task).
    pub fn new(half: ChannelWrite, gated: bool) -> FrameWriter {
        let state = State {
            gate: if gated { Gate::Held } else { Gate::Open },
            held: Vec::new(),
            queue: VecDeque::new(),
            queued: 0,
            limit: MAX_QUEUED_BYTES,
            failed: None,
            closed: false,
        };
        let shared = Arc::new(Shared {
            half,
            state: Mutex::new(state),
            wake: Notify::new(),
        });
        tokio::spawn(flush(shared.clone()));
        FrameWriter { shared }
    }

    /// Bounds the unwritten bytes at `limit` instead of [`MAX_QUEUED_BYTES`] (see the module
    /// documentation); a frame that is first in line is always taken, whatever its size.
    pub fn with_limit(self, limit: usize) -> FrameWriter {
        self.lock().limit = limit;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a frame and resolves once its bytes are handed to the kernel.
    pub async fn write(&self, bytes: Vec<u8>, kind: FrameKind, fd: Option<Arc<OwnedFd>>) -> Result<(), WriteFailure> {
        self.queue(bytes, kind, fd).await
    }

    /// Queues a frame **now**, in the order of the calls (not of the polls, as [`FrameWriter::write`]
    /// does), and returns a future of its outcome: for frames from one synchronous sequence of
    /// decisions that must reach the peer in that order (the master's routing), whichever task
    /// then awaits them.
    pub fn queue(
        &self,
        bytes: Vec<u8>,
        kind: FrameKind,
        fd: Option<Arc<OwnedFd>>,
    ) -> impl std::future::Future<Output = Result<(), WriteFailure>> + Send + 'static {
        let submitted = self.submit(bytes, kind, fd, true);
        async move {
            match submitted {
                Submitted::Done(result) => result,
                Submitted::Queued(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err(WriteFailure::Io(IoFailure::other("channel closed")))),
            }
        }
    }

    /// Writes a frame without waiting for the outcome (control frames).
    pub fn post(&self, bytes: Vec<u8>, kind: FrameKind, fd: Option<Arc<OwnedFd>>) {
        let _ = self.submit(bytes, kind, fd, false);
    }

    /// Stops the flush task once the queue is written (the channel's owner is done with it).
    /// Frames still held behind the gate can never be written then (nothing opens it after close):
    /// their senders get an error instead of waiting forever (a worker that exited, or never
    /// spoke the protocol, before its welcome).
    pub fn close(&self) {
        let held = {
            let mut st = self.lock();
            st.closed = true;
            let held = std::mem::take(&mut st.held);
            st.queued -= held.iter().map(|p| p.bytes.len()).sum::<usize>();
            held
        };
        self.shared.wake.notify_one();
        for p in held {
            p.finish(Err(WriteFailure::Io(IoFailure::other(
                "the channel closed before the worker's handshake",
            ))));
        }
    }

    fn submit(&self, bytes: Vec<u8>, kind: FrameKind, fd: Option<Arc<OwnedFd>>, wait: bool) -> Submitted {
        let (tx, rx) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let queued = |rx: Option<oneshot::Receiver<_>>| match rx {
            Some(rx) => Submitted::Queued(rx),
            None => Submitted::Done(Ok(())),
        };
        let mut pending = Pending {
            bytes,
            written: 0,
            fd,
            done: tx,
        };
        let mut st = self.lock();
        if let Some(error) = &st.failed {
            return Submitted::Done(Err(WriteFailure::Io(error.clone())));
        }
        if st.closed {
            return Submitted::Done(Err(WriteFailure::Io(IoFailure::other("the channel is closed"))));
        }
        let after = st.queued + pending.bytes.len();
        if st.queued > 0 && after > st.limit {
            let (queued, limit) = (st.queued, st.limit);
            if wait {
                return Submitted::Done(Err(WriteFailure::Full { queued, limit }));
            }
            if after > 2 * limit {
                drop(st);
                let error = format!("the peer read nothing while {queued} bytes waited (limit {limit})");
                let error = IoFailure::other(error);
                fail_all(&self.shared, error.clone());
                return Submitted::Done(Err(WriteFailure::Io(error)));
            }
        }
        match (&st.gate, kind) {
            (Gate::Closed, _) => return Submitted::Done(Err(WriteFailure::Quitting)),
            (Gate::Held, FrameKind::Opens) => {
                st.gate = Gate::Open;
                st.queued += pending.bytes.len();
                st.queue.push_back(pending);
                let held: Vec<Pending> = st.held.drain(..).collect();
                st.queue.extend(held);
                drop(st);
                self.shared.wake.notify_one();
                return queued(rx);
            }
            (Gate::Held, _) => {
                st.queued += pending.bytes.len();
                st.held.push(pending);
                return queued(rx);
            }
            (Gate::Open, FrameKind::Closes) => st.gate = Gate::Closed,
            (Gate::Open, _) => {}
        }
        if st.queue.is_empty() && pending.fd.is_none() {
            // The fast path: nothing ahead of us, write from this task.
            match self.shared.half.try_write(&pending.bytes) {
                Ok(n) if n == pending.bytes.len() => return Submitted::Done(Ok(())),
                Ok(n) => pending.written = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    let error = IoFailure::os(&e);
                    st.failed = Some(error.clone());
                    return Submitted::Done(Err(WriteFailure::Io(error)));
                }
            }
        }
        st.queued += pending.bytes.len();
        st.queue.push_back(pending);
        drop(st);
        self.shared.wake.notify_one();
        queued(rx)
    }
}

/// Writes the queue whenever there is one and the socket takes it; ends once closed and drained,
/// or on a write error. Registers for writability only while the socket is full.
async fn flush(sh: Arc<Shared>) {
    let mut room: Option<super::channel::Writability> = None;
    loop {
        let notified = sh.wake.notified();
        let (empty, done) = {
            let st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
            (
                st.queue.is_empty(),
                st.failed.is_some() || (st.closed && st.queue.is_empty()),
            )
        };
        if done {
            return;
        }
        if empty {
            room = None;
            notified.await;
            continue;
        }
        let full = {
            let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
            let mut full = false;
            while let Some(front) = st.queue.front_mut() {
                match write_some(&sh.half, front) {
                    Ok(true) => {
                        if let Some(p) = st.queue.pop_front() {
                            st.queued -= p.bytes.len();
                            p.finish(Ok(()));
                        }
                    }
                    Ok(false) => {
                        full = true;
                        break;
                    }
                    Err(e) => {
                        drop(st);
                        fail_all(&sh, IoFailure::os(&e));
                        return;
                    }
                }
            }
            full
        };
        if full {
            let waited = match &room {
                Some(room) => room.wait().await,
                None => match sh.half.writability() {
                    Ok(r) => room.insert(r).wait().await,
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = waited {
                fail_all(&sh, IoFailure::os(&e));
                return;
            }
        }
    }
}

/// Writes as much of `p` as the socket takes now; true once all of it is written.
fn write_some(half: &ChannelWrite, p: &mut Pending) -> io::Result<bool> {
    while p.written < p.bytes.len() {
        let result = match (&p.fd, p.written) {
            (Some(fd), 0) => half.try_send_with_fd(&p.bytes, fd),
            _ => half.try_write(&p.bytes[p.written..]),
        };
        match result {
            Ok(n) => p.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn fail_all(sh: &Shared, error: IoFailure) {
    let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
    st.failed = Some(error.clone());
    let mut pending: Vec<Pending> = st.queue.drain(..).collect();
    pending.append(&mut st.held);
    st.queued = 0;
    drop(st);
    for p in pending {
        p.finish(Err(WriteFailure::Io(error.clone())));
    }
}

/// The gate's ordering rules and the bound, on a socket pair under tokio's paused clock (a frame
/// that is never written shows as a read that times out at once, not as a hung test).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::channel;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixStream;

    fn pair(gated: bool) -> (FrameWriter, UnixStream) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let (_read, write) = channel::split(ours).expect("split");
        theirs.set_nonblocking(true).expect("non-blocking");
        let theirs = UnixStream::from_std(theirs).expect("registered");
        (FrameWriter::new(write, gated), theirs)
    }

    /// Exactly `expected` arrives, then nothing more for now.
    async fn peer_reads(theirs: &mut UnixStream, expected: &str) {
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(5), theirs.read_exact(&mut got))
            .await
            .expect("the frames are written")
            .expect("the read succeeds");
        assert_eq!(String::from_utf8_lossy(&got), expected);
        nothing_more(theirs).await;
    }

    async fn nothing_more(theirs: &mut UnixStream) {
        let mut byte = [0u8; 1];
        let more = tokio::time::timeout(Duration::from_secs(5), theirs.read(&mut byte)).await;
        assert!(more.is_err(), "nothing more is written: {more:?}");
    }

    #[tokio::test]
    async fn a_write_to_a_peer_that_is_gone_fails_with_its_errno() {
        let (writer, theirs) = pair(false);
        drop(theirs);
        let result = writer.write(b"m\n".to_vec(), FrameKind::Plain, None).await;
        let Err(WriteFailure::Io(failure)) = result else {
            panic!("a write to a closed peer fails: {result:?}")
        };
        assert_eq!(failure.errno, Some(libc::EPIPE), "{failure:?}");
        assert!(failure.message.contains("EPIPE"), "{failure}");
        // The channel stays failed, with the same errno.
        let again = writer.write(b"n\n".to_vec(), FrameKind::Plain, None).await;
        assert!(
            matches!(
                again,
                Err(WriteFailure::Io(IoFailure {
                    errno: Some(libc::EPIPE),
                    ..
                }))
            ),
            "{again:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn frames_before_the_welcome_wait_for_it_and_follow_it_in_order() {
        let (writer, mut theirs) = pair(true);
        writer.post(b"a\n".to_vec(), FrameKind::Plain, None);
        writer.post(b"b\n".to_vec(), FrameKind::Plain, None);
        nothing_more(&mut theirs).await;
        writer.post(b"welcome\n".to_vec(), FrameKind::Opens, None);
        peer_reads(&mut theirs, "welcome\na\nb\n").await;
        // The gate stays open: the next frame goes straight out.
        assert_eq!(writer.write(b"c\n".to_vec(), FrameKind::Plain, None).await, Ok(()));
        peer_reads(&mut theirs, "c\n").await;
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_written_after_quit_and_a_late_message_hears_why() {
        let (writer, mut theirs) = pair(false);
        writer.post(b"quit\n".to_vec(), FrameKind::Closes, None);
        assert_eq!(
            writer.write(b"late\n".to_vec(), FrameKind::Plain, None).await,
            Err(WriteFailure::Quitting)
        );
        writer.post(b"stop\n".to_vec(), FrameKind::Plain, None);
        peer_reads(&mut theirs, "quit\n").await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_opens_the_gate_as_a_welcome_does() {
        let (writer, mut theirs) = pair(true);
        writer.post(b"listener\n".to_vec(), FrameKind::Plain, None);
        writer.post(b"error\n".to_vec(), FrameKind::Opens, None);
        peer_reads(&mut theirs, "error\nlistener\n").await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_past_the_bound_is_refused_and_control_frames_fail_the_channel_past_twice_it() {
        // Frames held behind the gate count against the bound as unwritten bytes do.
        let (writer, mut theirs) = pair(true);
        let writer = writer.with_limit(100);
        writer.post(vec![b'x'; 60], FrameKind::Plain, None);
        assert_eq!(
            writer.write(vec![b'y'; 60], FrameKind::Plain, None).await,
            Err(WriteFailure::Full { queued: 60, limit: 100 })
        );
        // A control frame is taken up to twice the bound...
        writer.post(vec![b'z'; 100], FrameKind::Plain, None);
        // ...and past it the peer has read nothing for too long: the channel fails.
        writer.post(vec![b'w'; 100], FrameKind::Plain, None);
        assert!(matches!(
            writer.write(b"m\n".to_vec(), FrameKind::Plain, None).await,
            Err(WriteFailure::Io(_))
        ));
        writer.post(b"welcome\n".to_vec(), FrameKind::Opens, None);
        nothing_more(&mut theirs).await;
    }

    #[tokio::test(start_paused = true)]
    async fn closing_fails_the_frames_still_held_behind_the_gate() {
        let (writer, mut theirs) = pair(true);
        let held = tokio::spawn({
            let writer = writer.clone();
            async move { writer.write(b"m\n".to_vec(), FrameKind::Plain, None).await }
        });
        tokio::task::yield_now().await;
        writer.close();
        let result = held.await.expect("the writing task does not panic");
        assert!(matches!(result, Err(WriteFailure::Io(_))), "{result:?}");
        nothing_more(&mut theirs).await;
    }
}
