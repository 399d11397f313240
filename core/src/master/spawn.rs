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
    /// Set `LISTEN_PID` to the child's own pid (systemd socket activation).
    pub listen_pid: bool,
    /// Pipe the child's stdout and stderr to the master (else they are inherited).
    pub capture_output: bool,
}

/// The master's ends of a captured child's stdout and stderr.
pub(crate) type OutputPipes = Option<(OwnedFd, OwnedFd)>;

/// What a worker's actor needs of its process: signal it, notice its exit, reap it.
///
/// The actor is generic over it so that its lifecycle (the timers, the escalation, the order of
/// what it reports) can be tested against a fake process under tokio's paused clock;
/// [`ChildProcess`] is the real one.
pub(crate) trait Child: Send + Sync + 'static {
    /// The process's pid (the leader of its own process group).
    fn pid(&self) -> u32;

    /// Sends `signal` to the process group (and to the leader if it has left the group). A no-op
    /// once reaped.
    fn signal_group(&self, signal: libc::c_int);

    /// Resolves when the process has exited (it is then a zombie until [`Child::reap`]); resolves
    /// again at once if polled after that.
    fn exited(&self) -> impl std::future::Future<Output = io::Result<()>> + Send + '_;

    /// Kills whatever is left of the process group (the leader has exited) and reaps the leader.
    fn reap(&mut self) -> io::Result<ExitReason>;
}

/// A spawned, not yet reaped, worker process (the leader of its own process group).
#[derive(Debug)]
pub(crate) struct ChildProcess {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
    reaped: bool,
    /// Captured stdout and stderr, until taken by [`ChildProcess::take_output`].
    output: OutputPipes,
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread every fork happens on. See the module docs for why it must outlive every worker.
/// If it cannot be created (the host is out of threads), no worker can ever be spawned: each
/// spawn says so.
fn spawner() -> io::Result<&'static Mutex<std_mpsc::Sender<Job>>> {
    static SPAWNER: OnceLock<Result<Mutex<std_mpsc::Sender<Job>>, String>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = std_mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("drover-spawner".into())
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .map(|_| Mutex::new(tx))
                .map_err(|e| format!("cannot create the drover spawner thread: {e}"))
        })
        .as_ref()
        .map_err(|e| io::Error::other(e.clone()))
}

/// Spawns a process as described, on the spawner thread. Must be called within a tokio runtime.
pub(crate) async fn spawn(spec: SpawnSpec) -> io::Result<ChildProcess> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(spawn_now(spec));
    });
    spawner()?
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send(job)
        .map_err(|_| io::Error::other("the drover spawner thread is gone"))?;
    let (pid, pidfd, output) = rx
        .await
        .map_err(|_| io::Error::other("the drover spawner thread dropped a request"))??;
    // SAFETY: an OwnedFd's raw fd is valid and unchanging for as long as it is owned.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(ChildProcess {
        pid,
        pidfd,
        reaped: false,
        output,
    })
}

