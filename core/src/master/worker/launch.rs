//! What a worker process starts with, and the spawn that wires the process, its channel and its
//! actor together.
//!
//! A [`LaunchPlan`] is everything prepared before the fork: the fds the worker inherits (the
//! declared listeners, its MessageBus channel, its Node IPC channel), its environment (the
//! protocol's variables, systemd's `LISTEN_*` and `NOTIFY_SOCKET`, Node's `NODE_CHANNEL_*`), and the
//! master's ends of those channels. [`spawn_worker`] spawns the process from it, connects the
//! channel (to the actor, or to the host's loop), and starts the actor.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use super::actor::{self, Frames, Launched};
use super::handle::WorkerHandle;
use crate::config::{MasterConfig, ReadySource};
use crate::listen::Listeners;
use crate::master::events::{Event, EventHub, WorkerFailure};
use crate::master::host_reads::{ChannelHost, WorkerChannel};
use crate::master::readiness::NotifySocket;
use crate::master::spawn::{self, Child, SpawnSpec};
use crate::protocol::channel::{self, ChannelRead, ChannelWrite};
use crate::protocol::{self, FrameCodec};
use crate::WorkerId;

/// Everything the actor needs to know about its process's settings.
#[derive(Clone)]
pub(crate) struct WorkerSpec {
    pub id: WorkerId,
    /// The place the worker fills in its group, `0..count` (`DROVER_INSTANCE`).
    pub instance: u32,
    pub restarts: u32,
    pub generation: u64,
    pub config: Arc<MasterConfig>,
    /// Declared listening sockets the worker inherits at fd 3 onwards, with their names.
    pub inherited: Vec<(String, Arc<OwnedFd>)>,
    /// The `reuseport` listeners among them: the worker holds its slot of each from its spawn.
    pub slotted: Vec<Arc<crate::listen::Listener>>,
    /// The master's sockets, for on-demand `listen` requests.
    pub listeners: Arc<Listeners>,
    /// The master's switchboard (requests, messages between workers).
    pub router: Option<Arc<crate::master::router::Router>>,
    /// Who reads the channel, if not the actor.
    pub host: Option<Arc<dyn ChannelHost>>,
}

/// A worker process's fds and environment, and the master's ends of its channels, prepared
/// before the fork.
struct LaunchPlan {
    /// The master's end of the MessageBus channel.
    master_end: UnixStream,
    /// What the worker gets at fd 3 onwards, in order.
    fds: Vec<OwnedFd>,
    /// The worker's variables, over the master's environment.
    env: Vec<(OsString, OsString)>,
    /// `ready: notify`: the socket named in the worker's `NOTIFY_SOCKET`.
    notify: Option<NotifySocket>,
    /// `ready: node-ipc`: the master's end of the worker's Node IPC channel.
    node_channel: Option<(ChannelRead, ChannelWrite)>,
}

