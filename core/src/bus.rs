//! The worker side: [`MessageBus`], a worker's connection to its master.
//!
//! ```no_run
//! # async fn run() -> Result<(), drover::BusError> {
//! use drover::{BusEvent, MessageBus};
//!
//! let mut bus = MessageBus::connect().await?; // hello / welcome handshake
//! // ... bind sockets, warm caches ...
//! bus.send_started().await?;
//! while let Some(event) = bus.recv().await {
//!     match event {
//!         BusEvent::Stop => { /* finish in-flight work */ bus.send_stopped().await?; }
//!         BusEvent::Quit => { bus.send_shutted_down().await?; break; }
//!         BusEvent::Message(data) => bus.send_message(&data).await?, // echo
//!         BusEvent::Closed(_) => break, // the master is gone
//!         _ => {} // a kind a newer master may send (PROTOCOL.md §13)
//!     }
//! }
//! # Ok(()) }
//! ```

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

use crate::protocol::channel::ChannelRead;
use crate::protocol::codec::{EncodeError, Frame};
use crate::protocol::fdpass::FdQueue;
use crate::protocol::host_read::HostFrames;
use crate::protocol::writer::{FrameKind, FrameWriter, WriteFailure};
use crate::protocol::{self, encode_frame, FrameCodec, MasterFrame, ProtocolError, WorkerFrame, WorkerMeta};
use crate::request::{self, RequestError, RequestErrorCode, Target};
use crate::status::WorkerStatus;
use crate::WorkerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a worker could not talk to its master.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The process was not started by a drover master.
    #[error("not running under a drover master: {0}")]
    NotAWorker(String),
    /// `MessageBus::connect` was already called in this process.
    #[error("the MessageBus of this process is already connected (the channel fd can be owned once)")]
    AlreadyConnected,
    /// The master speaks another protocol version or refused us.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The master went away.
    #[error("the master closed the channel")]
    MasterGone,
    /// A message too large or not JSON.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The socket failed.
    #[error("channel I/O error: {0}")]
    Io(String),
    /// The master could not provide a listening socket.
    #[error(transparent)]
    Listen(ListenRefused),
}

/// Why the master did not provide a listening socket, as a worker learns it: the master's words,
/// and the address and the OS's errno as fields (no face reads them out of the words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ListenRefused {
    /// The address refused: as the master normalised it (e.g. `[::]:8080`), or as the worker
    /// asked for it when the master did not say.
    pub address: String,
    /// The OS's errno (e.g. 98 for `EADDRINUSE`), when the OS refused the bind or listen.
    pub errno: Option<i32>,
    /// The master's description, e.g. `"cannot listen on [::]:80: Permission denied (os error
    /// 13) (EACCES: Permission denied)"`.
    pub message: String,
}

impl ListenRefused {
    /// The errno's name, e.g. `"EADDRINUSE"`, when the OS refused.
    pub fn errno_name(&self) -> Option<String> {
        self.errno.map(crate::listen::errno_name)
    }
}

/// What a master tells a worker.
#[derive(Debug, Clone, PartialEq)]
/// New kinds may be added in a compatible version (PROTOCOL.md §13): match with a `_` arm.
#[non_exhaustive]
pub enum BusEvent {
    /// Stop taking new work, finish in-flight work, then [`MessageBus::send_stopped`].
    Stop,
    /// Release everything, [`MessageBus::send_shutted_down`], and exit.
    Quit,
    /// A user message.
    Message(Value),
    /// A message another worker sent to this one (`BusSender::send_to`), routed by the master.
    WorkerMessage {
        /// The sending worker's id.
        from: WorkerId,
        /// The payload.
        data: Value,
    },
    /// A change in the master's store under one of this worker's watches
    /// ([`BusSender::store_watch`]): `value` is `null` when the path was deleted or expired.
    StoreChanged {
        /// The watch.
        watch: u64,
        /// The path that changed.
        path: String,
        /// Its new value.
        value: Value,
    },
    /// Who leads a leadership this worker joined ([`BusSender::leader_join`]): at each change
    /// and once on joining. `leader` none: nobody, for now (a deposed leader is told this before
    /// anyone else is elected). A `term` lower than one already seen for `key` is stale.
    Leader {
        /// The leadership.
        key: String,
        /// The leading worker, if any.
        leader: Option<WorkerId>,
        /// Grows at each change.
        term: u64,
        /// Whether this worker leads.
        you: bool,
    },
    /// A request for one of the handlers this worker declared ([`BusSender::set_handlers`]):
    /// answer it with [`IncomingRequest::reply`] (an unanswered request times out at its sender).
    Request(IncomingRequest),
    /// A connection on a socket whose connections the master accepts itself (`round-robin`,
    /// `sticky`; [`BusSender::listen`]), handed to this worker to serve.
    Connection(HandedConnection),
    /// A new user config from the master ([`crate::Master::reconfigure`]; PROTOCOL.md §5.11): apply
    /// it, then answer with [`IncomingConfig::ack`] (an unanswered one is a timeout at the master).
    Reconfigure(IncomingConfig),
    /// The channel is closed: the master is gone (or broke the protocol, then the error says how).
    /// Nothing follows; a worker usually shuts down.
    Closed(Option<ProtocolError>),
}

/// What [`CommandReader::read_ready`] gives the host.
#[derive(Debug)]
/// New kinds may be added in a compatible version (PROTOCOL.md §13): match with a `_` arm.
#[non_exhaustive]
pub enum Command<'a> {
    /// A user message, as the JSON text the master wrote: valid JSON, not decoded, for a host
    /// that parses JSON itself (decoding it into a `Value` only to encode it again cost more than
    /// the rest of the frame's way through the core).
    Message(&'a serde_json::value::RawValue),
    /// Anything else, as [`MessageBus::recv`] gives it (a message of unusual shape, which the fast
    /// path leaves to the full decoder, included).
    Event(BusEvent),
}

