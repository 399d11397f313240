//! What a master tells its users: the [`Event`] stream.
//!
//! Every subscriber gets every event, in order, from the moment it subscribed, as long as it keeps
//! up. Each [`Events`] subscription has its own bounded queue ([`EVENT_QUEUE_EVENTS`] events and
//! [`EVENT_QUEUE_BYTES`] of messages): a worker that floods messages or heartbeats, or a subscriber
//! that stops reading, cannot take the master's memory. When the queue is full:
//!
//! - **Lifecycle events are kept** (a status, an exit, a failure, a restart, a recycling, giving
//!   up, the master's status): they are what a subscriber acts on, and a worker cannot make many
//!   (each takes a process's state change, and restarts are bounded by the restart intensity).
//!   Past [`EVENT_QUEUE_LIFECYCLE`] of them even these are dropped and counted: a subscriber that
//!   never reads must not hold events for ever.
//! - **Messages, heartbeats, protocol errors and reconfigure answers are dropped and counted**, never silently: the
//!   subscriber reads an [`Event::Dropped`] with the count where they would have been, as the
//!   output lines of `master/output.rs` are. Once dropping, the queue drops them until it is half
//!   empty again, so a subscriber that keeps falling behind reads runs of events between counts.
//!
//! The stream is output only: the master's own loop (`master/arbiter.rs`) does not read it. It
//! gets every exit, none ever dropped, on its own channel from the same emission point
//! ([`EventHub::exits`]). Callback subscribers ([`crate::Master::on_event`]) are
//! called on the emitting task and bound nothing here: the host they hand events to does.

use serde::Serialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// The most events an [`Events`] subscription holds unread before it drops messages, heartbeats,
/// protocol errors and reconfigure answers (counted, see [`Event::Dropped`]).
pub const EVENT_QUEUE_EVENTS: usize = 4096;

/// The most bytes of messages (their payloads, as estimated from the decoded JSON) an [`Events`]
/// subscription holds unread before it drops messages (counted).
pub const EVENT_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// The most events an [`Events`] subscription holds unread at all: past this, lifecycle events
/// are dropped and counted too (a subscriber that never reads, for days of restarts).
pub const EVENT_QUEUE_LIFECYCLE: usize = 65536;

use crate::exit::WorkerExit;
use crate::protocol::ProtocolError;
use crate::status::{MasterStatus, WorkerStatus};
use crate::WorkerId;

/// Why the master gave up on a worker before it exited.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerFailure {
    /// It did not report STARTED within the start timeout.
    #[error("did not report STARTED within {timeout:?}")]
    StartTimeout {
        /// The timeout in force.
        timeout: Duration,
    },
    /// It broke the protocol (and the master's policy is to fail it).
    #[error("protocol error: {error}")]
    Protocol {
        /// What it did.
        error: ProtocolError,
    },
    /// It reported FAILED itself.
    #[error("reported FAILED")]
    Reported,
    /// It sent no heartbeat for too long.
    #[error("sent no heartbeat for {silent_for:?}")]
    Hung {
        /// How long it had been silent.
        silent_for: Duration,
    },
    /// The process could not be created.
    #[error("could not spawn {program}: {error}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error, with its errno name.
        error: String,
        /// The raw errno, when there is one.
        errno: Option<i32>,
    },
}

