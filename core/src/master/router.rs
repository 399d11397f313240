//! The master as a switchboard (PROTOCOL.md §5.5): requests from workers (and from the master's
//! user) to handlers of the master or of workers, their responses back, and messages from worker
//! to worker.
//!
//! Every request in flight is an entry in one table, keyed by the master's own number for it (the
//! number the target sees), which says who asked (a worker and its own number, the master's user,
//! or a gathering of `all`) and which worker is to answer. An entry ends exactly once: by the
//! target's `response`, by its timeout, by the target's exit, or by a failed write, and its
//! answer goes to whoever asked. The table is bounded ([`MAX_PENDING_REQUESTS`] in all,
//! [`MAX_PENDING_PER_WORKER`] per asking worker): past it a request is refused at once with
//! `overloaded`, so a worker that floods requests harms only itself.

use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::oneshot;

use super::election::{Elections, Notice, LEADER_PREFIX};
use super::worker::WorkerHandle;
use super::Inner;
use crate::config::StoreConfig;
use crate::protocol::MasterFrame;
use crate::request::{
    self, check_handler_name, RequestError, RequestErrorCode, Target, MAX_HANDLERS, MAX_PENDING_PER_WORKER,
    MAX_PENDING_REQUESTS,
};
use crate::store::backend::StoreBackend;
use crate::store::persist::{FsyncPolicy, Persistence};
use crate::store::redis::RedisStore;
use crate::store::{is_within, Store, StoreError, StoreLimits};
use crate::WorkerId;

/// The names of the master's built-in storage handlers start with this (PROTOCOL.md §5.6); no
/// user handler may take a `drover.` name.
pub const STORE_PREFIX: &str = "drover.store.";
/// The names of the master's built-in single-flight cache handlers start with this (§5.7).
pub const CACHE_PREFIX: &str = "drover.cache.";
/// Entries (loaded or loading) one master's cache holds.
pub const MAX_CACHE_ENTRIES: usize = 100_000;
/// Bytes of JSON one master's cache holds.
pub const MAX_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Callers waiting for one key's load.
pub const MAX_CACHE_WAITERS: usize = 4096;
/// How long a loader has to fill or fail its key unless it says otherwise.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Handlers named with this prefix are *status functions* (cluster2's status registry): the
/// master gathers them all with [`crate::Master::gather_statuses`].
pub const STATUS_PREFIX: &str = crate::request::STATUS_FUNCTION_PREFIX;
/// Watches one worker may hold on the store.
pub const MAX_WATCHES_PER_WORKER: usize = 64;
/// Watches on one master's store in all.
pub const MAX_WATCHES: usize = 4096;

/// A handler of the master's: called with the asking worker's id (0: the master's user) and the
/// arguments; resolves with the result or a message saying why it failed.
pub type MasterHandler = Arc<dyn Fn(WorkerId, Value) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// Who is waiting for a request's answer.
enum Asker {
    /// A worker, under its own number for the request.
    Worker { id: WorkerId, request: u64 },
    /// The master's user ([`crate::Master::request`]).
    User(oneshot::Sender<Result<Value, RequestError>>),
    /// One part of a request to `all`: the gathering's number.
    Gather(u64),
}

