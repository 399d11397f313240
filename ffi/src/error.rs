//! The one result enum of the C ABI, the thread-local last error, and the conversions from core's
//! error types.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use drover_core::request::{RequestError, RequestErrorCode};
use drover_core::{BusError, ConfigError, Error};

/// The result of every fallible drover function.
///
/// `DROVER_RESULT_OK` (0) is success; every other value is a failure, and `drover_last_error()`
/// then describes it in words (which argument, which worker, which state). Codes are stable and
/// never reused: new ones are added, none is renumbered. `drover_result_name()` gives a code's name.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum drover_result {
    /// Success.
    Ok = 0,
    /// A pointer argument that must not be NULL was NULL. The message names the argument.
    NullArgument = 1,
    /// A string argument is not valid UTF-8. The message names the argument and the byte offset.
    InvalidUtf8 = 2,
    /// An argument is out of range or malformed (an unknown enum value, text that is not JSON).
    InvalidArgument = 3,
    /// The object pointer is not a live object of the expected type: it was freed already, or it
    /// points to something else. Detected unless its address was reused by a new object of the
    /// same type.
    InvalidObject = 4,
    /// drover panicked inside this call (a bug in drover). The panic did not cross into C; the
    /// object may be in an inconsistent state: shut it down and free it.
    Panic = 5,
    /// The operating system refused a resource drover needs (a thread, an eventfd).
    Os = 6,
    /// The master's configuration is invalid. The message names the field.
    InvalidConfig = 100,
    /// The operation is not possible in the master's current status (e.g. rescale before start).
    WrongState = 101,
    /// The operation did not complete within the timeout given.
    Timeout = 102,
    /// A worker did not reach STARTED: it exited, failed, or missed its start timeout. The message
    /// names the worker and why.
    StartFailed = 103,
    /// No worker has the given id.
    UnknownWorker = 104,
    /// A message could not be delivered to a worker (it is gone, or the message is too large).
    SendFailed = 105,
    /// A shutdown cancelled the operation.
    Cancelled = 106,
    /// A graceful reload failed and was rolled back: the old workers keep serving.
    ReloadRolledBack = 107,
    /// The event stream is closed: nothing more will come.
    Closed = 108,
    /// A listening socket could not be bound (address in use, permission), or no socket came back.
    ListenFailed = 109,
    /// A request named a handler its target does not have (for "any"/"all": no live worker
    /// declared it).
    NoSuchHandler = 110,
    /// A request or a message named a worker (by id or name) that does not exist.
    NoSuchTarget = 111,
    /// The target of a request exited (or stopped reading) before it answered.
    TargetGone = 112,
    /// The handler ran and failed: `drover_last_error()` is its own message.
    HandlerFailed = 113,
    /// Too many requests in flight (the asker's, the master's, or the C program's unanswered ones).
    Overloaded = 114,
    /// No request waits for an answer under that id: answered already, or its asker gave up.
    NoSuchRequest = 115,
    /// A request failed for a reason this library does not know (a newer peer's code).
    RequestFailed = 116,
    /// A reconfigure sent nothing: the config is too large for a frame, or cannot be encoded.
    ReconfigureRejected = 140,
    /// The pre-start hook failed: no worker was spawned, the master is as it was.
    PreStartFailed = 141,
    /// This process was not started by a drover master (`DROVER_IPC_FD` missing or wrong).
    NotAWorker = 200,
    /// The bus of this process was opened already (the channel can be owned once).
    AlreadyConnected = 201,
    /// The peer broke the MessageBus protocol, or refused us.
    Protocol = 202,
    /// The master closed the channel.
    MasterGone = 203,
    /// The channel failed with an I/O error.
    Io = 204,
    /// A message is too large for the frame limit, or cannot be encoded.
    MessageRejected = 205,
}

