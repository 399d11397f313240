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
//! Sockets close when the master shuts down; a Unix socket's path is removed then.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

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

/// A declared listening socket: an address and the name workers see in `LISTEN_FDNAMES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The name (`LISTEN_FDNAMES`); defaults to `listen<index>`.
    pub name: Option<String>,
    /// The address.
    pub addr: ListenAddr,
}

impl FromStr for ListenSpec {
    type Err = ListenError;

    /// `ADDR` or `NAME=ADDR`.
    fn from_str(input: &str) -> Result<ListenSpec, ListenError> {
        match input.split_once('=') {
            Some((name, addr)) if !name.is_empty() && !name.contains(':') && !name.contains('/') => Ok(ListenSpec {
                name: Some(name.to_string()),
                addr: addr.parse()?,
            }),
            _ => Ok(ListenSpec {
                name: None,
                addr: input.parse()?,
            }),
        }
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
    /// bind or listen failed.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error, with its errno name.
        error: String,
    },
}

fn bind_error(addr: &ListenAddr, err: std::io::Error) -> ListenError {
    let error = match err.raw_os_error() {
        Some(errno) => format!("{} ({})", err, nix::errno::Errno::from_raw(errno)),
        None => err.to_string(),
    };
    ListenError::Bind {
        address: addr.to_string(),
        error,
    }
}

/// One socket the master holds.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) addr: ListenAddr,
    pub(crate) local: String,
    pub(crate) fd: Arc<OwnedFd>,
    /// Removed when the socket closes (only for paths we bound ourselves).
    unix_path: Option<PathBuf>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The sockets of one master.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    open: Mutex<Vec<Arc<Listener>>>,
}

impl Listeners {
    /// The socket for `addr`: the one already held, one inherited from systemd, or a new one.
    pub(crate) fn get_or_bind(&self, addr: &ListenAddr) -> Result<Arc<Listener>, ListenError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = open.iter().find(|l| &l.addr == addr) {
            return Ok(l.clone());
        }
        // "Any address, port P" (a Node app's `listen(P)`) is served by a socket the master already
        // holds on port P (say a declared `127.0.0.1:P`) rather than failing with EADDRINUSE.
        if let ListenAddr::Tcp(sa) = addr {
            if sa.ip().is_unspecified() && sa.port() != 0 {
                let port = format!(":{}", sa.port());
                if let Some(l) = open
                    .iter()
                    .find(|l| matches!(l.addr, ListenAddr::Tcp(_)) && l.local.ends_with(&port))
                {
                    return Ok(l.clone());
                }
            }
        }
        let listener = match take_inherited(addr) {
            Some(fd) => Listener {
                addr: addr.clone(),
                local: local_name(&fd),
                fd: Arc::new(fd),
                unix_path: None,
            },
            None => bind(addr)?,
        };
        tracing::debug!(address = %addr, local = %listener.local, "listening");
        let listener = Arc::new(listener);
        open.push(listener.clone());
        Ok(listener)
    }

    /// Every socket held: (requested address, bound address).
    pub(crate) fn list(&self) -> Vec<(String, String)> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.iter().map(|l| (l.addr.to_string(), l.local.clone())).collect()
    }

    /// Closes every socket (paths are removed as the last reference goes).
    pub(crate) fn close_all(&self) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn bind(addr: &ListenAddr) -> Result<Listener, ListenError> {
    match addr {
        ListenAddr::Tcp(sa) => {
            let listener = match std::net::TcpListener::bind(sa) {
                // A host without IPv6: a bare port falls back to IPv4.
                Err(e)
                    if sa.ip() == std::net::Ipv6Addr::UNSPECIFIED && e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
                {
                    std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, sa.port()))
                }
                other => other,
            }
            .map_err(|e| bind_error(addr, e))?;
            let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
            Ok(Listener {
                addr: addr.clone(),
                local,
                fd: Arc::new(listener.into()),
                unix_path: None,
            })
        }
        ListenAddr::Unix(path) => {
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(|e| bind_error(addr, e))?;
            Ok(Listener {
                addr: addr.clone(),
                local: format!("unix:{}", path.display()),
                fd: Arc::new(listener.into()),
                unix_path: Some(path.clone()),
            })
        }
    }
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
        let a = set.get_or_bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let b = set.get_or_bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let taken: ListenAddr = a.local.parse().unwrap();
        let other = Listeners::default();
        let err = other.get_or_bind(&taken).unwrap_err();
        assert!(err.to_string().contains("EADDRINUSE"), "{err}");
        // A request for any address on that port reuses the held socket.
        let port = a.local.rsplit(':').next().unwrap().to_string();
        let c = set.get_or_bind(&port.parse().unwrap()).unwrap();
        assert!(Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn a_unix_socket_path_is_removed_when_closed() {
        let path = std::env::temp_dir().join(format!("drover-listen-test-{}.sock", std::process::id()));
        let set = Listeners::default();
        set.get_or_bind(&ListenAddr::Unix(path.clone())).unwrap();
        assert!(path.exists());
        set.close_all();
        assert!(!path.exists());
    }
}