impl Command<'_> {
    /// As the [`BusEvent`] [`MessageBus::recv`] gives. A `Message` from [`CommandReader`] was
    /// checked to decode (`protocol::message_text`), so this fails only for one built otherwise.
    pub fn into_event(self) -> serde_json::Result<BusEvent> {
        match self {
            Command::Message(text) => serde_json::from_str(text.get()).map(BusEvent::Message),
            Command::Event(event) => Ok(event),
        }
    }
}

/// How a [`MessageBus`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusOptions {
    /// Send heartbeats from a tokio task when the master asks for them (default). A host with its
    /// own event loop (Node) turns this off and calls [`BusSender::send_heartbeat`] from that loop,
    /// so a blocked loop is seen as hung.
    pub auto_heartbeat: bool,
    /// Leave the reading of the master's commands to the host's own event loop: after the
    /// handshake, [`MessageBus::take_command_reader`] gives the reader, and no runtime task reads
    /// (default: false, a runtime task reads). A host whose code runs on its own loop (Node) saves a
    /// thread hand-off per command this way; see [`crate::protocol::host_read`].
    pub host_reads: bool,
}

impl Default for BusOptions {
    fn default() -> BusOptions {
        BusOptions {
            auto_heartbeat: true,
            host_reads: false,
        }
    }
}

static CONNECTED: AtomicBool = AtomicBool::new(false);

/// The sending half of a [`MessageBus`]: cheap to clone, usable from any task.
#[derive(Clone, Debug)]
pub struct BusSender {
    writer: FrameWriter,
    max_frame_bytes: usize,
    requests: Requests,
}

/// Requests waiting for their answer, by request number: `listen` requests for their `listener`
/// frame, handler requests for their `response`, sends for their `sent`.
#[derive(Clone, Debug, Default)]
struct Requests {
    next: Arc<std::sync::atomic::AtomicU64>,
    waiting: Arc<Mutex<HashMap<u64, ListenReply>>>,
    calls: Arc<Mutex<HashMap<u64, CallReply>>>,
}

/// Where the answer to one handler request (or one send's acknowledgement) goes.
type CallReply = oneshot::Sender<Result<Value, RequestError>>;

/// A request the master routed to one of this worker's handlers.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    /// The master's number for it.
    pub id: u64,
    /// Who asks: a worker id, or 0 for the master.
    pub from: WorkerId,
    /// The handler's name.
    pub name: String,
    /// Its arguments.
    pub args: Value,
    sender: BusSender,
}

impl PartialEq for IncomingRequest {
    fn eq(&self, other: &IncomingRequest) -> bool {
        (self.id, self.from, &self.name, &self.args) == (other.id, other.from, &other.name, &other.args)
    }
}

impl IncomingRequest {
    /// Answers the request: `Ok(result)`, or `Err(message)` for a failed handler (the sender gets
    /// [`RequestErrorCode::HandlerFailed`] with the message).
    pub async fn reply(self, result: Result<Value, String>) -> Result<(), BusError> {
        let failed = |message| RequestError::new(RequestErrorCode::HandlerFailed, message);
        let (result, error) = request::split(result.map_err(failed));
        self.sender
            .send_frame(&WorkerFrame::Response {
                id: self.id,
                result,
                error,
            })
            .await
    }
}

/// A new user config the master pushed to this worker ([`BusEvent::Reconfigure`]).
#[derive(Debug, Clone)]
pub struct IncomingConfig {
    /// The master's number for this config (it only grows).
    pub version: u64,
    /// The new user config (replaces the welcome's `config`).
    pub config: Value,
    sender: BusSender,
}

impl PartialEq for IncomingConfig {
    fn eq(&self, other: &IncomingConfig) -> bool {
        (self.version, &self.config) == (other.version, &other.config)
    }
}

impl IncomingConfig {
    /// Tells the master the config was applied (`Ok`), or refused (`Err(reason)`: the worker
    /// keeps its old config; the master's answer for this worker says `refused` with the reason,
    /// cut to [`crate::master::reconfigure::MAX_RECONFIGURE_ERROR_BYTES`]).
    pub async fn ack(self, outcome: Result<(), String>) -> Result<(), BusError> {
        self.sender.ack_reconfigure(self.version, outcome).await
    }
}

impl BusSender {
    /// Answers the master's config `version` ([`BusEvent::Reconfigure`]) by its number, for a host
    /// that hands the config to its own code and keeps only the number (the Node and C faces):
    /// `Ok` applied, `Err(reason)` refused.
    pub async fn ack_reconfigure(&self, version: u64, outcome: Result<(), String>) -> Result<(), BusError> {
        self.send_frame(&WorkerFrame::Reconfigured {
            version,
            error: outcome.err(),
        })
        .await
    }
}

/// Where the answer to one `listen` request goes.
type ListenReply = oneshot::Sender<Result<Listening, BusError>>;

/// A listening socket handed over by the master.
#[derive(Debug)]
pub struct Listening {
    /// The socket, already bound and listening; shared with the master and the other workers.
    pub fd: OwnedFd,
    /// The address it is bound to (the real port, for port 0).
    pub local: String,
    /// `Some` when the master accepts the socket's connections itself (`round-robin`, `sticky`):
    /// do not accept on `fd` (close it, or keep it for its address); the connections come as
    /// [`BusEvent::Connection`]s whose `listener` is `local`. `Some(ReusePort)`: `fd` is this
    /// worker's own slot; accept on it, and serve the [`BusEvent::Connection`]s too (the master
    /// hands over the connections of a slot whose worker is away).
    pub balance: Option<crate::listen::Balance>,
}

