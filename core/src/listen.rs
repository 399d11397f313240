//! Listening sockets owned by the master, shared by its workers.
//!
//! The master binds each address once and keeps the socket open through restarts, rescales and
//! reloads, so a client is never refused while workers come and go: every worker accepts on a
//! shared copy of the same socket and the kernel hands each connection to one of them. Two ways in,
//! one registry (`Listeners`):
//!
//! - **declared** in the config (`listen`): bound before the first worker starts and passed to every
//!   worker at fds 3, 4, ... with systemd's socket-activation variables (`LISTEN_FDS`, `LISTEN_PID`
//!   set to the worker's own pid, `LISTEN_FDNAMES`), so programs written for systemd run unchanged;
//! - **on demand**: a worker asks over its MessageBus (`listen` frame) and receives the fd with
//!   `SCM_RIGHTS`; every worker asking for the same address gets the same socket.
//!
//! If the master process itself was started by systemd with sockets (`LISTEN_FDS`, `LISTEN_PID` =
//! its pid), a request for an address one of them is bound to uses that socket instead of binding.
//!
//! **Bounds.** A worker process may hold at most [`MAX_LISTENERS_PER_WORKER`] on-demand sockets and
//! a master at most [`MAX_LISTENERS_PER_MASTER`] in all; a request past either is refused with an
//! error that names the bound. An on-demand socket whose every holder has exited is closed once it
//! has gone [`LISTENER_LINGER`] without one: long enough for a restarted worker to ask again
//! without a client ever being refused, short enough that a worker asking for new addresses in a
//! crash loop cannot pin the master's fds. Declared sockets stay until shutdown.
//!
//! **Unix socket paths** are bound and removed through a handle on their directory, opened once at
//! bind time, never by path again: a worker that swaps its directory for a symlink cannot make the
//! master remove a file elsewhere, and only the socket file the master made (same device and inode)
//! is removed, at shutdown. A worker that runs as another user than the master (it dropped its
//! privileges) cannot ask for a Unix path at all: the master would create a file with its own
//! rights wherever that worker names. Such paths can be declared in the master's config.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The most on-demand listening sockets one worker process may hold.
pub const MAX_LISTENERS_PER_WORKER: usize = 64;
/// The most listening sockets (declared and on demand) one master holds.
pub const MAX_LISTENERS_PER_MASTER: usize = 256;
/// How long an on-demand socket with no live holder is kept for a worker that may ask again.
pub const LISTENER_LINGER: Duration = Duration::from_secs(10);

