//! The master's loop: one task per master that owns supervision (as gunicorn's arbiter, OTP's
//! supervisor).
//!
//! It is one `select!` over five things, each arm a named method:
//!
//! - **Commands** from the [`Master`](super::Master) handles: the lifecycle operations, queued and
//!   run one at a time, each answered on its own completion channel. A shutdown goes first: it
//!   cancels the running operation (the future is dropped; its caller gets
//!   [`Error::Cancelled`]) and then ends every worker. When the last handle is gone the channel
//!   closes, and the loop kills every worker and ends: no orphan.
//! - **Worker exits**, from the event hub's emission point on the loop's own lossless channel
//!   ([`EventHub::exits`](super::events::EventHub::exits)): the public event stream is output
//!   only. Each exit is decided by [`policy::decide_exit`] over what the table says about it.
//! - **The running operation**, polled here, so that exits, restarts and timers are handled
//!   while it waits on its workers: a recycle or a reload never holds up the restart of a
//!   crashed worker.
//! - **Restarts**: each waits out its backoff ([`policy::next_restart`], against the restart
//!   intensity), then is spawned and awaited until STARTED beside the other arms.
//! - **The recycling tick** ([`policy::next_recycle_check`], [`policy::recycle_victim`]): a worker
//!   past its age or memory limit is replaced by a recycling operation, queued like any other.
//!
//! The loop alone holds the supervision state: each worker's restart streak and where its
//! restart is (waiting, spawning, or left until the running reload ends), and the restart log.
//! The slot table it shares with the handles holds processes, not policy.

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;

use super::events::{Event, WorkerFailure};
use super::{lock, spawn, Inner};
use crate::config::MasterConfig;
use crate::error::Error;
use crate::exit::WorkerExit;
use crate::policy::{self, ExitDecision, ExitFacts, RecycleCandidate, RestartLog, RestartStep};
use crate::status::{MasterStatus, WorkerStatus};
use crate::WorkerId;

/// A lifecycle operation, as the handles ask for it.
pub(super) enum Op {
    /// `from`: the statuses it may start from.
    Start {
        from: &'static [MasterStatus],
    },
    RestartWorker {
        id: WorkerId,
    },
    Rescale {
        count: usize,
    },
    /// With a validated config, if a new one.
    Reload {
        config: Option<Box<MasterConfig>>,
    },
    Shutdown {
        hard: bool,
    },
    /// Replace `victim` (the loop's own: recycling).
    Recycle {
        victim: WorkerId,
    },
}

impl Op {
    /// The operation's name, as errors say it.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Op::Start { .. } => "start",
            Op::RestartWorker { .. } => "restart_worker",
            Op::Rescale { .. } => "rescale",
            Op::Reload { .. } => "graceful_reload",
            Op::Shutdown { .. } => "shutdown",
            Op::Recycle { .. } => "recycle",
        }
    }
}

/// An operation and where its outcome goes.
pub(super) struct Command {
    pub op: Op,
    pub done: oneshot::Sender<Result<(), Error>>,
}

/// An operation waiting its turn; `done` is `None` for the loop's own (recycling).
struct Queued {
    op: Op,
    done: Option<oneshot::Sender<Result<(), Error>>>,
}

/// The operation the loop is running.
struct Running {
    name: &'static str,
    kind: Kind,
    future: BoxFuture<'static, Result<(), Error>>,
    done: Option<oneshot::Sender<Result<(), Error>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reload,
    Shutdown,
    Other,
}

/// Where a worker's automatic restart is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Restart {
    /// None under way.
    #[default]
    Idle,
    /// Waiting out its backoff; `dead` is the process it replaces.
    Due { at: Instant, dead: u32 },
    /// Spawned, waiting for STARTED.
    Spawning,
    /// Left until the running operation ends (an old worker that crashed during a reload).
    Deferred { dead: u32 },
}

/// The loop's supervision state for one worker.
#[derive(Debug, Default)]
struct Supervised {
    /// Consecutive restarts, for the backoff (reset by a run of `reset_after`).
    streak: u32,
    restart: Restart,
}

/// How an automatic restart ended.
enum Restarted {
    /// The new process reported STARTED.
    Started,
    /// It did not (or could not be spawned): `dead` is now the process to replace.
    Failed { dead: u32 },
    /// The slot moved on meanwhile (an operation replaced or removed it); the process made was ended.
    Moot,
}