/// A connection the master accepted and handed to this worker ([`BusEvent::Connection`]).
#[derive(Debug, Clone)]
pub struct HandedConnection {
    /// The connected socket; take it with [`HandedConnection::take_fd`].
    fd: Arc<Mutex<Option<OwnedFd>>>,
    /// The socket it came in on: the `local` of [`Listening`].
    pub listener: String,
    /// The client's address, for TCP.
    pub remote: Option<String>,
}

impl HandedConnection {
    /// The connected socket, once (a clone of the event shares it: the first take wins).
    pub fn take_fd(&self) -> Option<OwnedFd> {
        lock(&self.fd).take()
    }
}

impl PartialEq for HandedConnection {
    fn eq(&self, other: &HandedConnection) -> bool {
        Arc::ptr_eq(&self.fd, &other.fd)
    }
}

impl BusSender {
    /// Asks the master for a listening socket on `address` (`host:port`, `[v6]:port`, `port`,
    /// `unix:/path`). Every worker asking for the same address gets the same socket, which stays
    /// open in the master across restarts and reloads. A bind error comes back as
    /// [`BusError::Listen`] naming the address and the errno.
    pub async fn listen(&self, address: &str) -> Result<Listening, BusError> {
        let request = self.requests.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        lock(&self.requests.waiting).insert(request, tx);
        let sent = self
            .send_frame(&WorkerFrame::Listen {
                request,
                address: address.to_string(),
            })
            .await;
        if let Err(e) = sent {
            lock(&self.requests.waiting).remove(&request);
            return Err(e);
        }
        match rx.await.unwrap_or(Err(BusError::MasterGone)) {
            Err(BusError::Listen(mut refused)) if refused.address.is_empty() => {
                refused.address = address.to_string();
                Err(BusError::Listen(refused))
            }
            answer => answer,
        }
    }

    /// Publishes this worker's application-level status (`IDLE`, `PROCESSING`...: at most 64
    /// bytes) and counters (at most 32), shown beside its lifecycle status by the master
    /// (`Master::workers`, `drover status`, `/metrics`). Each call replaces the previous ones.
    pub async fn set_app_status(
        &self,
        status: Option<&str>,
        counters: &std::collections::BTreeMap<String, f64>,
    ) -> Result<(), BusError> {
        self.send_frame(&WorkerFrame::AppStatus {
            status: status.map(str::to_string),
            counters: counters.clone(),
        })
        .await
    }

    /// Declares the handlers this worker answers requests for (replacing those declared before):
    /// requests for them come as [`BusEvent::Request`]. At most [`request::MAX_HANDLERS`] names.
    pub async fn set_handlers(&self, names: &[&str]) -> Result<(), BusError> {
        self.send_frame(&WorkerFrame::Handlers {
            names: names.iter().map(|n| n.to_string()).collect(),
        })
        .await
    }

