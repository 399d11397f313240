//! The master: a group of identical workers, and every operation on them.
//!
//! [`Master`] is a cheap handle. The workers are actors (`worker/`). The master's state is a
//! table of *slots* (a worker id, its current process, and the config it runs), its status and
//! its config, shared with the handles for queries and messages (`workers()`, `send()`...).
//!
//! Everything that changes the group goes through one task per master, its loop
//! (`arbiter.rs`): the lifecycle operations (start, restart, rescale, reload, shutdown;
//! `operations.rs`, `reload.rs`) are commands to it, run one at a time, a shutdown cancelling the
//! one that runs; worker exits come to it on its own channel; it applies the restart and
//! recycling policies (`crate::policy`) with its own backoff timers and recycling tick.

mod arbiter;
pub mod balance;
pub mod cgroup;
pub mod election;
pub(crate) mod events;
mod guardian;
// Internals for the Node addon and the `drover` command, not API a Rust user needs: hidden from the
// docs, and outside semver (they change with the hosts that use them).
#[doc(hidden)]
pub mod host_reads;
mod operations;
pub mod output;
#[doc(hidden)]
pub mod pids;
pub mod pre_start;
mod readiness;
pub mod reconfigure;
mod reload;
pub mod reuseport;
mod rotation;
pub(crate) mod router;
pub(crate) mod spawn;
pub(crate) mod worker;

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{ConfigError, MasterConfig};
use crate::error::Error;
use crate::status::MasterStatus;
use crate::WorkerId;
use arbiter::{Command, Op};
use events::{Event, EventHub, Events};
use worker::{WorkerHandle, WorkerInfo};

pub use rotation::EcvGuard;

/// One worker id and the process currently behind it.
struct Slot {
    handle: WorkerHandle,
    /// The place the worker fills in its group (`WorkerInfo::instance`), kept by its restarts.
    instance: u32,
    restarts: u32,
    generation: u64,
    /// The config the process runs (during a reload, the old and the new generation differ).
    config: Arc<MasterConfig>,
    /// An operation is ending this worker for good: the slot takes no new process (an automatic
    /// restart that finishes meanwhile ends the process it made), and goes once the old one is reaped.
    retiring: bool,
}

/// What the handles and the loop share: the slot table, the status, the config, the event hub.
struct Inner {
    config: Mutex<Arc<MasterConfig>>,
    slots: Mutex<BTreeMap<WorkerId, Slot>>,
    status: watch::Sender<MasterStatus>,
    events: EventHub,
    next_id: AtomicU64,
    generation: AtomicU64,
    /// The listening sockets this master holds (declared and on demand).
    listeners: Arc<crate::listen::Listeners>,
    /// Who reads new workers' channels, if not their actors.
    host: Mutex<Option<Arc<dyn host_reads::ChannelHost>>>,
    /// Requests between the master and its workers, and messages between workers.
    router: Arc<router::Router>,
    /// The user's recycling decision ([`Master::recycle_when`]).
    recycle_predicate: Mutex<Option<RecyclePredicate>>,
    /// Whether the group is in rotation (ECV), and why not ([`Master::mark_down`]).
    rotation: Mutex<crate::ecv::Rotation>,
    /// The user config pushed by [`Master::reconfigure`], which new processes get.
    user_config: Mutex<reconfigure::LatestUserConfig>,
    /// The user's pre-start hook ([`Master::pre_start`]).
    pre_start: Mutex<Option<pre_start::PreStartHook>>,
}

/// A user's recycling decision: given a STARTED worker's snapshot (uptime from `started_at`,
/// resident memory from its heartbeats, the application status and counters it publishes), the
/// reason to replace it, or `None`.
pub type RecyclePredicate = Arc<dyn Fn(&WorkerInfo) -> Option<String> + Send + Sync>;

/// A group of identical worker processes under supervision.
///
/// Cloning gives another handle to the same master. When the last handle is dropped without a
/// shutdown, every worker is killed (SIGKILL to its process group) and reaped.
#[derive(Clone)]
pub struct Master {
    inner: Arc<Inner>,
    /// The master's loop. Only handles hold senders: when the last one is dropped, the loop ends
    /// and kills every worker.
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("name", &self.config().name)
            .field("status", &self.status())
            .finish()
    }
}

