//! Requests and worker-to-worker messages from C (core's `request` module, PROTOCOL.md §5.5):
//! a master's and a worker's `request`, their handlers, served in C's polling style, and
//! `drover_bus_send_to`.
//!
//! A handler is not a callback (C decides when it answers): a request for one arrives as an event
//! (DROVER_EVENT_KIND_REQUEST on a master, DROVER_BUS_EVENT_KIND_REQUEST on a bus) that the
//! program answers, when it likes, with `drover_master_respond()` / `drover_bus_respond()` under
//! the event's `request_id`. Requests waiting for an answer are kept in a bounded map
//! ([`MAX_UNANSWERED`]); one never answered fails at its asker with its timeout, and its entry is
//! then dropped (on a master at once, on a bus once no request can still be waiting for it).

use std::collections::HashMap;
use std::ffi::c_char;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use drover_core::bus::IncomingRequest;
use drover_core::request::{self, Target};
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use crate::bus::{drover_bus, drover_bus_event, drover_bus_event_kind, empty_bus_event, BUSES};
use crate::error::{drover_result, Failure};
use crate::ffi::{ffi_body, owned_c_string, try_obj, try_out, try_str};
use crate::master::{drover_event, drover_event_kind, drover_master, MasterItem, MASTERS};

/// Requests a C master or a C worker holds unanswered at once: past it a master's program refuses
/// a new one (its asker gets `handler_failed` saying so), a worker gives up its oldest. The same
/// bound as a master's requests in flight, so no live asker is refused or given up for it.
pub const MAX_UNANSWERED: usize = request::MAX_PENDING_REQUESTS;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a C program answers: `error_message` if not NULL (the handler failed), else the result
/// (NULL: JSON `null`).
fn answer_from_c(result_json: *const c_char, error_message: *const c_char) -> Result<Result<Value, String>, Failure> {
    if !error_message.is_null() {
        return Ok(Err(try_str!(error_message).to_string()));
    }
    json_or_null(result_json, "result_json").map(Ok)
}

/// A JSON argument from C: NULL is `null`; text that is not JSON is an error naming the parameter.
pub(crate) fn json_or_null(json: *const c_char, parameter: &str) -> Result<Value, Failure> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    // SAFETY: every `const char *` parameter is NULL (checked above) or a NUL-terminated string
    // valid for the duration of the call.
    let text = unsafe { crate::ffi::c_str(json, parameter) }?;
    serde_json::from_str(text).map_err(|e| {
        Failure::new(
            drover_result::InvalidArgument,
            format!("`{parameter}` is not valid JSON: {e}"),
        )
    })
}

fn target_from_c(target: *const c_char) -> Result<Target, Failure> {
    try_str!(target)
        .parse()
        .map_err(|e| Failure::new(drover_result::InvalidArgument, format!("`target`: {e}")))
}

/// C's timeout for a request: negative is the default ([`request::DEFAULT_REQUEST_TIMEOUT`]),
/// anything longer than [`request::MAX_REQUEST_TIMEOUT`] is cut to it.
fn request_timeout(timeout_ms: i64) -> Duration {
    request::timeout_of(u64::try_from(timeout_ms).ok())
}

/// A request's arguments from C, checked: each error names its parameter.
struct CallFromC {
    target: Target,
    name: String,
    args: Value,
    timeout: Duration,
}

impl CallFromC {
    fn new(
        target: *const c_char,
        name: *const c_char,
        args_json: *const c_char,
        timeout_ms: i64,
    ) -> Result<CallFromC, Failure> {
        Ok(CallFromC {
            target: target_from_c(target)?,
            name: try_str!(name).to_string(),
            args: json_or_null(args_json, "args_json")?,
            timeout: request_timeout(timeout_ms),
        })
    }
}

/// What asks: a master or a worker's bus.
trait Asker: Send + 'static {
    fn ask(self, call: CallFromC) -> impl std::future::Future<Output = Result<Value, request::RequestError>> + Send;
}