impl Asker {
    fn worker(&self) -> Option<WorkerId> {
        match self {
            Asker::Worker { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// One request in flight.
struct Pending {
    asker: Asker,
    /// The worker that is to answer (0: one of the master's handlers).
    target: WorkerId,
    /// The worker that asked, counted against its bound (none: the master's user).
    counted: Option<WorkerId>,
}

/// The answers of a request to `all`, as they come in.
struct Gathering {
    asker: Asker,
    waiting: usize,
    results: Vec<Value>,
}

#[derive(Default)]
struct Table {
    next: u64,
    pending: HashMap<u64, Pending>,
    gatherings: HashMap<u64, Gathering>,
    per_worker: HashMap<WorkerId, usize>,
    /// The handler names each worker declared.
    handlers: HashMap<WorkerId, BTreeSet<String>>,
    /// The master's own handlers.
    master: HashMap<String, MasterHandler>,
    /// Where `any` starts looking next.
    cursor: usize,
}

/// A worker's watch on the store: changes at or below (or above) `path` go to it.
struct Watch {
    worker: WorkerId,
    path: String,
}

/// One key of the single-flight cache.
enum CacheEntry {
    /// Loaded: the value, its size, until when it is good.
    Ready {
        value: Value,
        bytes: usize,
        until: Option<std::time::Instant>,
    },
    /// One caller (`loader`) is loading it under `token`; the others wait.
    Loading {
        token: u64,
        loader: WorkerId,
        waiters: Vec<Asker>,
    },
}

/// The store, who watches it, and the cache.
struct Shared {
    store: Store,
    /// Where the store's writes are logged, when it is persisted.
    persist: Option<Persistence>,
    cache: HashMap<String, CacheEntry>,
    cache_bytes: usize,
    next_token: u64,
    next_watch: u64,
    watches: HashMap<u64, Watch>,
    /// Whether the task that expires values on time runs.
    sweeping: bool,
}

/// The callers of a Redis-backed cache that wait for another's load, and the loads this
/// master's workers hold.
#[derive(Default)]
struct RemoteCache {
    waiters: HashMap<String, Vec<Asker>>,
    /// Token → key and the worker loading it (failed for it if it exits first).
    loads: HashMap<u64, (String, WorkerId)>,
}

/// The store a master opens ([`crate::MasterConfig::store`]).
pub(crate) struct OpenStore {
    store: Store,
    persist: Option<Persistence>,
    remote: Option<Arc<dyn StoreBackend>>,
}

/// The master's switchboard; one per master, shared with every worker's actor.
pub(crate) struct Router {
    inner: Weak<Inner>,
    table: Mutex<Table>,
    shared: Mutex<Shared>,
    /// The Redis backend, when the store is kept there (watches stay here).
    remote: Option<Arc<dyn StoreBackend>>,
    remote_cache: Mutex<RemoteCache>,
    elections: Mutex<Elections>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Router")
    }
}

fn error(code: RequestErrorCode, message: impl Into<String>) -> RequestError {
    RequestError::new(code, message)
}

impl Router {
    pub(super) fn new(inner: Weak<Inner>, open: OpenStore) -> Router {
        let OpenStore { store, persist, remote } = open;
        Router {
            inner,
            remote,
            remote_cache: Mutex::new(RemoteCache::default()),
            table: Mutex::new(Table::default()),
            shared: Mutex::new(Shared {
                store,
                persist,
                cache: HashMap::new(),
                cache_bytes: 0,
                next_token: 0,
                next_watch: 0,
                watches: HashMap::new(),
                sweeping: false,
            }),
            elections: Mutex::new(Elections::default()),
        }
    }

    /// The store `config` asks for: empty, or loaded from its directory (locked from now on).
    /// Must be called within a tokio runtime (a Redis backend's connection lives there).
    pub(super) fn open_store(config: &StoreConfig) -> Result<OpenStore, crate::ConfigError> {
        let mut store = Store::new(StoreLimits::default());
        let persist = match &config.persist {
            Some(p) => Some(Persistence::open(p, &mut store)?),
            None => None,
        };
        let remote: Option<Arc<dyn StoreBackend>> = match &config.redis {
            Some(r) => Some(Arc::new(RedisStore::new(r).map_err(|e| {
                crate::ConfigError::Invalid {
                    field: "store.url",
                    message: format!("{:?}: {e}", r.url),
                }
            })?)),
            None => None,
        };
        Ok(OpenStore { store, persist, remote })
    }

    /// The Redis backend, if the store is kept there.
    pub(crate) fn remote(&self) -> Option<Arc<dyn StoreBackend>> {
        self.remote.clone()
    }

    /// The tasks the store needs besides requests: the log's flushes once a second
    /// ([`FsyncPolicy::Everysec`]); with Redis, the subscription to its changes and cache fills,
    /// and the sweep of what is past its time.
    pub(super) fn start_background(self: &Arc<Self>) {
        self.flush_every_second();
        let Some(remote) = self.remote.clone() else { return };
        let alive = {
            let router = Arc::downgrade(self);
            move || router.upgrade().is_some_and(|r| r.inner.upgrade().is_some())
        };
        let on_changes = {
            let router = Arc::downgrade(self);
            move |changes: Vec<(String, Value)>| {
                if let Some(router) = router.upgrade() {
                    let shared = router.lock_shared();
                    router.notify(&shared, &changes);
                }
            }
        };
        let on_cache = {
            let router = Arc::downgrade(self);
            move |key: String, outcome: Result<Value, RequestError>| {
                if let Some(router) = router.upgrade() {
                    router.remote_load_ended(&key, outcome);
                }
            }
        };
        tokio::spawn(
            remote
                .clone()
                .subscribe(Box::new(alive.clone()), Box::new(on_changes), Box::new(on_cache)),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while alive() {
                tick.tick().await;
                if let Err(e) = remote.sweep().await {
                    tracing::debug!(error = %e, "the store's Redis could not be swept");
                }
            }
        });
    }

    /// With [`FsyncPolicy::Everysec`]: flushes the store's log once a second when it was written,
    /// outside the store's lock (an fsync may take long; the store's operations do not wait).
    fn flush_every_second(self: &Arc<Self>) {
        let everysec = self
            .lock_shared()
            .persist
            .as_ref()
            .is_some_and(|p| p.fsync_policy() == FsyncPolicy::Everysec);
        if !everysec {
            return;
        }
        let router = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(router) = router.upgrade() else { return };
                let dirty = router.lock_shared().persist.as_mut().and_then(Persistence::take_dirty);
                drop(router);
                if let Some(log) = dirty {
                    let flushed = tokio::task::spawn_blocking(move || log.sync_data()).await;
                    if let Ok(Err(e)) = flushed {
                        tracing::warn!(error = %e, "the store log could not be flushed");
                    }
                }
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live workers, with their names (as their welcome says).
    fn live_workers(&self) -> Vec<(WorkerId, String, WorkerHandle)> {
        let Some(inner) = self.inner.upgrade() else {
            return Vec::new();
        };
        let slots = super::lock(&inner.slots);
        slots
            .iter()
            .filter_map(|(id, s)| {
                let info = s.handle.info();
                info.is_alive().then(|| (*id, info.name, s.handle.clone()))
            })
            .collect()
    }

    /// Registers (or replaces) a handler of the master's.
    pub(crate) fn set_master_handler(&self, name: &str, handler: MasterHandler) -> Result<(), RequestError> {
        check_handler_name(name)?;
        if name.starts_with("drover.") {
            return Err(error(
                RequestErrorCode::BadRequest,
                format!("{name:?}: names starting with \"drover.\" are the master's built-in handlers"),
            ));
        }
        let mut table = self.lock();
        if !table.master.contains_key(name) && table.master.len() >= MAX_HANDLERS {
            return Err(error(
                RequestErrorCode::Overloaded,
                format!("the master has {MAX_HANDLERS} handlers, the most it may have"),
            ));
        }
        table.master.insert(name.to_string(), handler);
        Ok(())
    }

    /// The status functions the live workers declared (handlers named `status.NAME`), sorted.
    pub(crate) fn status_functions(&self) -> Vec<String> {
        let live: std::collections::BTreeSet<WorkerId> = self.live_workers().into_iter().map(|(id, _, _)| id).collect();
        let table = self.lock();
        let names: std::collections::BTreeSet<String> = table
            .handlers
            .iter()
            .filter(|(id, _)| live.contains(id))
            .flat_map(|(_, names)| names.iter().filter(|n| n.starts_with(STATUS_PREFIX)).cloned())
            .collect();
        names.into_iter().collect()
    }

    /// A worker's `handlers` frame. Refused whole (and said why) when a name is bad or there are
    /// too many: the worker keeps the handlers it had.
    pub(crate) fn set_worker_handlers(&self, id: WorkerId, names: Vec<String>) -> Result<(), String> {
        if names.len() > MAX_HANDLERS {
            return Err(format!("{} handler names: at most {MAX_HANDLERS}", names.len()));
        }
        for name in &names {
            check_handler_name(name).map_err(|e| e.message)?;
        }
        self.lock().handlers.insert(id, names.into_iter().collect());
        Ok(())
    }

    /// A worker's `request` frame.
    pub(crate) fn worker_request(
        self: &Arc<Self>,
        from: WorkerId,
        request: u64,
        to: Target,
        name: String,
        args: Value,
        timeout_ms: Option<u64>,
    ) {
        let asker = Asker::Worker { id: from, request };
        self.dispatch(asker, from, to, name, args, request::timeout_of(timeout_ms));
    }

    /// A request of the master's user ([`crate::Master::request`]).
    pub(crate) async fn user_request(
        self: &Arc<Self>,
        to: Target,
        name: String,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.dispatch(
            Asker::User(tx),
            0,
            to,
            name,
            args,
            timeout.min(request::MAX_REQUEST_TIMEOUT),
        );
        rx.await
            .unwrap_or_else(|_| Err(error(RequestErrorCode::MasterGone, "the master is gone")))
    }

    /// Routes one request from `from` (0: the master's user).
    fn dispatch(
        self: &Arc<Self>,
        asker: Asker,
        from: WorkerId,
        to: Target,
        name: String,
        args: Value,
        timeout: Duration,
    ) {
        if let Err(e) = check_handler_name(&name) {
            return self.answer(asker, Err(e));
        }
        let counted = asker.worker();
        {
            let table = self.lock();
            if table.pending.len() >= MAX_PENDING_REQUESTS {
                drop(table);
                return self.answer(
                    asker,
                    Err(error(
                        RequestErrorCode::Overloaded,
                        format!("{MAX_PENDING_REQUESTS} requests are in flight through the master, the most it holds"),
                    )),
                );
            }
            if let Some(w) = counted {
                if table.per_worker.get(&w).copied().unwrap_or(0) >= MAX_PENDING_PER_WORKER {
                    drop(table);
                    return self.answer(
                        asker,
                        Err(error(
                            RequestErrorCode::Overloaded,
                            format!("worker {w} has {MAX_PENDING_PER_WORKER} requests in flight, the most it may"),
                        )),
                    );
                }
            }
        }
        if to == Target::Master && name.starts_with(STORE_PREFIX) {
            let op = &name[STORE_PREFIX.len()..];
            if let (Some(remote), false) = (self.remote.clone(), matches!(op, "watch" | "unwatch")) {
                let op = op.to_string();
                let router = self.clone();
                tokio::spawn(async move {
                    let outcome = match store_args(&args) {
                        Ok((path, ttl)) => remote.store(&op, &path, &args, ttl).await,
                        Err(e) => Err(e),
                    };
                    router.answer(asker, outcome);
                });
                return;
            }
            if let (Some(remote), "watch") = (self.remote.clone(), op) {
                let router = self.clone();
                tokio::spawn(async move {
                    let outcome = match remote.wait_subscribed().await {
                        Ok(()) => router.store_request(from, &name, args),
                        Err(e) => Err(e),
                    };
                    router.answer(asker, outcome);
                });
                return;
            }
            let outcome = self.store_request(from, &name, args);
            return self.answer(asker, outcome);
        }
        if to == Target::Master && name.starts_with(LEADER_PREFIX) {
            let outcome = self.leader_request(from, &name, &args);
            return self.answer(asker, outcome);
        }
        if to == Target::Master && name.starts_with(CACHE_PREFIX) {
            if let Some(remote) = self.remote.clone() {
                return self.remote_cache_request(remote, asker, from, &name, args);
            }
            return self.cache_request(asker, from, &name, args);
        }
        if to == Target::Master {
            let handler = self.lock().master.get(&name).cloned();
            let Some(handler) = handler else {
                return self.answer(
                    asker,
                    Err(error(
                        RequestErrorCode::NoSuchHandler,
                        format!("the master has no handler {name:?}"),
                    )),
                );
            };
            let number = self.open(asker, 0, counted);
            let router = self.clone();
            tokio::spawn(async move {
                let outcome = match tokio::time::timeout(timeout, handler(from, args)).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(message)) => Err(error(RequestErrorCode::HandlerFailed, message)),
                    Err(_) => Err(error(
                        RequestErrorCode::Timeout,
                        format!(
                            "the master's handler {name:?} did not answer within {} ms",
                            timeout.as_millis()
                        ),
                    )),
                };
                router.complete(number, None, outcome);
            });
            return;
        }
        let targets = match self.resolve(&to, &name, from) {
            Ok(targets) => targets,
            Err(e) => return self.answer(asker, Err(e)),
        };
        if to == Target::All {
            let mut table = self.lock();
            table.next += 1;
            let gathering = table.next;
            table.gatherings.insert(
                gathering,
                Gathering {
                    asker,
                    waiting: targets.len(),
                    results: Vec::with_capacity(targets.len()),
                },
            );
            drop(table);
            for (id, handle) in targets {
                self.forward(
                    Asker::Gather(gathering),
                    counted,
                    from,
                    id,
                    handle,
                    &name,
                    &args,
                    timeout,
                );
            }
        } else if let Some((id, handle)) = targets.into_iter().next() {
            self.forward(asker, counted, from, id, handle, &name, &args, timeout);
        }
    }

    /// The workers `to` means for handler `name`, asked by `from` (excluded from `any` and `all`).
    fn resolve(&self, to: &Target, name: &str, from: WorkerId) -> Result<Vec<(WorkerId, WorkerHandle)>, RequestError> {
        let live = self.live_workers();
        let table = self.lock();
        let handles = |id: WorkerId| table.handlers.get(&id).is_some_and(|h| h.contains(name));
        match to {
            Target::Worker(_) | Target::Name(_) => {
                let found = live.into_iter().find(|(id, worker_name, _)| match to {
                    Target::Worker(want) => id == want,
                    Target::Name(want) => worker_name == want,
                    _ => false,
                });
                let Some((id, _, handle)) = found else {
                    return Err(error(RequestErrorCode::NoSuchTarget, format!("no live worker is {to}")));
                };
                if !handles(id) {
                    return Err(error(
                        RequestErrorCode::NoSuchHandler,
                        format!("worker {id} has no handler {name:?}"),
                    ));
                }
                Ok(vec![(id, handle)])
            }
            Target::Any | Target::All => {
                let able: Vec<(WorkerId, WorkerHandle)> = live
                    .into_iter()
                    .filter(|(id, _, _)| *id != from && handles(*id))
                    .map(|(id, _, h)| (id, h))
                    .collect();
                if able.is_empty() {
                    return Err(error(
                        RequestErrorCode::NoSuchHandler,
                        format!("no live worker has a handler {name:?}"),
                    ));
                }
                if *to == Target::All {
                    return Ok(able);
                }
                drop(table);
                Ok(self.in_turn(able))
            }
            Target::Master => Ok(Vec::new()),
        }
    }

    /// The one of `candidates` whose turn it is (`any`): one cursor for requests and messages.
    fn in_turn<T>(&self, candidates: Vec<T>) -> Vec<T> {
        if candidates.is_empty() {
            return candidates;
        }
        let mut table = self.lock();
        let pick = table.cursor % candidates.len();
        table.cursor = table.cursor.wrapping_add(1);
        candidates.into_iter().skip(pick).take(1).collect()
    }

    /// Opens a table entry; its number.
    fn open(&self, asker: Asker, target: WorkerId, counted: Option<WorkerId>) -> u64 {
        let mut table = self.lock();
        table.next += 1;
        let number = table.next;
        if let Some(w) = counted {
            *table.per_worker.entry(w).or_default() += 1;
        }
        table.pending.insert(number, Pending { asker, target, counted });
        number
    }

    /// Sends the request to worker `id` and arms its timeout.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        self: &Arc<Self>,
        asker: Asker,
        counted: Option<WorkerId>,
        from: WorkerId,
        id: WorkerId,
        handle: WorkerHandle,
        name: &str,
        args: &Value,
        timeout: Duration,
    ) {
        let number = self.open(asker, id, counted);
        let frame = MasterFrame::Request {
            id: number,
            from,
            name: name.to_string(),
            args: args.clone(),
        };
        let router = self.clone();
        let sent = handle.send_frame(&frame);
        tokio::spawn(async move {
            if let Err(e) = sent.await {
                router.complete(number, None, Err(error(RequestErrorCode::TargetGone, e.to_string())));
                return;
            }
            tokio::time::sleep(timeout).await;
            router.complete(
                number,
                None,
                Err(error(
                    RequestErrorCode::Timeout,
                    format!("worker {id} did not answer within {} ms", timeout.as_millis()),
                )),
            );
        });
    }

