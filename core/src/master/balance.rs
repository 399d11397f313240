//! Connections the master accepts itself and hands to one worker each (`balance = "round-robin"`
//! or `"sticky"`; PROTOCOL.md §5.3).
//!
//! A shared accept queue lets the kernel pick the worker, and Linux wakes the most recent waiter:
//! under light or bursty load one worker takes far more than its share. A `Balancer` instead
//! accepts on the master's socket and writes each connection's fd to the chosen worker's channel
//! as a `connection` frame (`SCM_RIGHTS`), as Node's `cluster` does with `SCHED_RR`.
//!
//! **Who may get one.** Only a worker that asked for the socket (`listen`) and whose status is
//! STARTED: a starting worker is not ready, a stopping one is draining.
//!
//! **Bounds.** At most [`MAX_HANDOFFS_PER_WORKER`] connections handed to one worker and not yet
//! written to its channel. A worker at the bound is skipped (round-robin: the next worker; sticky:
//! the client's next choice in its rendezvous order); when every worker is at the bound, or none is
//! STARTED, the master stops accepting, and connections wait in the socket's backlog (the kernel's
//! bound, `listen(2)`'s `somaxconn`) instead of being reset.
//!
//! **Sticky.** [`rendezvous_order`]: each client address scores every live worker's instance index
//! and goes to the highest score. A worker that goes moves only its own clients (each to its
//! second choice); when a worker of that index is back, they return to it. Instance indexes, not
//! ids or pids, so a restart or a reload keeps every client where it was.
//!
//! **Rescue** (`reuseport`, see [`crate::master::reuseport`]): there the workers accept on their
//! own slots and a `Balancer` has no accept loop of its own; it accepts only on a slot whose
//! worker is away, handing those connections to the other workers in turn (`Rescue`).

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::lock;
use super::worker::WorkerInfo;
use crate::listen::Balance;
use crate::protocol::writer::{FrameKind, FrameWriter};
use crate::protocol::{encode_frame, MasterFrame};
use crate::status::WorkerStatus;

/// The most connections handed to one worker and not yet written to its channel.
pub const MAX_HANDOFFS_PER_WORKER: usize = 64;

/// How long the accept loop waits after the process ran out of fds (`EMFILE`, `ENFILE`) before it
/// accepts again: the connection stays in the backlog meanwhile, and retrying at once would spin.
const OUT_OF_FDS_PAUSE: Duration = Duration::from_millis(100);

/// A worker that asked for a balanced socket.
pub(crate) struct Subscriber {
    /// The worker's process.
    pub pid: u32,
    /// Its instance index (sticky hashing's key).
    pub instance: u32,
    /// Its status, to hand connections to STARTED workers only.
    pub info: watch::Receiver<WorkerInfo>,
    /// Its channel.
    pub writer: FrameWriter,
    /// Open until the actor writes `stop` or `quit`, under this lock: a connection is queued
    /// on the channel only while it is open, so none follows the `stop` (the worker has closed
    /// its server by then and could only drop it).
    pub gate: HandoffGate,
}

/// Whether a worker still takes handed connections; see [`Subscriber::gate`].
pub(crate) type HandoffGate = Arc<Mutex<bool>>;

struct Member {
    sub: Subscriber,
    /// Connections handed to it and not yet written to its channel.
    in_flight: Arc<AtomicUsize>,
    /// Wakes the accept loop when the worker's status changes.
    watcher: JoinHandle<()>,
}

struct Shared {
    balance: Balance,
    /// The socket's bound address, as `connection` frames name it.
    local: String,
    members: Mutex<Vec<Member>>,
    /// A worker became STARTED, left, or finished a hand-off: a held connection may go now.
    changed: Notify,
    /// The round-robin cursor.
    next: AtomicUsize,
}

/// The accept loop of one balanced socket; it stops when this is dropped.
pub(crate) struct Balancer {
    shared: Arc<Shared>,
    /// The accept loop on the socket (none for `reuseport`: its workers accept, and the master
    /// only rescues a slot without a worker, [`Balancer::rescue`]).
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("balance", &self.shared.balance)
            .field("local", &self.shared.local)
            .finish()
    }
}