fn spawn_now(spec: SpawnSpec) -> io::Result<(u32, OwnedFd, OutputPipes)> {
    super::guardian::ensure_started();
    let mut cmd = Command::new(&spec.program);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd.stdin(Stdio::null());
    if spec.capture_output {
        cmd.stdout(Stdio::piped());
        cmd.stderr(Stdio::piped());
    }
    cmd.process_group(0);

    // Planned before the fork: the closure below must not allocate.
    let mut moves: Vec<(RawFd, RawFd)> = spec
        .fds
        .iter()
        .enumerate()
        .map(|(i, fd)| (fd.as_raw_fd(), 3 + i as RawFd))
        .collect();
    let mut exec = ExecPlan::new(&spec)?;
    let mut cgroup = super::cgroup::JoinPlan::new();
    let parent_pid = nix::unistd::getpid().as_raw();
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // functions may be called: prctl, getppid, getpid, fcntl, dup2 and execve are; it writes only
    // into memory prepared before the fork and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            child_setup(parent_pid, &mut moves)?;
            if let Some(cgroup) = cgroup.as_mut() {
                cgroup.join();
            }
            exec.exec()
        });
    }
    // Registered before the fork, under the lock, so a PID 1 reaper never takes it for an orphan.
    let mut pids = super::pids::lock_worker_pids();
    let mut child = cmd.spawn()?;
    let pid = child.id();
    // `child` is dropped without waiting: std's Child does not reap on drop; we reap through the pidfd.
    let output = match (child.stdout.take(), child.stderr.take()) {
        (Some(out), Some(err)) => Some((OwnedFd::from(out), OwnedFd::from(err))),
        _ => None,
    };
    drop(child);
    match pidfd_open(pid) {
        Ok(pidfd) => {
            pids.insert(pid);
            super::guardian::tell(pid as i32);
            Ok((pid, pidfd, output))
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

/// The exec of a worker, prepared before the fork: argv and the complete environment as
/// NUL-terminated buffers, and where to write the child's own pid.
///
/// drover execs itself (from `pre_exec`) instead of letting std do it for one reason: systemd's
/// socket-activation convention wants `LISTEN_PID` to be the *worker's* pid, which exists only
/// after the fork. The child writes its pid into a slot reserved in the environment.
struct ExecPlan {
    program: std::ffi::CString,
    _argv: Vec<std::ffi::CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// Owns the bytes `envp_ptrs` points into.
    _envp: Vec<Vec<u8>>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// The value part of `LISTEN_PID=`, with room for any pid.
    listen_pid_slot: Option<(*mut u8, usize)>,
}

// SAFETY: the raw pointers point into buffers owned by the plan itself; the plan is used by one
// thread at a time (moved into the pre_exec closure, used only in the forked child).
unsafe impl Send for ExecPlan {}
// SAFETY: as above; nothing is shared mutably across threads.
unsafe impl Sync for ExecPlan {}

const LISTEN_PID_WIDTH: usize = DECIMAL_WIDTH;

impl ExecPlan {
    fn new(spec: &SpawnSpec) -> io::Result<ExecPlan> {
        use std::os::unix::ffi::OsStrExt;
        let cstring = |bytes: &[u8]| {
            std::ffi::CString::new(bytes)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"))
        };
        let program = cstring(spec.program.as_os_str().as_bytes())?;
        let mut argv = vec![program.clone()];
        for arg in &spec.args {
            argv.push(cstring(arg.as_bytes())?);
        }
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());

        // The master's environment, minus what describes the master's own supervisor, under the
        // worker's variables.
        let mut vars: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = std::env::vars_os()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .filter(|(k, _)| !INHERITED_VARS_TO_DROP.iter().any(|d| d.as_bytes() == k.as_slice()))
            .collect();
        for (k, v) in &spec.env {
            vars.insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
        }
        if spec.listen_pid {
            vars.insert(b"LISTEN_PID".to_vec(), vec![b'0'; LISTEN_PID_WIDTH]);
        }
        let mut envp: Vec<Vec<u8>> = Vec::with_capacity(vars.len());
        for (k, v) in vars {
            if k.contains(&0) || v.contains(&0) {
                continue;
            }
            let mut entry = k;
            entry.push(b'=');
            entry.extend_from_slice(&v);
            entry.push(0);
            envp.push(entry);
        }
        let mut listen_pid_slot = None;
        let mut envp_ptrs: Vec<*const libc::c_char> = Vec::with_capacity(envp.len() + 1);
        for entry in envp.iter_mut() {
            if spec.listen_pid && entry.starts_with(b"LISTEN_PID=") {
                // SAFETY: the value starts right after "LISTEN_PID=", inside the buffer.
                listen_pid_slot = Some((unsafe { entry.as_mut_ptr().add(11) }, LISTEN_PID_WIDTH));
            }
            envp_ptrs.push(entry.as_ptr().cast());
        }
        envp_ptrs.push(std::ptr::null());
        Ok(ExecPlan {
            program,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            listen_pid_slot,
        })
    }

    /// In the child: fills in `LISTEN_PID` and execs. Returns only on failure.
    fn exec(&mut self) -> io::Result<()> {
        if let Some((slot, width)) = self.listen_pid_slot {
            // SAFETY: getpid is async-signal-safe; the slot is `width` writable bytes followed by
            // the entry's NUL, all in this (forked) process's copy of the buffer.
            unsafe {
                let digits = decimal(libc::getpid() as u64);
                let n = digits.iter().position(|d| *d == 0).unwrap_or(DECIMAL_WIDTH).min(width);
                for (i, digit) in digits.iter().take(n).enumerate() {
                    *slot.add(i) = *digit;
                }
                *slot.add(n) = 0;
            }
        }
        // SAFETY: program, argv and envp are NUL-terminated strings in NULL-terminated arrays.
        unsafe { libc::execve(self.program.as_ptr(), self.argv_ptrs.as_ptr(), self.envp_ptrs.as_ptr()) };
        Err(io::Error::last_os_error())
    }
}

/// The most digits of a `u64` in decimal.
pub(super) const DECIMAL_WIDTH: usize = 20;

/// `n` in decimal, NUL-padded: for code between fork and exec (and the guardian), which may not
/// allocate.
pub(super) fn decimal(mut n: u64) -> [u8; DECIMAL_WIDTH] {
    let mut reversed = [0u8; DECIMAL_WIDTH];
    let mut len = 0;
    loop {
        reversed[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 || len == DECIMAL_WIDTH {
            break;
        }
    }
    let mut out = [0u8; DECIMAL_WIDTH];
    for (i, digit) in reversed[..len].iter().rev().enumerate() {
        out[i] = *digit;
    }
    out
}

/// Runs in the child after fork (after std has set up fds 0-2). Async-signal-safe only.
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
        // fds 0-2 are the master's, exactly: std leaves an inherited stdio fd as it is, and a host
        // may have marked its own 0-2 close-on-exec (Node does), which would close the worker's
        // stdout and stderr at exec and let its next socket land on fd 1. Clearing the flag here
        // changes only the child's fd table; an fd the master has closed stays closed (EBADF).
        for fd in 0..=2 {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags != -1 && flags & libc::FD_CLOEXEC != 0 {
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
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

pub(super) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

impl ChildProcess {
    /// The master's ends of the captured stdout and stderr, once.
    pub(crate) fn take_output(&mut self) -> OutputPipes {
        self.output.take()
    }
}

impl Child for ChildProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the worker's whole process group, and to the worker itself if it has
    /// left that group (`setpgid`): the leader is always reachable, through its pidfd. A no-op
    /// once reaped: the pgid may then belong to someone else.
    fn signal_group(&self, signal: libc::c_int) {
        if self.reaped {
            return;
        }
        let pid = self.pid as libc::pid_t;
        // SAFETY: kill with a negative pid signals the group; the leader is unreaped, so the
        // group id is still ours (no new group can take the id of a live pid).
        let rc = unsafe { libc::kill(-pid, signal) };
        if rc == -1 {
            tracing::debug!(pid = self.pid, signal, error = %io::Error::last_os_error(), "signal to process group failed");
        }
        // SAFETY: getpgid of our own unreaped child.
        if unsafe { libc::getpgid(pid) } != pid {
            // The worker moved itself out of its group: the group signal did not reach it. Once,
            // not twice: a worker still in its group already got the signal above.
            // SAFETY: pidfd_send_signal on our child's pidfd, with no siginfo.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    self.pidfd.get_ref().as_raw_fd(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0u32,
                )
            };
            if rc == -1 {
                tracing::debug!(pid = self.pid, signal, error = %io::Error::last_os_error(), "signal to a worker outside its group failed");
            }
        }
    }

    /// Resolves when the pidfd becomes readable: the process has exited.
    async fn exited(&self) -> io::Result<()> {
        let mut guard = self.pidfd.readable().await?;
        // Keep readiness set: it is level-triggered for us, the process stays exited.
        guard.retain_ready();
        Ok(())
    }

    /// Kills whatever is left of the process group (the leader has exited) and reaps the leader.
    fn reap(&mut self) -> io::Result<ExitReason> {
        // Grandchildren left in the group would be orphans; the zombie leader still pins the pgid.
        self.signal_group(libc::SIGKILL);
        let reason = waitid_pidfd(self.pidfd.get_ref().as_fd().as_raw_fd(), 0)?;
        self.reaped = true;
        // Whatever escaped the group (setsid, setpgid) is still in the worker's cgroup.
        super::cgroup::kill_and_remove(self.pid);
        super::guardian::tell(-(self.pid as i32));
        super::pids::forget(self.pid);
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
            super::cgroup::kill_and_remove(self.pid);
            super::guardian::tell(-(self.pid as i32));
            super::pids::forget(self.pid);
        }
    }
}

