//! What workers tell about themselves, and what the master does with it, from C (PROTOCOL.md
//! §5.8, core's `BusSender::set_app_status`, `Master::gather_statuses`, `Master::recycle_when`):
//! a worker's application status and counters, its status functions (cluster2's status
//! registry), the master's gathering of them, and the master's recycle predicate.
//!
//! Two of these are C callbacks, the only ones drover calls: a status function, run on a thread
//! of the bus's when the master gathers, and the recycle predicate, run on a thread of the
//! master's at each recycling check. Neither may call drover functions on the object that calls
//! it (they would wait for the thread they run on).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_void, CStr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use drover_core::bus::IncomingRequest;
use drover_core::protocol::wire::check_app_status;
use drover_core::request::{self, STATUS_FUNCTION_PREFIX};
use drover_core::{BusEvent, MessageBus, WorkerInfo};
use serde_json::Value;

use crate::bus::{drover_bus, BUSES};
use crate::error::{drover_result, Failure};
use crate::ffi::{ffi_body, owned_c_string, take_malloced, try_obj, try_out, try_str, UserData};
use crate::mailbox::Source;
use crate::master::{drover_master, MASTERS};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A status function: returns what it reports about the worker as JSON text allocated with
/// `malloc()` (drover frees it with `free()`), or NULL when it cannot say (the master then
/// shows an error in its place). `name` is the function's name as registered (e.g. "memory"),
/// valid during the call; `user` is the pointer given with it.
///
/// Called on a thread of drover's (not the program's), whenever the master gathers statuses,
/// possibly while the program's own threads run, and possibly concurrently with other status
/// functions: whatever it reads must be safe to read from there. It must not call
/// `drover_bus_*` functions (the bus may be waiting for it). `user` must stay valid until the
/// function is replaced or removed, or the bus freed.
pub type drover_status_fn = Option<unsafe extern "C" fn(user: *mut c_void, name: *const c_char) -> *mut c_char>;

type StatusFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_char;

/// The handlers a C worker declared to its master: those it answers itself
/// (`drover_bus_set_handlers()`) and its status functions, which drover answers by calling them.
#[derive(Default)]
pub(crate) struct Declared {
    /// Held while a change is told to the master, so that changes reach it in their order.
    order: Mutex<()>,
    /// Held only briefly: the bus's reader looks status functions up here, and must never wait
    /// for a change being told (the bus's one thread would then wait for itself).
    state: Mutex<DeclaredState>,
}

#[derive(Default, Clone)]
pub(crate) struct DeclaredState {
    handlers: Vec<String>,
    /// By handler name (`status.` and the function's name).
    statuses: BTreeMap<String, (StatusFn, UserData)>,
}

impl DeclaredState {
    fn names(&self) -> BTreeSet<String> {
        self.handlers.iter().chain(self.statuses.keys()).cloned().collect()
    }
}

impl Declared {
    /// Applies `edit` and tells the master the whole list; if the list is refused (past
    /// [`request::MAX_HANDLERS`]) or cannot be sent, the previous one is kept, as the master keeps it.
    pub(crate) fn update(
        &self,
        bus: &crate::bus::BusState,
        edit: impl FnOnce(&mut DeclaredState),
    ) -> Result<(), Failure> {
        let _order = lock(&self.order);
        let (previous, names) = {
            let mut state = lock(&self.state);
            let previous = state.clone();
            edit(&mut state);
            (previous, state.names())
        };
        let told = if names.len() > request::MAX_HANDLERS {
            Err(Failure::new(
                drover_result::InvalidArgument,
                format!(
                    "{} handlers and status functions together: at most {}",
                    names.len(),
                    request::MAX_HANDLERS
                ),
            ))
        } else {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            bus.runtime
                .block_on(bus.sender.set_handlers(&names))
                .map_err(Failure::from)
        };
        if told.is_err() {
            *lock(&self.state) = previous;
        }
        told
    }

    /// Replaces the handlers the program answers itself.
    pub(crate) fn set_handlers(&self, bus: &crate::bus::BusState, handlers: Vec<String>) -> Result<(), Failure> {
        self.update(bus, |state| state.handlers = handlers)
    }

