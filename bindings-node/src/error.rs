//! Core errors as JS errors.
//!
//! A rejected promise or thrown error from the addon carries, as its message, [`TAG`] followed by
//! a JSON object: `name` (the drover error class the JS layer builds, e.g.
//! `InappropriateConditionError`), `message` (core's own wording) and the details a handler needs
//! (`workerId`, `pid`, `operation`, `status`, `cause`...). `lib/errors.js` decodes it; nothing
//! else parses messages.

use drover::{BusError, ConfigError, Error, StartFailure};
use serde_json::{json, Value};

/// Starts the message of every error the addon raises.
pub const TAG: &str = "\u{1}drover:";

/// The JSON description of a core error.
pub fn describe(error: &Error) -> Value {
    let message = error.to_string();
    match error {
        Error::Config(e) => describe_config(e),
        Error::Start { id, pid, failure } => {
            let mut v = json!({
                "name": "WorkerStatusError",
                "message": message,
                "workerId": id,
                "pid": pid,
                "failure": failure.to_string(),
            });
            if let StartFailure::Exited(reason) = failure {
                v["exitReason"] = crate::master::reason_json(reason);
            }
            v
        }
        Error::State { operation, status } => json!({
            "name": "InappropriateConditionError",
            "message": message,
            "operation": operation,
            "status": status.name(),
        }),
        Error::UnknownWorker { id } => json!({
            "name": "WorkerNotFoundError",
            "message": message,
            "workerId": id,
        }),
        Error::Send(e) => json!({
            "name": "MessageDeliveryError",
            "message": message,
            "detail": e.to_string(),
        }),
        Error::Cancelled { operation } => json!({
            "name": "OperationCancelledError",
            "message": message,
            "operation": operation,
        }),
        Error::ReloadRolledBack { cause } => json!({
            "name": "ReloadRolledBackError",
            "message": message,
            "cause": describe(cause),
        }),
        #[allow(unreachable_patterns)]
        _ => json!({ "name": "DroverError", "message": message }),
    }
}

/// The JSON description of an invalid configuration.
pub fn describe_config(error: &ConfigError) -> Value {
    json!({
        "name": "InvalidConfigurationError",
        "message": format!("invalid configuration: {error}"),
    })
}

/// The JSON description of a worker-side error.
pub fn describe_bus(error: &BusError) -> Value {
    let name = match error {
        BusError::NotAWorker(_) => "NotAWorkerError",
        _ => "MessageBusError",
    };
    json!({ "name": name, "message": error.to_string() })
}

/// A napi error whose message is the tagged description.
pub fn tagged(description: Value) -> napi::Error {
    napi::Error::from_reason(format!("{TAG}{description}"))
}

/// A core error as a napi error.
pub fn from_core(error: &Error) -> napi::Error {
    tagged(describe(error))
}

/// A wrong type or shape from JavaScript: a `TypeError` on the JS side.
pub fn type_error(message: impl Into<String>) -> napi::Error {
    tagged(json!({ "name": "TypeError", "message": message.into() }))
}

/// A bug in the addon (a caught panic): never expected, reported rather than crashing Node.
pub fn internal(message: &str) -> napi::Error {
    tagged(json!({
        "name": "DroverError",
        "message": format!("internal error in the drover addon (please report): {message}"),
    }))
}