    /// Calls handler `name` of `to` (the master, a worker, any or all workers) with `args`, and
    /// waits for its result, at most `timeout` (at most [`request::MAX_REQUEST_TIMEOUT`]). Every
    /// failure is a [`RequestError`] with its code: no such handler or target, timeout, target
    /// gone, handler failed (with its message), overloaded, master gone.
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        to: Target,
        name: &str,
        args: &T,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        let args = serde_json::to_value(args)
            .map_err(|e| RequestError::new(RequestErrorCode::BadRequest, format!("arguments: {e}")))?;
        let timeout = timeout.min(request::MAX_REQUEST_TIMEOUT);
        let frame = |id| WorkerFrame::Request {
            id,
            to: to.clone(),
            name: name.to_string(),
            args: args.clone(),
            timeout_ms: Some(timeout.as_millis() as u64),
        };
        self.call(frame, timeout).await
    }

    /// Sends `data` to other workers (`to`: a worker, a name, any or all), routed by the master;
    /// returns to how many it was written, or why to none (no such target, none alive...).
    pub async fn send_to<T: Serialize + ?Sized>(&self, to: Target, data: &T) -> Result<u64, RequestError> {
        let data = serde_json::to_value(data)
            .map_err(|e| RequestError::new(RequestErrorCode::BadRequest, format!("message: {e}")))?;
        let frame = |id| WorkerFrame::Send {
            id,
            to: to.clone(),
            data: data.clone(),
        };
        let count = self.call(frame, request::DEFAULT_REQUEST_TIMEOUT).await?;
        Ok(count.as_u64().unwrap_or(0))
    }

    /// The value at `path` in the master's store (`null`: none). See [`crate::store`].
    pub async fn store_get(&self, path: &str) -> Result<Value, RequestError> {
        self.store("get", serde_json::json!({ "path": path })).await
    }

    /// Puts `value` at `path` in the master's store, for `ttl` if given.
    pub async fn store_set<T: Serialize + ?Sized>(
        &self,
        path: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), RequestError> {
        let value = serde_json::to_value(value)
            .map_err(|e| RequestError::new(RequestErrorCode::BadRequest, format!("value: {e}")))?;
        let ttl_ms = ttl.map(|t| t.as_millis().max(1) as u64);
        self.store(
            "set",
            serde_json::json!({ "path": path, "value": value, "ttl_ms": ttl_ms }),
        )
        .await
        .map(|_| ())
    }

    /// Removes the value at `path`; whether there was one.
    pub async fn store_delete(&self, path: &str) -> Result<bool, RequestError> {
        let removed = self.store("delete", serde_json::json!({ "path": path })).await?;
        Ok(removed.as_bool().unwrap_or(false))
    }

    /// Puts `value` at `path` only if the value there is `expected` (`null`: absent); whether it did.
    pub async fn store_compare_and_set(
        &self,
        path: &str,
        expected: &Value,
        value: &Value,
    ) -> Result<bool, RequestError> {
        let args = serde_json::json!({ "path": path, "expected": expected, "value": value });
        Ok(self.store("cas", args).await?.as_bool().unwrap_or(false))
    }

    /// The keys directly below `path` (`""`: the top level).
    pub async fn store_keys(&self, path: &str) -> Result<Vec<String>, RequestError> {
        let keys = self.store("keys", serde_json::json!({ "path": path })).await?;
        Ok(serde_json::from_value(keys).unwrap_or_default())
    }

    /// Watches `path`: each change at, below or above it comes as [`BusEvent::StoreChanged`] with
    /// the returned watch number, in the order the changes were made.
    pub async fn store_watch(&self, path: &str) -> Result<u64, RequestError> {
        let answer = self.store("watch", serde_json::json!({ "path": path })).await?;
        Ok(answer["watch"].as_u64().unwrap_or(0))
    }

    /// Ends the watch `watch` ([`BusSender::store_watch`]); whether it was this worker's.
    pub async fn store_unwatch(&self, watch: u64) -> Result<bool, RequestError> {
        let ended = self.store("unwatch", serde_json::json!({ "watch": watch })).await?;
        Ok(ended.as_bool().unwrap_or(false))
    }
    /// Joins leadership `key` (PROTOCOL.md §5.10): the master elects one STARTED participant
    /// and tells every participant who leads with [`BusEvent::Leader`], now and at each change.
    /// A deposed leader (its worker is being stopped) must release what only the leader may
    /// hold, then call [`BusSender::leader_resign`]: nobody else is elected until it does or
    /// its process is gone. At most [`crate::election::MAX_LEADERSHIPS`] keys per master.
    pub async fn leader_join(&self, key: &str) -> Result<(), RequestError> {
        self.leadership("join", key).await
    }

    /// Lets go of leading `key` (the next is elected; this worker stays a participant and is
    /// elected again only when nobody else can be).
    pub async fn leader_resign(&self, key: &str) -> Result<(), RequestError> {
        self.leadership("resign", key).await
    }

    /// Leaves leadership `key` (letting go of it if this worker leads).
    pub async fn leader_leave(&self, key: &str) -> Result<(), RequestError> {
        self.leadership("leave", key).await
    }

    async fn leadership(&self, op: &str, key: &str) -> Result<(), RequestError> {
        let name = format!("{}{op}", crate::election::LEADER_PREFIX);
        self.request(
            Target::Master,
            &name,
            &serde_json::json!({ "key": key }),
            request::DEFAULT_REQUEST_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    /// The value of `key` in the cache every worker of the master shares, loading it with
    /// `loader` when nobody has: of all the callers that miss the key at once, in any worker,
    /// exactly one runs its loader and the others wait for its value (single flight). A failing
    /// loader fails every waiter with its message, and the next call loads again. With `ttl`, the
    /// value is loaded again that long after it was filled.
    pub async fn cache_get_or_load<F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Value, RequestError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Value, String>>,
    {
        let args = serde_json::json!({ "key": key });
        let answer = self.cache("get_or_load", args).await?;
        if let Some(value) = answer.get("value") {
            return Ok(value.clone());
        }
        let token = answer["load"].as_u64().unwrap_or(0);
        match loader().await {
            Ok(value) => {
                let ttl_ms = ttl.map(|t| t.as_millis().max(1) as u64);
                let args = serde_json::json!({ "key": key, "token": token, "value": value, "ttl_ms": ttl_ms });
                self.cache("fill", args).await?;
                Ok(value)
            }
            Err(message) => {
                let args = serde_json::json!({ "key": key, "token": token, "message": message });
                self.cache("fail", args).await?;
                Err(RequestError::new(RequestErrorCode::HandlerFailed, message))
            }
        }
    }

    async fn cache(&self, op: &str, args: Value) -> Result<Value, RequestError> {
        let name = format!("drover.cache.{op}");
        self.request(Target::Master, &name, &args, request::MAX_REQUEST_TIMEOUT)
            .await
    }

    async fn store(&self, op: &str, args: Value) -> Result<Value, RequestError> {
        let name = format!("drover.store.{op}");
        self.request(Target::Master, &name, &args, request::DEFAULT_REQUEST_TIMEOUT)
            .await
    }

    /// Sends the frame `make(id)` and waits for the answer to `id`, at most `timeout` (and a
    /// second more: the master answers a timeout itself, this is for a master that is stuck).
    async fn call(&self, make: impl Fn(u64) -> WorkerFrame, timeout: Duration) -> Result<Value, RequestError> {
        let id = self.requests.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        {
            let mut calls = lock(&self.requests.calls);
            if calls.len() >= request::MAX_PENDING_PER_WORKER {
                return Err(RequestError::new(
                    RequestErrorCode::Overloaded,
                    format!(
                        "{} requests of this worker are in flight (at most {})",
                        calls.len(),
                        request::MAX_PENDING_PER_WORKER
                    ),
                ));
            }
            calls.insert(id, tx);
        }
        let forget = || lock(&self.requests.calls).remove(&id);
        if let Err(e) = self.send_frame(&make(id)).await {
            forget();
            return Err(RequestError::new(RequestErrorCode::MasterGone, e.to_string()));
        }
        match tokio::time::timeout(timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(RequestError::new(RequestErrorCode::MasterGone, "the master is gone")),
            Err(_) => {
                forget();
                Err(RequestError::new(
                    RequestErrorCode::Timeout,
                    format!("no answer within {} ms", timeout.as_millis()),
                ))
            }
        }
    }

    async fn send_frame(&self, frame: &WorkerFrame) -> Result<(), BusError> {
        self.send_bytes(encode_frame(frame, self.max_frame_bytes)?).await
    }

    async fn send_bytes(&self, bytes: Vec<u8>) -> Result<(), BusError> {
        match self.writer.write(bytes, FrameKind::Plain, None).await {
            Ok(()) => Ok(()),
            Err(WriteFailure::Io(e)) => Err(BusError::Io(e.message)),
            Err(WriteFailure::Quitting) => Err(BusError::MasterGone),
            // Not with this writer's limit (see `connect_with`), kept for completeness.
            Err(full @ WriteFailure::Full { .. }) => Err(BusError::Io(format!("{full:?}"))),
        }
    }

    /// Reports a status (the state machine of `docs/PROTOCOL.md` applies).
    pub async fn send_status(&self, status: WorkerStatus) -> Result<(), BusError> {
        self.send_frame(&WorkerFrame::status(status)).await
    }

    /// Reports STARTED: the worker is ready to serve.
    pub async fn send_started(&self) -> Result<(), BusError> {
        self.send_status(WorkerStatus::Started).await
    }

    /// Reports STOPPED: no new work taken, in-flight work finished.
    pub async fn send_stopped(&self) -> Result<(), BusError> {
        self.send_status(WorkerStatus::Stopped).await
    }

    /// Reports SHUTTED_DOWN: everything released; the channel is closed after this.
    pub async fn send_shutted_down(&self) -> Result<(), BusError> {
        self.send_status(WorkerStatus::ShuttedDown).await
    }

    /// Sends a user message: a `Value`, any `Serialize` type, or a [`serde_json::value::RawValue`]
    /// (JSON text, sent as it is).
    pub async fn send_message<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), BusError> {
        self.send_bytes(protocol::codec::encode_message(data, self.max_frame_bytes)?)
            .await
    }

    /// Sends a heartbeat with this process's resident memory and the given uptime.
    pub async fn send_heartbeat(&self, uptime: Duration) -> Result<(), BusError> {
        self.send_heartbeat_with_stats(uptime, &Default::default()).await
    }

    /// Sends a heartbeat with this process's resident memory, the given uptime and runtime
    /// statistics (`event_loop_lag_ms`, `gc_count`...: at most
    /// [`MAX_HEARTBEAT_STATS`](crate::protocol::wire::MAX_HEARTBEAT_STATS), names of 1 to 64
    /// bytes, finite numbers; the master refuses a heartbeat past these as malformed). The master
    /// keeps the last ones in [`crate::WorkerInfo::stats`], where a recycle predicate sees them.
    pub async fn send_heartbeat_with_stats(
        &self,
        uptime: Duration,
        stats: &std::collections::BTreeMap<String, f64>,
    ) -> Result<(), BusError> {
        let rss_bytes = crate::master::rss_of_self();
        self.send_frame(&WorkerFrame::Heartbeat {
            rss_bytes,
            uptime_ms: Some(uptime.as_millis() as u64),
            stats: stats.clone(),
        })
        .await
    }
}