/// Something that happened in a master.
///
/// How it is shown to people is [`Event`]'s `Display` (one line of English) and
/// [`Event::summary`]; to programs, [`Event::to_json`] (the versioned JSON form every face gives).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
/// New kinds may be added in a compatible version (like `Dropped` and `Spawned` were): match with a `_` arm.
#[non_exhaustive]
pub enum Event {
    /// A worker process was created (its status is INITIALIZED: the master assigns it at spawn,
    /// and no [`Event::Status`] announces it, as `docs/PROTOCOL.md` §6.2 has no such transition).
    Spawned {
        /// The worker.
        id: WorkerId,
        /// Its new process.
        pid: u32,
    },
    /// A worker's status changed (reported by it, or assigned by the master: FAILED on a failure).
    Status {
        /// The worker.
        id: WorkerId,
        /// Its process.
        pid: u32,
        /// The previous status.
        from: WorkerStatus,
        /// The new status.
        to: WorkerStatus,
    },
    /// A worker sent a user message.
    Message {
        /// The worker.
        id: WorkerId,
        /// Its process.
        pid: u32,
        /// The payload.
        data: Value,
    },
    /// A worker process ended.
    Exit(WorkerExit),
    /// A worker broke the protocol.
    ProtocolError {
        /// The worker.
        id: WorkerId,
        /// Its process.
        pid: u32,
        /// What it did.
        error: ProtocolError,
    },
    /// The master gave up on a worker (it is being terminated, or was never created).
    Failed {
        /// The worker.
        id: WorkerId,
        /// Its process, if it had one.
        pid: Option<u32>,
        /// Why.
        failure: WorkerFailure,
    },
    /// A worker sent a heartbeat.
    Heartbeat {
        /// The worker.
        id: WorkerId,
        /// Its process.
        pid: u32,
        /// Its resident memory, if it said.
        rss_bytes: Option<u64>,
        /// The runtime statistics the heartbeat carried (PROTOCOL.md §5.1; empty: none), as
        /// sent: a predicate judging each heartbeat sees each one's, not only the last.
        stats: std::collections::BTreeMap<String, f64>,
    },
    /// The master is restarting a worker that exited, after `delay`.
    Restarting {
        /// The worker.
        id: WorkerId,
        /// The backoff delay before the new process is spawned.
        delay: Duration,
        /// The restart count of this worker, including this one.
        restarts: u32,
    },
    /// The master replaces a worker that is too old or too big (make-before-break).
    Recycling {
        /// The worker being replaced.
        id: WorkerId,
        /// Why.
        reason: String,
    },
    /// More than the allowed restarts happened within the window: the master stopped restarting.
    GaveUp {
        /// Restarts within the window.
        restarts: u32,
        /// The window.
        window: Duration,
    },
    /// Every worker's process has exited and none is being restarted (the restart policy left
    /// them, no operation is under way): the group serves nothing until an operation (a restart,
    /// rescale or reload) starts workers again. Emitted once each time the group empties. The
    /// master's status is unchanged (a group that gave up is FAILED and says so with
    /// [`Event::GaveUp`] instead).
    NoWorkerLeft,
    /// The master's own status changed.
    MasterStatus {
        /// The previous status.
        from: MasterStatus,
        /// The new status.
        to: MasterStatus,
    },
    /// The group went out of rotation or back in (ECV: [`crate::Master::mark_down`], the ECV
    /// monitor): what a load balancer's health check of the group now says. Its workers run on.
    Rotation(crate::ecv::Rotation),
    /// A worker answered a reconfigure ([`crate::Master::reconfigure`]): it applied user config
    /// `version`, or refused it with `error`. A worker that got the config in its welcome (it
    /// started after the reconfigure) reports it here too, applied.
    Reconfigured {
        /// The worker.
        id: WorkerId,
        /// Its process.
        pid: u32,
        /// The config's version.
        version: u64,
        /// Why the worker refused it; `None` when it applied it.
        error: Option<String>,
    },
    /// This subscriber's queue was full (it read too slowly): `count` events were dropped here,
    /// in their place in the stream. Only messages, heartbeats and protocol errors are dropped
    /// from a full queue (see the module documentation); never seen by callback subscribers.
    Dropped {
        /// How many events were dropped.
        count: u64,
    },
}

impl Event {
    /// Whether the event is about a process's or the master's lifecycle, which a full queue keeps
    /// (see the module documentation).
    pub fn is_lifecycle(&self) -> bool {
        !matches!(
            self,
            Event::Message { .. }
                | Event::Heartbeat { .. }
                | Event::ProtocolError { .. }
                | Event::Dropped { .. }
                | Event::Reconfigured { .. }
        )
    }

    /// What the event costs a queue, in bytes, roughly: its size, plus its payload's for a message.
    fn cost(&self) -> usize {
        let base = std::mem::size_of::<Event>();
        match self {
            Event::Message { data, .. } => base + value_bytes(data),
            _ => base,
        }
    }
}

