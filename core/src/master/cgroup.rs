//! Containment of each worker's whole process tree in a cgroup (v2), where the kernel lets us.
//!
//! A worker's process group is drover's portable containment: stop signals go to the group, and
//! what is left of it is killed when the worker exits. But a process may leave its group: a
//! worker's child that calls `setsid()` or `setpgid()` escapes, and would outlive stops, restarts
//! and even a SIGKILLed master. A cgroup cannot be left by an unprivileged process. So when this
//! process may create cgroups — as root, or in a subtree delegated to its user (systemd
//! `Delegate=yes`, a user session's `user@.service`) — every worker is spawned into a cgroup of its
//! own, `<this process's cgroup>/drover.<master pid>/<worker pid>`, and when the worker is reaped
//! `cgroup.kill` (Linux ≥ 5.14) ends everything still in it. If the master dies, the guardian
//! (`guardian.rs`) kills the whole `drover.<pid>` subtree the same way.
//!
//! Nothing here enables a controller: the cgroups only contain, they limit nothing, so they live
//! beside whatever controllers the parent has. Where cgroups are not available (no cgroup2 mount,
//! not permitted, an older kernel) drover falls back to process groups and says so through
//! [`containment`]. `DROVER_CGROUP=off` in the master's environment turns it off.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How a master's workers are contained. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// Each worker runs in its own cgroup under this directory; nothing it starts can escape.
    Cgroup(PathBuf),
    /// Process groups only: a worker's child that leaves its process group (`setsid`,
    /// `setpgid`) is not stopped with it. The reason cgroups are not used.
    ProcessGroup(String),
}

impl std::fmt::Display for Containment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Containment::Cgroup(dir) => write!(f, "a cgroup per worker under {}", dir.display()),
            Containment::ProcessGroup(why) => write!(f, "process groups only ({why})"),
        }
    }
}

/// How this process's masters contain their workers (decided once, at first use).
pub fn containment() -> Containment {
    match base() {
        Ok(dir) => Containment::Cgroup(dir.to_path_buf()),
        Err(why) => Containment::ProcessGroup(why.clone()),
    }
}

fn base() -> &'static Result<PathBuf, String> {
    static BASE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BASE.get_or_init(|| {
        let result = create_base();
        match &result {
            Ok(dir) => tracing::debug!(dir = %dir.display(), "workers are contained in cgroups"),
            Err(why) => tracing::debug!(%why, "workers are contained by process groups only"),
        }
        result
    })
}

fn create_base() -> Result<PathBuf, String> {
    if std::env::var_os("DROVER_CGROUP").is_some_and(|v| v == "off" || v == "0") {
        return Err("DROVER_CGROUP=off".into());
    }
    let own = own_cgroup_dir()?;
    let dir = own.join(format!("drover.{}", std::process::id()));
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        // A directory left by an earlier process with our pid: empty, or its processes were
        // killed with it; reuse it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    if !dir.join("cgroup.kill").exists() {
        let _ = std::fs::remove_dir(&dir);
        return Err("the kernel has no cgroup.kill (Linux 5.14 or later is needed)".into());
    }
    Ok(dir)
}

/// This process's cgroup directory in the cgroup2 hierarchy.
fn own_cgroup_dir() -> Result<PathBuf, String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup2 hierarchy in /proc/self/cgroup")?;
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let (root, mount) = cgroup2_mount(&mountinfo).ok_or("no cgroup2 file system is mounted")?;
    // The mount shows the hierarchy from `root` down; our path is relative to the hierarchy's root.
    let relative = path
        .strip_prefix(root.as_str())
        .ok_or_else(|| format!("this process's cgroup {path} is outside the mounted {root}"))?;
    Ok(Path::new(&mount).join(relative.trim_start_matches('/')))
}

