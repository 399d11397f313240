//! The master: a group of identical workers, and every operation on them.
//!
//! [`Master`] is a cheap handle. The workers are actors (`worker.rs`); the master keeps a table of
//! *slots* (a worker id and its current process), runs one lifecycle operation at a time (start,
//! restart, rescale, reload, shutdown; a shutdown cancels whatever runs), and a supervisor task
//! that applies the restart and recycling policies as exits and heartbeats arrive.

pub mod cgroup;
pub(crate) mod events;
mod guardian;
pub mod host_reads;
pub mod output;
pub mod pids;
mod readiness;
mod reload;
pub(crate) mod spawn;
mod supervisor;
pub(crate) mod worker;

use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, MasterConfig};
use crate::error::{Error, StartFailure};
use crate::status::{MasterStatus, WorkerStatus};
use crate::WorkerId;
use events::{Event, EventHub, Events, WorkerFailure};
use worker::{spawn_worker, WorkerHandle, WorkerInfo, WorkerSpec};

/// One worker id and the process currently behind it.
struct Slot {
    handle: WorkerHandle,
    restarts: u32,
    generation: u64,
    /// Backoff attempt for the next automatic restart.
    attempt: u32,
    /// An automatic restart of this worker is under way.
    reviving: bool,
}

struct Inner {
    config: Mutex<Arc<MasterConfig>>,
    slots: Mutex<BTreeMap<WorkerId, Slot>>,
    status: watch::Sender<MasterStatus>,
    events: EventHub,
    next_id: AtomicU64,
    generation: AtomicU64,
    /// Serialises lifecycle operations.
    op: tokio::sync::Mutex<()>,
    /// Cancels the running operation; replaced after each shutdown begins.
    cancel: Mutex<CancellationToken>,
    /// The listening sockets this master holds (declared and on demand).
    listeners: Arc<crate::listen::Listeners>,
    /// Recent automatic restarts, against the intensity budget.
    restart_log: Mutex<crate::policy::RestartLog>,
    /// Who reads new workers' channels, if not their actors.
    host: Mutex<Option<Arc<dyn host_reads::ChannelHost>>>,
}

/// A group of identical worker processes under supervision.
///
/// Cloning gives another handle to the same master. When the last handle is dropped without a
/// shutdown, every worker is killed (SIGKILL to its process group) and reaped.
#[derive(Clone)]
pub struct Master {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("name", &self.config().name)
            .field("status", &self.status())
            .finish()
    }
}

