//! Worker and master states, and the transitions a worker may report.
//!
//! The numbers are drover's and are part of the wire protocol (`docs/PROTOCOL.md`, "Statuses").

use serde::{Deserialize, Serialize};
use std::fmt;

/// The status of one worker, as the worker reports it over the MessageBus.
///
/// `SHUTTED_DOWN` keeps drover's spelling: it is what workers written for drover send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
#[repr(u8)]
pub enum WorkerStatus {
    /// Spawned; the worker has not reported anything yet.
    Initialized = 1,
    /// The worker is bootstrapping (optional report).
    Starting = 2,
    /// The worker is ready to serve. Only this counts as "started".
    Started = 3,
    /// The worker was asked to stop and is finishing in-flight work (optional report).
    Stopping = 4,
    /// The worker has stopped taking work and finished what was in flight.
    Stopped = 5,
    /// The worker is releasing its resources (optional report).
    ShuttingDown = 6,
    /// The worker has released everything and is about to exit. The channel is closed after this.
    ShuttedDown = 7,
    /// The worker failed: it said so, broke the protocol, or missed a deadline.
    Failed = 8,
}

impl WorkerStatus {
    /// Every status, in protocol order.
    pub const ALL: [WorkerStatus; 8] = [
        WorkerStatus::Initialized,
        WorkerStatus::Starting,
        WorkerStatus::Started,
        WorkerStatus::Stopping,
        WorkerStatus::Stopped,
        WorkerStatus::ShuttingDown,
        WorkerStatus::ShuttedDown,
        WorkerStatus::Failed,
    ];

    /// The protocol number of this status.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The status with protocol number `code`, if there is one.
    pub fn from_code(code: u8) -> Option<WorkerStatus> {
        WorkerStatus::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// The protocol name, e.g. `"STARTED"`.
    pub fn name(self) -> &'static str {
        match self {
            WorkerStatus::Initialized => "INITIALIZED",
            WorkerStatus::Starting => "STARTING",
            WorkerStatus::Started => "STARTED",
            WorkerStatus::Stopping => "STOPPING",
            WorkerStatus::Stopped => "STOPPED",
            WorkerStatus::ShuttingDown => "SHUTTING_DOWN",
            WorkerStatus::ShuttedDown => "SHUTTED_DOWN",
            WorkerStatus::Failed => "FAILED",
        }
    }

    /// The status named `name` (protocol spelling), if there is one.
    pub fn from_name(name: &str) -> Option<WorkerStatus> {
        WorkerStatus::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a worker in status `self` may report `next`.
    ///
    /// This is the state machine of `docs/PROTOCOL.md`: a worker moves forward only; `FAILED` may be
    /// reported from any live state; repeating the current status is accepted and changes nothing.
    pub fn may_report(self, next: WorkerStatus) -> bool {
        use WorkerStatus::*;
        if self == next {
            return !matches!(self, ShuttedDown | Failed);
        }
        match self {
            Initialized => matches!(next, Starting | Started | Failed),
            Starting => matches!(next, Started | Failed),
            Started => matches!(next, Stopping | Stopped | ShuttingDown | ShuttedDown | Failed),
            Stopping => matches!(next, Stopped | ShuttingDown | ShuttedDown | Failed),
            Stopped => matches!(next, ShuttingDown | ShuttedDown | Failed),
            ShuttingDown => matches!(next, ShuttedDown | Failed),
            ShuttedDown | Failed => false,
        }
    }
}

impl From<WorkerStatus> for u8 {
    fn from(s: WorkerStatus) -> u8 {
        s.code()
    }
}

impl TryFrom<u8> for WorkerStatus {
    type Error = String;
    fn try_from(code: u8) -> Result<Self, String> {
        WorkerStatus::from_code(code).ok_or_else(|| format!("unknown worker status {code} (known: 1..=8)"))
    }
}

impl fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The status of a master as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MasterStatus {
    /// Created; `start()` has not been called.
    Initialized,
    /// `start()` is running.
    Starting,
    /// Every worker reported STARTED; rescale, restart, reload and send are available.
    Started,
    /// A graceful reload is running.
    Reloading,
    /// Workers crashed more often than the restart intensity allows: the master stopped restarting
    /// them. The surviving workers keep running; a reload (of a fixed release) or a shutdown follows.
    Failed,
    /// A shutdown is running.
    Stopping,
    /// `start()` failed and every worker it spawned is reaped; `start()` may be called again.
    Stopped,
    /// Shut down for good: every worker is reaped. Terminal.
    ShutDown,
}

impl MasterStatus {
    /// Every status, in the order of their numbers ([`MasterStatus::code`]).
    pub const ALL: [MasterStatus; 8] = [
        MasterStatus::Initialized,
        MasterStatus::Starting,
        MasterStatus::Started,
        MasterStatus::Reloading,
        MasterStatus::Stopping,
        MasterStatus::Stopped,
        MasterStatus::ShutDown,
        MasterStatus::Failed,
    ];

