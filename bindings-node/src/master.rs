//! `NativeMaster`: a core [`Master`] for JavaScript.
//!
//! One thread-safe function per master carries every [`Event`] to JavaScript, in order, as core's
//! serde form (plus the signal's name on exits). Core calls it from the task that emits the event
//! ([`Master::on_event`]: no forwarding task, one thread hand-off from a worker's actor to the JS
//! thread). It is created *weak* (unreferenced): the JS layer calls [`NativeMaster::set_ref`]
//! according to the master's real state, so Node's loop is kept alive only while the master
//! supervises workers or waits for a flush.
//!
//! Workers' user messages do not take that path: the master's channels are read on the JS thread
//! ([`crate::host`]), and a message reaches the JS callback on the loop turn that read it.

use drover::{DirectMessage, Event, Master, MasterOptions, Subscription, WorkerInfo};
use napi::bindgen_prelude::{Function, PromiseRaw, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use napi_derive::napi;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error;
use crate::host::{JsThreadReader, QueueToJs, ToJs};
use crate::js_call::JsCallback;
use crate::request::{self, MasterCalls};

/// The JS callback that receives a master's events, each as JSON text (`JSON.parse` in V8 is
/// cheaper than building the object through N-API calls): unreferenced at creation, not
/// callee-handled.
type EventFn = ThreadsafeFunction<ToJs, Unknown<'static>, Option<String>, Status, false, true>;

/// A core master, driven from JavaScript. Use the `Master` class of the `drover` package instead.
#[napi]
pub struct NativeMaster {
    master: Master,
    events: Arc<EventFn>,
    /// The requests the JS handlers are answering.
    calls: MasterCalls,
    /// The JS recycle predicate's last verdicts, which core's predicate reads.
    verdicts: Verdicts,
    /// Keeps `events` subscribed to the master; dropped with this object.
    _subscription: Subscription,
}

fn millis_since_epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// One worker's snapshot as the JS layer receives it.
fn worker_json(w: &WorkerInfo) -> Value {
    json!({
        "id": w.id,
        "instance": w.instance,
        "name": w.name,
        "appStatus": w.app_status,
        "counters": w.counters,
        "stats": w.stats,
        "pid": w.pid,
        "status": w.status.code(),
        "statusName": w.status.name(),
        "spawnedAt": millis_since_epoch(w.spawned_at),
        "startedAt": w.started_at.map(millis_since_epoch),
        "restarts": w.restarts,
        "generation": w.generation,
        "rssBytes": w.rss_bytes,
        "alive": w.is_alive(),
        "failure": w.failure.as_ref().map(|f| f.to_string()),
        "exit": w.exit.as_ref().map(|e| json!({
            "reason": e.reason.to_json(),
            "requested": e.requested,
        })),
    })
}

/// An event as the JSON text the JS layer parses: core's versioned JSON form
/// ([`Event::to_json_text`]), which `lib/master.js` turns into the `Master`'s events.
pub(crate) fn event_text(event: &Event) -> String {
    event.to_json_text()
}

/// A message from JS: the JSON text `JSON.stringify` made of it, checked and sent on as it is
/// (decoding it into a `Value` to encode it again cost more than the rest of its way out).
pub(crate) fn message_from_js(text: String) -> napi::Result<Box<RawValue>> {
    drover::protocol::json_text(text).map_err(|e| error::type_error(format!("a message must be JSON: {e}")))
}

/// A user message the JS thread read from a worker's channel, as the text [`event_text`] gives for
/// the same message read by the worker's actor.
pub(crate) fn direct_message_text(message: &DirectMessage<'_>) -> String {
    drover::message_json_text(message.id, message.pid, message.data.get())
}

/// Core's `MasterOptions` from their JSON text, validated into a config. A wrong JS type is a
/// `TypeError`; an unknown or out-of-range option an `InvalidConfigurationError`.
fn parse_options(options: &str) -> napi::Result<drover::MasterConfig> {
    let de = &mut serde_json::Deserializer::from_str(options);
    let options: MasterOptions = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if message.starts_with("invalid type") {
            error::type_error(format!("option `{path}`: {message}"))
        } else {
            error::tagged(json!({
                "name": "InvalidConfigurationError",
                "message": format!("invalid configuration: `{path}`: {message}"),
            }))
        }
    })?;
    options
        .into_config()
        .map_err(|e| error::tagged(error::describe_config(&e)))
}