/// The longest [`Master::broadcast`] waits for workers to take a message.
pub const BROADCAST_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`Master::broadcast_report`] did, worker by worker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BroadcastReport {
    /// The workers whose channel took the message, by id.
    pub reached: Vec<WorkerId>,
    /// The workers it did not reach, and why (gone, quitting, not reading).
    pub failed: Vec<(WorkerId, worker::SendError)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Master {
    /// Creates a master from a config, validating it first. Nothing is spawned until [`Master::start`].
    /// Must be called within a tokio runtime (workers are tokio tasks).
    pub fn new(config: MasterConfig) -> Result<Master, ConfigError> {
        let config = config.validate()?;
        let (status, _) = watch::channel(MasterStatus::Initialized);
        let master = Master {
            inner: Arc::new(Inner {
                config: Mutex::new(Arc::new(config)),
                slots: Mutex::new(BTreeMap::new()),
                status,
                events: EventHub::default(),
                next_id: AtomicU64::new(1),
                generation: AtomicU64::new(0),
                op: tokio::sync::Mutex::new(()),
                cancel: Mutex::new(CancellationToken::new()),
                restart_log: Mutex::new(Default::default()),
                listeners: Arc::default(),
                host: Mutex::new(None),
            }),
        };
        supervisor::spawn_supervisor(Arc::downgrade(&master.inner), master.inner.events.subscribe_lifecycle());
        Ok(master)
    }

    /// Has `host` read the channels of the workers spawned from now on, on its own loop, instead
    /// of their actors: see [`host_reads`]. For a host whose code runs on its own event loop (the
    /// Node addon); user messages then reach `host` directly instead of as events.
    pub fn set_channel_host(&self, host: Arc<dyn host_reads::ChannelHost>) {
        *lock(&self.inner.host) = Some(host);
    }

    /// The config in force.
    pub fn config(&self) -> Arc<MasterConfig> {
        lock(&self.inner.config).clone()
    }

    /// The master's own status.
    pub fn status(&self) -> MasterStatus {
        *self.inner.status.borrow()
    }

    /// A receiver that sees every change of the master's status.
    pub fn watch_status(&self) -> watch::Receiver<MasterStatus> {
        self.inner.status.subscribe()
    }

    /// Calls `f` with every event from now on, on the task that emits it (a worker's actor), in
    /// order per worker, until the returned [`events::Subscription`] is dropped. For hosts that
    /// hand events to their own event loop (the Node addon's thread-safe function, a C callback):
    /// it saves the hop through a channel. `f` must be quick and must not block.
    pub fn on_event(&self, f: impl Fn(&Event) + Send + Sync + 'static) -> events::Subscription {
        self.inner.events.subscribe_fn(Arc::new(f))
    }

    /// Subscribes to events from now on.
    pub fn events(&self) -> Events {
        self.inner.events.subscribe()
    }

    /// A snapshot of every worker (including ones that exited and were not restarted), by id.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        lock(&self.inner.slots)
            .values()
            .map(|slot| {
                let mut info = slot.handle.info();
                info.restarts = slot.restarts;
                info
            })
            .collect()
    }

    /// A snapshot of one worker.
    pub fn worker(&self, id: WorkerId) -> Option<WorkerInfo> {
        lock(&self.inner.slots).get(&id).map(|s| s.handle.info())
    }

    /// Sets `to` only if the status is still `from` (a lifecycle operation may have moved it);
    /// true if it did.
    fn set_status_if(&self, from: MasterStatus, to: MasterStatus) -> bool {
        let changed = self.inner.status.send_if_modified(|s| {
            let was = *s == from;
            if was {
                *s = to;
            }
            was
        });
        if changed {
            tracing::debug!(%from, %to, name = %self.config().name, "master status");
            self.inner.events.emit(Event::MasterStatus { from, to });
        }
        changed
    }

    fn set_status(&self, to: MasterStatus) {
        let from = self.inner.status.send_replace(to);
        if from != to {
            tracing::debug!(%from, %to, name = %self.config().name, "master status");
            self.inner.events.emit(Event::MasterStatus { from, to });
        }
    }

    fn require(&self, operation: &'static str, allowed: &[MasterStatus]) -> Result<(), Error> {
        let status = self.status();
        if allowed.contains(&status) {
            Ok(())
        } else {
            Err(Error::State { operation, status })
        }
    }

    /// Runs `work` unless a shutdown cancels it first.
    async fn cancellable<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let token = lock(&self.inner.cancel).clone();
        tokio::select! {
            result = work => result,
            _ = token.cancelled() => Err(Error::Cancelled { operation }),
        }
    }

    /// The declared sockets of `config`, bound now if they are not yet, in declaration order.
    fn declared_sockets(&self, config: &MasterConfig) -> Result<Vec<(String, Arc<std::os::fd::OwnedFd>)>, Error> {
        let mut sockets = Vec::with_capacity(config.listen.len());
        for (i, spec) in config.listen.iter().enumerate() {
            let listener = self
                .inner
                .listeners
                .get_or_bind(&spec.addr, crate::listen::Holder::Declared)
                .map_err(Error::Listen)?;
            let name = spec.name.clone().unwrap_or_else(|| format!("listen{i}"));
            sockets.push((name, listener.fd.clone()));
        }
        Ok(sockets)
    }

    /// The listening sockets this master holds: (address asked for, address bound), e.g.
    /// `("127.0.0.1:0", "127.0.0.1:41234")`.
    pub fn listeners(&self) -> Vec<(String, String)> {
        self.inner.listeners.list()
    }

    /// Spawns a process for worker `id` and puts it in the table.
    async fn spawn_into_slot(
        &self,
        config: &Arc<MasterConfig>,
        id: WorkerId,
        restarts: u32,
        generation: u64,
    ) -> Result<WorkerHandle, Error> {
        let inherited = self.declared_sockets(config)?;
        let spec = WorkerSpec {
            id,
            restarts,
            generation,
            config: config.clone(),
            inherited,
            listeners: self.inner.listeners.clone(),
            host: lock(&self.inner.host).clone(),
        };
        match spawn_worker(spec, self.inner.events.clone()).await {
            Ok(handle) => {
                let mut slots = lock(&self.inner.slots);
                match slots.get_mut(&id) {
                    Some(slot) => {
                        slot.handle = handle.clone();
                        slot.restarts = restarts;
                    }
                    None => {
                        let slot = Slot {
                            handle: handle.clone(),
                            restarts,
                            generation,
                            attempt: 0,
                            reviving: false,
                        };
                        slots.insert(id, slot);
                    }
                }
                Ok(handle)
            }
            Err(failure) => {
                self.inner.events.emit(Event::Failed {
                    id,
                    pid: None,
                    failure: failure.clone(),
                });
                Err(Error::Start {
                    id,
                    pid: None,
                    failure: StartFailure::Failed(failure),
                })
            }
        }
    }

    /// Spawns a worker and waits until it is STARTED; an error names the worker and why.
    async fn start_one(
        &self,
        config: &Arc<MasterConfig>,
        id: WorkerId,
        restarts: u32,
        generation: u64,
    ) -> Result<WorkerHandle, Error> {
        let handle = self.spawn_into_slot(config, id, restarts, generation).await?;
        let info = handle.wait_settled().await;
        if info.status == WorkerStatus::Started && info.is_alive() {
            return Ok(handle);
        }
        let failure = match (info.failure, info.exit) {
            (Some(failure), _) => StartFailure::Failed(failure),
            (None, Some(exit)) => StartFailure::Exited(exit.reason),
            (None, None) => StartFailure::Failed(WorkerFailure::Reported),
        };
        Err(Error::Start {
            id,
            pid: Some(info.pid),
            failure,
        })
    }

    /// Starts `ids` concurrently; the first failure wins (the others keep their slots).
    async fn start_many(
        &self,
        config: &Arc<MasterConfig>,
        ids: &[WorkerId],
        generation: u64,
    ) -> Result<Vec<WorkerHandle>, Error> {
        let starts = ids.iter().map(|&id| self.start_one(config, id, 0, generation));
        futures_util::future::try_join_all(starts).await
    }

    fn new_ids(&self, n: usize) -> Vec<WorkerId> {
        (0..n)
            .map(|_| self.inner.next_id.fetch_add(1, Ordering::Relaxed))
            .collect()
    }

    /// Ends the given workers gracefully, concurrently, and removes them from the table once reaped.
    async fn retire(&self, ids: &[WorkerId], hard: bool) {
        let handles: Vec<WorkerHandle> = {
            let slots = lock(&self.inner.slots);
            ids.iter()
                .filter_map(|id| slots.get(id).map(|s| s.handle.clone()))
                .collect()
        };
        for h in &handles {
            if hard {
                h.kill()
            } else {
                h.retire()
            }
        }
        futures_util::future::join_all(handles.iter().map(|h| h.wait_exit())).await;
        let mut slots = lock(&self.inner.slots);
        for id in ids {
            slots.remove(id);
        }
    }

    fn all_ids(&self) -> Vec<WorkerId> {
        lock(&self.inner.slots).keys().copied().collect()
    }

    /// Spawns `count` workers concurrently and resolves when every one reported STARTED.
    ///
    /// If one exits, fails, or misses the start timeout, every worker this call spawned is ended
    /// and reaped, and the error names that worker and why. The master is then `Stopped` and
    /// `start()` may be tried again.
    pub async fn start(&self) -> Result<(), Error> {
        let _op = self.inner.op.lock().await;
        self.require("start", &[MasterStatus::Initialized, MasterStatus::Stopped])?;
        let previous = self.status();
        self.set_status(MasterStatus::Starting);
        let config = self.config();
        // Every declared socket is bound before the first worker exists: a port in use is a start
        // error, not a crash loop.
        if let Err(err) = self.declared_sockets(&config) {
            self.set_status(previous);
            return Err(err);
        }
        let ids = self.new_ids(config.count);
        let generation = self.inner.generation.load(Ordering::Relaxed);
        match self
            .cancellable("start", self.start_many(&config, &ids, generation))
            .await
        {
            Ok(_) => {
                self.set_status(MasterStatus::Started);
                Ok(())
            }
            // A shutdown took over: it ends the workers.
            Err(err @ Error::Cancelled { .. }) => Err(err),
            Err(err) => {
                tracing::debug!(error = %err, "start failed; ending the workers it spawned");
                self.retire(&self.all_ids(), false).await;
                self.set_status(MasterStatus::Stopped);
                Err(err)
            }
        }
    }

    /// Replaces worker `id`'s process: the running one is ended gracefully (if it still runs), a
    /// new one is spawned under the same id and awaited until STARTED.
    pub async fn restart_worker(&self, id: WorkerId) -> Result<(), Error> {
        self.require("restart_worker", &[MasterStatus::Started])?;
        let _op = self.inner.op.lock().await;
        self.require("restart_worker", &[MasterStatus::Started])?;
        let (handle, restarts, generation) = {
            let slots = lock(&self.inner.slots);
            let slot = slots.get(&id).ok_or(Error::UnknownWorker { id })?;
            (slot.handle.clone(), slot.restarts, slot.generation)
        };
        let config = self.config();
        self.cancellable("restart_worker", async {
            handle.retire();
            handle.wait_exit().await;
            self.start_one(&config, id, restarts + 1, generation).await.map(|_| ())
        })
        .await
    }

    /// Changes the number of workers. Up: newcomers are spawned and awaited until STARTED (if one
    /// fails, the newcomers are ended and the error says why). Down: the newest workers are
    /// stopped, then quit, and removed; dead workers go first. A count of 0 or above
    /// [`MAX_WORKERS`](crate::config::MAX_WORKERS) is a [`ConfigError`], the group untouched.
    pub async fn rescale(&self, count: usize) -> Result<(), Error> {
        // Before anything sized by it is allocated: a huge count is refused, never attempted.
        crate::config::check_count("count", count)?;
        self.require("rescale", &[MasterStatus::Started])?;
        let _op = self.inner.op.lock().await;
        self.require("rescale", &[MasterStatus::Started])?;
        let config = self.config();
        let current: Vec<WorkerInfo> = self.workers();
        if count > current.len() {
            let ids = self.new_ids(count - current.len());
            let generation = self.inner.generation.load(Ordering::Relaxed);
            let result = self
                .cancellable("rescale", self.start_many(&config, &ids, generation))
                .await;
            if let Err(err) = result {
                if !matches!(err, Error::Cancelled { .. }) {
                    self.retire(&ids, false).await;
                }
                return Err(err);
            }
        } else if count < current.len() {
            let mut victims = current;
            // Dead and failed workers first, then the newest.
            victims.sort_by_key(|w| {
                (
                    w.is_alive() && w.status != WorkerStatus::Failed,
                    std::cmp::Reverse(w.id),
                )
            });
            let ids: Vec<WorkerId> = victims.iter().take(victims.len() - count).map(|w| w.id).collect();
            self.cancellable("rescale", async {
                self.retire(&ids, false).await;
                Ok(())
            })
            .await?;
        }
        self.update_config(|c| c.count = count);
        Ok(())
    }

    fn update_config(&self, change: impl FnOnce(&mut MasterConfig)) {
        let mut config = lock(&self.inner.config);
        let mut next = (**config).clone();
        change(&mut next);
        *config = Arc::new(next);
    }

    fn handle(&self, id: WorkerId) -> Result<WorkerHandle, Error> {
        lock(&self.inner.slots)
            .get(&id)
            .map(|s| s.handle.clone())
            .ok_or(Error::UnknownWorker { id })
    }

    /// Sends a user message to worker `id`; resolves once written to its channel. `data` is a
    /// `Value`, any `Serialize` type, or a [`serde_json::value::RawValue`] (JSON text, sent as it is).
    pub async fn send<T: Serialize + ?Sized>(&self, id: WorkerId, data: &T) -> Result<(), Error> {
        let handle = self.handle(id)?;
        handle.send(data).await.map_err(Error::Send)
    }

    /// Sends a user message to every running worker; returns how many it was written to. A
    /// worker that is gone or not reading is skipped (see [`Master::broadcast_report`], which says
    /// which and why); this returns within [`BROADCAST_TIMEOUT`].
    pub async fn broadcast<T: Serialize + ?Sized>(&self, data: &T) -> Result<usize, Error> {
        let report = self.broadcast_report(data).await?;
        for (id, err) in &report.failed {
            tracing::debug!(id, error = %err, "broadcast did not reach a worker");
        }
        Ok(report.reached.len())
    }

    /// Sends a user message to every running worker, side by side, and says which it reached.
    ///
    /// Returns within [`BROADCAST_TIMEOUT`] whatever the workers do: one that does not read its
    /// channel never holds up the others or the caller. Its message is refused at once once its
    /// unread backlog is at the bound ([`worker::SendError::Backlogged`]), or reported as not yet
    /// written when the time is up ([`worker::SendError::Timeout`]). A message that cannot be
    /// encoded (too large, too deep) is an error before anything is sent.
    pub async fn broadcast_report<T: Serialize + ?Sized>(&self, data: &T) -> Result<BroadcastReport, Error> {
        let handles: Vec<WorkerHandle> = lock(&self.inner.slots)
            .values()
            .map(|s| s.handle.clone())
            .filter(|h| h.info().is_alive())
            .collect();
        // Encoded once per framing, not once per worker.
        let mut encoded: [Option<Vec<u8>>; 2] = [None, None];
        for h in &handles {
            let slot = &mut encoded[usize::from(h.raw_json())];
            if slot.is_none() {
                *slot = Some(h.encode(data).map_err(Error::Send)?);
            }
        }
        let deadline = tokio::time::Instant::now() + BROADCAST_TIMEOUT;
        let sends = handles.iter().map(|h| {
            let bytes = encoded[usize::from(h.raw_json())].clone().unwrap_or_default();
            async move {
                let sent = tokio::time::timeout_at(deadline, h.send_bytes(bytes)).await;
                let sent = sent.unwrap_or(Err(worker::SendError::Timeout {
                    id: h.id(),
                    after: BROADCAST_TIMEOUT,
                }));
                (h.id(), sent)
            }
        });
        let mut report = BroadcastReport::default();
        for (id, sent) in futures_util::future::join_all(sends).await {
            match sent {
                Ok(()) => report.reached.push(id),
                Err(err) => report.failed.push((id, err)),
            }
        }
        Ok(report)
    }

    /// Ends every worker: `stop` → STOPPED → `quit` → exit, each step bounded by its timeout, then
    /// SIGTERM and SIGKILL to the process group of any worker that does not comply. Cancels a
    /// running start, rescale, restart or reload. Returns when every worker is reaped. Calling it
    /// again after it finished does nothing.
    pub async fn graceful_shutdown(&self) -> Result<(), Error> {
        self.shutdown(false).await
    }

    /// SIGKILL to every worker's process group. Returns when every worker is reaped.
    pub async fn hard_shutdown(&self) -> Result<(), Error> {
        self.shutdown(true).await
    }

    async fn shutdown(&self, hard: bool) -> Result<(), Error> {
        let previous = std::mem::replace(&mut *lock(&self.inner.cancel), CancellationToken::new());
        previous.cancel();
        if hard {
            // Kill first, then wait for the running operation: it may be waiting on these workers.
            for id in self.all_ids() {
                if let Ok(h) = self.handle(id) {
                    h.kill();
                }
            }
        }
        let _op = self.inner.op.lock().await;
        if self.status() == MasterStatus::ShutDown {
            return Ok(());
        }
        self.set_status(MasterStatus::Stopping);
        self.retire(&self.all_ids(), hard).await;
        self.inner.listeners.close_all();
        self.set_status(MasterStatus::ShutDown);
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No shutdown was run: no worker outlives its master.
        for slot in lock(&self.slots).values() {
            slot.handle.kill();
        }
    }
}

/// Resident memory of this process, bytes (for heartbeats).
pub(crate) fn rss_of_self() -> Option<u64> {
    spawn::rss_bytes(std::process::id())
}
