//! One worker process as the master sees it: an actor that owns the child, its channel and its
//! timers.
//!
//! The actor is one `select!` loop over four things: commands from its [`WorkerHandle`], the
//! child's exit (its pidfd), frames from the channel, and the current deadline. Each arm is a named
//! method. Writes go through a separate writer task, so a worker that stops reading can never stall
//! the loop that would kill it.
//!
//! ```text
//!            spawn ──▶ INITIALIZED ──hello/STARTED──▶ STARTED ──Retire──▶ stop ─▶ STOPPED ─▶ quit ─▶ exit
//!                         │ start timeout               │ protocol error /        │ stop timeout       │ quit timeout
//!                         ▼                             ▼ missed heartbeats       ▼                    ▼
//!                       FAILED ─────────────────────▶ SIGTERM (group) ──kill timeout──▶ SIGKILL (group)
//! ```

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;
use tokio_util::codec::FramedRead;

use super::events::{Event, EventHub, WorkerFailure};
use super::host_reads::{CaughtUp, ChannelHost, Forwarded, WorkerChannel};
use super::readiness::{self, Notice, NotifySocket};
use super::spawn::{self, ChildProcess, SpawnSpec};
use crate::config::{MasterConfig, OnProtocolError, ReadySource};
use crate::exit::WorkerExit;
use crate::listen::{Holder, ListenAddr, Listeners};
use crate::protocol::channel::{self, ChannelRead};
use crate::protocol::codec::Frame;
use crate::protocol::writer::{FrameKind, FrameWriter, WriteFailure};
use crate::protocol::{self, encode_frame, FrameCodec, MasterFrame, ProtocolError, WorkerFrame, WorkerMeta};
use crate::status::WorkerStatus;
use crate::WorkerId;

/// How long the actor keeps reading after the process exited, for frames still in flight. Only
/// reached when something outside the process group still holds the worker's end of the socket.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// How long the actor waits, after the exit, for a host's loop that has frames of the worker
/// unread ([`ChannelHost`]): its last messages come before its exit, unless the host's loop is
/// blocked for longer than this.
const HOST_DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// A snapshot of one worker, as returned by [`crate::Master::workers`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkerInfo {
    /// The worker's id: stable across restarts of the worker, never reused by its master.
    pub id: WorkerId,
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
}

impl WorkerInfo {
    /// Whether the process is still running (not yet reaped).
    pub fn is_alive(&self) -> bool {
        self.exit.is_none()
    }
}

/// What a [`WorkerHandle`] can ask of the actor.
#[derive(Debug)]
enum Command {
    /// End the process: the stop → quit → SIGTERM → SIGKILL sequence, or SIGKILL at once.
    Retire { hard: bool },
}

/// One frame for the writer task, with an optional completion.
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
        /// The OS error.
        error: String,
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
    id: WorkerId,
    commands: mpsc::UnboundedSender<Command>,
    /// Where user messages go: the MessageBus channel, or the Node IPC channel (`ready: node-ipc`).
    user_writer: FrameWriter,
    /// User messages are bare JSON lines (Node IPC), not `message` frames.
    raw_json: bool,
    info: watch::Receiver<WorkerInfo>,
    max_frame_bytes: usize,
}

impl WorkerHandle {
    pub(crate) fn info(&self) -> WorkerInfo {
        self.info.borrow().clone()
    }