/// (root within the file system, mount point) of the first cgroup2 mount in a mountinfo text.
fn cgroup2_mount(mountinfo: &str) -> Option<(String, String)> {
    mountinfo.lines().find_map(|line| {
        // "36 25 0:31 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw"
        let (fields, fs) = line.split_once(" - ")?;
        if fs.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = fields.split_whitespace().skip(3);
        let root = unescape(fields.next()?);
        let mount = unescape(fields.next()?);
        Some((root, mount))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The base directory as a C string, for the guardian (which cannot allocate).
pub(super) fn base_cstring() -> Option<CString> {
    base()
        .as_ref()
        .ok()
        .and_then(|dir| CString::new(dir.as_os_str().as_bytes()).ok())
}

/// What a child does between fork and exec to enter its own cgroup, prepared before the fork:
/// the path `<base>/<pid>/cgroup.procs` with room for the pid, filled in by the child.
pub(super) struct JoinPlan {
    /// `<base>/` followed by zeroed room for the pid and the file name.
    buf: Vec<u8>,
    prefix: usize,
}

const PID_WIDTH: usize = super::spawn::DECIMAL_WIDTH;
const PROCS: &[u8] = b"/cgroup.procs\0";

impl JoinPlan {
    /// `None` when workers are not contained in cgroups.
    pub(super) fn new() -> Option<JoinPlan> {
        let dir = base().as_ref().ok()?;
        let mut buf = dir.as_os_str().as_bytes().to_vec();
        buf.push(b'/');
        let prefix = buf.len();
        buf.resize(prefix + PID_WIDTH + PROCS.len(), 0);
        Some(JoinPlan { buf, prefix })
    }

    /// In the child: creates `<base>/<own pid>` and moves itself there. Async-signal-safe: only
    /// getpid, mkdir, open, write and close, on memory prepared before the fork. Best effort: a
    /// worker that cannot join (a cgroup that vanished, a permission that changed) still runs, with
    /// its process group as its only containment.
    pub(super) fn join(&mut self) {
        // SAFETY: getpid is async-signal-safe.
        let digits = super::spawn::decimal(unsafe { libc::getpid() } as u64);
        let mut end = self.prefix;
        for &d in digits.iter().take_while(|d| **d != 0) {
            self.buf[end] = d;
            end += 1;
        }
        self.buf[end] = 0;
        // SAFETY: buf[..=end] is a NUL-terminated path inside our own buffer.
        unsafe {
            libc::mkdir(self.buf.as_ptr().cast(), 0o755);
        }
        self.buf[end..end + PROCS.len()].copy_from_slice(PROCS);
        // SAFETY: as above; the fd is closed before we return; "0" moves the writing process.
        unsafe {
            let fd = libc::open(self.buf.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
    }
}

/// Removes the cgroup `dir` and the cgroups below it, deepest first (at most 16 levels): a worker
/// that is itself a supervisor (a `drover run`, a Node master) made its own `drover.<pid>` inside
/// its cgroup, whose guardian `cgroup.kill` ended with it, so nothing else removes it; a cgroup
/// with children cannot be removed.
fn remove_tree(dir: &std::path::Path) -> io::Result<()> {
    fn remove(dir: &std::path::Path, depth: usize) -> io::Result<()> {
        if depth < 16 {
            for entry in std::fs::read_dir(dir)?.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    // A child still busy fails its parent's removal below, which is retried.
                    let _ = remove(&entry.path(), depth + 1);
                }
            }
        }
        std::fs::remove_dir(dir)
    }
    remove(dir, 0)
}

/// Kills everything left in worker `pid`'s cgroup, then removes the cgroup (and any below it).
/// Called when the worker has been reaped.
pub(super) fn kill_and_remove(pid: u32) {
    let Ok(base) = base() else { return };
    let dir = base.join(pid.to_string());
    if std::fs::write(dir.join("cgroup.kill"), b"1").is_err() {
        // No such cgroup: the worker never joined one (or it is gone already).
        return;
    }
    if remove_tree(&dir).is_ok() {
        return;
    }
    // cgroup.kill is asynchronous: the cgroup stays busy until its last process has died. Remove
    // it off the caller's thread (an actor, or a Drop), within a bound.
    let spawned = std::thread::Builder::new()
        .name("drover-cgroup-rm".into())
        .spawn(move || {
            for _ in 0..500 {
                std::thread::sleep(std::time::Duration::from_millis(10));
                if remove_tree(&dir).is_ok() {
                    return;
                }
            }
            tracing::warn!(dir = %dir.display(), "a worker's cgroup is still busy 5 s after cgroup.kill; left in place");
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot remove a worker's cgroup");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let info = "24 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n\
                    35 24 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(info),
            Some(("/".to_string(), "/sys/fs/cgroup/unified".to_string()))
        );
        assert_eq!(cgroup2_mount("24 30 0:22 / /sys rw - sysfs sysfs rw\n"), None);
        assert_eq!(unescape(r"/a\040b"), "/a b");
    }

    #[test]
    fn pids_format_without_allocating() {
        use crate::master::spawn::decimal;
        assert_eq!(&decimal(0)[..2], b"0\0");
        assert_eq!(&decimal(4121)[..5], b"4121\0");
        assert_eq!(&decimal(u64::MAX)[..20], b"18446744073709551615");
    }
}
