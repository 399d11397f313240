//! # drover — a process supervisor
//!
//! drover starts N copies of a program, knows when each one is *really* ready, tells exactly why one
//! died, restarts, rescales and reloads them, and shuts them down without leaving an orphan. This
//! crate is the one implementation; the C ABI, the Node.js addon and the `drover` command wrap it.
//!
//! ## Theory of operation
//!
//! **Actors.** A [`Master`] is a handle on a group of identical workers. Each worker *process* is
//! owned by one tokio task, its actor (`master/worker/actor.rs`), which holds the child's pidfd,
//! the master's end of the worker's socket, and the worker's deadlines. The actor is a single
//! `select!` over its commands, the child's exit, incoming frames and the one deadline of its
//! lifecycle state; it is generic over the child (`master/spawn.rs`'s `Child`), so its timers are
//! unit-tested against a fake process under tokio's paused clock. What the master holds of a worker
//! is in `master/worker/handle.rs`, what a process starts with in `master/worker/launch.rs`. Outgoing frames
//! are written from the sender's own task when the socket takes them, else queued for a flush task
//! (`protocol/writer.rs`), so a worker that stops reading cannot stall its actor; the socket is
//! registered with the runtime for reading only (`protocol/channel.rs`), so a peer's reads never
//! wake a thread for nothing. The master keeps a table of *slots*: a worker id (stable across restarts, never reused)
//! and the handle of its current process.
//!
//! **The master's loop.** Supervision is one more task per master (`master/arbiter.rs`), a single
//! `select!` you can read top to bottom: commands from the [`Master`] handles (start, restart,
//! rescale, reload, shutdown — run one at a time, each answered when done; a shutdown cancels
//! whichever is running and wins), worker exits on the loop's own lossless channel, the running
//! operation, restarts waiting out their backoff or being spawned, and the recycling tick. What to
//! do about an exit, how long to wait, when to give up, which worker to recycle are pure functions
//! over data in [`policy`]; the loop only acts on their answers. Because the running operation is
//! polled beside the other arms, a crash is restarted promptly even while a reload or a recycle
//! waits on its workers. The public event stream is output only. When the last handle is
//! dropped, the loop kills every worker and ends.
//!
//! **Latency.** A round trip's cost is mostly waking the threads that sleep on each end. With a
//! busy-poll window ([`MasterConfig::busy_poll`], opt-in), the master's runtime and its workers'
//! spin for that long after traffic before sleeping (`busy_poll.rs`): on the 2-vCPU build machine,
//! p50 from 20 µs to 11 µs, for about twice the CPU while messages flow and none while idle.
//!
//! **The state machine.** A worker reports its status over the MessageBus protocol
//! (`docs/PROTOCOL.md`): INITIALIZED → (STARTING) → STARTED → (STOPPING) → STOPPED →
//! (SHUTTING_DOWN) → SHUTTED_DOWN, or FAILED from any live state. Only STARTED counts as ready. The
//! master ends a worker with `stop`, waits for STOPPED, sends `quit`, waits for the exit; each step
//! has a timeout, after which it sends SIGTERM and then SIGKILL to the worker's process group.
//!
//! **Who owns which fd.** Per worker, the master creates a Unix stream socketpair. The worker's end
//! is placed at fd `3 + n` in the child (fds 3..3+n are reserved for inherited listening sockets,
//! systemd-style), its number is in `DROVER_IPC_FD`; the master's end is owned by the actor and
//! closed when the actor ends. Every fd the master holds is close-on-exec, so no worker inherits
//! another's channel.
//!
//! **No orphans, no zombies, no stale pids.** Every fork happens on one long-lived thread (because
//! `PR_SET_PDEATHSIG` follows the forking *thread*); the child gets its own process group and
//! `PR_SET_PDEATHSIG(SIGKILL)`. A child is tracked by its pidfd: its exit is seen without any SIGCHLD
//! handler or `waitpid(-1)` (drover is a guest in its host process), its group is signalled only
//! while it is unreaped, what is left of the group is killed when the leader exits, and the leader is
//! reaped with `waitid(P_PIDFD)`.
//!
//! ## Example
//!
//! A master running four `sh` workers that speak the protocol by hand:
//!
//! ```no_run
//! use drover::{Event, Master, MasterConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let script = r#"
//!   exec 3<&"$DROVER_IPC_FD"  # nothing fancy: a real worker uses a MessageBus
//!   printf '{"type":"hello","version":1}\n{"type":"status","status":3}\n' >&3
//!   read -r welcome <&3; read -r command <&3   # welcome, then stop
//!   printf '{"type":"status","status":5}\n' >&3
//!   read -r command <&3                       # quit
//!   printf '{"type":"status","status":7}\n' >&3
//! "#;
//! let master = Master::new(MasterConfig::program("sh").args(["-c", script]).count(4))?;
//! let mut events = master.events();
//! master.start().await?; // every worker reported STARTED
//! for w in master.workers() {
//!     println!("worker {} pid {} {}", w.id, w.pid, w.status);
//! }
//! master.graceful_shutdown().await?; // stop, quit, exit: every process reaped
//! while let Some(event) = events.try_recv() {
//!     if let Event::Exit(exit) = event {
//!         println!("{exit}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! A worker written in Rust uses [`MessageBus`]; see its docs.