/// The statuses [`Master::start`] starts from.
const START_FROM: &[MasterStatus] = &[MasterStatus::Initialized, MasterStatus::Stopped];
/// The statuses [`Master::start_again`] starts from.
const START_AGAIN_FROM: &[MasterStatus] = &[MasterStatus::Initialized, MasterStatus::Stopped, MasterStatus::ShutDown];

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
    /// Must be called within a tokio runtime (the master's loop and the workers are tokio tasks).
    pub fn new(config: MasterConfig) -> Result<Master, ConfigError> {
        let config = config.validate()?;
        let store = router::Router::open_store(&config.store)?;
        let (status, _) = watch::channel(MasterStatus::Initialized);
        let inner = Arc::new_cyclic(|weak| Inner {
            router: Arc::new(router::Router::new(weak.clone(), store)),
            recycle_predicate: Mutex::new(None),
            rotation: Mutex::default(),
            user_config: Mutex::default(),
            pre_start: Mutex::new(None),
            config: Mutex::new(Arc::new(config)),
            slots: Mutex::new(BTreeMap::new()),
            status,
            events: EventHub::default(),
            next_id: AtomicU64::new(1),
            generation: AtomicU64::new(0),
            listeners: Arc::default(),
            host: Mutex::new(None),
        });
        inner.router.start_background();
        let (commands, receiver) = mpsc::unbounded_channel();
        arbiter::spawn(inner.clone(), receiver);
        Ok(Master { inner, commands })
    }

    /// Has the master's loop run `op`, and waits for its outcome.
    async fn submit(&self, op: Op) -> Result<(), Error> {
        let operation = op.name();
        let (done, outcome) = oneshot::channel();
        // The loop ends only once every handle is gone (not while this one lives), or with the
        // runtime, when nothing is supervised any more.
        if self.commands.send(Command { op, done }).is_err() {
            return Err(Error::Cancelled { operation });
        }
        outcome.await.unwrap_or(Err(Error::Cancelled { operation }))
    }

    /// Has `host` read the channels of the workers spawned from now on, on its own loop, instead
    /// of their actors: see [`host_reads`]. For a host whose code runs on its own event loop (the
    /// Node addon); user messages then reach `host` directly instead of as events.
    pub fn set_channel_host(&self, host: Arc<dyn host_reads::ChannelHost>) {
        *lock(&self.inner.host) = Some(host);
    }

    /// The config in force.
    pub fn config(&self) -> Arc<MasterConfig> {
        self.inner.config()
    }

    /// The master's own status.
    pub fn status(&self) -> MasterStatus {
        self.inner.status()
    }

    /// A receiver that sees every change of the master's status.
    pub fn watch_status(&self) -> watch::Receiver<MasterStatus> {
        self.inner.status.subscribe()
    }

    /// Calls `f` with every event from now on, on the task that emits it (a worker's actor, or
    /// the master's loop), in order per worker, until the returned [`events::Subscription`] is
    /// dropped. For hosts that hand events to their own event loop (the Node addon's thread-safe
    /// function, a C callback): it saves the hop through a channel. `f` must be quick and must
    /// not block.
    pub fn on_event(&self, f: impl Fn(&Event) + Send + Sync + 'static) -> events::Subscription {
        self.inner.events.subscribe_fn(Arc::new(f))
    }

    /// Subscribes to events from now on.
    pub fn events(&self) -> Events {
        self.inner.events.subscribe()
    }

    /// A snapshot of every worker (including ones that exited and were not restarted), by id.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.inner.workers()
    }

    /// A snapshot of one worker.
    pub fn worker(&self, id: WorkerId) -> Option<WorkerInfo> {
        lock(&self.inner.slots).get(&id).map(|s| s.handle.info())
    }

    /// The worker that fills instance `instance` (`0..count`): the way to name "the second
    /// worker" that survives restarts and reloads, where ids do not. During a reload, when an old
    /// and a new worker share the index, the newer one; a worker an operation is retiring never.
    pub fn worker_at(&self, instance: u32) -> Option<WorkerInfo> {
        lock(&self.inner.slots)
            .values()
            .filter(|s| s.instance == instance && !s.retiring)
            .map(|s| {
                let mut info = s.handle.info();
                info.restarts = s.restarts;
                info
            })
            .max_by_key(|info| (info.generation, info.id))
    }

    /// The listening sockets this master holds: (address asked for, address bound), e.g.
    /// `("127.0.0.1:0", "127.0.0.1:41234")`.
    pub fn listeners(&self) -> Vec<(String, String)> {
        self.inner.listeners.list()
    }

    /// Spawns `count` workers concurrently and resolves when every one reported STARTED.
    ///
    /// If one exits, fails, or misses the start timeout, every worker this call spawned is ended
    /// and reaped, and the error names that worker and why. The master is then `Stopped` and
    /// `start()` may be tried again. A master that was shut down stays so: see
    /// [`Master::start_again`].
    pub async fn start(&self) -> Result<(), Error> {
        self.start_from(START_FROM).await
    }

    /// [`Master::start`], for a master that was shut down as well: it starts anew, with fresh
    /// workers in places `0..count` and its declared sockets bound again. For a host that stops
    /// and starts one group of several (the `drover` command's `stop GROUP`, `start GROUP`); the
    /// C and Node faces keep a shutdown final.
    pub async fn start_again(&self) -> Result<(), Error> {
        self.start_from(START_AGAIN_FROM).await
    }

    async fn start_from(&self, from: &'static [MasterStatus]) -> Result<(), Error> {
        // At once, as the other operations do: a caller with a deadline (the C face's timeout)
        // learns of a wrong state now, not when the loop gets to the request.
        self.inner.require("start", from)?;
        self.submit(Op::Start { from }).await
    }

    /// Replaces worker `id`'s process: the running one is ended gracefully (if it still runs), a
    /// new one is spawned under the same id and awaited until STARTED.
    pub async fn restart_worker(&self, id: WorkerId) -> Result<(), Error> {
        self.inner.require("restart_worker", &[MasterStatus::Started])?;
        self.submit(Op::RestartWorker { id }).await
    }

    /// Changes the number of workers. Up: newcomers are spawned and awaited until STARTED (if one
    /// fails, the newcomers are ended and the error says why). Down: the newest workers are
    /// stopped, then quit, and removed; dead workers go first. A count of 0 or above
    /// [`MAX_WORKERS`](crate::config::MAX_WORKERS) is a [`ConfigError`], the group untouched.
    pub async fn rescale(&self, count: usize) -> Result<(), Error> {
        // Before anything sized by it is allocated: a huge count is refused, never attempted.
        crate::config::check_count("count", count)?;
        self.inner.require("rescale", &[MasterStatus::Started])?;
        self.submit(Op::Rescale { count }).await
    }

    fn worker_handle(&self, id: WorkerId) -> Result<WorkerHandle, Error> {
        lock(&self.inner.slots)
            .get(&id)
            .map(|s| s.handle.clone())
            .ok_or(Error::UnknownWorker { id })
    }

    /// Sends a user message to worker `id`; resolves once written to its channel. `data` is a
    /// `Value`, any `Serialize` type, or a [`serde_json::value::RawValue`] (JSON text, sent as it is).
    pub async fn send<T: Serialize + ?Sized>(&self, id: WorkerId, data: &T) -> Result<(), Error> {
        let handle = self.worker_handle(id)?;
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

    /// Registers (or replaces) the master's handler `name`: workers call it with a request to
    /// [`Target::Master`](crate::request::Target::Master), the master's user with
    /// [`Master::request`]. `handler` gets the asking worker's id (0: the master's user) and the
    /// arguments, and resolves with the result or a message saying why it failed (the asker gets
    /// `handler_failed` with it). At most [`MAX_HANDLERS`](crate::request::MAX_HANDLERS) names.
    ///
    /// ```no_run
    /// # async fn run(master: drover::Master) -> Result<(), drover::request::RequestError> {
    /// master.handle("sum", |_from, args| async move {
    ///     let numbers: Vec<f64> = serde_json::from_value(args).map_err(|e| e.to_string())?;
    ///     Ok(serde_json::json!(numbers.iter().sum::<f64>()))
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn handle<F, Fut>(&self, name: &str, handler: F) -> Result<(), crate::request::RequestError>
    where
        F: Fn(WorkerId, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<serde_json::Value, String>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.inner.router.set_master_handler(
            name,
            Arc::new(move |from, args| {
                let handler = handler.clone();
                Box::pin(async move { handler(from, args).await })
            }),
        )
    }

    /// Calls handler `name` of `to` (a worker by id or name, `Any` worker that declared it,
    /// `All` of them, or the master's own) with `args`; resolves with its result (for `All`, a
    /// list of `{"worker", "result"}` / `{"worker", "error"}`), or a typed
    /// [`RequestError`](crate::request::RequestError): no such handler or target, timeout (at
    /// most [`MAX_REQUEST_TIMEOUT`](crate::request::MAX_REQUEST_TIMEOUT)), target gone, handler
    /// failed, overloaded.
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        to: crate::request::Target,
        name: &str,
        args: &T,
        timeout: Duration,
    ) -> Result<serde_json::Value, crate::request::RequestError> {
        let args = serde_json::to_value(args).map_err(|e| {
            crate::request::RequestError::new(crate::request::RequestErrorCode::BadRequest, format!("arguments: {e}"))
        })?;
        self.inner
            .router
            .user_request(to, name.to_string(), args, timeout)
            .await
    }

    /// Has the master recycle (replace make-before-break, one at a time, as `maxAge` does) each
    /// STARTED worker for which `predicate` gives a reason. It is asked at every recycling check
    /// ([`crate::Recycle::check_interval`], default 5 s) with the worker's snapshot: uptime,
    /// resident memory and runtime statistics (from heartbeats: [`WorkerInfo::stats`], e.g. a
    /// Node worker's event-loop lag and GC counts), and the application status and counters the
    /// worker publishes (queue length... whatever it reports). Takes effect from the next start
    /// or operation; replaces a predicate set before.
    ///
    /// ```no_run
    /// # fn run(master: &drover::Master) {
    /// master.recycle_when(|w| {
    ///     let lag = w.stats.get("event_loop_lag_max_ms").copied().unwrap_or(0.0);
    ///     (lag > 500.0).then(|| format!("event-loop lag {lag} ms"))
    /// });
    /// # }
    /// ```
    pub fn recycle_when(&self, predicate: impl Fn(&WorkerInfo) -> Option<String> + Send + Sync + 'static) {
        *lock(&self.inner.recycle_predicate) = Some(Arc::new(predicate));
    }

    /// Gathers every worker's status functions (cluster2's status registry): each handler a worker
    /// declared under a name starting with `status.` is called on every live worker that has it,
    /// concurrently, within `timeout`. The answer is by worker id, then by status name (without
    /// the prefix): `{"1": {"memory": {...}, "queue": 12}, "2": {"memory": {"error": {...}}}}`.
    /// A worker that fails or does not answer in time has its error in its place.
    pub async fn gather_statuses(&self, timeout: Duration) -> serde_json::Value {
        let names = self.inner.router.status_functions();
        let calls = names.iter().map(|name| {
            let name = name.clone();
            async move {
                let answer = self
                    .request(crate::request::Target::All, &name, &serde_json::Value::Null, timeout)
                    .await;
                (name, answer)
            }
        });
        let mut by_worker = serde_json::Map::new();
        for (name, answer) in futures_util::future::join_all(calls).await {
            let short = name.trim_start_matches(router::STATUS_PREFIX).to_string();
            let Ok(serde_json::Value::Array(parts)) = answer else {
                continue;
            };
            for part in parts {
                let worker = part["worker"].to_string();
                let value = match part.get("result") {
                    Some(result) => result.clone(),
                    None => serde_json::json!({ "error": part.get("error").cloned().unwrap_or_default() }),
                };
                if let serde_json::Value::Object(map) = by_worker
                    .entry(worker)
                    .or_insert_with(|| serde_json::Value::Object(Default::default()))
                {
                    map.insert(short.clone(), value);
                }
            }
        }
        serde_json::Value::Object(by_worker)
    }

    /// The master's shared store (see [`crate::store`]): one of `get`, `set`, `delete`, `cas`,
    /// `keys` with their arguments (`path`, `value`, `expected`, `ttl_ms`), as workers call it with
    /// requests to `drover.store.*`; watchers are told of what changes.
    ///
    /// ```no_run
    /// # async fn run(master: drover::Master) -> Result<(), drover::request::RequestError> {
    /// use serde_json::json;
    /// master.store("set", json!({"path": "config.mode", "value": "fast"}))?;
    /// assert_eq!(master.store("get", json!({"path": "config"}))?, json!({"mode": "fast"}));
    /// # Ok(()) }
    /// ```
    pub fn store(&self, op: &str, args: serde_json::Value) -> Result<serde_json::Value, crate::request::RequestError> {
        let Some(remote) = self.inner.router.remote() else {
            let name = format!("{}{op}", router::STORE_PREFIX);
            return self.inner.router.store_request(0, &name, args);
        };
        // Redis answers asynchronously: wait here, as a synchronous call does, without stalling
        // the runtime (a current-thread runtime cannot wait for itself: `store_async` there).
        let call = Self::remote_store(remote.clone(), op.to_string(), args);
        match tokio::runtime::Handle::try_current() {
            Ok(here) if here.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| here.block_on(call))
            }
            Ok(_) => Err(crate::request::RequestError::new(
                crate::request::RequestErrorCode::BadRequest,
                "with the redis backend, Master::store cannot wait inside a current-thread runtime: use Master::store_async",
            )),
            Err(_) => remote.runtime().block_on(call),
        }
    }

    /// [`Master::store`] without blocking: what a caller inside an async runtime uses with the
    /// Redis backend (with the embedded one, it answers at once).
    pub async fn store_async(
        &self,
        op: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, crate::request::RequestError> {
        match self.inner.router.remote() {
            Some(remote) => Self::remote_store(remote, op.to_string(), args).await,
            None => self.store(op, args),
        }
    }

    async fn remote_store(
        remote: std::sync::Arc<dyn crate::store::backend::StoreBackend>,
        op: String,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, crate::request::RequestError> {
        if matches!(op.as_str(), "watch" | "unwatch") {
            return Err(crate::request::RequestError::new(
                crate::request::RequestErrorCode::BadRequest,
                "the master's user reads the store directly",
            ));
        }
        let (path, ttl) = router::store_args(&args)?;
        remote.store(&op, &path, &args, ttl).await
    }

    /// Who leads leadership `key` among the workers that joined it (PROTOCOL.md §5.10), and the
    /// leadership's term; `None`: no worker has joined `key`. The inner `None`: nobody leads for
    /// now (no participant is STARTED, or a deposed leader has not let go yet).
    pub fn leader(&self, key: &str) -> Option<(Option<WorkerId>, u64)> {
        self.inner.router.leader(key)
    }

    /// Every leadership its workers joined (PROTOCOL.md §5.10), by key: who leads it now, its
    /// term, how many workers joined it.
    pub fn leaderships(&self) -> Vec<election::Leadership> {
        self.inner.router.leaderships()
    }

    /// Ends every worker: `stop` → STOPPED → `quit` → exit, each step bounded by its timeout, then
    /// SIGTERM and SIGKILL to the process group of any worker that does not comply. Cancels a
    /// running start, rescale, restart or reload. Returns when every worker is reaped. Calling it
    /// again after it finished does nothing.
    pub async fn graceful_shutdown(&self) -> Result<(), Error> {
        self.submit(Op::Shutdown { hard: false }).await
    }

    /// SIGKILL to every worker's process group. Returns when every worker is reaped.
    pub async fn hard_shutdown(&self) -> Result<(), Error> {
        self.submit(Op::Shutdown { hard: true }).await
    }
}

impl Inner {
    fn config(&self) -> Arc<MasterConfig> {
        lock(&self.config).clone()
    }

    fn status(&self) -> MasterStatus {
        *self.status.borrow()
    }

    fn workers(&self) -> Vec<WorkerInfo> {
        lock(&self.slots)
            .values()
            .map(|slot| {
                let mut info = slot.handle.info();
                info.restarts = slot.restarts;
                info
            })
            .collect()
    }

    fn require(&self, operation: &'static str, allowed: &[MasterStatus]) -> Result<(), Error> {
        let status = self.status();
        if allowed.contains(&status) {
            Ok(())
        } else {
            Err(Error::State { operation, status })
        }
    }

    /// Sets `to` only if the status is still `from` (a lifecycle operation may have moved it);
    /// true if it did.
    fn set_status_if(&self, from: MasterStatus, to: MasterStatus) -> bool {
        let changed = self.status.send_if_modified(|s| {
            let was = *s == from;
            if was {
                *s = to;
            }
            was
        });
        if changed {
            tracing::debug!(%from, %to, name = %self.config().name, "master status");
            self.events.emit(Event::MasterStatus { from, to });
        }
        changed
    }

    fn set_status(&self, to: MasterStatus) {
        let from = self.status.send_replace(to);
        if from != to {
            tracing::debug!(%from, %to, name = %self.config().name, "master status");
            self.events.emit(Event::MasterStatus { from, to });
        }
    }

    /// SIGKILL to every worker's process group (the handles stay: the exits are still reaped).
    fn kill_all(&self) {
        for slot in lock(&self.slots).values() {
            slot.handle.kill();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No shutdown was run: no worker outlives its master. (The loop kills them when the last
        // handle goes; this covers a runtime that drops the loop's task first.)
        self.kill_all();
    }
}

/// Resident memory of this process, bytes (for heartbeats).
pub(crate) fn rss_of_self() -> Option<u64> {
    spawn::rss_bytes(std::process::id())
}