    fn status_function(&self, handler: &str) -> Option<(StatusFn, UserData)> {
        lock(&self.state).statuses.get(handler).copied()
    }
}

/// A worker's events as the program reads them: a request for one of its status functions is
/// answered here, by calling it, and never reaches the program's queue.
pub(crate) struct BusSource {
    pub(crate) bus: MessageBus,
    pub(crate) declared: Arc<Declared>,
}

impl Source for BusSource {
    type Item = BusEvent;

    async fn next(&mut self) -> Option<BusEvent> {
        loop {
            match self.bus.recv().await? {
                BusEvent::Request(request) => match self.declared.status_function(&request.name) {
                    Some(function) => answer_status(function, request),
                    None => return Some(BusEvent::Request(request)),
                },
                event => return Some(event),
            }
        }
    }

    fn is_last(event: &BusEvent) -> bool {
        matches!(event, BusEvent::Closed(_))
    }
}

/// Calls the status function on a blocking thread (a slow one holds no reader) and answers.
fn answer_status((function, user): (StatusFn, UserData), request: IncomingRequest) {
    let name = request
        .name
        .strip_prefix(STATUS_FUNCTION_PREFIX)
        .unwrap_or(&request.name)
        .to_string();
    tokio::spawn(async move {
        let outcome = tokio::task::spawn_blocking(move || call_status(function, user, &name))
            .await
            .unwrap_or_else(|e| Err(format!("the status function could not run: {e}")));
        // The master gone, there is no one to tell.
        let _ = request.reply(outcome).await;
    });
}

fn call_status(function: StatusFn, user: UserData, name: &str) -> Result<Value, String> {
    let c_name = crate::error::c_string_lossy(name);
    // SAFETY: the program's function with the documented signature; `c_name` lives for the call.
    let text = unsafe { function(user.0, c_name.as_ptr()) };
    // SAFETY: per the callback's contract, NULL or a `malloc`ed string drover now owns.
    match unsafe { take_malloced(text) } {
        None => Err(format!("the status function {name:?} returned NULL")),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| format!("the status function {name:?} returned text that is not JSON: {e}")),
    }
}

/// Registers (or replaces) this worker's status function `name` (cluster2's status registry):
/// when the master gathers statuses (`drover_master_gather_statuses()`, `drover status --app`),
/// drover calls `function(user, name)` and hands the master its JSON. `function` NULL removes
/// it. `name` is 1 to 121 bytes without control characters (it is declared to the master as the
/// handler "status.NAME"); status functions and the handlers of `drover_bus_set_handlers()` are
/// at most 256 together. DROVER_RESULT_INVALID_ARGUMENT for a bad name or past that bound;
/// DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_set_status_function(
    bus: *const drover_bus,
    name: *const c_char,
    function: drover_status_fn,
    user: *mut c_void,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let short = try_str!(name);
        if short.is_empty() {
            return Err(Failure::new(drover_result::InvalidArgument, "`name` is empty"));
        }
        let handler = format!("{STATUS_FUNCTION_PREFIX}{short}");
        request::check_handler_name(&handler)
            .map_err(|e| Failure::new(drover_result::InvalidArgument, format!("`name`: {}", e.message)))?;
        let declared = state.declared.clone();
        declared.update(&state, |declared| match function {
            Some(function) => {
                declared.statuses.insert(handler, (function, UserData(user)));
            }
            None => {
                declared.statuses.remove(&handler);
            }
        })
    })
}

