//! A channel socket split for tokio without waking on writability.
//!
//! `tokio::net::UnixStream` registers its fd for reading *and* writing, edge-triggered: every time
//! the peer reads what we wrote, the kernel reports the socket writable again and wakes a runtime
//! thread for nothing. On a request/response channel that is one useless thread wake-up per message
//! (measured: a third of the context switches of a round trip). Here the fd is registered for
//! reading only; writes are tried directly ([`ChannelWrite::try_write`], never blocking), and only
//! a writer that found the socket full registers for writability ([`Writability`]), until its
//! queue is written.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

use super::codec::FrameCodec;
use super::fdpass::{self, FdQueue};
use super::host_read::HostFrames;
use bytes::BytesMut;
use tokio_util::codec::FramedParts;

/// The most one read asks for.
const READ_CHUNK: usize = 64 * 1024;

/// Splits a connected, non-blocking channel socket. Must be called within a tokio runtime.
pub fn split(stream: UnixStream) -> io::Result<(ChannelRead, ChannelWrite)> {
    stream.set_nonblocking(true)?;
    let stream = Arc::new(stream);
    let read = register(stream.clone(), Interest::READABLE)?;
    let watched = Watched::new(stream.as_raw_fd());
    Ok((
        ChannelRead {
            fd: read,
            fds: None,
            _watched: watched,
        },
        ChannelWrite { stream },
    ))
}

/// Splits a connected channel socket whose read side the host's loop reads ([`HostFrames`]): the
/// runtime never watches it for reading.
pub fn split_for_host(stream: UnixStream, codec: FrameCodec) -> io::Result<(HostFrames, ChannelWrite)> {
    stream.set_nonblocking(true)?;
    let stream = Arc::new(stream);
    let frames = HostFrames::new(stream.clone(), None, BytesMut::new(), codec);
    Ok((frames, ChannelWrite { stream }))
}