impl Balancer {
    /// Starts accepting on `fd` (a listening socket the master holds; it is made non-blocking)
    /// on the current tokio runtime.
    pub(crate) fn start(fd: &OwnedFd, local: &str, balance: Balance) -> std::io::Result<Balancer> {
        let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let accept = Acceptor::new(fd)?;
        let mut balancer = Balancer::members_only(local, balance);
        balancer.task = Some(runtime.spawn(accept_loop(accept, balancer.shared.clone())));
        Ok(balancer)
    }

    /// A balancer that accepts nothing until asked to [`Balancer::rescue`] a socket: the
    /// workers of a `reuseport` socket accept on their own slots.
    pub(crate) fn members_only(local: &str, balance: Balance) -> Balancer {
        let shared = Arc::new(Shared {
            balance,
            local: local.to_string(),
            members: Mutex::new(Vec::new()),
            changed: Notify::new(),
            next: AtomicUsize::new(0),
        });
        Balancer { shared, task: None }
    }

    /// Accepts on `fd` (a `reuseport` slot no worker holds; made non-blocking) and hands each
    /// connection to the members in turn, as `mode` says: [`Rescue::Serve`] until it turns
    /// [`Rescue::Stop`] (the slot's worker is back); [`Rescue::Drain`]: what is queued on the
    /// slot now, then the task ends (and with it the master's copy of the socket, once the caller
    /// has dropped its own).
    pub(crate) fn rescue(&self, fd: Arc<OwnedFd>, mode: watch::Receiver<Rescue>) -> std::io::Result<JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let accept = Acceptor::new(&fd)?;
        Ok(runtime.spawn(rescue_loop(accept, fd, self.shared.clone(), mode)))
    }

    /// Worker `sub` takes connections from now on (once STARTED), until [`Balancer::leave`].
    pub(crate) fn join(&self, sub: Subscriber) {
        let mut members = lock(&self.shared.members);
        // A worker whose actor has ended (it exited before it joined, so no `leave` will come).
        members.retain(|m| {
            let gone = m.sub.info.has_changed().is_err();
            if gone {
                m.watcher.abort();
            }
            !gone
        });
        if members.iter().any(|m| m.sub.pid == sub.pid) {
            return;
        }
        let mut info = sub.info.clone();
        let shared = Arc::downgrade(&self.shared);
        let watcher = tokio::spawn(async move {
            while info.changed().await.is_ok() {
                match shared.upgrade() {
                    Some(shared) => shared.changed.notify_waiters(),
                    None => return,
                }
            }
        });
        members.push(Member {
            sub,
            in_flight: Arc::default(),
            watcher,
        });
        drop(members);
        self.shared.changed.notify_waiters();
    }

    /// Worker process `pid` has exited: it takes nothing more.
    pub(crate) fn leave(&self, pid: u32) {
        let mut members = lock(&self.shared.members);
        if let Some(i) = members.iter().position(|m| m.sub.pid == pid) {
            members.swap_remove(i).watcher.abort();
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        for member in lock(&self.shared.members).drain(..) {
            member.watcher.abort();
        }
    }
}

/// A master-side accept on a TCP or Unix listening socket.
enum Acceptor {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Acceptor {
    fn new(fd: &OwnedFd) -> std::io::Result<Acceptor> {
        use nix::sys::socket::{getsockname, SockaddrStorage};
        let own = fd.try_clone()?;
        let is_unix = getsockname::<SockaddrStorage>(fd.as_raw_fd())
            .map(|sa| sa.as_unix_addr().is_some())
            .map_err(std::io::Error::from)?;
        if is_unix {
            let std = std::os::unix::net::UnixListener::from(own);
            std.set_nonblocking(true)?;
            Ok(Acceptor::Unix(tokio::net::UnixListener::from_std(std)?))
        } else {
            let std = std::net::TcpListener::from(own);
            std.set_nonblocking(true)?;
            Ok(Acceptor::Tcp(tokio::net::TcpListener::from_std(std)?))
        }
    }

