//! The errors of the master API. Each says what happened to which worker, in words a user can act on.

use crate::config::ConfigError;
use crate::exit::ExitReason;
use crate::master::events::WorkerFailure;
use crate::master::worker::SendError;
use crate::status::MasterStatus;
use crate::WorkerId;

/// Why a worker did not reach STARTED.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StartFailure {
    /// It exited first.
    #[error("{0} before reporting STARTED")]
    Exited(ExitReason),
    /// The master gave up on it (timeout, protocol error, spawn error, reported FAILED).
    #[error("{0}")]
    Failed(WorkerFailure),
}

/// An error from a [`crate::Master`] operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A worker did not start.
    #[error("worker {id}{} {failure}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Start {
        /// The worker.
        id: WorkerId,
        /// Its process, if one was created.
        pid: Option<u32>,
        /// Why.
        failure: StartFailure,
    },
    /// The operation is not possible in the master's current status.
    #[error("cannot {operation} while the master is {status}")]
    State {
        /// What was asked.
        operation: &'static str,
        /// The master's status.
        status: MasterStatus,
    },
    /// No worker has this id.
    #[error("no worker with id {id}")]
    UnknownWorker {
        /// The id asked for.
        id: WorkerId,
    },
    /// A message could not be delivered.
    #[error(transparent)]
    Send(SendError),
    /// A listening socket could not be bound.
    #[error(transparent)]
    Listen(crate::listen::ListenError),
    /// A shutdown cancelled the operation.
    #[error("{operation} was cancelled by a shutdown")]
    Cancelled {
        /// What was cancelled.
        operation: &'static str,
    },
    /// A reconfigure sent nothing ([`crate::Master::reconfigure`]).
    #[error(transparent)]
    Reconfigure(crate::master::reconfigure::ReconfigureError),
    /// The pre-start hook ([`crate::Master::pre_start`]) failed: no worker was spawned.
    #[error("the pre-start hook failed: {message}")]
    PreStart {
        /// The hook's reason.
        message: String,
    },
    /// A reload failed and was rolled back: the old workers keep serving.
    #[error("reload rolled back: {cause}")]
    ReloadRolledBack {
        /// What failed.
        cause: Box<Error>,
    },
}