    /// Asks for the graceful end sequence (idempotent; never shortens an escalation under way).
    pub(crate) fn retire(&self) {
        let _ = self.commands.send(Command::Retire { hard: false });
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
        if !self.info.borrow().is_alive() {
            return Err(SendError::Gone { id: self.id });
        }
        match self.user_writer.write(bytes, FrameKind::Plain, None).await {
            Ok(()) => Ok(()),
            Err(WriteFailure::Io(error)) => Err(SendError::Write { id: self.id, error }),
            Err(WriteFailure::Quitting) => Err(SendError::Quitting { id: self.id }),
            Err(WriteFailure::Full { queued, limit }) => Err(SendError::Backlogged {
                id: self.id,
                queued,
                limit,
            }),
        }
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

/// Where the actor is in ending the process; each phase has a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for STARTED.
    Starting,
    /// Running; no deadline.
    Running,
    /// `stop` sent, waiting for STOPPED.
    Stopping,
    /// `quit` sent, waiting for the exit.
    Quitting,
    /// SIGTERM sent to the group, waiting for the exit.
    Terminating,
    /// SIGKILL sent to the group.
    Killed,
}

/// Everything the actor needs to know about its process's settings.
#[derive(Clone)]
pub(crate) struct WorkerSpec {
    pub id: WorkerId,
    pub restarts: u32,
    pub generation: u64,
    pub config: Arc<MasterConfig>,
    /// Declared listening sockets the worker inherits at fd 3 onwards, with their names.
    pub inherited: Vec<(String, Arc<std::os::fd::OwnedFd>)>,
    /// The master's sockets, for on-demand `listen` requests.
    pub listeners: Arc<Listeners>,
    /// Who reads the channel, if not the actor.
    pub host: Option<Arc<dyn ChannelHost>>,
}

/// Spawns the process and its actor. A spawn failure is returned (and reported as an event).
pub(crate) async fn spawn_worker(spec: WorkerSpec, events: EventHub) -> Result<WorkerHandle, WorkerFailure> {
    let config = spec.config.clone();
    let spawn_failure = |error: io::Error| WorkerFailure::Spawn {
        program: config.program.display().to_string(),
        errno: error.raw_os_error(),
        error: match error.raw_os_error() {
            Some(errno) => format!("{} ({})", error, nix::errno::Errno::from_raw(errno)),
            None => error.to_string(),
        },
    };
    // Before the channel exists, so that it is watched. Not when a host reads the channels on its
    // own thread: this runtime does not read them, and spinning here would only take a CPU from
    // that thread (the window still goes to the worker, whose runtime may read its end).
    if spec.host.is_none() {
        crate::busy_poll::enable(config.busy_poll);
    }
    let (master_end, worker_end) = std::os::unix::net::UnixStream::pair().map_err(spawn_failure)?;
    let mut fds = Vec::with_capacity(spec.inherited.len() + 2);
    for (_, fd) in &spec.inherited {
        fds.push(fd.try_clone().map_err(spawn_failure)?);
    }
    let ipc_fd = 3 + fds.len();
    fds.push(worker_end.into());
    let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> =
        config.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
    if !spec.inherited.is_empty() {
        let names: Vec<&str> = spec.inherited.iter().map(|(name, _)| name.as_str()).collect();
        env.push(("LISTEN_FDS".into(), spec.inherited.len().to_string().into()));
        env.push(("LISTEN_FDNAMES".into(), names.join(":").into()));
    }
    let notify = match config.ready {
        ReadySource::Notify => {
            let socket = NotifySocket::bind(spec.id).map_err(spawn_failure)?;
            env.push(("NOTIFY_SOCKET".into(), socket.env_value.clone().into()));
            Some(socket)
        }
        _ => None,
    };
    let node_channel = match config.ready {
        ReadySource::NodeIpc => {
            let (master_node, worker_node) = std::os::unix::net::UnixStream::pair().map_err(spawn_failure)?;
            env.push(("NODE_CHANNEL_FD".into(), (3 + fds.len()).to_string().into()));
            env.push(("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into()));
            fds.push(worker_node.into());
            Some(channel::split(master_node).map_err(spawn_failure)?)
        }
        _ => None,
    };
    for (key, value) in [
        (protocol::env::IPC_FD, ipc_fd.to_string()),
        (protocol::env::WORKER_ID, spec.id.to_string()),
        (protocol::env::PROTOCOL_VERSION, protocol::PROTOCOL_VERSION.to_string()),
        (protocol::env::MAX_FRAME_BYTES, config.max_frame_bytes.to_string()),
        (protocol::env::GROUP, config.name.clone()),
    ] {
        env.push((key.into(), value.into()));
    }
    if !config.busy_poll.is_zero() {
        env.push((
            protocol::env::BUSY_POLL_US.into(),
            config.busy_poll.as_micros().to_string().into(),
        ));
    }
    let mut child = spawn::spawn(SpawnSpec {
        program: config.program.clone(),
        args: config.args.clone(),
        env,
        cwd: config.cwd.clone(),
        fds,
        listen_pid: !spec.inherited.is_empty(),
        capture_output: config.capture_output,
    })
    .await
    .map_err(spawn_failure)?;
    let pid = child.pid();
    let codec = FrameCodec::new(config.max_frame_bytes);
    let (frames, write_half) = match &spec.host {
        None => {
            let (read_half, write_half) = channel::split(master_end).map_err(spawn_failure)?;
            (Frames::Own(FramedRead::new(read_half, codec)), write_half)
        }
        Some(host) => {
            let (host_frames, write_half) = channel::split_for_host(master_end, codec).map_err(spawn_failure)?;
            let fd = host_frames.fd();
            let (to_actor, from_host) = mpsc::unbounded_channel();
            host.adopt(WorkerChannel::new(spec.id, pid, host_frames, to_actor));
            let frames = Frames::Host {
                from_host,
                host: host.clone(),
                fd,
            };
            (frames, write_half)
        }
    };
    tracing::debug!(id = spec.id, pid, program = %config.program.display(), "worker spawned");
    if let Some((stdout, stderr)) = child.take_output() {
        events.output.read_worker(spec.id, pid, stdout, stderr);
    }

    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let info = WorkerInfo {
        id: spec.id,
        pid,
        status: WorkerStatus::Initialized,
        spawned_at: SystemTime::now(),
        started_at: None,
        restarts: spec.restarts,
        generation: spec.generation,
        rss_bytes: None,
        failure: None,
        exit: None,
    };
    let (info_tx, info_rx) = watch::channel(info);
    let outbound = outbound_limit(config.max_frame_bytes);
    let writer = FrameWriter::new(write_half, true).with_limit(outbound);
    let (node_frames, node_writer) = match node_channel {
        Some((read, write)) => (
            Some(FramedRead::new(read, FrameCodec::new(config.max_frame_bytes))),
            Some(FrameWriter::new(write, false).with_limit(outbound)),
        ),
        None => (None, None),
    };
    let now = Instant::now();
    let actor = WorkerActor {
        id: spec.id,
        pid,
        config: config.clone(),
        child,
        frames,
        reading: true,
        commands: commands_rx,
        commands_open: true,
        writer: writer.clone(),
        info: info_tx,
        events: events.clone(),
        status: WorkerStatus::Initialized,
        hello_seen: false,
        closed_by_worker: false,
        requested: false,
        phase: Phase::Starting,
        deadline: Some(now + config.timeouts.start),
        heartbeat_deadline: None,
        started_at: None,
        listeners: spec.listeners.clone(),
        notify,
        node_frames,
        node_writer: node_writer.clone(),
    };
    events.emit(Event::Spawned { id: spec.id, pid });
    tokio::spawn(actor.run());
    Ok(WorkerHandle {
        id: spec.id,
        commands: commands_tx,
        user_writer: node_writer.clone().unwrap_or_else(|| writer.clone()),
        raw_json: node_writer.is_some(),
        info: info_rx,
        max_frame_bytes: config.max_frame_bytes,
    })
}

/// The bound on bytes written to one worker and not yet taken by it: the writer's default, or
/// room for two of the largest frames if that is more (a frame first in line always goes).
pub(crate) fn outbound_limit(max_frame_bytes: usize) -> usize {
    protocol::writer::MAX_QUEUED_BYTES.max(max_frame_bytes.saturating_mul(2))
}

struct WorkerActor {
    id: WorkerId,
    pid: u32,
    config: Arc<MasterConfig>,
    child: ChildProcess,
    frames: Frames,
    /// False after EOF or a read error.
    reading: bool,
    commands: mpsc::UnboundedReceiver<Command>,
    /// False once every handle is gone.
    commands_open: bool,
    writer: FrameWriter,
    info: watch::Sender<WorkerInfo>,
    events: EventHub,
    status: WorkerStatus,
    hello_seen: bool,
    /// The worker declared the channel closed (SHUTTED_DOWN).
    closed_by_worker: bool,
    /// The master asked for this process to end.
    requested: bool,
    phase: Phase,
    deadline: Option<Instant>,
    heartbeat_deadline: Option<Instant>,
    started_at: Option<Instant>,
    listeners: Arc<Listeners>,
    /// `ready: notify`: the worker's NOTIFY_SOCKET.
    notify: Option<NotifySocket>,
    /// `ready: node-ipc`: the worker's Node IPC channel, both ways.
    node_frames: Option<FramedRead<ChannelRead, FrameCodec>>,
    node_writer: Option<FrameWriter>,
}

/// Where the actor's frames come from.
enum Frames {
    /// It reads its channel itself.
    Own(FramedRead<ChannelRead, FrameCodec>),
    /// The host's loop reads it ([`ChannelHost`]) and forwards what the actor must handle.
    Host {
        from_host: mpsc::UnboundedReceiver<Forwarded>,
        host: Arc<dyn ChannelHost>,
        /// The channel socket (open while the actor's writer lives), to see unread bytes.
        fd: std::os::fd::RawFd,
    },
}

impl Frames {
    /// The next frame (`None` at the end of the channel), with its number if the host forwarded it.
    async fn next(&mut self) -> (Option<Frame>, Option<u64>) {
        match self {
            Frames::Own(frames) => (protocol::codec::flatten(frames.next().await), None),
            Frames::Host { from_host, .. } => match from_host.recv().await {
                Some(Forwarded { seq, frame }) => (frame, Some(seq)),
                // The host dropped the channel without reading it to the end (it is going away).
                None => (None, None),
            },
        }
    }

    /// Whether the worker wrote frames that the host has not read yet (its loop is busy).
    fn host_is_behind(&self) -> bool {
        let Frames::Host { fd, .. } = self else {
            return false;
        };
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int; `fd` is open while the actor's writer holds the socket.
        let ok = unsafe { libc::ioctl(*fd, libc::FIONREAD, &mut unread) } == 0;
        ok && unread > 0
    }
}

/// The next datagram of an optional notify socket (never, without one).
async fn next_notice(socket: &Option<NotifySocket>) -> io::Result<(Option<i32>, Vec<Notice>)> {
    match socket {
        Some(socket) => socket.recv().await,
        None => std::future::pending().await,
    }
}

/// The next line of an optional Node IPC channel (never, without one).
async fn next_node_line(
    frames: &mut Option<FramedRead<ChannelRead, FrameCodec>>,
) -> Option<Result<String, ProtocolError>> {
    match frames {
        Some(frames) => protocol::codec::flatten(frames.next().await),
        None => std::future::pending().await,
    }
}

/// Resolves at `deadline`; never without one. A timer is made only when this is first polled:
/// `select!` builds every branch's future on each turn, enabled or not, and the actor turns once
/// per frame.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

impl WorkerActor {
    async fn run(mut self) {
        if self.config.ready == ReadySource::Spawn {
            // The exec succeeded (spawn returned): that is all this worker will ever say.
            let _ = self.on_status(WorkerStatus::Started);
        }
        loop {
            let deadline = self.deadline;
            let heartbeat_deadline = self.heartbeat_deadline;
            tokio::select! {
                exited = self.child.exited() => {
                    if let Err(error) = exited {
                        tracing::warn!(id = self.id, pid = self.pid, %error, "waiting on pidfd failed; reaping now");
                    }
                    break;
                }
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(command) => self.on_command(command),
                    // Every handle is gone: the master was dropped without a shutdown.
                    None => {
                        self.commands_open = false;
                        self.on_command(Command::Retire { hard: true });
                    }
                },
                (frame, seq) = self.frames.next(), if self.reading => {
                    self.on_frame(frame);
                    self.report_handled(seq);
                }
                notice = next_notice(&self.notify), if self.notify.is_some() => self.on_notify(notice),
                line = next_node_line(&mut self.node_frames), if self.node_frames.is_some() => self.on_node_line(line),
                _ = until(deadline), if deadline.is_some() => self.on_deadline(),
                _ = until(heartbeat_deadline), if heartbeat_deadline.is_some() => {
                    self.on_heartbeat_missed()
                }
            }
        }
        self.on_exit().await;
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Retire { hard: true } => {
                self.requested = true;
                self.kill();
            }
            Command::Retire { hard: false } => {
                if matches!(self.phase, Phase::Starting | Phase::Running) {
                    self.requested = true;
                    self.begin_retire();
                } else {
                    // Already ending: a second request never shortens or restarts the escalation,
                    // but an end the master forced for a failure now counts as asked for.
                    self.requested = true;
                }
            }
        }
    }

    /// Starts the graceful end from wherever the worker is.
    fn begin_retire(&mut self) {
        let can_talk = self.hello_seen && self.reading && !self.closed_by_worker;
        match self.status {
            WorkerStatus::Started | WorkerStatus::Stopping if can_talk => {
                self.write_control(MasterFrame::Stop);
                self.enter(Phase::Stopping, self.config.timeouts.stop);
            }
            WorkerStatus::ShuttingDown | WorkerStatus::ShuttedDown => {
                self.enter(Phase::Quitting, self.config.timeouts.quit);
            }
            _ if can_talk => {
                self.write_control(MasterFrame::Quit);
                self.enter(Phase::Quitting, self.config.timeouts.quit);
            }
            _ if self.node_writer.is_some() && self.node_frames.is_some() => {
                // PM2's convention: the message 'shutdown', then the app exits on its own.
                if let Some(writer) = &self.node_writer {
                    writer.post(b"\"shutdown\"\n".to_vec(), FrameKind::Plain, None);
                }
                self.enter(Phase::Quitting, self.config.timeouts.stop);
            }
            // A worker that speaks no protocol: SIGTERM is its stop request, with the stop timeout.
            _ => {
                self.child.signal_group(libc::SIGTERM);
                self.enter(Phase::Terminating, self.config.timeouts.stop);
            }
        }
    }

    fn enter(&mut self, phase: Phase, timeout: Duration) {
        self.phase = phase;
        self.deadline = Some(Instant::now() + timeout);
    }

    fn terminate(&mut self) {
        self.child.signal_group(libc::SIGTERM);
        self.enter(Phase::Terminating, self.config.timeouts.kill);
    }

    fn kill(&mut self) {
        self.child.signal_group(libc::SIGKILL);
        self.phase = Phase::Killed;
        self.deadline = None;
        self.heartbeat_deadline = None;
    }

    fn on_deadline(&mut self) {
        match self.phase {
            Phase::Starting => {
                tracing::debug!(id = self.id, pid = self.pid, "start timeout");
                self.fail(WorkerFailure::StartTimeout {
                    timeout: self.config.timeouts.start,
                });
            }
            Phase::Stopping => {
                tracing::debug!(id = self.id, pid = self.pid, "stop timeout; sending quit");
                if self.reading && !self.closed_by_worker {
                    self.write_control(MasterFrame::Quit);
                    self.enter(Phase::Quitting, self.config.timeouts.quit);
                } else {
                    self.terminate();
                }
            }
            Phase::Quitting => {
                tracing::debug!(id = self.id, pid = self.pid, "quit timeout; SIGTERM");
                self.terminate();
            }
            Phase::Terminating => {
                tracing::debug!(id = self.id, pid = self.pid, "kill timeout; SIGKILL");
                self.kill();
            }
            Phase::Running | Phase::Killed => self.deadline = None,
        }
    }

    /// Tells the host that read frame `seq` that it is handled (its events are emitted).
    fn report_handled(&self, seq: Option<u64>) {
        if let (Frames::Host { host, .. }, Some(seq)) = (&self.frames, seq) {
            let accepting = self.hello_seen && !self.closed_by_worker && self.reading;
            host.caught_up(CaughtUp::new(self.id, seq, accepting));
        }
    }

    fn on_heartbeat_missed(&mut self) {
        self.heartbeat_deadline = None;
        if let Some(hb) = self.config.heartbeat {
            if matches!(self.phase, Phase::Running) && self.frames.host_is_behind() {
                // The worker did write: it is the master's loop that is late reading. That is
                // not the worker hanging; look again a tolerance later.
                tracing::debug!(
                    id = self.id,
                    "heartbeat deadline passed with unread frames; host loop is behind"
                );
                self.heartbeat_deadline = Some(Instant::now() + hb.tolerance.max(Duration::from_millis(100)));
                return;
            }
            if matches!(self.phase, Phase::Running) {
                self.fail(WorkerFailure::Hung {
                    silent_for: hb.interval + hb.tolerance,
                });
            }
        }
    }

    /// The master gives up on the process: FAILED, reported, and terminated (SIGTERM, then SIGKILL).
    fn fail(&mut self, failure: WorkerFailure) {
        // A refused worker was just sent an `error` frame: give it the quit timeout to read it
        // and leave on its own before the signals start.
        let refused = matches!(
            failure,
            WorkerFailure::Protocol {
                error: ProtocolError::VersionMismatch { .. }
            }
        );
        self.events.emit(Event::Failed {
            id: self.id,
            pid: Some(self.pid),
            failure: failure.clone(),
        });
        self.set_status(WorkerStatus::Failed);
        self.info.send_modify(|i| i.failure = Some(failure));
        self.heartbeat_deadline = None;
        if refused && matches!(self.phase, Phase::Starting | Phase::Running) {
            self.reading = false;
            self.enter(Phase::Quitting, self.config.timeouts.quit);
        } else if !matches!(self.phase, Phase::Terminating | Phase::Killed) {
            self.terminate();
        }
    }

    fn set_status(&mut self, to: WorkerStatus) {
        let from = self.status;
        if from == to {
            return;
        }
        self.status = to;
        let started = to == WorkerStatus::Started;
        // The snapshot changes first, silently: a subscriber that reads `workers()` on this event
        // sees the new status. Those waiting for a change are woken after the event, so whoever
        // waits on the snapshot and then reads the event stream finds the event already there.
        self.info.send_if_modified(|i| {
            i.status = to;
            if started {
                i.started_at = Some(SystemTime::now());
            }
            false
        });
        self.events.emit(Event::Status {
            id: self.id,
            pid: self.pid,
            from,
            to,
        });
        self.info.send_modify(|_| {});
    }

    fn write_control(&mut self, frame: MasterFrame) {
        let kind = match frame {
            MasterFrame::Welcome { .. } | MasterFrame::Error { .. } => FrameKind::Opens,
            MasterFrame::Quit => FrameKind::Closes,
            _ => FrameKind::Plain,
        };
        match encode_frame(&frame, usize::MAX) {
            Ok(bytes) => self.writer.post(bytes, kind, None),
            Err(error) => tracing::error!(%error, "a control frame could not be encoded"),
        }
    }

    fn on_frame(&mut self, frame: Option<Result<String, ProtocolError>>) {
        match frame {
            None => {
                tracing::debug!(id = self.id, pid = self.pid, "worker closed its channel");
                self.reading = false;
            }
            Some(Err(error)) => {
                if matches!(error, ProtocolError::Io { .. }) {
                    self.reading = false;
                }
                self.protocol_error(error);
            }
            Some(Ok(line)) => {
                if let Err(error) = self.on_line(&line) {
                    self.protocol_error(error);
                }
            }
        }
    }

    fn on_line(&mut self, line: &str) -> Result<(), ProtocolError> {
        if self.closed_by_worker {
            return Err(ProtocolError::AfterClose);
        }
        let frame = protocol::decode_worker_frame(line)?;
        if !self.hello_seen {
            let WorkerFrame::Hello { version, .. } = frame else {
                return Err(ProtocolError::HelloExpected {
                    got: excerpt_type(line),
                });
            };
            return self.on_hello(version);
        }
        match frame {
            WorkerFrame::Hello { .. } => Err(ProtocolError::DuplicateHello),
            WorkerFrame::Status { status, .. } => self.on_status(status),
            WorkerFrame::Message { data } => {
                self.events.emit(Event::Message {
                    id: self.id,
                    pid: self.pid,
                    data,
                });
                Ok(())
            }
            WorkerFrame::Heartbeat { rss_bytes, .. } => {
                self.on_heartbeat(rss_bytes);
                Ok(())
            }
            WorkerFrame::Listen { request, address } => {
                self.on_listen(request, &address);
                Ok(())
            }
            WorkerFrame::Unknown => {
                tracing::debug!(id = self.id, frame = line, "unknown frame type ignored");
                Ok(())
            }
        }
    }

    /// A heartbeat (a `heartbeat` frame, or `WATCHDOG=1`) pushes the hung deadline back.
    fn on_heartbeat(&mut self, rss_bytes: Option<u64>) {
        if let Some(hb) = self.config.heartbeat {
            if self.heartbeat_deadline.is_some() {
                self.heartbeat_deadline = Some(Instant::now() + hb.interval + hb.tolerance);
            }
        }
        if rss_bytes.is_some() {
            self.info.send_modify(|i| i.rss_bytes = rss_bytes);
        }
        self.events.emit(Event::Heartbeat {
            id: self.id,
            pid: self.pid,
            rss_bytes,
        });
    }

    /// A worker asks for a listening socket: bind it (or reuse the master's) and pass the fd.
    fn on_listen(&mut self, request: u64, address: &str) {
        // On the blocking pool: a host name in the address is resolved with getaddrinfo, which
        // may block for seconds, and the address is the worker's to choose; the actor (and on a
        // current-thread runtime, everything else) must not wait for it. The answer carries the
        // request's number, so it may come after other frames.
        let (id, pid, address) = (self.id, self.pid, address.to_string());
        let (listeners, writer) = (self.listeners.clone(), self.writer.clone());
        tokio::task::spawn_blocking(move || {
            let answer = address
                .parse::<ListenAddr>()
                .and_then(|addr| listeners.get_or_bind(&addr, Holder::Worker(pid)));
            let (frame, fd) = match answer {
                Ok(listener) => {
                    let frame = MasterFrame::Listener {
                        request,
                        local: Some(listener.local.clone()),
                        error: None,
                        errno: None,
                        address: None,
                    };
                    (frame, Some(listener.fd.clone()))
                }
                Err(error) => {
                    tracing::debug!(id, %error, "listen request refused");
                    (
                        MasterFrame::Listener {
                            request,
                            local: None,
                            error: Some(error.to_string()),
                            errno: error.errno(),
                            address: Some(error.address().to_string()),
                        },
                        None,
                    )
                }
            };
            if let Ok(bytes) = encode_frame(&frame, usize::MAX) {
                writer.post(bytes, FrameKind::Plain, fd);
            }
        });
    }

    /// A datagram on the worker's NOTIFY_SOCKET.
    fn on_notify(&mut self, notice: io::Result<(Option<i32>, Vec<Notice>)>) {
        let (sender, notices) = match notice {
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(id = self.id, %error, "notify socket failed; closing it");
                self.notify = None;
                return;
            }
        };
        if !sender.is_some_and(|pid| readiness::in_group(pid, self.pid)) {
            tracing::debug!(
                id = self.id,
                ?sender,
                "notify datagram from outside the worker's process group dropped"
            );
            return;
        }
        for Notice { key, value } in notices {
            let result = match (key.as_str(), value.as_str()) {
                ("READY", "1") => self.on_status(WorkerStatus::Started),
                ("STOPPING", "1") if self.status == WorkerStatus::Started => self.on_status(WorkerStatus::Stopping),
                ("WATCHDOG", "1") => {
                    self.on_heartbeat(None);
                    Ok(())
                }
                ("STATUS", text) => {
                    self.events.emit(Event::Message {
                        id: self.id,
                        pid: self.pid,
                        data: serde_json::json!({ "notify": { "STATUS": text } }),
                    });
                    Ok(())
                }
                _ => {
                    tracing::debug!(id = self.id, %key, %value, "notify assignment ignored");
                    Ok(())
                }
            };
            if let Err(error) = result {
                self.protocol_error(error);
            }
        }
    }

