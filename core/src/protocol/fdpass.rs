//! Passing file descriptors over the channel (`SCM_RIGHTS`), for the `listener` frame.
//!
//! The sender attaches the fd to the first byte of the frame; the receiver reads *every* byte
//! with `recvmsg`, so no ancillary data is ever discarded (a plain `read` would make the kernel
//! close the passed fds), and queues the fds in arrival order. A frame that announces an fd finds it
//! at the front of the queue when the frame is decoded, since its first byte came with it.

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// fds received and not yet claimed by a frame.
pub type FdQueue = Arc<Mutex<VecDeque<OwnedFd>>>;

/// The read half of a channel, reading with `recvmsg` and keeping passed fds.
#[derive(Debug)]
pub struct FdReadHalf {
    half: OwnedReadHalf,
    fds: FdQueue,
}

impl FdReadHalf {
    /// Wraps `half`; received fds go to `fds`.
    pub fn new(half: OwnedReadHalf, fds: FdQueue) -> FdReadHalf {
        FdReadHalf { half, fds }
    }
}

fn recv_with_fds(fd: RawFd, buf: &mut [u8], queue: &FdQueue) -> io::Result<usize> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).map_err(io::Error::from)?;
    let bytes = msg.bytes;
    let mut received = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                received.extend(fds);
            }
        }
    }
    if !received.is_empty() {
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the kernel installed these fds in this process for us; nobody else owns them.
        q.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    Ok(bytes)
}

impl AsyncRead for FdReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let stream = this.half.as_ref();
        loop {
            ready!(stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let raw = stream.as_raw_fd();
            match stream.try_io(Interest::READABLE, || recv_with_fds(raw, unfilled, &this.fds)) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Tries to write `bytes` with `fd` attached to the first byte; returns how many bytes went.
pub fn try_send_with_fd(half: &OwnedWriteHalf, bytes: &[u8], fd: &OwnedFd) -> io::Result<usize> {
    let stream = half.as_ref();
    let raw = stream.as_raw_fd();
    let fds = [fd.as_raw_fd()];
    stream.try_io(Interest::WRITABLE, || {
        let iov = [IoSlice::new(bytes)];
        sendmsg::<()>(
            raw,
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(io::Error::from)
    })
}
