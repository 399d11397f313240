//! The worker's actor: one tokio task that owns the process, its channel and its timers.
//!
//! One `select!` loop over commands from its [`WorkerHandle`], the child's exit, frames from the
//! channel (and the notify socket or Node IPC channel), and the one deadline of its current
//! [`Lifecycle`] state. Each arm is a named method.
//!
//! What the actor knows is in three places, none overlapping: the [`Lifecycle`] (what the master
//! is doing about the process, with its deadline), the [`Conversation`] (how far the protocol on
//! the channel has come), and the status the worker last reported (what the snapshot and the exit
//! show).

use futures_util::StreamExt;
use serde_json::Value;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::codec::FramedRead;

use super::handle::{WorkerHandle, WorkerInfo};
use crate::config::{MasterConfig, OnProtocolError, ReadySource};
use crate::exit::WorkerExit;
use crate::listen::{Holder, ListenAddr, Listeners};
use crate::master::events::{Event, EventHub, WorkerFailure};
use crate::master::host_reads::{CaughtUp, ChannelHost, Forwarded};
use crate::master::readiness::{self, Notice, NotifySocket};
use crate::master::router::Router;
use crate::master::spawn::Child;
use crate::protocol::channel::{ChannelRead, ChannelWrite};
use crate::protocol::codec::Frame;
use crate::protocol::wire::MAX_HEARTBEAT_STATS;
use crate::protocol::writer::{FrameKind, FrameWriter};
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

/// What a [`WorkerHandle`] can ask of the actor.
#[derive(Debug)]
pub(super) enum Command {
    /// End the process: the stop → quit → SIGTERM → SIGKILL sequence, or SIGKILL at once.
    Retire { hard: bool },
    /// Send the worker a new user config (a `reconfigure` frame).
    Reconfigure {
        version: u64,
        config: Arc<serde_json::Value>,
    },
}

/// Where the worker is in its life, as the master drives it. Each state carries its one deadline,
/// so there is never a timer left over from a state the worker has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    /// Waiting for STARTED, until the start timeout.
    Starting { until: Instant },
    /// Serving. With heartbeats, the worker is hung if none comes by `hung_at`.
    Running { hung_at: Option<Instant> },
    /// `stop` sent, waiting for STOPPED until the stop timeout.
    Stopping { until: Instant },
    /// `quit` sent (or the worker is leaving on its own), waiting for the exit.
    Quitting { until: Instant },
    /// SIGTERM sent to the group, waiting for the exit until the kill timeout.
    Terminating { until: Instant },
    /// SIGKILL sent to the group: only the exit can come.
    Killed,
}

impl Lifecycle {
    /// When the actor must act next if nothing else happens.
    fn deadline(self) -> Option<Instant> {
        match self {
            Lifecycle::Starting { until }
            | Lifecycle::Stopping { until }
            | Lifecycle::Quitting { until }
            | Lifecycle::Terminating { until } => Some(until),
            Lifecycle::Running { hung_at } => hung_at,
            Lifecycle::Killed => None,
        }
    }

    /// Not yet asked, nor forced, to end.
    fn is_live(self) -> bool {
        matches!(self, Lifecycle::Starting { .. } | Lifecycle::Running { .. })
    }

    /// Being ended by signals.
    fn is_signalled(self) -> bool {
        matches!(self, Lifecycle::Terminating { .. } | Lifecycle::Killed)
    }
}

/// How far the protocol on the worker's channel has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversation {
    /// Nothing but `hello` is accepted yet.
    AwaitingHello,
    /// Hello seen: the master may write to the worker, and it may send anything.
    Open,
    /// The worker declared the channel closed (SHUTTED_DOWN): a frame after that is an error.
    ClosedByWorker,
    /// Nothing more is read: the channel ended, failed, or the worker was refused.
    Ended,
}

impl Conversation {
    /// The channel is still read.
    fn reading(self) -> bool {
        self != Conversation::Ended
    }