/// About the heap a `Value` holds (a cheap walk; a fraction of what decoding it cost).
fn value_bytes(v: &Value) -> usize {
    const SLOT: usize = std::mem::size_of::<Value>();
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(|i| SLOT + value_bytes(i)).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + 2 * SLOT + value_bytes(v)).sum(),
        _ => 0,
    }
}

/// A callback subscriber: called on the task that emits the event.
type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

#[derive(Default)]
struct Subscribers {
    queues: Vec<Arc<Queue>>,
    callbacks: Vec<(u64, Callback)>,
    next_callback: u64,
    /// The master's loop: every exit, lossless (one per process, and the loop reads at once).
    exits: Option<tokio::sync::mpsc::UnboundedSender<WorkerExit>>,
}

impl Drop for Subscribers {
    /// The master is gone: each subscriber reads what is queued, then the end.
    fn drop(&mut self) {
        for q in &self.queues {
            q.close();
        }
    }
}

/// One subscription's queue: everything; a full queue drops messages, heartbeats and protocol
/// errors (counted).
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes an async reader (one reader: a permit is kept if it is not waiting yet).
    wake: Notify,
    /// Wakes a blocking reader.
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<(Event, usize)>,
    bytes: usize,
    /// Dropping since the queue was full, until it is half empty again: a subscriber that keeps
    /// falling behind reads runs of events between counts, not a count after every event.
    dropping: bool,
    /// The hub is gone: nothing more will come.
    closed: bool,
    /// The [`Events`] was dropped: queue nothing more.
    gone: bool,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            state: Mutex::new(QueueState::default()),
            wake: Notify::new(),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_gone(&self) -> bool {
        self.lock().gone
    }

    /// Queues `event`, or counts it dropped.
    /// Queues `event`, whose `cost` the emitter worked out once for every queue.
    fn push(&self, event: Event, cost: usize) {
        let lifecycle = event.is_lifecycle();
        let mut st = self.lock();
        if st.gone || st.closed {
            return;
        }
        let len = st.events.len();
        if st.dropping && len <= EVENT_QUEUE_EVENTS / 2 && st.bytes <= EVENT_QUEUE_BYTES / 2 {
            st.dropping = false;
        }
        let full = if lifecycle {
            len >= EVENT_QUEUE_LIFECYCLE
        } else {
            st.dropping |= len >= EVENT_QUEUE_EVENTS || st.bytes + cost > EVENT_QUEUE_BYTES;
            st.dropping
        };
        if full {
            // Counted where it would have been: one marker per run of drops.
            match st.events.back_mut() {
                Some((Event::Dropped { count }, _)) => *count += 1,
                _ => st.events.push_back((Event::Dropped { count: 1 }, 0)),
            }
        } else {
            st.bytes += cost;
            st.events.push_back((event, cost));
        }
        drop(st);
        self.wake.notify_one();
        self.ready.notify_one();
    }

    /// The next event: `Some(None)` once closed and read to the end, `None` if nothing waits yet.
    fn pop(st: &mut QueueState) -> Option<Option<Event>> {
        match st.events.pop_front() {
            Some((event, cost)) => {
                st.bytes -= cost;
                Some(Some(event))
            }
            None if st.closed => Some(None),
            None => None,
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
        self.ready.notify_all();
    }
}

/// The fan-out point of a master's events.
#[derive(Clone, Default)]
pub(crate) struct EventHub {
    subscribers: Arc<Mutex<Subscribers>>,
    /// The workers' captured stdout and stderr (`master/output.rs`), which travel with the events.
    pub(crate) output: super::output::OutputHub,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventHub")
    }
}

impl EventHub {
    /// Every event, in a bounded queue that drops messages, heartbeats and protocol errors
    /// (counted) when the subscriber falls behind.
    pub(crate) fn subscribe(&self) -> Events {
        let queue = Arc::new(Queue::new());
        self.lock().queues.push(queue.clone());
        Events { queue }
    }