    /// The next connection: its fd and, for TCP, the client's address.
    async fn accept(&self) -> std::io::Result<(OwnedFd, Option<std::net::SocketAddr>)> {
        match self {
            Acceptor::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                let std = stream.into_std()?;
                // The worker's runtime decides; Node expects a blocking fd it then sets itself.
                std.set_nonblocking(false)?;
                Ok((OwnedFd::from(std), Some(peer)))
            }
            Acceptor::Unix(l) => {
                let (stream, _) = l.accept().await?;
                let std = stream.into_std()?;
                std.set_nonblocking(false)?;
                Ok((OwnedFd::from(std), None))
            }
        }
    }
}

/// Waits for a worker that may take a connection, then accepts one and hands it over; so a
/// connection nobody can take yet waits in the kernel's backlog, not in the master.
async fn accept_loop(accept: Acceptor, shared: Arc<Shared>) {
    loop {
        shared.until(Shared::anyone_can_take).await;
        let (fd, peer) = match accept.accept().await {
            Ok(conn) => conn,
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) =>
            {
                tracing::warn!(local = %shared.local, %error, "cannot accept a connection for now; it waits in the backlog");
                tokio::time::sleep(OUT_OF_FDS_PAUSE).await;
                continue;
            }
            Err(error) => {
                // ECONNABORTED and the like: that client is gone, the socket is fine.
                tracing::debug!(local = %shared.local, %error, "accept failed");
                continue;
            }
        };
        // Between the check and the accept a worker may have stopped: the connection is ours now
        // and waits here (one at most) for the next worker that can take it.
        let fd = Arc::new(fd);
        shared.until(|s| s.hand_off(&fd, peer)).await;
    }
}

/// What the master does with a `reuseport` slot no worker holds (PROTOCOL.md §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rescue {
    /// Accept its connections and hand them to the other workers.
    Serve,
    /// Its worker is back: stop accepting (a connection already accepted is still handed over).
    Stop,
    /// The slot is retired (scaled down): hand over what is queued on it, then close it.
    Drain,
}

/// How long a retired slot's queued connections may wait for a worker that can take them before
/// the slot is closed anyway (and the kernel resets what is left).
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// [`Balancer::rescue`]'s task.
async fn rescue_loop(accept: Acceptor, fd: Arc<OwnedFd>, shared: Arc<Shared>, mut mode: watch::Receiver<Rescue>) {
    loop {
        let now = *mode.borrow_and_update();
        match now {
            Rescue::Stop => return,
            Rescue::Drain => break,
            Rescue::Serve => {}
        }
        let conn = tokio::select! {
            changed = mode.changed() => match changed {
                Ok(()) => continue,
                // The slot was retired (its last word, `Drain`) or dropped with its socket's
                // listener (the master shuts down).
                Err(_) if *mode.borrow() == Rescue::Drain => break,
                Err(_) => return,
            },
            conn = async {
                shared.until(Shared::anyone_can_take).await;
                accept.accept().await
            } => conn,
        };
        match conn {
            Ok((conn, peer)) => {
                let conn = Arc::new(conn);
                shared.until(|s| s.hand_off(&conn, peer)).await;
            }
            Err(error) => {
                tracing::debug!(local = %shared.local, %error, "accept on a slot without its worker failed");
                tokio::time::sleep(OUT_OF_FDS_PAUSE).await;
            }
        }
    }
    // Drain: what the kernel queued on the slot until now. The slot is out of the socket's
    // reuseport group only once closed; what arrives between the last accept and the close
    // (microseconds) is reset, unless `net.ipv4.tcp_migrate_req` is 1 (then the kernel moves it).
    let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
    let mut drained = 0usize;
    let listener = match fd.try_clone() {
        Ok(own) => std::net::TcpListener::from(own),
        Err(error) => {
            tracing::warn!(local = %shared.local, %error, "cannot drain a retired slot; its queued connections are reset");
            return;
        }
    };
    loop {
        let (conn, peer) = match accept_now(&listener) {
            Ok(Some(conn)) => conn,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(local = %shared.local, %error, "accept on a retired slot failed");
                break;
            }
        };
        let conn = Arc::new(conn);
        let handed = tokio::time::timeout_at(deadline, shared.until(|s| s.hand_off(&conn, peer))).await;
        if handed.is_err() {
            tracing::warn!(local = %shared.local, "no worker took a retired slot's queued connections within {DRAIN_DEADLINE:?}; the rest are reset");
            break;
        }
        drained += 1;
    }
    tracing::debug!(local = %shared.local, drained, "a retired reuseport slot is closed");
}

