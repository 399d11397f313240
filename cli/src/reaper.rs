//! Reaping adopted orphans, for a drover that is PID 1 (in a container) or a child subreaper.
//!
//! Processes whose parent dies are re-parented to PID 1 (or to the nearest subreaper): if nobody
//! waits for them they stay zombies forever. drover's workers are its own children too, and core
//! reaps each through its pidfd: a `waitpid(-1)` here would steal a worker's exit. So on every
//! SIGCHLD (and every second, in case signals coalesced) the reaper lists its zombie children and,
//! holding core's worker-pid lock (no worker is spawned or forgotten meanwhile), reaps only the
//! ones that are not workers.

use std::time::Duration;

use crate::logs::Log;
use crate::procinfo::zombie_children;

/// Makes this process the reaper of its orphaned descendants (`PR_SET_CHILD_SUBREAPER`).
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with an integer option and argument.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether there is a zombie child at all (a cheap check before reading `/proc`).
fn any_zombie() -> bool {
    // SAFETY: siginfo_t is plain data, filled by waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: WNOWAIT leaves the child as it is: this reaps nothing.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
    // SAFETY: waitid succeeded; si_pid is 0 when no child had exited.
    rc == 0 && unsafe { info.si_pid() } != 0
}

/// Reaps every zombie child that is not one of core's workers; returns (pid, wait status).
pub fn reap_orphans() -> Vec<(u32, i32)> {
    if !any_zombie() {
        return Vec::new();
    }
    let zombies = zombie_children(std::process::id());
    let workers = drover::lock_worker_pids();
    let mut reaped = Vec::new();
    for pid in zombies {
        if workers.contains(pid) {
            continue;
        }
        let mut status = 0;
        // SAFETY: waits for one specific child that is not a worker; WNOHANG never blocks.
        let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if rc == pid as libc::pid_t {
            reaped.push((pid, status));
        }
    }
    reaped
}

/// Describes a wait status.
fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        format!("killed by {} ({signal})", drover::signal_name(signal))
    } else {
        format!("wait status {status}")
    }
}

/// Runs for the life of the process.
pub async fn run(log: Log) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(s) => Some(s),
        Err(error) => {
            log.info("reaper", &format!("no SIGCHLD handler ({error}); reaping every second"));
            None
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            Some(()) = async {
                match sigchld.as_mut() {
                    Some(s) => s.recv().await,
                    None => None,
                }
            }, if sigchld.is_some() => {}
            _ = tick.tick() => {}
        }
        let reaped = tokio::task::spawn_blocking(reap_orphans).await.unwrap_or_default();
        for (pid, status) in reaped {
            log.info(
                "orphan-reaped",
                &format!("reaped orphan pid {pid} ({})", describe(status)),
            );
        }
    }
}
