//! `drover_master`: a group of identical workers, supervised by core's `Master`, driven from C.
//!
//! Each master owns a tokio runtime (two worker threads named `drover-master`) on which core's
//! actors run; blocking calls (`start`, `rescale`, shutdowns...) wait on the calling thread. A task
//! on that runtime moves every event of the master into a mailbox, from which
//! `drover_master_next_event` pops on the caller's thread; the mailbox's eventfd is the pollable fd.

use std::ffi::{c_char, c_int};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use drover_core::{
    Event, Events, ExitReason, Master, MasterStatus, SignalAction, Subject, WorkerExit, WorkerInfo, WorkerStatus,
};
use serde_json::value::RawValue;
use tokio::runtime::Runtime;

use crate::config::{self, drover_config};
use crate::error::{drover_result, Failure};
use crate::ffi::{
    clear_event, ffi_body, new_runtime, owned_c_string, sized_array, timeout_from_ms, try_obj, try_out, try_str,
    Registry, SizedOut, SizedStruct,
};
use crate::mailbox::{Mailbox, Source};

/// A master: a group of identical worker processes under supervision. Underneath: drover's
/// `Master`, with its own runtime threads and event queue.
///
/// Create it with `drover_master_new()`, free it with `drover_master_free()` (which kills any
/// worker still running). Every function on a master may be called from any thread, concurrently;
/// only `drover_master_free()` must not race with other calls on the same master.
#[derive(Default)]
pub struct drover_master {
    _private: u8,
}

/// A worker's status, as it reports it over the MessageBus (the protocol's numbers).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum drover_worker_status {
    /// Spawned; nothing reported yet.
    Initialized = 1,
    /// Bootstrapping (optional report).
    Starting = 2,
    /// Ready to serve: the only status that counts as started.
    Started = 3,
    /// Asked to stop, finishing in-flight work (optional report).
    Stopping = 4,
    /// No longer taking work.
    Stopped = 5,
    /// Releasing its resources (optional report).
    ShuttingDown = 6,
    /// Released everything, about to exit.
    ShuttedDown = 7,
    /// Failed: it said so, broke the protocol, or missed a deadline.
    Failed = 8,
}

/// The status of a master as a whole.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum drover_master_status {
    /// Created; not started.
    Initialized = 1,
    /// `drover_master_start()` is running.
    Starting = 2,
    /// Every worker reported STARTED.
    Started = 3,
    /// A graceful reload is running.
    Reloading = 4,
    /// A shutdown is running.
    Stopping = 5,
    /// Start failed and every worker it spawned is reaped; start may be called again.
    Stopped = 6,
    /// Shut down for good: every worker is reaped.
    ShutDown = 7,
    /// Workers crashed more often than the restart budget allows; the master stopped restarting
    /// them. A reload or a shutdown follows.
    Failed = 8,
}

impl drover_master_status {
    /// Every status, in the order of their numbers (core's `MasterStatus::code`).
    const ALL: [drover_master_status; 8] = [
        drover_master_status::Initialized,
        drover_master_status::Starting,
        drover_master_status::Started,
        drover_master_status::Reloading,
        drover_master_status::Stopping,
        drover_master_status::Stopped,
        drover_master_status::ShutDown,
        drover_master_status::Failed,
    ];
}

/// How a worker process ended.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum drover_exit_kind {
    /// It has not ended (or the event is not an exit).
    None = 0,
    /// It called exit(0).
    NormalExit = 1,
    /// It exited with a non-zero code.
    AbnormalExit = 2,
    /// A signal ended it (from anyone: the master, the kernel, another process).
    ExternalSignal = 3,
}

/// What a `drover_event` is about.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum drover_event_kind {
    /// Not an event (a zeroed or cleared `drover_event`).
    None = 0,
    /// A worker's status changed: `from` and `to` are `drover_worker_status` values. A new
    /// process is announced as a STATUS event with `from` and `to` both INITIALIZED (its `json`
    /// says `"event":"spawned"`).
    Status = 1,
    /// A worker sent a message: `data` is its JSON.
    Message = 2,
    /// A worker process ended: `exit` says how.
    Exit = 3,
    /// A worker broke the protocol: `text` says how.
    ProtocolError = 4,
    /// The master gave up on a worker (start timeout, protocol error, reported FAILED, missed
    /// heartbeats, spawn error): `text` says why. `pid` is 0 if no process was created.
    Failed = 5,
    /// A worker sent a heartbeat: `rss_bytes` (0 if it did not say).
    Heartbeat = 6,
    /// The master restarts a worker that exited, after `delay_ms`; `restarts` counts them.
    Restarting = 7,
    /// The master replaces a worker that is too old or too big: `text` says why.
    Recycling = 8,
    /// More than `restarts` restarts within `delay_ms`: the master stopped restarting.
    GaveUp = 9,
    /// The master's status changed: `from` and `to` are `drover_master_status` values.
    MasterStatus = 10,
    /// This master's event queue was full (the program read too slowly): events were dropped
    /// here, in their place in the stream; `text` and `json` (`count`) say how many. Only
    /// messages, heartbeats and protocol errors are ever dropped for room.
    Dropped = 11,
    /// A request for a handler the program registered with `drover_master_handle()`:
    /// `request_id` names it, `name` is the handler, `worker_id` the asking worker (0: this
    /// program itself, through `drover_master_request()`), `data` the arguments as JSON. Answer it
    /// with `drover_master_respond()`; one left unanswered fails at its asker with a timeout.
    Request = 12,
    /// The group went out of rotation (`to` 0) or back in (`to` 1): `drover_master_mark_down()`,
    /// `drover_master_mark_up()` or an ECV monitor; `text` says why, `json` has `manual` and
    /// `monitor`. Its workers run on either way.
    Rotation = 13,
    /// A worker answered a reconfigure (`drover_master_reconfigure()`): `to` is 1 if it applied
    /// the config, 0 if it refused it; `data` is the refusal's reason (NULL when applied);
    /// `json` has `version` and `error`. A worker started after the reconfigure reports it
    /// applied too. (Added in 0.4: a program compiled with an older header saw these as NONE.)
    Reconfigured = 14,
    /// Every worker has exited and none is being restarted (the restart policy let them go):
    /// the group serves nothing until a start, rescale or reload. Emitted once each time the
    /// group empties. (Added in 0.4: a program compiled with an older header saw it as NONE.)
    NoWorkerLeft = 15,
}