    /// Every worker exit from now on, none ever dropped, emitted just before the public event:
    /// for the master's loop, which applies the restart policy (one receiver per hub; a second
    /// call replaces the first).
    pub(crate) fn exits(&self) -> tokio::sync::mpsc::UnboundedReceiver<WorkerExit> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.lock().exits = Some(tx);
        rx
    }

    pub(crate) fn subscribe_fn(&self, f: Callback) -> Subscription {
        let mut subs = self.lock();
        subs.next_callback += 1;
        let id = subs.next_callback;
        subs.callbacks.push((id, f));
        Subscription {
            hub: Arc::downgrade(&self.subscribers),
            id,
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        tracing::debug!(?event, "drover event");
        let callbacks: Vec<Callback> = {
            let mut subs = self.lock();
            subs.queues.retain(|q| !q.is_gone());
            if let (Event::Exit(exit), Some(master)) = (&event, &subs.exits) {
                // The loop is gone only with its master, when nobody acts on exits any more.
                let _ = master.send(exit.clone());
            }
            let mut takers = subs.queues.iter();
            // Once per event, not per queue: a message's cost walks its payload.
            let cost = if subs.queues.is_empty() { 0 } else { event.cost() };
            if subs.callbacks.is_empty() {
                // The common case: queues only, and the last one takes the event itself (a
                // message's payload is not copied for the one subscriber most masters have).
                let Some(first) = takers.next() else { return };
                let mut last = first;
                for q in takers {
                    last.push(event.clone(), cost);
                    last = q;
                }
                last.push(event, cost);
                return;
            }
            for q in takers {
                q.push(event.clone(), cost);
            }
            subs.callbacks.iter().map(|(_, f)| f.clone()).collect()
        };
        // Outside the lock: a callback may subscribe or unsubscribe.
        for f in callbacks {
            f(&event);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Subscribers> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A callback subscription from [`crate::Master::on_event`]; dropping it unsubscribes.
pub struct Subscription {
    hub: std::sync::Weak<Mutex<Subscribers>>,
    id: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("id", &self.id).finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.lock()
                .unwrap_or_else(|p| p.into_inner())
                .callbacks
                .retain(|(id, _)| *id != self.id);
        }
    }
}

/// A subscription to a master's events, from [`crate::Master::events`]: a bounded queue (see the
/// module documentation for what a full one drops, and how it says so).
pub struct Events {
    queue: Arc<Queue>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let mut st = self.queue.lock();
        st.gone = true;
        st.events.clear();
        st.bytes = 0;
    }
}