impl LaunchPlan {
    fn new(spec: &WorkerSpec) -> io::Result<LaunchPlan> {
        let config = &spec.config;
        let (master_end, worker_end) = UnixStream::pair()?;
        let mut fds = Vec::with_capacity(spec.inherited.len() + 2);
        for (_, fd) in &spec.inherited {
            fds.push(fd.try_clone()?);
        }
        let ipc_fd = 3 + fds.len();
        fds.push(worker_end.into());
        let mut env: Vec<(OsString, OsString)> = config.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
        if !spec.inherited.is_empty() {
            let names: Vec<&str> = spec.inherited.iter().map(|(name, _)| name.as_str()).collect();
            env.push(("LISTEN_FDS".into(), spec.inherited.len().to_string().into()));
            env.push(("LISTEN_FDNAMES".into(), names.join(":").into()));
        }
        let notify = match config.ready {
            ReadySource::Notify => {
                let socket = NotifySocket::bind(spec.id)?;
                env.push(("NOTIFY_SOCKET".into(), socket.env_value.clone().into()));
                Some(socket)
            }
            _ => None,
        };
        let node_channel = match config.ready {
            ReadySource::NodeIpc => {
                let (master_node, worker_node) = UnixStream::pair()?;
                env.push(("NODE_CHANNEL_FD".into(), (3 + fds.len()).to_string().into()));
                env.push(("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into()));
                fds.push(worker_node.into());
                Some(channel::split(master_node)?)
            }
            _ => None,
        };
        for (key, value) in [
            (protocol::env::IPC_FD, ipc_fd.to_string()),
            (protocol::env::WORKER_ID, spec.id.to_string()),
            (protocol::env::INSTANCE, spec.instance.to_string()),
            (protocol::env::PROTOCOL_VERSION, protocol::PROTOCOL_VERSION.to_string()),
            (protocol::env::MAX_FRAME_BYTES, config.max_frame_bytes.to_string()),
            (protocol::env::GROUP, config.name.clone()),
        ] {
            env.push((key.into(), value.into()));
        }
        if config.runs_node() {
            // PM2's name for the same index: Node apps (and modules such as `config`) read it.
            env.push((
                protocol::env::NODE_APP_INSTANCE.into(),
                spec.instance.to_string().into(),
            ));
        }
        if !config.busy_poll.is_zero() {
            env.push((
                protocol::env::BUSY_POLL_US.into(),
                config.busy_poll.as_micros().to_string().into(),
            ));
        }
        Ok(LaunchPlan {
            master_end,
            fds,
            env,
            notify,
            node_channel,
        })
    }
}

/// Why a spawn failed, as the event and the caller see it.
fn spawn_failure(config: &MasterConfig, error: io::Error) -> WorkerFailure {
    WorkerFailure::Spawn {
        program: config.program.display().to_string(),
        errno: error.raw_os_error(),
        error: match error.raw_os_error() {
            Some(errno) => format!("{} ({})", error, nix::errno::Errno::from_raw(errno)),
            None => error.to_string(),
        },
    }
}

/// Spawns the process and its actor. A spawn failure is returned (and reported as an event).
pub(crate) async fn spawn_worker(spec: WorkerSpec, events: EventHub) -> Result<WorkerHandle, WorkerFailure> {
    let config = spec.config.clone();
    let failed = |error: io::Error| spawn_failure(&config, error);
    // Before the channel exists, so that it is watched. Not when a host reads the channels on its
    // own thread: this runtime does not read them, and spinning here would only take a CPU from
    // that thread (the window still goes to the worker, whose runtime may read its end).
    if spec.host.is_none() {
        crate::busy_poll::enable(config.busy_poll);
    }
    let plan = LaunchPlan::new(&spec).map_err(failed)?;
    let mut child = spawn::spawn(SpawnSpec {
        program: config.program.clone(),
        args: config.args.clone(),
        env: plan.env,
        cwd: config.cwd.clone(),
        fds: plan.fds,
        listen_pid: !spec.inherited.is_empty(),
        capture_output: config.capture_output,
    })
    .await
    .map_err(failed)?;
    let pid = child.pid();
    // Its slots of the declared `reuseport` sockets are its from now: this is before the actor
    // exists, so before it can reap the process and release them.
    for listener in &spec.slotted {
        if let Err(error) = listener.socket_for(spec.instance, Some(pid)) {
            tracing::debug!(%error, "a worker's reuseport slot could not be had");
        }
    }
    let (frames, write_half) = connect(plan.master_end, &spec, pid).map_err(failed)?;
    tracing::debug!(id = spec.id, pid, program = %config.program.display(), "worker spawned");
    if let Some((stdout, stderr)) = child.take_output() {
        events.output.read_worker(spec.id, pid, stdout, stderr);
    }
    let launched = Launched {
        id: spec.id,
        instance: spec.instance,
        restarts: spec.restarts,
        generation: spec.generation,
        config,
        child,
        frames,
        write_half,
        notify: plan.notify,
        node_channel: plan.node_channel,
        listeners: spec.listeners,
        router: spec.router,
    };
    Ok(start(launched, &events))
}

/// The master's end of the channel: the actor reads it, or the host's loop does and forwards
/// what the actor must handle.
fn connect(master_end: UnixStream, spec: &WorkerSpec, pid: u32) -> io::Result<(Frames, ChannelWrite)> {
    let codec = FrameCodec::new(spec.config.max_frame_bytes);
    match &spec.host {
        None => {
            let (read_half, write_half) = channel::split(master_end)?;
            Ok((Frames::Own(FramedRead::new(read_half, codec)), write_half))
        }
        Some(host) => {
            let (host_frames, write_half) = channel::split_for_host(master_end, codec)?;
            let fd = host_frames.fd();
            let (to_actor, from_host) = mpsc::unbounded_channel();
            host.adopt(WorkerChannel::new(spec.id, pid, host_frames, to_actor));
            let frames = Frames::Host {
                from_host,
                host: host.clone(),
                fd,
            };
            Ok((frames, write_half))
        }
    }
}

/// Announces the spawn, then starts the actor: the announcement comes before anything the actor
/// emits.
pub(super) fn start<C: Child>(launched: Launched<C>, events: &EventHub) -> WorkerHandle {
    let (id, pid) = (launched.id, launched.child.pid());
    let (handle, actor) = actor::wire(launched, events.clone());
    announce_spawn(events, id, pid);
    tokio::spawn(actor.run());
    handle
}

/// A new process for worker `id` (never a status change: PROTOCOL.md §6.2).
fn announce_spawn(events: &EventHub, id: WorkerId, pid: u32) {
    events.emit(Event::Spawned { id, pid });
}