/// What `drover_master_handle_signal()` did.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum drover_signal_action {
    /// Nothing (the signal means nothing to drover, or nothing to do in this status).
    Ignore = 1,
    /// A graceful reload.
    Reload = 2,
    /// A graceful shutdown.
    GracefulShutdown = 3,
    /// A hard shutdown.
    HardShutdown = 4,
}

/// How a worker process ended. All fields are 0 while it runs.
///
/// Embedded in `drover_event` and `drover_worker_info`, so its layout is fixed for this ABI
/// version: what a later version learns about an exit goes at the end of those structs.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct drover_exit {
    /// How it ended.
    pub kind: drover_exit_kind,
    /// The exit code (NORMAL_EXIT, ABNORMAL_EXIT); -1 for a signal.
    pub code: i32,
    /// The signal number (EXTERNAL_SIGNAL, e.g. 9); 0 otherwise.
    pub signal: i32,
    /// Whether the kernel wrote a core dump.
    pub core_dumped: bool,
    /// Whether the master had asked it to end (stop/quit, a shutdown, a rescale, a restart).
    /// An exit(0) nobody asked for is false.
    pub requested: bool,
    /// The last status it had (a `drover_worker_status`).
    pub last_status: u32,
}

/// One worker, as `drover_master_workers()` and `drover_master_get_worker()` report it.
/// Plain data: nothing in it needs freeing.
///
/// Set `size` to `sizeof(drover_worker_info)` before passing one to `drover_master_get_worker()`
/// (`drover_worker_info info = { .size = sizeof(drover_worker_info) };`): later versions of
/// drover add fields at the end, and `size` says which ones your program has.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct drover_worker_info {
    /// `sizeof(drover_worker_info)` as the program was compiled: set by the caller, kept by drover.
    pub size: usize,
    /// The worker's id: unique within its master, never reused, stable across restarts.
    pub id: u64,
    /// Its current (or last) process.
    pub pid: u32,
    /// Its last status (a `drover_worker_status`).
    pub status: u32,
    /// Whether the process is still running (not yet reaped).
    pub alive: bool,
    /// Whether the master gave up on the process (a DROVER_EVENT_KIND_FAILED event said why).
    pub failed: bool,
    /// How many times this worker was restarted (a new process under the same id).
    pub restarts: u32,
    /// The reload generation it belongs to (0 for the first start).
    pub generation: u64,
    /// When the process was spawned, milliseconds since the Unix epoch.
    pub spawned_at_ms: u64,
    /// When it reported STARTED, milliseconds since the Unix epoch; 0 if it has not.
    pub started_at_ms: u64,
    /// Resident memory from its last heartbeat or memory check, bytes; 0 if unknown.
    pub rss_bytes: u64,
    /// How it ended, once it has (`exit.kind` is DROVER_EXIT_KIND_NONE while it runs).
    pub exit: drover_exit,
    /// Its instance index in the group, 0..count (`DROVER_INSTANCE`): the place it fills, kept by
    /// a restarted or recycled worker. (Added in 0.3, with `name` and `app_status`.)
    pub instance: u32,
    /// Its name, NUL-terminated: its configured name, else "<group>-<id>" (always fits).
    pub name: [c_char; 256],
    /// The application status it last published (`drover_bus_set_app_status()`, at most 64
    /// bytes), NUL-terminated; "" if none. Its counters: `drover_master_worker_counters_json()`.
    pub app_status: [c_char; 65],
}

