//! What a master tells its users: the [`Event`] stream.
//!
//! Every subscriber gets every event, in order, from the moment it subscribed. Nothing is dropped:
//! a subscriber that does not read buffers (so read, or drop the [`Events`]).

use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::exit::WorkerExit;
use crate::protocol::ProtocolError;
use crate::status::{MasterStatus, WorkerStatus};
use crate::WorkerId;

/// Why the master gave up on a worker before it exited.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerFailure {
    /// It did not report STARTED within the start timeout.
    #[error("did not report STARTED within {timeout:?}")]
    StartTimeout {
        /// The timeout in force.
        timeout: Duration,
    },
    /// It broke the protocol (and the master's policy is to fail it).
    #[error("protocol error: {error}")]
    Protocol {
        /// What it did.
        error: ProtocolError,
    },
    /// It reported FAILED itself.
    #[error("reported FAILED")]
    Reported,
    /// It sent no heartbeat for too long.
    #[error("sent no heartbeat for {silent_for:?}")]
    Hung {
        /// How long it had been silent.
        silent_for: Duration,
    },
    /// The process could not be created.
    #[error("could not spawn {program}: {error}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error, with its errno name.
        error: String,
        /// The raw errno, when there is one.
        errno: Option<i32>,
    },
}

/// Something that happened in a master.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A worker's status changed (reported by it, or assigned by the master: INITIALIZED at spawn,
    /// FAILED on a failure).
    Status {
        /// The worker.
        id: WorkerId,
        /// Its process.
        pid: u32,
        /// The previous status.
        from: WorkerStatus,
        /// The new status.
        to: WorkerStatus,
    },
    /// A worker sent a user message.
    Message {
        /// The worker.
        id: WorkerId,
        /// Its process.
        pid: u32,
        /// The payload.
        data: Value,
    },
    /// A worker process ended.
    Exit(WorkerExit),
    /// A worker broke the protocol.
    ProtocolError {
        /// The worker.
        id: WorkerId,
        /// Its process.
        pid: u32,
        /// What it did.
        error: ProtocolError,
    },
    /// The master gave up on a worker (it is being terminated, or was never created).
    Failed {
        /// The worker.
        id: WorkerId,
        /// Its process, if it had one.
        pid: Option<u32>,
        /// Why.
        failure: WorkerFailure,
    },
    /// A worker sent a heartbeat.
    Heartbeat {
        /// The worker.
        id: WorkerId,
        /// Its process.
        pid: u32,
        /// Its resident memory, if it said.
        rss_bytes: Option<u64>,
    },
    /// The master is restarting a worker that exited, after `delay`.
    Restarting {
        /// The worker.
        id: WorkerId,
        /// The backoff delay before the new process is spawned.
        delay: Duration,
        /// The restart count of this worker, including this one.
        restarts: u32,
    },
    /// The master replaces a worker that is too old or too big (make-before-break).
    Recycling {
        /// The worker being replaced.
        id: WorkerId,
        /// Why.
        reason: String,
    },
    /// More than the allowed restarts happened within the window: the master stopped restarting.
    GaveUp {
        /// Restarts within the window.
        restarts: u32,
        /// The window.
        window: Duration,
    },
    /// The master's own status changed.
    MasterStatus {
        /// The previous status.
        from: MasterStatus,
        /// The new status.
        to: MasterStatus,
    },
}

/// A callback subscriber: called on the task that emits the event.
type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

#[derive(Default)]
struct Subscribers {
    channels: Vec<mpsc::UnboundedSender<Event>>,
    callbacks: Vec<(u64, Callback)>,
    next_callback: u64,
}

/// The fan-out point of a master's events.
#[derive(Clone, Default)]
pub(crate) struct EventHub {
    subscribers: Arc<Mutex<Subscribers>>,
    /// The workers' captured stdout and stderr (`master/output.rs`), which travel with the events.
    pub(crate) output: super::output::OutputHub,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventHub")
    }
}

impl EventHub {
    pub(crate) fn subscribe(&self) -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().channels.push(tx);
        Events { rx }
    }

    pub(crate) fn subscribe_fn(&self, f: Callback) -> Subscription {
        let mut subs = self.lock();
        subs.next_callback += 1;
        let id = subs.next_callback;
        subs.callbacks.push((id, f));
        Subscription {
            hub: Arc::downgrade(&self.subscribers),
            id,
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        tracing::debug!(?event, "drover event");
        let callbacks: Vec<Callback> = {
            let mut subs = self.lock();
            subs.channels.retain(|tx| !tx.is_closed());
            if subs.callbacks.is_empty() {
                // The common case: channels only, and the last one takes the event itself.
                if let Some((last, others)) = subs.channels.split_last() {
                    for tx in others {
                        let _ = tx.send(event.clone());
                    }
                    let _ = last.send(event);
                }
                return;
            }
            for tx in &subs.channels {
                let _ = tx.send(event.clone());
            }
            subs.callbacks.iter().map(|(_, f)| f.clone()).collect()
        };
        // Outside the lock: a callback may subscribe or unsubscribe.
        for f in callbacks {
            f(&event);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A callback subscription from [`crate::Master::on_event`]; dropping it unsubscribes.
pub struct Subscription {
    hub: std::sync::Weak<Mutex<Subscribers>>,
    id: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("id", &self.id).finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.lock()
                .unwrap_or_else(|p| p.into_inner())
                .callbacks
                .retain(|(id, _)| *id != self.id);
        }
    }
}

/// A subscription to a master's events, from [`crate::Master::events`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event; `None` once the master is gone and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Blocking receive, for threads outside the runtime (the C ABI).
    pub fn blocking_recv(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }
}