/// Where the reader task hands the master's commands: the channel [`MessageBus::recv`] reads,
/// or, after [`MessageBus::on_event`], a callback.
enum Sink {
    Channel(mpsc::UnboundedSender<BusEvent>),
    Callback(Box<dyn FnMut(BusEvent) + Send>),
}

impl Sink {
    fn deliver(sink: &Mutex<Sink>, event: BusEvent) {
        match &mut *lock(sink) {
            Sink::Channel(tx) => {
                // Nobody receiving is fine: the reader keeps reading (listen answers need routing).
                let _ = tx.send(event);
            }
            Sink::Callback(f) => f(event),
        }
    }
}

/// A worker's connection to its master.
#[derive(Debug)]
pub struct MessageBus {
    meta: WorkerMeta,
    sender: BusSender,
    incoming: mpsc::UnboundedReceiver<BusEvent>,
    sink: Arc<Mutex<Sink>>,
    connected_at: Instant,
    /// With [`BusOptions::host_reads`], until the host takes it.
    host_reader: Option<CommandReader>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Channel(_) => "Sink::Channel",
            Sink::Callback(_) => "Sink::Callback",
        })
    }
}

impl MessageBus {
    /// Connects to the master named by this process's environment (`DROVER_IPC_FD`), and does the
    /// hello/welcome handshake. Fails clearly when the process is not a drover worker.
    pub async fn connect() -> Result<MessageBus, BusError> {
        MessageBus::connect_with(BusOptions::default()).await
    }

    /// [`MessageBus::connect`] with options.
    pub async fn connect_with(options: BusOptions) -> Result<MessageBus, BusError> {
        let fd = channel_fd_from_env()?;
        if CONNECTED.swap(true, Ordering::SeqCst) {
            return Err(BusError::AlreadyConnected);
        }
        // SAFETY: the fd was checked to be an open socket inherited from the master, and CONNECTED
        // guarantees it is taken over only once in this process.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let result = MessageBus::from_fd_with(owned, options).await;
        if result.is_err() {
            CONNECTED.store(false, Ordering::SeqCst);
        }
        result
    }

    /// Connects over an already-open channel socket (tests, or a worker that received it otherwise).
    pub async fn from_fd(fd: OwnedFd) -> Result<MessageBus, BusError> {
        MessageBus::from_fd_with(fd, BusOptions::default()).await
    }