/// One event of a master, filled in by `drover_master_next_event()`.
///
/// Which fields mean something depends on `kind` (see `drover_event_kind`); the others are 0 or
/// NULL. The three strings are owned by the event: release them with `drover_event_clear()`
/// before the event is reused or goes out of scope (a zero-initialised event needs no clearing).
///
/// Set `size` before the first `drover_master_next_event()`:
/// `drover_event event = { .size = sizeof(drover_event) };` (C++: `drover_event event{};
/// event.size = sizeof event;`). Later versions of drover add fields at the end, and `size` says
/// which ones your program has; drover keeps it, `drover_event_clear()` included.
#[repr(C)]
#[derive(Debug)]
pub struct drover_event {
    /// `sizeof(drover_event)` as the program was compiled: set by the caller, kept by drover.
    pub size: usize,
    /// What happened.
    pub kind: drover_event_kind,
    /// The worker; 0 for MASTER_STATUS and GAVE_UP.
    pub worker_id: u64,
    /// The worker's process; 0 when there is none.
    pub pid: u32,
    /// STATUS: the previous `drover_worker_status`; MASTER_STATUS: the previous `drover_master_status`.
    pub from: u32,
    /// STATUS: the new `drover_worker_status`; MASTER_STATUS: the new `drover_master_status`.
    pub to: u32,
    /// EXIT: how the process ended.
    pub exit: drover_exit,
    /// RESTARTING: this worker's restart count including this one; GAVE_UP: restarts in the window.
    pub restarts: u32,
    /// RESTARTING: the delay before the new process; GAVE_UP: the window. Milliseconds.
    pub delay_ms: u64,
    /// HEARTBEAT: the worker's resident memory in bytes, 0 if it did not say.
    pub rss_bytes: u64,
    /// MESSAGE: the message, as JSON text. NULL for other kinds. Owned by the event.
    pub data: *mut c_char,
    /// Always: the event in one line of English (e.g. "worker 2 (pid 4121) exited: killed by
    /// SIGKILL (9) in status STARTED, unasked"). Owned by the event.
    pub text: *mut c_char,
    /// Always: the whole event in drover's versioned JSON form (every field, including ones not in
    /// this struct; `"v"` is the form's version, durations are milliseconds, e.g. `delay_ms`).
    /// Owned by the event.
    pub json: *mut c_char,
    /// REQUEST: the number to answer it under, with `drover_master_respond()`. (Added in 0.2:
    /// a program compiled with an older header has no such field and gets no REQUEST events.)
    pub request_id: u64,
    /// REQUEST: the handler's name. NULL for other kinds. Owned by the event.
    pub name: *mut c_char,
}

/// What waits in a master's mailbox: its events, and requests for the program's handlers.
pub(crate) enum MasterItem {
    Event(Event),
    Request(crate::request::PendingRequest),
}

pub(crate) struct MasterState {
    pub(crate) master: Master,
    pub(crate) events: Arc<Mailbox<MasterItem>>,
    /// Requests for the program's handlers, waiting for `drover_master_respond()`.
    pub(crate) answers: crate::request::Answers,
    /// The ECV monitor `drover_master_monitor_ecv()` runs, if any (dropped before the runtime).
    pub(crate) ecv: std::sync::Mutex<Option<drover_core::EcvGuard>>,
    /// Declared last: dropped after the master, once every worker is reaped.
    pub(crate) runtime: Runtime,
}

impl Drop for MasterState {
    fn drop(&mut self) {
        self.events.close();
        if !self.master.status().is_idle() {
            // No worker outlives its master: kill and reap them before the runtime goes.
            let _ = self.runtime.block_on(self.master.hard_shutdown());
        }
    }
}

pub(crate) static MASTERS: Registry<drover_master, MasterState> = Registry::new("drover_master");

/// Every event of the master, until the master is gone.
impl Source for Events {
    type Item = MasterItem;

    async fn next(&mut self) -> Option<MasterItem> {
        self.recv().await.map(MasterItem::Event)
    }
}

/// A message from C: checked as every peer decodes JSON, then sent as it is (no `Value` built only
/// to be encoded again).
pub(crate) fn parse_message(json: &str) -> Result<Box<RawValue>, Failure> {
    drover_core::protocol::json_text(json.to_string())
        .map_err(|e| Failure::new(drover_result::InvalidArgument, format!("`json` is not valid JSON: {e}")))
}

fn master_status_code(status: MasterStatus) -> drover_master_status {
    // The C enum's numbers are core's `MasterStatus::code`s (a test checks them one by one).
    drover_master_status::ALL
        .into_iter()
        .find(|c| *c as u32 == u32::from(status.code()))
        .unwrap_or(drover_master_status::Initialized)
}

fn worker_status_code(status: WorkerStatus) -> u32 {
    u32::from(status.code())
}

fn millis_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) const NO_EXIT: drover_exit = drover_exit {
    kind: drover_exit_kind::None,
    code: 0,
    signal: 0,
    core_dumped: false,
    requested: false,
    last_status: 0,
};

fn exit_to_c(exit: &WorkerExit) -> drover_exit {
    let (kind, code, signal, core_dumped) = match exit.reason {
        ExitReason::NormalExit { code } => (drover_exit_kind::NormalExit, code, 0, false),
        ExitReason::AbnormalExit { code } => (drover_exit_kind::AbnormalExit, code, 0, false),
        ExitReason::ExternalSignal { signal, core_dumped } => {
            (drover_exit_kind::ExternalSignal, -1, signal, core_dumped)
        }
    };
    drover_exit {
        kind,
        code,
        signal,
        core_dumped,
        requested: exit.requested,
        last_status: worker_status_code(exit.last_status),
    }
}

fn info_to_c(info: &WorkerInfo) -> drover_worker_info {
    drover_worker_info {
        size: std::mem::size_of::<drover_worker_info>(),
        id: info.id,
        pid: info.pid,
        status: worker_status_code(info.status),
        alive: info.is_alive(),
        failed: info.failure.is_some(),
        restarts: info.restarts,
        generation: info.generation,
        spawned_at_ms: millis_since_epoch(info.spawned_at),
        started_at_ms: info.started_at.map_or(0, millis_since_epoch),
        rss_bytes: info.rss_bytes.unwrap_or(0),
        exit: info.exit.as_ref().map_or(NO_EXIT, exit_to_c),
        instance: info.instance,
        name: fixed_c_string(&info.name),
        app_status: fixed_c_string(info.app_status.as_deref().unwrap_or("")),
    }
}

