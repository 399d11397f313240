//! Pushing a new user config to live workers without restarting them (powerhouse's `set(id,
//! config)`; PROTOCOL.md §5.11).
//!
//! The master keeps the *latest* user config and its version (a number that only grows). A
//! reconfigure bumps it and, under the slot-table lock, tells every worker in the table: its actor
//! writes a `reconfigure` frame (held behind the welcome, like every routed frame), and the worker
//! answers `reconfigured`, which its actor turns into an [`Event::Reconfigured`]. The caller waits
//! for those answers up to its deadline and gets one [`ReconfigureAck`] per worker.
//!
//! **Later workers get it too.** A process spawned from then on (a restart, a rescale, a recycled
//! successor) is spawned with the latest config in its welcome; one spawned just before a
//! reconfigure but put in its slot just after is sent the frame when it is put there
//! (`Inner::install` and [`Master::reconfigure`] both decide under the slot-table lock), so no
//! worker misses a version and none gets one twice.
//!
//! A reload with a new config ends the override: its config's `user_config` is the latest from
//! then on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::events::Event;
use super::worker::WorkerHandle;
use super::{lock, Inner, Master};
use crate::config::MasterConfig;
use crate::error::Error;
use crate::protocol::codec::{encode_frame, EncodeError};
use crate::protocol::MasterFrame;
use crate::WorkerId;

/// How long [`Master::reconfigure`] waits for the workers' answers unless told otherwise.
pub const DEFAULT_RECONFIGURE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest [`Master::reconfigure`] waits (a longer timeout is cut to this).
pub const MAX_RECONFIGURE_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest refusal reason a worker's `reconfigured` frame may carry, in bytes; a longer one
/// is cut (at a character boundary) and marked with `…`.
pub const MAX_RECONFIGURE_ERROR_BYTES: usize = 1024;

/// Why [`Master::reconfigure`] sent nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReconfigureError {
    /// The config does not fit in one frame (or cannot be encoded).
    #[error("the new config cannot be sent: {0}")]
    Encode(EncodeError),
}

/// What one worker did with a reconfigure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconfigureOutcome {
    /// It applied the config.
    Applied,
    /// It refused the config (and keeps the one it had), saying why.
    Refused(String),
    /// It did not answer within the deadline: it is busy, or does not know the `reconfigure`
    /// frame (a worker built before it ignores unknown frames, PROTOCOL.md §13), or has no
    /// MessageBus at all (`ready: spawn`, notify, node-ipc without the bus).
    Timeout,
    /// Its process exited before it answered (its replacement, if any, is spawned with the new
    /// config).
    Gone,
}

impl ReconfigureOutcome {
    /// A stable word for the outcome: `applied`, `refused`, `timeout` or `gone`.
    pub fn code(&self) -> &'static str {
        match self {
            ReconfigureOutcome::Applied => "applied",
            ReconfigureOutcome::Refused(_) => "refused",
            ReconfigureOutcome::Timeout => "timeout",
            ReconfigureOutcome::Gone => "gone",
        }
    }
}

/// One worker's answer to [`Master::reconfigure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconfigureAck {
    /// The worker.
    pub id: WorkerId,
    /// Its name.
    pub name: String,
    /// Its instance index.
    pub instance: u32,
    /// The process that was told.
    pub pid: u32,
    /// What it did.
    pub outcome: ReconfigureOutcome,
}

impl ReconfigureAck {
    /// The ack as JSON: `{"id", "name", "instance", "pid", "outcome", "error"?}` (the form the
    /// Node face and the `drover` command give).
    pub fn to_json(&self) -> Value {
        let mut json = serde_json::json!({
            "id": self.id,
            "name": self.name,
            "instance": self.instance,
            "pid": self.pid,
            "outcome": self.outcome.code(),
        });
        if let ReconfigureOutcome::Refused(why) = &self.outcome {
            json["error"] = Value::from(why.as_str());
        }
        json
    }
}

/// The user config that overrides the master config's, once a reconfigure set one.
#[derive(Debug, Default)]
pub(super) struct LatestUserConfig {
    /// 0 until the first reconfigure.
    version: u64,
    value: Option<Arc<Value>>,
}