// No unwrap/expect outside tests: what a user or a worker controls is an error, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod bus;
pub mod busy_poll;
pub mod config;
pub mod ecv;
pub mod error;
pub mod exit;
pub mod leader_client;
pub mod listen;
pub mod master;
pub mod policy;
pub mod protocol;
pub mod request;
pub mod signals;
pub mod status;
pub mod store;
pub mod title;
pub mod warmup;

// The crate's README (its crates.io page) is compiled and checked as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// A worker's id: unique within its master, never reused, stable across restarts of the worker.
pub type WorkerId = u64;

pub use bus::{
    BusError, BusEvent, BusOptions, BusSender, Command, CommandReader, HandedConnection, ListenRefused, MessageBus,
};
pub use config::{
    Bytes, ConfigError, Heartbeat, MasterConfig, MasterOptions, Millis, OnProtocolError, ReadySource, Recycle,
    ReloadKind, StoreBackendKind, StoreConfig, StoreOptions, Timeouts, Warmup, WarmupOptions,
};
pub use error::{Error, StartFailure};
pub use exit::{signal_name, ExitReason, WorkerExit};
pub use listen::{errno_name, Balance, ListenAddr, ListenError, ListenSpec};
pub use master::cgroup::{containment, Containment};
pub use master::election;
pub use master::events::{
    message_json_text, Event, Events, Subject, Subscription, Summary, WorkerFailure, EVENT_JSON_VERSION,
    EVENT_QUEUE_BYTES, EVENT_QUEUE_EVENTS, EVENT_QUEUE_LIFECYCLE,
};
// For hosts that read workers' channels on their own loop (the Node addon) and for a standalone
// binary that reaps orphans (the drover command): not part of the API a Rust user needs.
#[doc(hidden)]
pub use master::host_reads::{CaughtUp, ChannelHost, DirectMessage, WorkerChannel};
pub use master::output::{OutputLine, OutputLines, OutputStream};
#[doc(hidden)]
pub use master::pids::{is_worker_pid, lock_worker_pids, WorkerPids};
pub use master::spawn::{cpu_seconds, rss_bytes};
pub use master::worker::{SendError, WorkerInfo};
pub use master::{BroadcastReport, EcvGuard, Master, RecyclePredicate, BROADCAST_TIMEOUT};
pub use policy::{Backoff, Intensity, ReloadStrategy, RestartPolicy};
pub use protocol::ProtocolError;
pub use signals::{SignalAction, SignalPolicy};
pub use status::{MasterStatus, WorkerStatus};
