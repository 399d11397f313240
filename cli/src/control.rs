//! The control socket: how `drover status`, `reload`, `scale`, `restart`, `send`, `request` and
//! `stop` reach a running `drover run`.
//!
//! A Unix stream socket, created mode 0600, at `--socket`/`$DROVER_SOCKET`, else the first of
//! [`candidates`]: `$RUNTIME_DIRECTORY/drover.sock` (what systemd sets for a unit with
//! `RuntimeDirectory=`), `/run/drover/drover.sock` (served by root only), `$XDG_RUNTIME_DIR/drover.sock`,
//! `/tmp/drover-$UID/drover.sock` (a directory of ours, 0700). A client takes the first of those
//! where a socket exists, so an operator finds a service's socket from a login shell. `drover run
//! --no-socket` serves none.
//!
//! Root may control any drover, and trusts a socket served by another user when root gave that
//! user its directory ([`root_may_trust`]: `/run/drover` of a `User=drover` unit).
//! The server checks every peer's uid (`SO_PEERCRED`) and refuses any but its own; the client checks
//! the server's the same way and talks only to its own uid or root. One drover owns a path: it holds
//! an flock on `PATH.lock` for its lifetime. The socket's directory must be a real directory (not a
//! symbolic link) of ours or root's that no other user may write. One request per connection: a JSON
//! line in, a JSON line out once the operation has finished. Connections are bounded in number
//! ([`server::MAX_CONNECTIONS`]) and in how long they may wait before asking
//! ([`server::REQUEST_TIMEOUT`]).

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
    /// Every worker's status functions, gathered (`drover status --app`).
    AppStatus,
    Reload {
        group: Option<String>,
    },
    Scale {
        group: String,
        count: i64,
    },
    /// One worker of the group, or (with none) every worker, one after the other.
    Restart {
        group: String,
        worker: Option<WorkerRef>,
    },
    Send {
        group: String,
        worker: Option<WorkerRef>,
        data: Value,
    },
    /// With a group: shut that group down (drover keeps running); without: everything, and
    /// `drover run` exits.
    Stop {
        hard: bool,
        #[serde(default)]
        group: Option<String>,
    },
    /// `drover request`: calls handler `name` of `target` (PROTOCOL.md §5.5) in `group`.
    #[serde(rename = "request")]
    CallHandler {
        group: String,
        target: String,
        name: String,
        #[serde(default)]
        args: Value,
        /// Milliseconds; none: the core's default.
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// The last `lines` log lines (of `group`), then, with `follow`, every new one.
    Logs {
        group: Option<String>,
        lines: usize,
        #[serde(default)]
        follow: bool,
    },
    /// Start a group that was stopped (`drover stop GROUP`).
    Start {
        group: String,
    },
    /// Take a group out of rotation (ECV): `/readyz` and `/ecv` say so; its workers run on.
    Down {
        group: String,
    },
    /// Put a group marked down back in rotation (unless its ECV monitor judges it down).
    Up {
        group: String,
    },
    /// `drover reconfigure`: pushes a new user config to the group's live workers (PROTOCOL.md
    /// §5.11); the answer's `result` is the per-worker acks.
    Reconfigure {
        group: String,
        config: Value,
        /// Milliseconds; none: the core's default.
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// `drover debug`: opens a Node worker's inspector; the answer's `result` says where.
    Debug {
        group: String,
        worker: WorkerRef,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
}

/// What `drover store` does: one of the master's `drover.store.*` handlers (PROTOCOL.md §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreOp {
    /// The value at the path (null: none).
    Get,
    /// Put a value at the path.
    Set,
    /// Remove the value at the path.
    Delete,
    /// The keys directly below the path.
    Keys,
}

impl StoreOp {
    /// The handler's name after `drover.store.`.
    fn handler(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::Set => "set",
            StoreOp::Delete => "delete",
            StoreOp::Keys => "keys",
        }
    }
}

/// How a command names one worker: by its instance index (`1`: the second worker of the group,
/// whichever process fills that place now, across restarts and reloads), or by its id (`id:7`:
/// one worker, which a reload replaces by another id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerRef {
    Instance(u32),
    Id(u64),
}

impl std::str::FromStr for WorkerRef {
    type Err = String;

    fn from_str(text: &str) -> Result<WorkerRef, String> {
        let bad = || {
            format!("worker {text:?}: expected an instance index (0, 1, ...) or `id:N` (a worker id, as `drover status` shows)")
        };
        match text.strip_prefix("id:") {
            Some(id) => id.parse().map(WorkerRef::Id).map_err(|_| bad()),
            None => text.parse().map(WorkerRef::Instance).map_err(|_| bad()),
        }
    }
}

impl std::fmt::Display for WorkerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerRef::Instance(i) => write!(f, "instance {i}"),
            WorkerRef::Id(id) => write!(f, "worker id {id}"),
        }
    }
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
    /// Log lines (`logs`): the tail first, then, when following, one answer per batch of new lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<String>>,
    /// The gathered status functions (`status --app`): group → worker id → name → value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<serde_json::Value>,
    /// A request's result (`request`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
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
    /// Whether the group is in rotation (ECV: `drover down`/`up`, the monitor).
    #[serde(default = "in_rotation_by_default")]
    pub in_rotation: bool,
    /// Why it is out of rotation, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_rotation: Option<String>,
    pub workers: Vec<WorkerReport>,
    /// The leaderships its workers joined (who leads each, its term).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaders: Vec<LeaderReport>,
    /// The last exits of the group's workers, newest last (at most
    /// [`crate::run::RECENT_EXITS`]), e.g. `worker 2 (pid 4121) exited: killed by SIGKILL...`.
    #[serde(default)]
    pub recent_exits: Vec<String>,
}

