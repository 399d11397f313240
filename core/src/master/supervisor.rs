//! The supervisor task of a master: applies the restart policy to exits, replaces hung workers,
//! and recycles workers that are too old or too big.
//!
//! It listens to the master's own event stream and holds only a weak reference to the master, so
//! dropping the last [`Master`] handle still ends everything.
//!
//! - **Revive.** An exit the master did not ask for is restarted when the policy says so (a hung
//!   worker always is). Each worker has its own backoff task, so workers that die together are
//!   restarted independently; the backoff resets after a worker stayed up `reset_after`. Every
//!   restart, including one whose spawn failed, is recorded against the intensity budget (R in T,
//!   as in OTP); past it, the master emits [`Event::GaveUp`], turns FAILED and stops restarting.
//! - **Recycle.** One worker at a time, make-before-break: a successor is started, and only when it
//!   is STARTED is the old worker stopped, so capacity never drops (cluster2's death queue).

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, Instant, SystemTime};
use tokio::time::sleep_until;

use super::events::{Event, Events, WorkerFailure};
use super::{lock, spawn, Inner, Master};
use crate::exit::WorkerExit;
use crate::status::{MasterStatus, WorkerStatus};
use crate::WorkerId;

pub(super) fn spawn_supervisor(inner: Weak<Inner>, events: Events) {
    tokio::spawn(supervise(inner, events));
}

fn upgrade(weak: &Weak<Inner>) -> Option<Master> {
    weak.upgrade().map(|inner| Master { inner })
}

async fn supervise(weak: Weak<Inner>, mut events: Events) {
    let mut next_recycle_check: Option<Instant> = None;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                let Some(master) = upgrade(&weak) else { return };
                match event {
                    Event::Exit(exit) => on_exit(&master, &weak, exit),
                    Event::Status { .. } | Event::MasterStatus { .. } => {
                        next_recycle_check = next_check(&master);
                    }
                    _ => {}
                }
            }
            _ = sleep_until(next_recycle_check.unwrap_or_else(Instant::now).into()), if next_recycle_check.is_some() => {
                let Some(master) = upgrade(&weak) else { return };
                recycle_one(&master).await;
                next_recycle_check = next_check(&master);
            }
        }
    }
}

fn on_exit(master: &Master, weak: &Weak<Inner>, exit: WorkerExit) {
    if master.status() != MasterStatus::Started {
        return;
    }
    let config = master.config();
    let mut slots = lock(&master.inner.slots);
    let Some(slot) = slots.get_mut(&exit.id) else { return };
    let info = slot.handle.info();
    if info.pid != exit.pid || slot.reviving {
        return;
    }
    let hung = matches!(info.failure, Some(WorkerFailure::Hung { .. }));
    if !(hung || config.restart.should_restart(&exit)) {
        return;
    }
    let uptime = info
        .started_at
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    slot.attempt = config.backoff.streak_after(slot.attempt, uptime);
    slot.reviving = true;
    tokio::spawn(revive(weak.clone(), exit.id, exit.pid));
}

