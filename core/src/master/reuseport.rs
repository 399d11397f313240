//! Per-slot `SO_REUSEPORT` sockets (`balance = "reuseport"`; PROTOCOL.md §5.3).
//!
//! One listening socket per worker slot (instance index), all bound to the same address with
//! `SO_REUSEPORT`: the kernel spreads new connections over the sockets by a hash of each
//! connection's addresses, so every worker accepts on a queue of its own, nobody is woken for
//! another's connection, and the master stays out of the data path. A slot's socket lives in the
//! master, not in the worker: a replacement of instance 2 (restart, reload, recycle) gets the very
//! socket instance 2 had, so the connections the kernel queued on it meanwhile are served, not
//! reset, as they would be if the socket closed with its worker.
//!
//! **A slot without its worker.** Between a worker's exit and its replacement's `listen`, the
//! kernel still sends that slot its share of new connections. The master then accepts them itself
//! and hands them to the other workers over their channels (`connection` frames, as in
//! round-robin), until a worker holds the slot again. Workers that
//! never asked for the socket with `listen` (it was passed at fd 3.. to a program that does not
//! speak the MessageBus) cannot be handed connections: the slot's connections then wait in its
//! backlog for the replacement.
//!
//! A worker told to stop accepts no more: from its `stop` on, the master serves its slot (until a
//! replacement holds it), not only from its exit.
//!
//! **Scaling down.** A slot at or above the worker count is retired once its last worker has
//! exited (so the master's is the last copy of the socket): the master hands what is queued on it
//! to the other workers (waiting at most
//! 10 seconds, `DRAIN_DEADLINE`, for one that can take them) and closes it. A connection
//! that completes its handshake in the microseconds between that last accept and the close is
//! reset, unless the host sets `net.ipv4.tcp_migrate_req = 1` (Linux 5.14 and later), in which
//! case the kernel moves it to another slot.
//!
//! **Who else may bind.** Linux admits a socket into an address's reuseport group only from the
//! effective uid that bound the first one: another program of the master's user could take a
//! share of the connections. Run the master as a user of its own.
//!
//! **Bounds.** At most [`MAX_SLOTS`] sockets per address: instance `i` takes slot
//! `i % MAX_SLOTS`, so past that many workers, slots are shared by several workers (who then
//! split that slot's connections as in `shared`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::balance::{Balancer, Rescue, Subscriber};
use super::lock;

/// The most sockets one `reuseport` address has; instance `i` takes slot `i % MAX_SLOTS`.
pub const MAX_SLOTS: u32 = 256;

/// The slots of one `reuseport` address.
pub(crate) struct ReusePortSlots {
    /// The bound address (the real port, for port 0), which every further slot binds too.
    local: SocketAddr,
    /// Hands a slot's connections to the other workers while it has none of its own.
    balancer: Balancer,
    state: Mutex<State>,
}

impl std::fmt::Debug for ReusePortSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("ReusePortSlots")
            .field("local", &self.local)
            .field("slots", &state.slots.keys().collect::<Vec<_>>())
            .field("count", &state.count)
            .finish()
    }
}

struct State {
    slots: BTreeMap<u32, Slot>,
    /// The group's worker count: slots below it are kept for a replacement, slots at or above it
    /// are retired once no worker holds them.
    count: u32,
    /// The accept loops of retired slots, handing over what was queued (each ends within
    /// `DRAIN_DEADLINE`); a shutdown stops them with the others.
    draining: Vec<JoinHandle<()>>,
}

struct Slot {
    fd: Arc<OwnedFd>,
    /// Worker processes that took this slot's socket and accept on it.
    holders: Vec<u32>,
    /// Worker processes told to stop that may still have the socket open: the slot closes only
    /// once they have exited, or what they leave queued on it would be reset.
    stopping: Vec<u32>,
    /// The master's accept loop while no worker holds it.
    rescue: Option<(watch::Sender<Rescue>, JoinHandle<()>)>,
}

impl Slot {
    fn new(fd: Arc<OwnedFd>) -> Slot {
        Slot {
            fd,
            holders: Vec::new(),
            stopping: Vec::new(),
            rescue: None,
        }
    }

    /// Sets the rescue's mode, starting one if none runs (`Stop` never starts one).
    fn rescue(&mut self, balancer: &Balancer, mode: Rescue, local: SocketAddr) {
        if let Some((tx, task)) = &self.rescue {
            if !task.is_finished() {
                let _ = tx.send(mode);
                if mode == Rescue::Stop {
                    self.rescue = None;
                }
                return;
            }
        }
        self.rescue = None;
        if mode == Rescue::Stop {
            return;
        }
        let (tx, rx) = watch::channel(mode);
        match balancer.rescue(self.fd.clone(), rx) {
            Ok(task) => self.rescue = Some((tx, task)),
            Err(error) => {
                tracing::warn!(%local, %error, "cannot accept on a slot without its worker; its connections wait for the next one")
            }
        }
    }
}

impl ReusePortSlots {
    /// Slots for `local`, whose slot 0 is `first` (bound with `SO_REUSEPORT`).
    pub(crate) fn new(first: Arc<OwnedFd>, local: SocketAddr, local_name: &str) -> ReusePortSlots {
        ReusePortSlots {
            local,
            balancer: Balancer::members_only(local_name, crate::listen::Balance::ReusePort),
            state: Mutex::new(State {
                slots: BTreeMap::from([(0, Slot::new(first))]),
                count: 1,
                draining: Vec::new(),
            }),
        }
    }

