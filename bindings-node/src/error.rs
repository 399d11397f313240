//! Core errors as JS errors.
//!
//! A rejected promise or thrown error from the addon carries, as its message, [`TAG`] followed by
//! a JSON object: `name` (the drover error class the JS layer builds, e.g.
//! `InappropriateConditionError`), `message` (core's own wording) and the details a handler needs
//! (`workerId`, `pid`, `operation`, `status`, `cause`...). `lib/errors.js` decodes it; nothing
//! else parses messages.

use drover::{BusError, ConfigError, Error, ExitReason, StartFailure};
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
                v["exitReason"] = reason_json(reason);
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
        Error::Send(e) => {
            let mut v = json!({
                "name": "MessageDeliveryError",
                "message": message,
                "detail": e.to_string(),
            });
            // As Node's own socket errors: `code` (EPIPE) and a negative `errno`.
            if let drover::SendError::Write { errno: Some(errno), .. } = e {
                v["code"] = Value::String(drover::errno_name(*errno));
                v["errno"] = json!(-errno);
            }
            v
        }
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
        Error::Listen(e) => describe_listen(&message, e.address(), e.errno()),
        Error::Reconfigure(_) => json!({ "name": "ReconfigureError", "message": message }),
        Error::PreStart { message: why } => json!({
            "name": "PreStartError",
            "message": message,
            "reason": why,
        }),
        #[allow(unreachable_patterns)]
        _ => json!({ "name": "DroverError", "message": message }),
    }
}

/// drover's payload of an exit reason: `kind` (the class name), and `code`, or `signal` (the name,
/// e.g. `"SIGKILL"`) with `signalNumber` and `coreDumped`.
fn reason_json(reason: &ExitReason) -> Value {
    match *reason {
        ExitReason::NormalExit { code } | ExitReason::AbnormalExit { code } => {
            json!({ "kind": reason.kind_name(), "code": code })
        }
        ExitReason::ExternalSignal { signal, core_dumped } => json!({
            "kind": reason.kind_name(),
            "signal": drover::signal_name(signal),
            "signalNumber": signal,
            "coreDumped": core_dumped,
        }),
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
        BusError::Listen(refused) => return describe_listen(&refused.message, &refused.address, refused.errno),
        _ => "MessageBusError",
    };
    json!({ "name": name, "message": error.to_string() })
}

/// A socket the master could not provide: a `ListenError` with Node's fields for a failed
/// `listen` (`code` such as `EADDRINUSE`, a negative `errno`, `syscall`, `address`), so code
/// written for Node's own errors handles it unchanged. Every field comes from core's error type.
fn describe_listen(message: &str, address: &str, errno: Option<i32>) -> Value {
    let mut v = json!({ "name": "ListenError", "message": message, "syscall": "listen", "address": address });
    if let Some(errno) = errno {
        v["code"] = Value::String(drover::errno_name(errno));
        v["errno"] = json!(-errno);
    }
    v
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_errors_carry_nodes_fields() {
        let refused = drover::ListenRefused {
            address: "127.0.0.1:80".into(),
            errno: Some(98),
            message: "cannot listen on 127.0.0.1:80: Address already in use (os error 98) (EADDRINUSE: Address already in use)".into(),
        };
        let v = describe_bus(&BusError::Listen(refused));
        assert_eq!(v["name"], "ListenError");
        assert_eq!(v["code"], "EADDRINUSE");
        assert_eq!(v["errno"], -98);
        assert_eq!(v["address"], "127.0.0.1:80");
        assert_eq!(v["syscall"], "listen");
        let refused = drover::ListenRefused {
            address: "x".into(),
            errno: None,
            message: "`x` is not a listen address: (Eh)".into(),
        };
        let v = describe_bus(&BusError::Listen(refused));
        assert!(v.get("code").is_none(), "{v}");
        assert!(v.get("errno").is_none(), "{v}");
    }
}