    /// [`MessageBus::from_fd`] with options.
    pub async fn from_fd_with(fd: OwnedFd, options: BusOptions) -> Result<MessageBus, BusError> {
        // The master's busy-poll window (`DROVER_BUSY_POLL_US`), before the channel exists so
        // that it is watched; it spins only in a runtime with `busy_poll::park_hook`. Not with
        // host reads: the host's own thread reads the commands, and a spinning runtime thread
        // would only compete with it for a CPU.
        if let Some(window) = crate::busy_poll::window_from_env().filter(|_| !options.host_reads) {
            crate::busy_poll::enable(window);
        }
        let std_stream = std::os::unix::net::UnixStream::from(fd);
        let (read_half, write_half) = protocol::channel::split(std_stream).map_err(|e| BusError::Io(e.to_string()))?;
        let read_limit = std::env::var(protocol::env::MAX_FRAME_BYTES)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(protocol::DEFAULT_MAX_FRAME_BYTES);
        let fds: FdQueue = Arc::default();
        let mut frames = FramedRead::new(read_half.with_fds(fds.clone()), FrameCodec::new(read_limit));

        let hello = WorkerFrame::Hello {
            version: protocol::PROTOCOL_VERSION,
            pid: Some(std::process::id()),
        };
        let bytes = encode_frame(&hello, read_limit)?;
        write_half
            .write_all(&bytes)
            .await
            .map_err(|e| BusError::Io(e.to_string()))?;
        let meta = match protocol::codec::flatten(frames.next().await) {
            None => return Err(BusError::MasterGone),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(line)) => match protocol::decode_master_frame(&line)? {
                MasterFrame::Welcome { version, worker } if version == protocol::PROTOCOL_VERSION => worker,
                MasterFrame::Welcome { version, .. } => {
                    return Err(ProtocolError::VersionMismatch {
                        worker: protocol::PROTOCOL_VERSION,
                        master: version,
                    }
                    .into())
                }
                MasterFrame::Error { code, message } => return Err(ProtocolError::Refused { code, message }.into()),
                _ => {
                    return Err(ProtocolError::HelloExpected {
                        got: "a frame before welcome".into(),
                    }
                    .into())
                }
            },
        };

        if let Some(title) = &meta.title {
            // The master asked for it (`process_title`); a failure only leaves the old name.
            if let Err(error) = crate::title::set_comm(title) {
                tracing::debug!(%error, "the process title could not be set");
            }
        }