/// A running ECV monitor ([`NativeMaster::monitor_ecv`]).
#[napi]
pub struct NativeEcvMonitor {
    guard: Option<drover::EcvGuard>,
}

#[napi]
impl NativeEcvMonitor {
    /// Stops the monitor and lifts its mark; callable twice.
    #[napi(catch_unwind)]
    pub fn stop(&mut self) {
        // Dropped within the runtime: the guard aborts a task of it.
        let guard = self.guard.take();
        napi::bindgen_prelude::within_runtime_if_available(move || drop(guard));
    }
}

/// A worker id from JS: a positive integer.
fn worker_id(id: f64) -> napi::Result<u64> {
    request::positive_integer(id, "a worker id")
}

#[napi]
impl NativeMaster {
    /// Validates `options` (a JSON text of core's `MasterOptions`) and creates the master.
    /// Nothing is spawned. `on_event` receives every event, as JSON text.
    #[napi(constructor, catch_unwind)]
    pub fn new(env: Env, options: String, on_event: Function<String, Unknown<'static>>) -> napi::Result<NativeMaster> {
        let config = parse_options(&options)?;
        let master = napi::bindgen_prelude::within_runtime_if_available(|| Master::new(config))
            .map_err(|e| error::tagged(error::describe_config(&e)))?;
        // Workers' messages are read and delivered on this thread (`host`); the rest rides the
        // thread-safe function, whose callback applies channel hand-overs in their turn and gives
        // JavaScript the events (null for a hand-over, which the JS layer skips).
        let reader = JsThreadReader::new(
            env.raw(),
            JsCallback::new(env.raw(), napi::JsValue::raw(&on_event), "drover.Master", false)?,
        );
        let events: Arc<EventFn> = Arc::new(
            on_event
                .build_threadsafe_function::<ToJs>()
                .callee_handled::<false>()
                .weak::<true>()
                .build_callback(move |ctx| Ok(reader.apply(ctx.value)))?,
        );
        let to_js = events.clone();
        let subscription = master.on_event(move |event| {
            // Non-blocking on an unbounded queue: only fails once the function is released (Node
            // is tearing the environment down), when nobody is left to tell.
            let _ = to_js.call(ToJs::Event(event_text(event)), ThreadsafeFunctionCallMode::NonBlocking);
        });
        let to_js = events.clone();
        master.set_channel_host(Arc::new(QueueToJs(move |item| {
            let _ = to_js.call(item, ThreadsafeFunctionCallMode::NonBlocking);
        })));
        Ok(NativeMaster {
            master,
            events,
            calls: MasterCalls::default(),
            verdicts: Verdicts::default(),
            _subscription: subscription,
        })
    }

    /// References (keeps Node's loop alive) or unreferences the event callback.
    #[napi(catch_unwind)]
    pub fn set_ref(&self, env: &Env, referenced: bool) -> napi::Result<()> {
        if self.events.aborted() {
            return Ok(());
        }
        let raw = self.events.raw();
        let status = if referenced {
            // SAFETY: called on the JS thread of the env that created the function (napi methods
            // run there); `raw` is alive: we hold the ThreadsafeFunction and it is not aborted.
            unsafe { napi::sys::napi_ref_threadsafe_function(env.raw(), raw) }
        } else {
            // SAFETY: as above.
            unsafe { napi::sys::napi_unref_threadsafe_function(env.raw(), raw) }
        };
        if status == napi::sys::Status::napi_ok {
            Ok(())
        } else {
            Err(error::internal(&format!(
                "napi_(un)ref_threadsafe_function returned {status}"
            )))
        }
    }