/// An address to listen on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// TCP, IPv4 or IPv6.
    Tcp(SocketAddr),
    /// A Unix stream socket at a path.
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = ListenError;

    /// Accepts `host:port`, `[v6]:port`, a bare `port` or `:port` (all interfaces, IPv6 and IPv4),
    /// `unix:/path`, or a path starting with `/` or `./`.
    fn from_str(input: &str) -> Result<ListenAddr, ListenError> {
        let bad = |reason: &str| ListenError::Parse {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = input.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty Unix socket path"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if input.starts_with('/') || input.starts_with("./") {
            return Ok(ListenAddr::Unix(PathBuf::from(input)));
        }
        let port_only = input.strip_prefix(':').unwrap_or(input);
        if let Ok(port) = port_only.parse::<u16>() {
            return Ok(ListenAddr::Tcp(SocketAddr::from((
                std::net::Ipv6Addr::UNSPECIFIED,
                port,
            ))));
        }
        if let Ok(addr) = input.parse::<SocketAddr>() {
            return Ok(ListenAddr::Tcp(addr));
        }
        let mut resolved = input
            .to_socket_addrs()
            .map_err(|e| bad(&format!("not host:port ({e})")))?;
        resolved
            .next()
            .map(ListenAddr::Tcp)
            .ok_or_else(|| bad("the host resolves to no address"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Who takes a listening socket's connections (`balance`, per listener; PROTOCOL.md §5.3).
///
/// The default is [`Balance::Shared`]: the master stays out of the data path (no cost per
/// connection, and a master that is busy or paused delays nobody), and programs written for
/// systemd socket activation keep working. Its price is fairness: Linux wakes the most recent
/// waiter, so under light and bursty load one worker takes more than its share
/// (`docs/BENCHMARKS.md`). Choose [`Balance::RoundRobin`] for an even share, [`Balance::Sticky`]
/// for clients that must come back to the same worker (long-polling sessions), and
/// [`Balance::ReusePort`] for an even share of many short connections with the master out of the
/// data path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Every worker accepts on a shared copy of the socket; the kernel picks.
    #[default]
    Shared,
    /// The master accepts and hands each connection to the next STARTED worker in turn.
    RoundRobin,
    /// The master accepts and hands each connection to the STARTED worker that the client's
    /// address hashes to (rendezvous hashing over the workers' instance indexes): a client comes
    /// back to the same worker, and when a worker goes only its own clients move.
    Sticky,
    /// One socket per worker slot, all bound with `SO_REUSEPORT`: the kernel spreads connections
    /// over them by a hash of their addresses, each worker accepts on its own slot's queue, and a
    /// replacement takes over its slot's socket with the connections queued on it. TCP only.
    /// See [`crate::master::reuseport`].
    #[serde(rename = "reuseport")]
    ReusePort,
}

impl Balance {
    /// Whether the master accepts the connections itself (and hands each to one worker).
    pub fn master_accepts(self) -> bool {
        matches!(self, Balance::RoundRobin | Balance::Sticky)
    }

    /// The word used in configs and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::Shared => "shared",
            Balance::RoundRobin => "round-robin",
            Balance::Sticky => "sticky",
            Balance::ReusePort => "reuseport",
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Balance {
    type Err = ListenError;

    /// `shared`, `round-robin`, `sticky` or `reuseport`.
    fn from_str(input: &str) -> Result<Balance, ListenError> {
        match input {
            "shared" => Ok(Balance::Shared),
            "round-robin" => Ok(Balance::RoundRobin),
            "sticky" => Ok(Balance::Sticky),
            "reuseport" => Ok(Balance::ReusePort),
            _ => Err(ListenError::Balance {
                input: input.to_string(),
            }),
        }
    }
}

/// A declared listening socket: an address, the name workers see in `LISTEN_FDNAMES`, and who
/// takes its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The name (`LISTEN_FDNAMES`); defaults to `listen<index>`.
    pub name: Option<String>,
    /// The address.
    pub addr: ListenAddr,
    /// Who takes its connections; `None` follows the master's `balance` (default shared).
    pub balance: Option<Balance>,
}

impl FromStr for ListenSpec {
    type Err = ListenError;

    /// `ADDR` or `NAME=ADDR`, optionally followed by `,balance=MODE`:
    ///
    /// ```
    /// use drover::listen::{Balance, ListenSpec};
    /// let spec: ListenSpec = "web=127.0.0.1:8080,balance=round-robin".parse().unwrap();
    /// assert_eq!(spec.name.as_deref(), Some("web"));
    /// assert_eq!(spec.balance, Some(Balance::RoundRobin));
    /// assert!("127.0.0.1:8080,balance=fastest".parse::<ListenSpec>().is_err());
    /// ```
    fn from_str(input: &str) -> Result<ListenSpec, ListenError> {
        let (input, balance) = match input.split_once(",balance=") {
            Some((spec, mode)) => (spec, Some(mode.parse::<Balance>()?)),
            None => (input, None),
        };
        let (name, addr) = match input.split_once('=') {
            Some((name, addr)) if !name.is_empty() && !name.contains(':') && !name.contains('/') => {
                (Some(name.to_string()), addr.parse::<ListenAddr>()?)
            }
            _ => (None, input.parse::<ListenAddr>()?),
        };
        if balance == Some(Balance::Sticky) && matches!(addr, ListenAddr::Unix(_)) {
            return Err(ListenError::Parse {
                input: input.to_string(),
                reason: "sticky balance needs a TCP address (every client of a Unix socket has the same address)"
                    .into(),
            });
        }
        if balance == Some(Balance::ReusePort) && matches!(addr, ListenAddr::Unix(_)) {
            return Err(ListenError::Parse {
                input: input.to_string(),
                reason:
                    "reuseport balance needs a TCP address (SO_REUSEPORT does not spread a Unix socket's connections)"
                        .into(),
            });
        }
        Ok(ListenSpec { name, addr, balance })
    }
}

/// Why a socket could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
pub enum ListenError {
    /// The address does not parse.
    #[error("`{input}` is not a listen address: {reason}")]
    Parse {
        /// What was given.
        input: String,
        /// Why not.
        reason: String,
    },
    /// A `balance` that is none of the modes.
    #[error("`{input}` is not a balance (shared, round-robin, sticky or reuseport)")]
    Balance {
        /// What was given.
        input: String,
    },
    /// bind or listen failed.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error, with its errno name.
        error: String,
        /// The raw errno (e.g. 98 for `EADDRINUSE`), when the OS gave one.
        errno: Option<i32>,
    },
    /// The worker already holds as many sockets as a worker may.
    #[error(
        "cannot listen on {address}: this worker already holds {limit} listening sockets, the most one worker may"
    )]
    TooManyForWorker {
        /// The address.
        address: String,
        /// [`MAX_LISTENERS_PER_WORKER`].
        limit: usize,
    },
    /// The master already holds as many sockets as it may.
    #[error("cannot listen on {address}: the master already holds {limit} listening sockets, the most it holds")]
    TooManyForMaster {
        /// The address.
        address: String,
        /// [`MAX_LISTENERS_PER_MASTER`].
        limit: usize,
    },
    /// A worker running as another user than the master asked for a Unix socket path.
    #[error("cannot listen on {address}: the worker runs as uid {worker_uid} and the master as uid {master_uid}; a Unix socket path for it must be declared in the master's config")]
    ForeignUnixPath {
        /// The address.
        address: String,
        /// The worker's effective uid.
        worker_uid: u32,
        /// The master's effective uid.
        master_uid: u32,
    },
}