impl Events {
    /// The next event; `None` once the master is gone and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            if let Some(next) = Queue::pop(&mut self.queue.lock()) {
                return next;
            }
            self.queue.wake.notified().await;
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        Queue::pop(&mut self.queue.lock()).flatten()
    }

    /// Blocking receive, for threads outside the runtime (the C ABI).
    pub fn blocking_recv(&mut self) -> Option<Event> {
        let mut st = self.queue.lock();
        loop {
            if let Some(next) = Queue::pop(&mut st) {
                return next;
            }
            st = self.queue.ready.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The version of [`Event::to_json`]'s form, given as its `"v"` field. A new event kind or a new
/// field is not a new version (readers skip what they do not know); renaming or retyping a field is.
pub const EVENT_JSON_VERSION: u32 = 1;

/// Whom an event is about, as [`Event::subject`] tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// One worker, and its process when there is one.
    Worker {
        /// The worker.
        id: WorkerId,
        /// Its process, if it has one.
        pid: Option<u32>,
    },
    /// The master as a whole.
    Master,
}

/// A duration as the JSON form gives it: whole milliseconds (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Event {
    /// The event's name in its JSON form (`"event"`), e.g. `"exit"`, `"master_status"`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Event::Spawned { .. } => "spawned",
            Event::Status { .. } => "status",
            Event::Message { .. } => "message",
            Event::Exit(_) => "exit",
            Event::ProtocolError { .. } => "protocol_error",
            Event::Failed { .. } => "failed",
            Event::Heartbeat { .. } => "heartbeat",
            Event::Restarting { .. } => "restarting",
            Event::Recycling { .. } => "recycling",
            Event::GaveUp { .. } => "gave_up",
            Event::NoWorkerLeft => "no_worker_left",
            Event::Rotation(_) => "rotation",
            Event::MasterStatus { .. } => "master_status",
            Event::Dropped { .. } => "dropped",
            Event::Reconfigured { .. } => "reconfigured",
        }
    }

    /// Whom the event is about.
    pub fn subject(&self) -> Subject {
        let worker = |id: WorkerId, pid: Option<u32>| Subject::Worker { id, pid };
        match self {
            Event::Spawned { id, pid }
            | Event::Status { id, pid, .. }
            | Event::Message { id, pid, .. }
            | Event::ProtocolError { id, pid, .. }
            | Event::Heartbeat { id, pid, .. }
            | Event::Reconfigured { id, pid, .. } => worker(*id, Some(*pid)),
            Event::Exit(exit) => worker(exit.id, Some(exit.pid)),
            Event::Failed { id, pid, .. } => worker(*id, *pid),
            Event::Restarting { id, .. } | Event::Recycling { id, .. } => worker(*id, None),
            Event::GaveUp { .. }
            | Event::NoWorkerLeft
            | Event::Rotation(_)
            | Event::MasterStatus { .. }
            | Event::Dropped { .. } => Subject::Master,
        }
    }

    /// What happened, without whom it happened to (the [`Event::subject`]): e.g. `"exited: killed
    /// by SIGKILL (9) in status STARTED, unasked"`. The CLI prints it after its own prefix; the
    /// event's `Display` after `"worker 2 (pid 4121) "`.
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }

    /// The event in drover's versioned JSON form, the one every face gives (the C `json` field, the
    /// Node addon's events): an object with `"v"` ([`EVENT_JSON_VERSION`]), `"event"` ([`Event::kind_name`]) and the
    /// event's fields, durations in whole milliseconds (`delay_ms`), statuses as their protocol
    /// numbers (worker) or names (master), exit reasons and failures as [`crate::ExitReason::to_json`]
    /// and [`WorkerFailure::to_json`] give them, and `"message"`, the failure or protocol error in
    /// words, where there is one.
    pub fn to_json(&self) -> Value {
        let v = EVENT_JSON_VERSION;
        let event = self.kind_name();
        match self {
            Event::Spawned { id, pid } => json!({ "v": v, "event": event, "id": id, "pid": pid }),
            Event::Status { id, pid, from, to } => {
                json!({ "v": v, "event": event, "id": id, "pid": pid, "from": from.code(), "to": to.code() })
            }
            Event::Message { id, pid, data } => json!({ "v": v, "event": event, "id": id, "pid": pid, "data": data }),
            Event::Exit(exit) => json!({
                "v": v,
                "event": event,
                "id": exit.id,
                "pid": exit.pid,
                "reason": exit.reason.to_json(),
                "requested": exit.requested,
                "last_status": exit.last_status.code(),
            }),
            Event::ProtocolError { id, pid, error } => json!({
                "v": v,
                "event": event,
                "id": id,
                "pid": pid,
                "error": error,
                "message": error.to_string(),
            }),
            Event::Failed { id, pid, failure } => json!({
                "v": v,
                "event": event,
                "id": id,
                "pid": pid,
                "failure": failure.to_json(),
                "message": failure.to_string(),
            }),
            Event::Heartbeat {
                id,
                pid,
                rss_bytes,
                stats,
            } => {
                json!({ "v": v, "event": event, "id": id, "pid": pid, "rss_bytes": rss_bytes, "stats": stats })
            }
            Event::Restarting { id, delay, restarts } => {
                json!({ "v": v, "event": event, "id": id, "delay_ms": millis(*delay), "restarts": restarts })
            }
            Event::Recycling { id, reason } => json!({ "v": v, "event": event, "id": id, "reason": reason }),
            Event::GaveUp { restarts, window } => {
                json!({ "v": v, "event": event, "restarts": restarts, "window_ms": millis(*window) })
            }
            Event::MasterStatus { from, to } => json!({
                "v": v,
                "event": event,
                "from": from.name(),
                "to": to.name(),
                "idle": to.is_idle(),
            }),
            Event::Dropped { count } => json!({ "v": v, "event": event, "count": count }),
            Event::Reconfigured {
                id,
                pid,
                version,
                error,
            } => {
                json!({ "v": v, "event": event, "id": id, "pid": pid, "version": version, "error": error })
            }
            Event::NoWorkerLeft => json!({ "v": v, "event": event }),
            Event::Rotation(rotation) => json!({
                "v": v,
                "event": event,
                "in_rotation": rotation.in_rotation(),
                "manual": rotation.manual,
                "monitor": rotation.monitor,
                "message": rotation.why(),
            }),
        }
    }

    /// [`Event::to_json`] as text. A message (the hot path) is written around its payload, without
    /// building the object first.
    pub fn to_json_text(&self) -> String {
        match self {
            Event::Message { id, pid, data } => message_json_text(*id, *pid, &data.to_string()),
            _ => self.to_json().to_string(),
        }
    }
}

