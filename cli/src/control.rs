//! The control socket: how `drover status`, `reload`, `scale`, `restart`, `send` and `stop` reach a
//! running `drover run`.
//!
//! A Unix stream socket, created mode 0600, at `--socket`/`$DROVER_SOCKET`, else
//! `$XDG_RUNTIME_DIR/drover.sock`, else `/tmp/drover-$UID/drover.sock` (a directory of ours, 0700).
//! The server checks every peer's uid (`SO_PEERCRED`) and refuses any but its own. One request per
//! connection: a JSON line in, a JSON line out once the operation has finished.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::SocketArg;

/// Requests are at most this long (a `send` carries a user message).
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Status,
    Reload {
        group: Option<String>,
    },
    Scale {
        group: String,
        count: i64,
    },
    Restart {
        group: String,
        id: u64,
    },
    Send {
        group: String,
        id: Option<u64>,
        data: Value,
    },
    Stop {
        hard: bool,
    },
}

/// The answer, once the operation is done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusReport>,
}

impl Response {
    pub fn done(message: impl Into<String>) -> Response {
        Response {
            ok: true,
            message: Some(message.into()),
            ..Response::default()
        }
    }

    pub fn failed(error: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(error.into()),
            ..Response::default()
        }
    }
}

/// `drover status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusReport {
    /// drover's own pid.
    pub pid: u32,
    pub groups: Vec<GroupReport>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupReport {
    pub name: String,
    /// The master's status, e.g. `STARTED`.
    pub status: String,
    /// Workers it should run.
    pub count: usize,
    /// Workers alive and STARTED.
    pub started: usize,
    pub workers: Vec<WorkerReport>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    pub id: u64,
    pub pid: u32,
    /// The worker's status: FAILED once its process exited from STARTED or before (as in every
    /// face: Node, C, Rust); `exit` says how it ended.
    pub status: String,
    /// Seconds since STARTED (or since spawn, before).
    pub uptime_secs: f64,
    pub restarts: u32,
    pub generation: u64,
    pub rss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// CPU time over uptime, percent of one core.
    pub cpu_percent: Option<f64>,
    /// How the process ended, if it has.
    pub exit: Option<String>,
}

/// The socket path: the flag or environment, else the default.
pub fn socket_path(arg: &SocketArg) -> PathBuf {
    if let Some(path) = &arg.socket {
        return path.clone();
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Path::new(&dir).join("drover.sock"),
        None => PathBuf::from(format!("/tmp/drover-{}", nix::unistd::geteuid())).join("drover.sock"),
    }
}

/// Whether a peer with `peer_uid` may control a drover run by `own_uid`: only the same user.
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid
}

pub mod server {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{UnixListener, UnixStream};

    use crate::run::Shared;

    /// Why the control socket could not be set up.
    #[derive(Debug, thiserror::Error)]
    pub enum SocketError {
        #[error("control socket {path}: another drover is running there (stop it, or pick another with --socket)")]
        InUse { path: String },
        #[error("control socket {path}: {error}")]
        Io { path: String, error: std::io::Error },
        #[error("control socket directory {path} belongs to uid {owner}, not to us (uid {me})")]
        ForeignDir { path: String, owner: u32, me: u32 },
    }

    /// The bound socket; the file is removed when this is dropped.
    pub struct ControlSocket {
        listener: UnixListener,
        path: PathBuf,
    }