    /// A line on the worker's Node IPC channel.
    fn on_node_line(&mut self, line: Option<Result<String, ProtocolError>>) {
        let value = match line {
            None => {
                self.node_frames = None;
                return;
            }
            Some(Err(error)) => return self.protocol_error(error),
            Some(Ok(line)) => match serde_json::from_str::<Value>(&line) {
                Ok(value) => value,
                Err(e) => {
                    return self.protocol_error(ProtocolError::Malformed {
                        reason: e.to_string(),
                        excerpt: line,
                    })
                }
            },
        };
        if readiness::node_message_is(&value, "ready") {
            if let Err(error) = self.on_status(WorkerStatus::Started) {
                self.protocol_error(error);
            }
        } else if !readiness::node_internal(&value) {
            self.events.emit(Event::Message {
                id: self.id,
                pid: self.pid,
                data: value,
            });
        }
    }

    fn on_hello(&mut self, version: u32) -> Result<(), ProtocolError> {
        if version != protocol::PROTOCOL_VERSION {
            let error = ProtocolError::VersionMismatch {
                worker: version,
                master: protocol::PROTOCOL_VERSION,
            };
            self.write_control(MasterFrame::Error {
                code: "version_mismatch".into(),
                message: error.to_string(),
            });
            return Err(error);
        }
        self.hello_seen = true;
        let config = &self.config;
        let worker = WorkerMeta {
            id: self.id,
            name: format!("{}-{}", config.name, self.id),
            group: config.name.clone(),
            config: config.user_config.clone(),
            max_frame_bytes: config.max_frame_bytes,
            heartbeat_ms: config.heartbeat.map(|hb| hb.interval.as_millis() as u64),
        };
        self.write_control(MasterFrame::Welcome {
            version: protocol::PROTOCOL_VERSION,
            worker,
        });
        Ok(())
    }