/// Publishes this worker's application status (clusterfy's "IDLE" / "PROCESSING": at most 64
/// bytes without control characters; NULL clears it) and counters (`counters_json`: a JSON
/// object of at most 32 finite numbers, names of 1 to 64 bytes, e.g. `{"jobs":3,"queue":12}`;
/// NULL: none), shown beside its lifecycle status by the master (`drover_worker_info`'s
/// `app_status`, `drover_master_worker_counters_json()`, `drover status`, `/metrics`) and seen by
/// its recycle predicate. Each call replaces the previous status and counters. Returns once
/// written to the channel. DROVER_RESULT_INVALID_ARGUMENT naming what is wrong (nothing is sent);
/// DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_set_app_status(
    bus: *const drover_bus,
    status: *const c_char,
    counters_json: *const c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let status = if status.is_null() { None } else { Some(try_str!(status)) };
        let counters: BTreeMap<String, f64> = if counters_json.is_null() {
            BTreeMap::new()
        } else {
            serde_json::from_str(try_str!(counters_json)).map_err(|e| {
                Failure::new(
                    drover_result::InvalidArgument,
                    format!("`counters_json` must be a JSON object of numbers: {e}"),
                )
            })?
        };
        check_app_status(status, &counters).map_err(|why| Failure::new(drover_result::InvalidArgument, why))?;
        Ok(state.runtime.block_on(state.sender.set_app_status(status, &counters))?)
    })
}

/// Gathers every worker's status functions: each one registered on a live worker is called,
/// concurrently, within `timeout_ms` milliseconds (negative: 30 s; at most 600 s). On success
/// `*out_json` receives a JSON object by worker id, then by function name:
/// `{"1": {"memory": {...}, "queue": 12}, "2": {"memory": {"error": {"code": "timeout",
/// "message": "..."}}}}` (a function that failed or did not answer in time has its error in its
/// place; `{}` when no worker has any), owned by the caller and freed with
/// `drover_string_free()`. Blocks the calling thread until then.
#[no_mangle]
pub extern "C" fn drover_master_gather_statuses(
    master: *const drover_master,
    timeout_ms: i64,
    out_json: *mut *mut c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let out = try_out!(out_json);
        let timeout = request::timeout_of(u64::try_from(timeout_ms).ok());
        let gathered = state.runtime.block_on(state.master.gather_statuses(timeout));
        out.write(owned_c_string(&gathered.to_string()));
        Ok(())
    })
}

/// What the recycle predicate sees of one STARTED worker, at one recycling check. The strings are
/// drover's, valid during the call only.
#[repr(C)]
#[derive(Debug)]
pub struct drover_worker_stats {
    /// `sizeof(drover_worker_stats)` as this library knows it: fields past it are not there.
    pub size: usize,
    /// The worker's id.
    pub id: u64,
    /// Its process.
    pub pid: u32,
    /// Its instance index in the group, 0..count.
    pub instance: u32,
    /// How long since it reported STARTED, milliseconds.
    pub uptime_ms: u64,
    /// Resident memory from its last heartbeat or memory check, bytes; 0 if unknown.
    pub rss_bytes: u64,
    /// How many times it was restarted.
    pub restarts: u32,
    /// The reload generation it belongs to.
    pub generation: u64,
    /// Its name (configured, or "<group>-<id>").
    pub name: *const c_char,
    /// The application status it published (`drover_bus_set_app_status()`); NULL if none.
    pub app_status: *const c_char,
    /// The counters it published, as a JSON object ("{}" if none): whatever the worker reports
    /// (event-loop lag, GC counts, queue length...).
    pub counters_json: *const c_char,
    /// The CPU time (user and system) its process has used since it was spawned, milliseconds,
    /// from `/proc`; 0 if unknown.
    pub cpu_ms: u64,
}

/// A recycle predicate: returns true to have the master replace this worker, make-before-break
/// (a new process is started and reports STARTED before this one is stopped), optionally
/// writing why into `reason` (`reason_size` bytes, NUL-terminated; it is in the
/// DROVER_EVENT_KIND_RECYCLING event's text). `user` is the pointer given with it.
///
/// Called on a thread of drover's (not the program's), once per STARTED worker at each recycling
/// check (every `memoryCheckInterval`, 5 s unless set with `drover_config_set_json()`), oldest
/// first, until one is chosen: one worker is replaced at a time. It must not call
/// `drover_master_*` functions of this master, and must be safe to call while the program's own
/// threads run. `user` must stay valid until the predicate is replaced or removed, or the master
/// freed.
pub type drover_recycle_predicate = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        stats: *const drover_worker_stats,
        reason: *mut c_char,
        reason_size: usize,
    ) -> bool,