/// One leadership of a group (`drover status`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeaderReport {
    pub key: String,
    /// The leading worker's id; none while nobody leads.
    pub leader: Option<u64>,
    pub term: u64,
    pub participants: usize,
}

fn in_rotation_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    pub id: u64,
    /// The place the worker fills in its group, `0..count` (`DROVER_INSTANCE`): what
    /// `drover restart GROUP N` names.
    #[serde(default)]
    pub instance: u32,
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
    /// CPU use over the last seconds (not the process's lifetime), percent of one core.
    pub cpu_percent: Option<f64>,
    /// How the process ended, if it has.
    pub exit: Option<String>,
    /// The worker's name (configured by instance, else `GROUP-ID`).
    #[serde(default)]
    pub name: String,
    /// The application status it published (clusterfy's IDLE / PROCESSING), if any.
    #[serde(default)]
    pub app_status: Option<String>,
    /// The counters it published.
    #[serde(default)]
    pub counters: std::collections::BTreeMap<String, f64>,
}

/// The socket of a drover run as a system service (root's default; where `drover status` of any
/// user looks).
pub const SERVICE_SOCKET: &str = "/run/drover/drover.sock";

/// Where a drover's socket is looked for when `--socket`/`$DROVER_SOCKET` does not say, in order
/// (`env` reads the environment, `euid` is ours).
pub fn candidates(env: impl Fn(&str) -> Option<std::ffi::OsString>, euid: u32) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    // systemd may list several runtime directories, separated by colons: the first is the unit's.
    if let Some(dirs) = set("RUNTIME_DIRECTORY") {
        if let Some(first) = dirs.to_string_lossy().split(':').find(|d| !d.is_empty()) {
            paths.push(Path::new(first).join("drover.sock"));
        }
    }
    paths.push(PathBuf::from(SERVICE_SOCKET));
    if let Some(dir) = set("XDG_RUNTIME_DIR") {
        paths.push(Path::new(&dir).join("drover.sock"));
    }
    paths.push(PathBuf::from(format!("/tmp/drover-{euid}")).join("drover.sock"));
    paths
}

/// The socket `drover run` serves: the flag or environment, else the first candidate.
pub fn socket_path(arg: &SocketArg) -> PathBuf {
    if let Some(path) = &arg.socket {
        return path.clone();
    }
    let euid = nix::unistd::geteuid().as_raw();
    // Only root may create /run/drover: another user's drover skips it.
    candidates(|name| std::env::var_os(name), euid)
        .into_iter()
        .find(|p| euid == 0 || p != Path::new(SERVICE_SOCKET))
        .unwrap_or_else(|| PathBuf::from("drover.sock"))
}

/// The socket a client talks to: the flag or environment, else the first candidate where a socket
/// exists (else the first, for the error message), and every path tried.
pub fn find_socket(arg: &SocketArg) -> (PathBuf, Vec<PathBuf>) {
    use std::os::unix::fs::FileTypeExt;
    if let Some(path) = &arg.socket {
        return (path.clone(), vec![path.clone()]);
    }
    let euid = nix::unistd::geteuid().as_raw();
    let paths = candidates(|name| std::env::var_os(name), euid);
    let found = paths
        .iter()
        .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()))
        .or(paths.first())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("drover.sock"));
    (found, paths)
}

/// Whether a peer with `peer_uid` may control a drover run by `own_uid`: the same user, or root
/// (who may signal or ptrace it anyway; an operator controls a `User=` service as root).
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid || peer_uid == 0
}

/// Whether root may trust a socket at `path` served by `server_uid`, another user: when its
/// directory (not a link) belongs to that user and no one else may write it, and every directory
/// above is root's and writable by root alone, only root (or systemd, for a unit's
/// `RuntimeDirectory=`, as `/run/drover`) could have made that directory that user's. A socket in
/// `/tmp` or in a user's home is not trusted.
pub fn root_may_trust(path: &Path, server_uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let private = |dir: &Path, owner: u32| {
        std::fs::symlink_metadata(dir)
            .is_ok_and(|m| m.file_type().is_dir() && m.uid() == owner && m.mode() & 0o022 == 0)
    };
    let Some(dir) = path.parent().filter(|d| d.is_absolute()) else {
        return false;
    };
    private(dir, server_uid) && dir.ancestors().skip(1).all(|above| private(above, 0))
}

/// Whether a client run by `own_uid` may trust a socket served by `server_uid`: its own or root's.
pub fn server_trusted(server_uid: u32, own_uid: u32) -> bool {
    server_uid == own_uid || server_uid == 0
}

pub mod server {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs::File;
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{UnixListener, UnixStream};
    use tokio::sync::{oneshot, Semaphore};

    use crate::run::Shared;

    /// Control connections open at once. A newcomer past this closes the connection that has waited
    /// longest without sending its request; if every one is running a request, it is told "busy".
    pub const MAX_CONNECTIONS: usize = 64;

    /// How long a client has, from connecting, to send its request line.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

    /// How long the answer may take to go out (a client that never reads it).
    pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

