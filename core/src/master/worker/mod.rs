//! One worker process as the master sees it: an actor that owns the child, its channel and its
//! timers.
//!
//! - [`handle`]: what the master holds — the [`WorkerHandle`] it commands the actor through, the
//!   [`WorkerInfo`] snapshot the actor keeps current, and the [`SendError`] a send can end in;
//! - [`launch`]: what a worker process starts with — its fds, its environment, its readiness
//!   channels — and the spawn that wires the process, its channel and its actor together;
//! - [`actor`]: the task that drives the process's life: one `select!` loop over commands from its
//!   handle, the child's exit (its pidfd), frames from the channel and the current deadline, each
//!   arm a named method. Writes go through a separate writer task, so a worker that stops reading
//!   can never stall the loop that would kill it.
//!
//! ```text
//!            spawn ──▶ INITIALIZED ──hello/STARTED──▶ STARTED ──Retire──▶ stop ─▶ STOPPED ─▶ quit ─▶ exit
//!                         │ start timeout               │ protocol error /        │ stop timeout       │ quit timeout
//!                         ▼                             ▼ missed heartbeats       ▼                    ▼
//!                       FAILED ─────────────────────▶ SIGTERM (group) ──kill timeout──▶ SIGKILL (group)
//! ```
//!
//! The actor is generic over the process ([`super::spawn::Child`]): its unit tests drive it with a
//! fake one under tokio's paused clock, playing the worker on a real socket pair.

mod actor;
mod handle;
mod launch;

pub(crate) use handle::WorkerHandle;
pub use handle::{SendError, WorkerInfo};
pub(crate) use launch::{spawn_worker, WorkerSpec};