impl ListenError {
    /// The address it is about (as given, for one that does not parse).
    pub fn address(&self) -> &str {
        match self {
            ListenError::Parse { input, .. } | ListenError::Balance { input } => input,
            ListenError::Bind { address, .. }
            | ListenError::TooManyForWorker { address, .. }
            | ListenError::TooManyForMaster { address, .. }
            | ListenError::ForeignUnixPath { address, .. } => address,
        }
    }

    /// The OS's errno, when the OS refused (a bind or listen that failed).
    pub fn errno(&self) -> Option<i32> {
        match self {
            ListenError::Bind { errno, .. } => *errno,
            _ => None,
        }
    }
}

/// The name of errno `errno`, e.g. `"EADDRINUSE"` (`"UnknownErrno"` for a number without one).
pub fn errno_name(errno: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(errno))
}

fn bind_error(addr: &ListenAddr, err: std::io::Error) -> ListenError {
    let error = match err.raw_os_error() {
        Some(errno) => format!("{} ({})", err, nix::errno::Errno::from_raw(errno)),
        None => err.to_string(),
    };
    ListenError::Bind {
        address: addr.to_string(),
        error,
        errno: err.raw_os_error(),
    }
}

/// One socket the master holds.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) addr: ListenAddr,
    pub(crate) local: String,
    pub(crate) fd: Arc<OwnedFd>,
    /// Who takes its connections.
    pub(crate) balance: Balance,
    /// The master's accept loop, when it takes them ([`Balance::master_accepts`]).
    pub(crate) balancer: Option<crate::master::balance::Balancer>,
    /// The per-worker sockets of a [`Balance::ReusePort`] address (`fd` is slot 0's).
    pub(crate) slots: Option<crate::master::reuseport::ReusePortSlots>,
    /// Removed when the socket closes (only for paths we bound ourselves).
    _unix_path: Option<UnixPath>,
}

