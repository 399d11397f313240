//! Why a worker process ended, without losing anything the kernel told us.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::status::WorkerStatus;
use crate::WorkerId;

/// How a worker process ended: drover's three exit reasons, with their payloads.
///
/// A signal keeps its number (and name): a SIGSEGV is not a "kill".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExitReason {
    /// The process called `exit(0)`.
    NormalExit {
        /// Always 0.
        code: i32,
    },
    /// The process exited with a non-zero code.
    AbnormalExit {
        /// The exit code, 1..=255.
        code: i32,
    },
    /// The process was ended by a signal (from anyone: the master, the kernel, another process).
    ExternalSignal {
        /// The signal number, e.g. 9.
        signal: i32,
        /// Whether the kernel wrote a core dump.
        core_dumped: bool,
    },
}

impl ExitReason {
    /// Builds the reason from a `waitid` result: `CLD_EXITED` with a code, or a terminating signal.
    pub(crate) fn from_code(code: i32) -> ExitReason {
        if code == 0 {
            ExitReason::NormalExit { code }
        } else {
            ExitReason::AbnormalExit { code }
        }
    }

    /// The exit code, for `NormalExit` and `AbnormalExit`.
    pub fn code(&self) -> Option<i32> {
        match *self {
            ExitReason::NormalExit { code } | ExitReason::AbnormalExit { code } => Some(code),
            ExitReason::ExternalSignal { .. } => None,
        }
    }

    /// The signal number, for `ExternalSignal`.
    pub fn signal(&self) -> Option<i32> {
        match *self {
            ExitReason::ExternalSignal { signal, .. } => Some(signal),
            _ => None,
        }
    }

    /// The signal's name (`"SIGKILL"`), for `ExternalSignal`; `"SIG<n>"` for a number without a name.
    pub fn signal_name(&self) -> Option<String> {
        self.signal().map(signal_name)
    }

    /// drover's class names of the three reasons, in the order of their numbers in the faces
    /// (C's `drover_exit_kind` 1, 2, 3): the one table every face names them from.
    pub const KIND_NAMES: [&'static str; 3] = ["NormalExit", "AbnormalExit", "ExternalSignal"];

    /// This reason's number in the faces: 1 `NormalExit`, 2 `AbnormalExit`, 3 `ExternalSignal`
    /// (0 is left to "no exit").
    pub fn kind_code(&self) -> u8 {
        match self {
            ExitReason::NormalExit { .. } => 1,
            ExitReason::AbnormalExit { .. } => 2,
            ExitReason::ExternalSignal { .. } => 3,
        }
    }

    /// drover's class name for this reason: `"NormalExit"`, `"AbnormalExit"` or `"ExternalSignal"`.
    pub fn kind_name(&self) -> &'static str {
        Self::KIND_NAMES[usize::from(self.kind_code() - 1)]
    }
}

impl ExitReason {
    /// The reason in the versioned JSON form of events ([`crate::Event::to_json`]): core's serde
    /// form (`"kind"`: `"NORMAL_EXIT"`, `"ABNORMAL_EXIT"` or `"EXTERNAL_SIGNAL"`, with `code`, or
    /// `signal` and `core_dumped`), plus `"name"` ([`ExitReason::kind_name`]) and, for a signal,
    /// `"signal_name"` (e.g. `"SIGKILL"`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "name": self.kind_name() });
        match *self {
            ExitReason::NormalExit { code } => {
                v["kind"] = "NORMAL_EXIT".into();
                v["code"] = code.into();
            }
            ExitReason::AbnormalExit { code } => {
                v["kind"] = "ABNORMAL_EXIT".into();
                v["code"] = code.into();
            }
            ExitReason::ExternalSignal { signal, core_dumped } => {
                v["kind"] = "EXTERNAL_SIGNAL".into();
                v["signal"] = signal.into();
                v["signal_name"] = signal_name(signal).into();
                v["core_dumped"] = core_dumped.into();
            }
        }
        v
    }
}

/// The name of signal number `signal`, e.g. `"SIGTERM"`.
pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(sig) => sig.as_str().to_string(),
        Err(_) => format!("SIG{signal}"),
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitReason::NormalExit { .. } => write!(f, "exited with code 0"),
            ExitReason::AbnormalExit { code } => write!(f, "exited with code {code}"),
            ExitReason::ExternalSignal { signal, core_dumped } => {
                write!(f, "killed by {} ({signal})", signal_name(signal))?;
                if core_dumped {
                    write!(f, ", core dumped")?;
                }
                Ok(())
            }
        }
    }
}

/// One worker process's end, as the master reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerExit {
    /// The worker's id.
    pub id: WorkerId,
    /// The pid the process had.
    pub pid: u32,
    /// How it ended.
    pub reason: ExitReason,
    /// Whether the master had asked it to end (stop/quit, a shutdown, a rescale, a kill by the
    /// master). An `exit(0)` nobody asked for is `requested: false`.
    pub requested: bool,
    /// The last status the worker had reported (or the master had assigned) before it ended.
    pub last_status: WorkerStatus,
}

impl fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "worker {} (pid {}) {} in status {}{}",
            self.id,
            self.pid,
            self.reason,
            self.last_status,
            if self.requested { ", as asked" } else { ", unasked" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_keep_code_and_signal() {
        assert_eq!(ExitReason::from_code(0), ExitReason::NormalExit { code: 0 });
        assert_eq!(ExitReason::from_code(3).code(), Some(3));
        let segv = ExitReason::ExternalSignal {
            signal: 11,
            core_dumped: true,
        };
        assert_eq!(segv.signal_name().as_deref(), Some("SIGSEGV"));
        assert_eq!(segv.to_string(), "killed by SIGSEGV (11), core dumped");
        assert_eq!(signal_name(200), "SIG200");
    }
}
