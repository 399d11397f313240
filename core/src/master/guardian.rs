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
use std::sync::{Mutex, OnceLock};

/// The most worker process groups the guardian tracks at once; beyond that a worker still dies with
/// its master (PDEATHSIG), only its leftovers are not cleaned up.
const CAPACITY: usize = 16 * 1024;

/// The running guardian, and every process group it has been told of and not yet told to forget:
/// a guardian that dies (SIGKILLed by a careless operator, the OOM killer) is replaced, and the
/// new one is told the whole list again.
struct State {
    guardian: Option<Guardian>,
    groups: Vec<i32>,
}

struct Guardian {
    pid: libc::pid_t,
    /// The master's end of the socket; close-on-exec, so only the master holds it.
    socket: OwnedFd,
}

fn state() -> &'static Mutex<State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(|| {
        Mutex::new(State {
            guardian: None,
            groups: Vec::new(),
        })
    })
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    state().lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the guardian if it is not running. Called on the spawner thread before each spawn.
pub(super) fn ensure_started() {
    static FIRST: OnceLock<()> = OnceLock::new();
    FIRST.get_or_init(|| {
        let mut state = lock();
        match start() {
            Ok(guardian) => {
                watch(guardian.pid);
                state.guardian = Some(guardian);
            }
            Err(error) => {
                tracing::warn!(%error, "could not start the drover guardian; grandchildren of workers may outlive a killed master");
            }
        }
    });
}

/// Registers a worker's process group (`+`), or forgets it once reaped (`-`).
pub(super) fn tell(pgid: i32) {
    let mut state = lock();
    if pgid > 0 {
        if state.groups.len() < CAPACITY {
            state.groups.push(pgid);
        }
    } else if let Some(i) = state.groups.iter().position(|g| *g == -pgid) {
        state.groups.swap_remove(i);
    }
    let Some(guardian) = &state.guardian else { return };
    if let Err(error) = send(&guardian.socket, &[pgid]) {
        // EPIPE: the guardian is dead (its watcher may not have run yet). Anything else leaves it
        // be: replacing a live guardian would close its socket, and on EOF it kills every worker.
        if matches!(error.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) {
            replace(&mut state);
        } else {
            tracing::debug!(%error, "telling the guardian failed");
        }
    }
}

/// One send of whole 4-byte records. If the guardian is gone it fails with EPIPE (no signal).
fn send(socket: &OwnedFd, records: &[i32]) -> io::Result<()> {
    let bytes: Vec<u8> = records.iter().flat_map(|r| r.to_ne_bytes()).collect();
    let mut sent = 0;
    while sent < bytes.len() {
        // SAFETY: a send from our own buffer on our own socket; MSG_NOSIGNAL: a dead guardian is
        // EPIPE, never a SIGPIPE that would kill a host (a C program) that does not ignore it.
        let n = unsafe {
            libc::send(
                socket.as_raw_fd(),
                bytes[sent..].as_ptr().cast(),
                bytes.len() - sent,
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        sent += n as usize;
    }
    Ok(())
}

/// Reaps a dead guardian and starts another, which is told every registered group.
fn replace(state: &mut State) {
    if let Some(old) = state.guardian.take() {
        drop(old.socket);
        // SAFETY: waits for our own child, the old guardian, which is dead (we replace only a
        // guardian whose pidfd fired or whose socket said EPIPE): only that pid, never another's.
        unsafe { libc::waitpid(old.pid, std::ptr::null_mut(), 0) };
    }
    match start() {
        Ok(guardian) => {
            if send(&guardian.socket, &state.groups).is_ok() {
                tracing::warn!(
                    groups = state.groups.len(),
                    "the drover guardian died; a new one was started and told every worker's process group"
                );
            }
            watch(guardian.pid);
            state.guardian = Some(guardian);
        }
        Err(error) => {
            tracing::warn!(%error, "the drover guardian died and cannot be restarted; grandchildren of workers may outlive a killed master");
        }
    }
}

/// A thread that waits for the guardian `pid` to die, then replaces it.
fn watch(pid: libc::pid_t) {
    let pidfd = match super::spawn::pidfd_open(pid as u32) {
        Ok(fd) => fd,
        Err(error) => {
            tracing::debug!(%error, "cannot watch the guardian; it is replaced at the next spawn or reap instead");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("drover-guardian-watch".into())
        .spawn(move || {
            let mut pfd = libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            loop {
                // SAFETY: poll on one valid pollfd; a pidfd becomes readable when the process exits.
                let rc = unsafe { libc::poll(&mut pfd, 1, -1) };
                if rc == 1 {
                    break;
                }
                if rc == -1 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    return;
                }
            }
            let mut state = lock();
            // Replaced already (by a failed `tell`) if the current guardian is another process.
            if state.guardian.as_ref().is_some_and(|g| g.pid == pid) {
                replace(&mut state);
            }
        });
    if let Err(error) = spawned {
        tracing::debug!(%error, "cannot watch the guardian");
    }
}

fn start() -> io::Result<Guardian> {
    // Prepared before the fork: the guardian may not allocate.
    let cgroup = super::cgroup::base_cstring();
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
                guardian_main(read_end.as_raw_fd(), cgroup.as_deref())
            }
        }
        pid => Ok(Guardian { pid, socket: write_end }),
    }
}

