//! Supervision policies as data, with the small pure functions that apply them.
//!
//! Nothing here touches a process: the master asks these "should I restart?", "how long do I wait?",
//! "have I restarted too often?", and acts on the answer.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::ConfigError;
use crate::exit::WorkerExit;

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
}