/// `text` in a NUL-terminated array, cut at a character boundary if it does not fit (core's
/// bounds make the names and statuses fit: a group name of at most 200 bytes, a status of 64).
fn fixed_c_string<const N: usize>(text: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    let mut end = text.len().min(N - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    for (slot, byte) in out.iter_mut().zip(text.as_bytes()[..end].iter()) {
        // NUL cannot be in a name or a status (no control characters); it would only cut it.
        *slot = *byte as c_char;
    }
    out
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// An event as C reads it: the fields of its kind, and core's presentation of it (`text`, its
/// `Display`; `json`, its versioned JSON form).
fn event_to_c(event: &Event) -> drover_event {
    let mut out = drover_event {
        size: std::mem::size_of::<drover_event>(),
        kind: drover_event_kind::None,
        worker_id: 0,
        pid: 0,
        from: 0,
        to: 0,
        exit: NO_EXIT,
        restarts: 0,
        delay_ms: 0,
        rss_bytes: 0,
        data: std::ptr::null_mut(),
        text: std::ptr::null_mut(),
        json: std::ptr::null_mut(),
        request_id: 0,
        name: std::ptr::null_mut(),
    };
    if let Subject::Worker { id, pid } = event.subject() {
        (out.worker_id, out.pid) = (id, pid.unwrap_or(0));
    }
    out.kind = match event {
        // C programs count spawns as STATUS events to INITIALIZED (it was so before core had a
        // SPAWNED event); `json` says "spawned".
        Event::Spawned { .. } => {
            out.from = worker_status_code(WorkerStatus::Initialized);
            out.to = worker_status_code(WorkerStatus::Initialized);
            drover_event_kind::Status
        }
        Event::Status { from, to, .. } => {
            out.from = worker_status_code(*from);
            out.to = worker_status_code(*to);
            drover_event_kind::Status
        }
        Event::Message { data, .. } => {
            out.data = owned_c_string(&data.to_string());
            drover_event_kind::Message
        }
        Event::Exit(exit) => {
            out.exit = exit_to_c(exit);
            drover_event_kind::Exit
        }
        Event::ProtocolError { .. } => drover_event_kind::ProtocolError,
        Event::Failed { .. } => drover_event_kind::Failed,
        Event::Heartbeat { rss_bytes, .. } => {
            out.rss_bytes = rss_bytes.unwrap_or(0);
            drover_event_kind::Heartbeat
        }
        Event::Restarting { delay, restarts, .. } => {
            out.restarts = *restarts;
            out.delay_ms = ms(*delay);
            drover_event_kind::Restarting
        }
        Event::Recycling { .. } => drover_event_kind::Recycling,
        Event::GaveUp { restarts, window } => {
            out.restarts = *restarts;
            out.delay_ms = ms(*window);
            drover_event_kind::GaveUp
        }
        Event::MasterStatus { from, to } => {
            out.from = u32::from(from.code());
            out.to = u32::from(to.code());
            drover_event_kind::MasterStatus
        }
        Event::Dropped { .. } => drover_event_kind::Dropped,
        Event::Rotation(rotation) => {
            out.to = u32::from(rotation.in_rotation());
            drover_event_kind::Rotation
        }
        Event::Reconfigured { error, .. } => {
            out.to = u32::from(error.is_none());
            out.data = error.as_deref().map_or(std::ptr::null_mut(), owned_c_string);
            drover_event_kind::Reconfigured
        }
        Event::NoWorkerLeft => drover_event_kind::NoWorkerLeft,
        // A kind newer than this mapping: NONE, with `text` and `json` still describing it.
        _ => drover_event_kind::None,
    };
    out.text = owned_c_string(&event.to_string());
    out.json = owned_c_string(&event.to_json_text());
    out
}

/// Creates a master from a config, validating it first (program found and executable, count,
/// timeouts...): DROVER_RESULT_INVALID_CONFIG names the field otherwise. Nothing is spawned
/// until `drover_master_start()`. The config is copied; it stays owned by the caller.
///
/// Events are recorded from this moment on; read them with `drover_master_next_event()`.
/// On success `*out_master` receives the master, freed with `drover_master_free()`.
#[no_mangle]
pub extern "C" fn drover_master_new(
    config: *const drover_config,
    out_master: *mut *mut drover_master,
) -> drover_result {
    ffi_body!({
        let options = config::snapshot(config, "config")?;
        let out = try_out!(out_master);
        let core_config = options.into_config()?;
        let runtime = new_runtime("drover-master", 2)?;
        let events = Mailbox::for_c()?;
        let master = {
            let _context = runtime.enter();
            Master::new(core_config)?
        };
        events.feed(&runtime, master.events());
        out.write(MASTERS.insert(MasterState {
            master,
            events,
            answers: crate::request::Answers::default(),
            ecv: std::sync::Mutex::new(None),
            runtime,
        }));
        Ok(())
    })
}

/// Frees a master. Workers still running are killed (SIGKILL to their process groups) and reaped
/// first: call `drover_master_graceful_shutdown()` before for a clean stop. Events not read are
/// discarded. NULL is a no-op; a master freed already is DROVER_RESULT_INVALID_OBJECT.
#[no_mangle]
pub extern "C" fn drover_master_free(master: *mut drover_master) -> drover_result {
    ffi_body!({
        if let Some(state) = MASTERS.remove(master, "master")? {
            // Wake threads blocked in next_event on this master; the last holder drops it.
            state.events.close();
        }
        Ok(())
    })
}

/// Spawns the workers and waits until every one reported STARTED, at most `timeout_ms`
/// milliseconds (negative: no limit but the config's start timeout).
///
/// If a worker exits, fails or misses its start timeout, every worker this call spawned is ended
/// and reaped, the master is STOPPED (start may be tried again), and the result is
/// DROVER_RESULT_START_FAILED with a message naming the worker and why.
/// If `timeout_ms` passes first, the result is DROVER_RESULT_TIMEOUT and the start goes on in the
/// background: a DROVER_EVENT_KIND_MASTER_STATUS event tells how it ends (STARTED or STOPPED);
/// `drover_master_graceful_shutdown()` cancels it.
/// DROVER_RESULT_WRONG_STATE unless the master is INITIALIZED or STOPPED.
#[no_mangle]
pub extern "C" fn drover_master_start(master: *mut drover_master, timeout_ms: i64) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let m = state.master.clone();
        // The start is polled here first, not spawned: its checks (a wrong state, a port in
        // use) answer at once even with a 0 ms deadline, which a spawned task that had not yet
        // run could not. Only what remains after the deadline goes on in the background.
        let mut start = Box::pin(async move { m.start().await });
        let outcome = state.runtime.block_on(async {
            match timeout_from_ms(timeout_ms) {
                Some(limit) => tokio::time::timeout(limit, &mut start).await.ok(),
                None => Some((&mut start).await),
            }
        });
        match outcome {
            None => {
                let _detached = state.runtime.spawn(start);
                Err(Failure::new(
                    drover_result::Timeout,
                    format!(
                        "the workers did not all report STARTED within {timeout_ms} ms; the start continues in the background"
                    ),
                ))
            }
            Some(result) => Ok(result?),
        }
    })
}