/// The JSON form of a message event whose payload is the JSON text `data` (already checked to
/// be JSON): for a face that has the payload as text, as [`Event::to_json_text`] gives it.
pub fn message_json_text(id: WorkerId, pid: u32, data: &str) -> String {
    format!(r#"{{"v":{EVENT_JSON_VERSION},"event":"message","id":{id},"pid":{pid},"data":{data}}}"#)
}

impl WorkerFailure {
    /// The failure in the versioned JSON form of [`Event::to_json`]: `"kind"` and the fields,
    /// durations in whole milliseconds (`timeout_ms`, `silent_for_ms`).
    pub fn to_json(&self) -> Value {
        match self {
            WorkerFailure::StartTimeout { timeout } => {
                json!({ "kind": "start_timeout", "timeout_ms": millis(*timeout) })
            }
            WorkerFailure::Protocol { error } => json!({ "kind": "protocol", "error": error }),
            WorkerFailure::Reported => json!({ "kind": "reported" }),
            WorkerFailure::Hung { silent_for } => json!({ "kind": "hung", "silent_for_ms": millis(*silent_for) }),
            WorkerFailure::Spawn { program, error, errno } => {
                json!({ "kind": "spawn", "program": program, "error": error, "errno": errno })
            }
        }
    }
}

/// What an event says happened, without its subject: see [`Event::summary`].
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a>(&'a Event);

impl std::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Event::Spawned { .. } => f.write_str("spawned"),
            Event::Status { from, to, .. } => write!(f, "{from} -> {to}"),
            Event::MasterStatus { from, to } => write!(f, "{from} -> {to}"),
            Event::Message { .. } => f.write_str("sent a message"),
            Event::Exit(exit) => write!(
                f,
                "exited: {} in status {}, {}",
                exit.reason,
                exit.last_status,
                if exit.requested { "as asked" } else { "unasked" }
            ),
            Event::ProtocolError { error, .. } => write!(f, "broke the protocol: {error}"),
            Event::Failed { failure, .. } => write!(f, "failed: {failure}"),
            Event::Heartbeat {
                rss_bytes: Some(rss), ..
            } => write!(f, "sent a heartbeat ({rss} bytes resident)"),
            Event::Heartbeat { rss_bytes: None, .. } => f.write_str("sent a heartbeat"),
            Event::Restarting { delay, restarts, .. } => {
                write!(f, "restarting in {delay:?} (restart #{restarts})")
            }
            Event::Recycling { reason, .. } => write!(f, "recycling: {reason}"),
            Event::GaveUp { restarts, window } => write!(
                f,
                "gave up restarting: more than {restarts} restarts within {window:?}; the master is FAILED"
            ),
            Event::Dropped { count } => {
                write!(
                    f,
                    "{count} events dropped: the event queue was full (its reader fell behind)"
                )
            }
            Event::Rotation(rotation) => match rotation.why() {
                None => f.write_str("back in rotation"),
                Some(why) => write!(f, "out of rotation ({why}); the workers keep running"),
            },
            Event::Reconfigured {
                version, error: None, ..
            } => write!(f, "applied config version {version}"),
            Event::Reconfigured {
                version,
                error: Some(error),
                ..
            } => write!(f, "refused config version {version}: {error}"),
            Event::NoWorkerLeft => write!(
                f,
                "no worker left: every worker exited and none is being restarted (restart policy)"
            ),
        }
    }
}