impl Listener {
    /// A socket every worker accepts on, until [`Listener::balanced`] says otherwise.
    fn shared(addr: &ListenAddr, fd: OwnedFd, unix_path: Option<UnixPath>) -> Listener {
        Listener {
            addr: addr.clone(),
            local: local_name(&fd),
            fd: Arc::new(fd),
            balance: Balance::Shared,
            balancer: None,
            slots: None,
            _unix_path: unix_path,
        }
    }

    /// The socket a worker of `instance` takes (`holder`, a worker process, holds it until it
    /// exits): its slot's for [`Balance::ReusePort`], else the one socket.
    pub(crate) fn socket_for(&self, instance: u32, holder: Option<u32>) -> Result<Arc<OwnedFd>, ListenError> {
        match &self.slots {
            Some(slots) => slots
                .socket_for(instance, holder)
                .map_err(|e| bind_error(&self.addr, e)),
            None => Ok(self.fd.clone()),
        }
    }

    /// Starts the master's accept loop for a balanced socket.
    fn balanced(mut self, balance: Balance, worker_count: u32) -> Result<Listener, ListenError> {
        self.balance = balance;
        if balance == Balance::ReusePort {
            let local = match (&self.addr, local_addr(&self.fd)) {
                (ListenAddr::Tcp(_), Some(local)) => local,
                _ => {
                    return Err(ListenError::Parse {
                        input: self.addr.to_string(),
                        reason: "reuseport balance needs a TCP address".into(),
                    })
                }
            };
            let slots = crate::master::reuseport::ReusePortSlots::new(self.fd.clone(), local, &self.local);
            slots.set_count(worker_count);
            self.slots = Some(slots);
        }
        if balance.master_accepts() {
            let balancer = crate::master::balance::Balancer::start(&self.fd, &self.local, balance)
                .map_err(|e| bind_error(&self.addr, e))?;
            self.balancer = Some(balancer);
        }
        Ok(self)
    }
}

/// A socket file the master made: its directory (held open) and its identity, so that exactly
/// that file, and nothing a worker put in its place, is removed.
#[derive(Debug)]
struct UnixPath {
    dir: OwnedFd,
    name: std::ffi::CString,
    dev: u64,
    ino: u64,
}

impl Drop for UnixPath {
    fn drop(&mut self) {
        use nix::fcntl::AtFlags;
        use nix::sys::stat::{fstatat, SFlag};
        let Ok(st) = fstatat(
            Some(self.dir.as_raw_fd()),
            self.name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) else {
            return;
        };
        let is_ours = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK
            && st.st_dev == self.dev
            && st.st_ino == self.ino;
        if is_ours {
            let _ = nix::unistd::unlinkat(
                Some(self.dir.as_raw_fd()),
                self.name.as_c_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        } else {
            tracing::debug!(name = ?self.name, "a Unix socket's path no longer names the socket bound there; left alone");
        }
    }
}

/// Who asks for a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// The master's config: kept until shutdown.
    Declared,
    /// A worker process, by pid: released when it exits.
    Worker(u32),
}

#[derive(Debug)]
struct Held {
    listener: Arc<Listener>,
    declared: bool,
    /// Worker processes that asked for it and have not exited.
    holders: Vec<u32>,
    /// When the last holder exited (on-demand sockets only).
    unheld_since: Option<Instant>,
}

/// The sockets of one master.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    open: Mutex<Vec<Held>>,
    /// The group's worker count, for the `reuseport` slots of sockets bound from now on.
    worker_count: std::sync::atomic::AtomicU32,
}