/// Writes the master's status to `*out_status`.
#[no_mangle]
pub extern "C" fn drover_master_get_status(
    master: *const drover_master,
    out_status: *mut drover_master_status,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let out = try_out!(out_status);
        out.write(master_status_code(state.master.status()));
        Ok(())
    })
}

/// A snapshot of every worker, by id (including ones that exited and were not restarted).
///
/// `info_size` is `sizeof(drover_worker_info)`: the array's entries are that size, so indexing it
/// stays right when a later drover adds fields. On success `*out_workers` receives an array of
/// `*out_count` entries, owned by the caller and freed with `drover_worker_list_free(workers,
/// count)` (NULL when there are none). DROVER_RESULT_INVALID_ARGUMENT for an `info_size` smaller
/// than this ABI version's struct.
#[no_mangle]
pub extern "C" fn drover_master_workers(
    master: *const drover_master,
    info_size: usize,
    out_workers: *mut *mut drover_worker_info,
    out_count: *mut usize,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let out_workers = try_out!(out_workers);
        let out_count = try_out!(out_count);
        let workers = state.master.workers();
        let ptr = sized_array(workers.iter().map(info_to_c), info_size, "info_size")?;
        let count = workers.len();
        out_workers.write(ptr);
        out_count.write(count);
        Ok(())
    })
}

/// Frees an array from `drover_master_workers()`; `count` must be the count it gave.
/// NULL is a no-op.
///
/// # Safety
/// `workers` is NULL or an array returned by `drover_master_workers()`, not freed before.
#[no_mangle]
pub unsafe extern "C" fn drover_worker_list_free(workers: *mut drover_worker_info, count: usize) {
    let _ = count; // kept for symmetry with drover_listener_list_free: free() needs no count
    if workers.is_null() {
        return;
    }
    // SAFETY: per this function's contract, the array came from `calloc` in
    // `drover_master_workers` and is freed once; its entries own nothing.
    unsafe { libc::free(workers.cast()) };
}

/// One listening socket the master holds, as `drover_master_listeners()` reports it.
#[repr(C)]
#[derive(Debug)]
pub struct drover_listener {
    /// The `listener_size` the caller passed to `drover_master_listeners()`: set by drover.
    pub size: usize,
    /// The address as it was declared or asked for, e.g. "127.0.0.1:0" (normalised: a bare port
    /// reads "[::]:8080", a Unix path "unix:/run/web.sock"). Owned by the list.
    pub address: *mut c_char,
    /// The address the socket is bound to, e.g. "127.0.0.1:41234" (the real port for port 0).
    /// Owned by the list.
    pub local: *mut c_char,
}