    impl Drop for ControlSocket {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Binds the control socket at `path`, mode 0600. A stale socket (nobody answers) is replaced.
    pub fn bind(path: &Path) -> Result<ControlSocket, SocketError> {
        let shown = path.display().to_string();
        let io = |error| SocketError::Io {
            path: shown.clone(),
            error,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(io)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
            }
            if dir.starts_with("/tmp/") {
                use std::os::unix::fs::MetadataExt;
                let owner = std::fs::metadata(dir).map_err(io)?.uid();
                let me = nix::unistd::geteuid().as_raw();
                if owner != me {
                    return Err(SocketError::ForeignDir {
                        path: dir.display().to_string(),
                        owner,
                        me,
                    });
                }
            }
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse { path: shown });
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        // Owner only. The peer check below refuses other users even in the moment before this.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves until the process ends.
    pub async fn serve(socket: ControlSocket, shared: Arc<Shared>) {
        let own_uid = nix::unistd::geteuid().as_raw();
        loop {
            match socket.listener.accept().await {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move { connection(stream, shared, own_uid).await });
                }
                Err(error) => {
                    shared.log.info("control", &format!("accept failed: {error}"));
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(mut stream: UnixStream, shared: Arc<Shared>, own_uid: u32) {
        let peer = stream.peer_cred().map(|c| c.uid());
        let response = match peer {
            Ok(uid) if peer_allowed(uid, own_uid) => {
                // Held while the request runs: the process waits for answers in flight before exiting.
                let _in_flight = shared.in_flight.read().await;
                match read_request(&mut stream).await {
                    Ok(request) => shared.handle(request).await,
                    Err(error) => Response::failed(error),
                }
            }
            Ok(uid) => {
                shared.log.info(
                    "control-refused",
                    &format!(
                        "refused a control connection from uid {uid} (only uid {own_uid} may control this drover)"
                    ),
                );
                Response::failed(format!(
                    "permission denied: uid {uid} may not control this drover (run by uid {own_uid})"
                ))
            }
            Err(error) => Response::failed(format!("cannot identify the peer: {error}")),
        };
        let mut line = serde_json::to_vec(&response).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        line.push(b'\n');
        let _ = stream.write_all(&line).await;
        let _ = stream.shutdown().await;
    }

    async fn read_request(stream: &mut UnixStream) -> Result<Request, String> {
        let mut line = Vec::new();
        let mut reader = BufReader::new(stream).take(MAX_REQUEST_BYTES as u64 + 1);
        reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("reading the request: {e}"))?;
        if line.len() > MAX_REQUEST_BYTES {
            return Err(format!("request longer than {MAX_REQUEST_BYTES} bytes"));
        }
        serde_json::from_slice(&line).map_err(|e| format!("bad request: {e}"))
    }
}

pub mod client {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::process::ExitCode;

    /// Exit code when no drover answers.
    const UNREACHABLE: u8 = 2;

    fn exchange(socket: &SocketArg, request: &Request) -> Result<Response, (u8, String)> {
        let path = socket_path(socket);
        let mut stream = UnixStream::connect(&path).map_err(|e| {
            (
                UNREACHABLE,
                format!(
                    "cannot reach drover at {}: {e} (is `drover run` running? --socket or DROVER_SOCKET picks another)",
                    path.display()
                ),
            )
        })?;
        let mut line = serde_json::to_vec(request).map_err(|e| (1, e.to_string()))?;
        line.push(b'\n');
        // drover may answer before reading (a refused peer) and close: the write then fails with
        // EPIPE, but the answer is already waiting to be read. Read it before giving up.
        let written = stream.write_all(&line);
        let mut answer = String::new();
        let read = BufReader::new(stream).read_line(&mut answer);
        if answer.is_empty() {
            if let Err(e) = written {
                return Err((UNREACHABLE, format!("writing to {}: {e}", path.display())));
            }
            if let Err(e) = read {
                return Err((UNREACHABLE, format!("reading from {}: {e}", path.display())));
            }
            return Err((
                UNREACHABLE,
                format!("{} closed the connection without an answer", path.display()),
            ));
        }
        serde_json::from_str(&answer).map_err(|e| (1, format!("bad answer from drover: {e}")))
    }

    /// Runs one request; prints the outcome; non-zero with the reason on failure.
    pub fn request(socket: &SocketArg, request: Request) -> ExitCode {
        match exchange(socket, &request) {
            Ok(Response { ok: true, message, .. }) => {
                if let Some(message) = message {
                    println!("{message}");
                }
                ExitCode::SUCCESS
            }
            Ok(Response { error, .. }) => {
                eprintln!("drover: {}", error.unwrap_or_else(|| "failed".into()));
                ExitCode::FAILURE
            }
            Err((code, error)) => {
                eprintln!("drover: {error}");
                ExitCode::from(code)
            }
        }
    }