/// Resident memory of process `pid` in bytes, from `/proc/<pid>/statm` (`None` if it is gone).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf is always safe to call.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}

/// User plus system CPU time process `pid` has used, seconds, from `/proc/<pid>/stat` (`None` if
/// it is gone).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: sysconf is always safe to call.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    parse_cpu_ticks(&stat).map(|used| used as f64 / ticks)
}

/// utime + stime (fields 14 and 15) from a `/proc/<pid>/stat` line. The command name, in
/// parentheses, may contain spaces and parentheses: fields are counted after the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod cpu_tests {
    use super::*;

    #[test]
    fn cpu_fields_are_counted_after_the_command_name() {
        let stat = "4121 (my (odd) prog) S 1 4121 4121 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 50";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert!(cpu_seconds(std::process::id()).is_some());
        assert_eq!(cpu_seconds(u32::MAX), None);
    }
}

/// A process that is not one, for the actor's unit tests: it records the signals it is sent (with
/// the paused clock's time) and exits when SIGKILL comes, when SIGTERM comes if it obeys that, or
/// when the test says.
#[cfg(test)]
pub(crate) mod fake {
    use super::{Child, ExitReason};
    use std::io;
    use std::sync::{Arc, Mutex};
    use tokio::sync::watch;
    use tokio::time::Instant;