    /// A worker's `response` frame: the answer to entry `number`, if that worker was asked.
    pub(crate) fn worker_response(
        &self,
        id: WorkerId,
        number: u64,
        result: Option<Value>,
        failure: Option<RequestError>,
    ) {
        let outcome = match failure {
            Some(e) => Err(e),
            None => Ok(result.unwrap_or(Value::Null)),
        };
        self.complete(number, Some(id), outcome);
    }

    /// Ends entry `number` (if it is still open, and `responder`, when given, is its target) and
    /// hands `outcome` to its asker.
    fn complete(&self, number: u64, responder: Option<WorkerId>, outcome: Result<Value, RequestError>) {
        let mut table = self.lock();
        let Some(entry) = table.pending.get(&number) else {
            return; // already answered, timed out, or never ours: a late answer is dropped
        };
        if responder.is_some_and(|r| r != entry.target) {
            tracing::debug!(
                number,
                ?responder,
                "a response from a worker that was not asked, ignored"
            );
            return;
        }
        let Some(entry) = table.pending.remove(&number) else {
            return;
        };
        if let Some(w) = entry.counted {
            if let Some(n) = table.per_worker.get_mut(&w) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    table.per_worker.remove(&w);
                }
            }
        }
        let target = entry.target;
        let asker = match entry.asker {
            Asker::Gather(gathering) => {
                let Some(g) = table.gatherings.get_mut(&gathering) else {
                    return;
                };
                g.results.push(match outcome {
                    Ok(result) => json!({ "worker": target, "result": result }),
                    Err(e) => json!({ "worker": target, "error": e }),
                });
                g.waiting = g.waiting.saturating_sub(1);
                if g.waiting > 0 {
                    return;
                }
                let Some(g) = table.gatherings.remove(&gathering) else {
                    return;
                };
                drop(table);
                let mut results = g.results;
                results.sort_by_key(|r| r["worker"].as_u64());
                return self.answer(g.asker, Ok(Value::Array(results)));
            }
            asker => asker,
        };
        drop(table);
        self.answer(asker, outcome);
    }

    /// Hands an answer to whoever asked.
    fn answer(&self, asker: Asker, outcome: Result<Value, RequestError>) {
        match asker {
            Asker::User(tx) => {
                let _ = tx.send(outcome);
            }
            Asker::Worker { id, request } => {
                let (result, error) = request::split(outcome);
                self.write_to(
                    id,
                    MasterFrame::Response {
                        id: request,
                        result,
                        error,
                    },
                );
            }
            Asker::Gather(gathering) => {
                // Only `complete` makes gathering parts; an answer before one is open cannot be.
                tracing::debug!(gathering, "an answer for a gathering that is not open");
            }
        }
    }

    /// Writes `frame` to worker `id` if it is still there (a worker that asked and then left has
    /// nobody to tell).
    fn write_to(&self, id: WorkerId, frame: MasterFrame) {
        let handle = self
            .live_workers()
            .into_iter()
            .find(|(w, _, _)| *w == id)
            .map(|(_, _, h)| h);
        if let Some(handle) = handle {
            let sent = handle.send_frame(&frame);
            tokio::spawn(async move {
                if let Err(e) = sent.await {
                    tracing::debug!(id, error = %e, "an answer could not be written");
                }
            });
        }
    }

    /// A worker's `send` frame: `data` to the workers `to` means; acknowledged by `sent`.
    pub(crate) fn worker_send(self: &Arc<Self>, from: WorkerId, number: u64, to: Target, data: Value) {
        let targets: Result<Vec<(WorkerId, WorkerHandle)>, RequestError> = match &to {
            Target::Master => Err(error(
                RequestErrorCode::BadRequest,
                "a message to the master is a `message` frame, not a `send`",
            )),
            _ => {
                let live = self.live_workers();
                let chosen: Vec<(WorkerId, WorkerHandle)> = match &to {
                    Target::Worker(want) => live
                        .into_iter()
                        .filter(|(id, _, _)| id == want)
                        .map(|(i, _, h)| (i, h))
                        .collect(),
                    Target::Name(want) => live
                        .into_iter()
                        .filter(|(_, n, _)| n == want)
                        .map(|(i, _, h)| (i, h))
                        .collect(),
                    _ => {
                        let others: Vec<_> = live
                            .into_iter()
                            .filter(|(id, _, _)| *id != from)
                            .map(|(i, _, h)| (i, h))
                            .collect();
                        if to == Target::Any {
                            self.in_turn(others)
                        } else {
                            others
                        }
                    }
                };
                if chosen.is_empty() {
                    Err(error(RequestErrorCode::NoSuchTarget, format!("no live worker is {to}")))
                } else {
                    Ok(chosen)
                }
            }
        };
        // Queued now, in the order the sender's frames came: two messages from one worker to
        // another arrive in the order they were sent.
        let writes = targets.map(|targets| {
            let frame = MasterFrame::Message { data, from: Some(from) };
            targets.iter().map(|(_, h)| h.send_frame(&frame)).collect::<Vec<_>>()
        });
        let router = self.clone();
        tokio::spawn(async move {
            let outcome = match writes {
                Err(e) => Err(e),
                Ok(writes) => {
                    let results = futures_util::future::join_all(writes).await;
                    let reached = results.iter().filter(|r| r.is_ok()).count() as u64;
                    match results.into_iter().find_map(Result::err) {
                        Some(e) if reached == 0 => Err(error(RequestErrorCode::TargetGone, e.to_string())),
                        _ => Ok(reached),
                    }
                }
            };
            let (count, error) = request::split(outcome);
            router.write_to(
                from,
                MasterFrame::Sent {
                    id: number,
                    count,
                    error,
                },
            );
        });
    }

    fn lock_shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One of the built-in `drover.store.*` handlers, for worker `from` (0: the master's user).
    /// Arguments: `path`, and `value`, `expected`, `ttl_ms` as the operation needs.
    pub(crate) fn store_request(
        self: &Arc<Self>,
        from: WorkerId,
        name: &str,
        args: Value,
    ) -> Result<Value, RequestError> {
        let (path, ttl) = store_args(&args)?;
        let value = || args.get("value").cloned().unwrap_or(Value::Null);
        let refused = |e: StoreError| {
            let code = match e {
                StoreError::Full { .. } | StoreError::TooManyExpiring { .. } => RequestErrorCode::Overloaded,
                _ => RequestErrorCode::BadRequest,
            };
            error(code, e.to_string())
        };
        let now = tokio::time::Instant::now().into_std();
        let op = &name[STORE_PREFIX.len()..];
        let mut shared = self.lock_shared();
        let shared = &mut *shared;
        let expired = shared.store.expire(now);
        // What a write replaced, to put back if it cannot be made durable.
        let before =
            (shared.persist.is_some() && matches!(op, "set" | "delete" | "cas")).then(|| shared.store.get(&path, now));
        let (result, changed) = match op {
            "get" => (shared.store.get(&path, now).unwrap_or(Value::Null), None),
            "keys" => (json!(shared.store.keys(&path, now)), None),
            "set" => {
                shared.store.set(&path, value(), ttl, now).map_err(refused)?;
                (json!(true), Some(value()))
            }
            "delete" => {
                let removed = shared.store.delete(&path, now).map_err(refused)?;
                (json!(removed), removed.then_some(Value::Null))
            }
            "cas" => {
                let expected = args.get("expected").cloned().unwrap_or(Value::Null);
                let swapped = shared
                    .store
                    .compare_and_set(&path, &expected, value(), ttl, now)
                    .map_err(refused)?;
                (json!(swapped), swapped.then(value))
            }
            "watch" => {
                if from == 0 {
                    return Err(error(
                        RequestErrorCode::BadRequest,
                        "the master's user reads the store directly",
                    ));
                }
                let held = shared.watches.values().filter(|w| w.worker == from).count();
                if held >= MAX_WATCHES_PER_WORKER || shared.watches.len() >= MAX_WATCHES {
                    return Err(error(
                        RequestErrorCode::Overloaded,
                        format!("at most {MAX_WATCHES_PER_WORKER} watches per worker and {MAX_WATCHES} per master"),
                    ));
                }
                shared.next_watch += 1;
                let watch = shared.next_watch;
                shared.watches.insert(
                    watch,
                    Watch {
                        worker: from,
                        path: path.clone(),
                    },
                );
                (json!({ "watch": watch }), None)
            }
            "unwatch" => {
                let watch = args.get("watch").and_then(Value::as_u64).unwrap_or(0);
                let mine = shared.watches.get(&watch).is_some_and(|w| w.worker == from);
                if mine {
                    shared.watches.remove(&watch);
                }
                (json!(mine), None)
            }
            _ => {
                return Err(error(
                    RequestErrorCode::NoSuchHandler,
                    format!("the master has no handler {name:?} (get, set, delete, cas, keys, watch, unwatch)"),
                ))
            }
        };
        // Told in the order the changes were made: queued under the same lock.
        let mut changes: Vec<(String, Value)> = expired.into_iter().map(|p| (p, Value::Null)).collect();
        if let (Some(v), Some(persist)) = (&changed, shared.persist.as_mut()) {
            let logged = if op == "delete" {
                persist.record_delete(&path, &shared.store)
            } else {
                persist.record_set(&path, v, ttl, &shared.store)
            };
            if let Err(e) = logged {
                // Not durable, so not done: the value before goes back (without its time to live,
                // if it had one), and the write is answered as failed.
                let undone = match before.flatten() {
                    Some(old) => shared.store.set(&path, old, None, now),
                    None => shared.store.delete(&path, now).map(drop),
                };
                if let Err(undo) = undone {
                    tracing::error!(path, error = %undo, "a write the store's disk refused could not be undone");
                }
                self.notify(shared, &changes);
                return Err(error(
                    RequestErrorCode::Unavailable,
                    format!("the store could not make the write durable: {e}"),
                ));
            }
        }
        if ttl.is_some() && !shared.sweeping {
            shared.sweeping = true;
            self.sweep_on_time();
        }
        if let Some(v) = changed {
            changes.push((path, v));
        }
        self.notify(shared, &changes);
        Ok(result)
    }

    /// Tells each watcher of a changed path: `changed` frames, queued in order.
    fn notify(&self, shared: &Shared, changes: &[(String, Value)]) {
        if changes.is_empty() || shared.watches.is_empty() {
            return;
        }
        let live = self.live_workers();
        for (path, value) in changes {
            for (watch, w) in &shared.watches {
                if !(is_within(path, &w.path) || is_within(&w.path, path)) {
                    continue;
                }
                let Some((_, _, handle)) = live.iter().find(|(id, _, _)| *id == w.worker) else {
                    continue;
                };
                let frame = MasterFrame::Changed {
                    watch: *watch,
                    path: path.clone(),
                    value: value.clone(),
                };
                let sent = handle.send_frame(&frame);
                let worker = w.worker;
                tokio::spawn(async move {
                    if let Err(e) = sent.await {
                        tracing::debug!(worker, error = %e, "a store change could not be told");
                    }
                });
            }
        }
    }

    /// Expires values on time (not only at the next operation), so watchers hear of it: every
    /// second while the master lives.
    fn sweep_on_time(self: &Arc<Self>) {
        let router = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(router) = router.upgrade() else { return };
                if router.inner.upgrade().is_none() {
                    return;
                }
                let now = tokio::time::Instant::now().into_std();
                let shared = &mut *router.lock_shared();
                let expired: Vec<(String, Value)> =
                    shared.store.expire(now).into_iter().map(|p| (p, Value::Null)).collect();
                router.notify(shared, &expired);
            }
        });
    }

    /// One of the built-in `drover.cache.*` handlers (PROTOCOL.md §5.7): a cache every worker
    /// shares, where of all the callers that miss a key at once exactly one loads it.
    fn cache_request(self: &Arc<Self>, asker: Asker, from: WorkerId, name: &str, args: Value) {
        let op = &name[CACHE_PREFIX.len()..];
        let key = match cache_key(&args) {
            Ok(key) => key,
            Err(e) => return self.answer(asker, Err(e)),
        };
        let millis = |field: &str| cache_millis(&args, field);
        let token = args.get("token").and_then(Value::as_u64).unwrap_or(0);
        match op {
            "get_or_load" => {
                let load_timeout = match millis("load_timeout_ms") {
                    Ok(t) => t.unwrap_or(DEFAULT_LOAD_TIMEOUT),
                    Err(e) => return self.answer(asker, Err(e)),
                };
                let now = std::time::Instant::now();
                let mut shared = self.lock_shared();
                let shared = &mut *shared;
                if let Some(CacheEntry::Ready {
                    until: Some(until),
                    bytes,
                    ..
                }) = shared.cache.get(&key)
                {
                    if *until <= now {
                        shared.cache_bytes = shared.cache_bytes.saturating_sub(*bytes);
                        shared.cache.remove(&key);
                    }
                }
                match shared.cache.get_mut(&key) {
                    Some(CacheEntry::Ready { value, .. }) => {
                        let value = value.clone();
                        self.answer(asker, Ok(json!({ "value": value })));
                    }
                    Some(CacheEntry::Loading { waiters, .. }) => {
                        if waiters.len() >= MAX_CACHE_WAITERS {
                            return self.answer(
                                asker,
                                Err(error(
                                    RequestErrorCode::Overloaded,
                                    format!("{MAX_CACHE_WAITERS} callers already wait for {key:?}"),
                                )),
                            );
                        }
                        waiters.push(asker);
                    }
                    None => {
                        if shared.cache.len() >= MAX_CACHE_ENTRIES {
                            return self.answer(
                                asker,
                                Err(error(
                                    RequestErrorCode::Overloaded,
                                    format!("the cache holds {MAX_CACHE_ENTRIES} keys, the most it may"),
                                )),
                            );
                        }
                        shared.next_token += 1;
                        let token = shared.next_token;
                        shared.cache.insert(
                            key.clone(),
                            CacheEntry::Loading {
                                token,
                                loader: from,
                                waiters: Vec::new(),
                            },
                        );
                        // A loader that never fills nor fails does not hold its waiters for ever.
                        let router = Arc::downgrade(self);
                        let timed_out = key.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(load_timeout).await;
                            if let Some(router) = router.upgrade() {
                                let message = format!(
                                    "the loader of {timed_out:?} did not fill it within {} ms",
                                    load_timeout.as_millis()
                                );
                                router.end_load(&timed_out, token, Err(error(RequestErrorCode::Timeout, message)));
                            }
                        });
                        self.answer(asker, Ok(json!({ "load": token })));
                    }
                }
            }
            "fill" => {
                let ttl = match millis("ttl_ms") {
                    Ok(t) => t,
                    Err(e) => return self.answer(asker, Err(e)),
                };
                let value = args.get("value").cloned().unwrap_or(Value::Null);
                let bytes = serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0) + key.len();
                if self.lock_shared().cache_bytes + bytes > MAX_CACHE_BYTES {
                    let e = error(
                        RequestErrorCode::Overloaded,
                        format!("the cache would hold more than {MAX_CACHE_BYTES} bytes"),
                    );
                    self.end_load(&key, token, Err(e.clone()));
                    return self.answer(asker, Err(e));
                }
                let until = ttl.map(|t| std::time::Instant::now() + t);
                let filled = self.end_load(&key, token, Ok((value, bytes, until)));
                self.answer(asker, Ok(json!(filled)));
            }
            "fail" => {
                let message = args
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the loader failed")
                    .to_string();
                let failed = self.end_load(&key, token, Err(error(RequestErrorCode::HandlerFailed, message)));
                self.answer(asker, Ok(json!(failed)));
            }
            "delete" => {
                let mut shared = self.lock_shared();
                let removed = match shared.cache.get(&key) {
                    Some(CacheEntry::Ready { bytes, .. }) => {
                        let bytes = *bytes;
                        shared.cache_bytes = shared.cache_bytes.saturating_sub(bytes);
                        shared.cache.remove(&key);
                        true
                    }
                    _ => false,
                };
                drop(shared);
                self.answer(asker, Ok(json!(removed)));
            }
            _ => self.answer(
                asker,
                Err(error(
                    RequestErrorCode::NoSuchHandler,
                    format!("the master has no handler {name:?} (get_or_load, fill, fail, delete)"),
                )),
            ),
        }
    }

    /// Ends the load of `key` under `token` (if it is still that load): `Ok` stores the value and
    /// hands it to every waiter; `Err` fails them all and forgets the key, so the next caller
    /// loads again. Whether it was that load.
    fn end_load(
        &self,
        key: &str,
        token: u64,
        outcome: Result<(Value, usize, Option<std::time::Instant>), RequestError>,
    ) -> bool {
        let waiters = {
            let mut shared = self.lock_shared();
            match shared.cache.get(key) {
                Some(CacheEntry::Loading { token: t, .. }) if *t == token => {}
                _ => return false,
            }
            let Some(CacheEntry::Loading { waiters, .. }) = shared.cache.remove(key) else {
                return false;
            };
            if let Ok((value, bytes, until)) = &outcome {
                shared.cache_bytes += bytes;
                shared.cache.insert(
                    key.to_string(),
                    CacheEntry::Ready {
                        value: value.clone(),
                        bytes: *bytes,
                        until: *until,
                    },
                );
            }
            waiters
        };
        for waiter in waiters {
            let answer = match &outcome {
                Ok((value, _, _)) => Ok(json!({ "value": value })),
                Err(e) => Err(e.clone()),
            };
            self.answer(waiter, answer);
        }
        true
    }

    /// Runs `change` on the elections and writes the `leader` frames it gives, under the
    /// elections' lock: frames of successive changes are queued in the order of the changes
    /// (a worker never sees a later term before an earlier one).
    fn elect(
        &self,
        change: impl FnOnce(&mut Elections) -> Result<Vec<Notice>, RequestError>,
    ) -> Result<(), RequestError> {
        // The handles first: the slots' lock is never taken inside the elections' lock.
        let handles: HashMap<WorkerId, WorkerHandle> =
            self.live_workers().into_iter().map(|(id, _, h)| (id, h)).collect();
        let mut elections = self.elections.lock().unwrap_or_else(|p| p.into_inner());
        let notices = change(&mut elections)?;
        for notice in notices {
            let Some(handle) = handles.get(&notice.to) else {
                continue;
            };
            let frame = MasterFrame::Leader {
                you: notice.leader == Some(notice.to),
                key: notice.key,
                leader: notice.leader,
                term: notice.term,
            };
            let sent = handle.send_frame(&frame);
            let to = notice.to;
            tokio::spawn(async move {
                if let Err(e) = sent.await {
                    tracing::debug!(id = to, error = %e, "a leader frame could not be written");
                }
            });
        }
        Ok(())
    }

    /// One of the built-in `drover.leader.*` handlers (`join`, `leave`, `resign`), for worker
    /// `from`; argument `key`.
    fn leader_request(&self, from: WorkerId, name: &str, args: &Value) -> Result<Value, RequestError> {
        if from == 0 {
            return Err(error(
                RequestErrorCode::BadRequest,
                "only a worker takes part in a leadership; the master reads it with Master::leader",
            ));
        }
        let key = args
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| error(RequestErrorCode::BadRequest, format!("{name}: `key` must be a string")))?;
        let op = &name[LEADER_PREFIX.len()..];
        match op {
            "join" => self.elect(|e| e.join(from, key))?,
            "leave" => self.elect(|e| Ok(e.leave(from, key)))?,
            "resign" => self.elect(|e| Ok(e.resign(from, key)))?,
            _ => {
                return Err(error(
                    RequestErrorCode::NoSuchHandler,
                    format!("the master has no handler {name:?} (join, leave, resign)"),
                ))
            }
        }
        let (leader, term) = self.leader(key).unwrap_or((None, 0));
        Ok(json!({ "leader": leader, "term": term }))
    }

    /// Every leadership of this master.
    pub(crate) fn leaderships(&self) -> Vec<super::election::Leadership> {
        self.elections.lock().unwrap_or_else(|p| p.into_inner()).all()
    }

    /// Who leads `key`, at which term.
    pub(crate) fn leader(&self, key: &str) -> Option<(Option<WorkerId>, u64)> {
        self.elections.lock().unwrap_or_else(|p| p.into_inner()).leader(key)
    }

    /// Worker `id` became STARTED (`true`) or left that status or is being retired (`false`).
    pub(crate) fn worker_serving(&self, id: WorkerId, serving: bool) {
        let _ = self.elect(|e| Ok(if serving { e.serving(id) } else { e.not_serving(id) }));
    }

    /// Worker `id`'s process is gone: its handlers with it; what it was asked fails
    /// (`target_gone`); what it asked is answered to nobody.
    pub(crate) fn worker_gone(&self, id: WorkerId) {
        // Reaped: whatever it held as leader is closed, so the next may be elected now.
        let _ = self.elect(|e| Ok(e.gone(id)));
        self.lock_shared().watches.retain(|_, w| w.worker != id);
        if let Some(remote) = self.remote.clone() {
            let abandoned: Vec<(u64, String)> = {
                let mut rc = self.lock_remote_cache();
                let tokens: Vec<u64> = rc
                    .loads
                    .iter()
                    .filter(|(_, (_, w))| *w == id)
                    .map(|(t, _)| *t)
                    .collect();
                tokens
                    .into_iter()
                    .filter_map(|t| rc.loads.remove(&t).map(|(key, _)| (t, key)))
                    .collect()
            };
            for (token, key) in abandoned {
                let remote = remote.clone();
                tokio::spawn(async move {
                    let gone = error(
                        RequestErrorCode::TargetGone,
                        format!("the loader of {key:?} (worker {id}) exited before it filled it"),
                    );
                    if let Err(e) = remote.cache_fail(&key, token, &gone).await {
                        tracing::debug!(error = %e, "an abandoned load could not be failed in Redis");
                    }
                });
            }
        }
        // Its loads will never be filled: their waiters fail now, and the next caller loads.
        let abandoned: Vec<(String, u64)> = self
            .lock_shared()
            .cache
            .iter()
            .filter_map(|(key, e)| match e {
                CacheEntry::Loading { token, loader, .. } if *loader == id => Some((key.clone(), *token)),
                _ => None,
            })
            .collect();
        for (key, token) in abandoned {
            self.end_load(
                &key,
                token,
                Err(error(
                    RequestErrorCode::TargetGone,
                    format!("the loader of {key:?} (worker {id}) exited before it filled it"),
                )),
            );
        }
        let orphaned: Vec<u64> = {
            let mut table = self.lock();
            table.handlers.remove(&id);
            table
                .pending
                .iter()
                .filter(|(_, p)| p.target == id)
                .map(|(n, _)| *n)
                .collect()
        };
        for number in orphaned {
            self.complete(
                number,
                None,
                Err(error(
                    RequestErrorCode::TargetGone,
                    format!("worker {id} exited before it answered"),
                )),
            );
        }
    }
}