    /// The slot a worker of `instance` takes.
    pub fn slot_of(instance: u32) -> u32 {
        instance % MAX_SLOTS
    }

    /// The socket of `instance`'s slot, bound now if it is new; `holder` (a worker process) holds
    /// it from now on, so the master stops accepting on it.
    pub(crate) fn socket_for(&self, instance: u32, holder: Option<u32>) -> std::io::Result<Arc<OwnedFd>> {
        let index = Self::slot_of(instance);
        let mut state = lock(&self.state);
        let slot = match state.slots.entry(index) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(Slot::new(Arc::new(bind_reuseport(self.local)?))),
        };
        if let Some(pid) = holder {
            if !slot.holders.contains(&pid) {
                slot.holders.push(pid);
            }
            slot.rescue(&self.balancer, Rescue::Stop, self.local);
        }
        Ok(slot.fd.clone())
    }

    /// A worker that asked for the socket with `listen`: it may be handed the connections of a
    /// slot without its worker.
    pub(crate) fn join(&self, sub: Subscriber) {
        self.balancer.join(sub);
    }

    /// Worker process `pid` was told to stop: it accepts no more, so the master takes its slot's
    /// connections (the slot stays open while the worker may still hold it).
    pub(crate) fn stopping(&self, pid: u32) {
        self.balancer.leave(pid);
        let mut state = lock(&self.state);
        for slot in state.slots.values_mut() {
            if let Some(i) = slot.holders.iter().position(|p| *p == pid) {
                slot.holders.swap_remove(i);
                slot.stopping.push(pid);
                if slot.holders.is_empty() {
                    slot.rescue(&self.balancer, Rescue::Serve, self.local);
                }
            }
        }
    }

    /// Worker process `pid` has exited: a slot it was the last to have open is served by the
    /// master until its next worker comes, or retired if the group no longer fills it.
    pub(crate) fn release(&self, pid: u32) {
        self.balancer.leave(pid);
        let mut state = lock(&self.state);
        let count = state.count;
        let mut retired = Vec::new();
        for (index, slot) in state.slots.iter_mut() {
            let before = slot.holders.len() + slot.stopping.len();
            slot.holders.retain(|p| *p != pid);
            slot.stopping.retain(|p| *p != pid);
            if before == slot.holders.len() + slot.stopping.len() || !slot.holders.is_empty() {
                continue;
            }
            if *index >= count && slot.stopping.is_empty() {
                retired.push(*index);
            } else {
                slot.rescue(&self.balancer, Rescue::Serve, self.local);
            }
        }
        for index in retired {
            self.retire(&mut state, index);
        }
    }

    /// The group now has `count` workers: slots at or above it retire once no worker holds them.
    pub(crate) fn set_count(&self, count: u32) {
        let mut state = lock(&self.state);
        state.count = count.clamp(1, MAX_SLOTS);
        let count = state.count;
        let idle: Vec<u32> = state
            .slots
            .iter()
            .filter(|(index, slot)| **index >= count && slot.holders.is_empty() && slot.stopping.is_empty())
            .map(|(index, _)| *index)
            .collect();
        for index in idle {
            self.retire(&mut state, index);
        }
    }

    /// Drains slot `index` into the other workers and closes it (when its rescue ends).
    fn retire(&self, state: &mut State, index: u32) {
        if let Some(mut slot) = state.slots.remove(&index) {
            slot.rescue(&self.balancer, Rescue::Drain, self.local);
            state.draining.retain(|task| !task.is_finished());
            state.draining.extend(slot.rescue.take().map(|(_, task)| task));
            tracing::debug!(local = %self.local, slot = index, "reuseport slot retired");
        }
    }

    /// Stops the master's accept loops on the slots, retired ones included: once the returned
    /// tasks have ended (aborted here), no copy of a slot's socket is left in them.
    pub(crate) fn stop_rescues(&self) -> Vec<JoinHandle<()>> {
        let mut state = lock(&self.state);
        let state = &mut *state;
        let tasks: Vec<JoinHandle<()>> = state
            .slots
            .values_mut()
            .filter_map(|slot| slot.rescue.take().map(|(_, task)| task))
            .chain(state.draining.drain(..))
            .collect();
        for task in &tasks {
            task.abort();
        }
        tasks
    }
}

impl Drop for ReusePortSlots {
    fn drop(&mut self) {
        let state = lock(&self.state);
        let rescues = state
            .slots
            .values()
            .filter_map(|slot| slot.rescue.as_ref().map(|(_, task)| task));
        for task in rescues.chain(&state.draining) {
            task.abort();
        }
    }
}

/// A TCP listening socket on `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`, as std sets it), so
/// that every slot of one address can be bound; blocking and close-on-exec, backlog `SOMAXCONN`.
pub(crate) fn bind_reuseport(addr: SocketAddr) -> std::io::Result<OwnedFd> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
    if addr.is_ipv6() {
        // Dual-stack like std's bind of `[::]`: a bare port serves IPv4 clients too.
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(libc::SOMAXCONN)?;
    Ok(socket.into())
}