impl Listeners {
    /// The socket for `addr`, for `holder`: the one already held, one inherited from systemd, or
    /// a new one, whose connections are taken as `balance` says (a socket already held keeps its
    /// own). Refused past the bounds (module docs).
    pub(crate) fn get_or_bind(
        &self,
        addr: &ListenAddr,
        holder: Holder,
        balance: Balance,
    ) -> Result<Arc<Listener>, ListenError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        release_lingering(&mut open, now);
        let index = match find(&open, addr) {
            Some(i) => i,
            None => {
                let address = addr.to_string();
                if let Holder::Worker(pid) = holder {
                    check_worker_may_bind(addr, pid)?;
                    let held = open.iter().filter(|h| h.holders.contains(&pid)).count();
                    if held >= MAX_LISTENERS_PER_WORKER {
                        return Err(ListenError::TooManyForWorker {
                            address,
                            limit: MAX_LISTENERS_PER_WORKER,
                        });
                    }
                }
                if open.len() >= MAX_LISTENERS_PER_MASTER {
                    return Err(ListenError::TooManyForMaster {
                        address,
                        limit: MAX_LISTENERS_PER_MASTER,
                    });
                }
                let listener = match take_inherited(addr) {
                    Some(fd) => Listener::shared(addr, fd, None),
                    None => bind(addr, balance)?,
                }
                .balanced(balance, self.worker_count.load(std::sync::atomic::Ordering::Relaxed))?;
                tracing::debug!(address = %addr, local = %listener.local, "listening");
                open.push(Held {
                    listener: Arc::new(listener),
                    declared: false,
                    holders: Vec::new(),
                    unheld_since: None,
                });
                open.len() - 1
            }
        };
        let held = &mut open[index];
        match holder {
            Holder::Declared => held.declared = true,
            // A worker reaped while its request was being served holds nothing: it is forgotten
            // before its sockets are released (under this lock), so either it is still a worker
            // here, or `release` has already run and will not run again.
            Holder::Worker(pid) if !crate::master::pids::is_worker_pid(pid) => {}
            Holder::Worker(pid) if !held.holders.contains(&pid) => held.holders.push(pid),
            Holder::Worker(_) => {}
        }
        held.unheld_since = if held.holders.is_empty() && !held.declared {
            Some(held.unheld_since.unwrap_or(now))
        } else {
            None
        };
        Ok(held.listener.clone())
    }

    /// Worker process `pid` has exited: it holds nothing any more.
    pub(crate) fn release(&self, pid: u32) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for held in open.iter_mut() {
            if let Some(balancer) = &held.listener.balancer {
                balancer.leave(pid);
            }
            if let Some(slots) = &held.listener.slots {
                slots.release(pid);
            }
            if let Some(i) = held.holders.iter().position(|p| *p == pid) {
                held.holders.swap_remove(i);
                if held.holders.is_empty() && !held.declared {
                    held.unheld_since = Some(now);
                }
            }
        }
        release_lingering(&mut open, now);
    }

    /// The group now has `count` workers: `reuseport` slots past it close once their workers
    /// have gone.
    pub(crate) fn set_worker_count(&self, count: usize) {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        self.worker_count.store(count, std::sync::atomic::Ordering::Relaxed);
        for held in self.open.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if let Some(slots) = &held.listener.slots {
                slots.set_count(count);
            }
        }
    }

    /// Worker process `pid` stops accepting (it was told to stop): the master takes the
    /// connections of its `reuseport` slots.
    pub(crate) fn stop_accepting(&self, pid: u32) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for held in open.iter() {
            if let Some(slots) = &held.listener.slots {
                slots.stopping(pid);
            }
        }
    }

    /// Every socket held: (requested address, bound address).
    pub(crate) fn list(&self) -> Vec<(String, String)> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.iter()
            .map(|h| (h.listener.addr.to_string(), h.listener.local.clone()))
            .collect()
    }

    /// Closes every socket (paths are removed as the last reference goes), and returns once the
    /// master's accept loops on `reuseport` slots have let go of theirs too: when a shutdown
    /// returns, the port is closed.
    pub(crate) async fn close_all(&self) {
        let closed: Vec<Held> = std::mem::take(&mut *self.open.lock().unwrap_or_else(|p| p.into_inner()));
        let rescues: Vec<_> = closed
            .iter()
            .filter_map(|h| h.listener.slots.as_ref())
            .flat_map(|slots| slots.stop_rescues())
            .collect();
        drop(closed);
        for task in rescues {
            let _ = task.await;
        }
    }
}