    fn on_status(&mut self, to: WorkerStatus) -> Result<(), ProtocolError> {
        let from = self.status;
        if !from.may_report(to) {
            return Err(ProtocolError::IllegalTransition { from, to });
        }
        self.set_status(to);
        match to {
            WorkerStatus::Started if self.phase == Phase::Starting => {
                self.phase = Phase::Running;
                self.deadline = None;
                self.started_at = Some(Instant::now());
                if let Some(hb) = self.config.heartbeat {
                    self.heartbeat_deadline = Some(Instant::now() + hb.interval + hb.tolerance);
                }
            }
            WorkerStatus::Stopped if self.phase == Phase::Stopping => {
                self.write_control(MasterFrame::Quit);
                self.enter(Phase::Quitting, self.config.timeouts.quit);
            }
            WorkerStatus::ShuttedDown => {
                self.closed_by_worker = true;
                if matches!(self.phase, Phase::Starting | Phase::Running | Phase::Stopping) {
                    // It is leaving on its own (or early): give it the quit timeout to exit.
                    self.enter(Phase::Quitting, self.config.timeouts.quit);
                }
            }
            WorkerStatus::Failed => {
                self.info.send_modify(|i| i.failure = Some(WorkerFailure::Reported));
                self.events.emit(Event::Failed {
                    id: self.id,
                    pid: Some(self.pid),
                    failure: WorkerFailure::Reported,
                });
                self.heartbeat_deadline = None;
                if matches!(self.phase, Phase::Starting | Phase::Running) {
                    self.begin_retire();
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn protocol_error(&mut self, error: ProtocolError) {
        tracing::debug!(id = self.id, pid = self.pid, %error, "protocol error");
        self.events.emit(Event::ProtocolError {
            id: self.id,
            pid: self.pid,
            error: error.clone(),
        });
        let fatal = matches!(
            error,
            ProtocolError::VersionMismatch { .. } | ProtocolError::HelloExpected { .. }
        );
        if (fatal || self.config.on_protocol_error == OnProtocolError::Fail) && self.status != WorkerStatus::Failed {
            self.fail(WorkerFailure::Protocol { error });
        }
    }

    /// The process has exited: clear its group, reap it, read what it wrote before dying, report.
    async fn on_exit(mut self) {
        let reaped = self.child.reap();
        // Whatever sockets it asked for, it holds no more (they linger for its successor).
        self.listeners.release(self.pid);
        let reason = match reaped {
            Ok(reason) => reason,
            Err(error) => {
                // Only possible if someone else reaped our child (a `waitpid(-1)` in the host).
                tracing::error!(id = self.id, pid = self.pid, %error, "reaping the worker failed");
                crate::ExitReason::ExternalSignal {
                    signal: 0,
                    core_dumped: false,
                }
            }
        };
        // Frames written just before the exit are still in the socket: deliver them first.
        let mut drain_until = Instant::now() + DRAIN_LIMIT;
        let give_up = Instant::now() + HOST_DRAIN_LIMIT;
        while self.reading {
            match tokio::time::timeout_at(drain_until.into(), self.frames.next()).await {
                Ok((frame, seq)) => {
                    self.on_frame(frame);
                    self.report_handled(seq);
                }
                // A host's loop that is busy has not read them yet: the exit waits for them (its
                // event would otherwise overtake the worker's last messages), within reason.
                Err(_) if self.frames.host_is_behind() && Instant::now() < give_up => {
                    drain_until = Instant::now() + DRAIN_LIMIT;
                }
                Err(_) => break,
            }
        }
        let exit = WorkerExit {
            id: self.id,
            pid: self.pid,
            reason,
            requested: self.requested,
            last_status: self.status,
        };
        tracing::debug!(%exit, "worker exited");
        self.writer.close();
        if let Some(node) = &self.node_writer {
            node.close();
        }
        // As for a status: the snapshot silently first (a subscriber reading `workers()` on the
        // event sees the exit), then the event, then the waiters (a shutdown, a start), who find
        // the exit already in the event stream.
        self.info.send_if_modified(|i| {
            i.exit = Some(exit.clone());
            i.status = status_after_exit(i.status);
            false
        });
        self.events.emit(Event::Exit(exit));
        self.info.send_modify(|_| {});
    }
}

/// The status a worker's snapshot shows once its process has exited: one that died before it was
/// told to stop (or while it still claimed to serve) is FAILED, never STARTED — a health check
/// reading the statuses must see it as dead. The exit event keeps the last reported status.
fn status_after_exit(last: WorkerStatus) -> WorkerStatus {
    match last {
        WorkerStatus::Initialized | WorkerStatus::Starting | WorkerStatus::Started => WorkerStatus::Failed,
        other => other,
    }
}

/// The `type` of a frame, for error messages.
fn excerpt_type(line: &str) -> String {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(|t| format!("{t:?}")))
        .unwrap_or_else(|| "a frame without a type".into())
}