/// The guardian's whole life. Never returns.
///
/// # Safety
/// Must only run in a child just forked from the master, with `pipe` the guardian's end of the
/// socket and `cgroup` the workers' cgroup directory, if they have one.
unsafe fn guardian_main(pipe: RawFd, cgroup: Option<&std::ffi::CStr>) -> ! {
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
        if let Some(dir) = cgroup {
            clean_cgroups(dir);
        }
        libc::_exit(0)
    }
}

/// The guardian's last act where workers live in cgroups: kill everything in the master's
/// `drover.<pid>` subtree (what escaped its process group included), then remove every worker's
/// cgroup in it — the registered ones and any whose removal the master had not finished when it
/// exited — and the subtree itself. Async-signal-safe, no allocation: the directory is read with
/// `getdents64` into a stack buffer and paths are built in another.
///
/// # Safety
/// Only from `guardian_main`.
unsafe fn clean_cgroups(dir: &std::ffi::CStr) {
    let dir = dir.to_bytes();
    let mut path = [0u8; 4096];
    // Room for "/" + a name (at most 255 bytes) + NUL.
    if dir.len() + 258 > path.len() {
        return;
    }
    path[..dir.len()].copy_from_slice(dir);
    let at = |path: &mut [u8; 4096], tail: &[&[u8]]| {
        let mut end = dir.len();
        for part in tail {
            path[end..end + part.len()].copy_from_slice(part);
            end += part.len();
        }
        path[end] = 0;
    };
    at(&mut path, &[b"/cgroup.kill"]);
    // SAFETY: open/write/close/getdents64/rmdir/nanosleep are async-signal-safe; every path
    // passed is NUL-terminated; getdents64 writes at most `entries.len()` bytes.
    unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_WRONLY);
        if fd >= 0 {
            libc::write(fd, b"1".as_ptr().cast(), 1);
            libc::close(fd);
        }
        at(&mut path, &[]);
        let dirfd = libc::open(
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dirfd >= 0 {
            // Entries removed while the directory is read may hide others from this pass: a
            // second pass finds them.
            for _ in 0..2 {
                libc::lseek(dirfd, 0, libc::SEEK_SET);
                let mut entries = [0u8; 4096];
                loop {
                    let n = libc::syscall(libc::SYS_getdents64, dirfd, entries.as_mut_ptr(), entries.len());
                    if n <= 0 {
                        break;
                    }
                    let mut offset = 0usize;
                    // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name (NUL-ended).
                    while offset + 19 < n as usize {
                        let reclen = u16::from_ne_bytes([entries[offset + 16], entries[offset + 17]]) as usize;
                        if reclen == 0 || offset + reclen > n as usize {
                            break;
                        }
                        let kind = entries[offset + 18];
                        let name = &entries[offset + 19..offset + reclen];
                        let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
                        let name = &name[..len];
                        if kind == libc::DT_DIR && name != b"." && name != b".." && !name.is_empty() {
                            // cgroup.kill is asynchronous: a cgroup is busy until its last process
                            // is gone. Give each about two seconds, then leave it.
                            at(&mut path, &[b"/", name]);
                            remove_dir_patiently(&path);
                        }
                        offset += reclen;
                    }
                }
            }
            libc::close(dirfd);
        }
        at(&mut path, &[]);
        remove_dir_patiently(&path);
    }
}

/// rmdir, retried every 10 ms for up to 2 s while the directory is busy.
///
/// # Safety
/// `path` must be NUL-terminated; async-signal-safe.
unsafe fn remove_dir_patiently(path: &[u8]) {
    for _ in 0..200 {
        // SAFETY: a NUL-terminated path (the caller's promise).
        if unsafe { libc::rmdir(path.as_ptr().cast()) } == 0 || unsafe { *libc::__errno_location() } != libc::EBUSY {
            return;
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        // SAFETY: nanosleep with a valid timespec.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
}