    /// The worker said hello, still reads, and did not close: `stop`, `quit` and messages reach it.
    fn is_open(self) -> bool {
        self == Conversation::Open
    }
}

/// The bound on bytes written to one worker and not yet taken by it: the writer's default, or
/// room for two of the largest frames if that is more (a frame first in line always goes).
fn outbound_limit(max_frame_bytes: usize) -> usize {
    protocol::writer::MAX_QUEUED_BYTES.max(max_frame_bytes.saturating_mul(2))
}

/// What [`wire`] builds an actor from: a spawned process and the master's ends of its channels.
pub(super) struct Launched<C> {
    pub id: WorkerId,
    pub instance: u32,
    pub restarts: u32,
    pub generation: u64,
    pub config: Arc<MasterConfig>,
    pub child: C,
    pub frames: Frames,
    /// The write side of the channel, for the actor's writer.
    pub write_half: ChannelWrite,
    pub notify: Option<NotifySocket>,
    pub node_channel: Option<(ChannelRead, ChannelWrite)>,
    pub listeners: Arc<Listeners>,
    pub router: Option<Arc<Router>>,
}

/// The actor for a launched process, and the handle the master holds on it. The actor is not yet
/// running: the caller spawns [`WorkerActor::run`].
pub(super) fn wire<C: Child>(launched: Launched<C>, events: EventHub) -> (WorkerHandle, WorkerActor<C>) {
    let Launched {
        id,
        instance,
        restarts,
        generation,
        config,
        child,
        frames,
        write_half,
        notify,
        node_channel,
        listeners,
        router,
    } = launched;
    let pid = child.pid();
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let name = config
        .names
        .get(instance as usize)
        .cloned()
        .unwrap_or_else(|| format!("{}-{id}", config.name));
    let info = WorkerInfo {
        id,
        instance,
        name,
        pid,
        status: WorkerStatus::Initialized,
        spawned_at: SystemTime::now(),
        started_at: None,
        restarts,
        generation,
        rss_bytes: None,
        failure: None,
        exit: None,
        app_status: None,
        counters: Default::default(),
        stats: Default::default(),
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
    let handle = WorkerHandle {
        id,
        commands: commands_tx,
        user_writer: node_writer.clone().unwrap_or_else(|| writer.clone()),
        bus_writer: writer.clone(),
        raw_json: node_writer.is_some(),
        info: info_rx,
        max_frame_bytes: config.max_frame_bytes,
        user_config_version: 0,
    };
    let actor = WorkerActor {
        id,
        pid,
        lifecycle: Lifecycle::Starting {
            until: Instant::now() + config.timeouts.start,
        },
        conversation: Conversation::AwaitingHello,
        status: WorkerStatus::Initialized,
        requested: false,
        config,
        child,
        frames,
        commands: commands_rx,
        commands_open: true,
        writer,
        info: info_tx,
        events,
        listeners,
        router,
        notify,
        node_frames,
        node_writer,
        handoffs: Arc::new(std::sync::Mutex::new(true)),
        retiring_told: false,
    };
    (handle, actor)
}

pub(super) struct WorkerActor<C> {
    id: WorkerId,
    pid: u32,
    /// What the master is doing about the process.
    lifecycle: Lifecycle,
    /// How far the protocol on the channel has come.
    conversation: Conversation,
    /// The status the worker last reported (or FAILED, once the master gave up on it): what the
    /// snapshot shows, and the exit keeps as its last status.
    status: WorkerStatus,
    /// The master asked for this process to end (the exit says so).
    requested: bool,
    config: Arc<MasterConfig>,
    child: C,
    frames: Frames,
    commands: mpsc::UnboundedReceiver<Command>,
    /// False once every handle is gone.
    commands_open: bool,
    writer: FrameWriter,
    info: watch::Sender<WorkerInfo>,
    events: EventHub,
    listeners: Arc<Listeners>,
    /// The master's switchboard, for requests and messages to other workers.
    router: Option<Arc<Router>>,
    /// `ready: notify`: the worker's NOTIFY_SOCKET.
    notify: Option<NotifySocket>,
    /// `ready: node-ipc`: the worker's Node IPC channel, both ways.
    node_frames: Option<FramedRead<ChannelRead, FrameCodec>>,
    node_writer: Option<FrameWriter>,
    /// Whether the master's balancers may still hand this worker connections (balance.rs).
    handoffs: crate::master::balance::HandoffGate,
    /// The router knows this worker is being retired (it may lead nothing from then on).
    retiring_told: bool,
}

/// Where the actor's frames come from.
pub(super) enum Frames {
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

/// `timeout` from now.
fn after(timeout: Duration) -> Instant {
    Instant::now() + timeout
}

/// Resolves at `deadline`; never without one. A timer is made only when this is first polled:
/// `select!` builds every branch's future on each turn, enabled or not, and the actor turns once
/// per frame.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl<C: Child> WorkerActor<C> {
    pub(super) async fn run(mut self) {
        if self.config.ready == ReadySource::Spawn {
            // The exec succeeded (spawn returned): that is all this worker will ever say.
            let _ = self.on_status(WorkerStatus::Started);
        }
        loop {
            let deadline = self.lifecycle.deadline();
            tokio::select! {
                exited = self.child.exited() => {
                    self.on_exited(exited);
                    break;
                }
                command = self.commands.recv(), if self.commands_open => self.on_command(command),
                (frame, seq) = self.frames.next(), if self.conversation.reading() => self.on_read(frame, seq),
                notice = next_notice(&self.notify), if self.notify.is_some() => self.on_notify(notice),
                line = next_node_line(&mut self.node_frames), if self.node_frames.is_some() => self.on_node_line(line),
                _ = until(deadline), if deadline.is_some() => self.on_deadline(),
            }
        }
        self.on_exit().await;
    }

    /// The pidfd says the process exited (or could not be watched: it is reaped now regardless).
    fn on_exited(&self, exited: io::Result<()>) {
        if let Err(error) = exited {
            tracing::warn!(id = self.id, pid = self.pid, %error, "waiting on pidfd failed; reaping now");
        }
    }

    fn on_command(&mut self, command: Option<Command>) {
        match command {
            // Every handle is gone: the master was dropped without a shutdown.
            None => {
                self.commands_open = false;
                self.requested = true;
                self.kill();
            }
            Some(Command::Retire { hard: true }) => {
                self.requested = true;
                self.kill();
            }
            Some(Command::Retire { hard: false }) => {
                // Already ending: a second request never shortens or restarts the escalation,
                // but an end the master forced for a failure now counts as asked for.
                self.requested = true;
                if self.lifecycle.is_live() {
                    self.begin_retire();
                }
            }
            // Held behind the welcome if the worker has not said hello yet; dropped by the writer
            // once the channel is closing (the worker's answer then never comes: it is gone).
            Some(Command::Reconfigure { version, config }) => self.write_control(MasterFrame::Reconfigure {
                version,
                config: (*config).clone(),
            }),
        }
    }

    /// Starts the graceful end from wherever the worker is.
    fn begin_retire(&mut self) {
        // A leader is deposed before it is told to stop (PROTOCOL.md §5.10).
        if let Some(router) = &self.router {
            if !self.retiring_told {
                self.retiring_told = true;
                router.worker_serving(self.id, false);
            }
        }
        let can_talk = self.conversation.is_open();
        match self.status {
            WorkerStatus::Started | WorkerStatus::Stopping if can_talk => {
                self.write_control(MasterFrame::Stop);
                self.lifecycle = Lifecycle::Stopping {
                    until: after(self.config.timeouts.stop),
                };
            }
            WorkerStatus::ShuttingDown | WorkerStatus::ShuttedDown => {
                self.quitting(self.config.timeouts.quit);
            }
            _ if can_talk => {
                self.write_control(MasterFrame::Quit);
                self.quitting(self.config.timeouts.quit);
            }
            _ if self.node_writer.is_some() && self.node_frames.is_some() => {
                // PM2's convention: the message 'shutdown', then the app exits on its own.
                if let Some(writer) = &self.node_writer {
                    writer.post(b"\"shutdown\"\n".to_vec(), FrameKind::Plain, None);
                }
                self.quitting(self.config.timeouts.stop);
            }
            // A worker that speaks no protocol: SIGTERM is its stop request, with the stop timeout.
            _ => {
                self.terminate(self.config.timeouts.stop);
            }
        }
    }

    /// Waits `timeout` for the exit before SIGTERM.
    fn quitting(&mut self, timeout: Duration) {
        self.lifecycle = Lifecycle::Quitting { until: after(timeout) };
    }

    /// SIGTERM to the group; SIGKILL if it has not exited in `timeout`.
    fn terminate(&mut self, timeout: Duration) {
        self.child.signal_group(libc::SIGTERM);
        self.lifecycle = Lifecycle::Terminating { until: after(timeout) };
    }

    fn kill(&mut self) {
        self.child.signal_group(libc::SIGKILL);
        self.lifecycle = Lifecycle::Killed;
    }

    /// The current state's deadline passed: the next step of the escalation, or a failure.
    fn on_deadline(&mut self) {
        match self.lifecycle {
            Lifecycle::Starting { .. } => {
                tracing::debug!(id = self.id, pid = self.pid, "start timeout");
                self.fail(WorkerFailure::StartTimeout {
                    timeout: self.config.timeouts.start,
                });
            }
            Lifecycle::Stopping { .. } => {
                tracing::debug!(id = self.id, pid = self.pid, "stop timeout; sending quit");
                // Stopping is entered only once hello was seen: a worker that still reads and
                // did not close gets its `quit`.
                if matches!(self.conversation, Conversation::AwaitingHello | Conversation::Open) {
                    self.write_control(MasterFrame::Quit);
                    self.quitting(self.config.timeouts.quit);
                } else {
                    self.terminate(self.config.timeouts.kill);
                }
            }
            Lifecycle::Quitting { .. } => {
                tracing::debug!(id = self.id, pid = self.pid, "quit timeout; SIGTERM");
                self.terminate(self.config.timeouts.kill);
            }
            Lifecycle::Terminating { .. } => {
                tracing::debug!(id = self.id, pid = self.pid, "kill timeout; SIGKILL");
                self.kill();
            }
            Lifecycle::Running { .. } => self.on_heartbeat_missed(),
            Lifecycle::Killed => {}
        }
    }

    /// Tells the host that read frame `seq` that it is handled (its events are emitted).
    fn report_handled(&self, seq: Option<u64>) {
        if let (Frames::Host { host, .. }, Some(seq)) = (&self.frames, seq) {
            let accepting = self.conversation.is_open();
            host.caught_up(CaughtUp::new(self.id, seq, accepting));
        }
    }

    /// No heartbeat came in time (only while running).
    fn on_heartbeat_missed(&mut self) {
        self.lifecycle = Lifecycle::Running { hung_at: None };
        if let Some(hb) = self.config.heartbeat {
            if self.frames.host_is_behind() {
                // The worker did write: it is the master's loop that is late reading. That is
                // not the worker hanging; look again a tolerance later.
                tracing::debug!(
                    id = self.id,
                    "heartbeat deadline passed with unread frames; host loop is behind"
                );
                self.lifecycle = Lifecycle::Running {
                    hung_at: Some(after(hb.tolerance.max(Duration::from_millis(100)))),
                };
                return;
            }
            self.fail(WorkerFailure::Hung {
                silent_for: hb.interval + hb.tolerance,
            });
        }
    }

    /// A worker that failed is no longer watched for heartbeats.
    fn stop_heartbeat_watch(&mut self) {
        if let Lifecycle::Running { .. } = self.lifecycle {
            self.lifecycle = Lifecycle::Running { hung_at: None };
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
        self.stop_heartbeat_watch();
        if refused && self.lifecycle.is_live() {
            self.conversation = Conversation::Ended;
            self.quitting(self.config.timeouts.quit);
        } else if !self.lifecycle.is_signalled() {
            self.terminate(self.config.timeouts.kill);
        }
    }

    fn set_status(&mut self, to: WorkerStatus) {
        let from = self.status;
        if from == to {
            return;
        }
        self.status = to;
        let started = to == WorkerStatus::Started;
        if let Some(router) = &self.router {
            if started && !self.retiring_told {
                router.worker_serving(self.id, true);
            } else if from == WorkerStatus::Started {
                router.worker_serving(self.id, false);
            }
        }
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
        let ends_service = matches!(frame, MasterFrame::Stop | MasterFrame::Quit);
        match encode_frame(&frame, usize::MAX) {
            Ok(bytes) if ends_service => {
                // Closed with the write, under the gate's lock: no handed connection can be
                // queued after this frame (balance.rs).
                let mut open = self.handoffs.lock().unwrap_or_else(|p| p.into_inner());
                *open = false;
                self.writer.post(bytes, kind, None);
                drop(open);
                // It stops accepting now: the master takes its `reuseport` slots' connections
                // from here on, not after it has drained and exited.
                self.listeners.stop_accepting(self.pid);
            }
            Ok(bytes) => self.writer.post(bytes, kind, None),
            Err(error) => tracing::error!(%error, "a control frame could not be encoded"),
        }
    }

    /// A frame from the channel (number `seq` if the host's loop forwarded it): handled, then
    /// reported handled to the host, after its events.
    fn on_read(&mut self, frame: Option<Frame>, seq: Option<u64>) {
        self.on_frame(frame);
        self.report_handled(seq);
    }

    fn on_frame(&mut self, frame: Option<Result<String, ProtocolError>>) {
        match frame {
            None => {
                tracing::debug!(id = self.id, pid = self.pid, "worker closed its channel");
                self.conversation = Conversation::Ended;
            }
            // A read that fails is the channel ending, not a worker breaking the protocol: a
            // worker that exits (or closes its end) with frames of ours unread resets the
            // connection (ECONNRESET). Its exit, or the escalation of a stop, says why it went;
            // failing it here would report "protocol error" for a plain `exit(3)`.
            Some(Err(ProtocolError::Io { message })) => {
                tracing::debug!(id = self.id, pid = self.pid, error = %message, "the channel ended with an error");
                self.conversation = Conversation::Ended;
            }
            Some(Err(error)) => self.protocol_error(error),
            Some(Ok(line)) => {
                if let Err(error) = self.on_line(&line) {
                    self.protocol_error(error);
                }
            }
        }
    }

    fn on_line(&mut self, line: &str) -> Result<(), ProtocolError> {
        if self.conversation == Conversation::ClosedByWorker {
            return Err(ProtocolError::AfterClose);
        }
        let frame = protocol::decode_worker_frame(line)?;
        if self.conversation == Conversation::AwaitingHello {
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
            WorkerFrame::Heartbeat { rss_bytes, stats, .. } => {
                if stats.len() > MAX_HEARTBEAT_STATS {
                    return Err(ProtocolError::Malformed {
                        reason: format!("heartbeat: {} stats, at most {MAX_HEARTBEAT_STATS}", stats.len()),
                        excerpt: excerpt_type(line),
                    });
                }
                if let Some((name, _)) = stats
                    .iter()
                    .find(|(n, v)| n.is_empty() || n.len() > 64 || !v.is_finite())
                {
                    return Err(ProtocolError::Malformed {
                        reason: format!("heartbeat: stat {name:?}: a name of 1 to 64 bytes and a finite number"),
                        excerpt: excerpt_type(line),
                    });
                }
                if !stats.is_empty() {
                    self.info.send_modify(|i| i.stats = stats.clone());
                }
                self.on_heartbeat(rss_bytes, stats);
                Ok(())
            }
            WorkerFrame::Listen { request, address } => {
                self.on_listen(request, &address);
                Ok(())
            }
            WorkerFrame::AppStatus { status, counters } => {
                if let Err(why) = crate::protocol::wire::check_app_status(status.as_deref(), &counters) {
                    return Err(ProtocolError::Malformed {
                        reason: format!("app_status: {why}"),
                        excerpt: excerpt_type(line),
                    });
                }
                self.info.send_modify(|i| {
                    i.app_status = status;
                    i.counters = counters;
                });
                Ok(())
            }
            WorkerFrame::Handlers { names } => {
                if let Some(router) = &self.router {
                    if let Err(why) = router.set_worker_handlers(self.id, names) {
                        tracing::warn!(id = self.id, pid = self.pid, "handlers refused: {why}");
                        return Err(ProtocolError::Malformed {
                            reason: format!("handlers: {why}"),
                            excerpt: excerpt_type(line),
                        });
                    }
                }
                Ok(())
            }
            WorkerFrame::Request {
                id,
                to,
                name,
                args,
                timeout_ms,
            } => {
                if let Some(router) = &self.router {
                    router.worker_request(self.id, id, to, name, args, timeout_ms);
                }
                Ok(())
            }
            WorkerFrame::Response { id, result, error } => {
                if let Some(router) = &self.router {
                    router.worker_response(self.id, id, result, error);
                }
                Ok(())
            }
            WorkerFrame::Send { id, to, data } => {
                if let Some(router) = &self.router {
                    router.worker_send(self.id, id, to, data);
                }
                Ok(())
            }
            WorkerFrame::Reconfigured { version, error } => {
                self.events.emit(Event::Reconfigured {
                    id: self.id,
                    pid: self.pid,
                    version,
                    error: error.map(crate::master::reconfigure::bounded_reason),
                });
                Ok(())
            }
            WorkerFrame::Unknown => {
                tracing::debug!(id = self.id, frame = line, "unknown frame type ignored");
                Ok(())
            }
        }
    }

    /// A heartbeat (a `heartbeat` frame, or `WATCHDOG=1`) pushes the hung deadline back.
    fn on_heartbeat(&mut self, rss_bytes: Option<u64>, stats: std::collections::BTreeMap<String, f64>) {
        if let Some(hb) = self.config.heartbeat {
            if let Lifecycle::Running { hung_at: Some(_) } = self.lifecycle {
                self.lifecycle = Lifecycle::Running {
                    hung_at: Some(after(hb.interval + hb.tolerance)),
                };
            }
        }
        if rss_bytes.is_some() {
            self.info.send_modify(|i| i.rss_bytes = rss_bytes);
        }
        self.events.emit(Event::Heartbeat {
            id: self.id,
            pid: self.pid,
            rss_bytes,
            stats,
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
        let balance = self.config.balance;
        let instance = self.info.borrow().instance;
        let subscriber = crate::master::balance::Subscriber {
            pid,
            instance,
            info: self.info.subscribe(),
            writer: self.writer.clone(),
            gate: self.handoffs.clone(),
        };
        tokio::task::spawn_blocking(move || {
            let answer = address
                .parse::<ListenAddr>()
                .and_then(|addr| listeners.get_or_bind(&addr, Holder::Worker(pid), balance))
                .and_then(|listener| Ok((listener.socket_for(instance, Some(pid))?, listener)));
            let (frame, fd) = match answer {
                Ok((fd, listener)) => {
                    if let Some(balancer) = &listener.balancer {
                        balancer.join(subscriber);
                    } else if let Some(slots) = &listener.slots {
                        slots.join(subscriber);
                    }
                    let frame = MasterFrame::Listener {
                        request,
                        local: Some(listener.local.clone()),
                        error: None,
                        errno: None,
                        address: None,
                        balance: (listener.balance != crate::listen::Balance::Shared).then_some(listener.balance),
                    };
                    (frame, Some(fd))
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
                            balance: None,
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
                    self.on_heartbeat(None, Default::default());
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
            // A read error ends that channel as its close does (see `on_frame`).
            None | Some(Err(ProtocolError::Io { .. })) => {
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
        self.conversation = Conversation::Open;
        let config = &self.config;
        let (name, instance) = {
            let info = self.info.borrow();
            (info.name.clone(), info.instance)
        };
        let worker = WorkerMeta {
            id: self.id,
            name,
            instance,
            group: config.name.clone(),
            config: config.user_config.clone(),
            max_frame_bytes: config.max_frame_bytes,
            heartbeat_ms: config.heartbeat.map(|hb| hb.interval.as_millis() as u64),
            title: config
                .process_title
                .then(|| crate::title::worker_title(&config.name, instance)),
            warmup: config.warmup.as_ref().map(|w| crate::protocol::WarmupMeta {
                requests: w.requests,
                path: w.path.clone(),
                timeout_ms: w.timeout.as_millis().min(u128::from(u64::MAX)) as u64,
            }),
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
            WorkerStatus::Started if matches!(self.lifecycle, Lifecycle::Starting { .. }) => {
                self.lifecycle = Lifecycle::Running {
                    hung_at: self.config.heartbeat.map(|hb| after(hb.interval + hb.tolerance)),
                };
            }
            WorkerStatus::Stopped if matches!(self.lifecycle, Lifecycle::Stopping { .. }) => {
                self.write_control(MasterFrame::Quit);
                self.quitting(self.config.timeouts.quit);
            }
            WorkerStatus::ShuttedDown => {
                self.conversation = Conversation::ClosedByWorker;
                if self.lifecycle.is_live() || matches!(self.lifecycle, Lifecycle::Stopping { .. }) {
                    // It is leaving on its own (or early): give it the quit timeout to exit.
                    self.quitting(self.config.timeouts.quit);
                }
            }
            WorkerStatus::Failed => {
                self.info.send_modify(|i| i.failure = Some(WorkerFailure::Reported));
                self.events.emit(Event::Failed {
                    id: self.id,
                    pid: Some(self.pid),
                    failure: WorkerFailure::Reported,
                });
                self.stop_heartbeat_watch();
                if self.lifecycle.is_live() {
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
        let reason = self.reap();
        self.drain().await;
        // After the drain: an answer it wrote just before it died still reaches its asker.
        if let Some(router) = &self.router {
            router.worker_gone(self.id);
        }
        self.report_exit(reason);
    }

    /// Kills what is left of the group and reaps the process; releases the sockets it held.
    fn reap(&mut self) -> crate::ExitReason {
        let reaped = self.child.reap();
        // Whatever sockets it asked for, it holds no more (they linger for its successor).
        self.listeners.release(self.pid);
        match reaped {
            Ok(reason) => reason,
            Err(error) => {
                // Only possible if someone else reaped our child (a `waitpid(-1)` in the host).
                tracing::error!(id = self.id, pid = self.pid, %error, "reaping the worker failed");
                crate::ExitReason::ExternalSignal {
                    signal: 0,
                    core_dumped: false,
                }
            }
        }
    }

    /// Frames written just before the exit are still in the socket: they are delivered before it.
    async fn drain(&mut self) {
        let mut drain_until = Instant::now() + DRAIN_LIMIT;
        let give_up = Instant::now() + HOST_DRAIN_LIMIT;
        while self.conversation.reading() {
            match tokio::time::timeout_at(drain_until, self.frames.next()).await {
                Ok((frame, seq)) => self.on_read(frame, seq),
                // A host's loop that is busy has not read them yet: the exit waits for them (its
                // event would otherwise overtake the worker's last messages), within reason.
                Err(_) if self.frames.host_is_behind() && Instant::now() < give_up => {
                    drain_until = Instant::now() + DRAIN_LIMIT;
                }
                Err(_) => break,
            }
        }
    }

    /// The exit, in the snapshot and as an event; the channel's writers are done.
    fn report_exit(self, reason: crate::ExitReason) {
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

/// The actor against a fake process, under tokio's paused clock: the test plays the worker on a
/// real socket pair, and every timeout is checked to the instant.
#[cfg(test)]
mod tests;
