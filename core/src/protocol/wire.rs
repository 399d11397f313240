//! The frames of the MessageBus protocol. Each is one JSON object with a `type` field.
//!
//! Unknown `type`s decode to `Unknown` and are ignored by both sides, so a newer peer can add
//! frame types without breaking an older one. Unknown fields are ignored for the same reason.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::status::WorkerStatus;

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
    },
    /// Asks the master for a listening socket on `address` (see `docs/PROTOCOL.md`, "Listening
    /// sockets"); answered by a `listener` frame carrying the same `request`.
    Listen {
        /// A number the worker chooses to match the answer.
        request: u64,
        /// `host:port`, `[v6]:port`, `port`, or `unix:/path`.
        address: String,
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

/// What the master tells a worker about itself in its `welcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerMeta {
    /// The worker's id.
    pub id: u64,
    /// The worker's name: `<group>-<id>`.
    pub name: String,
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
    },
    /// The master refuses the worker (e.g. a version mismatch) and closes the channel.
    Error {
        /// A stable machine-readable code, e.g. `"version_mismatch"`.
        code: String,
        /// A human-readable explanation.
        message: String,
    },
    /// A frame type this build does not know; ignored.
    #[serde(other)]
    Unknown,
}
