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
use std::sync::{Arc, Mutex};

/// fds received and not yet claimed by a frame.
pub type FdQueue = Arc<Mutex<VecDeque<OwnedFd>>>;

/// Reads with `recvmsg` into `buf`. fds that came with the bytes go to `queue` in arrival order,
/// or, for a reader that asked for none (the master: workers pass it no fds), are closed at once.
/// Returns how many bytes came, and whether ancillary data came with them: the kernel ends a read
/// after bytes that carried fds, so a short read then does *not* mean the socket is empty.
///
/// Every channel is read this way, never with `read`: a plain `read` also stops at such bytes, and
/// a reader that took that short read for "empty" waited for the next write to look again (frames
/// behind an fd-carrying one waited seconds, for the worker's next heartbeat).
pub fn recv(fd: RawFd, buf: &mut [u8], queue: Option<&FdQueue>) -> io::Result<(usize, bool)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).map_err(io::Error::from)?;
    let bytes = msg.bytes;
    // More fds than fit: the kernel closed the rest, and the read still ended at them.
    let mut ancillary = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    let mut received = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for cmsg in cmsgs {
            ancillary = true;
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                // SAFETY: the kernel installed these fds in this process for us; nobody else owns them.
                received.extend(fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
    }
    match queue {
        Some(queue) if !received.is_empty() => {
            queue.lock().unwrap_or_else(|p| p.into_inner()).extend(received);
        }
        Some(_) => {}
        None if !received.is_empty() => {
            tracing::debug!(count = received.len(), "closed fds passed unasked on a channel");
            drop(received);
        }
        None => {}
    }
    Ok((bytes, ancillary))
}

/// Writes `bytes` on socket `sock` with `fd` attached to the first byte, without blocking;
/// returns how many bytes went.
pub fn send_with_fd(sock: RawFd, bytes: &[u8], fd: &OwnedFd) -> io::Result<usize> {
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(bytes)];
    sendmsg::<()>(
        sock,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(io::Error::from)
}