    /// Asks for a `{ event: "flush", id }` event after every event emitted so far: core hands each
    /// event to the thread-safe function before its emitter goes on, so an event emitted before
    /// this call is already in the function's queue, ahead of the flush. False if the function is
    /// gone (no event will come either).
    #[napi(catch_unwind)]
    pub fn flush(&self, id: u32) -> bool {
        let flush = json!({ "event": "flush", "id": id }).to_string();
        self.events
            .call(ToJs::Event(flush), ThreadsafeFunctionCallMode::NonBlocking)
            == Status::Ok
    }

    /// The master's status name, e.g. `"STARTED"`.
    #[napi(catch_unwind)]
    pub fn status(&self) -> String {
        self.master.status().name().to_string()
    }

    /// The number of workers in force (the `count` option, as changed by `rescale`).
    #[napi(catch_unwind)]
    pub fn count(&self) -> u32 {
        u32::try_from(self.master.config().count).unwrap_or(u32::MAX)
    }

    /// The master's name.
    #[napi(catch_unwind)]
    pub fn name(&self) -> String {
        self.master.config().name.clone()
    }

    /// Takes the group out of rotation by hand (ECV); its workers run on.
    #[napi(catch_unwind)]
    pub fn mark_down(&self) {
        self.master.mark_down();
    }

    /// Lifts `markDown`: in rotation again unless an ECV monitor judges the group down.
    #[napi(catch_unwind)]
    pub fn mark_up(&self) {
        self.master.mark_up();
    }

    /// Runs an ECV monitor (`options`: JSON text of `drover::ecv::EcvOptions`) until the handle's
    /// `stop()` or the master's end. InvalidConfigurationError names the field.
    #[napi(catch_unwind)]
    pub fn monitor_ecv(&self, options: String) -> napi::Result<NativeEcvMonitor> {
        let invalid = |message: String| {
            error::tagged(
                json!({ "name": "InvalidConfigurationError", "message": format!("invalid configuration: {message}") }),
            )
        };
        let options: drover::ecv::EcvOptions =
            serde_json::from_str(&options).map_err(|e| invalid(format!("ecv: {e}")))?;
        let monitor = drover::ecv::EcvMonitor::new(options).map_err(|e| invalid(e.to_string()))?;
        let guard = napi::bindgen_prelude::within_runtime_if_available(|| self.master.monitor_ecv(monitor));
        Ok(NativeEcvMonitor { guard: Some(guard) })
    }

    /// `{ inRotation, manual, monitor }`: whether the group is in rotation, and each cause when not.
    #[napi(catch_unwind)]
    pub fn rotation(&self) -> Value {
        let rotation = self.master.rotation();
        json!({ "inRotation": rotation.in_rotation(), "manual": rotation.manual, "monitor": rotation.monitor })
    }
    /// Who leads leadership `key` (PROTOCOL.md §5.10): `{ leader, term }` (leader null: nobody for
    /// now), or null when no worker joined `key`.
    #[napi(catch_unwind)]
    pub fn leader(&self, key: String) -> Value {
        match self.master.leader(&key) {
            Some((leader, term)) => serde_json::json!({ "leader": leader, "term": term }),
            None => Value::Null,
        }
    }

    /// Every worker, by id.
    #[napi(catch_unwind)]
    pub fn workers(&self) -> Vec<Value> {
        self.master.workers().iter().map(worker_json).collect()
    }

    /// One worker, or `null` if the master has none of that id.
    #[napi(catch_unwind)]
    pub fn worker(&self, id: f64) -> napi::Result<Option<Value>> {
        Ok(self.master.worker(worker_id(id)?).as_ref().map(worker_json))
    }