    /// `drover send GROUP [ID] JSON`.
    pub fn send(socket: &SocketArg, group: String, args: &[String]) -> ExitCode {
        let (id, json) = match args {
            [json] => (None, json),
            [id, json] => match id.parse::<u64>() {
                Ok(id) => (Some(id), json),
                Err(_) => {
                    eprintln!("drover: send: worker id {id:?} is not a number");
                    return ExitCode::from(UNREACHABLE);
                }
            },
            _ => {
                eprintln!("drover: send: expected GROUP [ID] JSON");
                return ExitCode::from(UNREACHABLE);
            }
        };
        let data: Value = match serde_json::from_str(json) {
            Ok(data) => data,
            Err(error) => {
                eprintln!("drover: send: the message is not JSON: {error}");
                return ExitCode::from(UNREACHABLE);
            }
        };
        request(socket, Request::Send { group, id, data })
    }

    /// `drover status [--json]`.
    pub fn status(socket: &SocketArg, json: bool) -> ExitCode {
        let report = match exchange(socket, &Request::Status) {
            Ok(Response {
                ok: true,
                status: Some(report),
                ..
            }) => report,
            Ok(Response { error, .. }) => {
                eprintln!("drover: {}", error.unwrap_or_else(|| "no status in the answer".into()));
                return ExitCode::FAILURE;
            }
            Err((code, error)) => {
                eprintln!("drover: {error}");
                return ExitCode::from(code);
            }
        };
        if json {
            match serde_json::to_string_pretty(&report) {
                Ok(text) => println!("{text}"),
                Err(error) => {
                    eprintln!("drover: {error}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            print!("{}", table(&report));
        }
        ExitCode::SUCCESS
    }

    /// The status as an aligned table.
    pub fn table(report: &StatusReport) -> String {
        let mut rows: Vec<[String; 8]> = vec![[
            "GROUP".into(),
            "ID".into(),
            "PID".into(),
            "STATUS".into(),
            "UPTIME".into(),
            "RESTARTS".into(),
            "RSS".into(),
            "CPU".into(),
        ]];
        for g in &report.groups {
            for w in &g.workers {
                rows.push([
                    g.name.clone(),
                    w.id.to_string(),
                    w.pid.to_string(),
                    w.status.clone(),
                    duration(w.uptime_secs),
                    w.restarts.to_string(),
                    w.rss_bytes.map(bytes).unwrap_or_else(|| "-".into()),
                    w.cpu_percent.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into()),
                ]);
            }
        }
        let widths: Vec<usize> = (0..8)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        for g in &report.groups {
            out.push_str(&format!(
                "{}: {} ({}/{} STARTED)\n",
                g.name, g.status, g.started, g.count
            ));
        }
        out
    }

    fn duration(secs: f64) -> String {
        let s = secs.max(0.0) as u64;
        match s {
            0..=59 => format!("{s}s"),
            60..=3599 => format!("{}m{}s", s / 60, s % 60),
            3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
            _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
        }
    }

    fn bytes(b: u64) -> String {
        const MIB: f64 = 1024.0 * 1024.0;
        if b as f64 >= 1024.0 * MIB {
            format!("{:.1}G", b as f64 / (1024.0 * MIB))
        } else {
            format!("{:.1}M", b as f64 / MIB)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_may_control() {
        assert!(peer_allowed(1000, 1000));
        assert!(!peer_allowed(1001, 1000));
        assert!(!peer_allowed(0, 1000));
        assert!(!peer_allowed(65534, 0));
    }

    #[test]
    fn the_table_has_a_row_per_worker() {
        let report = StatusReport {
            pid: 1,
            groups: vec![GroupReport {
                name: "web".into(),
                status: "STARTED".into(),
                count: 1,
                started: 1,
                workers: vec![WorkerReport {
                    id: 1,
                    pid: 4121,
                    status: "STARTED".into(),
                    uptime_secs: 75.0,
                    rss_bytes: Some(3 * 1024 * 1024),
                    cpu_percent: Some(1.25),
                    ..WorkerReport::default()
                }],
            }],
        };
        let table = client::table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("GROUP  ID  PID   STATUS"), "{table}");
        assert!(
            lines[1].contains("4121")
                && lines[1].contains("1m15s")
                && lines[1].contains("3.0M")
                && lines[1].contains("1.2%"),
            "{table}"
        );
        assert_eq!(lines[2], "web: STARTED (1/1 STARTED)");
    }
}