        let (events_tx, incoming) = mpsc::unbounded_channel();
        let sink = Arc::new(Mutex::new(Sink::Channel(events_tx)));
        // The worker's own memory, its own sends: unbounded as before, so a worker that sends
        // faster than its master reads waits (awaiting each send) rather than failing.
        let writer = FrameWriter::new(write_half, false).with_limit(usize::MAX);
        let sender = BusSender {
            writer,
            max_frame_bytes: meta.max_frame_bytes,
            requests: Requests::default(),
        };
        let router = Router {
            fds,
            sender: sender.clone(),
        };
        let host_reader = if options.host_reads {
            // Nothing will ever go through the sink: `recv` ends at once.
            *lock(&sink) = Sink::Callback(Box::new(|_| {}));
            Some(CommandReader {
                frames: ChannelRead::into_host(frames.into_parts()),
                router,
                ended: false,
            })
        } else {
            tokio::spawn(read_commands(frames, router, sink.clone()));
            None
        };
        let connected_at = Instant::now();
        if let Some(ms) = meta.heartbeat_ms.filter(|_| options.auto_heartbeat) {
            let hb = sender.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(ms.max(1)));
                loop {
                    tick.tick().await;
                    if hb.send_heartbeat(connected_at.elapsed()).await.is_err() {
                        break;
                    }
                }
            });
        }
        Ok(MessageBus {
            meta,
            sender,
            incoming,
            sink,
            connected_at,
            host_reader,
        })
    }

    /// With [`BusOptions::host_reads`]: the reader of the master's commands, for the host's loop to
    /// drive (once; `None` after, and always without the option). [`MessageBus::recv`] and
    /// [`MessageBus::on_event`] then receive nothing: the reader delivers everything.
    pub fn take_command_reader(&mut self) -> Option<CommandReader> {
        self.host_reader.take()
    }

    /// What the master said about this worker (id, name, group, user config, limits).
    pub fn meta(&self) -> &WorkerMeta {
        &self.meta
    }

    /// Does the warm-up the master asked for (PROTOCOL.md §5.11), if it did: its GETs go to
    /// `addr`, a private loopback listener the worker's own HTTP server answers on. Call it before
    /// taking the shared sockets and reporting STARTED. `None` when the welcome asked for no
    /// warm-up; a warm-up that ended early (a failed request, the timeout) is logged as a warning
    /// and reported, and the worker goes on.
    ///
    /// It blocks the calling thread until the warm-up ends (at most its `timeout_ms`, plus one
    /// connect): in async code, call it where blocking is allowed (e.g.
    /// `tokio::task::spawn_blocking` with [`crate::warmup::for_worker`] and a clone of
    /// [`MessageBus::meta`], as examples/rust/worker.rs does), with the server answering on
    /// another thread or task. While it blocks a current-thread runtime, that runtime reads no
    /// command and sends no heartbeat.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), drover::BusError> {
    /// let bus = drover::MessageBus::connect().await?;
    /// let private = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// // ... serve `private` with the app's handler on another thread ...
    /// if let Some(report) = bus.warm_up(private.local_addr()?) {
    ///     println!("warmed with {} of {} requests", report.done, report.requests);
    /// }
    /// bus.send_started().await?;
    /// # Ok(()) }
    /// ```
    pub fn warm_up(&self, addr: std::net::SocketAddr) -> Option<crate::warmup::WarmupReport> {
        crate::warmup::for_worker(&self.meta, addr)
    }

    /// A sender that can be moved to other tasks.
    pub fn sender(&self) -> BusSender {
        self.sender.clone()
    }

    /// How often the master wants heartbeats, if it does.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.meta.heartbeat_ms.map(Duration::from_millis)
    }

    /// How long ago the bus connected.
    pub fn uptime(&self) -> Duration {
        self.connected_at.elapsed()
    }

    /// The next command or message; after [`BusEvent::Closed`], `None`. After
    /// [`MessageBus::on_event`], `None` at once: the callback receives everything.
    pub async fn recv(&mut self) -> Option<BusEvent> {
        self.incoming.recv().await
    }

    /// Hands every command and message to `f` instead of [`MessageBus::recv`]: first those already
    /// received and not yet read, then each new one as it arrives, in order, called on the task
    /// that reads the channel, until [`BusEvent::Closed`] (the last call). For hosts that hand
    /// events to their own event loop (the Node addon's thread-safe function): it saves the hop
    /// through a channel and a second task. `f` must be quick and must not block: the next frame is
    /// read once it returns. Calling it again replaces the callback.
    pub fn on_event(&mut self, f: impl FnMut(BusEvent) + Send + 'static) {
        let mut f: Box<dyn FnMut(BusEvent) + Send> = Box::new(f);
        // Under the sink's lock the reader cannot deliver: nothing is reordered or lost.
        let mut sink = lock(&self.sink);
        while let Ok(event) = self.incoming.try_recv() {
            f(event);
        }
        *sink = Sink::Callback(f);
    }

    /// Reports STARTED.
    pub async fn send_started(&self) -> Result<(), BusError> {
        self.sender.send_started().await
    }

    /// Reports STOPPED.
    pub async fn send_stopped(&self) -> Result<(), BusError> {
        self.sender.send_stopped().await
    }

    /// Reports SHUTTED_DOWN.
    pub async fn send_shutted_down(&self) -> Result<(), BusError> {
        self.sender.send_shutted_down().await
    }

    /// Reports any status.
    pub async fn send_status(&self, status: WorkerStatus) -> Result<(), BusError> {
        self.sender.send_status(status).await
    }

    /// Sends a user message; see [`BusSender::send_message`].
    pub async fn send_message<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), BusError> {
        self.sender.send_message(data).await
    }

    /// Asks the master for a shared listening socket; see [`BusSender::listen`].
    pub async fn listen(&self, address: &str) -> Result<Listening, BusError> {
        self.sender.listen(address).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Finds and checks the channel fd named by `DROVER_IPC_FD`, and makes it close-on-exec so the
/// worker's own children do not inherit the master's channel.
fn channel_fd_from_env() -> Result<RawFd, BusError> {
    let raw = std::env::var(protocol::env::IPC_FD)
        .map_err(|_| BusError::NotAWorker(format!("{} is not set", protocol::env::IPC_FD)))?;
    let fd: RawFd =
        raw.parse().ok().filter(|fd| *fd >= 0).ok_or_else(|| {
            BusError::NotAWorker(format!("{}={raw:?} is not a file descriptor", protocol::env::IPC_FD))
        })?;
    if let Ok(version) = std::env::var(protocol::env::PROTOCOL_VERSION) {
        if version != protocol::PROTOCOL_VERSION.to_string() {
            let master = version.parse().unwrap_or(0);
            return Err(ProtocolError::VersionMismatch {
                worker: protocol::PROTOCOL_VERSION,
                master,
            }
            .into());
        }
    }
    // SAFETY: fstat on any integer is safe; it fails with EBADF for a closed fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } == -1 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(BusError::NotAWorker(format!(
            "fd {fd} from {} is not an open socket",
            protocol::env::IPC_FD
        )));
    }
    // SAFETY: setting FD_CLOEXEC on an open fd.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(fd)
}

/// What the worker side does with the master's frames, whoever reads them: answers to `listen`
/// requests go to their waiters, commands become [`BusEvent`]s.
#[derive(Debug)]
struct Router {
    fds: FdQueue,
    /// Its writer and waiting requests; handed to each [`IncomingRequest`] to reply with.
    sender: BusSender,
}

/// What one frame from the master means.
enum Routed {
    Event(BusEvent),
    /// Handled here (a `listener` answer) or ignored (an unknown frame).
    Done,
    /// The channel is over: the master refused us or broke the protocol.
    End(ProtocolError),
}

