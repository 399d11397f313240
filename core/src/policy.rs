//! Supervision policies as data, with the small pure functions that apply them.
//!
//! Nothing here touches a process: the master's loop (`master/arbiter.rs`) asks these "should I
//! restart?", "how long do I wait?", "have I restarted too often?", "which worker is due for
//! recycling?", and acts on the answer. Each decision is a function of plain data, tested below.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, Recycle};
use crate::exit::WorkerExit;
use crate::status::MasterStatus;
use crate::WorkerId;

/// Whether a worker that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never: the user decides in their exit handler (drover's behaviour).
    #[default]
    Never,
    /// After a crash: a non-zero exit or a signal the master did not send. Not after `exit(0)`.
    OnFailure,
    /// After any exit the master did not ask for, `exit(0)` included.
    Always,
}

impl RestartPolicy {
    /// Whether `exit` calls for a restart under this policy. An exit the master asked for (stop,
    /// shutdown, rescale, replacement) is never restarted here: whoever asked decides.
    pub fn should_restart(self, exit: &WorkerExit) -> bool {
        if exit.requested {
            return false;
        }
        match self {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => !matches!(exit.reason, crate::ExitReason::NormalExit { .. }),
            RestartPolicy::Always => true,
        }
    }
}

/// Exponential backoff between restarts of the same worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// Each further delay is the previous one times this.
    pub factor: f64,
    /// The largest delay.
    pub max: Duration,
    /// A worker that stayed up this long starts again from `initial`.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before the `attempt`-th consecutive restart (0: the first since a good run).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.factor.powi(attempt.min(64) as i32);
        let secs = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }

    /// The restart streak to continue from after a run that lasted `uptime`: a worker that stayed
    /// up `reset_after` starts again from the first delay.
    pub fn streak_after(&self, previous: u32, uptime: Duration) -> u32 {
        if uptime >= self.reset_after {
            0
        } else {
            previous
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.factor.is_finite() && (1.0..=1000.0).contains(&self.factor)) {
            return Err(ConfigError::Invalid {
                field: "restartBackoffFactor",
                message: format!("must be a number from 1 to 1000, got {}", self.factor),
            });
        }
        if self.max < self.initial {
            return Err(ConfigError::Invalid {
                field: "restartMaxDelay",
                message: format!("{:?} is less than restartDelay {:?}", self.max, self.initial),
            });
        }
        Ok(())
    }
}

/// Restart intensity, as in Erlang/OTP: more than `max_restarts` restarts within `window`, and the
/// master gives up on the group instead of spinning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within the window.
    pub max_restarts: u32,
    /// The sliding window.
    pub window: Duration,
}

impl Default for Intensity {
    fn default() -> Intensity {
        Intensity {
            max_restarts: 10,
            window: Duration::from_secs(60),
        }
    }
}

impl Intensity {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_restarts > crate::config::MAX_RESTARTS_LIMIT {
            return Err(ConfigError::TooLarge {
                field: "maxRestarts",
                value: self.max_restarts.to_string(),
                max: crate::config::MAX_RESTARTS_LIMIT.to_string(),
            });
        }
        Ok(())
    }
}

/// The restarts a master made recently, to check against its [`Intensity`].
#[derive(Debug, Default)]
pub struct RestartLog {
    times: VecDeque<Instant>,
}

impl RestartLog {
    /// Records a restart at `now` and says whether the budget still holds (false: give up).
    pub fn record(&mut self, intensity: Intensity, now: Instant) -> bool {
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) > intensity.window)
        {
            self.times.pop_front();
        }
        self.times.push_back(now);
        self.times.len() <= intensity.max_restarts as usize
    }
}

/// How a graceful reload replaces the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReloadStrategy {
    /// Start the whole new generation, then stop the old one (drover's).
    #[default]
    AllAtOnce,
    /// Start `batch` new workers, stop `batch` old ones once those are STARTED, repeat.
    Rolling {
        /// Workers replaced per step, at least 1.
        batch: usize,
    },
}