impl drover_result {
    pub(crate) fn name(self) -> &'static std::ffi::CStr {
        match self {
            drover_result::Ok => c"DROVER_RESULT_OK",
            drover_result::NullArgument => c"DROVER_RESULT_NULL_ARGUMENT",
            drover_result::InvalidUtf8 => c"DROVER_RESULT_INVALID_UTF8",
            drover_result::InvalidArgument => c"DROVER_RESULT_INVALID_ARGUMENT",
            drover_result::InvalidObject => c"DROVER_RESULT_INVALID_OBJECT",
            drover_result::Panic => c"DROVER_RESULT_PANIC",
            drover_result::Os => c"DROVER_RESULT_OS",
            drover_result::InvalidConfig => c"DROVER_RESULT_INVALID_CONFIG",
            drover_result::WrongState => c"DROVER_RESULT_WRONG_STATE",
            drover_result::Timeout => c"DROVER_RESULT_TIMEOUT",
            drover_result::StartFailed => c"DROVER_RESULT_START_FAILED",
            drover_result::UnknownWorker => c"DROVER_RESULT_UNKNOWN_WORKER",
            drover_result::SendFailed => c"DROVER_RESULT_SEND_FAILED",
            drover_result::Cancelled => c"DROVER_RESULT_CANCELLED",
            drover_result::ReloadRolledBack => c"DROVER_RESULT_RELOAD_ROLLED_BACK",
            drover_result::ReconfigureRejected => c"DROVER_RESULT_RECONFIGURE_REJECTED",
            drover_result::PreStartFailed => c"DROVER_RESULT_PRE_START_FAILED",
            drover_result::Closed => c"DROVER_RESULT_CLOSED",
            drover_result::ListenFailed => c"DROVER_RESULT_LISTEN_FAILED",
            drover_result::NoSuchHandler => c"DROVER_RESULT_NO_SUCH_HANDLER",
            drover_result::NoSuchTarget => c"DROVER_RESULT_NO_SUCH_TARGET",
            drover_result::TargetGone => c"DROVER_RESULT_TARGET_GONE",
            drover_result::HandlerFailed => c"DROVER_RESULT_HANDLER_FAILED",
            drover_result::Overloaded => c"DROVER_RESULT_OVERLOADED",
            drover_result::NoSuchRequest => c"DROVER_RESULT_NO_SUCH_REQUEST",
            drover_result::RequestFailed => c"DROVER_RESULT_REQUEST_FAILED",
            drover_result::NotAWorker => c"DROVER_RESULT_NOT_A_WORKER",
            drover_result::AlreadyConnected => c"DROVER_RESULT_ALREADY_CONNECTED",
            drover_result::Protocol => c"DROVER_RESULT_PROTOCOL",
            drover_result::MasterGone => c"DROVER_RESULT_MASTER_GONE",
            drover_result::Io => c"DROVER_RESULT_IO",
            drover_result::MessageRejected => c"DROVER_RESULT_MESSAGE_REJECTED",
        }
    }

    /// Every code, for the names table and its test.
    pub(crate) const ALL: [drover_result; 32] = [
        drover_result::Ok,
        drover_result::NullArgument,
        drover_result::InvalidUtf8,
        drover_result::InvalidArgument,
        drover_result::InvalidObject,
        drover_result::Panic,
        drover_result::Os,
        drover_result::InvalidConfig,
        drover_result::WrongState,
        drover_result::Timeout,
        drover_result::StartFailed,
        drover_result::UnknownWorker,
        drover_result::SendFailed,
        drover_result::Cancelled,
        drover_result::ReloadRolledBack,
        drover_result::Closed,
        drover_result::ListenFailed,
        drover_result::NoSuchHandler,
        drover_result::NoSuchTarget,
        drover_result::TargetGone,
        drover_result::HandlerFailed,
        drover_result::Overloaded,
        drover_result::NoSuchRequest,
        drover_result::RequestFailed,
        drover_result::ReconfigureRejected,
        drover_result::PreStartFailed,
        drover_result::NotAWorker,
        drover_result::AlreadyConnected,
        drover_result::Protocol,
        drover_result::MasterGone,
        drover_result::Io,
        drover_result::MessageRejected,
    ];
}