/// `reason` cut to [`MAX_RECONFIGURE_ERROR_BYTES`].
pub(crate) fn bounded_reason(mut reason: String) -> String {
    if reason.len() > MAX_RECONFIGURE_ERROR_BYTES {
        let mut end = MAX_RECONFIGURE_ERROR_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

impl Inner {
    /// The config a new process of `config` runs: with the latest reconfigured user config, and
    /// that config's version (0: none yet).
    pub(super) fn with_latest_user_config(&self, config: &Arc<MasterConfig>) -> (u64, Arc<MasterConfig>) {
        let latest = lock(&self.user_config);
        match &latest.value {
            Some(value) if **value != config.user_config => {
                let mut next = (**config).clone();
                next.user_config = (**value).clone();
                (latest.version, Arc::new(next))
            }
            _ => (latest.version, config.clone()),
        }
    }

    /// Called with the slot table locked, for a process just put in its slot: if a reconfigure
    /// came after it was spawned, it is told now.
    pub(super) fn catch_up_user_config(&self, handle: &WorkerHandle) {
        let latest = lock(&self.user_config);
        if let Some(value) = &latest.value {
            if latest.version > handle.user_config_version() {
                handle.reconfigure(latest.version, value.clone());
            }
        }
    }

    /// A reload installs a new config: its `user_config` is the latest from now on.
    pub(super) fn end_user_config_override(&self) {
        lock(&self.user_config).value = None;
    }
}

/// The answers gathered so far, by worker.
#[derive(Default)]
struct Answers {
    by_worker: HashMap<WorkerId, ReconfigureOutcome>,
}

impl Master {
    /// Pushes `config` (a new user config, any JSON) to every worker of the group without
    /// restarting them, and waits up to `timeout` (at most [`MAX_RECONFIGURE_TIMEOUT`]) for each
    /// one's answer. Workers spawned from now on (restarts, rescales, recycling) get `config` in
    /// their welcome, and [`Master::config`]'s `user_config` is `config`.
    ///
    /// Returns one [`ReconfigureAck`] per worker in the group at the call (those that had exited
    /// already say [`ReconfigureOutcome::Gone`]), by id. A config too large for one frame is an
    /// error before anything changes.
    ///
    /// ```no_run
    /// # async fn f(master: drover::Master) -> Result<(), drover::Error> {
    /// use drover::master::reconfigure::ReconfigureOutcome;
    /// let acks = master
    ///     .reconfigure(serde_json::json!({ "feature": true }), std::time::Duration::from_secs(5))
    ///     .await?;
    /// for ack in acks {
    ///     if ack.outcome != ReconfigureOutcome::Applied {
    ///         eprintln!("worker {} ({}): {}", ack.id, ack.name, ack.outcome.code());
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn reconfigure(&self, config: Value, timeout: Duration) -> Result<Vec<ReconfigureAck>, Error> {
        let timeout = timeout.min(MAX_RECONFIGURE_TIMEOUT);
        let inner = &self.inner;
        let config = Arc::new(config);
        // Checked once here: each actor then writes it without a limit.
        encode_frame(
            &MasterFrame::Reconfigure {
                version: u64::MAX,
                config: (*config).clone(),
            },
            inner.config().max_frame_bytes,
        )
        .map_err(|e| Error::Reconfigure(ReconfigureError::Encode(e)))?;

        let answers = Arc::new(Mutex::new(Answers::default()));
        let woken = Arc::new(tokio::sync::Notify::new());
        let (version, told) = {
            let slots = lock(&inner.slots);
            let version = {
                let mut latest = lock(&inner.user_config);
                latest.version += 1;
                latest.value = Some(config.clone());
                latest.version
            };
            let told: Vec<WorkerHandle> = slots.values().map(|s| s.handle.clone()).collect();
            (version, told)
        };
        inner.update_config(|c| c.user_config = (*config).clone());
        // Subscribed before any actor can write the frame: no answer comes before it.
        let _subscription = {
            let answers = answers.clone();
            let woken = woken.clone();
            self.on_event(move |event| {
                let answer = match event {
                    Event::Reconfigured {
                        id, version: v, error, ..
                    } if *v >= version => Some((
                        *id,
                        error
                            .clone()
                            .map_or(ReconfigureOutcome::Applied, ReconfigureOutcome::Refused),
                    )),
                    Event::Exit(exit) => Some((exit.id, ReconfigureOutcome::Gone)),
                    _ => None,
                };
                if let Some((id, outcome)) = answer {
                    // The first answer stands (a restart's exit after an applied config is not news).
                    lock(&answers).by_worker.entry(id).or_insert(outcome);
                    woken.notify_one();
                }
            })
        };
        for handle in &told {
            handle.reconfigure(version, config.clone());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let all_answered = {
                let answers = lock(&answers);
                told.iter()
                    .all(|h| answers.by_worker.contains_key(&h.id()) || !h.info().is_alive())
            };
            if all_answered {
                break;
            }
            if tokio::time::timeout_at(deadline, woken.notified()).await.is_err() {
                break;
            }
        }
        let answers = lock(&answers);
        Ok(told
            .iter()
            .map(|h| {
                let info = h.info();
                let outcome = answers.by_worker.get(&h.id()).cloned().unwrap_or(if info.is_alive() {
                    ReconfigureOutcome::Timeout
                } else {
                    ReconfigureOutcome::Gone
                });
                ReconfigureAck {
                    id: info.id,
                    name: info.name,
                    instance: info.instance,
                    pid: info.pid,
                    outcome,
                }
            })
            .collect())
    }
}