/// Restarts worker `id` with backoff until it is STARTED, the budget runs out, or the master
/// stops being STARTED.
///
/// `dead` is the pid of the process being replaced: if the slot holds another process by the time
/// the restart is due (the user restarted it, or a reload replaced it), this restart is moot.
async fn revive(weak: Weak<Inner>, id: WorkerId, mut dead: u32) {
    loop {
        let Some(master) = upgrade(&weak) else { return };
        let config = master.config();
        let Some((attempt, restarts, generation)) = lock(&master.inner.slots)
            .get(&id)
            .map(|s| (s.attempt, s.restarts + 1, s.generation))
        else {
            return;
        };
        if master.status() != MasterStatus::Started {
            master.end_revive(id);
            return;
        }
        let within_budget = lock(&master.inner.restart_log).record(config.intensity, Instant::now());
        if !within_budget {
            // Only from STARTED: a shutdown or reload that began meanwhile keeps its status, and
            // of several workers giving up at once, one reports it.
            if master.set_status_if(MasterStatus::Started, MasterStatus::Failed) {
                tracing::warn!(name = %config.name, "restart intensity exceeded; giving up");
                master.inner.events.emit(Event::GaveUp {
                    restarts: config.intensity.max_restarts,
                    window: config.intensity.window,
                });
            }
            master.end_revive(id);
            return;
        }
        let delay = config.backoff.delay(attempt);
        master.inner.events.emit(Event::Restarting { id, delay, restarts });
        drop(master);
        tokio::time::sleep(delay).await;

        let Some(master) = upgrade(&weak) else { return };
        let spawned = {
            // Only the spawn happens under the operation lock: restarts of different workers
            // proceed side by side, and no reload, rescale or shutdown sees a half-made slot.
            let _op = master.inner.op.lock().await;
            let still_dead = lock(&master.inner.slots)
                .get(&id)
                .map(|s| s.handle.info())
                .is_some_and(|info| info.pid == dead && !info.is_alive());
            if master.status() != MasterStatus::Started || !still_dead {
                master.end_revive(id);
                return;
            }
            master.spawn_into_slot(&config, id, restarts, generation).await
        };
        let started = match spawned {
            Ok(handle) => {
                dead = handle.info().pid;
                let info = handle.wait_settled().await;
                if info.status == WorkerStatus::Started && info.is_alive() {
                    true
                } else {
                    handle.wait_exit().await;
                    false
                }
            }
            Err(_) => false,
        };
        let mut slots = lock(&master.inner.slots);
        let Some(slot) = slots.get_mut(&id) else { return };
        // The streak grows with every restart, good or not; a run of `reset_after` resets it.
        slot.attempt = slot.attempt.saturating_add(1);
        if started {
            slot.reviving = false;
            return;
        }
    }
}

impl Master {
    fn end_revive(&self, id: WorkerId) {
        if let Some(slot) = lock(&self.inner.slots).get_mut(&id) {
            slot.reviving = false;
        }
    }
}

/// When the next recycling check is due, if recycling is configured.
fn next_check(master: &Master) -> Option<Instant> {
    let config = master.config();
    let recycle = config.recycle;
    if recycle.max_age.is_none() && recycle.max_rss_bytes.is_none() {
        return None;
    }
    let now = Instant::now();
    let mut next = recycle.max_rss_bytes.map(|_| now + recycle.check_interval);
    if let Some(max_age) = recycle.max_age {
        let wall = SystemTime::now();
        for w in master.workers() {
            if let (WorkerStatus::Started, Some(started)) = (w.status, w.started_at) {
                let age = wall.duration_since(started).unwrap_or_default();
                let due = now + max_age.saturating_sub(age);
                next = Some(next.map_or(due, |n: Instant| n.min(due)));
            }
        }
    }
    next.map(|n| n.max(now + Duration::from_millis(10)))
}

/// Replaces at most one worker that is past its age or memory limit.
async fn recycle_one(master: &Master) {
    if master.status() != MasterStatus::Started {
        return;
    }
    let config = master.config();
    let wall = SystemTime::now();
    let mut candidates = master.workers();
    candidates.retain(|w| w.status == WorkerStatus::Started && w.is_alive());
    candidates.sort_by_key(|w| w.started_at);
    let victim = candidates.into_iter().find_map(|w| {
        let age = w
            .started_at
            .and_then(|t| wall.duration_since(t).ok())
            .unwrap_or_default();
        if let Some(max_age) = config.recycle.max_age.filter(|max| age >= *max) {
            return Some((w, format!("age {age:?} reached the limit {max_age:?}")));
        }
        let rss = spawn::rss_bytes(w.pid)?;
        let max = config.recycle.max_rss_bytes.filter(|max| rss > *max)?;
        Some((w, format!("resident memory {rss} bytes exceeds the limit {max} bytes")))
    });
    let Some((victim, reason)) = victim else { return };
    master.inner.events.emit(Event::Recycling { id: victim.id, reason });
    let _op = master.inner.op.lock().await;
    if master.status() != MasterStatus::Started {
        return;
    }
    let successor = master.new_ids(1);
    let generation = master.inner.generation.load(Ordering::Relaxed);
    match master.start_many(&config, &successor, generation).await {
        Ok(_) => master.retire(&[victim.id], false).await,
        Err(err) => {
            tracing::warn!(error = %err, id = victim.id, "recycling: the successor did not start; keeping the worker");
            master.retire(&successor, false).await;
        }
    }
}

impl Inner {
    pub(super) fn restart_log_reset(&self) {
        *lock(&self.restart_log) = Default::default();
    }
}
