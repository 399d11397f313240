//! What the master holds of a worker: the handle it commands the actor through, and the snapshot
//! the actor keeps current.

use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};

use super::actor::Command;
use crate::exit::WorkerExit;
use crate::master::events::WorkerFailure;
use crate::protocol::writer::{FrameKind, FrameWriter, WriteFailure};
use crate::protocol::{self, encode_frame};
use crate::status::WorkerStatus;
use crate::WorkerId;

/// A snapshot of one worker, as returned by [`crate::Master::workers`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkerInfo {
    /// The worker's id: stable across restarts of the worker, never reused by its master.
    pub id: WorkerId,
    /// The worker's instance index within its group, `0..count`: the place it fills, given to
    /// the process as `DROVER_INSTANCE` (and `NODE_APP_INSTANCE` for Node). A restarted or
    /// recycled worker keeps it; a reload's new generation takes `0..count` again. Unlike the id,
    /// it names "the second worker" across reloads.
    pub instance: u32,
    /// The worker's name: its configured name ([`crate::MasterConfig::names`]), else
    /// `<group>-<id>`.
    pub name: String,
    /// The current process's pid.
    pub pid: u32,
    /// The last status; FAILED once the process has exited from INITIALIZED, STARTING or STARTED
    /// (an exited worker is never shown as STARTED; [`WorkerExit::last_status`] keeps the last one).
    pub status: WorkerStatus,
    /// When the current process was spawned.
    pub spawned_at: SystemTime,
    /// When the current process reported STARTED.
    pub started_at: Option<SystemTime>,
    /// How many times this worker was restarted (a new process under the same id).
    pub restarts: u32,
    /// The reload generation the worker belongs to (0 for the first `start()`).
    pub generation: u64,
    /// Resident memory from the last heartbeat or memory check, bytes.
    pub rss_bytes: Option<u64>,
    /// Why the master gave up on the process, if it did.
    pub failure: Option<WorkerFailure>,
    /// How the process ended, once it has.
    pub exit: Option<WorkerExit>,
    /// The application-level status the worker last published (e.g. `IDLE`, `PROCESSING`).
    pub app_status: Option<String>,
    /// The counters the worker last published, by name.
    pub counters: std::collections::BTreeMap<String, f64>,
    /// The runtime statistics of the worker's last heartbeat that carried any, by name: a Node
    /// worker's `event_loop_lag_ms`, `event_loop_lag_max_ms`, `gc_count`, `gc_ms`... (PROTOCOL.md
    /// §5.1). What a recycle predicate ([`crate::Master::recycle_when`]) usually looks at.
    pub stats: std::collections::BTreeMap<String, f64>,
}

impl WorkerInfo {
    /// Whether the process is still running (not yet reaped).
    pub fn is_alive(&self) -> bool {
        self.exit.is_none()
    }
}

/// Why a send to a worker failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The worker process has exited or its channel is closed.
    #[error("worker {id} is gone (its process exited or its channel closed)")]
    Gone {
        /// The worker.
        id: WorkerId,
    },
    /// The worker was told to quit: it reads nothing more, so the message was not written.
    #[error("worker {id} is quitting and takes no more messages")]
    Quitting {
        /// The worker.
        id: WorkerId,
    },
    /// Writing to the channel failed.
    #[error("writing to worker {id} failed: {error}")]
    Write {
        /// The worker.
        id: WorkerId,
        /// The OS error, with its errno's name.
        error: String,
        /// Its errno (`EPIPE`, `ECONNRESET`, ...), when the OS gave one.
        errno: Option<i32>,
    },
    /// The worker is not reading its channel: `queued` bytes already wait for it, and this
    /// message would take them past the bound (`limit`). Nothing was queued.
    #[error("worker {id} is not reading its channel: {queued} bytes wait unwritten (limit {limit})")]
    Backlogged {
        /// The worker.
        id: WorkerId,
        /// Bytes waiting.
        queued: usize,
        /// The per-worker bound.
        limit: usize,
    },
    /// The message was not yet written within the time the caller allowed (a broadcast's
    /// [`crate::master::BROADCAST_TIMEOUT`]): the worker is not reading. It stays queued, and is
    /// written if the worker reads again.
    #[error("worker {id} took no bytes within {after:?}: it is not reading its channel (the message stays queued)")]
    Timeout {
        /// The worker.
        id: WorkerId,
        /// How long the caller waited.
        after: Duration,
    },
    /// The message is larger than the frame limit.
    #[error("message to worker {id}: {error}")]
    Encode {
        /// The worker.
        id: WorkerId,
        /// What is wrong.
        error: protocol::codec::EncodeError,
    },
}