/// A store request's `path` and `ttl_ms`.
pub(crate) fn store_args(args: &Value) -> Result<(String, Option<Duration>), RequestError> {
    let path = args.get("path").and_then(Value::as_str).unwrap_or_default().to_string();
    let ttl = match args.get("ttl_ms") {
        None | Some(Value::Null) => None,
        Some(v) => Some(Duration::from_millis(v.as_u64().filter(|ms| *ms > 0).ok_or_else(
            || {
                error(
                    RequestErrorCode::BadRequest,
                    format!("`ttl_ms` must be a positive integer, got {v}"),
                )
            },
        )?)),
    };
    Ok((path, ttl))
}

/// The cache kept in Redis (PROTOCOL.md §5.7 with the Redis backend): the same operations; the
/// waiting is here, per master.
impl Router {
    fn lock_remote_cache(&self) -> MutexGuard<'_, RemoteCache> {
        self.remote_cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remote_cache_request(
        self: &Arc<Self>,
        remote: Arc<dyn StoreBackend>,
        asker: Asker,
        from: WorkerId,
        name: &str,
        args: Value,
    ) {
        let op = name[CACHE_PREFIX.len()..].to_string();
        let key = match cache_key(&args) {
            Ok(key) => key,
            Err(e) => return self.answer(asker, Err(e)),
        };
        let millis = |field: &str| cache_millis(&args, field);
        let token = args.get("token").and_then(Value::as_u64).unwrap_or(0);
        let router = self.clone();
        match op.as_str() {
            "get_or_load" => {
                let load_timeout = match millis("load_timeout_ms") {
                    Ok(t) => t.unwrap_or(DEFAULT_LOAD_TIMEOUT),
                    Err(e) => return self.answer(asker, Err(e)),
                };
                tokio::spawn(async move {
                    match remote.cache_get_or_load(&key, load_timeout).await {
                        Ok(Some(answer)) => {
                            if let Some(token) = answer.get("load").and_then(Value::as_u64) {
                                router.lock_remote_cache().loads.insert(token, (key, from));
                            }
                            router.answer(asker, Ok(answer));
                        }
                        Ok(None) => router.wait_for_remote_load(remote, key, asker, load_timeout),
                        Err(e) => router.answer(asker, Err(e)),
                    }
                });
            }
            "fill" => {
                let ttl = match millis("ttl_ms") {
                    Ok(t) => t,
                    Err(e) => return self.answer(asker, Err(e)),
                };
                let value = args.get("value").cloned().unwrap_or(Value::Null);
                tokio::spawn(async move {
                    let filled = remote.cache_fill(&key, token, &value, ttl).await;
                    router.lock_remote_cache().loads.remove(&token);
                    router.answer(asker, filled.map(|f| json!(f)));
                });
            }
            "fail" => {
                let message = args
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the loader failed")
                    .to_string();
                tokio::spawn(async move {
                    let failed = remote
                        .cache_fail(&key, token, &error(RequestErrorCode::HandlerFailed, message))
                        .await;
                    router.lock_remote_cache().loads.remove(&token);
                    router.answer(asker, failed.map(|f| json!(f)));
                });
            }
            "delete" => {
                tokio::spawn(async move {
                    let removed = remote.cache_delete(&key).await;
                    router.answer(asker, removed.map(|r| json!(r)));
                });
            }
            _ => self.answer(
                asker,
                Err(error(
                    RequestErrorCode::NoSuchHandler,
                    format!("the master has no handler {name:?} (get_or_load, fill, fail, delete)"),
                )),
            ),
        }
    }

