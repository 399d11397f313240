//! A group's `preStart` command (`--pre-start`): the shell command core's pre-start hook
//! ([`drover::Master::pre_start`]) runs before the group's first worker spawns.
//!
//! It runs under `sh -c` in the group's working directory with the group's environment over
//! drover's, its stdout and stderr drover's own; a non-zero exit fails the start with the status
//! and the last lines it wrote to stderr (at most [`MAX_STDERR_TAIL`] bytes, joined with `; `), and core ends it at
//! the group's start timeout (the command is then killed with SIGKILL).

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use drover::MasterConfig;

/// How much of the end of the command's stderr a failure quotes, in bytes.
pub const MAX_STDERR_TAIL: usize = 2048;

/// Has `master` run `command` before each start's first spawn, as `config` (its cwd and env) says.
pub fn install(master: &drover::Master, command: String, config: &MasterConfig) {
    let cwd = config.cwd.clone();
    let env = config.env.clone();
    master.pre_start(move || run(command.clone(), cwd.clone(), env.clone()));
}

/// The running command: killed if dropped before it was reaped (core drops the hook's future at
/// the start timeout), and forgotten by the orphan reaper's registry once reaped.
struct Running {
    pid: u32,
    reaped: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped.load(Ordering::SeqCst) {
            // SAFETY: kill on our own child's pid, not yet reaped (so not reused).
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

async fn run(
    command: String,
    cwd: Option<std::path::PathBuf>,
    env: std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&command)
        .envs(&env)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(cwd) = &cwd {
        cmd.current_dir(cwd);
    }
    // Registered as a worker is, under the same lock: a drover that reaps orphans (PID 1, a
    // subreaper) must not take this child's exit status.
    let mut child = {
        let mut pids = drover::lock_worker_pids();
        let child = cmd
            .spawn()
            .map_err(|e| format!("`{command}`: cannot run /bin/sh: {e}"))?;
        pids.insert(child.id());
        child
    };
    let reaped = Arc::new(AtomicBool::new(false));
    let _running = Running {
        pid: child.id(),
        reaped: reaped.clone(),
    };
    // Read and waited for on a blocking thread: waitpid on this one child, nothing else.
    let finished = tokio::task::spawn_blocking(move || {
        let mut tail: Vec<u8> = Vec::new();
        if let Some(mut stderr) = child.stderr.take() {
            let mut chunk = [0u8; 4096];
            // The whole stream is read (the command never blocks on a full pipe); its tail kept.
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                // Echoed to drover's stderr, past `std::io::Stderr`'s lock (drover's log thread
                // holds it): the command's output is drover's own.
                let _ = nix::unistd::write(std::io::stderr(), &chunk[..n]);
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > MAX_STDERR_TAIL {
                    tail.drain(..tail.len() - MAX_STDERR_TAIL);
                }
            }
        }
        let status = child.wait();
        reaped.store(true, Ordering::SeqCst);
        drover::master::pids::forget(child.id());
        (status, tail)
    })
    .await;
    let (status, tail) = finished.map_err(|e| format!("`{command}`: {e}"))?;
    let status = status.map_err(|e| format!("`{command}`: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by {}", drover::signal_name(signal)),
        (None, None) => "failed".to_string(),
    };
    // One line, for the log: the tail's lines joined.
    let said = String::from_utf8_lossy(&tail)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Err(if said.is_empty() {
        format!("`{command}` {how}")
    } else {
        format!("`{command}` {how}: {said}")
    })
}
