//! Leader clients, the Rust face (cluster-client's leader/follower pattern, PROTOCOL.md §5.10
//! "Leader clients"): of all the workers that share a [`Cluster`] name, only the elected leader
//! creates the real client ([`LeaderClient::connect`]) and holds its upstream connection; every
//! worker — the leader too — invokes, publishes and subscribes through the same [`Cluster`].
//! Followers reach the leader by requests routed by the master and get their subscriptions'
//! events as worker messages; the wire form is the one the Node face's `bus.cluster()` speaks, so
//! Rust and Node workers can share one leader.
//!
//! The worker's own loop hands every [`BusEvent`] to [`Cluster::handle`] first, which keeps those
//! that are the cluster's (the `leader` frames, its requests and forwarded events):
//!
//! ```no_run
//! use drover::leader_client::{Cluster, EventSink, LeaderClient};
//! use serde_json::{json, Value};
//!
//! struct Upstream; // e.g. one TCP connection to a registry
//! impl LeaderClient for Upstream {
//!     async fn connect() -> Result<Self, String> { Ok(Upstream) }
//!     async fn invoke(&self, method: String, args: Value) -> Result<Value, String> { Ok(json!([method, args])) }
//!     async fn publish(&self, _topic: Value, _data: Value) -> Result<(), String> { Ok(()) }
//!     fn subscribe(&self, _topic: Value, _events: EventSink) {}
//!     async fn close(&self) {}
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut bus = drover::MessageBus::connect().await?;
//! let cluster = Cluster::<Upstream>::join(bus.sender(), "registry").await?;
//! bus.sender().set_handlers(&[&cluster.handler_name()]).await?;
//! bus.send_started().await?;
//! let answer = cluster.invoke("get", json!(["key"])).await?;
//! while let Some(event) = bus.recv().await {
//!     let Some(event) = cluster.handle(event).await else { continue };
//!     // ... the worker's own events
//! #   let _ = (event, &answer);
//! }
//! # Ok(()) }
//! ```

use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

use crate::bus::{BusEvent, BusSender};
use crate::request::{RequestError, RequestErrorCode, Target};
use crate::WorkerId;

/// Events of one subscription a [`Cluster`] queues for its reader; past it, events are dropped
/// and the reader gets a [`ClusterEvent::Gap`] saying how many.
pub const MAX_SUBSCRIPTION_QUEUE: usize = 1024;
/// Calls ([`Cluster::invoke`], `publish`, `subscribe`) of one [`Cluster`] waiting at once.
pub const MAX_PENDING_INVOKES: usize = 1024;
/// (Follower, topic) pairs a leader forwards events to.
pub const MAX_SUBSCRIPTIONS: usize = 1024;
/// Events written to one follower and not yet acknowledged; past it, events to that follower are
/// dropped (it sees the sequence jump and tells its reader of the gap).
pub const MAX_FORWARD_QUEUE: usize = 256;
/// How long a call waits for a leader and its answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

const NOT_LEADER: &str = "not-leader:";

/// The real client, created in the leader only. Errors are messages (they reach followers as
/// such).
pub trait LeaderClient: Send + Sync + Sized + 'static {
    /// Connects upstream: called when this worker becomes the leader.
    fn connect() -> impl Future<Output = Result<Self, String>> + Send;
    /// Runs `method` with `args`.
    fn invoke(&self, method: String, args: Value) -> impl Future<Output = Result<Value, String>> + Send;
    /// Publishes `data` on `topic`.
    fn publish(&self, topic: Value, data: Value) -> impl Future<Output = Result<(), String>> + Send;
    /// Subscribes upstream to `topic` (once per topic): each event goes to `events.emit()`.
    fn subscribe(&self, topic: Value, events: EventSink);
    /// Closes the upstream connection: called when this worker stops leading.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// Where a [`LeaderClient`] puts the events of one topic.
#[derive(Clone)]
pub struct EventSink {
    emit: Arc<dyn Fn(Value) + Send + Sync>,
}

impl EventSink {
    /// One event of the topic (ignored once the client no longer leads).
    pub fn emit(&self, data: Value) {
        (self.emit)(data)
    }
}