    /// Queues `asker` for another caller's load of `key`; the first waiter of this master
    /// starts a task that looks at the key every [`crate::store::redis::CACHE_POLL`] (a published
    /// outcome answers sooner), until the load ends or `load_timeout` passed.
    fn wait_for_remote_load(
        self: &Arc<Self>,
        remote: Arc<dyn StoreBackend>,
        key: String,
        asker: Asker,
        load_timeout: Duration,
    ) {
        {
            let mut rc = self.lock_remote_cache();
            let waiting = rc.waiters.entry(key.clone()).or_default();
            if waiting.len() >= MAX_CACHE_WAITERS {
                drop(rc);
                return self.answer(
                    asker,
                    Err(error(
                        RequestErrorCode::Overloaded,
                        format!("{MAX_CACHE_WAITERS} callers already wait for {key:?}"),
                    )),
                );
            }
            waiting.push(asker);
            if waiting.len() > 1 {
                return;
            }
        }
        let router = Arc::downgrade(self);
        tokio::spawn(async move {
            let give_up = tokio::time::Instant::now() + load_timeout;
            loop {
                tokio::time::sleep(crate::store::redis::CACHE_POLL).await;
                let Some(router) = router.upgrade() else { return };
                if !router.lock_remote_cache().waiters.contains_key(&key) {
                    return;
                }
                match remote.cache_poll(&key).await {
                    Ok(Some(outcome)) => return router.remote_load_ended(&key, outcome),
                    Ok(None) | Err(_) if tokio::time::Instant::now() < give_up => {}
                    Ok(None) | Err(_) => {
                        let message = format!("the load of {key:?} did not end within {} ms", load_timeout.as_millis());
                        return router.remote_load_ended(&key, Err(error(RequestErrorCode::Timeout, message)));
                    }
                }
            }
        });
    }