    /// Why the control socket could not be set up.
    #[derive(Debug, thiserror::Error)]
    pub enum SocketError {
        #[error("control socket {path}: another drover is running there (stop it, or pick another with --socket)")]
        InUse { path: String },
        #[error("control socket {path}: {error}")]
        Io { path: String, error: std::io::Error },
        #[error("control socket directory {path} belongs to uid {owner}, not to us (uid {me}) or root")]
        ForeignDir { path: String, owner: u32, me: u32 },
        #[error("control socket directory {path} is a symbolic link or not a directory: give a real directory")]
        NotADir { path: String },
        #[error("control socket directory {path} is writable by other users (mode {mode:o}): pick a directory only you can write, e.g. the default /tmp/drover-$UID")]
        OpenDir { path: String, mode: u32 },
        #[error("control socket {path}: something that is not a socket is there; drover does not remove it")]
        NotASocket { path: String },
        #[error("control socket lock {path}: {reason}")]
        Lock { path: String, reason: String },
    }

    /// The bound socket, and the lock that makes this process its only owner. The socket file is
    /// removed when this is dropped; the lock file stays (removing it would let two processes lock
    /// two different files of the same name).
    pub struct ControlSocket {
        listener: UnixListener,
        path: PathBuf,
        _lock: nix::fcntl::Flock<File>,
    }

