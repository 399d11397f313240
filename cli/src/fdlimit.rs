//! The open-file limit. Each worker costs the master about four fds (its channel, its pidfd, its
//! output pipes), plus listeners and control and HTTP connections; the usual soft limit of 1024
//! stops a group near 250 workers while the hard limit (often 500k, or what systemd's
//! `LimitNOFILE=` grants) would allow far more. So `drover run` raises its soft `RLIMIT_NOFILE` to
//! the hard limit at start, as a shell's `ulimit -n $(ulimit -Hn)` would, and says so in the log.
//! Workers inherit the raised soft limit.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft limit to the hard one. Returns what to tell the user: `None` when nothing
/// changed (already at the hard limit).
pub fn raise() -> Option<String> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => return Some(format!("cannot read the open-file limit (RLIMIT_NOFILE): {error}")),
    };
    if soft >= hard {
        return None;
    }
    Some(match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => format!("raised the open-file limit (RLIMIT_NOFILE) from {soft} to the hard limit, {hard}"),
        Err(error) => {
            format!("the open-file limit (RLIMIT_NOFILE) stays at {soft}: raising it to {hard} failed: {error}")
        }
    })
}