impl Asker for drover_core::Master {
    async fn ask(self, call: CallFromC) -> Result<Value, request::RequestError> {
        self.request(call.target, &call.name, &call.args, call.timeout).await
    }
}

impl Asker for drover_core::BusSender {
    async fn ask(self, call: CallFromC) -> Result<Value, request::RequestError> {
        self.request(call.target, &call.name, &call.args, call.timeout).await
    }
}

impl CallFromC {
    /// Asks and waits on `runtime`; writes the result to `*out_result_json` (if not NULL).
    fn run(self, runtime: &Runtime, asker: impl Asker, out_result_json: *mut *mut c_char) -> Result<(), Failure> {
        let result = runtime.block_on(asker.ask(self))?;
        write_result(out_result_json, &result)
    }
}

fn write_result(out_result_json: *mut *mut c_char, result: &Value) -> Result<(), Failure> {
    if !out_result_json.is_null() {
        try_out!(out_result_json).write(owned_c_string(&result.to_string()));
    }
    Ok(())
}

/// A request for one of a C master's handlers, on its way to the program.
pub(crate) struct PendingRequest {
    id: u64,
    from: u64,
    name: String,
    args: Value,
}

impl PendingRequest {
    pub(crate) fn to_c_event(&self) -> drover_event {
        let asker = match self.from {
            0 => "the master's program".to_string(),
            id => format!("worker {id}"),
        };
        let json = serde_json::json!({
            "v": 1,
            "event": "request",
            "request_id": self.id,
            "from": self.from,
            "name": self.name,
            "args": self.args,
        });
        drover_event {
            size: std::mem::size_of::<drover_event>(),
            kind: drover_event_kind::Request,
            worker_id: self.from,
            pid: 0,
            from: 0,
            to: 0,
            exit: crate::master::NO_EXIT,
            restarts: 0,
            delay_ms: 0,
            rss_bytes: 0,
            data: owned_c_string(&self.args.to_string()),
            text: owned_c_string(&format!("request {} for handler {:?} from {asker}", self.id, self.name)),
            json: owned_c_string(&json.to_string()),
            request_id: self.id,
            name: owned_c_string(&self.name),
        }
    }
}

type Reply = oneshot::Sender<Result<Value, String>>;

/// A C master's requests waiting for `drover_master_respond()`, by the number in their event.
#[derive(Default, Clone)]
pub(crate) struct Answers {
    next: Arc<AtomicU64>,
    waiting: Arc<Mutex<HashMap<u64, Reply>>>,
}

/// Forgets a request whose asker stopped waiting (its timeout dropped the handler's future).
struct Forget(Answers, u64);

impl Drop for Forget {
    fn drop(&mut self) {
        lock(&self.0.waiting).remove(&self.1);
    }
}

/// Registers (or replaces) the program's handler `name` on the master: workers call it with a
/// request to "master" (and the program itself with `drover_master_request()`). Each request
/// comes as a DROVER_EVENT_KIND_REQUEST event, read with `drover_master_next_event()`, and is
/// answered with `drover_master_respond()`. At most 4,096 requests wait for an answer at once
/// (more are refused: their askers get DROVER_RESULT_HANDLER_FAILED saying so); one not answered
/// within its asker's timeout fails there with DROVER_RESULT_TIMEOUT.
/// DROVER_RESULT_INVALID_ARGUMENT for a bad name (1 to 128 bytes, no control characters) or
/// past 256 handlers.
#[no_mangle]
pub extern "C" fn drover_master_handle(master: *mut drover_master, name: *const c_char) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let handler_name = try_str!(name).to_string();
        let events = state.events.clone();
        let answers = state.answers.clone();
        let registered_name = handler_name.clone();
        state
            .master
            .handle(&registered_name, move |from, args| {
                let (events, answers, name) = (events.clone(), answers.clone(), handler_name.clone());
                async move {
                    let (tx, rx) = oneshot::channel();
                    let id = answers.next.fetch_add(1, Ordering::Relaxed) + 1;
                    {
                        let mut waiting = lock(&answers.waiting);
                        if waiting.len() >= MAX_UNANSWERED {
                            return Err(format!(
                                "the master's program has {MAX_UNANSWERED} requests unanswered (at most {MAX_UNANSWERED})"
                            ));
                        }
                        waiting.insert(id, tx);
                    }
                    let _forget = Forget(answers, id);
                    events
                        .push_when_room(MasterItem::Request(PendingRequest { id, from, name, args }))
                        .await;
                    rx.await
                        .unwrap_or_else(|_| Err("the master was freed before it answered".to_string()))
                }
            })
            .map_err(Failure::from)
    })
}