/// The held socket that serves `addr`.
fn find(open: &[Held], addr: &ListenAddr) -> Option<usize> {
    if let Some(i) = open.iter().position(|h| &h.listener.addr == addr) {
        return Some(i);
    }
    // "Any address, port P" (a Node app's `listen(P)`) is served by a socket the master already
    // holds on port P (say a declared `127.0.0.1:P`) rather than failing with EADDRINUSE.
    if let ListenAddr::Tcp(sa) = addr {
        if sa.ip().is_unspecified() && sa.port() != 0 {
            let port = format!(":{}", sa.port());
            return open
                .iter()
                .position(|h| matches!(h.listener.addr, ListenAddr::Tcp(_)) && h.listener.local.ends_with(&port));
        }
    }
    None
}

/// Closes the on-demand sockets nobody has held for [`LISTENER_LINGER`].
fn release_lingering(open: &mut Vec<Held>, now: Instant) {
    open.retain(|h| {
        let expired = h
            .unheld_since
            .is_some_and(|since| now.duration_since(since) >= LISTENER_LINGER);
        if expired {
            tracing::debug!(address = %h.listener.addr, "no worker holds this socket any more; closed");
        }
        !expired
    });
}

/// A worker that runs as another user than the master may not have it create a Unix socket file.
fn check_worker_may_bind(addr: &ListenAddr, pid: u32) -> Result<(), ListenError> {
    let ListenAddr::Unix(_) = addr else { return Ok(()) };
    let master_uid = nix::unistd::geteuid().as_raw();
    // The worker is our unreaped child, so its pid is still its own. A worker we cannot read the
    // uid of is treated as foreign.
    let worker_uid = effective_uid(pid).unwrap_or(u32::MAX);
    if worker_uid == master_uid {
        return Ok(());
    }
    Err(ListenError::ForeignUnixPath {
        address: addr.to_string(),
        worker_uid,
        master_uid,
    })
}

/// The effective uid of process `pid`, from `/proc/<pid>/status`.
fn effective_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn bind(addr: &ListenAddr, balance: Balance) -> Result<Listener, ListenError> {
    match addr {
        ListenAddr::Tcp(sa) => {
            let fd: OwnedFd = if balance == Balance::ReusePort {
                with_ipv4_fallback(*sa, crate::master::reuseport::bind_reuseport)
            } else {
                with_ipv4_fallback(*sa, |sa| std::net::TcpListener::bind(sa).map(OwnedFd::from))
            }
            .map_err(|e| bind_error(addr, e))?;
            Ok(Listener::shared(addr, fd, None))
        }
        ListenAddr::Unix(path) => {
            let (listener, unix_path) = bind_unix(path).map_err(|e| bind_error(addr, e))?;
            // Named by the path asked for: it was bound through /proc/self/fd, which getsockname
            // would give back.
            let mut listener = Listener::shared(addr, listener.into(), Some(unix_path));
            listener.local = format!("unix:{}", path.display());
            Ok(listener)
        }
    }
}

/// `bind_to(sa)`; on a host without IPv6, a bare port (`[::]:PORT`) falls back to IPv4.
fn with_ipv4_fallback(
    sa: SocketAddr,
    bind_to: impl Fn(SocketAddr) -> std::io::Result<OwnedFd>,
) -> std::io::Result<OwnedFd> {
    match bind_to(sa) {
        Err(e) if sa.ip() == std::net::Ipv6Addr::UNSPECIFIED && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            bind_to(SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, sa.port())))
        }
        other => other,
    }
}