/// One connection queued on `listener` (a `reuseport` slot, non-blocking since
/// [`Acceptor::new`]), if any: its fd (blocking, close-on-exec) and the client's address.
fn accept_now(listener: &std::net::TcpListener) -> std::io::Result<Option<(OwnedFd, Option<std::net::SocketAddr>)>> {
    use std::io::ErrorKind;
    loop {
        match listener.accept() {
            Ok((conn, peer)) => return Ok(Some((OwnedFd::from(conn), Some(peer)))),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            // A client that gave up while queued, or a signal: the next one.
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionAborted | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
}

impl Shared {
    /// Waits until `done` (checked now and after each change of the members) is true. Several
    /// loops may wait at once (a socket's rescued slots), so a change wakes every waiter; the
    /// wait is registered before the check, so no change between them is missed.
    async fn until(self: &Arc<Self>, mut done: impl FnMut(&Arc<Self>) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(self) {
                return;
            }
            changed.await;
        }
    }

    fn anyone_can_take(self: &Arc<Self>) -> bool {
        lock(&self.members).iter().any(Member::can_take)
    }

    /// Writes `fd` to the chosen worker's channel; false when no worker can take it now.
    fn hand_off(self: &Arc<Self>, fd: &Arc<OwnedFd>, peer: Option<std::net::SocketAddr>) -> bool {
        let members = lock(&self.members);
        let live: Vec<&Member> = members.iter().filter(|m| m.can_take()).collect();
        if live.is_empty() {
            return false;
        }
        let order: Vec<usize> = match self.balance {
            Balance::Sticky => {
                let instances: Vec<u32> = live.iter().map(|m| m.sub.instance).collect();
                let client = peer.map(|p| p.ip());
                rendezvous_order(client.as_ref(), &instances)
            }
            _ => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..live.len()).map(|i| (start + i) % live.len()).collect()
            }
        };
        let frame = MasterFrame::Connection {
            listener: self.local.clone(),
            remote: peer.map(|p| p.to_string()),
        };
        let Ok(bytes) = encode_frame(&frame, usize::MAX) else {
            return false;
        };
        for i in order {
            let member = live[i];
            if member.in_flight.load(Ordering::Acquire) >= MAX_HANDOFFS_PER_WORKER {
                continue;
            }
            let gate = lock(&member.sub.gate);
            if !*gate {
                continue;
            }
            member.in_flight.fetch_add(1, Ordering::AcqRel);
            let written = member.sub.writer.queue(bytes, FrameKind::Plain, Some(fd.clone()));
            drop(gate);
            let (in_flight, shared) = (member.in_flight.clone(), Arc::downgrade(self));
            tokio::spawn(async move {
                if let Err(error) = written.await {
                    // The worker's channel failed (it is exiting): the client's connection is
                    // closed with our copy of the fd; the worker's exit is reported elsewhere.
                    tracing::debug!(?error, "a connection could not be handed to a worker");
                }
                if in_flight.fetch_sub(1, Ordering::AcqRel) == MAX_HANDOFFS_PER_WORKER {
                    if let Some(shared) = shared.upgrade() {
                        shared.changed.notify_waiters();
                    }
                }
            });
            return true;
        }
        false
    }
}