    /// One operation on the master's store (`get`, `set`, `delete`, `cas`, `keys`) with its
    /// arguments' JSON text; resolves with the result's JSON text, or rejects with a
    /// `RequestError` (`bad_request`, `overloaded`...). On the runtime, not the JS thread: a
    /// store kept elsewhere than in the master answers asynchronously, and a change tells the
    /// watchers from tasks spawned there.
    #[napi(catch_unwind)]
    pub fn store<'env>(&self, env: &'env Env, op: String, args: String) -> napi::Result<PromiseRaw<'env, String>> {
        let args = request::parse_json(&args, "Master.store")?;
        let master = self.master.clone();
        env.spawn_future(crate::guard(async move { request::outcome(master.store(&op, args)) }))
    }

    /// Gathers every worker's status functions within `timeout_ms` (none: core's default request
    /// timeout); resolves with the JSON text of `{ workerId: { name: value } }`.
    #[napi(catch_unwind)]
    pub fn gather_statuses<'env>(
        &self,
        env: &'env Env,
        timeout_ms: Option<f64>,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let timeout = request::timeout(timeout_ms, "Master.gatherStatuses(options)")?;
        let master = self.master.clone();
        env.spawn_future(crate::guard(async move {
            Ok(master.gather_statuses(timeout).await.to_string())
        }))
    }

    /// Turns the JS recycle predicate on: from now on core recycles a worker whose last verdict
    /// ([`NativeMaster::set_recycle_verdict`]) gave a reason. The JS layer asks its predicate at
    /// each heartbeat, on the JS thread, and hands the verdict here; core's predicate only reads it.
    #[napi(catch_unwind)]
    pub fn enable_recycle_predicate(&self) {
        let verdicts = self.verdicts.clone();
        self.master.recycle_when(move |w| verdicts.reason(w.id, w.pid));
    }

    /// The JS recycle predicate's verdict on worker `id`'s process `pid`: a reason to replace it,
    /// or none to keep it. A verdict applies to that process only (a replacement starts clean).
    #[napi(catch_unwind)]
    pub fn set_recycle_verdict(&self, id: f64, pid: u32, reason: Option<String>) -> napi::Result<()> {
        self.verdicts.set(worker_id(id)?, pid, reason);
        Ok(())
    }

    /// Every listening socket the master holds (declared or asked for by a worker), as
    /// `{ address, local }`: the address asked for, and the one bound (the real port for port 0).
    #[napi(catch_unwind)]
    pub fn listeners(&self) -> Vec<Value> {
        self.master
            .listeners()
            .into_iter()
            .map(|(address, local)| json!({ "address": address, "local": local }))
            .collect()
    }

    /// Spawns the workers; resolves when every one reported STARTED.
    #[napi(catch_unwind)]
    pub fn start<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let master = self.master.clone();
        env.spawn_future(crate::guard(async move {
            master.start().await.map_err(|e| error::from_core(&e))
        }))
    }

    /// Replaces the process of worker `id`.
    #[napi(catch_unwind)]
    pub fn restart_worker<'env>(&self, env: &'env Env, id: f64) -> napi::Result<PromiseRaw<'env, ()>> {
        let id = worker_id(id)?;
        let master = self.master.clone();
        env.spawn_future(crate::guard(async move {
            master.restart_worker(id).await.map_err(|e| error::from_core(&e))
        }))
    }

    /// Changes the number of workers.
    #[napi(catch_unwind)]
    pub fn rescale<'env>(&self, env: &'env Env, count: f64) -> napi::Result<PromiseRaw<'env, ()>> {
        if !(count.is_finite() && count.fract() == 0.0) {
            return Err(error::type_error(format!(
                "rescale(count): count is an integer, got {count}"
            )));
        }
        if count < 1.0 {
            return Err(error::tagged(error::describe_config(
                &drover::ConfigError::InvalidCount { value: count as i64 },
            )));
        }
        let master = self.master.clone();
        env.spawn_future(crate::guard(async move {
            master.rescale(count as usize).await.map_err(|e| error::from_core(&e))
        }))
    }

    /// Replaces every worker by a new generation (make-before-break), with the current options or
    /// `options` (JSON text of a whole new `MasterOptions`); rolls back on a failed start.
    #[napi(catch_unwind)]
    pub fn graceful_reload<'env>(&self, env: &'env Env, options: Option<String>) -> napi::Result<PromiseRaw<'env, ()>> {
        let config = options.as_deref().map(parse_options).transpose()?;
        let master = self.master.clone();
        env.spawn_future(crate::guard(async move {
            master.graceful_reload(config).await.map_err(|e| error::from_core(&e))
        }))
    }

    /// Applies drover's signal policy to signal number `signal` (HUP reload, TERM/INT graceful
    /// shutdown, a second INT hard); resolves with the action taken (`"Reload"`, `"Ignore"`...).
    #[napi(catch_unwind)]
    pub fn handle_signal<'env>(&self, env: &'env Env, signal: i32) -> napi::Result<PromiseRaw<'env, String>> {
        let master = self.master.clone();
        env.spawn_future(crate::guard(async move {
            master
                .handle_signal(signal)
                .await
                .map(|action| format!("{action:?}"))
                .map_err(|e| error::from_core(&e))
        }))
    }

    /// Ends every worker gracefully; resolves when every one is reaped.
    #[napi(catch_unwind)]
    pub fn graceful_shutdown<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let master = self.master.clone();
        env.spawn_future(crate::guard(async move {
            master.graceful_shutdown().await.map_err(|e| error::from_core(&e))
        }))
    }

    /// SIGKILL to every worker; resolves when every one is reaped.
    #[napi(catch_unwind)]
    pub fn hard_shutdown<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let master = self.master.clone();
        env.spawn_future(crate::guard(async move {
            master.hard_shutdown().await.map_err(|e| error::from_core(&e))
        }))
    }

    /// Sends `data` (JSON text) to worker `id`. The message is written or queued now (so sends keep their
    /// order); the promise resolves once it is written. When the socket takes it at once (the
    /// usual case) the promise is created settled, on this thread: no runtime hop at all.
    #[napi(catch_unwind)]
    pub fn send<'env>(&self, env: &'env Env, id: f64, data: String) -> napi::Result<PromiseRaw<'env, ()>> {
        let id = worker_id(id)?;
        let data = message_from_js(data)?;
        let master = self.master.clone();
        let rest = match crate::start_now(async move { master.send(id, &*data).await }) {
            Ok(done) => return settled(env, done.map_err(|e| error::from_core(&e))),
            Err(rest) => rest,
        };
        env.spawn_future(crate::guard(
            async move { rest.await.map_err(|e| error::from_core(&e)) },
        ))
    }

    /// Registers (or replaces) handler `name`: core calls it for requests to the master, and it
    /// hands each to JavaScript as a `{ event: "request", id, name, from, args }` event, then
    /// waits for [`NativeMaster::respond`] with that `id`. A bad name, or one too many, throws a
    /// `RequestError`.
    #[napi(catch_unwind)]
    pub fn handle(&self, name: String) -> napi::Result<()> {
        let calls = self.calls.clone();
        let to_js = self.events.clone();
        let handler_name = name.clone();
        self.master
            .handle(&name, move |from, args| {
                let calls = calls.clone();
                let to_js = to_js.clone();
                let name = handler_name.clone();
                async move {
                    let waiting = calls.open()?;
                    let event =
                        json!({ "event": "request", "id": waiting.id(), "name": name, "from": from, "args": args });
                    if to_js.call(ToJs::Event(event.to_string()), ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok
                    {
                        return Err("the JavaScript master is gone".to_string());
                    }
                    waiting.answer().await
                }
            })
            .map_err(|e| request::from_core(&e))
    }

    /// Has core run a JavaScript pre-start hook before each start's first spawn: it hands
    /// JavaScript a `{ event: "pre-start", id }` event and waits for [`NativeMaster::respond`]
    /// with that `id` (a failure's message fails the start with a `PreStartError`).
    #[napi(catch_unwind)]
    pub fn set_pre_start(&self) {
        let calls = self.calls.clone();
        let to_js = self.events.clone();
        self.master.pre_start(move || {
            let calls = calls.clone();
            let to_js = to_js.clone();
            async move {
                let waiting = calls.open()?;
                let event = json!({ "event": "pre-start", "id": waiting.id() });
                if to_js.call(ToJs::Event(event.to_string()), ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
                    return Err("the JavaScript master is gone".to_string());
                }
                waiting.answer().await.map(|_| ())
            }
        });
    }

    /// Pushes `config` (JSON text) to every worker without restarting them; resolves with the
    /// JSON text of the per-worker answers (`[{ id, name, instance, pid, outcome, error? }]`).
    #[napi(catch_unwind)]
    pub fn reconfigure<'env>(
        &self,
        env: &'env Env,
        config: String,
        timeout_ms: Option<f64>,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let config = request::parse_json(&config, "Master.reconfigure(config)")?;
        let timeout = match timeout_ms {
            Some(_) => request::timeout(timeout_ms, "Master.reconfigure(config, options)")?,
            None => drover::master::reconfigure::DEFAULT_RECONFIGURE_TIMEOUT,
        };
        let master = self.master.clone();
        env.spawn_future(crate::guard(async move {
            let acks = master
                .reconfigure(config, timeout)
                .await
                .map_err(|e| error::from_core(&e))?;
            let acks: Vec<Value> = acks.iter().map(|a| a.to_json()).collect();
            Ok(Value::Array(acks).to_string())
        }))
    }

    /// JavaScript's answer to request `id` of a handler: `ok` with the result's JSON text, or
    /// the failure's message. False if the request no longer waits (it timed out).
    #[napi(catch_unwind)]
    pub fn respond(&self, id: f64, ok: bool, text: String) -> napi::Result<bool> {
        let id = request::positive_integer(id, "a request id")?;
        Ok(self.calls.respond(id, request::answer_from_js(ok, text)))
    }

    /// Calls handler `name` of `target` with `args` (JSON text); resolves with the result's JSON
    /// text, or rejects with a `RequestError` carrying core's code.
    #[napi(catch_unwind)]
    pub fn request<'env>(
        &self,
        env: &'env Env,
        target: String,
        name: String,
        args: String,
        timeout_ms: Option<f64>,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let (target, args, timeout) = request::parse_call("Master.request", &target, &args, timeout_ms)?;
        let master = self.master.clone();
        env.spawn_future(crate::guard(async move {
            request::outcome(master.request(target, &name, &args, timeout).await)
        }))
    }

    /// Sends `data` (JSON text) to every running worker; resolves with how many it was written to.
    #[napi(catch_unwind)]
    pub fn broadcast<'env>(&self, env: &'env Env, data: String) -> napi::Result<PromiseRaw<'env, u32>> {
        let data = message_from_js(data)?;
        let master = self.master.clone();
        let rest = match crate::start_now(async move { master.broadcast(&*data).await }) {
            Ok(done) => return settled(env, done.map(|n| n as u32).map_err(|e| error::from_core(&e))),
            Err(rest) => rest,
        };
        env.spawn_future(crate::guard(async move {
            rest.await.map(|n| n as u32).map_err(|e| error::from_core(&e))
        }))
    }
}

