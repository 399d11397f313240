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

/// Reads with `recvmsg` into `buf`, queueing the fds that came with the bytes. Returns how many
/// bytes came, and whether fds came with them (the kernel ends a read after bytes carrying fds).
pub fn recv_with_fds(fd: RawFd, buf: &mut [u8], queue: &FdQueue) -> io::Result<(usize, bool)> {
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
    let with_fds = !received.is_empty();
    if with_fds {
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the kernel installed these fds in this process for us; nobody else owns them.
        q.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    Ok((bytes, with_fds))
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