/// Answers the request `request_id` of a DROVER_EVENT_KIND_REQUEST event: with `error_message`
/// if it is not NULL (the asker gets DROVER_RESULT_HANDLER_FAILED with these words), otherwise
/// with `result_json` (JSON text, copied; NULL is `null`).
/// DROVER_RESULT_NO_SUCH_REQUEST if no request waits under that number (answered already, or its
/// asker timed out); DROVER_RESULT_INVALID_ARGUMENT if `result_json` is not JSON.
#[no_mangle]
pub extern "C" fn drover_master_respond(
    master: *mut drover_master,
    request_id: u64,
    result_json: *const c_char,
    error_message: *const c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let answer = answer_from_c(result_json, error_message)?;
        let reply = lock(&state.answers.waiting)
            .remove(&request_id)
            .ok_or_else(|| no_such_request(request_id))?;
        // The asker may give up between the lookup and now: its error is the timeout it got.
        let _ = reply.send(answer);
        Ok(())
    })
}

fn no_such_request(request_id: u64) -> Failure {
    Failure::new(
        drover_result::NoSuchRequest,
        format!("no request {request_id} waits for an answer (answered already, or its asker timed out)"),
    )
}

/// Calls handler `name` of `target` with `args_json` (JSON text, copied; NULL is `null`) and
/// waits for its answer, at most `timeout_ms` milliseconds (negative: the default, 30 s; at most
/// 600 s). `target` is "master" (this master's own handlers, see `drover_master_handle()`; the
/// program must then read its events on another thread), "worker:ID", "name:NAME", "any" (one
/// worker that declared the handler, in turn) or "all" (every one; the result is a JSON list of
/// `{"worker": ID, "result": ...}` and `{"worker": ID, "error": {"code", "message"}}`).
///
/// On success `*out_result_json` (may be NULL) receives the result as JSON text, owned by the
/// caller and freed with `drover_string_free()`. Every failure has its own code, and
/// `drover_last_error()` says what happened: DROVER_RESULT_NO_SUCH_HANDLER,
/// DROVER_RESULT_NO_SUCH_TARGET, DROVER_RESULT_TIMEOUT, DROVER_RESULT_TARGET_GONE,
/// DROVER_RESULT_HANDLER_FAILED (the message is the handler's own), DROVER_RESULT_OVERLOADED,
/// DROVER_RESULT_INVALID_ARGUMENT (bad target, name or JSON).
#[no_mangle]
pub extern "C" fn drover_master_request(
    master: *mut drover_master,
    target: *const c_char,
    name: *const c_char,
    args_json: *const c_char,
    timeout_ms: i64,
    out_result_json: *mut *mut c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(MASTERS, master);
        let call = CallFromC::new(target, name, args_json, timeout_ms)?;
        call.run(&state.runtime, state.master.clone(), out_result_json)
    })
}

/// A C worker's requests waiting for `drover_bus_respond()`, with when each was handed over.
#[derive(Default)]
pub(crate) struct Unanswered {
    waiting: Mutex<HashMap<u64, (Instant, IncomingRequest)>>,
}