struct Arbiter {
    inner: Arc<Inner>,
    commands: mpsc::UnboundedReceiver<Command>,
    exits: mpsc::UnboundedReceiver<WorkerExit>,
    queue: VecDeque<Queued>,
    running: Option<Running>,
    workers: BTreeMap<WorkerId, Supervised>,
    restart_log: RestartLog,
    restarting: FuturesUnordered<BoxFuture<'static, (WorkerId, Restarted)>>,
    next_recycle: Option<Instant>,
    /// [`Event::NoWorkerLeft`] was emitted and no worker has run since.
    emptied: bool,
}

/// Starts the loop of the master whose shared state is `inner`.
pub(super) fn spawn(inner: Arc<Inner>, commands: mpsc::UnboundedReceiver<Command>) {
    let exits = inner.events.exits();
    let arbiter = Arbiter {
        inner,
        commands,
        exits,
        queue: VecDeque::new(),
        running: None,
        workers: BTreeMap::new(),
        restart_log: RestartLog::default(),
        restarting: FuturesUnordered::new(),
        next_recycle: None,
        emptied: false,
    };
    tokio::spawn(arbiter.run());
}

/// The running operation's outcome, once it has one (never, if none runs).
async fn outcome(running: &mut Option<Running>) -> Result<(), Error> {
    match running {
        Some(running) => running.future.as_mut().await,
        None => std::future::pending().await,
    }
}