/// The listening sockets the master holds: the declared ones (`drover_config_add_listen()`,
/// bound by `drover_master_start()`) and the ones its workers asked for (`drover_bus_listen()`),
/// in the order they were bound. They stay open until the master shuts down.
///
/// `listener_size` is `sizeof(drover_listener)`: the array's entries are that size, so indexing it
/// stays right when a later drover adds fields. On success `*out_listeners` receives an array of
/// `*out_count` entries, owned by the caller and freed with `drover_listener_list_free(listeners,
/// count)` (NULL when there are none). DROVER_RESULT_INVALID_ARGUMENT for a `listener_size`
/// smaller than this ABI version's struct.
#[no_mangle]
pub extern "C" fn drover_master_listeners(
    master: *const drover_master,
    listener_size: usize,
    out_listeners: *mut *mut drover_listener,
    out_count: *mut usize,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let out_listeners = try_out!(out_listeners);
        let out_count = try_out!(out_count);
        let listeners = state.master.listeners();
        let entries = listeners.iter().map(|(address, local)| drover_listener {
            size: std::mem::size_of::<drover_listener>(),
            address: owned_c_string(address),
            local: owned_c_string(local),
        });
        let ptr = sized_array(entries, listener_size, "listener_size")?;
        out_listeners.write(ptr);
        out_count.write(listeners.len());
        Ok(())
    })
}

/// Frees an array from `drover_master_listeners()` and its strings; `count` must be the count it
/// gave. NULL is a no-op.
///
/// # Safety
/// `listeners` is NULL or an array returned by `drover_master_listeners()` with `count` entries,
/// not freed before.
#[no_mangle]
pub unsafe extern "C" fn drover_listener_list_free(listeners: *mut drover_listener, count: usize) {
    if listeners.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        let base = listeners.cast::<u8>();
        // SAFETY: per this function's contract, the array came from `drover_master_listeners`
        // (`sized_array`): `count` entries, each of the `size` its first entry records, each
        // holding two owned strings from `CString::into_raw`; all freed once, here.
        unsafe {
            let stride = base.cast::<usize>().read_unaligned();
            for i in 0..count {
                let entry = base.add(i * stride).cast::<drover_listener>();
                for field in [std::ptr::addr_of!((*entry).address), std::ptr::addr_of!((*entry).local)] {
                    let s = field.read_unaligned();
                    if !s.is_null() {
                        drop(std::ffi::CString::from_raw(s));
                    }
                }
            }
            libc::free(listeners.cast());
        }
    });
}

/// Writes a snapshot of worker `id` to `*out_worker`. DROVER_RESULT_UNKNOWN_WORKER if no worker
/// has this id.
#[no_mangle]
pub extern "C" fn drover_master_get_worker(
    master: *const drover_master,
    id: u64,
    out_worker: *mut drover_worker_info,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let out = SizedOut::new(out_worker, "out_worker")?;
        let info = state
            .master
            .worker(id)
            .ok_or_else(|| Failure::new(drover_result::UnknownWorker, format!("no worker with id {id}")))?;
        out.write(info_to_c(&info));
        Ok(())
    })
}

/// Replaces worker `id`'s process: the running one is ended gracefully (if it still runs), a new
/// one is spawned under the same id, and the call returns once it reported STARTED.
/// DROVER_RESULT_WRONG_STATE unless the master is STARTED; DROVER_RESULT_UNKNOWN_WORKER.
#[no_mangle]
pub extern "C" fn drover_master_restart_worker(master: *mut drover_master, id: u64) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        Ok(state.runtime.block_on(state.master.restart_worker(id))?)
    })
}

/// Changes the number of workers and returns when done. Up: newcomers are spawned and awaited
/// until STARTED. Down: dead workers go first, then the newest; each is stopped, then quit.
/// DROVER_RESULT_WRONG_STATE unless the master is STARTED; DROVER_RESULT_INVALID_CONFIG for 0.
#[no_mangle]
pub extern "C" fn drover_master_rescale(master: *mut drover_master, count: usize) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        Ok(state.runtime.block_on(state.master.rescale(count))?)
    })
}

/// Replaces every worker by a new generation, make-before-break, with the master's current config
/// (`new_config` NULL) or `new_config` (copied; a new release: program, args, env, count...),
/// following the config's reload strategy. Returns when the new generation is STARTED and the old
/// one is reaped. If a new worker fails to start, the reload is rolled back and the old workers
/// keep serving: DROVER_RESULT_RELOAD_ROLLED_BACK names the worker and why.
/// DROVER_RESULT_WRONG_STATE unless the master is STARTED (or FAILED).
#[no_mangle]
pub extern "C" fn drover_master_graceful_reload(
    master: *mut drover_master,
    new_config: *const drover_config,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let new_config = if new_config.is_null() {
            None
        } else {
            Some(config::snapshot(new_config, "new_config")?.into_config()?)
        };
        Ok(state.runtime.block_on(state.master.graceful_reload(new_config))?)
    })
}

/// Takes the group out of rotation by hand (ECV): whatever answers a load balancer's health check
/// for it (the `drover` command's `/readyz`, `/ecv`) says "out of rotation", while its workers
/// keep running and serving. A DROVER_EVENT_KIND_ROTATION event says so if it changed anything.
/// Lasts until `drover_master_mark_up`.
#[no_mangle]
pub extern "C" fn drover_master_mark_down(master: *mut drover_master) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        state.master.mark_down();
        Ok(())
    })
}

/// Lifts `drover_master_mark_down`: the group is in rotation again unless an ECV monitor judges
/// it down.
#[no_mangle]
pub extern "C" fn drover_master_mark_up(master: *mut drover_master) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        state.master.mark_up();
        Ok(())
    })
}