/// What a subscription's reader gets.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterEvent {
    /// One event of the topic.
    Data(Value),
    /// The events after `last` (the last one delivered, if any) until the next `Data` may be
    /// lost: the leader changed, or `missed` events were dropped at a full queue.
    Gap {
        /// Why.
        reason: GapReason,
        /// The last event delivered before the gap.
        last: Option<Value>,
    },
    /// The subscription is made again with the leader of `term`.
    Resubscribed {
        /// The leadership's term.
        term: u64,
    },
}

/// Why a [`ClusterEvent::Gap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// Another worker leads now.
    LeaderChanged,
    /// This many events were dropped (a full queue).
    Dropped(u64),
}

struct Sub {
    topic: Value,
    tx: mpsc::Sender<ClusterEvent>,
    term: u64,
    last_seq: u64,
    last: Option<Value>,
    gap_open: bool,
    dropped: u64,
}

struct Up {
    seq: u64,
    followers: BTreeSet<WorkerId>,
}

struct State<C> {
    term: u64,
    leader: Option<WorkerId>,
    you: bool,
    client: Option<Arc<C>>,
    subs: HashMap<String, Sub>,
    upstream: HashMap<String, Up>,
    forwarding: usize,
    in_flight: HashMap<WorkerId, usize>,
    pending: usize,
}

struct Shared<C> {
    name: String,
    sender: BusSender,
    state: Mutex<State<C>>,
    /// The term and whether a leader (with its client, here) is ready: calls wait on it.
    ready: watch::Sender<(u64, bool)>,
}

/// One worker's face of a leader client named `name` (see the module's documentation).
pub struct Cluster<C: LeaderClient> {
    shared: Arc<Shared<C>>,
}

impl<C: LeaderClient> Clone for Cluster<C> {
    fn clone(&self) -> Self {
        Cluster {
            shared: self.shared.clone(),
        }
    }
}

fn failure(code: RequestErrorCode, message: impl Into<String>) -> RequestError {
    RequestError::new(code, message)
}

impl<C: LeaderClient> Cluster<C> {
    /// Joins the leadership `name` through `sender`. Declare [`Cluster::handler_name`] among the
    /// worker's handlers ([`BusSender::set_handlers`]) so that followers can reach it.
    pub async fn join(sender: BusSender, name: &str) -> Result<Cluster<C>, RequestError> {
        let shared = Arc::new(Shared {
            name: name.to_string(),
            sender: sender.clone(),
            state: Mutex::new(State {
                term: 0,
                leader: None,
                you: false,
                client: None,
                subs: HashMap::new(),
                upstream: HashMap::new(),
                forwarding: 0,
                in_flight: HashMap::new(),
                pending: 0,
            }),
            ready: watch::channel((0, false)).0,
        });
        sender.leader_join(name).await?;
        Ok(Cluster { shared })
    }

    /// The handler followers call in the leader: `leader:NAME`.
    pub fn handler_name(&self) -> String {
        format!("leader:{}", self.shared.name)
    }