impl Arbiter {
    async fn run(mut self) {
        loop {
            let backoff_over = self.next_backoff_end();
            let recycle_tick = self.next_recycle;
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    // Every handle is gone.
                    None => break,
                },
                Some(exit) = self.exits.recv() => {
                    self.on_exit(exit);
                    self.check_emptied();
                }
                result = outcome(&mut self.running) => {
                    self.on_operation_done(result);
                    self.check_emptied();
                }
                Some((id, restarted)) = self.restarting.next() => {
                    self.on_restarted(id, restarted);
                    self.check_emptied();
                }
                _ = sleep_until(backoff_over.unwrap_or_else(Instant::now).into()), if backoff_over.is_some() => {
                    self.on_backoff_over()
                }
                _ = sleep_until(recycle_tick.unwrap_or_else(Instant::now).into()), if recycle_tick.is_some() => {
                    self.on_recycle_tick()
                }
            }
        }
        // Nobody can shut the master down any more: no worker outlives it.
        self.inner.kill_all();
    }

    fn on_command(&mut self, Command { op, done }: Command) {
        if let Op::Shutdown { hard } = op {
            if hard {
                // Now, not after the running operation: it may be waiting on these workers.
                self.inner.kill_all();
            }
            if self.running.as_ref().is_some_and(|r| r.kind != Kind::Shutdown) {
                if let Some(cancelled) = self.running.take() {
                    if let Some(done) = cancelled.done {
                        let _ = done.send(Err(Error::Cancelled {
                            operation: cancelled.name,
                        }));
                    }
                }
            }
            // Restarts waiting out a backoff are moot once the master stops.
            for w in self.workers.values_mut() {
                if matches!(w.restart, Restart::Due { .. } | Restart::Deferred { .. }) {
                    w.restart = Restart::Idle;
                }
            }
            self.queue.push_front(Queued { op, done: Some(done) });
        } else {
            self.queue.push_back(Queued { op, done: Some(done) });
        }
        self.run_next();
    }

    /// Starts the next queued operation if none runs.
    fn run_next(&mut self) {
        if self.running.is_some() {
            return;
        }
        let Some(Queued { op, done }) = self.queue.pop_front() else {
            return;
        };
        let name = op.name();
        let inner = self.inner.clone();
        let (kind, future): (Kind, BoxFuture<'static, Result<(), Error>>) = match op {
            Op::Start { from } => (Kind::Other, Box::pin(async move { inner.start(from).await })),
            Op::RestartWorker { id } => (Kind::Other, Box::pin(async move { inner.restart_worker(id).await })),
            Op::Rescale { count } => (Kind::Other, Box::pin(async move { inner.rescale(count).await })),
            Op::Reload { config } => (
                Kind::Reload,
                Box::pin(async move { inner.reload(config.map(|c| *c)).await }),
            ),
            Op::Shutdown { hard } => (Kind::Shutdown, Box::pin(async move { inner.shutdown(hard).await })),
            Op::Recycle { victim } => (Kind::Other, Box::pin(async move { inner.recycle(victim).await })),
        };
        self.running = Some(Running {
            name,
            kind,
            future,
            done,
        });
    }

    fn on_operation_done(&mut self, result: Result<(), Error>) {
        let Some(finished) = self.running.take() else { return };
        if finished.kind == Kind::Reload && result.is_ok() {
            // A new release starts with the whole restart budget.
            self.restart_log = RestartLog::default();
        }
        if let Some(done) = finished.done {
            let _ = done.send(result);
        }
        // The workers the operation removed are no longer supervised.
        let slots = lock(&self.inner.slots);
        self.workers.retain(|id, _| slots.contains_key(id));
        drop(slots);
        self.decide_deferred();
        self.schedule_recycle();
        self.run_next();
    }

    /// A worker process ended: restart it, leave it, or decide once the running reload ends.
    fn on_exit(&mut self, exit: WorkerExit) {
        let being_replaced_below = self
            .running
            .as_ref()
            .filter(|r| r.kind == Kind::Reload)
            .map(|_| self.inner.generation.load(Ordering::Relaxed));
        let (facts, slot_config, uptime) = {
            let slots = lock(&self.inner.slots);
            let Some(slot) = slots.get(&exit.id) else {
                self.workers.remove(&exit.id);
                return;
            };
            let info = slot.handle.info();
            let facts = ExitFacts {
                master: self.inner.status(),
                current: info.pid == exit.pid,
                retiring: slot.retiring,
                // A restart waiting to replace another process (one an operation has replaced
                // since) is moot: this exit is decided afresh.
                reviving: self.workers.get(&exit.id).is_some_and(|w| match w.restart {
                    Restart::Due { dead, .. } => dead == exit.pid,
                    Restart::Spawning => true,
                    Restart::Idle | Restart::Deferred { .. } => false,
                }),
                started: info.started_at.is_some(),
                hung: matches!(info.failure, Some(WorkerFailure::Hung { .. })),
                being_replaced: being_replaced_below.is_some_and(|new| slot.generation < new),
            };
            let uptime = info
                .started_at
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            (facts, slot.config.clone(), uptime)
        };
        let decision = policy::decide_exit(slot_config.restart, &exit, &facts);
        tracing::debug!(id = exit.id, pid = exit.pid, ?decision, "exit");
        if decision == ExitDecision::Leave {
            return;
        }
        let worker = self.workers.entry(exit.id).or_default();
        worker.streak = slot_config.backoff.streak_after(worker.streak, uptime);
        match decision {
            ExitDecision::Restart => self.schedule_restart(exit.id, exit.pid),
            ExitDecision::AfterOperation => worker.restart = Restart::Deferred { dead: exit.pid },
            ExitDecision::Leave => {}
        }
    }

    /// Tells, once, when a STARTED group has no process left and none coming: every worker
    /// exited, the policy restarts none, and no operation is under way that would start one.
    fn check_emptied(&mut self) {
        let alive = lock(&self.inner.slots).values().any(|s| s.handle.info().is_alive());
        if alive {
            self.emptied = false;
            return;
        }
        let quiet = self.running.is_none()
            && self.queue.is_empty()
            && self.workers.values().all(|w| w.restart == Restart::Idle)
            && self.inner.status() == MasterStatus::Started;
        if quiet && !self.emptied {
            self.emptied = true;
            tracing::warn!(name = %self.inner.config().name, "no worker left");
            self.inner.events.emit(Event::NoWorkerLeft);
        }
    }

    /// Restarts due once the running operation ended: those whose slot it kept (a rollback).
    fn decide_deferred(&mut self) {
        let deferred: Vec<(WorkerId, u32)> = self
            .workers
            .iter()
            .filter_map(|(&id, w)| match w.restart {
                Restart::Deferred { dead } => Some((id, dead)),
                _ => None,
            })
            .collect();
        for (id, dead) in deferred {
            self.set_restart(id, Restart::Idle);
            if self.still_dead(id, dead).is_some() {
                self.schedule_restart(id, dead);
            }
        }
    }

    /// Records a restart of worker `id` (replacing process `dead`) against the intensity and
    /// sets its backoff timer, or gives up.
    fn schedule_restart(&mut self, id: WorkerId, dead: u32) {
        let config = self.inner.config();
        let Some((backoff, restarts)) = lock(&self.inner.slots)
            .get(&id)
            .map(|s| (s.config.backoff, s.restarts + 1))
        else {
            return;
        };
        let worker = self.workers.entry(id).or_default();
        let now = Instant::now();
        match policy::next_restart(&backoff, config.intensity, &mut self.restart_log, worker.streak, now) {
            RestartStep::After(delay) => {
                worker.restart = Restart::Due { at: now + delay, dead };
                self.inner.events.emit(Event::Restarting { id, delay, restarts });
            }
            RestartStep::GiveUp => {
                worker.restart = Restart::Idle;
                // Only from STARTED: a shutdown or reload that began meanwhile keeps its status,
                // and of several workers giving up at once, one reports it.
                if self.inner.set_status_if(MasterStatus::Started, MasterStatus::Failed) {
                    tracing::warn!(name = %config.name, "restart intensity exceeded; giving up");
                    self.inner.events.emit(Event::GaveUp {
                        restarts: config.intensity.max_restarts,
                        window: config.intensity.window,
                    });
                }
            }
        }
    }

    fn next_backoff_end(&self) -> Option<Instant> {
        self.workers
            .values()
            .filter_map(|w| match w.restart {
                Restart::Due { at, .. } => Some(at),
                _ => None,
            })
            .min()
    }

    /// Spawns every restart whose backoff is over, unless it became moot meanwhile (the master
    /// stopped supervising, or the slot holds another process or is gone or retiring).
    fn on_backoff_over(&mut self) {
        let now = Instant::now();
        let due: Vec<(WorkerId, u32)> = self
            .workers
            .iter()
            .filter_map(|(&id, w)| match w.restart {
                Restart::Due { at, dead } if at <= now => Some((id, dead)),
                _ => None,
            })
            .collect();
        for (id, dead) in due {
            let Some((config, restarts, generation)) = self.still_dead(id, dead) else {
                self.set_restart(id, Restart::Idle);
                continue;
            };
            self.set_restart(id, Restart::Spawning);
            let inner = self.inner.clone();
            self.restarting.push(Box::pin(async move {
                let restarted = restart(&inner, &config, id, dead, restarts, generation).await;
                (id, restarted)
            }));
        }
    }

    fn on_restarted(&mut self, id: WorkerId, restarted: Restarted) {
        let worker = self.workers.entry(id).or_default();
        worker.restart = Restart::Idle;
        match restarted {
            Restarted::Started | Restarted::Moot => {
                if matches!(restarted, Restarted::Started) {
                    // The streak grows with every restart, good or not; a run of `reset_after`
                    // resets it.
                    worker.streak = worker.streak.saturating_add(1);
                }
                // The slot's process may have ended while this restart was under way: that exit
                // was left to the restart, so it is decided now (deciding an exit twice does
                // nothing more: the second finds the restart it scheduled).
                let exit = lock(&self.inner.slots)
                    .get(&id)
                    .map(|s| s.handle.info())
                    .filter(|info| !info.is_alive())
                    .and_then(|info| info.exit);
                if let Some(exit) = exit {
                    self.on_exit(exit);
                }
            }
            Restarted::Failed { dead } => {
                worker.streak = worker.streak.saturating_add(1);
                if self.still_dead(id, dead).is_some() {
                    self.schedule_restart(id, dead);
                }
            }
        }
        self.schedule_recycle();
    }

    /// What a restart of worker `id` needs (its config, restart count and generation), if the
    /// master still supervises and the slot still holds the dead process `dead`.
    fn still_dead(&self, id: WorkerId, dead: u32) -> Option<(Arc<MasterConfig>, u32, u64)> {
        if !policy::supervises(self.inner.status()) {
            return None;
        }
        let slots = lock(&self.inner.slots);
        let slot = slots.get(&id)?;
        let info = slot.handle.info();
        (info.pid == dead && !info.is_alive() && !slot.retiring)
            .then(|| (slot.config.clone(), slot.restarts + 1, slot.generation))
    }

    fn set_restart(&mut self, id: WorkerId, restart: Restart) {
        self.workers.entry(id).or_default().restart = restart;
    }

    /// Sets the recycling tick from the STARTED workers' ages (recycling off: no tick).
    fn schedule_recycle(&mut self) {
        let recycle = self.inner.config().recycle;
        let predicate = lock(&self.inner.recycle_predicate).is_some();
        if recycle.max_age.is_none() && recycle.max_rss_bytes.is_none() && !predicate {
            self.next_recycle = None;
            return;
        }
        let ages: Vec<Duration> = self.candidates(false).iter().map(|c| c.age).collect();
        let mut next = policy::next_recycle_check(&recycle, &ages);
        if predicate {
            // The user's predicate is asked at every memory check interval.
            next = Some(next.map_or(recycle.check_interval, |n| n.min(recycle.check_interval)));
        }
        self.next_recycle = next.map(|wait| Instant::now() + wait);
    }

    /// The STARTED, live workers that no operation is retiring, with their ages (and, if `rss`,
    /// their resident memory).
    fn candidates(&self, rss: bool) -> Vec<RecycleCandidate> {
        let wall = SystemTime::now();
        lock(&self.inner.slots)
            .iter()
            .filter(|(_, slot)| !slot.retiring)
            .filter_map(|(&id, slot)| {
                let info = slot.handle.info();
                let started = info
                    .started_at
                    .filter(|_| info.status == WorkerStatus::Started && info.is_alive())?;
                Some(RecycleCandidate {
                    id,
                    age: wall.duration_since(started).unwrap_or_default(),
                    rss_bytes: if rss { spawn::rss_bytes(info.pid) } else { None },
                })
            })
            .collect()
    }

    /// The oldest candidate the user's predicate ([`crate::Master::recycle_when`]) wants replaced.
    fn predicate_victim(&self, candidates: &[RecycleCandidate]) -> Option<(WorkerId, String)> {
        let predicate = lock(&self.inner.recycle_predicate).clone()?;
        let mut by_age: Vec<&RecycleCandidate> = candidates.iter().collect();
        by_age.sort_by_key(|c| std::cmp::Reverse(c.age));
        by_age.into_iter().find_map(|c| {
            let info = lock(&self.inner.slots).get(&c.id).map(|s| s.handle.info())?;
            // The user's code: a panic in it is the user's bug, but must not end the loop.
            let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| predicate(&info)));
            match verdict {
                Ok(reason) => reason.map(|r| (c.id, format!("the recycle predicate: {r}"))),
                Err(_) => {
                    tracing::error!(id = c.id, "the recycle predicate panicked; the worker is kept");
                    None
                }
            }
        })
    }

    /// Queues the recycling of one worker past its limit, if the master serves and nothing else
    /// runs (after an operation, the tick is set again).
    fn on_recycle_tick(&mut self) {
        self.next_recycle = None;
        if self.running.is_some() || !self.queue.is_empty() {
            return;
        }
        if self.inner.status() != MasterStatus::Started {
            return;
        }
        let recycle = self.inner.config().recycle;
        let candidates = self.candidates(recycle.max_rss_bytes.is_some());
        let victim = policy::recycle_victim(&recycle, &candidates).or_else(|| self.predicate_victim(&candidates));
        match victim {
            Some((victim, reason)) => {
                self.inner.events.emit(Event::Recycling { id: victim, reason });
                self.queue.push_back(Queued {
                    op: Op::Recycle { victim },
                    done: None,
                });
                self.run_next();
            }
            None => self.schedule_recycle(),
        }
    }
}

/// One automatic restart of worker `id`: spawns a process in place of `dead` and waits until it
/// is STARTED (or is not: then until it is reaped).
async fn restart(
    inner: &Inner,
    config: &Arc<MasterConfig>,
    id: WorkerId,
    dead: u32,
    restarts: u32,
    generation: u64,
) -> Restarted {
    // The replacement fills the dead process's place.
    let Some(instance) = inner.instance_of(id) else {
        return Restarted::Moot;
    };
    let Ok(handle) = inner.spawn(config, id, instance, restarts, generation).await else {
        return Restarted::Failed { dead };
    };
    if !inner.install(id, &handle, Some(dead), restarts, generation, config) {
        handle.kill();
        handle.wait_exit().await;
        return Restarted::Moot;
    }
    let info = handle.wait_settled().await;
    if info.status == WorkerStatus::Started && info.is_alive() {
        return Restarted::Started;
    }
    handle.wait_exit().await;
    Restarted::Failed { dead: info.pid }
}