    #[derive(Debug)]
    struct Shared {
        pid: u32,
        obeys_sigterm: bool,
        signals: Mutex<Vec<(Instant, libc::c_int)>>,
        exit: watch::Sender<Option<ExitReason>>,
    }

    /// A fake child; clones share the process (the test keeps one, the actor owns the other).
    #[derive(Debug, Clone)]
    pub(crate) struct FakeChild {
        shared: Arc<Shared>,
        reaped: bool,
    }

    impl FakeChild {
        /// A process that ignores SIGTERM (`obeys_sigterm` false) or exits on it.
        pub(crate) fn new(pid: u32, obeys_sigterm: bool) -> FakeChild {
            FakeChild {
                shared: Arc::new(Shared {
                    pid,
                    obeys_sigterm,
                    signals: Mutex::new(Vec::new()),
                    exit: watch::channel(None).0,
                }),
                reaped: false,
            }
        }

        /// The process exits on its own.
        pub(crate) fn exit(&self, reason: ExitReason) {
            self.shared.exit.send_if_modified(|exit| {
                let first = exit.is_none();
                if first {
                    *exit = Some(reason);
                }
                first
            });
        }

        /// The signals sent to it so far, with when.
        pub(crate) fn signals(&self) -> Vec<(Instant, libc::c_int)> {
            self.shared.signals.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }

        /// Whether the process has exited (on its own, or of a signal).
        pub(crate) fn has_exited(&self) -> bool {
            self.shared.exit.borrow().is_some()
        }
    }

    impl Child for FakeChild {
        fn pid(&self) -> u32 {
            self.shared.pid
        }

        fn signal_group(&self, signal: libc::c_int) {
            if self.reaped {
                return;
            }
            self.shared
                .signals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((Instant::now(), signal));
            if signal == libc::SIGKILL || (signal == libc::SIGTERM && self.shared.obeys_sigterm) {
                self.exit(ExitReason::ExternalSignal {
                    signal,
                    core_dumped: false,
                });
            }
        }

        fn exited(&self) -> impl std::future::Future<Output = io::Result<()>> + Send + '_ {
            let mut exit = self.shared.exit.subscribe();
            async move {
                // The sender lives in `self`, which outlives this future: it cannot close.
                let _ = exit.wait_for(Option::is_some).await;
                Ok(())
            }
        }

        fn reap(&mut self) -> io::Result<ExitReason> {
            let exit = *self.shared.exit.borrow();
            match exit {
                Some(reason) => {
                    self.reaped = true;
                    Ok(reason)
                }
                None => Err(io::Error::other("the fake process has not exited")),
            }
        }
    }
}