    /// Who leads (none: nobody for now), and whether it is this worker.
    pub fn leader(&self) -> (Option<WorkerId>, bool) {
        let s = self.lock();
        (s.leader, s.you)
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `event` if it is this cluster's (its `leader` frames, its requests, the events a
    /// leader forwards); gives it back otherwise.
    pub async fn handle(&self, event: BusEvent) -> Option<BusEvent> {
        match event {
            BusEvent::Leader { key, leader, term, you } if key == self.shared.name => {
                self.leader_changed(leader, term, you).await;
                None
            }
            BusEvent::Request(request) if request.name == self.handler_name() => {
                let this = self.clone();
                tokio::spawn(async move {
                    let answer = this.serve(request.from, &request.args).await;
                    let _ = request.reply(answer).await;
                });
                None
            }
            BusEvent::WorkerMessage { from, data } if data["cc"] == self.shared.name.as_str() => {
                self.forwarded(from, &data);
                None
            }
            other => Some(other),
        }
    }

    /// Calls `method` of the real client in the leader, waiting for one (at most [`CALL_TIMEOUT`]).
    pub async fn invoke(&self, method: &str, args: Value) -> Result<Value, RequestError> {
        let method = method.to_string();
        let request = json!({ "op": "invoke", "method": method, "args": [args.clone()] });
        self.call(request, move |c| Box::pin(async move { c.invoke(method, args).await }))
            .await
    }

    /// Publishes `data` on `topic` through the leader's client.
    pub async fn publish(&self, topic: Value, data: Value) -> Result<(), RequestError> {
        let request = json!({ "op": "publish", "topic": topic, "data": data });
        self.call(request, move |c| {
            Box::pin(async move { c.publish(topic, data).await.map(|_| Value::Null) })
        })
        .await
        .map(|_| ())
    }

    /// Subscribes to `topic`: its events, gaps and resubscriptions come on the receiver (at most
    /// [`MAX_SUBSCRIPTION_QUEUE`] waiting), across leader changes.
    pub async fn subscribe(&self, topic: Value) -> Result<mpsc::Receiver<ClusterEvent>, RequestError> {
        let key = topic.to_string();
        let (tx, rx) = mpsc::channel(MAX_SUBSCRIPTION_QUEUE);
        {
            let mut s = self.lock();
            let term = s.term;
            s.subs.insert(
                key.clone(),
                Sub {
                    topic: topic.clone(),
                    tx,
                    term,
                    last_seq: 0,
                    last: None,
                    gap_open: false,
                    dropped: 0,
                },
            );
        }
        self.subscribe_with_leader(key).await?;
        Ok(rx)
    }

    async fn subscribe_with_leader(&self, key: String) -> Result<(), RequestError> {
        let topic = self.lock().subs.get(&key).map(|s| s.topic.clone()).unwrap_or_default();
        let request = json!({ "op": "subscribe", "topic": topic });
        let this = self.clone();
        let local_key = key.clone();
        self.call(request, move |_| {
            Box::pin(async move { this.forward(&local_key, 0).map(|_| Value::Bool(true)) })
        })
        .await?;
        let term = self.lock().term;
        if let Some(sub) = self.lock().subs.get(&key) {
            let _ = sub.tx.try_send(ClusterEvent::Resubscribed { term });
        }
        Ok(())
    }

    /// Runs `local` on the real client here if this worker leads, or sends `request` to the
    /// leader; through elections until [`CALL_TIMEOUT`].
    async fn call(
        &self,
        request: Value,
        local: impl FnOnce(Arc<C>) -> std::pin::Pin<Box<dyn Future<Output = Result<Value, String>> + Send>>,
    ) -> Result<Value, RequestError> {
        {
            let mut s = self.lock();
            if s.pending >= MAX_PENDING_INVOKES {
                return Err(failure(
                    RequestErrorCode::Overloaded,
                    format!(
                        "{MAX_PENDING_INVOKES} calls of client {:?} wait for the leader, the most it holds",
                        self.shared.name
                    ),
                ));
            }
            s.pending += 1;
        }
        let outcome = self.call_waiting(request, local).await;
        self.lock().pending -= 1;
        outcome
    }

    async fn call_waiting(
        &self,
        mut request: Value,
        local: impl FnOnce(Arc<C>) -> std::pin::Pin<Box<dyn Future<Output = Result<Value, String>> + Send>>,
    ) -> Result<Value, RequestError> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut ready = self.shared.ready.subscribe();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(failure(
                    RequestErrorCode::Timeout,
                    format!(
                        "client {:?}: no leader answered within {} s",
                        self.shared.name,
                        CALL_TIMEOUT.as_secs()
                    ),
                ));
            }
            let _ = tokio::time::timeout(left, ready.wait_for(|(_, r)| *r)).await;
            let (term, leader, client) = {
                let s = self.lock();
                (s.term, s.leader, s.client.clone())
            };
            let Some(leader) = leader else { continue };
            if let Some(client) = client {
                return local(client)
                    .await
                    .map_err(|m| failure(RequestErrorCode::HandlerFailed, m));
            }
            request["term"] = json!(term);
            match self
                .shared
                .sender
                .request(Target::Worker(leader), &self.handler_name(), &request, left)
                .await
            {
                Ok(answer) => {
                    if let Some(e) = answer.get("error") {
                        let message = e["message"].as_str().unwrap_or("the leader's client failed");
                        return Err(failure(RequestErrorCode::HandlerFailed, message));
                    }
                    return Ok(answer.get("result").cloned().unwrap_or(Value::Null));
                }
                Err(e) if retryable(&e) => {
                    // The leader died or does not lead yet: the next election, then again.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A `leader` frame.
    async fn leader_changed(&self, leader: Option<WorkerId>, term: u64, you: bool) {
        let (released, resubscribe) = {
            let mut s = self.lock();
            if term <= s.term {
                return; // stale
            }
            let was_leader = s.you;
            s.term = term;
            s.leader = leader;
            s.you = you;
            for sub in s.subs.values_mut() {
                if sub.term != 0 && !sub.gap_open {
                    sub.gap_open = true;
                    let _ = sub.tx.try_send(ClusterEvent::Gap {
                        reason: GapReason::LeaderChanged,
                        last: sub.last.clone(),
                    });
                }
                sub.term = term;
                sub.last_seq = 0;
            }
            let released = if was_leader && !you {
                s.upstream.clear();
                s.forwarding = 0;
                s.in_flight.clear();
                s.client.take()
            } else {
                None
            };
            (released, s.subs.keys().cloned().collect::<Vec<_>>())
        };
        self.shared.ready.send_replace((term, false));
        if let Some(client) = released {
            // Deposed: let go of the upstream connection, then tell the master.
            client.close().await;
            let _ = self.shared.sender.leader_resign(&self.shared.name).await;
        }
        if leader.is_none() {
            return;
        }
        if you {
            match C::connect().await {
                Ok(client) if self.lock().term == term => self.lock().client = Some(Arc::new(client)),
                Ok(client) => client.close().await,
                Err(why) => {
                    tracing::warn!(name = %self.shared.name, %why, "the leader client could not connect");
                    let _ = self.shared.sender.leader_resign(&self.shared.name).await;
                    return;
                }
            }
        }
        if self.lock().term == term {
            self.shared.ready.send_replace((term, true));
        }
        for key in resubscribe {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.subscribe_with_leader(key).await {
                    tracing::warn!(error = %e, "a subscription could not be made again");
                }
            });
        }
    }

