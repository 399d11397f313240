//! systemd's readiness protocol (`sd_notify`): a datagram to `$NOTIFY_SOCKET` for each state change.
//! `READY=1` once every group is STARTED (again after a reload), `RELOADING=1` with
//! `MONOTONIC_USEC` while a reload runs (what `Type=notify-reload` requires), `STOPPING=1` when the
//! shutdown begins; `WATCHDOG=1` from [`crate::watchdog`]. Without `NOTIFY_SOCKET`, nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The notifier; cheap to clone.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// Where a failed send is reported (never stderr directly: that may block).
    log: Option<crate::logs::Log>,
    reloads: AtomicUsize,
    stopping: AtomicBool,
}

impl Notifier {
    /// A notifier for `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace), if set.
    pub fn from_env(log: crate::logs::Log) -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let addr = address(path.to_string_lossy().as_ref()).ok()?;
            let socket = UnixDatagram::unbound().ok()?;
            // A service manager that does not read must not block the master: a full queue is a
            // failed send, reported.
            socket.set_nonblocking(true).ok()?;
            Some((socket, addr))
        });
        Notifier {
            inner: Arc::new(Inner {
                target,
                log: Some(log),
                ..Inner::default()
            }),
        }
    }

    fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.inner.target {
            if let Err(error) = socket.send_to_addr(message.as_bytes(), addr) {
                if let Some(log) = &self.inner.log {
                    log.error(&format!("sd_notify {message:?} failed: {error}"));
                }
            }
        }
    }

    /// Every group is STARTED.
    pub fn ready(&self) {
        if !self.inner.stopping.load(Ordering::Relaxed) {
            self.send("READY=1\nSTATUS=all groups started");
        }
    }

    /// A reload begins; pair with [`Notifier::reload_done`].
    pub fn reloading(&self) {
        if self.inner.reloads.fetch_add(1, Ordering::Relaxed) == 0 {
            self.send(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
                monotonic_usec()
            ));
        }
    }

    /// A reload ended, whatever its outcome.
    pub fn reload_done(&self) {
        if self.inner.reloads.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.ready();
        }
    }

    /// drover's main loop is alive (systemd's watchdog).
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// The shutdown begins (sent once).
    pub fn stopping(&self) {
        if !self.inner.stopping.swap(true, Ordering::Relaxed) {
            self.send("STOPPING=1\nSTATUS=shutting down");
        }
    }
}

fn address(path: &str) -> std::io::Result<SocketAddr> {
    match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(path),
    }
}

fn monotonic_usec() -> u128 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| Into::<std::time::Duration>::into(t).as_micros())
        .unwrap_or(0)
}
