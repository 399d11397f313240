//! The frames of the MessageBus protocol. Each is one JSON object with a `type` field.
//!
//! Unknown `type`s decode to `Unknown` and are ignored by both sides, so a newer peer can add
//! frame types without breaking an older one. Unknown fields are ignored for the same reason.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::request::{RequestError, Target};
use crate::status::WorkerStatus;

/// The most statistics one `heartbeat` frame may carry (PROTOCOL.md §5.1); past it, or with a bad
/// name or number, the frame is a `malformed` protocol error.
pub const MAX_HEARTBEAT_STATS: usize = 32;

/// A frame a worker sends to its master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
/// New kinds may be added in a compatible version (PROTOCOL.md §13): match with a `_` arm.
#[non_exhaustive]
pub enum WorkerFrame {
    /// The first frame on the channel: the protocol version the worker speaks.
    Hello {
        /// The worker's protocol version.
        version: u32,
        /// The worker's pid, informational.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// A status change.
    Status {
        /// The new status, by number.
        status: WorkerStatus,
        /// The status's name, informational only: receivers use `status`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A user message: any JSON value.
    Message {
        /// The payload.
        data: Value,
    },
    /// A liveness report (sent automatically by the MessageBus when heartbeats are configured).
    Heartbeat {
        /// Resident memory of the worker process, bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rss_bytes: Option<u64>,
        /// Milliseconds since the worker's MessageBus connected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uptime_ms: Option<u64>,
        /// Runtime statistics by name (a Node worker's event-loop lag and GC counts...): at most
        /// [`MAX_HEARTBEAT_STATS`], names of 1 to 64 bytes, finite numbers. Absent: none.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        stats: std::collections::BTreeMap<String, f64>,
    },
    /// Asks the master for a listening socket on `address` (see `docs/PROTOCOL.md`, "Listening
    /// sockets"); answered by a `listener` frame carrying the same `request`.
    Listen {
        /// A number the worker chooses to match the answer.
        request: u64,
        /// `host:port`, `[v6]:port`, `port`, or `unix:/path`.
        address: String,
    },
    /// The handler names this worker answers requests for (replacing any it declared before).
    Handlers {
        /// The names.
        names: Vec<String>,
    },
    /// A request to a handler of the master or of other workers, routed by the master; answered
    /// by a `response` carrying the same `id`.
    Request {
        /// A number the worker chooses to match the answer.
        id: u64,
        /// Where it goes.
        to: Target,
        /// The handler's name.
        name: String,
        /// Its arguments.
        #[serde(default)]
        args: Value,
        /// How long to wait for the answer (default 30 s, at most 600 s).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// The answer to a `request` the master routed to this worker: `result`, or `error`.
    Response {
        /// The routed request's `id`.
        id: u64,
        /// The handler's result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        /// Why the handler failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<RequestError>,
    },
    /// A message to other workers, routed by the master; acknowledged by a `sent` with this `id`.
    Send {
        /// A number the worker chooses to match the acknowledgement.
        id: u64,
        /// Where it goes (not `master`: a plain `message` is for the master).
        to: Target,
        /// The payload.
        data: Value,
    },
    /// The worker's application-level status (clusterfy's IDLE / PROCESSING) and counters, shown
    /// beside its lifecycle status (PROTOCOL.md §5.8).
    AppStatus {
        /// A short word, at most 64 bytes; absent or `null` clears it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        /// Named numbers, at most 32, names at most 64 bytes; replaces the previous set.
        #[serde(default)]
        counters: std::collections::BTreeMap<String, f64>,
    },
    /// The answer to a `reconfigure` (PROTOCOL.md §5.11): the worker took config `version`, or
    /// refused it (`error`, the worker's reason, keeps running on the config it had).
    Reconfigured {
        /// The `reconfigure` frame's `version`.
        version: u64,
        /// Why the worker refused the config; absent when it applied it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A frame type this build does not know; ignored.
    #[serde(other)]
    Unknown,
}

impl WorkerFrame {
    /// A status frame with its informational name filled in.
    pub fn status(status: WorkerStatus) -> WorkerFrame {
        WorkerFrame::Status {
            status,
            name: Some(status.name().to_string()),
        }
    }
}

/// The most bytes of an `app_status` frame's `status` (PROTOCOL.md §5.8).
pub const MAX_APP_STATUS_BYTES: usize = 64;
/// The most counters in an `app_status` frame.
pub const MAX_APP_COUNTERS: usize = 32;
/// The most bytes of a counter's name.
pub const MAX_APP_COUNTER_NAME: usize = 64;

/// Checks an `app_status` frame's contents against PROTOCOL.md §5.8, as the master does (a frame
/// past them is a protocol error there): a worker calls it before sending, so a bad status is an
/// error for its caller, not the end of the worker.
///
/// ```
/// use std::collections::BTreeMap;
/// use drover::protocol::wire::check_app_status;
///
/// let counters = BTreeMap::from([("jobs".to_string(), 3.0)]);
/// assert!(check_app_status(Some("PROCESSING"), &counters).is_ok());
/// assert!(check_app_status(Some("a\nb"), &counters).is_err());
/// let nan = BTreeMap::from([("lag".to_string(), f64::NAN)]);
/// assert!(check_app_status(None, &nan).unwrap_err().contains("\"lag\""));
/// ```
pub fn check_app_status(
    status: Option<&str>,
    counters: &std::collections::BTreeMap<String, f64>,
) -> Result<(), String> {
    if status.is_some_and(|s| s.len() > MAX_APP_STATUS_BYTES || s.chars().any(char::is_control)) {
        return Err(format!(
            "`status` must be at most {MAX_APP_STATUS_BYTES} bytes without control characters"
        ));
    }
    if counters.len() > MAX_APP_COUNTERS {
        return Err(format!("{} counters, at most {MAX_APP_COUNTERS}", counters.len()));
    }
    if let Some((name, _)) = counters
        .iter()
        .find(|(n, v)| n.is_empty() || n.len() > MAX_APP_COUNTER_NAME || !v.is_finite())
    {
        return Err(format!(
            "counter {name:?}: a name of 1 to {MAX_APP_COUNTER_NAME} bytes and a finite number"
        ));
    }
    Ok(())
}

/// What the master tells a worker about itself in its `welcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerMeta {
    /// The worker's id.
    pub id: u64,
    /// The worker's name: its configured name (by instance index), else `<group>-<id>`.
    pub name: String,
    /// The worker's instance index in its group, `0..count` (as `DROVER_INSTANCE`).
    #[serde(default)]
    pub instance: u32,
    /// The master's name.
    pub group: String,
    /// The user config from the master's config, verbatim (`null` when none).
    #[serde(default)]
    pub config: Value,
    /// The largest frame the master accepts, in bytes.
    pub max_frame_bytes: usize,
    /// When set, the worker should send a heartbeat at least this often (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
    /// When set, the title the worker should show in `ps` (`drover: GROUP #INSTANCE`; PROTOCOL.md
    /// §5.11): drover's worker libraries apply it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// When set, the warm-up the worker should do before it takes the shared sockets and reports
    /// STARTED (PROTOCOL.md §5.11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupMeta>,
}

/// The welcome's `warmup`: `requests` GETs of `path` to the worker's own server, within
/// `timeout_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmupMeta {
    /// How many requests, one after the other.
    pub requests: u32,
    /// The path requested.
    pub path: String,
    /// How long the whole warm-up may take, in milliseconds.
    pub timeout_ms: u64,
}

/// A frame a master sends to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
/// New kinds may be added in a compatible version (PROTOCOL.md §13): match with a `_` arm.
#[non_exhaustive]
pub enum MasterFrame {
    /// The answer to a compatible `hello`.
    Welcome {
        /// The master's protocol version.
        version: u32,
        /// The worker's metadata.
        worker: WorkerMeta,
    },
    /// Stop taking new work, finish what is in flight, then report STOPPED.
    Stop,
    /// Release everything, report SHUTTED_DOWN, and exit.
    Quit,
    /// A user message: any JSON value.
    Message {
        /// The payload.
        data: Value,
        /// The worker that sent it (a `send` routed by the master); absent from the master.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
    },
    /// A request routed to one of this worker's handlers; answer with a `response` of this `id`.
    Request {
        /// The master's number for it.
        id: u64,
        /// The worker that asks (0: the master).
        from: u64,
        /// The handler's name.
        name: String,
        /// Its arguments.
        #[serde(default)]
        args: Value,
    },
    /// The answer to this worker's `request` of that `id`: `result`, or `error`.
    Response {
        /// The worker's `request` number.
        id: u64,
        /// The result (for a request to `all`: a list of `{"worker", "result"}` or
        /// `{"worker", "error"}` objects).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<RequestError>,
    },
    /// The acknowledgement of this worker's `send` of that `id`: to how many workers it was
    /// written, or why it was not.
    Sent {
        /// The worker's `send` number.
        id: u64,
        /// How many workers took it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
        /// Why it went nowhere.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<RequestError>,
    },
    /// A change in the master's store under one of this worker's watches (PROTOCOL.md §5.6).
    Changed {
        /// The watch (the number `drover.store.watch` answered).
        watch: u64,
        /// The path that changed.
        path: String,
        /// Its new value; `null` when it was deleted or expired.
        value: Value,
    },
    /// Who leads a leadership this worker joined (PROTOCOL.md §5.10), sent at each change and
    /// on joining. `term` grows at each change: a frame with a lower term than one already seen
    /// is stale.
    Leader {
        /// The leadership's key.
        key: String,
        /// The leading worker; absent: nobody leads for now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<u64>,
        /// The leadership's term.
        term: u64,
        /// Whether the leader is this worker.
        #[serde(default)]
        you: bool,
    },
    /// The answer to `listen`. Without `error`, the socket's fd rides along with this frame's first
    /// byte as `SCM_RIGHTS` ancillary data.
    Listener {
        /// The worker's `request` number.
        request: u64,
        /// The address the socket is bound to (e.g. the port chosen for port 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local: Option<String>,
        /// Why there is no socket (bind failed, bad address).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// With `error`, when the OS refused: its errno (e.g. 98 for `EADDRINUSE`), so a worker
        /// need not read it out of the text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
        /// With `error`: the address refused, as the master normalised it (e.g. `[::]:8080`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        /// On success, when the master accepts the socket's connections itself (`round-robin`,
        /// `sticky`): the worker must not accept on the fd; its connections come as
        /// `connection` frames. Absent for a shared socket.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        balance: Option<crate::listen::Balance>,
    },
    /// A connection the master accepted on a balanced socket, handed to this worker; its fd is
    /// attached (`SCM_RIGHTS`) to the frame's first byte (PROTOCOL.md §5.3).
    Connection {
        /// The socket it came in on: the `local` of the `listener` answer.
        listener: String,
        /// The client's address, for TCP (`10.0.0.7:51234`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<String>,
    },
    /// The master refuses the worker (e.g. a version mismatch) and closes the channel.
    Error {
        /// A stable machine-readable code, e.g. `"version_mismatch"`.
        code: String,
        /// A human-readable explanation.
        message: String,
    },
    /// A new user config for the live worker, replacing its welcome's `config` (PROTOCOL.md
    /// §5.11); answered by a `reconfigured` frame carrying the same `version`.
    Reconfigure {
        /// The master's number for this config: it only grows.
        version: u64,
        /// The new user config, verbatim.
        config: Value,
    },
    /// A frame type this build does not know; ignored.
    #[serde(other)]
    Unknown,
}