impl Unanswered {
    /// Keeps `request` for its answer and gives its event. Past [`MAX_UNANSWERED`] the oldest
    /// unanswered request is given up (answered `handler_failed` saying so, which its asker,
    /// most likely gone by its timeout already, may still read): a program that leaves requests
    /// unanswered keeps serving new ones.
    pub(crate) fn hand_to_c(&self, runtime: &Runtime, request: IncomingRequest) -> drover_bus_event {
        let mut waiting = lock(&self.waiting);
        if waiting.len() >= MAX_UNANSWERED {
            let oldest = waiting.iter().min_by_key(|(_, (since, _))| *since).map(|(id, _)| *id);
            if let Some((_, (_, given_up))) = oldest.and_then(|id| waiting.remove_entry(&id)) {
                let why = format!("the worker left {MAX_UNANSWERED} newer requests unanswered and gave this one up");
                runtime.spawn(async move {
                    let _ = given_up.reply(Err(why)).await;
                });
            }
        }
        let mut event = empty_bus_event(drover_bus_event_kind::Request);
        event.request_id = request.id;
        event.from = request.from;
        event.name = owned_c_string(&request.name);
        event.data = owned_c_string(&request.args.to_string());
        waiting.insert(request.id, (Instant::now(), request));
        event
    }
}

/// Declares the handlers this worker answers (replacing those declared before): `names` is an
/// array of `count` handler names (1 to 128 bytes each, no control characters; at most 256).
/// Requests for them come as DROVER_BUS_EVENT_KIND_REQUEST events, answered with
/// `drover_bus_respond()`. `count` 0 (with `names` NULL or not) declares none. The status
/// functions of `drover_bus_set_status_function()` stay declared beside them (at most 256 in all).
/// DROVER_RESULT_INVALID_ARGUMENT names a bad name; DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_set_handlers(
    bus: *const drover_bus,
    names: *const *const c_char,
    count: usize,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        if count > request::MAX_HANDLERS {
            return Err(Failure::new(
                drover_result::InvalidArgument,
                format!("`count` is {count}: at most {} handlers", request::MAX_HANDLERS),
            ));
        }
        if count > 0 && names.is_null() {
            return Err(Failure::new(drover_result::NullArgument, "`names` is NULL"));
        }
        let mut declared = Vec::with_capacity(count);
        for i in 0..count {
            // SAFETY: per the header, `names` points to `count` string pointers.
            let name = unsafe { names.add(i).read() };
            // SAFETY: each is NULL or a NUL-terminated string live for the call; NULL is checked.
            let name = unsafe { crate::ffi::c_str(name, &format!("names[{i}]")) }?;
            request::check_handler_name(name)
                .map_err(|e| Failure::new(drover_result::InvalidArgument, format!("`names[{i}]`: {}", e.message)))?;
            declared.push(name);
        }
        let declared = declared.into_iter().map(str::to_string).collect();
        state.declared.clone().set_handlers(&state, declared)
    })
}

/// Answers the request `request_id` of a DROVER_BUS_EVENT_KIND_REQUEST event: with
/// `error_message` if it is not NULL (the asker gets DROVER_RESULT_HANDLER_FAILED with these
/// words), otherwise with `result_json` (JSON text, copied; NULL is `null`). Returns once the
/// answer is written to the channel. At most 4,096 requests wait for an answer at once: past it
/// the oldest is given up (its asker, if still waiting, gets `handler_failed` saying so).
/// DROVER_RESULT_NO_SUCH_REQUEST if none waits under that number (answered already);
/// DROVER_RESULT_INVALID_ARGUMENT if `result_json` is not JSON; DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_respond(
    bus: *const drover_bus,
    request_id: u64,
    result_json: *const c_char,
    error_message: *const c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let answer = answer_from_c(result_json, error_message)?;
        let (_, request) = lock(&state.unanswered.waiting)
            .remove(&request_id)
            .ok_or_else(|| no_such_request(request_id))?;
        Ok(state.runtime.block_on(request.reply(answer))?)
    })
}