    /// A follower's request, in the leader.
    async fn serve(&self, from: WorkerId, args: &Value) -> Result<Value, String> {
        let client = {
            let s = self.lock();
            let asked_term = args["term"].as_u64().unwrap_or(0);
            match (&s.client, s.you && asked_term <= s.term) {
                (Some(c), true) => c.clone(),
                _ => {
                    return Err(format!(
                        "{NOT_LEADER} worker is not the leader of {} (yet)",
                        self.shared.name
                    ))
                }
            }
        };
        let outcome = match args["op"].as_str().unwrap_or_default() {
            "invoke" => {
                let method = args["method"].as_str().unwrap_or_default().to_string();
                let arg = args["args"].get(0).cloned().unwrap_or(Value::Null);
                client.invoke(method, arg).await
            }
            "publish" => client
                .publish(args["topic"].clone(), args["data"].clone())
                .await
                .map(|_| Value::Null),
            "subscribe" => self
                .forward(&args["topic"].to_string(), from)
                .map(|_| Value::Bool(true)),
            "unsubscribe" => {
                let mut s = self.lock();
                let removed = s
                    .upstream
                    .get_mut(&args["topic"].to_string())
                    .is_some_and(|u| u.followers.remove(&from));
                if removed {
                    s.forwarding = s.forwarding.saturating_sub(1);
                }
                Ok(Value::Bool(true))
            }
            op => Err(format!("unknown op {op:?}")),
        };
        Ok(match outcome {
            Ok(result) => json!({ "result": result }),
            Err(message) => json!({ "error": { "message": message } }),
        })
    }