/// The master's handle on one worker process.
#[derive(Debug, Clone)]
pub(crate) struct WorkerHandle {
    pub(super) id: WorkerId,
    /// To the actor.
    pub(super) commands: mpsc::UnboundedSender<Command>,
    /// Where user messages go: the MessageBus channel, or the Node IPC channel (`ready: node-ipc`).
    pub(super) user_writer: FrameWriter,
    /// The MessageBus channel, for the frames the master routes (requests, answers, messages
    /// from other workers).
    pub(super) bus_writer: FrameWriter,
    /// User messages are bare JSON lines (Node IPC), not `message` frames.
    pub(super) raw_json: bool,
    /// The snapshot the actor keeps current.
    pub(super) info: watch::Receiver<WorkerInfo>,
    pub(super) max_frame_bytes: usize,
    /// The version of the reconfigured user config the process was spawned with (0: none).
    pub(super) user_config_version: u64,
}

impl WorkerHandle {
    pub(crate) fn info(&self) -> WorkerInfo {
        self.info.borrow().clone()
    }

    /// Asks for the graceful end sequence (idempotent; never shortens an escalation under way).
    pub(crate) fn retire(&self) {
        let _ = self.commands.send(Command::Retire { hard: false });
    }

    /// Has the actor send the worker user config `version` (PROTOCOL.md §5.11).
    pub(crate) fn reconfigure(&self, version: u64, config: Arc<serde_json::Value>) {
        let _ = self.commands.send(Command::Reconfigure { version, config });
    }

    /// The handle of a process spawned with reconfigured user config `version`.
    pub(crate) fn with_user_config_version(mut self, version: u64) -> WorkerHandle {
        self.user_config_version = version;
        self
    }

    pub(crate) fn user_config_version(&self) -> u64 {
        self.user_config_version
    }

    /// SIGKILL to the process group now.
    pub(crate) fn kill(&self) {
        let _ = self.commands.send(Command::Retire { hard: true });
    }

    pub(crate) fn id(&self) -> WorkerId {
        self.id
    }

    /// Whether user messages go out as bare JSON lines (Node IPC) rather than `message` frames:
    /// workers that agree on this take the same encoded bytes.
    pub(crate) fn raw_json(&self) -> bool {
        self.raw_json
    }

    /// A user message as this worker's channel takes it.
    pub(crate) fn encode<T: Serialize + ?Sized>(&self, data: &T) -> Result<Vec<u8>, SendError> {
        if self.raw_json {
            encode_frame(data, self.max_frame_bytes)
        } else {
            protocol::codec::encode_message(data, self.max_frame_bytes)
        }
        .map_err(|error| SendError::Encode { id: self.id, error })
    }

    /// Sends a user message; resolves once the bytes are handed to the kernel.
    pub(crate) async fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), SendError> {
        self.send_bytes(self.encode(data)?).await
    }

    pub(crate) async fn send_bytes(&self, bytes: Vec<u8>) -> Result<(), SendError> {
        self.queue_with(&self.user_writer, bytes).await
    }

    /// Queues `bytes` on `writer` (one of this worker's channels) now, if the worker is alive;
    /// the future resolves once they are written.
    fn queue_with(
        &self,
        writer: &FrameWriter,
        bytes: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(), SendError>> + Send + 'static {
        let id = self.id;
        let queued = self
            .info
            .borrow()
            .is_alive()
            .then(|| writer.queue(bytes, FrameKind::Plain, None));
        async move {
            let Some(queued) = queued else {
                return Err(SendError::Gone { id });
            };
            match queued.await {
                Ok(()) => Ok(()),
                Err(WriteFailure::Io(failure)) => Err(SendError::Write {
                    id,
                    errno: failure.errno,
                    error: failure.message,
                }),
                Err(WriteFailure::Quitting) => Err(SendError::Quitting { id }),
                Err(WriteFailure::Full { queued, limit }) => Err(SendError::Backlogged { id, queued, limit }),
            }
        }
    }

    /// Queues a routed frame (a request, an answer, a message from another worker) on the
    /// worker's MessageBus channel **now**, so that frames routed in one order reach the worker in
    /// that order, within the same backlog bound as user messages; resolves once written.
    pub(crate) fn send_frame(
        &self,
        frame: &protocol::MasterFrame,
    ) -> impl std::future::Future<Output = Result<(), SendError>> + Send + 'static {
        let encoded =
            encode_frame(frame, self.max_frame_bytes).map_err(|error| SendError::Encode { id: self.id, error });
        let queued = encoded.map(|bytes| self.queue_with(&self.bus_writer, bytes));
        async move { queued?.await }
    }

    /// Waits until the worker reports STARTED, fails, or exits; returns the snapshot at that moment.
    pub(crate) async fn wait_settled(&self) -> WorkerInfo {
        let mut rx = self.info.clone();
        let settled =
            |i: &WorkerInfo| i.status == WorkerStatus::Started || i.status == WorkerStatus::Failed || !i.is_alive();
        let result = rx.wait_for(settled).await.map(|i| i.clone());
        result.unwrap_or_else(|_| rx.borrow().clone())
    }

    /// Waits until the process is reaped; returns its final snapshot.
    pub(crate) async fn wait_exit(&self) -> WorkerInfo {
        let mut rx = self.info.clone();
        let result = rx.wait_for(|i| !i.is_alive()).await.map(|i| i.clone());
        result.unwrap_or_else(|_| rx.borrow().clone())
    }
}