/// Calls handler `name` of `target` with `args_json` (JSON text, copied; NULL is `null`) and
/// waits for its answer, at most `timeout_ms` milliseconds (negative: the default, 30 s; at most
/// 600 s). The master routes it: `target` is "master", "worker:ID", "name:NAME", "any" or "all"
/// (every other worker that declared it; a JSON list of per-worker results and errors), as for
/// `drover_master_request()`, with the same result codes, and DROVER_RESULT_MASTER_GONE.
/// On success `*out_result_json` (may be NULL) receives the result as JSON text, owned by the
/// caller and freed with `drover_string_free()`. Each worker has at most 256 requests in flight
/// (DROVER_RESULT_OVERLOADED past it).
#[no_mangle]
pub extern "C" fn drover_bus_request(
    bus: *const drover_bus,
    target: *const c_char,
    name: *const c_char,
    args_json: *const c_char,
    timeout_ms: i64,
    out_result_json: *mut *mut c_char,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let call = CallFromC::new(target, name, args_json, timeout_ms)?;
        call.run(&state.runtime, state.sender.clone(), out_result_json)
    })
}

/// Sends `json` (a message as JSON text, copied) to other workers, routed by the master: `target`
/// is "worker:ID", "name:NAME", "any" (one live worker) or "all" (every live worker but this
/// one). They get it as a DROVER_BUS_EVENT_KIND_WORKER_MESSAGE event (`from` is this worker's
/// id); a Node worker as a `'worker-message'`. Returns once the master wrote it; `*out_count`
/// (may be NULL) receives to how many workers. Never dropped silently: an unknown or dead worker
/// is DROVER_RESULT_NO_SUCH_TARGET, no live worker for "any" likewise; "master" is
/// DROVER_RESULT_INVALID_ARGUMENT (use `drover_bus_send_message()`); DROVER_RESULT_MASTER_GONE.
#[no_mangle]
pub extern "C" fn drover_bus_send_to(
    bus: *const drover_bus,
    target: *const c_char,
    json: *const c_char,
    out_count: *mut u64,
) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let target = target_from_c(target)?;
        let data = json_or_null(json, "json")?;
        let count = state.runtime.block_on(state.sender.send_to(target, &data))?;
        if !out_count.is_null() {
            try_out!(out_count).write(count);
        }
        Ok(())
    })
}

/// Joins leadership `key` (PROTOCOL.md §5.10): the master elects one STARTED participant and
/// tells every participant who leads with a DROVER_BUS_EVENT_KIND_LEADER event, now and at each
/// change. To lead a leader client (§5.10 "Leader clients"), declare the handler `leader:KEY` with
/// `drover_bus_set_handlers()` and answer its requests while leading. DROVER_RESULT_OVERLOADED
/// past 64 leaderships in the master; DROVER_RESULT_INVALID_ARGUMENT for a bad key.
#[no_mangle]
pub extern "C" fn drover_bus_leader_join(bus: *const drover_bus, key: *const c_char) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let key = try_str!(key);
        state.runtime.block_on(state.sender.leader_join(key))?;
        Ok(())
    })
}

/// Lets go of leading `key` (call it after releasing what only the leader holds, e.g. when a
/// LEADER event says this worker no longer leads): the next is elected; this worker stays a
/// participant.
#[no_mangle]
pub extern "C" fn drover_bus_leader_resign(bus: *const drover_bus, key: *const c_char) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let key = try_str!(key);
        state.runtime.block_on(state.sender.leader_resign(key))?;
        Ok(())
    })
}

/// Leaves leadership `key` (letting go of it if this worker leads).
#[no_mangle]
pub extern "C" fn drover_bus_leader_leave(bus: *const drover_bus, key: *const c_char) -> drover_result {
    ffi_body!({
        let state = try_obj!(BUSES, bus);
        let key = try_str!(key);
        state.runtime.block_on(state.sender.leader_leave(key))?;
        Ok(())
    })
}