/// Writes to `*out_in_rotation` whether the group is in rotation: marked down neither by hand
/// nor by an ECV monitor.
#[no_mangle]
pub extern "C" fn drover_master_in_rotation(master: *const drover_master, out_in_rotation: *mut bool) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let out = try_out!(out_in_rotation);
        out.write(state.master.in_rotation());
        Ok(())
    })
}

/// Runs an ECV monitor for the group (PROTOCOL.md §5.9), replacing the one running: `options_json`
/// is `{"url": "http://127.0.0.1:8080/health", "validator": "^ok" or 200, "interval": 5000,
/// "timeout": 2000, "failuresBeforeDown": 3}` (durations in ms or as "5s"). While the master is
/// STARTED it probes `url`; after `failuresBeforeDown` failures in a row the group is out of
/// rotation (a DROVER_EVENT_KIND_ROTATION event, `text` saying why) and the first passing probe
/// puts it back. NULL stops the monitor and lifts its mark. DROVER_RESULT_INVALID_CONFIG names
/// the option that is wrong; the running monitor is then kept.
#[no_mangle]
pub extern "C" fn drover_master_monitor_ecv(master: *mut drover_master, options_json: *const c_char) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let monitor = if options_json.is_null() {
            None
        } else {
            let invalid = |message: String| {
                Failure::new(
                    drover_result::InvalidConfig,
                    format!("invalid configuration: {message}"),
                )
            };
            let options: drover_core::ecv::EcvOptions =
                serde_json::from_str(try_str!(options_json)).map_err(|e| invalid(format!("ecv: {e}")))?;
            Some(drover_core::ecv::EcvMonitor::new(options).map_err(|e| invalid(e.to_string()))?)
        };
        let guard = monitor.map(|monitor| {
            let _context = state.runtime.enter();
            state.master.monitor_ecv(monitor)
        });
        let old = std::mem::replace(&mut *state.ecv.lock().unwrap_or_else(|p| p.into_inner()), guard);
        drop(old);
        Ok(())
    })
}

/// Ends every worker gracefully: `stop`, wait for STOPPED, `quit`, wait for the exit, each step
/// bounded by its timeout, then SIGTERM and SIGKILL to the process group of any worker that does
/// not comply. Cancels a running start, restart, rescale or reload. Returns when every worker is
/// reaped; the master is then SHUT_DOWN for good. Calling it again does nothing.
#[no_mangle]
pub extern "C" fn drover_master_graceful_shutdown(master: *mut drover_master) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        Ok(state.runtime.block_on(state.master.graceful_shutdown())?)
    })
}

/// SIGKILL to every worker's process group; returns when every worker is reaped. The master is
/// then SHUT_DOWN.
#[no_mangle]
pub extern "C" fn drover_master_hard_shutdown(master: *mut drover_master) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        Ok(state.runtime.block_on(state.master.hard_shutdown())?)
    })
}

/// Applies drover's signal policy to `signal` as if the process had received it, and returns once
/// the action is done: SIGHUP reloads, SIGTERM and SIGINT shut down gracefully, SIGINT during a
/// shutdown makes it hard. drover never installs signal handlers itself: a program that wants
/// this policy catches signals (e.g. with signalfd) and forwards them here.
/// On success `*out_action` (may be NULL) receives what was done.
#[no_mangle]
pub extern "C" fn drover_master_handle_signal(
    master: *mut drover_master,
    signal: c_int,
    out_action: *mut drover_signal_action,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let action = state.runtime.block_on(state.master.handle_signal(signal))?;
        if !out_action.is_null() {
            let out = try_out!(out_action);
            out.write(match action {
                SignalAction::Ignore => drover_signal_action::Ignore,
                SignalAction::Reload => drover_signal_action::Reload,
                SignalAction::GracefulShutdown => drover_signal_action::GracefulShutdown,
                SignalAction::HardShutdown => drover_signal_action::HardShutdown,
            });
        }
        Ok(())
    })
}

/// Sends a message (JSON text, copied) to worker `id`; returns once it is written to the worker's
/// channel. DROVER_RESULT_INVALID_ARGUMENT if it is not JSON; DROVER_RESULT_UNKNOWN_WORKER;
/// DROVER_RESULT_SEND_FAILED if the worker is gone or the message exceeds the frame limit.
#[no_mangle]
pub extern "C" fn drover_master_send(master: *mut drover_master, id: u64, json: *const c_char) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let data = parse_message(try_str!(json))?;
        Ok(state.runtime.block_on(state.master.send(id, &*data))?)
    })
}

/// Sends a message (JSON text, copied) to every running worker. On success `*out_sent` (may be
/// NULL) receives how many workers it was written to.
#[no_mangle]
pub extern "C" fn drover_master_broadcast(
    master: *mut drover_master,
    json: *const c_char,
    out_sent: *mut usize,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let data = parse_message(try_str!(json))?;
        let sent = state.runtime.block_on(state.master.broadcast(&*data))?;
        if !out_sent.is_null() {
            try_out!(out_sent).write(sent);
        }
        Ok(())
    })
}