impl Router {
    fn route(&self, frame: Frame) -> Routed {
        let line = match frame {
            Ok(line) => line,
            Err(e) => return Routed::End(e),
        };
        match protocol::decode_master_frame(&line) {
            Ok(MasterFrame::Stop) => Routed::Event(BusEvent::Stop),
            Ok(MasterFrame::Quit) => Routed::Event(BusEvent::Quit),
            Ok(MasterFrame::Message { data, from: None }) => Routed::Event(BusEvent::Message(data)),
            Ok(MasterFrame::Message { data, from: Some(from) }) => {
                Routed::Event(BusEvent::WorkerMessage { from, data })
            }
            Ok(MasterFrame::Request { id, from, name, args }) => Routed::Event(BusEvent::Request(IncomingRequest {
                id,
                from,
                name,
                args,
                sender: self.sender.clone(),
            })),
            Ok(MasterFrame::Response { id, result, error }) => {
                self.answer(id, error.map_or_else(|| Ok(result.unwrap_or(Value::Null)), Err));
                Routed::Done
            }
            Ok(MasterFrame::Leader { key, leader, term, you }) => {
                Routed::Event(BusEvent::Leader { key, leader, term, you })
            }
            Ok(MasterFrame::Changed { watch, path, value }) => {
                Routed::Event(BusEvent::StoreChanged { watch, path, value })
            }
            Ok(MasterFrame::Sent { id, count, error }) => {
                self.answer(id, error.map_or_else(|| Ok(Value::from(count.unwrap_or(0))), Err));
                Routed::Done
            }
            Ok(MasterFrame::Error { code, message }) => Routed::End(ProtocolError::Refused { code, message }),
            Ok(MasterFrame::Connection { listener, remote }) => match lock(&self.fds).pop_front() {
                Some(fd) => Routed::Event(BusEvent::Connection(HandedConnection {
                    fd: Arc::new(Mutex::new(Some(fd))),
                    listener,
                    remote,
                })),
                None => {
                    tracing::debug!("a connection frame carried no socket; ignored");
                    Routed::Done
                }
            },
            Ok(MasterFrame::Listener {
                request,
                local,
                error,
                errno,
                address,
                balance,
            }) => {
                // The address is filled in by `listen`, which knows what it asked for, when the
                // master did not say.
                let refused = |message: String, errno| {
                    Err(BusError::Listen(ListenRefused {
                        address: address.clone().unwrap_or_default(),
                        errno,
                        message,
                    }))
                };
                let answer = match error {
                    Some(error) => refused(error, errno),
                    None => match lock(&self.fds).pop_front() {
                        Some(fd) => Ok(Listening {
                            fd,
                            local: local.unwrap_or_default(),
                            balance,
                        }),
                        None => refused("the master's answer carried no socket".into(), None),
                    },
                };
                if let Some(waiter) = lock(&self.sender.requests.waiting).remove(&request) {
                    let _ = waiter.send(answer);
                }
                Routed::Done
            }
            Ok(MasterFrame::Reconfigure { version, config }) => Routed::Event(BusEvent::Reconfigure(IncomingConfig {
                version,
                config,
                sender: self.sender.clone(),
            })),
            Ok(MasterFrame::Welcome { .. }) | Ok(MasterFrame::Unknown) => {
                tracing::debug!(frame = %line, "ignored frame from master");
                Routed::Done
            }
            Err(e) => Routed::End(e),
        }
    }

    /// Hands an answer to the request waiting for it (none: it timed out, the answer is late).
    fn answer(&self, id: u64, answer: Result<Value, RequestError>) {
        if let Some(waiter) = lock(&self.sender.requests.calls).remove(&id) {
            let _ = waiter.send(answer);
        }
    }

    /// The master is gone: nothing more can be written either, and no answer will come.
    fn finish(&self) {
        self.sender.writer.close();
        for (_, waiter) in lock(&self.sender.requests.waiting).drain() {
            let _ = waiter.send(Err(BusError::MasterGone));
        }
        for (_, waiter) in lock(&self.sender.requests.calls).drain() {
            let _ = waiter.send(Err(RequestError::new(
                RequestErrorCode::MasterGone,
                "the master is gone",
            )));
        }
    }
}

async fn read_commands(mut frames: FramedRead<ChannelRead, FrameCodec>, router: Router, sink: Arc<Mutex<Sink>>) {
    let closed = loop {
        let Some(frame) = protocol::codec::flatten(frames.next().await) else {
            break None;
        };
        match router.route(frame) {
            Routed::Event(event) => Sink::deliver(&sink, event),
            Routed::Done => {}
            Routed::End(error) => break Some(error),
        }
    };
    router.finish();
    Sink::deliver(&sink, BusEvent::Closed(closed));
}

/// The master's commands, read from the host's own loop ([`BusOptions::host_reads`]): call
/// [`CommandReader::read_ready`] once as soon as you have it, then whenever
/// [`CommandReader::fd`] is readable.
///
/// The first call matters: the handshake read the socket, and whatever the master wrote right
/// after its welcome (a message, a `stop`) may already be buffered here, where a poll on the fd
/// cannot see it.
#[derive(Debug)]
pub struct CommandReader {
    frames: HostFrames,
    router: Router,
    ended: bool,
}

impl CommandReader {
    /// The channel socket, to watch for readability.
    pub fn fd(&self) -> RawFd {
        self.frames.fd()
    }

    /// Reads what the channel holds now and gives each command to `deliver`, in order, as
    /// [`MessageBus::recv`] would (user messages as their JSON text, see [`Command`]). When the
    /// channel ends, `deliver` gets [`BusEvent::Closed`] last and this returns false (then and ever
    /// after): stop watching the fd.
    pub fn read_ready(&mut self, deliver: &mut dyn FnMut(Command<'_>)) -> bool {
        if self.ended {
            return false;
        }
        let mut closed: Option<Option<ProtocolError>> = None;
        let router = &self.router;
        self.frames.read_ready(&mut |frame| {
            if closed.is_some() {
                return; // the channel is over: what follows the end is not acted on
            }
            let frame = match frame {
                None => {
                    closed = Some(None);
                    return;
                }
                Some(Ok(line)) => match protocol::message_text(&line) {
                    Some(text) => return deliver(Command::Message(text)),
                    None => Ok(line),
                },
                Some(error) => error,
            };
            match router.route(frame) {
                Routed::Event(event) => deliver(Command::Event(event)),
                Routed::Done => {}
                Routed::End(error) => closed = Some(Some(error)),
            }
        });
        match closed {
            Some(why) => {
                self.ended = true;
                self.router.finish();
                deliver(Command::Event(BusEvent::Closed(why)));
                false
            }
            None => true,
        }
    }
}

impl From<io::Error> for BusError {
    fn from(e: io::Error) -> BusError {
        BusError::Io(e.to_string())
    }
}