/// Registers `inner`'s fd with the runtime for `interest`.
fn register<T: AsRawFd>(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` is (or shares, through an `Arc`) an owned socket: its fd is open and is
    // closed only when its last owner is dropped, so not while the `AsyncFd` holding it lives,
    // and `as_raw_fd` always returns that same fd.
    unsafe { AsyncFd::register_with_interest(inner, interest) }.map_err(|e| e.into_parts().1)
}

/// The read side: registered for readability only.
#[derive(Debug)]
pub struct ChannelRead {
    fd: AsyncFd<Arc<UnixStream>>,
    /// Where passed fds go, if this side takes them; else they are closed as they arrive.
    fds: Option<FdQueue>,
    _watched: Watched,
}

/// The socket is in the busy-poll set (`crate::busy_poll`) while this lives.
#[derive(Debug)]
struct Watched(RawFd);

impl Watched {
    fn new(fd: RawFd) -> Watched {
        crate::busy_poll::watch(fd);
        Watched(fd)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        crate::busy_poll::unwatch(self.0);
    }
}

impl ChannelRead {
    /// Keeps passed fds (`SCM_RIGHTS`) in `fds`, in arrival order, instead of closing them.
    pub fn with_fds(mut self, fds: FdQueue) -> ChannelRead {
        self.fds = Some(fds);
        self
    }

    /// Hands the socket over to the host's loop, with the bytes a [`FramedRead`] over it had read
    /// and not framed yet: the runtime stops watching it.
    ///
    /// [`FramedRead`]: tokio_util::codec::FramedRead
    pub fn into_host(parts: FramedParts<ChannelRead, FrameCodec>) -> HostFrames {
        let ChannelRead { fd, fds, _watched } = parts.io;
        drop(_watched);
        // Deregisters the fd from the runtime; the stream itself stays open.
        let stream = fd.into_inner();
        HostFrames::new(stream, fds, parts.read_buf, parts.codec)
    }
}

impl AsyncRead for ChannelRead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.fd.poll_read_ready(cx))?;
            // At most READ_CHUNK at a time: the caller's buffer is zeroed up to what we offer on
            // every call, and after one large frame its spare capacity can be megabytes.
            let unfilled = buf.initialize_unfilled_to(buf.remaining().min(READ_CHUNK));
            let room = unfilled.len();
            let result = guard.try_io(|fd| fdpass::recv(fd.get_ref().as_raw_fd(), unfilled, this.fds.as_ref()));
            match result {
                Ok(Ok((n, with_fds))) => {
                    // A short read emptied the socket (a stream glues what was written, except
                    // after bytes that carried fds): skip the next read, which would only find
                    // EAGAIN, as tokio's own streams do. A newer edge is not lost: this clears only
                    // the readiness the guard saw.
                    if n > 0 && n < room && !with_fds {
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    crate::busy_poll::touch();
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Would block: readiness was cleared, wait for the next edge.
                Err(_) => continue,
            }
        }
    }
}

/// The write side: not registered with the runtime; writes never block.
#[derive(Debug)]
pub struct ChannelWrite {
    stream: Arc<UnixStream>,
}

impl ChannelWrite {
    /// Writes what the socket takes now (`MSG_NOSIGNAL`: a gone peer is an error, not SIGPIPE);
    /// `WouldBlock` when it is full.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `bytes` is valid for `bytes.len()` bytes; the fd is open (we hold the stream).
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                crate::busy_poll::touch();
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Writes `bytes` with `fd` attached to the first byte; returns how many bytes went.
    pub fn try_send_with_fd(&self, bytes: &[u8], fd: &OwnedFd) -> io::Result<usize> {
        fdpass::send_with_fd(self.stream.as_raw_fd(), bytes, fd)
    }

    /// Writes all of `bytes`, waiting for room when the socket is full (the handshake, before a
    /// [`super::writer::FrameWriter`] takes over).
    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        let mut room: Option<Writability> = None;
        while !bytes.is_empty() {
            match self.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match &room {
                    Some(room) => room.wait().await?,
                    None => room.insert(self.writability()?).wait().await?,
                },
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A registration for writability, for a writer that found the socket full; drop it once the
    /// queue is written, so the runtime is not woken by every read of the peer again.
    pub fn writability(&self) -> io::Result<Writability> {
        // A second fd on the same socket: the read side's registration stays as it is.
        let dup = self.stream.try_clone()?;
        Ok(Writability {
            fd: register(dup, Interest::WRITABLE)?,
        })
    }
}

/// Writability of a channel socket, while a writer waits for room.
#[derive(Debug)]
pub struct Writability {
    fd: AsyncFd<UnixStream>,
}

impl Writability {
    /// Resolves when the socket may take more bytes (possibly spuriously: try, and wait again on
    /// `WouldBlock`). Each call waits for a new report.
    pub async fn wait(&self) -> io::Result<()> {
        let mut guard = self.fd.writable().await?;
        guard.clear_ready();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::writer::{FrameKind, FrameWriter};
    use std::io::Read;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    fn frame(i: usize) -> Vec<u8> {
        format!("{i:08}{}\n", "x".repeat(1000)).into_bytes()
    }

    #[tokio::test]
    async fn a_full_socket_queues_frames_and_writes_them_in_order_once_the_peer_reads() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let (_read, write) = split(ours).expect("split");
        let writer = FrameWriter::new(write, false);
        // About 2 MB: far more than a socket buffer holds, so most of it waits in the queue.
        let n = 2000;
        for i in 0..n - 1 {
            writer.post(frame(i), FrameKind::Plain, None);
        }
        let last = tokio::spawn({
            let writer = writer.clone();
            async move { writer.write(frame(n - 1), FrameKind::Plain, None).await }
        });
        let expected: Vec<u8> = (0..n).flat_map(frame).collect();
        let total = expected.len();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; total];
            let mut theirs = theirs;
            theirs.read_exact(&mut got).map(|_| got)
        });
        let written = tokio::time::timeout(Duration::from_secs(30), last)
            .await
            .expect("the last frame is written within 30 s")
            .expect("the write task does not panic");
        assert_eq!(written, Ok(()));
        let got = reader
            .join()
            .expect("the reader does not panic")
            .expect("read every byte");
        assert!(got == expected, "the frames arrive whole and in order");
    }

    #[tokio::test]
    async fn the_read_side_sees_every_byte_and_the_end() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let (mut read, _write) = split(ours).expect("split");
        let writer = std::thread::spawn(move || {
            let mut theirs = theirs;
            for i in 0..500 {
                std::io::Write::write_all(&mut theirs, &frame(i))?;
            }
            Ok::<_, io::Error>(())
        });
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut got))
            .await
            .expect("EOF within 30 s")
            .expect("no read error");
        writer
            .join()
            .expect("the writer does not panic")
            .expect("every write succeeds");
        let expected: Vec<u8> = (0..500).flat_map(frame).collect();
        assert!(got == expected, "every byte arrives, in order, then EOF");
    }
}