impl Drop for NativeMaster {
    /// Requests the JS handlers were answering fail now (nobody is left to answer them).
    fn drop(&mut self) {
        self.calls.close();
    }
}

/// The JS recycle predicate's verdicts by worker id: the process it judged and the reason to
/// replace it. One entry per worker the predicate wants gone, so bounded by the workers.
#[derive(Clone, Default)]
struct Verdicts(Arc<std::sync::Mutex<std::collections::HashMap<u64, (u32, String)>>>);

impl Verdicts {
    fn table(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, (u32, String)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, id: u64, pid: u32, reason: Option<String>) {
        match reason {
            Some(reason) => self.table().insert(id, (pid, reason)),
            None => self.table().remove(&id),
        };
    }

    /// The reason to replace worker `id` if the verdict was on this process.
    fn reason(&self, id: u64, pid: u32) -> Option<String> {
        self.table()
            .get(&id)
            .filter(|(judged, _)| *judged == pid)
            .map(|(_, reason)| reason.clone())
    }
}

/// A promise already settled with `result`, created on the JS thread (no runtime, no
/// thread-safe function): a failure rejects it with the tagged error, as a spawned future would.
fn settled<T: napi::bindgen_prelude::ToNapiValue + Send + 'static>(
    env: &Env,
    result: napi::Result<T>,
) -> napi::Result<PromiseRaw<'_, T>> {
    match result {
        Ok(value) => PromiseRaw::resolve(env, value),
        Err(e) => PromiseRaw::reject(env, e),
    }
}
