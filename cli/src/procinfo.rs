//! What `/proc` says about processes (their CPU time and resident memory are core's:
//! `drover::cpu_seconds`, `drover::rss_bytes`), and drover's own `process_*` metrics.

use std::fmt::Write;

/// User plus system CPU time a process has used, seconds: core's, as the recycle predicates of
/// every face see it.
pub use drover::cpu_seconds;

/// Fields of a `/proc/<pid>/stat` line after the command name: field n is at index n - 3.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect()
}

/// The standard `process_*` series for drover itself: CPU time, resident and virtual memory, open
/// and allowed fds, threads, start time.
pub fn render_process_metrics(out: &mut String) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields = stat_fields(&stat);
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let mut series = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            crate::metrics::header(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
    };
    let ticks = clock_ticks();
    series(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        cpu_seconds(std::process::id()),
    );
    series(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        drover::rss_bytes(std::process::id()).map(|b| b as f64),
    );
    series(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        field(23).map(|b| b as f64),
    );
    series(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64),
    );
    series(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _)| soft as f64),
    );
    series(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
        field(20).map(|n| n as f64),
    );
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    series(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        boot.zip(field(22))
            .map(|(boot, start)| boot as f64 + start as f64 / ticks),
    );
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The pids whose parent is `parent` and that are zombies (exited, not yet reaped).
pub fn zombie_children(parent: u32) -> Vec<u32> {
    let mut zombies = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return zombies;
    };
    let parent = parent.to_string();
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let mut fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace();
        if fields.next() == Some("Z") && fields.next() == Some(parent.as_str()) {
            zombies.push(pid);
        }
    }
    zombies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drovers_own_cpu_time_and_memory_are_read() {
        assert!(cpu_seconds(std::process::id()).is_some());
        assert!(drover::rss_bytes(std::process::id()).is_some_and(|b| b > 0));
    }
}