    impl Drop for ControlSocket {
        fn drop(&mut self) {
            // Still locked here (fields drop after this): the file is ours to remove.
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// The lock file beside the socket: `PATH.lock`.
    pub fn lock_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Checks the socket's directory without following a symbolic link: a real directory, owned by
    /// us (or root), that no other user may write to (else another user could swap the socket).
    /// Creates it, mode 0700, when missing.
    fn check_dir(dir: &Path) -> Result<(), SocketError> {
        let shown = dir.display().to_string();
        let io = |error| SocketError::Io {
            path: shown.clone(),
            error,
        };
        let meta = match std::fs::symlink_metadata(dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io)?;
                std::fs::symlink_metadata(dir).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        };
        if !meta.file_type().is_dir() {
            return Err(SocketError::NotADir { path: shown });
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me && meta.uid() != 0 {
            return Err(SocketError::ForeignDir {
                path: shown,
                owner: meta.uid(),
                me,
            });
        }
        if meta.mode() & 0o022 != 0 {
            return Err(SocketError::OpenDir {
                path: shown,
                mode: meta.mode() & 0o7777,
            });
        }
        Ok(())
    }

    /// Takes `PATH.lock` (flock, exclusive, without waiting): exactly one drover owns a path.
    fn lock(path: &Path) -> Result<nix::fcntl::Flock<File>, SocketError> {
        let lock_path = lock_path(path);
        let shown = lock_path.display().to_string();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            // Never through a link planted there.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(|error| SocketError::Lock {
                path: shown.clone(),
                reason: error.to_string(),
            })?;
        let me = nix::unistd::geteuid().as_raw();
        match file.metadata() {
            Ok(meta) if meta.is_file() && meta.uid() == me => {}
            Ok(meta) => {
                return Err(SocketError::Lock {
                    path: shown,
                    reason: format!("not a regular file of ours (owner uid {})", meta.uid()),
                })
            }
            Err(error) => {
                return Err(SocketError::Lock {
                    path: shown,
                    reason: error.to_string(),
                })
            }
        }
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                SocketError::InUse {
                    path: path.display().to_string(),
                }
            } else {
                SocketError::Lock {
                    path: shown,
                    reason: errno.to_string(),
                }
            }
        })
    }

    /// Binds the control socket at `path`, mode 0600, after taking its lock. A stale socket (its
    /// drover is gone: the lock was free) is replaced.
    pub fn bind(path: &Path) -> Result<ControlSocket, SocketError> {
        let shown = path.display().to_string();
        let io = |error| SocketError::Io {
            path: shown.clone(),
            error,
        };
        // A bare file name lives in the current directory, which is checked like any other.
        check_dir(
            path.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )?;
        let lock = lock(path)?;
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                // A drover of a version without the lock may still serve it.
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(SocketError::InUse { path: shown });
                }
                std::fs::remove_file(path).map_err(io)?;
            }
            Ok(_) => return Err(SocketError::NotASocket { path: shown }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        // Owner only. The peer check below refuses other users even in the moment before this.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The connections' slots, and those of them still waiting for their request (evictable).
    struct Slots {
        permits: Arc<Semaphore>,
        /// Oldest first. Dropping a sender tells its connection to close.
        waiting: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
        next: AtomicU64,
    }

    impl Slots {
        /// A slot for a new connection: a free one, else one taken from the connection that has
        /// waited longest for its request. `None`: every slot is running a request.
        async fn take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return Some(permit);
            }
            let oldest = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).pop_first();
            drop(oldest?);
            // The evicted connection lets its slot go as soon as it runs.
            tokio::time::timeout(Duration::from_secs(1), self.permits.clone().acquire_owned())
                .await
                .ok()?
                .ok()
        }
    }

    /// Serves until the process ends.
    pub async fn serve(socket: ControlSocket, shared: Arc<Shared>) {
        let own_uid = nix::unistd::geteuid().as_raw();
        let slots = Arc::new(Slots {
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            waiting: Mutex::default(),
            next: AtomicU64::new(0),
        });
        loop {
            match socket.listener.accept().await {
                Ok((stream, _)) => {
                    let Some(permit) = slots.take().await else {
                        let busy = Response::failed(format!(
                            "busy: {MAX_CONNECTIONS} control requests are running; try again"
                        ));
                        // Never waits: an answer that does not fit in the socket buffer is lost.
                        let _ = stream.try_write(&answer_line(&busy));
                        continue;
                    };
                    let id = slots.next.fetch_add(1, Ordering::Relaxed);
                    let (evict_tx, evicted) = oneshot::channel();
                    slots
                        .waiting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id, evict_tx);
                    let (shared, slots) = (shared.clone(), slots.clone());
                    tokio::spawn(async move {
                        connection(stream, &shared, own_uid, evicted, || {
                            slots.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                        })
                        .await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    // EMFILE and the like: back off instead of spinning on the error.
                    shared.log.info("control", &format!("accept failed: {error}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn answer_line(response: &Response) -> Vec<u8> {
        let mut line = serde_json::to_vec(response).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        line.push(b'\n');
        line
    }

    /// One connection: the peer check, its request (within [`REQUEST_TIMEOUT`], unless evicted
    /// first), the operation, the answer. `read` is called once the request is in.
    async fn connection(
        mut stream: UnixStream,
        shared: &Arc<Shared>,
        own_uid: u32,
        evicted: oneshot::Receiver<()>,
        read: impl FnOnce(),
    ) {
        let peer = stream.peer_cred().map(|c| c.uid());
        let response = match peer {
            Ok(uid) if peer_allowed(uid, own_uid) => {
                let request = tokio::select! {
                    request = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)) => request,
                    // Its slot went to a newer connection: close without a word.
                    _ = evicted => return,
                };
                read();
                match request {
                    Ok(Ok(Request::Logs {
                        group,
                        lines,
                        follow: true,
                    })) => {
                        // Not an answer in flight: a follower does not hold up the exit.
                        return follow_logs(stream, shared, group, lines).await;
                    }
                    Ok(Ok(request)) => {
                        // Held while the request runs: the process waits for answers in flight
                        // before exiting (not for connections that have not asked anything).
                        let _in_flight = shared.in_flight.read().await;
                        shared.handle(request).await
                    }
                    Ok(Err(error)) => Response::failed(error.to_string()),
                    Err(_) => Response::failed(format!(
                        "no request within {}s: send one JSON line, e.g. {{\"cmd\":\"status\"}}",
                        REQUEST_TIMEOUT.as_secs()
                    )),
                }
            }
            Ok(uid) => {
                read();
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
            Err(error) => {
                read();
                Response::failed(format!("cannot identify the peer: {error}"))
            }
        };
        let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
            let _ = stream.write_all(&answer_line(&response)).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }

    /// `drover logs -f`: the tail, then every new line, as answers of their own, until the client
    /// goes away, stops reading for [`ANSWER_TIMEOUT`], or drover exits. A client that reads slower
    /// than lines come misses some, and is told how many.
    async fn follow_logs(mut stream: UnixStream, shared: &Arc<Shared>, group: Option<String>, lines: usize) {
        use crate::log_ring::{matches, MAX_FOLLOWERS};
        use tokio::io::AsyncReadExt;
        use tokio::sync::broadcast::error::RecvError;
        let ring = shared.log.ring();
        if let Some(name) = &group {
            if !shared.groups.iter().any(|(n, _)| n == name) {
                let unknown = Response::failed(format!("no group {name:?}"));
                let _ = tokio::time::timeout(ANSWER_TIMEOUT, stream.write_all(&answer_line(&unknown))).await;
                return;
            }
        }
        let Some((mut feed, _permit)) = ring.follow() else {
            let busy = Response::failed(format!(
                "busy: {MAX_FOLLOWERS} `drover logs -f` already follow this drover"
            ));
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, stream.write_all(&answer_line(&busy))).await;
            return;
        };
        let group = group.as_deref();
        let mut batch = ring.tail(group, lines);
        loop {
            let answer = Response {
                ok: true,
                lines: Some(std::mem::take(&mut batch)),
                ..Response::default()
            };
            match tokio::time::timeout(ANSWER_TIMEOUT, stream.write_all(&answer_line(&answer))).await {
                Ok(Ok(())) => {}
                _ => return,
            }
            // The next line, then whatever else is already waiting (one answer for a burst).
            loop {
                let next = if batch.is_empty() {
                    let mut sink = [0u8; 64];
                    tokio::select! {
                        next = feed.recv() => next,
                        // The client hung up (or wrote what it should not): its slot is freed now,
                        // not at the next line.
                        _ = stream.read(&mut sink) => return,
                    }
                } else {
                    match feed.try_recv() {
                        Ok(entry) => Ok(entry),
                        Err(_) => break,
                    }
                };
                match next {
                    Ok(entry) if matches(&entry, group) => batch.push(entry.text.to_string()),
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => batch.push(format!(
                        "drover: {missed} line(s) skipped: this `drover logs -f` read too slowly"
                    )),
                    Err(RecvError::Closed) => return,
                }
                if batch.len() >= 256 {
                    break;
                }
            }
        }
    }

    async fn read_request(stream: &mut UnixStream) -> Result<Request, RequestError> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
        let mut line = Vec::new();
        let mut reader = BufReader::new(stream).take(MAX_REQUEST_BYTES as u64 + 1);
        reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| RequestError::Read(e.to_string()))?;
        parse_request(&line)
    }
}

/// Why a control request was refused before it ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("reading the request: {0}")]
    Read(String),
    #[error("empty request: send one JSON line, e.g. {{\"cmd\":\"status\"}}")]
    Empty,
    #[error("request longer than {max} bytes", max = MAX_REQUEST_BYTES)]
    TooLong,
    #[error("bad request: {0}")]
    Malformed(String),
}

/// Parses one request line (with or without its newline). Total: any bytes give a request or an
/// error naming what was wrong, never a panic.
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLong);
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::Empty);
    }
    serde_json::from_slice(line).map_err(|e| RequestError::Malformed(e.to_string()))
}