    /// Forwards `key`'s events to `follower` (0: this worker), subscribing upstream once.
    fn forward(&self, key: &str, follower: WorkerId) -> Result<(), String> {
        let mut s = self.lock();
        let Some(client) = s.client.clone() else {
            return Err(format!("{NOT_LEADER} no client"));
        };
        if !s.upstream.contains_key(key) {
            s.upstream.insert(
                key.to_string(),
                Up {
                    seq: 0,
                    followers: BTreeSet::new(),
                },
            );
            let topic: Value = serde_json::from_str(key).unwrap_or(Value::Null);
            let this = self.clone();
            let owned = key.to_string();
            let sink = EventSink {
                emit: Arc::new(move |data| this.upstream_event(&owned, &client, data)),
            };
            let client = s.client.clone();
            drop(s);
            if let Some(c) = client {
                c.subscribe(topic, sink);
            }
            s = self.lock();
        }
        if follower != 0 {
            let forwarding = s.forwarding;
            let Some(up) = s.upstream.get_mut(key) else {
                return Ok(());
            };
            if !up.followers.contains(&follower) {
                if forwarding >= MAX_SUBSCRIPTIONS {
                    return Err(format!(
                        "overloaded: the leader forwards {MAX_SUBSCRIPTIONS} subscriptions, the most it holds"
                    ));
                }
                up.followers.insert(follower);
                s.forwarding += 1;
            }
        }
        Ok(())
    }

    /// One upstream event, in the leader: to this worker's subscription and each follower's.
    fn upstream_event(&self, key: &str, from_client: &Arc<C>, data: Value) {
        let mut s = self.lock();
        if !s.client.as_ref().is_some_and(|c| Arc::ptr_eq(c, from_client)) {
            return; // a released client's late event
        }
        let term = s.term;
        let Some(up) = s.upstream.get_mut(key) else { return };
        up.seq += 1;
        let seq = up.seq;
        let followers: Vec<WorkerId> = up.followers.iter().copied().collect();
        if let Some(sub) = s.subs.get_mut(key) {
            deliver(sub, data.clone());
        }
        let message = json!({ "cc": self.shared.name, "term": term, "topic": key, "seq": seq, "data": data });
        for follower in followers {
            let n = s.in_flight.entry(follower).or_insert(0);
            if *n >= MAX_FORWARD_QUEUE {
                continue; // dropped: the follower sees the seq jump
            }
            *n += 1;
            let this = self.clone();
            let message = message.clone();
            tokio::spawn(async move {
                let sent = this.shared.sender.send_to(Target::Worker(follower), &message).await;
                let mut s = this.lock();
                if let Some(n) = s.in_flight.get_mut(&follower) {
                    *n = n.saturating_sub(1);
                }
                if sent.is_err() {
                    // The follower is gone: stop forwarding to it.
                    let mut removed = 0;
                    for up in s.upstream.values_mut() {
                        removed += usize::from(up.followers.remove(&follower));
                    }
                    s.forwarding = s.forwarding.saturating_sub(removed);
                }
            });
        }
    }

    /// An event a leader forwarded, in a follower.
    fn forwarded(&self, from: WorkerId, message: &Value) {
        let mut s = self.lock();
        let term = s.term;
        let leader = s.leader;
        let Some(key) = message["topic"].as_str() else { return };
        let Some(sub) = s.subs.get_mut(key) else { return };
        // Only the current leader's: what a former leader wrote is inside the gap told.
        if message["term"].as_u64() != Some(term) || Some(from) != leader {
            return;
        }
        let seq = message["seq"].as_u64().unwrap_or(0);
        if sub.last_seq != 0 && seq != sub.last_seq + 1 && !sub.gap_open {
            sub.dropped += seq.saturating_sub(sub.last_seq + 1);
        }
        sub.last_seq = seq;
        deliver(sub, message["data"].clone());
    }
}

/// Queues `data` for `sub`'s reader, a gap first if events were dropped.
fn deliver(sub: &mut Sub, data: Value) {
    if sub.dropped > 0 {
        let gap = ClusterEvent::Gap {
            reason: GapReason::Dropped(sub.dropped),
            last: sub.last.clone(),
        };
        if sub.tx.try_send(gap).is_err() {
            sub.dropped += 1;
            return;
        }
        sub.dropped = 0;
    }
    match sub.tx.try_send(ClusterEvent::Data(data.clone())) {
        Ok(()) => {
            sub.last = Some(data);
            sub.gap_open = false;
        }
        Err(_) => sub.dropped += 1,
    }
}

fn retryable(e: &RequestError) -> bool {
    matches!(
        e.code,
        RequestErrorCode::TargetGone | RequestErrorCode::NoSuchTarget | RequestErrorCode::NoSuchHandler
    ) || (e.code == RequestErrorCode::HandlerFailed && e.message.contains(NOT_LEADER))
}
