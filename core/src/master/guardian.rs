//! The guardian: a tiny process that outlives an abruptly killed master just long enough to kill
//! what its workers left behind.
//!
//! `PR_SET_PDEATHSIG` kills each worker when the master process dies, even by SIGKILL, but not the
//! worker's own children: they are in the worker's process group, and nobody is left to signal it.
//! So at the first spawn the master forks (without exec) a guardian. Its only input is a Unix
//! socket (a socketpair, so that a write to a dead guardian is an error, `MSG_NOSIGNAL`, never a
//! SIGPIPE that would kill a host which does not ignore it, a C program say): the master writes
//! `+pgid` when it spawns a worker and `-pgid` when it reaps one. The master's end is
//! close-on-exec, so only the master holds it. When the master dies, for whatever reason, the socket
//! reaches end-of-file and the guardian sends SIGKILL to every process group still registered,
//! then exits. A master that shuts down properly has unregistered everything, and the guardian
//! just exits.
//!
//! The guardian runs only async-signal-safe system calls (it was forked from a multi-threaded
//! process) and no allocation: a fixed table on its stack. It drops every inherited fd, sits in its
//! own session so terminal signals do not reach it, and ignores the usual termination signals.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// The most worker process groups the guardian tracks at once; beyond that a worker still dies with
/// its master (PDEATHSIG), only its leftovers are not cleaned up.
const CAPACITY: usize = 16 * 1024;

static GUARDIAN: OnceLock<Option<OwnedFd>> = OnceLock::new();

/// Starts the guardian if it is not running. Called on the spawner thread before each spawn.
pub(super) fn ensure_started() {
    GUARDIAN.get_or_init(|| match start() {
        Ok(fd) => Some(fd),
        Err(error) => {
            tracing::warn!(%error, "could not start the drover guardian; grandchildren of workers may outlive a killed master");
            None
        }
    });
}

/// Registers a worker's process group (`+`), or forgets it once reaped (`-`).
pub(super) fn tell(pgid: i32) {
    if let Some(Some(fd)) = GUARDIAN.get() {
        let bytes = pgid.to_ne_bytes();
        // SAFETY: a 4-byte send on our socket, one record the guardian reads whole (its buffer is a
        // multiple of 4). If the guardian is gone it fails with EPIPE (no signal): nothing is lost
        // but its protection.
        unsafe { libc::send(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
    }
}

fn start() -> io::Result<OwnedFd> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair fills two fds; both close-on-exec so no worker inherits them.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } == -1
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned these fds.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fork duplicates only this thread; the child runs `guardian_main`, which uses only
    // async-signal-safe calls and never returns.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: we are the freshly forked child. The master's end is closed here, whatever
            // `guardian_main` manages to close after, or the guardian would never see EOF.
            unsafe {
                libc::close(write_end.as_raw_fd());
                guardian_main(read_end.as_raw_fd())
            }
        }
        _ => Ok(write_end),
    }
}

/// The guardian's whole life. Never returns.
///
/// # Safety
/// Must only run in a child just forked from the master, with `pipe` the guardian's end of the socket.
unsafe fn guardian_main(pipe: RawFd) -> ! {
    // SAFETY: only async-signal-safe system calls on fds this process owns; no allocation, no
    // locks, no Rust runtime services.
    unsafe {
        libc::setsid();
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
            libc::SIGTSTP,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Keep only the socket (at fd 3) and /dev/null on 0..2: holding the master's sockets, pipes
        // or a terminal would keep them open after the master is gone.
        if libc::dup2(pipe, 3) == -1 {
            libc::_exit(1);
        }
        if libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) != 0 {
            // Before Linux 5.9: one at a time, up to the fd limit.
            let max = libc::sysconf(libc::_SC_OPEN_MAX);
            let max = if max > 4 { max.min(1 << 20) as i32 } else { 1024 };
            for fd in 4..max {
                libc::close(fd);
            }
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 3 {
                libc::close(null);
            }
        }
        let mut groups = [0i32; CAPACITY];
        let mut count = 0usize;
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::read(3, buf.as_mut_ptr().cast(), buf.len());
            if n == 0 {
                break;
            }
            if n < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            for chunk in buf[..n as usize].chunks_exact(4) {
                let pgid = i32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                if pgid > 0 && count < CAPACITY {
                    groups[count] = pgid;
                    count += 1;
                } else if pgid < 0 {
                    if let Some(i) = groups[..count].iter().position(|g| *g == -pgid) {
                        count -= 1;
                        groups[i] = groups[count];
                    }
                }
            }
        }
        for &pgid in &groups[..count] {
            libc::kill(-pgid, libc::SIGKILL);
        }
        libc::_exit(0)
    }
}