pub mod client {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::process::ExitCode;

    /// Exit code when no drover answers.
    const UNREACHABLE: u8 = 2;

    /// Connects to the drover's socket (checked: ours or root's) and sends `request`.
    fn connect(socket: &SocketArg, request: &Request) -> Result<(UnixStream, PathBuf), (u8, String)> {
        let (path, tried) = find_socket(socket);
        let mut stream = UnixStream::connect(&path).map_err(|e| {
            let tried = if tried.len() > 1 {
                let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                format!("; no socket at any of {}", list.join(", "))
            } else {
                String::new()
            };
            (
                UNREACHABLE,
                format!(
                    "cannot reach drover at {}: {e}{tried} (is `drover run` running? --socket or DROVER_SOCKET picks another)",
                    path.display()
                ),
            )
        })?;
        check_server(&stream, &path)?;
        let mut line = serde_json::to_vec(request).map_err(|e| (1, e.to_string()))?;
        line.push(b'\n');
        // drover may answer before reading (a refused peer) and close: the write then fails with
        // EPIPE, but the answer is already waiting to be read. Read it before giving up.
        if let Err(e) = stream.write_all(&line) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err((UNREACHABLE, format!("writing to {}: {e}", path.display())));
            }
        }
        Ok((stream, path))
    }

    fn exchange(socket: &SocketArg, request: &Request) -> Result<Response, (u8, String)> {
        let (stream, path) = connect(socket, request)?;
        let mut answer = String::new();
        let read = BufReader::new(stream).read_line(&mut answer);
        if answer.is_empty() {
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

    /// Who serves the socket (`SO_PEERCRED`): only our own uid or root may. Anyone else may have
    /// put a socket where ours was expected, to answer "stopped" while the real drover runs on.
    fn check_server(stream: &UnixStream, path: &Path) -> Result<(), (u8, String)> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let me = nix::unistd::geteuid().as_raw();
        let server = getsockopt(stream, PeerCredentials)
            .map_err(|e| (UNREACHABLE, format!("cannot tell who serves {}: {e}", path.display())))?
            .uid();
        if server_trusted(server, me) || (me == 0 && root_may_trust(path, server)) {
            Ok(())
        } else {
            Err((
                UNREACHABLE,
                format!(
                    "refusing to talk to {}: it is served by uid {server}, neither you (uid {me}) nor root; it is not your drover",
                    path.display()
                ),
            ))
        }
    }

    /// Runs one request; prints the outcome (a handler's result as JSON); non-zero with the
    /// reason on failure.
    pub fn request(socket: &SocketArg, request: Request) -> ExitCode {
        let response = match exchange_ok(socket, &request) {
            Ok(response) => response,
            Err(code) => return code,
        };
        if let Some(result) = response.result {
            println!("{result}");
        }
        if let Some(message) = response.message {
            println!("{message}");
        }
        ExitCode::SUCCESS
    }

    /// The answer to `request` when the master carried it out; otherwise the exit code, with
    /// the reason printed on stderr.
    fn exchange_ok(socket: &SocketArg, request: &Request) -> Result<Response, ExitCode> {
        match exchange(socket, request) {
            Ok(response) if response.ok => Ok(response),
            Ok(Response { error, .. }) => {
                eprintln!("drover: {}", error.unwrap_or_else(|| "failed".into()));
                Err(ExitCode::FAILURE)
            }
            Err((code, error)) => {
                eprintln!("drover: {error}");
                Err(ExitCode::from(code))
            }
        }
    }

    /// `drover send GROUP [WORKER] JSON`.
    pub fn send(socket: &SocketArg, group: String, args: &[String]) -> ExitCode {
        let (worker, json) = match args {
            [json] => (None, json),
            [worker, json] => match worker.parse::<WorkerRef>() {
                Ok(worker) => (Some(worker), json),
                Err(error) => {
                    eprintln!("drover: send: {error}");
                    return ExitCode::from(UNREACHABLE);
                }
            },
            _ => {
                eprintln!("drover: send: expected GROUP [WORKER] JSON");
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
        request(socket, Request::Send { group, worker, data })
    }

    /// `drover request GROUP TARGET NAME [ARGS_JSON] [--timeout DURATION]`: prints the result as
    /// JSON; a failed request is exit 1 with "CODE: message" (the request error's code).
    pub fn handler_request(
        socket: &SocketArg,
        group: String,
        target: String,
        name: String,
        args: Option<&str>,
        timeout: Option<std::time::Duration>,
    ) -> ExitCode {
        if let Err(error) = target.parse::<drover::request::Target>() {
            eprintln!("drover: request: {error}");
            return ExitCode::from(UNREACHABLE);
        }
        let args: Value = match args.map(serde_json::from_str).transpose() {
            Ok(args) => args.unwrap_or(Value::Null),
            Err(error) => {
                eprintln!("drover: request: the arguments are not JSON: {error}");
                return ExitCode::from(UNREACHABLE);
            }
        };
        let timeout_ms = timeout.map(|t| t.as_millis().min(u128::from(u64::MAX)) as u64);
        let request = Request::CallHandler {
            group,
            target,
            name,
            args,
            timeout_ms,
        };
        self::request(socket, request)
    }

    /// `drover store GROUP get|set|delete|keys PATH [VALUE] [--ttl D]`: a request to the master's
    /// built-in store handlers, as `drover request GROUP master drover.store.OP` would make it.
    pub fn store(
        socket: &SocketArg,
        group: String,
        op: StoreOp,
        path: String,
        value: Option<&str>,
        ttl: Option<std::time::Duration>,
    ) -> ExitCode {
        let usage = |why: &str| {
            eprintln!("drover: store: {why}");
            ExitCode::from(UNREACHABLE)
        };
        let mut args = serde_json::json!({ "path": path });
        match (op, value) {
            (StoreOp::Set, None) => return usage("`set` needs a VALUE (JSON)"),
            (StoreOp::Set, Some(value)) => match serde_json::from_str::<Value>(value) {
                Ok(value) => args["value"] = value,
                Err(error) => return usage(&format!("the VALUE is not JSON: {error}")),
            },
            (_, Some(_)) => return usage("only `set` takes a VALUE"),
            (_, None) => {}
        }
        match (op, ttl) {
            (StoreOp::Set, Some(ttl)) => args["ttl_ms"] = serde_json::json!(ttl.as_millis().max(1) as u64),
            (_, Some(_)) => return usage("only `set` takes --ttl"),
            (_, None) => {}
        }
        let request = Request::CallHandler {
            group,
            target: "master".to_string(),
            name: format!("drover.store.{}", op.handler()),
            args,
            timeout_ms: None,
        };
        self::request(socket, request)
    }

    /// `drover reconfigure GROUP FILE|JSON [--timeout DURATION] [--json]`: one line per worker,
    /// `instance I (id N, pid P): applied|refused: reason|timeout|gone` (or the acks as JSON);
    /// exit 1 unless every worker applied it.
    pub fn reconfigure(
        socket: &SocketArg,
        group: String,
        source: &str,
        timeout: Option<std::time::Duration>,
        json: bool,
    ) -> ExitCode {
        let config = match read_config_arg(source) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("drover: reconfigure: {error}");
                return ExitCode::from(UNREACHABLE);
            }
        };
        let timeout_ms = timeout.map(|t| t.as_millis().min(u128::from(u64::MAX)) as u64);
        let answer = exchange_ok(
            socket,
            &Request::Reconfigure {
                group: group.clone(),
                config,
                timeout_ms,
            },
        );
        let acks = match answer.map(|r| r.result) {
            Ok(Some(Value::Array(acks))) => acks,
            Ok(_) => {
                eprintln!("drover: reconfigure: the answer carries no acknowledgements");
                return ExitCode::FAILURE;
            }
            Err(code) => return code,
        };
        if json {
            println!("{}", Value::Array(acks.clone()));
        } else if acks.is_empty() {
            println!("{group}: no worker (the config is kept for the workers to come)");
        }
        let mut all_applied = true;
        for ack in &acks {
            let outcome = ack["outcome"].as_str().unwrap_or("?");
            all_applied &= outcome == "applied";
            if !json {
                let why = ack["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
                println!(
                    "{group} instance {} (id {}, pid {}): {outcome}{why}",
                    ack["instance"], ack["id"], ack["pid"]
                );
            }
        }
        if all_applied {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// A `reconfigure` argument: JSON text, else the path of a JSON (or, by its `.toml` name, TOML)
    /// file.
    fn read_config_arg(source: &str) -> Result<Value, String> {
        if let Ok(value) = serde_json::from_str::<Value>(source) {
            return Ok(value);
        }
        let path = std::path::Path::new(source);
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{source:?} is neither JSON nor a readable file: {e}"))?;
        if path.extension().is_some_and(|e| e == "toml") {
            let table: toml::Table = toml::from_str(&text).map_err(|e| format!("{source}: {e}"))?;
            serde_json::to_value(table).map_err(|e| format!("{source}: {e}"))
        } else {
            serde_json::from_str(&text).map_err(|e| format!("{source}: not JSON: {e}"))
        }
    }

    /// `drover debug GROUP WORKER [--timeout DURATION]`: prints the inspector's WebSocket URL.
    pub fn debug(
        socket: &SocketArg,
        group: String,
        worker: WorkerRef,
        timeout: Option<std::time::Duration>,
    ) -> ExitCode {
        let timeout_ms = timeout.map(|t| t.as_millis().min(u128::from(u64::MAX)) as u64);
        let response = match exchange_ok(
            socket,
            &Request::Debug {
                group,
                worker,
                timeout_ms,
            },
        ) {
            Ok(response) => response,
            Err(code) => return code,
        };
        let Some(result) = response.result else {
            eprintln!("drover: debug: the answer carries no inspector address");
            return ExitCode::FAILURE;
        };
        println!("{}", result["url"].as_str().unwrap_or_default());
        if let Some(message) = response.message {
            eprintln!("{message}");
        }
        ExitCode::SUCCESS
    }

    /// `drover logs [GROUP] [-f] [--lines N]`: prints the lines as drover wrote them.
    pub fn logs(socket: &SocketArg, group: Option<String>, lines: usize, follow: bool) -> ExitCode {
        let request = Request::Logs { group, lines, follow };
        let (stream, path) = match connect(socket, &request) {
            Ok(connected) => connected,
            Err((code, error)) => {
                eprintln!("drover: {error}");
                return ExitCode::from(code);
            }
        };
        let mut answers = BufReader::new(stream);
        let mut out = std::io::stdout().lock();
        let mut got_one = false;
        loop {
            let mut line = String::new();
            match answers.read_line(&mut line) {
                Ok(0) if got_one => return ExitCode::SUCCESS,
                Ok(0) => {
                    eprintln!("drover: {} closed the connection without an answer", path.display());
                    return ExitCode::from(UNREACHABLE);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("drover: reading from {}: {e}", path.display());
                    return ExitCode::from(UNREACHABLE);
                }
            }
            got_one = true;
            match serde_json::from_str::<Response>(&line) {
                Ok(Response {
                    ok: true,
                    lines: Some(lines),
                    ..
                }) => {
                    for l in lines {
                        if writeln!(out, "{l}").is_err() {
                            // Our reader went away (`drover logs -f | head`).
                            return ExitCode::SUCCESS;
                        }
                    }
                    let _ = out.flush();
                }
                Ok(Response { error, .. }) => {
                    eprintln!(
                        "drover: {}",
                        error.unwrap_or_else(|| "no log lines in the answer".into())
                    );
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("drover: bad answer from drover: {e}");
                    return ExitCode::FAILURE;
                }
            }
            if !follow {
                return ExitCode::SUCCESS;
            }
        }
    }

    /// `drover status [--json]`.
    pub fn status(socket: &SocketArg, json: bool, app: bool) -> ExitCode {
        if app {
            return match exchange(socket, &Request::AppStatus) {
                Ok(Response {
                    ok: true,
                    app: Some(app),
                    ..
                }) => {
                    println!("{}", serde_json::to_string_pretty(&app).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(Response { error, .. }) => {
                    eprintln!(
                        "drover: {}",
                        error.unwrap_or_else(|| "no statuses in the answer".into())
                    );
                    ExitCode::FAILURE
                }
                Err((code, error)) => {
                    eprintln!("drover: {error}");
                    ExitCode::from(code)
                }
            };
        }
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
        let mut rows: Vec<[String; 10]> = vec![[
            "GROUP".into(),
            "INSTANCE".into(),
            "ID".into(),
            "PID".into(),
            "STATUS".into(),
            "UPTIME".into(),
            "RESTARTS".into(),
            "RSS".into(),
            "CPU".into(),
            "APP".into(),
        ]];
        for g in &report.groups {
            for w in &g.workers {
                rows.push([
                    g.name.clone(),
                    w.instance.to_string(),
                    w.id.to_string(),
                    w.pid.to_string(),
                    w.status.clone(),
                    duration(w.uptime_secs),
                    w.restarts.to_string(),
                    w.rss_bytes.map(bytes).unwrap_or_else(|| "-".into()),
                    w.cpu_percent.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into()),
                    app_column(w),
                ]);
            }
        }
        let widths: Vec<usize> = (0..10)
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
                "{}: {} ({}/{} STARTED){}\n",
                g.name,
                g.status,
                g.started,
                g.count,
                match &g.out_of_rotation {
                    Some(why) => format!(", OUT OF ROTATION: {why}"),
                    None => String::new(),
                }
            ));
            for l in &g.leaders {
                out.push_str(&format!(
                    "  leader of {}: {} (term {}, {} joined)\n",
                    l.key,
                    l.leader
                        .map_or_else(|| "nobody now".to_string(), |id| format!("worker {id}")),
                    l.term,
                    l.participants
                ));
            }
        }
        out
    }

    /// The application status and counters a worker published: `PROCESSING jobs=3 queue=12`.
    fn app_column(w: &WorkerReport) -> String {
        let mut parts: Vec<String> = w.app_status.iter().cloned().collect();
        parts.extend(w.counters.iter().map(|(k, v)| format!("{k}={v}")));
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(" ")
        }
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
        assert!(peer_allowed(0, 1000), "root may");
        assert!(!peer_allowed(65534, 0));
    }

    #[test]
    fn a_client_trusts_only_its_own_uid_or_root() {
        assert!(server_trusted(1000, 1000));
        assert!(server_trusted(0, 1000));
        assert!(server_trusted(0, 0));
        assert!(!server_trusted(1001, 1000));
        assert!(!server_trusted(65534, 0));
    }

    #[test]
    fn root_trusts_another_users_socket_only_in_a_directory_root_gave_it() {
        use std::os::unix::fs::PermissionsExt;
        // /tmp is writable by everyone: anyone could have made a directory there.
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert!(!root_may_trust(&dir.path().join("drover.sock"), me));
        assert!(!root_may_trust(Path::new("relative/drover.sock"), me));
        // A directory of the server's, 0700, under directories only root may write: trusted.
        let parent = dir.path().to_path_buf();
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700)).unwrap();
        let inside = parent.join("rt");
        std::fs::create_dir(&inside).unwrap();
        // /tmp itself (1777) is above: not trusted whoever we are.
        assert!(!root_may_trust(&inside.join("drover.sock"), me));
    }

    #[test]
    fn the_socket_is_looked_for_in_a_documented_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let all = &[
            ("RUNTIME_DIRECTORY", "/run/web:/run/other"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ];
        assert_eq!(
            candidates(env(all), 1000),
            [
                PathBuf::from("/run/web/drover.sock"),
                PathBuf::from("/run/drover/drover.sock"),
                PathBuf::from("/run/user/1000/drover.sock"),
                PathBuf::from("/tmp/drover-1000/drover.sock"),
            ]
        );
        assert_eq!(
            candidates(env(&[("XDG_RUNTIME_DIR", "")]), 0),
            [
                PathBuf::from("/run/drover/drover.sock"),
                PathBuf::from("/tmp/drover-0/drover.sock")
            ]
        );
    }

    #[test]
    fn request_errors_say_what_was_wrong() {
        assert_eq!(parse_request(b"\n").unwrap_err(), RequestError::Empty);
        assert_eq!(
            parse_request(&vec![b' '; MAX_REQUEST_BYTES + 1]).unwrap_err(),
            RequestError::TooLong
        );
        let e = parse_request(br#"{"cmd":"scale","group":"web","count":"many"}"#).unwrap_err();
        assert!(e.to_string().starts_with("bad request: invalid type"), "{e}");
        let e = parse_request(br#"{"cmd":"explode"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `explode`"), "{e}");
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let e = parse_request(deep.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("bad request:"), "{e}");
        assert!(matches!(parse_request(b"{\"cmd\":\"status\"}\n"), Ok(Request::Status)));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Any JSON value, nested a few levels, with the request's keys and commands likely. Floats
        /// only with `floats`: serde_json (without `float_roundtrip`) may change a float's last digit
        /// on the way back, which is not the parser's doing.
        fn json(floats: bool) -> impl Strategy<Value = Value> {
            let key = prop_oneof![
                Just("cmd".to_string()),
                Just("group".to_string()),
                Just("count".to_string()),
                Just("id".to_string()),
                Just("data".to_string()),
                Just("hard".to_string()),
                any::<String>(),
            ];
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(move |f| if floats { Value::from(f) } else { Value::from(f as i64) }),
                prop_oneof![
                    Just("status"),
                    Just("reload"),
                    Just("scale"),
                    Just("restart"),
                    Just("send"),
                    Just("stop"),
                    Just("request"),
                ]
                .prop_map(Value::from),
                any::<String>().prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 64, 8, move |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                    proptest::collection::vec((key.clone(), inner), 0..8)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        /// A well-formed request of any kind.
        fn request() -> impl Strategy<Value = Request> {
            prop_oneof![
                Just(Request::Status),
                proptest::option::of(any::<String>()).prop_map(|group| Request::Reload { group }),
                (any::<String>(), any::<i64>()).prop_map(|(group, count)| Request::Scale { group, count }),
                (
                    any::<String>(),
                    proptest::option::of(any::<u64>().prop_map(WorkerRef::Id))
                )
                    .prop_map(|(group, worker)| Request::Restart { group, worker }),
                (any::<String>(), proptest::option::of(any::<u32>()), json(false)).prop_map(|(group, id, data)| {
                    Request::Send {
                        group,
                        worker: id.map(WorkerRef::Instance),
                        data,
                    }
                }),
                (any::<bool>(), proptest::option::of(any::<String>()))
                    .prop_map(|(hard, group)| Request::Stop { hard, group }),
                any::<String>().prop_map(|group| Request::Start { group }),
                (
                    any::<String>(),
                    any::<String>(),
                    any::<String>(),
                    json(false),
                    proptest::option::of(any::<u64>())
                )
                    .prop_map(|(group, target, name, args, timeout_ms)| Request::CallHandler {
                        group,
                        target,
                        name,
                        args,
                        timeout_ms
                    }),
            ]
        }

        fn explained(error: &RequestError) -> bool {
            let text = error.to_string();
            ["bad request: ", "empty request", "request longer than"]
                .iter()
                .any(|start| text.starts_with(start))
        }

        proptest! {
            // 512 cases in the suite; `PROPTEST_CASES=200000` for a longer run.
            #![proptest_config(ProptestConfig::with_cases(
                std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
            ))]

            #[test]
            fn any_bytes_give_a_request_or_a_clear_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                if let Err(error) = parse_request(&bytes) {
                    prop_assert!(explained(&error), "{error}");
                }
            }

            #[test]
            fn any_json_gives_a_request_or_a_clear_error(value in json(true), newline in any::<bool>()) {
                let mut line = serde_json::to_vec(&value).expect("a Value serializes");
                if newline {
                    line.push(b'\n');
                }
                if let Err(error) = parse_request(&line) {
                    prop_assert!(explained(&error), "{error}");
                }
            }

            #[test]
            fn every_request_a_client_sends_parses_back(request in request()) {
                let line = serde_json::to_vec(&request).expect("a request serializes");
                let parsed = parse_request(&line);
                prop_assert!(parsed.is_ok(), "{parsed:?}");
                let again = serde_json::to_value(parsed.expect("checked")).expect("serializes");
                prop_assert_eq!(again, serde_json::to_value(&request).expect("serializes"));
            }

            #[test]
            fn cut_requests_are_refused_clearly(request in request(), cut in any::<prop::sample::Index>()) {
                let line = serde_json::to_vec(&request).expect("a request serializes");
                let cut = cut.index(line.len());
                if let Err(error) = parse_request(&line[..cut]) {
                    prop_assert!(explained(&error), "{error}");
                }
            }
        }
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
                    app_status: Some("PROCESSING".into()),
                    counters: [("jobs".to_string(), 3.0)].into(),
                    ..WorkerReport::default()
                }],
                in_rotation: false,
                out_of_rotation: Some("marked down by hand".into()),
                recent_exits: Vec::new(),
                leaders: vec![LeaderReport {
                    key: "db".into(),
                    leader: None,
                    term: 4,
                    participants: 2,
                }],
            }],
        };
        let table = client::table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("GROUP  INSTANCE  ID  PID   STATUS"), "{table}");
        assert!(
            lines[1].contains("4121")
                && lines[1].contains("1m15s")
                && lines[1].contains("3.0M")
                && lines[1].contains("1.2%")
                && lines[1].ends_with("PROCESSING jobs=3"),
            "{table}"
        );
        assert_eq!(
            lines[2],
            "web: STARTED (1/1 STARTED), OUT OF ROTATION: marked down by hand"
        );
        assert_eq!(lines[3], "  leader of db: nobody now (term 4, 2 joined)");
    }
}
