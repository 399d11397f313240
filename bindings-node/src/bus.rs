//! `NativeBus`: a worker's core [`MessageBus`] for JavaScript.
//!
//! The JS `MessageBus` constructor is synchronous while the core handshake is not: the bus is
//! created *connecting*, and every send made before the handshake completes is kept, in order,
//! and handed to core right after it. Then sends go straight to core's writer, enqueued on the
//! calling thread (`start_now`), so they keep their order.
//!
//! The master's commands are read on the JS thread once the handshake is over: core's
//! [`CommandReader`] under a libuv poll handle ([`crate::uv::ReadWatch`]), so a command reaches
//! the JS callback on the loop turn that saw the socket readable, with no runtime thread woken to
//! read it first and then wake the JS thread (that hop was a third of a round trip).
//!
//! Its thread-safe function (the handshake's outcome, send errors) is *referenced* from creation
//! (a worker waits for its master's commands as an IPC channel would keep it alive) until
//! [`NativeBus::close`], or until the master closes the channel.

use drover::{BusError, BusEvent, BusOptions, BusSender, Command, CommandReader, MessageBus, WorkerStatus};
use napi::bindgen_prelude::{Function, PromiseRaw, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use napi_derive::napi;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Notify;

use crate::error;
use crate::js_call::JsCallback;
use crate::request::{self, JsThreadCalls, WorkerCalls};
use crate::uv::ReadWatch;

/// The JS callback that receives the bus's events, as JSON text: referenced, not callee-handled.
/// Its JS-thread half starts reading the channel when the handshake is over (`null` is then
/// handed to JavaScript for nothing, which the JS layer skips).
type EventFn = ThreadsafeFunction<FromRuntime, Unknown<'static>, Option<String>, Status, false, false>;

/// What the runtime hands to the JS thread.
enum FromRuntime {
    /// An event, as JSON text.
    Event(String),
    /// The handshake is over: the `connected` event, and the reader of the master's commands,
    /// which the JS thread drives from now on.
    Connected { event: String, reader: CommandReader },
}

/// Something to send.
enum Outbound {
    Status(WorkerStatus),
    Message(Box<RawValue>),
    /// A heartbeat, with the runtime statistics the JS layer measured.
    Heartbeat(BTreeMap<String, f64>),
    /// The application status and counters (`setAppStatus`).
    AppStatus(Option<String>, BTreeMap<String, f64>),
    /// The names of the handlers this worker answers (the full set).
    Handlers(Vec<String>),
    /// The answer to config `version` (PROTOCOL.md §5.11): applied, or refused with a reason.
    Reconfigured(u64, Result<(), String>),
}

enum Conn {
    /// The handshake runs; sends wait here in order.
    Connecting(Vec<Outbound>),
    /// Connected.
    Ready(BusSender),
    /// The handshake failed (the error was reported as an event).
    Failed(String),
    /// `close()` was called.
    Closed,
}

struct Shared {
    conn: Mutex<Conn>,
    events: EventFn,
    /// Sends handed to core whose write has not completed.
    in_flight: AtomicUsize,
    idle: Notify,
    /// Notified when the handshake ends, either way.
    settled: Notify,
    connected_at: Instant,
}

impl Shared {
    fn conn(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, event: Value) {
        self.events.call(
            FromRuntime::Event(event.to_string()),
            ThreadsafeFunctionCallMode::NonBlocking,
        );
    }

    fn report(&self, operation: &str, e: &BusError) {
        let mut description = error::describe_bus(e);
        description["operation"] = Value::String(operation.to_string());
        self.emit(json!({ "event": "error", "error": description }));
    }

    /// Hands `out` to core now (it is written, or enqueued, before this returns) and reports a
    /// failure.
    fn dispatch(self: &Arc<Self>, sender: BusSender, out: Outbound) {
        let uptime = self.connected_at.elapsed();
        // What it was, for an error report (named only if one is made).
        let status = match &out {
            Outbound::Status(s) => Some(*s),
            _ => None,
        };
        let label = match &out {
            Outbound::Status(_) => "send status",
            Outbound::Message(_) => "send message",
            Outbound::Heartbeat(_) => "send heartbeat",
            Outbound::AppStatus(..) => "send app status",
            Outbound::Handlers(_) => "declare handlers",
            Outbound::Reconfigured(..) => "answer a reconfigure",
        };
        let operation = move || match status {
            Some(s) => format!("{label} {s}"),
            None => label.to_string(),
        };
        let fut = async move {
            match out {
                Outbound::Status(s) => sender.send_status(s).await,
                Outbound::Message(data) => sender.send_message(&*data).await,
                Outbound::Heartbeat(stats) => sender.send_heartbeat_with_stats(uptime, &stats).await,
                Outbound::AppStatus(status, counters) => sender.set_app_status(status.as_deref(), &counters).await,
                Outbound::Handlers(names) => {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    sender.set_handlers(&names).await
                }
                Outbound::Reconfigured(version, outcome) => sender.ack_reconfigure(version, outcome).await,
            }
        };
        match crate::start_now(fut) {
            Ok(result) => {
                if let Err(e) = result {
                    self.report(&operation(), &e);
                }
            }
            Err(rest) => {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                let shared = self.clone();
                napi::bindgen_prelude::spawn(async move {
                    if let Err(e) = rest.await {
                        shared.report(&operation(), &e);
                    }
                    if shared.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                        shared.idle.notify_waiters();
                    }
                });
            }
        }
    }

    fn send(self: &Arc<Self>, out: Outbound) -> napi::Result<()> {
        let mut conn = self.conn();
        match &mut *conn {
            Conn::Connecting(queue) => {
                queue.push(out);
                Ok(())
            }
            Conn::Ready(sender) => {
                let sender = sender.clone();
                drop(conn);
                self.dispatch(sender, out);
                Ok(())
            }
            Conn::Failed(why) => Err(error::tagged(json!({
                "name": "MessageBusError",
                "message": format!("the MessageBus could not connect: {why}"),
            }))),
            Conn::Closed => Err(error::tagged(json!({
                "name": "MessageBusError",
                "message": "the MessageBus is closed",
            }))),
        }
    }

    /// Resolves when the handshake is over (connected, failed or closed meanwhile).
    async fn handshake_over(&self) {
        loop {
            let settled = self.settled.notified();
            if !matches!(*self.conn(), Conn::Connecting(_)) {
                return;
            }
            settled.await;
        }
    }

    /// The sender once the handshake is over, or a `MessageBusError` saying why there is none
    /// (`what`: what could not be done, e.g. "ask the master to listen on :80").
    async fn ready_sender(&self, what: &str) -> napi::Result<BusSender> {
        self.handshake_over().await;
        let why = match &*self.conn() {
            Conn::Ready(sender) => return Ok(sender.clone()),
            Conn::Failed(why) => format!("the MessageBus could not connect: {why}"),
            Conn::Closed | Conn::Connecting(_) => "the MessageBus is closed".to_string(),
        };
        Err(error::tagged(json!({
            "name": "MessageBusError",
            "message": format!("cannot {what}: {why}"),
        })))
    }

    /// Resolves when every send handed to core so far has been written (or failed).
    async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Connects, flushes the sends made meanwhile, then hands the reading of the master's commands to
/// the JS thread.
async fn run(shared: Arc<Shared>) {
    let options = BusOptions {
        auto_heartbeat: false,
        host_reads: true,
    };
    let mut bus = match MessageBus::connect_with(options).await {
        Ok(bus) => bus,
        Err(e) => {
            *shared.conn() = Conn::Failed(e.to_string());
            shared.settled.notify_waiters();
            shared.emit(json!({ "event": "connect-error", "error": error::describe_bus(&e) }));
            return;
        }
    };
    let meta = serde_json::to_value(bus.meta()).unwrap_or(Value::Null);
    {
        let mut conn = shared.conn();
        if let Conn::Connecting(queue) = std::mem::replace(&mut *conn, Conn::Ready(bus.sender())) {
            let sender = bus.sender();
            for out in queue {
                shared.dispatch(sender.clone(), out);
            }
        } else {
            // Closed before the handshake finished: stay closed, keep nothing.
            *conn = Conn::Closed;
            drop(conn);
            shared.settled.notify_waiters();
            return;
        }
    }
    shared.settled.notify_waiters();
    let event = json!({ "event": "connected", "meta": meta }).to_string();
    match bus.take_command_reader() {
        Some(reader) => {
            shared.events.call(
                FromRuntime::Connected { event, reader },
                ThreadsafeFunctionCallMode::NonBlocking,
            );
        }
        // Not with `host_reads` set; said rather than assumed.
        None => shared.emit(json!({ "event": "connect-error", "error": {
            "name": "MessageBusError",
            "message": "internal error: the connected bus gave no command reader",
        }})),
    }
}

/// A master's command as the JSON text the JS layer parses (none: nothing for JS). A request
/// waits in `calls` until JS answers it.
fn command_text(command: Command<'_>, calls: &WorkerCalls) -> Option<String> {
    let event = match command {
        // The hot path: the payload's text as the master wrote it, into the event's text.
        Command::Message(data) => return Some(format!(r#"{{"event":"message","data":{}}}"#, data.get())),
        Command::Event(event) => event,
        // A kind newer than this addon: the JS layer passes unknown events over.
        _ => return Some(json!({ "event": "unknown" }).to_string()),
    };
    let event = match event {
        BusEvent::Request(incoming) => return calls.take(incoming),
        BusEvent::WorkerMessage { from, data } => json!({ "event": "worker-message", "from": from, "data": data }),
        BusEvent::StoreChanged { watch, path, value } => {
            json!({ "event": "store-changed", "watch": watch, "path": path, "value": value })
        }
        BusEvent::Leader { key, leader, term, you } => {
            json!({ "event": "leader", "key": key, "leader": leader, "term": term, "you": you })
        }
        BusEvent::Stop => json!({ "event": "stop" }),
        BusEvent::Quit => json!({ "event": "quit" }),
        BusEvent::Message(data) => json!({ "event": "message", "data": data }),
        // The fd belongs to JavaScript from here (lib/listen.js makes a net.Socket of it).
        BusEvent::Connection(conn) => match conn.take_fd() {
            Some(fd) => json!({
                "event": "connection",
                "fd": fd.into_raw_fd(),
                "listener": conn.listener,
                "remote": conn.remote,
            }),
            None => return None,
        },
        BusEvent::Reconfigure(incoming) => {
            json!({ "event": "reconfigure", "version": incoming.version, "config": incoming.config })
        }
        BusEvent::Closed(why) => json!({
            "event": "closed",
            "error": why.map(|e| error::describe_bus(&BusError::Protocol(e))),
        }),
        _ => json!({ "event": "unknown" }),
    };
    Some(event.to_string())
}

/// On the JS thread, when the handshake is over: gives JavaScript the `connected` event, then the
/// commands that came with the welcome (the handshake's read may have buffered some, where a poll
/// cannot see them), then every command as soon as the channel is readable, until it ends. All
/// through `callback`, so they keep their order. The watch is unreferenced: the thread-safe
/// function's reference keeps Node alive for the bus, as before the handshake.
fn read_on_js_thread(
    env: napi::sys::napi_env,
    connected: &str,
    mut reader: CommandReader,
    callback: JsCallback,
    calls: WorkerCalls,
    answers: JsThreadCalls,
) -> napi::Result<()> {
    callback.call_with_str(connected);
    let deliver = move |reader: &mut CommandReader| {
        let open = reader.read_ready(&mut |event| {
            if let Some(text) = command_text(event, &calls) {
                callback.call_with_str(&text);
            }
        });
        // The answers this read brought (or, the channel over, every request's failure).
        for settled in answers.poll_ready() {
            callback.call_with_str(&settled);
        }
        open
    };
    if !deliver(&mut reader) {
        return Ok(());
    }
    let fd = reader.fd();
    ReadWatch::start(env, fd, false, Box::new(move || deliver(&mut reader))).map(|_| ())
}

/// An object of numbers from its JSON text, or a `TypeError` naming `what`.
fn numbers(text: &str, what: &str) -> napi::Result<BTreeMap<String, f64>> {
    serde_json::from_str(text).map_err(|e| error::type_error(format!("{what}: an object of numbers is expected: {e}")))
}

/// A listening socket the master handed over. `fd` now belongs to JavaScript: Node's
/// `server.listen({ fd })` takes it over (and closes it with the server); unused, close it.
#[napi(object)]
pub struct ListeningSocket {
    /// The file descriptor, already bound and listening, shared with the master and the other workers.
    pub fd: i32,
    /// The address it is bound to (the real port, for port 0), e.g. `[::]:8080`.
    pub local: String,
    /// `"round-robin"` or `"sticky"` when the master accepts the connections itself and hands
    /// them over as `connection` events: do not accept on `fd`. `"reuseport"`: `fd` is this
    /// worker's own slot; accept on it and serve the `connection` events too.
    pub balance: Option<String>,
}

/// A worker's connection to its master. Use the `MessageBus` class of the `drover` package.
#[napi]
pub struct NativeBus {
    shared: Arc<Shared>,
    /// Requests for this worker's handlers that JS has yet to answer.
    calls: WorkerCalls,
    /// This worker's requests under way, settled on the JS thread.
    answers: JsThreadCalls,
}

#[napi]
impl NativeBus {
    /// Starts connecting to the master named by this process's environment. `on_event` receives
    /// `connected`, `connect-error`, `stop`, `quit`, `message`, `error` and `closed` events, each
    /// as JSON text.
    #[napi(constructor, catch_unwind)]
    pub fn new(env: Env, on_event: Function<String, Unknown<'static>>) -> napi::Result<NativeBus> {
        let raw_env = env.raw();
        let mut callback = Some(JsCallback::new(
            raw_env,
            napi::JsValue::raw(&on_event),
            "drover.MessageBus",
            false,
        )?);
        let calls = WorkerCalls::default();
        let reading_calls = calls.clone();
        let answers = JsThreadCalls::default();
        let reading_answers = answers.clone();
        let events: EventFn = on_event
            .build_threadsafe_function::<FromRuntime>()
            .callee_handled::<false>()
            .build_callback(move |ctx| match ctx.value {
                FromRuntime::Event(text) => Ok(Some(text)),
                // `connected` and what follows go through the callback: `null` to JavaScript here.
                FromRuntime::Connected { event, reader } => match callback.take() {
                    Some(callback) => match read_on_js_thread(
                        raw_env,
                        &event,
                        reader,
                        callback,
                        reading_calls.clone(),
                        reading_answers.clone(),
                    ) {
                        Ok(()) => Ok(None),
                        Err(e) => {
                            let error = json!({ "name": "MessageBusError", "message": format!(
                                "cannot read the master's commands on the JS thread: {e}"
                            )});
                            Ok(Some(json!({ "event": "connect-error", "error": error }).to_string()))
                        }
                    },
                    None => Ok(Some(event)),
                },
            })?;
        let shared = Arc::new(Shared {
            conn: Mutex::new(Conn::Connecting(Vec::new())),
            events,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            settled: Notify::new(),
            connected_at: Instant::now(),
        });
        napi::bindgen_prelude::spawn(run(shared.clone()));
        Ok(NativeBus { shared, calls, answers })
    }

    /// Reports a status by its protocol number (3 STARTED, 5 STOPPED, 7 SHUTTED_DOWN...).
    #[napi(catch_unwind)]
    pub fn send_status(&self, status: u32) -> napi::Result<()> {
        let status = u8::try_from(status)
            .ok()
            .and_then(WorkerStatus::from_code)
            .ok_or_else(|| error::type_error(format!("unknown worker status {status} (known: 1..=8)")))?;
        self.shared.send(Outbound::Status(status))
    }

    /// Sends a user message: the JSON text of any JSON value.
    #[napi(catch_unwind)]
    pub fn send_message(&self, data: String) -> napi::Result<()> {
        let data = crate::master::message_from_js(data)?;
        self.shared.send(Outbound::Message(data))
    }

    /// Sends a heartbeat (with this process's resident memory and uptime), carrying `stats`: the
    /// JSON text of an object of numbers (event-loop lag, GC counts), none if absent.
    #[napi(catch_unwind)]
    pub fn heartbeat(&self, stats: Option<String>) -> napi::Result<()> {
        let stats = match stats {
            Some(text) => numbers(&text, "MessageBus heartbeat stats")?,
            None => BTreeMap::new(),
        };
        self.shared.send(Outbound::Heartbeat(stats))
    }

    /// Publishes the application status (`null`: none) and counters (the JSON text of an object
    /// of finite numbers), replacing the last ones; the JS layer checked their bounds.
    #[napi(catch_unwind)]
    pub fn set_app_status(&self, status: Option<String>, counters: String) -> napi::Result<()> {
        let counters = numbers(&counters, "MessageBus.setAppStatus(status, counters)")?;
        self.shared.send(Outbound::AppStatus(status, counters))
    }

    /// Asks the master for its listening socket on `address` (`host:port`, `[v6]:port`, `port`,
    /// `unix:/path`); waits for the handshake first. A bind error rejects with a `ListenError`
    /// naming the address and the errno.
    #[napi(catch_unwind)]
    pub fn listen<'env>(&self, env: &'env Env, address: String) -> napi::Result<PromiseRaw<'env, ListeningSocket>> {
        let shared = self.shared.clone();
        env.spawn_future(crate::guard(async move {
            let sender = shared
                .ready_sender(&format!("ask the master to listen on {address}"))
                .await?;
            let listening = sender
                .listen(&address)
                .await
                .map_err(|e| error::tagged(error::describe_bus(&e)))?;
            Ok(ListeningSocket {
                fd: listening.fd.into_raw_fd(),
                local: listening.local,
                balance: listening.balance.map(|b| b.as_str().to_string()),
            })
        }))
    }

    /// Declares the handlers this worker answers (the full set, replacing the last one): requests
    /// for them come as `{ event: "request", id, from, name, args }` events. A bad name, or too
    /// many, throws a `RequestError`.
    #[napi(catch_unwind)]
    pub fn set_handlers(&self, names: Vec<String>) -> napi::Result<()> {
        request::check_names(&names)?;
        self.shared.send(Outbound::Handlers(names))
    }

    /// JavaScript's answer to config `version` (a `reconfigure` event): applied when `error` is
    /// absent, else refused with it as the reason.
    #[napi(catch_unwind)]
    pub fn ack_reconfigure(&self, version: f64, error: Option<String>) -> napi::Result<()> {
        let version = request::positive_integer(version, "a config version")?;
        self.shared
            .send(Outbound::Reconfigured(version, error.map_or(Ok(()), Err)))
    }

    /// JavaScript's answer to request `id`: `ok` with the result's JSON text, or the failure's
    /// message. False if the request no longer waits (answered already).
    #[napi(catch_unwind)]
    pub fn respond(&self, id: f64, ok: bool, text: String) -> napi::Result<bool> {
        let id = request::positive_integer(id, "a request id")?;
        let Some(incoming) = self.calls.answered(id) else {
            return Ok(false);
        };
        let shared = self.shared.clone();
        let reply = async move {
            if let Err(e) = incoming.reply(request::answer_from_js(ok, text)).await {
                shared.report("answer a request", &e);
            }
        };
        if let Err(rest) = crate::start_now(reply) {
            napi::bindgen_prelude::spawn(rest);
        }
        Ok(true)
    }

    /// Calls handler `name` of `target` (the master, a worker, any or all) with `args` (JSON
    /// text); resolves with the result's JSON text, or rejects with a `RequestError`.
    #[napi(catch_unwind)]
    pub fn request<'env>(
        &self,
        env: &'env Env,
        target: String,
        name: String,
        args: String,
        timeout_ms: Option<f64>,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let (target, args, timeout) = request::parse_call("MessageBus.request", &target, &args, timeout_ms)?;
        let shared = self.shared.clone();
        env.spawn_future(crate::guard(async move {
            let sender = shared.ready_sender(&format!("request {name:?}")).await?;
            request::outcome(sender.request(target, &name, &args, timeout).await)
        }))
    }

    /// Calls handler `name` of `target` with `args` (JSON text) as [`NativeBus::request`] does,
    /// but settles on the JS thread: the outcome is the `{ event: "settled", call, result | error }`
    /// event of the bus's callback, delivered on the loop turn that read the answer (see
    /// `JsThreadCalls`). Returns that event's text if the request ended at once (refused),
    /// `null` if it is under way, and `""` while the bus is not connected (use `request` then).
    #[napi(catch_unwind)]
    pub fn request_now(
        &self,
        call: f64,
        target: String,
        name: String,
        args: String,
        timeout_ms: Option<f64>,
    ) -> napi::Result<Option<String>> {
        let call = request::positive_integer(call, "a call number")?;
        let (target, args, timeout) = request::parse_call("MessageBus.request", &target, &args, timeout_ms)?;
        let sender = match &*self.shared.conn() {
            Conn::Ready(sender) => sender.clone(),
            _ => return Ok(Some(String::new())),
        };
        let answer = async move { sender.request(target, &name, &args, timeout).await };
        match crate::start_now(answer) {
            Ok(outcome) => Ok(Some(request::settled_text(call, outcome))),
            Err(rest) => {
                let shared = self.shared.clone();
                let emit = move |text: String| {
                    shared
                        .events
                        .call(FromRuntime::Event(text), ThreadsafeFunctionCallMode::NonBlocking);
                };
                self.answers.add(call, rest, timeout, emit);
                Ok(None)
            }
        }
    }

    /// Sends `data` (JSON text) to other workers (`target`: a worker, a name, any or all);
    /// resolves with how many it was written to, or rejects with a `RequestError`.
    #[napi(catch_unwind)]
    pub fn send_to<'env>(&self, env: &'env Env, target: String, data: String) -> napi::Result<PromiseRaw<'env, f64>> {
        let target = request::parse_target(&target, "MessageBus.sendTo")?;
        let data = request::parse_json(&data, "MessageBus.sendTo(data)")?;
        let shared = self.shared.clone();
        env.spawn_future(crate::guard(async move {
            let sender = shared.ready_sender("send to a worker").await?;
            sender
                .send_to(target, &data)
                .await
                .map(|count| count as f64)
                .map_err(|e| request::from_core(&e))
        }))
    }

    /// Resolves once every send made so far is written (those queued during the handshake included).
    #[napi(catch_unwind)]
    pub fn flush<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let shared = self.shared.clone();
        env.spawn_future(crate::guard(async move {
            // Sends made during the handshake are dispatched when it ends: wait for that first.
            shared.handshake_over().await;
            shared.drained().await;
            Ok(())
        }))
    }

    /// Stops sending (the channel's write side is closed once written sends drain) and lets Node
    /// exit: the event callback is unreferenced. Calling it again does nothing.
    #[napi(catch_unwind)]
    pub fn close(&self, env: &Env) -> napi::Result<()> {
        *self.shared.conn() = Conn::Closed;
        self.unref(env)
    }

    /// Lets Node exit even though the bus is open (after the master closed the channel).
    #[napi(catch_unwind)]
    pub fn unref(&self, env: &Env) -> napi::Result<()> {
        if self.shared.events.aborted() {
            return Ok(());
        }
        // SAFETY: called on the JS thread of the env that created the function; it is alive (we
        // hold it, not aborted). Unreferencing twice is harmless.
        let status = unsafe { napi::sys::napi_unref_threadsafe_function(env.raw(), self.shared.events.raw()) };
        if status == napi::sys::Status::napi_ok {
            Ok(())
        } else {
            Err(error::internal(&format!(
                "napi_unref_threadsafe_function returned {status}"
            )))
        }
    }
}
