//! Requests and worker-to-worker messages (PROTOCOL.md §5.5) between JavaScript and core.
//!
//! Both faces share the translation: a target, arguments and a timeout from JS
//! ([`parse_target`], [`parse_json`], [`timeout`]); a core [`RequestError`] as the JS
//! `RequestError` ([`describe`]).
//!
//! Each side also keeps the requests JavaScript has yet to answer, bounded by core's
//! [`MAX_PENDING_REQUESTS`]:
//! - the master's JS handlers are core closures that hand the request to the JS thread and wait
//!   for [`MasterCalls::respond`] ([`MasterCalls`]);
//! - a worker's requests come from its channel, read on the JS thread, and wait in
//!   [`WorkerCalls`] until JS answers them.

use drover::bus::IncomingRequest;
use drover::request::{RequestError, RequestErrorCode, Target, DEFAULT_REQUEST_TIMEOUT, MAX_PENDING_REQUESTS};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

use crate::error;

/// A target from JS (`"master"`, `"worker:3"`, `"name:web-2"`, `"any"`, `"all"`; the JS layer
/// turns numbers and `{ worker }` / `{ name }` into these). A bad one is a `TypeError`.
pub(crate) fn parse_target(text: &str, what: &str) -> napi::Result<Target> {
    text.parse()
        .map_err(|e: String| error::type_error(format!("{what}: target {e}")))
}

/// JSON text from JS (the JS layer's `JSON.stringify`), as a value.
pub(crate) fn parse_json(text: &str, what: &str) -> napi::Result<Value> {
    serde_json::from_str(text).map_err(|e| error::type_error(format!("{what} must be JSON: {e}")))
}

/// A timeout in milliseconds from JS (none: core's default, 30 s); core cuts it to its maximum.
pub(crate) fn timeout(ms: Option<f64>, what: &str) -> napi::Result<Duration> {
    match ms {
        None => Ok(DEFAULT_REQUEST_TIMEOUT),
        Some(ms) if ms.is_finite() && ms >= 0.0 => Ok(Duration::from_millis(ms as u64)),
        Some(ms) => Err(error::type_error(format!(
            "{what}: options.timeout is a number of milliseconds >= 0, got {ms}"
        ))),
    }
}

/// A request's target, arguments (JSON text) and timeout from JS, checked; `face` names the
/// method in errors (e.g. `"Master.request"`).
pub(crate) fn parse_call(
    face: &str,
    target: &str,
    args: &str,
    timeout_ms: Option<f64>,
) -> napi::Result<(Target, Value, Duration)> {
    Ok((
        parse_target(target, face)?,
        parse_json(args, &format!("{face}(args)"))?,
        timeout(timeout_ms, face)?,
    ))
}

/// A request's outcome for JS: the result's JSON text, or the tagged `RequestError`.
pub(crate) fn outcome(result: Result<Value, RequestError>) -> napi::Result<String> {
    result.map(|value| value.to_string()).map_err(|e| from_core(&e))
}

/// Core's code as its wire string (`"no_such_handler"`...).
fn code_text(code: RequestErrorCode) -> Value {
    serde_json::to_value(code).unwrap_or_else(|_| Value::String("unknown".into()))
}

/// The JS `RequestError` of a core one: its `code` and message.
pub(crate) fn describe(e: &RequestError) -> Value {
    json!({ "name": "RequestError", "code": code_text(e.code), "message": e.message })
}