/// Binds a Unix socket at `path` through a handle on its directory: the directory is resolved
/// once, here, and the socket is made in it (through `/proc/self/fd/<dir>/<name>`, since bind
/// takes no directory fd), so a later swap of a path component changes nothing we do.
fn bind_unix(path: &Path) -> std::io::Result<(std::os::unix::net::UnixListener, UnixPath)> {
    use nix::fcntl::{open, AtFlags, OFlag};
    use nix::sys::stat::{fstatat, Mode};
    use std::os::unix::ffi::OsStrExt;
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string());
    let name = path.file_name().ok_or_else(|| invalid("the path names no file"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = open(
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: open just returned this fd; nobody else owns it.
    let dir = unsafe { OwnedFd::from_raw_fd(dir) };
    let via_dir = Path::new("/proc/self/fd").join(dir.as_raw_fd().to_string()).join(name);
    let listener = std::os::unix::net::UnixListener::bind(&via_dir)?;
    let name = std::ffi::CString::new(name.as_bytes()).map_err(|_| invalid("the path contains a NUL byte"))?;
    let st = fstatat(Some(dir.as_raw_fd()), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let unix_path = UnixPath {
        dir,
        name,
        dev: st.st_dev,
        ino: st.st_ino,
    };
    Ok((listener, unix_path))
}

/// The TCP address `fd` is bound to.
fn local_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    use nix::sys::socket::{getsockname, SockaddrStorage};
    let sa = getsockname::<SockaddrStorage>(fd.as_raw_fd()).ok()?;
    sa.as_sockaddr_in()
        .map(|v4| SocketAddr::from((v4.ip(), v4.port())))
        .or_else(|| sa.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port()))))
}

fn local_name(fd: &OwnedFd) -> String {
    use nix::sys::socket::{getsockname, SockaddrStorage};
    match getsockname::<SockaddrStorage>(fd.as_raw_fd()) {
        Ok(sa) => {
            if let Some(v4) = sa.as_sockaddr_in() {
                SocketAddr::from((v4.ip(), v4.port())).to_string()
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                SocketAddr::from((v6.ip(), v6.port())).to_string()
            } else if let Some(path) = sa.as_unix_addr().and_then(|u| u.path()) {
                format!("unix:{}", path.display())
            } else {
                "unknown".into()
            }
        }
        Err(_) => "unknown".into(),
    }
}

/// Sockets this process was started with by systemd (or a drover master), not yet used.
fn inherited() -> &'static Mutex<Vec<OwnedFd>> {
    static INHERITED: OnceLock<Mutex<Vec<OwnedFd>>> = OnceLock::new();
    INHERITED.get_or_init(|| {
        let ours = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
        let count = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse::<RawFd>().ok())
            .unwrap_or(0);
        let mut fds = Vec::new();
        if ours {
            for fd in 3..3 + count.clamp(0, 1024) {
                // SAFETY: fcntl on an integer is safe; F_GETFD fails for a closed fd.
                if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
                    continue;
                }
                // SAFETY: as above: keep our own children (workers) from inheriting it by accident.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                // SAFETY: systemd's convention hands fds 3..3+LISTEN_FDS to this process; checking
                // LISTEN_PID makes sure they are meant for us, and each is taken once, here.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        Mutex::new(fds)
    })
}