/// Takes the next event, waiting up to `timeout_ms` milliseconds for one (0: do not wait;
/// negative: wait for ever). Every event since `drover_master_new()` is kept, in order, until read,
/// as long as the program keeps up: about 5,000 unread events (1,024 here, 4,096 in the master's
/// queue behind them) or 16 MiB of unread messages, and messages, heartbeats and protocol errors
/// are dropped, counted by a DROVER_EVENT_KIND_DROPPED event in their place. Statuses and exits
/// are never dropped for room.
///
/// On success `*out_event` is overwritten (without freeing what it held: clear it first) with an
/// event whose strings the caller releases with `drover_event_clear()`.
/// DROVER_RESULT_TIMEOUT if none came in time; DROVER_RESULT_CLOSED once the master was freed
/// (by another thread) and every event was read. Callable from any thread; each event goes to one
/// caller.
#[no_mangle]
pub extern "C" fn drover_master_next_event(
    master: *const drover_master,
    timeout_ms: i64,
    out_event: *mut drover_event,
) -> drover_result {
    ffi_body!({
        let events = try_obj!(MASTERS, master).events.clone();
        let out = SizedOut::new(out_event, "out_event")?;
        let c_event = match events.next_for_c(timeout_ms, "no event", "the master's event stream is closed")? {
            MasterItem::Event(event) => event_to_c(&event),
            MasterItem::Request(request) => request.to_c_event(),
        };
        out.write_owning(c_event, |e| [&mut e.data, &mut e.text, &mut e.json, &mut e.name]);
        Ok(())
    })
}

/// Writes to `*out_fd` a file descriptor that is readable exactly while events wait to be read
/// by `drover_master_next_event()` (put it in poll/epoll/select/libuv with POLLIN; when it is
/// readable, read events with a 0 timeout until DROVER_RESULT_TIMEOUT). Never read from or write
/// to it, never close it: it is owned by the master and closed by `drover_master_free()`.
#[no_mangle]
pub extern "C" fn drover_master_event_fd(master: *const drover_master, out_fd: *mut c_int) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        try_out!(out_fd).write(state.events.fd());
        Ok(())
    })
}

/// Frees the strings of an event and zeroes it (kind DROVER_EVENT_KIND_NONE) but for its `size`,
/// so it is ready for the next `drover_master_next_event()`. Clearing a zeroed or cleared event is
/// a no-op; NULL is a no-op.
///
/// # Safety
/// `event` is NULL or points to a `drover_event` that is zeroed or was filled by
/// `drover_master_next_event()` and not cleared since.
#[no_mangle]
pub unsafe extern "C" fn drover_event_clear(event: *mut drover_event) {
    let strings = |e: *mut drover_event| {
        // SAFETY: field addresses of the live event `clear_event` was given; nothing is read.
        unsafe {
            [
                std::ptr::addr_of_mut!((*e).data),
                std::ptr::addr_of_mut!((*e).text),
                std::ptr::addr_of_mut!((*e).json),
                std::ptr::addr_of_mut!((*e).name),
            ]
        }
    };
    // SAFETY: this function's contract is `clear_event`'s, and `data`, `text`, `json` and `name`
    // are the event's owned strings.
    unsafe { clear_event(event, strings) }
}

// SAFETY: both are `#[repr(C)]`, start with `size: usize`, are valid all-zero, have no drop glue.
unsafe impl SizedStruct for drover_event {
    const C_NAME: &'static str = "drover_event";
    // Programs built before requests (0.1) end at `json`.
    const MIN_SIZE: usize = std::mem::offset_of!(drover_event, request_id);
}

// SAFETY: as above.
unsafe impl SizedStruct for drover_listener {
    const C_NAME: &'static str = "drover_listener";
    const MIN_SIZE: usize = std::mem::size_of::<drover_listener>();
}

// SAFETY: as above.
unsafe impl SizedStruct for drover_worker_info {
    const C_NAME: &'static str = "drover_worker_info";
    // Programs built before names and application statuses (0.2) end at `exit`.
    const MIN_SIZE: usize = std::mem::offset_of!(drover_worker_info, instance);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_status_numbers_are_cores() {
        for s in MasterStatus::ALL {
            assert_eq!(master_status_code(s) as u32, u32::from(s.code()));
        }
    }

    #[test]
    fn names_and_statuses_are_nul_terminated_and_cut_at_a_character_boundary() {
        let name: [c_char; 8] = fixed_c_string("web-1");
        let read = |a: &[c_char]| {
            // SAFETY: `fixed_c_string` always leaves a NUL within the array.
            unsafe { std::ffi::CStr::from_ptr(a.as_ptr()) }
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(read(&name), "web-1");
        let cut: [c_char; 8] = fixed_c_string("abcdéfgh");
        assert_eq!(read(&cut), "abcdéf", "7 bytes fit: é whole");
        let cut: [c_char; 6] = fixed_c_string("abcdéf");
        assert_eq!(read(&cut), "abcd", "é does not fit in the 5th byte");
        let empty: [c_char; 4] = fixed_c_string("");
        assert_eq!(read(&empty), "");
    }

    #[test]
    fn a_spawn_reaches_c_as_a_status_event_to_initialized() {
        let e = event_to_c(&Event::Spawned { id: 2, pid: 7 });
        assert_eq!(e.size, std::mem::size_of::<drover_event>());
        assert_eq!(e.kind, drover_event_kind::Status);
        assert_eq!((e.worker_id, e.pid, e.from, e.to), (2, 7, 1, 1));
        let mut e = e;
        // SAFETY: `e` was filled by `event_to_c` and is cleared once.
        unsafe { drover_event_clear(&mut e) };
    }
}