/// A failed call: its code and the message `drover_last_error()` will return.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: drover_result,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: drover_result, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Records the message as this thread's last error and returns the code.
    pub(crate) fn report(self) -> drover_result {
        set_last_error(&self.message);
        self.code
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        let code = match &err {
            Error::Config(_) => drover_result::InvalidConfig,
            Error::Start { .. } => drover_result::StartFailed,
            Error::State { .. } => drover_result::WrongState,
            Error::UnknownWorker { .. } => drover_result::UnknownWorker,
            Error::Send(_) => drover_result::SendFailed,
            Error::Cancelled { .. } => drover_result::Cancelled,
            Error::ReloadRolledBack { .. } => drover_result::ReloadRolledBack,
            Error::Listen(_) => drover_result::ListenFailed,
            Error::Reconfigure(_) => drover_result::ReconfigureRejected,
            Error::PreStart { .. } => drover_result::PreStartFailed,
        };
        Failure::new(code, err.to_string())
    }
}

impl From<ConfigError> for Failure {
    fn from(err: ConfigError) -> Failure {
        Failure::new(drover_result::InvalidConfig, format!("invalid configuration: {err}"))
    }
}

impl From<BusError> for Failure {
    fn from(err: BusError) -> Failure {
        let code = match &err {
            BusError::NotAWorker(_) => drover_result::NotAWorker,
            BusError::AlreadyConnected => drover_result::AlreadyConnected,
            BusError::Protocol(_) => drover_result::Protocol,
            BusError::MasterGone => drover_result::MasterGone,
            BusError::Encode(_) => drover_result::MessageRejected,
            BusError::Io(_) => drover_result::Io,
            BusError::Listen(_) => drover_result::ListenFailed,
        };
        Failure::new(code, err.to_string())
    }
}

/// A failed request: its code as a result code (a malformed request is an invalid argument, a
/// timeout DROVER_RESULT_TIMEOUT), and its message as it is (a failed handler's own words).
impl From<RequestError> for Failure {
    fn from(err: RequestError) -> Failure {
        let code = match err.code {
            RequestErrorCode::NoSuchHandler => drover_result::NoSuchHandler,
            RequestErrorCode::NoSuchTarget => drover_result::NoSuchTarget,
            RequestErrorCode::Timeout => drover_result::Timeout,
            RequestErrorCode::TargetGone => drover_result::TargetGone,
            RequestErrorCode::HandlerFailed => drover_result::HandlerFailed,
            RequestErrorCode::Overloaded => drover_result::Overloaded,
            RequestErrorCode::BadRequest => drover_result::InvalidArgument,
            RequestErrorCode::MasterGone => drover_result::MasterGone,
            _ => drover_result::RequestFailed,
        };
        Failure::new(code, err.message)
    }
}

thread_local! {
    /// The message of the last failed call on this thread; `None` after a successful call.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

pub(crate) fn set_last_error(message: &str) {
    let message = c_string_lossy(message);
    LAST_ERROR.with(|cell| *cell.borrow_mut() = Some(message));
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|cell| *cell.borrow_mut() = None);
}

pub(crate) fn last_error_ptr() -> *const c_char {
    // The pointer stays valid after the borrow ends: the CString lives in the thread-local until
    // the next drover call on this thread replaces it, which is the documented lifetime.
    LAST_ERROR.with(|cell| cell.borrow().as_ref().map_or(c"".as_ptr(), |m| m.as_ptr()))
}

/// A C string of `s`, with any NUL byte (which C cannot carry) written as `\0`.
pub(crate) fn c_string_lossy(s: &str) -> CString {
    match CString::new(s) {
        Ok(c) => c,
        Err(_) => {
            let escaped = s.replace('\0', "\\0");
            CString::new(escaped).unwrap_or_default()
        }
    }
}

/// Turns a caught panic's payload into a failure naming it.
pub(crate) fn panic_failure(payload: Box<dyn std::any::Any + Send>) -> Failure {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".into());
    Failure::new(
        drover_result::Panic,
        format!("drover panicked (a bug in drover, please report it): {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_c_name() {
        for code in drover_result::ALL {
            let name = code.name().to_str().expect("names are ASCII");
            assert!(name.starts_with("DROVER_RESULT_"), "{name}");
        }
        assert_eq!(drover_result::Timeout as u32, 102);
    }

    #[test]
    fn nul_bytes_are_escaped() {
        assert_eq!(c_string_lossy("a\0b").to_str().unwrap(), "a\\0b");
    }
}
