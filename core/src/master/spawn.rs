//! Creating worker processes, and holding on to them until they are reaped.
//!
//! Every fork happens on one dedicated thread that lives as long as the process: Linux's
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, so forking from a tokio worker or
//! blocking-pool thread (which come and go) would kill workers at random. From the child's side:
//! its own process group, `PR_SET_PDEATHSIG(SIGKILL)`, a check that the master did not die before
//! that took effect, and its inherited fds moved into place.
//!
//! A child is tracked by a pidfd, never by a bare pid: exit is noticed by the pidfd becoming
//! readable (no SIGCHLD handler, no `waitpid(-1)`: we are a guest in the host process), the
//! process group is signalled only while the leader is unreaped (so its pgid cannot have been
//! reused), and the child is reaped with `waitid(P_PIDFD)`.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::{Mutex, OnceLock};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use crate::exit::ExitReason;

/// Environment variables that describe the *master's* own supervisor and must not leak into a
/// worker's environment (a drover master can itself be a drover worker, or run under systemd).
const INHERITED_VARS_TO_DROP: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "NODE_CHANNEL_FD",
    "NODE_CHANNEL_SERIALIZATION_MODE",
];

/// What to run, and which fds the child gets where.
pub(crate) struct SpawnSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
    /// fds the child gets at 3, 4, ... in this order (the worker's channel is the last one).
    pub fds: Vec<OwnedFd>,
}

/// A spawned, not yet reaped, worker process (the leader of its own process group).
#[derive(Debug)]
pub(crate) struct ChildProcess {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
    reaped: bool,
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread every fork happens on. See the module docs for why it must outlive every worker.
fn spawner() -> &'static Mutex<std_mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Mutex<std_mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("drover-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("the drover spawner thread can be created at first use");
        Mutex::new(tx)
    })
}

/// Spawns a process as described, on the spawner thread. Must be called within a tokio runtime.
pub(crate) async fn spawn(spec: SpawnSpec) -> io::Result<ChildProcess> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(spawn_now(spec));
    });
    spawner()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send(job)
        .map_err(|_| io::Error::other("the drover spawner thread is gone"))?;
    let (pid, pidfd) = rx
        .await
        .map_err(|_| io::Error::other("the drover spawner thread dropped a request"))??;
    // SAFETY: an OwnedFd's raw fd is valid and unchanging for as long as it is owned.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(ChildProcess {
        pid,
        pidfd,
        reaped: false,
    })
}

fn spawn_now(spec: SpawnSpec) -> io::Result<(u32, OwnedFd)> {
    super::guardian::ensure_started();
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    for var in INHERITED_VARS_TO_DROP {
        cmd.env_remove(var);
    }
    cmd.envs(spec.env);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd.stdin(Stdio::null());
    cmd.process_group(0);

    // Planned before the fork: the closure below must not allocate.
    let mut moves: Vec<(RawFd, RawFd)> = spec
        .fds
        .iter()
        .enumerate()
        .map(|(i, fd)| (fd.as_raw_fd(), 3 + i as RawFd))
        .collect();
    let parent_pid = nix::unistd::getpid().as_raw();
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // functions may be called: prctl, getppid, fcntl and dup2 are, and it allocates nothing.
    unsafe {
        cmd.pre_exec(move || child_setup(parent_pid, &mut moves));
    }
    let child = cmd.spawn()?;
    let pid = child.id();
    // `child` is dropped without waiting: std's Child does not reap on drop; we reap through the pidfd.
    drop(child);
    match pidfd_open(pid) {
        Ok(pidfd) => {
            super::guardian::tell(pid as i32);
            Ok((pid, pidfd))
        }
        Err(err) => {
            // Without a pidfd we cannot supervise it safely: kill and reap it now.
            // SAFETY: plain syscalls on our own, unreaped child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
            Err(err)
        }
    }
}

/// Runs in the child after fork. Async-signal-safe only.
fn child_setup(parent_pid: libc::pid_t, moves: &mut [(RawFd, RawFd)]) -> io::Result<()> {
    // SAFETY: async-signal-safe syscalls with valid arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
            return Err(io::Error::last_os_error());
        }
        // The master may have died between fork and prctl; then nobody would ever kill us.
        if libc::getppid() != parent_pid {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        // First lift every source above the targets (a source may sit on another's target), then
        // dup2 into place; dup2 clears FD_CLOEXEC on the target, the lifted copies close at exec.
        let floor = 3 + moves.len() as RawFd;
        for (src, _) in moves.iter_mut() {
            let lifted = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, floor);
            if lifted == -1 {
                return Err(io::Error::last_os_error());
            }
            *src = lifted;
        }
        for &(src, target) in moves.iter() {
            if libc::dup2(src, target) == -1 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

impl ChildProcess {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the worker's whole process group. A no-op once reaped: the pgid may then
    /// belong to someone else.
    pub(crate) fn signal_group(&self, signal: libc::c_int) {
        if self.reaped {
            return;
        }
        // SAFETY: kill with a negative pid signals the group; the leader is unreaped, so the
        // group id is still ours.
        let rc = unsafe { libc::kill(-(self.pid as libc::pid_t), signal) };
        if rc == -1 {
            tracing::debug!(pid = self.pid, signal, error = %io::Error::last_os_error(), "signal to process group failed");
        }
    }

    /// Resolves when the process has exited (it is then a zombie until [`ChildProcess::reap`]).
    pub(crate) async fn exited(&self) -> io::Result<()> {
        let mut guard = self.pidfd.readable().await?;
        // Keep readiness set: it is level-triggered for us, the process stays exited.
        guard.retain_ready();
        Ok(())
    }

    /// Kills whatever is left of the process group (the leader has exited) and reaps the leader.
    pub(crate) fn reap(&mut self) -> io::Result<ExitReason> {
        // Grandchildren left in the group would be orphans; the zombie leader still pins the pgid.
        self.signal_group(libc::SIGKILL);
        let reason = waitid_pidfd(self.pidfd.get_ref().as_fd().as_raw_fd(), 0)?;
        self.reaped = true;
        super::guardian::tell(-(self.pid as i32));
        Ok(reason)
    }
}

fn waitid_pidfd(pidfd: RawFd, flags: libc::c_int) -> io::Result<ExitReason> {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it for our own child.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: P_PIDFD with a pidfd of our child; info is a valid out-pointer.
        let rc = unsafe { libc::waitid(libc::P_PIDFD, pidfd as libc::id_t, &mut info, libc::WEXITED | flags) };
        if rc == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: waitid succeeded for a CLD_* event, so the status fields are initialised.
        let (code, status) = unsafe { (info.si_code, info.si_status()) };
        return Ok(match code {
            libc::CLD_EXITED => ExitReason::from_code(status),
            libc::CLD_DUMPED => ExitReason::ExternalSignal {
                signal: status,
                core_dumped: true,
            },
            _ => ExitReason::ExternalSignal {
                signal: status,
                core_dumped: false,
            },
        });
    }
}

impl Drop for ChildProcess {
    /// The last line of defence against orphans and zombies: if the owner goes away (a runtime
    /// shut down mid-flight) before reaping, kill the group and reap synchronously. SIGKILL makes
    /// the wait short.
    fn drop(&mut self) {
        if !self.reaped {
            self.signal_group(libc::SIGKILL);
            let _ = waitid_pidfd(self.pidfd.get_ref().as_raw_fd(), 0);
            self.reaped = true;
            super::guardian::tell(-(self.pid as i32));
        }
    }
}

/// Resident memory of process `pid` in bytes, from `/proc/<pid>/statm`.
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf is always safe to call.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}
