//! Whether the group is in rotation (ECV, see [`crate::ecv`]): the manual mark, the monitor's
//! verdict, and the monitor's probing task. Neither touches a worker: out of rotation, the
//! workers run and serve on; only what the group tells a load balancer changes.

use std::sync::{Arc, Weak};

use super::events::Event;
use super::{lock, Inner, Master};
use crate::ecv::{EcvMonitor, Rotation};
use crate::status::MasterStatus;

impl Master {
    /// Takes the group out of rotation by hand (cluster2's ECV "mark down"): its health answers
    /// for load balancers say so, while its workers keep running and serving what reaches them.
    /// Emits [`Event::Rotation`] if it was not already marked down by hand. Lasts until
    /// [`Master::mark_up`], whatever the ECV monitor sees.
    ///
    /// ```no_run
    /// # fn run(master: &drover::Master) {
    /// master.mark_down();
    /// assert!(!master.in_rotation());
    /// master.mark_up();
    /// assert!(master.in_rotation()); // unless the ECV monitor has marked it down too
    /// # }
    /// ```
    pub fn mark_down(&self) {
        self.inner.change_rotation(|r| r.manual = true);
    }

    /// Lifts [`Master::mark_down`]: the group is in rotation again unless the ECV monitor judges
    /// it down. Emits [`Event::Rotation`] if that changes anything.
    pub fn mark_up(&self) {
        self.inner.change_rotation(|r| r.manual = false);
    }

    /// Whether the group is in rotation: marked down neither by hand nor by the ECV monitor.
    pub fn in_rotation(&self) -> bool {
        lock(&self.inner.rotation).in_rotation()
    }

    /// Whether the group is in rotation, and if not, each cause.
    pub fn rotation(&self) -> Rotation {
        lock(&self.inner.rotation).clone()
    }

    /// Runs `monitor` for this group until the returned guard is dropped (or the master is):
    /// while the master is STARTED, it probes the monitor's URL every interval, marks the group
    /// down after [`EcvMonitor::failures_before_down`] failed probes in a row (the last failure
    /// is the reason [`Master::rotation`] gives), and up again at the first probe that passes.
    /// The probes do not keep the master alive.
    pub fn monitor_ecv(&self, monitor: EcvMonitor) -> EcvGuard {
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(run_monitor(weak, monitor));
        EcvGuard { task }
    }
}

/// Keeps an ECV monitor running ([`Master::monitor_ecv`]); dropping it stops the monitor and
/// lifts the monitor's mark (the manual one stays).
#[derive(Debug)]
pub struct EcvGuard {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EcvGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    /// Applies `change` and emits [`Event::Rotation`] if the rotation changed.
    fn change_rotation(&self, change: impl FnOnce(&mut Rotation)) {
        let changed = {
            let mut rotation = lock(&self.rotation);
            let before = rotation.clone();
            change(&mut rotation);
            (*rotation != before).then(|| rotation.clone())
        };
        if let Some(rotation) = changed {
            tracing::debug!(name = %self.config().name, ?rotation, "rotation");
            self.events.emit(Event::Rotation(rotation));
        }
    }
}

/// Lifts the monitor's mark when the monitor ends (its guard dropped, the task aborted).
struct LiftOnEnd(Weak<Inner>);

impl Drop for LiftOnEnd {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.change_rotation(|r| r.monitor = None);
        }
    }
}

async fn run_monitor(weak: Weak<Inner>, monitor: EcvMonitor) {
    let _lift = LiftOnEnd(weak.clone());
    let mut failures: u32 = 0;
    let mut ticks = tokio::time::interval(monitor.interval());
    // A slow probe delays the next one; it never makes a burst of them.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match weak.upgrade() {
            Some(inner) if inner.status() == MasterStatus::Started => {}
            Some(_) => {
                // Not serving (starting, stopped...): not judged; counted afresh once started.
                failures = 0;
                continue;
            }
            None => return,
        }
        let verdict = monitor.probe().await;
        let Some(inner) = weak.upgrade() else { return };
        match verdict {
            Ok(()) => {
                failures = 0;
                inner.change_rotation(|r| r.monitor = None);
            }
            Err(failure) => {
                failures = failures.saturating_add(1);
                tracing::debug!(name = %inner.config().name, %failure, failures, "ECV probe failed");
                if failures >= monitor.failures_before_down() {
                    // Without the count: an event only when the cause changes, not at each probe.
                    inner.change_rotation(|r| r.monitor = Some(failure.to_string()));
                }
            }
        }
    }
}