impl ReloadStrategy {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match self {
            ReloadStrategy::Rolling { batch: 0 } => Err(ConfigError::Invalid {
                field: "reloadBatch",
                message: "must be at least 1, got 0".into(),
            }),
            ReloadStrategy::Rolling { batch } if *batch > crate::config::MAX_WORKERS => Err(ConfigError::TooLarge {
                field: "reloadBatch",
                value: batch.to_string(),
                max: crate::config::MAX_WORKERS.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// Whether the master restarts workers while it is in `status`: while it starts, serves or
/// reloads. Not while it stops or is stopped, nor once it gave up (FAILED).
pub(crate) fn supervises(status: MasterStatus) -> bool {
    matches!(
        status,
        MasterStatus::Starting | MasterStatus::Started | MasterStatus::Reloading
    )
}

/// What the master knows about a process that ended, when it decides what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitFacts {
    /// The master's status.
    pub master: MasterStatus,
    /// The process is still the one in its worker's slot (not replaced meanwhile, slot not removed).
    pub current: bool,
    /// An operation is ending this worker for good (shutdown, rescale, reload, recycling).
    pub retiring: bool,
    /// A restart of this worker is already waiting for its backoff or under way.
    pub reviving: bool,
    /// The process had reported STARTED. Before that, whoever started it (an operation, a
    /// restart) owns the outcome: a start that fails is its error, not a crash to restart.
    pub started: bool,
    /// The master failed it for missing heartbeats (replaced under every policy).
    pub hung: bool,
    /// A running reload is replacing this worker (it belongs to the old generation).
    pub being_replaced: bool,
}

/// What the master does about a process that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitDecision {
    /// Nothing: not a crash the policy restarts, or someone else decides.
    Leave,
    /// Restart the worker, after its backoff.
    Restart,
    /// Decide when the running operation ends: a reload that is replacing this worker will
    /// remove it, or, if it rolls back, keep it and have it restarted then.
    AfterOperation,
}

/// Decides about a process that ended, under `policy`.
pub(crate) fn decide_exit(policy: RestartPolicy, exit: &WorkerExit, facts: &ExitFacts) -> ExitDecision {
    if !facts.current || facts.retiring || facts.reviving || !facts.started {
        return ExitDecision::Leave;
    }
    if !(facts.hung || policy.should_restart(exit)) || !supervises(facts.master) {
        return ExitDecision::Leave;
    }
    if facts.being_replaced {
        ExitDecision::AfterOperation
    } else {
        ExitDecision::Restart
    }
}

/// The next restart of a worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RestartStep {
    /// Spawn it again after this delay.
    After(Duration),
    /// The intensity is exceeded: stop restarting.
    GiveUp,
}

/// The next restart of a worker whose restart streak is `attempt`, at `now`: recorded against the
/// intensity in `log`, then delayed by the backoff.
pub(crate) fn next_restart(
    backoff: &Backoff,
    intensity: Intensity,
    log: &mut RestartLog,
    attempt: u32,
    now: Instant,
) -> RestartStep {
    if log.record(intensity, now) {
        RestartStep::After(backoff.delay(attempt))
    } else {
        RestartStep::GiveUp
    }
}

/// A STARTED worker, as recycling sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecycleCandidate {
    /// The worker.
    pub id: WorkerId,
    /// How long ago it reported STARTED.
    pub age: Duration,
    /// Its resident memory, if known.
    pub rss_bytes: Option<u64>,
}

/// The worker to recycle now, if any, and why: the oldest one past its age or memory limit (at
/// most one at a time, so that capacity never drops by more than the one being replaced).
pub(crate) fn recycle_victim(recycle: &Recycle, candidates: &[RecycleCandidate]) -> Option<(WorkerId, String)> {
    let mut by_age: Vec<&RecycleCandidate> = candidates.iter().collect();
    by_age.sort_by_key(|c| std::cmp::Reverse(c.age));
    by_age.into_iter().find_map(|c| {
        if let Some(max_age) = recycle.max_age.filter(|max| c.age >= *max) {
            return Some((c.id, format!("age {:?} reached the limit {max_age:?}", c.age)));
        }
        let rss = c.rss_bytes?;
        let max = recycle.max_rss_bytes.filter(|max| rss > *max)?;
        Some((
            c.id,
            format!("resident memory {rss} bytes exceeds the limit {max} bytes"),
        ))
    })
}

/// The shortest wait between two recycling checks (a worker just under its age is checked again
/// a little later, not in a spin).
pub(crate) const RECYCLE_MIN_WAIT: Duration = Duration::from_millis(10);