/// One line of English: the subject, then the [`Event::summary`], e.g. `"worker 2 (pid 4121)
/// exited: killed by SIGKILL (9) in status STARTED, unasked"` or `"master STARTED -> STOPPING"`.
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.subject(), self) {
            (Subject::Worker { id, pid: Some(pid) }, _) => write!(f, "worker {id} (pid {pid}) ")?,
            (Subject::Worker { id, pid: None }, _) => write!(f, "worker {id} ")?,
            (Subject::Master, Event::MasterStatus { .. }) => f.write_str("master ")?,
            (Subject::Master, _) => {}
        }
        write!(f, "{}", self.summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(i: u64) -> Event {
        Event::Message {
            id: 1,
            pid: 2,
            data: serde_json::json!({ "i": i }),
        }
    }

    fn status() -> Event {
        Event::Status {
            id: 1,
            pid: 2,
            from: WorkerStatus::Started,
            to: WorkerStatus::Stopping,
        }
    }

    #[test]
    fn a_full_queue_drops_messages_counted_in_place_and_keeps_lifecycle_events() {
        let hub = EventHub::default();
        let mut events = hub.subscribe();
        let n = EVENT_QUEUE_EVENTS as u64;
        for i in 0..n + 10 {
            hub.emit(message(i));
        }
        hub.emit(status());
        hub.emit(message(n + 10));
        hub.emit(message(n + 11));
        for i in 0..n {
            assert_eq!(events.try_recv(), Some(message(i)));
        }
        assert_eq!(events.try_recv(), Some(Event::Dropped { count: 10 }));
        assert_eq!(events.try_recv(), Some(status()), "a status is never dropped for room");
        assert_eq!(events.try_recv(), Some(Event::Dropped { count: 2 }));
        assert_eq!(events.try_recv(), None);
        // Room again: nothing is dropped.
        hub.emit(message(7));
        assert_eq!(events.try_recv(), Some(message(7)));
        // Full again, then read a little: still dropping, until half of it is read.
        for i in 0..n + 1 {
            hub.emit(message(i));
        }
        for i in 0..n / 2 - 1 {
            assert_eq!(events.try_recv(), Some(message(i)));
        }
        hub.emit(message(0));
        hub.emit(message(1));
        for i in n / 2 - 1..n {
            assert_eq!(events.try_recv(), Some(message(i)));
        }
        assert_eq!(
            events.try_recv(),
            Some(Event::Dropped { count: 3 }),
            "one count for the run"
        );
        assert_eq!(events.try_recv(), None);
    }

    #[test]
    fn the_master_loop_gets_every_exit_and_nothing_else() {
        let hub = EventHub::default();
        let mut exits = hub.exits();
        let exit = WorkerExit {
            id: 1,
            pid: 2,
            reason: crate::ExitReason::NormalExit { code: 0 },
            requested: false,
            last_status: WorkerStatus::Started,
        };
        for _ in 0..EVENT_QUEUE_LIFECYCLE + 10 {
            hub.emit(message(1));
            hub.emit(status());
            hub.emit(Event::Exit(exit.clone()));
        }
        let mut kept = 0;
        while let Ok(e) = exits.try_recv() {
            assert_eq!(e, exit);
            kept += 1;
        }
        assert_eq!(kept, EVENT_QUEUE_LIFECYCLE + 10, "no subscriber reads, none is lost");
    }

    #[test]
    fn big_messages_are_bounded_by_bytes() {
        let hub = EventHub::default();
        let mut events = hub.subscribe();
        let big = "x".repeat(1024 * 1024);
        for _ in 0..40 {
            hub.emit(Event::Message {
                id: 1,
                pid: 2,
                data: Value::String(big.clone()),
            });
        }
        let mut got: usize = 0;
        let mut dropped: usize = 0;
        while let Some(e) = events.try_recv() {
            match e {
                Event::Message { .. } => got += 1,
                Event::Dropped { count } => dropped += count as usize,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got + dropped, 40);
        assert!(got * big.len() <= EVENT_QUEUE_BYTES, "{got} messages of 1 MiB queued");
        assert!(got >= 15, "{got}");
    }

    #[test]
    fn an_event_reads_as_one_line_naming_its_worker() {
        let exit = Event::Exit(WorkerExit {
            id: 2,
            pid: 4121,
            reason: crate::ExitReason::ExternalSignal {
                signal: 9,
                core_dumped: false,
            },
            requested: false,
            last_status: WorkerStatus::Started,
        });
        assert_eq!(
            exit.to_string(),
            "worker 2 (pid 4121) exited: killed by SIGKILL (9) in status STARTED, unasked"
        );
        assert_eq!(Event::Spawned { id: 1, pid: 2 }.to_string(), "worker 1 (pid 2) spawned");
        let restarting = Event::Restarting {
            id: 3,
            delay: Duration::from_millis(1500),
            restarts: 2,
        };
        assert_eq!(restarting.to_string(), "worker 3 restarting in 1.5s (restart #2)");
        let master = Event::MasterStatus {
            from: MasterStatus::Started,
            to: MasterStatus::Stopping,
        };
        assert_eq!(master.to_string(), "master STARTED -> STOPPING");
        assert_eq!(master.summary().to_string(), "STARTED -> STOPPING");
        assert_eq!(master.subject(), Subject::Master);
    }

    #[test]
    fn the_json_form_is_versioned_with_durations_in_milliseconds() {
        let restarting = Event::Restarting {
            id: 3,
            delay: Duration::from_millis(1500),
            restarts: 2,
        };
        assert_eq!(
            restarting.to_json(),
            json!({ "v": 1, "event": "restarting", "id": 3, "delay_ms": 1500, "restarts": 2 })
        );
        let gave_up = Event::GaveUp {
            restarts: 5,
            window: Duration::from_secs(60),
        };
        assert_eq!(gave_up.to_json()["window_ms"], 60_000);
        let hung = Event::Failed {
            id: 1,
            pid: Some(2),
            failure: WorkerFailure::Hung {
                silent_for: Duration::from_millis(250),
            },
        };
        let v = hung.to_json();
        assert_eq!(v["failure"], json!({ "kind": "hung", "silent_for_ms": 250 }));
        assert_eq!(v["message"], "sent no heartbeat for 250ms");
        let master = Event::MasterStatus {
            from: MasterStatus::Stopping,
            to: MasterStatus::ShutDown,
        };
        assert_eq!(
            master.to_json(),
            json!({ "v": 1, "event": "master_status", "from": "STOPPING", "to": "SHUT_DOWN", "idle": true })
        );
        assert_eq!(Event::Spawned { id: 1, pid: 2 }.to_json()["event"], "spawned");
        assert_eq!(status().to_json()["to"], WorkerStatus::Stopping.code());
    }

    #[test]
    fn a_messages_json_text_is_its_json_form() {
        let m = message(7);
        let text = m.to_json_text();
        let parsed: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(parsed, m.to_json());
        assert_eq!(text, message_json_text(1, 2, r#"{"i":7}"#));
    }

    #[test]
    fn an_exit_reason_keeps_its_serde_form_and_adds_names() {
        let segv = crate::ExitReason::ExternalSignal {
            signal: 11,
            core_dumped: true,
        };
        assert_eq!(
            segv.to_json(),
            json!({ "kind": "EXTERNAL_SIGNAL", "name": "ExternalSignal", "signal": 11, "signal_name": "SIGSEGV", "core_dumped": true })
        );
        let code = crate::ExitReason::AbnormalExit { code: 3 };
        assert_eq!(
            code.to_json(),
            json!({ "kind": "ABNORMAL_EXIT", "name": "AbnormalExit", "code": 3 })
        );
    }

    #[tokio::test]
    async fn the_stream_ends_after_the_last_event_once_the_hub_is_gone() {
        let hub = EventHub::default();
        let mut events = hub.subscribe();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(e) = events.recv().await {
                got.push(e);
            }
            got
        });
        hub.emit(message(1));
        hub.emit(status());
        drop(hub);
        let got = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("the stream ends")
            .expect("no panic");
        assert_eq!(got, vec![message(1), status()]);
    }
}