fn take_inherited(addr: &ListenAddr) -> Option<OwnedFd> {
    let mut fds = inherited().lock().unwrap_or_else(|p| p.into_inner());
    let wanted = addr.to_string();
    let index = fds.iter().position(|fd| {
        let local = local_name(fd);
        local == wanted
            || matches!(addr, ListenAddr::Tcp(sa) if sa.ip().is_unspecified()
                && local.rsplit(':').next() == Some(&sa.port().to_string()))
    })?;
    Some(fds.remove(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_in_every_documented_form() {
        assert_eq!(
            "127.0.0.1:80".parse::<ListenAddr>().unwrap().to_string(),
            "127.0.0.1:80"
        );
        assert_eq!("[::1]:80".parse::<ListenAddr>().unwrap().to_string(), "[::1]:80");
        assert_eq!("3000".parse::<ListenAddr>().unwrap().to_string(), "[::]:3000");
        assert_eq!(":3000".parse::<ListenAddr>().unwrap().to_string(), "[::]:3000");
        assert_eq!(
            "unix:/run/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/x.sock".into())
        );
        assert_eq!(
            "/run/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/x.sock".into())
        );
        let spec: ListenSpec = "web=127.0.0.1:8080".parse().unwrap();
        assert_eq!(spec.name.as_deref(), Some("web"));
        assert!("not an address".parse::<ListenAddr>().is_err());
        assert!("unix:".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn one_address_one_socket_and_bind_errors_say_why() {
        let set = Listeners::default();
        let a = set
            .get_or_bind(&"127.0.0.1:0".parse().unwrap(), Holder::Declared, Balance::Shared)
            .unwrap();
        let b = set
            .get_or_bind(&"127.0.0.1:0".parse().unwrap(), Holder::Declared, Balance::Shared)
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let taken: ListenAddr = a.local.parse().unwrap();
        let other = Listeners::default();
        let err = other
            .get_or_bind(&taken, Holder::Declared, Balance::Shared)
            .unwrap_err();
        assert!(err.to_string().contains("EADDRINUSE"), "{err}");
        // The errno and the address are fields: no face reads them out of the words.
        assert_eq!(err.errno(), Some(nix::errno::Errno::EADDRINUSE as i32), "{err}");
        assert_eq!(err.address(), taken.to_string());
        assert_eq!(errno_name(98), "EADDRINUSE");
        // A request for any address on that port reuses the held socket.
        let port = a.local.rsplit(':').next().unwrap().to_string();
        let c = set
            .get_or_bind(&port.parse().unwrap(), Holder::Declared, Balance::Shared)
            .unwrap();
        assert!(Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn bounds_per_worker_and_per_master_and_unheld_sockets_linger_then_close() {
        // A pid that is registered as a worker but is no process: holders are tracked by pid.
        let (worker, other) = (u32::MAX - 1, u32::MAX - 2);
        {
            let mut pids = crate::lock_worker_pids();
            pids.insert(worker);
            pids.insert(other);
        }
        let set = Listeners::default();
        let addr = |i: usize| {
            format!("127.0.{}.{}:0", 3 + i / 250, 1 + i % 250)
                .parse::<ListenAddr>()
                .unwrap()
        };
        for i in 0..MAX_LISTENERS_PER_WORKER {
            set.get_or_bind(&addr(i), Holder::Worker(worker), Balance::Shared)
                .unwrap();
        }
        let err = set
            .get_or_bind(&addr(MAX_LISTENERS_PER_WORKER), Holder::Worker(worker), Balance::Shared)
            .unwrap_err();
        assert!(matches!(err, ListenError::TooManyForWorker { limit: 64, .. }), "{err}");
        // Asking again for one it holds is no new socket.
        set.get_or_bind(&addr(0), Holder::Worker(worker), Balance::Shared)
            .unwrap();
        for i in MAX_LISTENERS_PER_WORKER..MAX_LISTENERS_PER_MASTER {
            set.get_or_bind(&addr(i), Holder::Declared, Balance::Shared).unwrap();
        }
        let err = set
            .get_or_bind(&addr(MAX_LISTENERS_PER_MASTER), Holder::Worker(other), Balance::Shared)
            .unwrap_err();
        assert!(matches!(err, ListenError::TooManyForMaster { limit: 256, .. }), "{err}");
        // The worker exits: its sockets linger, then close; the declared ones stay.
        set.release(worker);
        assert_eq!(set.list().len(), MAX_LISTENERS_PER_MASTER);
        let later = Instant::now() + LISTENER_LINGER;
        release_lingering(&mut set.open.lock().unwrap(), later);
        assert_eq!(set.list().len(), MAX_LISTENERS_PER_MASTER - MAX_LISTENERS_PER_WORKER);
        set.get_or_bind(&addr(MAX_LISTENERS_PER_MASTER), Holder::Worker(other), Balance::Shared)
            .unwrap();
        crate::master::pids::forget(worker);
        crate::master::pids::forget(other);
    }

    #[tokio::test]
    async fn a_unix_socket_path_is_removed_when_closed() {
        let path = std::env::temp_dir().join(format!("drover-listen-test-{}.sock", std::process::id()));
        let set = Listeners::default();
        set.get_or_bind(&ListenAddr::Unix(path.clone()), Holder::Declared, Balance::Shared)
            .unwrap();
        assert!(path.exists());
        set.close_all().await;
        assert!(!path.exists());
    }
}