impl Member {
    fn can_take(&self) -> bool {
        self.sub.info.borrow().status == WorkerStatus::Started
            && *lock(&self.sub.gate)
            && self.in_flight.load(Ordering::Acquire) < MAX_HANDOFFS_PER_WORKER
    }
}

/// The order in which a client prefers the workers with these instance indexes: indexes into
/// `instances`, best first. Rendezvous (highest random weight) hashing: the score of a
/// (client, instance) pair does not depend on the other workers, so removing one worker changes
/// only the choice of the clients that had it first, and adding it back restores it.
///
/// A client without an address (a Unix socket) scores by instance alone: all such clients
/// share one worker.
///
/// ```
/// # use drover::master::balance::rendezvous_order;
/// let client: std::net::IpAddr = "10.0.0.7".parse().unwrap();
/// let all = rendezvous_order(Some(&client), &[0, 1, 2, 3]);
/// let first = [0u32, 1, 2, 3][all[0]];
/// // Without the first choice, the client goes to its second choice.
/// let rest: Vec<u32> = [0u32, 1, 2, 3].into_iter().filter(|i| *i != first).collect();
/// let second = rest[rendezvous_order(Some(&client), &rest)[0]];
/// assert_eq!(second, [0u32, 1, 2, 3][all[1]]);
/// ```
pub fn rendezvous_order(client: Option<&IpAddr>, instances: &[u32]) -> Vec<usize> {
    let mut scored: Vec<(u64, usize)> = instances
        .iter()
        .enumerate()
        .map(|(i, instance)| (score(client, *instance), i))
        .collect();
    // Highest score first; equal scores (only for equal instances: two workers of one index
    // during a reload) keep their order.
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// The weight of `(client, instance)`: SipHash with fixed keys (stable within one build, which is
/// all a master needs: it alone picks), finished with a 64-bit mixer so nearby addresses spread.
fn score(client: Option<&IpAddr>, instance: u32) -> u64 {
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new_with_keys(0x6472_6f76_6572_2d31, 0x7374_6963_6b79_2121);
    client.hash(&mut hasher);
    instance.hash(&mut hasher);
    mix(hasher.finish())
}

/// splitmix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn clients() -> Vec<IpAddr> {
        (0..2000u32)
            .map(|i| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]))
            .collect()
    }

    fn assign(instances: &[u32]) -> HashMap<IpAddr, u32> {
        clients()
            .into_iter()
            .map(|c| (c, instances[rendezvous_order(Some(&c), instances)[0]]))
            .collect()
    }

    #[test]
    fn a_departing_worker_moves_only_its_own_clients_and_they_return_with_it() {
        let all = assign(&[0, 1, 2, 3]);
        let without_2 = assign(&[0, 1, 3]);
        for (client, before) in &all {
            let after = without_2[client];
            if *before == 2 {
                assert_ne!(after, 2);
            } else {
                assert_eq!(
                    after, *before,
                    "{client} moved from {before} to {after} though its worker stayed"
                );
            }
        }
        // The order of the live list does not matter, and the clients come back to instance 2.
        assert_eq!(assign(&[3, 2, 1, 0]), all);
        // A fifth worker takes only clients from the others, none move between the first four.
        let with_4 = assign(&[0, 1, 2, 3, 4]);
        for (client, before) in &all {
            assert!(with_4[client] == *before || with_4[client] == 4);
        }
    }

    #[test]
    fn clients_spread_evenly_over_the_workers() {
        let all = assign(&[0, 1, 2, 3]);
        let mut share = [0usize; 4];
        for worker in all.values() {
            share[*worker as usize] += 1;
        }
        let (max, min) = (share.iter().max().unwrap(), share.iter().min().unwrap());
        assert!(*max as f64 / *min as f64 <= 1.2, "{share:?}");
    }

    #[test]
    fn clients_without_an_address_share_one_worker() {
        let first = rendezvous_order(None, &[0, 1, 2, 3])[0];
        assert_eq!(rendezvous_order(None, &[0, 1, 2, 3])[0], first);
    }
}