/// A core request error as a napi error.
pub(crate) fn from_core(e: &RequestError) -> napi::Error {
    error::tagged(describe(e))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where the answer of the master's JS handler goes.
type Answer = oneshot::Sender<Result<Value, String>>;

#[derive(Default)]
struct MasterTable {
    next: u64,
    waiting: HashMap<u64, Answer>,
    /// The JS master is gone: no answer can come any more.
    closed: bool,
}

/// The requests the master's JS handlers are running, by the number JS answers with.
#[derive(Clone, Default)]
pub(crate) struct MasterCalls(Arc<Mutex<MasterTable>>);

/// Removes a request from [`MasterCalls`] when its core future ends (answered, timed out or
/// dropped with the master), so an abandoned one takes no room.
pub(crate) struct Waiting {
    calls: MasterCalls,
    id: u64,
    answer: oneshot::Receiver<Result<Value, String>>,
}

impl Waiting {
    /// The number JS answers with.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The JS handler's answer (its failure's message as `Err`).
    pub(crate) async fn answer(mut self) -> Result<Value, String> {
        match (&mut self.answer).await {
            Ok(answer) => answer,
            Err(_) => Err("the JavaScript master is gone".to_string()),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        lock(&self.calls.0).waiting.remove(&self.id);
    }
}

impl MasterCalls {
    /// A new request for JS to answer, or why none can be taken (too many waiting, master gone).
    pub(crate) fn open(&self) -> Result<Waiting, String> {
        let mut table = lock(&self.0);
        if table.closed {
            return Err("the JavaScript master is gone".to_string());
        }
        if table.waiting.len() >= MAX_PENDING_REQUESTS {
            return Err(format!(
                "the master's JavaScript handlers have {MAX_PENDING_REQUESTS} requests unanswered, the most they may have"
            ));
        }
        table.next += 1;
        let id = table.next;
        let (tx, answer) = oneshot::channel();
        table.waiting.insert(id, tx);
        Ok(Waiting {
            calls: self.clone(),
            id,
            answer,
        })
    }

    /// JS's answer to request `id`; false if it no longer waits (timed out).
    pub(crate) fn respond(&self, id: u64, answer: Result<Value, String>) -> bool {
        match lock(&self.0).waiting.remove(&id) {
            Some(tx) => tx.send(answer).is_ok(),
            None => false,
        }
    }

    /// The JS master is gone: every waiting request fails now, and every new one at once.
    pub(crate) fn close(&self) {
        let mut table = lock(&self.0);
        table.closed = true;
        // Dropping the senders ends each waiting future with "the JavaScript master is gone".
        table.waiting.clear();
    }
}

/// The requests routed to this worker's handlers that JS has yet to answer, by the master's number.
#[derive(Clone, Default)]
pub(crate) struct WorkerCalls(Arc<Mutex<HashMap<u64, IncomingRequest>>>);

impl WorkerCalls {
    /// Keeps `request` for JS and gives the event text that hands it over; when too many wait,
    /// answers it at once with a failure instead (and gives nothing to JS).
    pub(crate) fn take(&self, request: IncomingRequest) -> Option<String> {
        let mut waiting = lock(&self.0);
        if waiting.len() >= MAX_PENDING_REQUESTS {
            drop(waiting);
            let message = format!(
                "this worker's JavaScript handlers have {MAX_PENDING_REQUESTS} requests unanswered, the most they may have"
            );
            napi::bindgen_prelude::spawn(async move {
                let _ = request.reply(Err(message)).await;
            });
            return None;
        }
        let event = json!({
            "event": "request",
            "id": request.id,
            "from": request.from,
            "name": request.name,
            "args": request.args,
        })
        .to_string();
        waiting.insert(request.id, request);
        Some(event)
    }

    /// The request `id` JS answers now; none if it is not waiting (answered already).
    pub(crate) fn answered(&self, id: u64) -> Option<IncomingRequest> {
        lock(&self.0).remove(&id)
    }
}

/// An answer from JS: `ok` with the result's JSON text, or the failure's message.
pub(crate) fn answer_from_js(ok: bool, text: String) -> Result<Value, String> {
    if ok {
        serde_json::from_str(&text).map_err(|e| format!("the handler's result is not JSON: {e}"))
    } else {
        Err(text)
    }
}

/// A positive integer from JS (a worker id, a request id), or a `TypeError` naming `what`.
pub(crate) fn positive_integer(value: f64, what: &str) -> napi::Result<u64> {
    if value.is_finite() && value >= 1.0 && value.fract() == 0.0 && value <= 9_007_199_254_740_991.0 {
        Ok(value as u64)
    } else {
        Err(error::type_error(format!("{what} is a positive integer, got {value}")))
    }
}

/// Checks handler names before they are declared: each one, and how many.
pub(crate) fn check_names(names: &[String]) -> napi::Result<()> {
    if names.len() > drover::request::MAX_HANDLERS {
        return Err(from_core(&RequestError::new(
            RequestErrorCode::Overloaded,
            format!(
                "{} handler names: at most {}",
                names.len(),
                drover::request::MAX_HANDLERS
            ),
        )));
    }
    for name in names {
        drover::request::check_handler_name(name).map_err(|e| from_core(&e))?;
    }
    Ok(())
}

/// A request's outcome as the event the JS layer settles call `call` with:
/// `{"event":"settled","call":N,"result":...}` or `{..., "error":{RequestError}}`.
pub(crate) fn settled_text(call: u64, outcome: Result<Value, RequestError>) -> String {
    match outcome {
        Ok(result) => format!(r#"{{"event":"settled","call":{call},"result":{result}}}"#),
        Err(e) => json!({ "event": "settled", "call": call, "error": describe(&e) }).to_string(),
    }
}

/// A worker's request under way, with when to stop waiting for the JS thread to see its answer.
struct InFlight {
    answer: crate::Boxed<Result<Value, RequestError>>,
    /// Past it, the sweeper awaits the request on the runtime (its own timeout then ends it).
    deadline: std::time::Instant,
}

#[derive(Default)]
struct InFlightTable {
    calls: HashMap<u64, InFlight>,
    /// Whether the sweeper task runs.
    sweeping: bool,
}

/// A worker's requests whose answers are settled on the JS thread.
///
/// The answer of a request is a `response` frame, which the JS thread reads itself
/// ([`drover::CommandReader`]) and hands to the request's future. Awaiting that future on the
/// runtime would cost two thread hand-offs per round trip (the reader wakes a runtime thread,
/// which wakes the JS thread to settle the promise): about half of a Node worker's round trip.
/// Instead the JS thread polls the requests under way right after each read
/// ([`JsThreadCalls::poll_ready`]) and settles the answered ones then, in the same loop turn.
///
/// A request whose answer never comes (the master stuck) is not polled again by any read: a
/// sweeper on the runtime, once a second, takes each one past its timeout and awaits it there,
/// where its own timeout ends it. Bounded by core's [`drover::request::MAX_PENDING_PER_WORKER`]
/// (core refuses more requests in flight).
#[derive(Clone, Default)]
pub(crate) struct JsThreadCalls(Arc<Mutex<InFlightTable>>);

impl JsThreadCalls {
    /// Keeps request `call`, whose first poll has sent it, until its answer is read; `emit` hands
    /// a settled event to JavaScript from the runtime (for the sweeper's).
    pub(crate) fn add(
        &self,
        call: u64,
        answer: crate::Boxed<Result<Value, RequestError>>,
        timeout: Duration,
        emit: impl Fn(String) + Send + Sync + 'static,
    ) {
        let mut table = lock(&self.0);
        // Past core's own timeout (the timeout, and a second for a stuck master) and then some.
        let deadline = std::time::Instant::now() + timeout + Duration::from_secs(2);
        table.calls.insert(call, InFlight { answer, deadline });
        if !table.sweeping {
            table.sweeping = true;
            napi::bindgen_prelude::spawn(sweep(Arc::downgrade(&self.0), emit));
        }
    }

    /// On the JS thread, after a read: the settled events of the requests answered by now.
    pub(crate) fn poll_ready(&self) -> Vec<String> {
        let mut table = lock(&self.0);
        if table.calls.is_empty() {
            return Vec::new();
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut settled = Vec::new();
        napi::bindgen_prelude::within_runtime_if_available(|| {
            table
                .calls
                .retain(|call, in_flight| match in_flight.answer.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(outcome) => {
                        settled.push(settled_text(*call, outcome));
                        false
                    }
                    std::task::Poll::Pending => true,
                });
        });
        settled
    }
}

/// Once a second while the bus lives: the requests past their deadline are awaited on the
/// runtime, and their outcome handed to JavaScript through `emit`.
async fn sweep(table: std::sync::Weak<Mutex<InFlightTable>>, emit: impl Fn(String) + Send + Sync + 'static) {
    let emit = Arc::new(emit);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(table) = table.upgrade() else { return };
        let now = std::time::Instant::now();
        let late: Vec<(u64, InFlight)> = {
            let mut table = lock(&table);
            let calls: Vec<u64> = table
                .calls
                .iter()
                .filter(|(_, f)| f.deadline <= now)
                .map(|(call, _)| *call)
                .collect();
            calls
                .into_iter()
                .filter_map(|call| table.calls.remove(&call).map(|f| (call, f)))
                .collect()
        };
        for (call, in_flight) in late {
            let emit = emit.clone();
            napi::bindgen_prelude::spawn(async move {
                let outcome = in_flight.answer.await;
                emit(settled_text(call, outcome));
            });
        }
    }
}