/// How long until the next recycling check, given the ages of the STARTED workers; `None` if
/// recycling is off (or nothing can come due: no memory limit and no worker to age).
pub(crate) fn next_recycle_check(recycle: &Recycle, ages: &[Duration]) -> Option<Duration> {
    let memory = recycle.max_rss_bytes.map(|_| recycle.check_interval);
    let age = recycle
        .max_age
        .and_then(|max| ages.iter().map(|a| max.saturating_sub(*a)).min());
    let next = match (memory, age) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    next.map(|n| n.max(RECYCLE_MIN_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExitReason, WorkerStatus};

    fn exit(reason: ExitReason, requested: bool) -> WorkerExit {
        WorkerExit {
            id: 1,
            pid: 1,
            reason,
            requested,
            last_status: WorkerStatus::Started,
        }
    }

    #[test]
    fn restart_policy_follows_the_reason() {
        let clean = exit(ExitReason::NormalExit { code: 0 }, false);
        let crash = exit(ExitReason::AbnormalExit { code: 3 }, false);
        let killed = exit(
            ExitReason::ExternalSignal {
                signal: 9,
                core_dumped: false,
            },
            false,
        );
        let asked = exit(
            ExitReason::ExternalSignal {
                signal: 15,
                core_dumped: false,
            },
            true,
        );
        assert!(!RestartPolicy::Never.should_restart(&crash));
        assert!(!RestartPolicy::OnFailure.should_restart(&clean));
        assert!(RestartPolicy::OnFailure.should_restart(&crash));
        assert!(RestartPolicy::OnFailure.should_restart(&killed));
        assert!(RestartPolicy::Always.should_restart(&clean));
        assert!(!RestartPolicy::Always.should_restart(&asked));
    }

    #[test]
    fn backoff_grows_caps_and_resets() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_millis(500),
            reset_after: Duration::from_secs(10),
        };
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(400));
        assert_eq!(b.delay(3), Duration::from_millis(500));
        assert_eq!(b.delay(u32::MAX), Duration::from_millis(500));
        assert_eq!(b.streak_after(3, Duration::from_secs(1)), 3);
        assert_eq!(b.streak_after(3, Duration::from_secs(11)), 0);
    }

    #[test]
    fn intensity_gives_up_past_r_in_t() {
        let i = Intensity {
            max_restarts: 3,
            window: Duration::from_secs(10),
        };
        let mut log = RestartLog::default();
        let t0 = Instant::now();
        assert!(log.record(i, t0));
        assert!(log.record(i, t0 + Duration::from_secs(1)));
        assert!(log.record(i, t0 + Duration::from_secs(2)));
        assert!(!log.record(i, t0 + Duration::from_secs(3)));
        // Old restarts slide out of the window.
        let mut log = RestartLog::default();
        for s in 0..3 {
            assert!(log.record(i, t0 + Duration::from_secs(s)));
        }
        assert!(log.record(i, t0 + Duration::from_secs(20)));
    }

    fn facts() -> ExitFacts {
        ExitFacts {
            master: MasterStatus::Started,
            current: true,
            retiring: false,
            reviving: false,
            started: true,
            hung: false,
            being_replaced: false,
        }
    }

    #[test]
    fn a_crash_of_a_started_worker_is_restarted_while_the_master_starts_serves_or_reloads() {
        let crash = exit(ExitReason::AbnormalExit { code: 3 }, false);
        for master in [MasterStatus::Starting, MasterStatus::Started, MasterStatus::Reloading] {
            let f = ExitFacts { master, ..facts() };
            assert_eq!(
                decide_exit(RestartPolicy::Always, &crash, &f),
                ExitDecision::Restart,
                "{master}"
            );
        }
        for master in [
            MasterStatus::Initialized,
            MasterStatus::Stopping,
            MasterStatus::Stopped,
            MasterStatus::ShutDown,
            MasterStatus::Failed,
        ] {
            let f = ExitFacts { master, ..facts() };
            assert_eq!(
                decide_exit(RestartPolicy::Always, &crash, &f),
                ExitDecision::Leave,
                "{master}"
            );
        }
        assert_eq!(decide_exit(RestartPolicy::Never, &crash, &facts()), ExitDecision::Leave);
    }

    #[test]
    fn an_exit_someone_else_owns_is_left_to_them() {
        let crash = exit(ExitReason::AbnormalExit { code: 3 }, false);
        let cases = [
            ExitFacts {
                current: false,
                ..facts()
            },
            ExitFacts {
                retiring: true,
                ..facts()
            },
            ExitFacts {
                reviving: true,
                ..facts()
            },
            ExitFacts {
                started: false,
                ..facts()
            },
        ];
        for f in cases {
            assert_eq!(
                decide_exit(RestartPolicy::Always, &crash, &f),
                ExitDecision::Leave,
                "{f:?}"
            );
        }
        let asked = exit(ExitReason::NormalExit { code: 0 }, true);
        assert_eq!(
            decide_exit(RestartPolicy::Always, &asked, &facts()),
            ExitDecision::Leave
        );
    }

    #[test]
    fn a_hung_worker_is_replaced_under_every_policy() {
        let killed = exit(
            ExitReason::ExternalSignal {
                signal: 9,
                core_dumped: false,
            },
            true,
        );
        let f = ExitFacts { hung: true, ..facts() };
        assert_eq!(decide_exit(RestartPolicy::Never, &killed, &f), ExitDecision::Restart);
    }

    #[test]
    fn an_old_worker_that_crashes_during_a_reload_waits_for_the_reload_to_end() {
        let crash = exit(ExitReason::AbnormalExit { code: 3 }, false);
        let f = ExitFacts {
            master: MasterStatus::Reloading,
            being_replaced: true,
            ..facts()
        };
        assert_eq!(
            decide_exit(RestartPolicy::Always, &crash, &f),
            ExitDecision::AfterOperation
        );
        // A new worker of the reload is supervised at once.
        let f = ExitFacts {
            master: MasterStatus::Reloading,
            ..facts()
        };
        assert_eq!(decide_exit(RestartPolicy::Always, &crash, &f), ExitDecision::Restart);
    }

    #[test]
    fn restarts_back_off_until_the_intensity_gives_up() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(1),
            reset_after: Duration::from_secs(60),
        };
        let intensity = Intensity {
            max_restarts: 2,
            window: Duration::from_secs(10),
        };
        let mut log = RestartLog::default();
        let t0 = Instant::now();
        assert_eq!(
            next_restart(&backoff, intensity, &mut log, 0, t0),
            RestartStep::After(Duration::from_millis(100))
        );
        assert_eq!(
            next_restart(&backoff, intensity, &mut log, 1, t0),
            RestartStep::After(Duration::from_millis(200))
        );
        assert_eq!(next_restart(&backoff, intensity, &mut log, 2, t0), RestartStep::GiveUp);
    }

    fn recycle(max_age: Option<u64>, max_rss: Option<u64>) -> Recycle {
        Recycle {
            max_age: max_age.map(Duration::from_secs),
            max_rss_bytes: max_rss,
            check_interval: Duration::from_secs(5),
        }
    }

    fn candidate(id: WorkerId, age: u64, rss: Option<u64>) -> RecycleCandidate {
        RecycleCandidate {
            id,
            age: Duration::from_secs(age),
            rss_bytes: rss,
        }
    }

    #[test]
    fn recycling_picks_the_oldest_worker_past_a_limit() {
        let r = recycle(Some(100), Some(1000));
        let none = [candidate(1, 10, Some(10)), candidate(2, 99, None)];
        assert_eq!(recycle_victim(&r, &none), None);
        let aged = [candidate(1, 150, None), candidate(2, 200, None), candidate(3, 5, None)];
        let (id, why) = recycle_victim(&r, &aged).expect("a victim");
        assert_eq!(id, 2);
        assert!(why.contains("age"), "{why}");
        let big = [candidate(1, 10, Some(999)), candidate(2, 5, Some(2000))];
        let (id, why) = recycle_victim(&r, &big).expect("a victim");
        assert_eq!(id, 2);
        assert!(why.contains("resident memory 2000"), "{why}");
        assert_eq!(recycle_victim(&recycle(None, None), &aged), None);
    }

    #[test]
    fn the_next_recycling_check_is_the_first_age_due_or_the_memory_interval() {
        let ages = [Duration::from_secs(90), Duration::from_secs(30)];
        assert_eq!(next_recycle_check(&recycle(None, None), &ages), None);
        assert_eq!(next_recycle_check(&recycle(Some(100), None), &[]), None);
        assert_eq!(
            next_recycle_check(&recycle(Some(100), None), &ages),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            next_recycle_check(&recycle(Some(100), Some(1)), &ages),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            next_recycle_check(&recycle(Some(100), None), &[Duration::from_secs(500)]),
            Some(RECYCLE_MIN_WAIT)
        );
    }
}