>;

/// The room for a predicate's reason, NUL included.
const REASON_BYTES: usize = 256;

fn ask_predicate(
    predicate: unsafe extern "C" fn(*mut c_void, *const drover_worker_stats, *mut c_char, usize) -> bool,
    user: UserData,
    info: &WorkerInfo,
) -> Option<String> {
    let name = crate::error::c_string_lossy(&info.name);
    let app_status = info.app_status.as_deref().map(crate::error::c_string_lossy);
    let counters = crate::error::c_string_lossy(&serde_json::to_string(&info.counters).unwrap_or_default());
    let uptime = info
        .started_at
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    let stats = drover_worker_stats {
        size: std::mem::size_of::<drover_worker_stats>(),
        id: info.id,
        pid: info.pid,
        instance: info.instance,
        uptime_ms: uptime.as_millis().min(u128::from(u64::MAX)) as u64,
        rss_bytes: info.rss_bytes.unwrap_or(0),
        restarts: info.restarts,
        generation: info.generation,
        name: name.as_ptr(),
        app_status: app_status.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        counters_json: counters.as_ptr(),
        cpu_ms: drover_core::cpu_seconds(info.pid).map_or(0, |s| (s * 1000.0) as u64),
    };
    let mut reason = [0 as c_char; REASON_BYTES];
    // SAFETY: the program's function with the documented signature; `stats` and its strings and
    // `reason` (REASON_BYTES writable bytes) live for the call.
    let replace = unsafe { predicate(user.0, &stats, reason.as_mut_ptr(), REASON_BYTES) };
    if !replace {
        return None;
    }
    // A predicate that filled the buffer without a NUL still ends within it.
    reason[REASON_BYTES - 1] = 0;
    // SAFETY: NUL-terminated within the array, just ensured.
    let reason = unsafe { CStr::from_ptr(reason.as_ptr()) }.to_string_lossy();
    Some(if reason.is_empty() {
        "the C predicate asked for it".to_string()
    } else {
        reason.into_owned()
    })
}

/// Sets the master's recycle predicate (replacing one set before; NULL removes it): at each
/// recycling check, `predicate(user, stats, reason, reason_size)` is asked about each STARTED
/// worker (its uptime, resident memory from its last heartbeat, CPU time, restarts, and the
/// application status and counters it publishes) and the master replaces, make-before-break, the first for which it returns true,
/// with a DROVER_EVENT_KIND_RECYCLING event giving the reason. Takes effect from the next start
/// or operation: set it before `drover_master_start()`. See `drover_recycle_predicate` for the
/// thread it runs on.
#[no_mangle]
pub extern "C" fn drover_master_recycle_when(
    master: *const drover_master,
    predicate: drover_recycle_predicate,
    user: *mut c_void,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let user = UserData(user);
        match predicate {
            Some(predicate) => state
                .master
                .recycle_when(move |info| ask_predicate(predicate, user, info)),
            None => state.master.recycle_when(|_| None),
        }
        Ok(())
    })
}

/// The counters worker `id` last published (`drover_bus_set_app_status()`), as a JSON object
/// (`{}` if none): on success `*out_json` receives it, owned by the caller and freed with
/// `drover_string_free()`. DROVER_RESULT_UNKNOWN_WORKER if no worker has this id.
#[no_mangle]
pub extern "C" fn drover_master_worker_counters_json(
    master: *const drover_master,
    id: u64,
    out_json: *mut *mut c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let out = try_out!(out_json);
        let info = state
            .master
            .worker(id)
            .ok_or_else(|| Failure::new(drover_result::UnknownWorker, format!("no worker with id {id}")))?;
        let json = serde_json::to_string(&info.counters)
            .map_err(|e| Failure::new(drover_result::Io, format!("cannot encode the counters: {e}")))?;
        out.write(owned_c_string(&json));
        Ok(())
    })
}