    /// A load of `key` ended (told by Redis, or seen by a waiter's poll): every waiter here hears.
    fn remote_load_ended(&self, key: &str, outcome: Result<Value, RequestError>) {
        let waiters = self.lock_remote_cache().waiters.remove(key).unwrap_or_default();
        for waiter in waiters {
            let answer = match &outcome {
                Ok(value) => Ok(json!({ "value": value })),
                Err(e) => Err(e.clone()),
            };
            self.answer(waiter, answer);
        }
    }
}

/// A cache request's `key` (either backend): a string of 1 to 1024 bytes.
fn cache_key(args: &Value) -> Result<String, RequestError> {
    match args.get("key").and_then(Value::as_str) {
        Some(key) if !key.is_empty() && key.len() <= 1024 => Ok(key.to_string()),
        _ => Err(error(
            RequestErrorCode::BadRequest,
            "`key` must be a string of 1 to 1024 bytes",
        )),
    }
}

/// A cache request's optional duration `field` in milliseconds (either backend): positive, and
/// capped at six request timeouts.
fn cache_millis(args: &Value, field: &str) -> Result<Option<Duration>, RequestError> {
    match args.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|ms| *ms > 0)
            .map(|ms| Some(Duration::from_millis(ms).min(request::MAX_REQUEST_TIMEOUT.saturating_mul(6))))
            .ok_or_else(|| {
                error(
                    RequestErrorCode::BadRequest,
                    format!("`{field}` must be a positive integer, got {v}"),
                )
            }),
    }
}
