//! Which pids are drover's own workers, for a process that reaps adopted orphans.
//!
//! drover never reaps anything but its own children, through their pidfds. A standalone binary
//! that runs as PID 1 (or as a child subreaper) must also reap the orphans it adopts, and must not
//! steal the exit of a worker in doing so. This registry tells the two apart: a pid is registered
//! (under [`lock_worker_pids`]) from *before* the fork until after drover has reaped it, so a
//! reaper that holds the lock while it waits never sees a worker's zombie as an orphan.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, OnceLock};

fn registry() -> &'static Mutex<HashSet<u32>> {
    static PIDS: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    PIDS.get_or_init(Default::default)
}

/// The set of worker pids, locked: no worker is spawned or forgotten while it is held. Hold it
/// while reaping orphans (`waitpid` on pids it does not contain); do not hold it across an await.
pub struct WorkerPids {
    guard: MutexGuard<'static, HashSet<u32>>,
}

impl WorkerPids {
    /// Whether `pid` is a worker process of some master in this process (spawned, not yet reaped).
    pub fn contains(&self, pid: u32) -> bool {
        self.guard.contains(&pid)
    }

    /// Adds `pid`: a worker, or another child of the host's that an orphan reaper must leave to
    /// its owner (the `drover` command's pre-start command); [`forget`] it once reaped.
    pub fn insert(&mut self, pid: u32) {
        self.guard.insert(pid);
    }
}

/// Locks the registry of worker pids. See [`WorkerPids`].
pub fn lock_worker_pids() -> WorkerPids {
    WorkerPids {
        guard: registry().lock().unwrap_or_else(|p| p.into_inner()),
    }
}

/// Whether `pid` is a worker process of some master in this process (spawned and not yet reaped).
pub fn is_worker_pid(pid: u32) -> bool {
    lock_worker_pids().contains(pid)
}

/// Forgets a worker (or a pid [`WorkerPids::insert`] added) once it is reaped.
pub fn forget(pid: u32) {
    lock_worker_pids().guard.remove(&pid);
}