    /// The status's number in the C ABI (`drover_master_status`): 1 INITIALIZED ... 7 SHUT_DOWN,
    /// 8 FAILED (added last, so numbered last).
    pub fn code(self) -> u8 {
        match self {
            MasterStatus::Initialized => 1,
            MasterStatus::Starting => 2,
            MasterStatus::Started => 3,
            MasterStatus::Reloading => 4,
            MasterStatus::Stopping => 5,
            MasterStatus::Stopped => 6,
            MasterStatus::ShutDown => 7,
            MasterStatus::Failed => 8,
        }
    }

    /// The status with number `code`, if there is one.
    pub fn from_code(code: u8) -> Option<MasterStatus> {
        MasterStatus::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Whether the master supervises no process in this status (INITIALIZED, STOPPED, SHUT_DOWN):
    /// nothing runs and nothing will happen by itself, so a host need not keep its event loop
    /// alive for it, and dropping it kills nothing.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            MasterStatus::Initialized | MasterStatus::Stopped | MasterStatus::ShutDown
        )
    }

    /// The name used in logs, the C ABI and the Node API, e.g. `"STARTED"`.
    pub fn name(self) -> &'static str {
        match self {
            MasterStatus::Initialized => "INITIALIZED",
            MasterStatus::Starting => "STARTING",
            MasterStatus::Started => "STARTED",
            MasterStatus::Reloading => "RELOADING",
            MasterStatus::Failed => "FAILED",
            MasterStatus::Stopping => "STOPPING",
            MasterStatus::Stopped => "STOPPED",
            MasterStatus::ShutDown => "SHUT_DOWN",
        }
    }
}

impl fmt::Display for MasterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for s in WorkerStatus::ALL {
            assert_eq!(WorkerStatus::from_code(s.code()), Some(s));
            assert_eq!(WorkerStatus::from_name(s.name()), Some(s));
        }
        assert_eq!(WorkerStatus::from_code(0), None);
        assert_eq!(WorkerStatus::from_code(9), None);
        assert_eq!(WorkerStatus::Started.code(), 3);
        assert_eq!(WorkerStatus::ShuttedDown.name(), "SHUTTED_DOWN");
    }

    #[test]
    fn master_status_codes_round_trip_and_only_three_statuses_are_idle() {
        for s in MasterStatus::ALL {
            assert_eq!(MasterStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(MasterStatus::from_code(0), None);
        assert_eq!(MasterStatus::from_code(9), None);
        assert_eq!(MasterStatus::ShutDown.code(), 7);
        assert_eq!(MasterStatus::Failed.code(), 8);
        let idle: Vec<_> = MasterStatus::ALL.into_iter().filter(|s| s.is_idle()).collect();
        assert_eq!(
            idle,
            [MasterStatus::Initialized, MasterStatus::Stopped, MasterStatus::ShutDown]
        );
    }

    #[test]
    fn a_worker_moves_forward_only() {
        use WorkerStatus::*;
        assert!(Initialized.may_report(Started));
        assert!(Started.may_report(Stopped));
        assert!(Stopped.may_report(ShuttedDown));
        assert!(Started.may_report(Started));
        assert!(!Started.may_report(Starting));
        assert!(!Started.may_report(Initialized));
        assert!(!Stopped.may_report(Started));
        assert!(!ShuttedDown.may_report(Started));
        assert!(!ShuttedDown.may_report(ShuttedDown));
        assert!(!Initialized.may_report(Stopped));
        for s in WorkerStatus::ALL {
            assert_eq!(s.may_report(Failed), !matches!(s, ShuttedDown | Failed));
        }
    }
}
