//! The MessageBus wire protocol between a master and its workers (`docs/PROTOCOL.md` is normative).
//!
//! - [`wire`]: the frames both sides exchange, as serde types.
//! - [`codec`]: line framing with a size limit, and turning bytes into frames or [`ProtocolError`]s.
//! - [`host_read`]: reading a channel from a host's own event loop (the Node addon's JS thread).
//! - [`env`](mod@env): the environment variables a worker finds its channel through.

pub mod channel;
pub mod codec;
pub mod fdpass;
pub mod host_read;
pub mod wire;
pub mod writer;

pub use codec::{
    decode_master_frame, decode_worker_frame, encode_frame, json_text, message_text, FrameCodec, ProtocolError,
};
pub use wire::{MasterFrame, WarmupMeta, WorkerFrame, WorkerMeta};

/// The protocol version this build speaks. A worker and a master with different versions refuse
/// each other at the hello handshake.
pub const PROTOCOL_VERSION: u32 = 1;

/// The default largest frame, in bytes, not counting the `\n`. Configurable per master.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Environment variables the master sets for every worker.
pub mod env {
    /// The number of the inherited fd that is the worker's end of its Unix stream socket.
    pub const IPC_FD: &str = "DROVER_IPC_FD";
    /// The worker's id, a positive integer, unique within its master.
    pub const WORKER_ID: &str = "DROVER_WORKER_ID";
    /// The protocol version the master speaks.
    pub const PROTOCOL_VERSION: &str = "DROVER_PROTOCOL_VERSION";
    /// The largest frame the master accepts, in bytes.
    pub const MAX_FRAME_BYTES: &str = "DROVER_MAX_FRAME_BYTES";
    /// The master's name (its group).
    pub const GROUP: &str = "DROVER_GROUP";
    /// The worker's instance index in its group, `0..count`, kept by a replacement (§2.2).
    pub const INSTANCE: &str = "DROVER_INSTANCE";
    /// The same index under PM2's name, for Node programs only (§2.2).
    pub const NODE_APP_INSTANCE: &str = "NODE_APP_INSTANCE";
    /// Optional: how long, in microseconds, the master asks the worker to busy-poll after traffic
    /// before its event loop sleeps (`crate::busy_poll`). Set only when the master busy-polls.
    pub const BUSY_POLL_US: &str = "DROVER_BUSY_POLL_US";
}
