//! Core errors as JS errors.
//!
//! A rejected promise or thrown error from the addon carries, as its message, [`TAG`] followed by
//! a JSON object: `name` (the drover error class the JS layer builds, e.g.
//! `InappropriateConditionError`), `message` (core's own wording) and the details a handler needs
//! (`workerId`, `pid`, `operation`, `status`, `cause`...). `lib/errors.js` decodes it; nothing
//! else parses messages.

use drover::{BusError, ConfigError, Error, ExitReason, ListenError, StartFailure};
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
        Error::Listen(e) => describe_listen(&message, Some(e)),
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
        BusError::Listen(message) => return describe_listen(message, None),
        _ => "MessageBusError",
    };
    json!({ "name": name, "message": error.to_string() })
}

/// A socket the master could not provide: a `ListenError` with Node's fields for a failed
/// `listen` (`code` such as `EADDRINUSE`, a negative `errno`, `syscall`, `address`), so code
/// written for Node's own errors handles it unchanged.
fn describe_listen(message: &str, error: Option<&ListenError>) -> Value {
    let mut v = json!({ "name": "ListenError", "message": message, "syscall": "listen" });
    if let Some(code) = errno_name(message) {
        v["code"] = Value::String(code);
    }
    if let Some(errno) = os_error(message) {
        v["errno"] = json!(-errno);
    }
    if let Some(ListenError::Bind { address, .. }) = error {
        v["address"] = Value::String(address.clone());
    } else if let Some(address) = message
        .strip_prefix("cannot listen on ")
        .and_then(|rest| rest.split_once(": ").map(|(a, _)| a))
    {
        v["address"] = Value::String(address.to_string());
    }
    v
}

/// `EADDRINUSE` out of core's wording `... (EADDRINUSE: Address in use)`.
fn errno_name(message: &str) -> Option<String> {
    message.match_indices("(E").find_map(|(at, _)| {
        let name: String = message[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            .collect();
        let next = message[at + 1 + name.len()..].chars().next();
        (name.len() > 1 && matches!(next, Some(':') | Some(')'))).then_some(name)
    })
}

/// `98` out of `... (os error 98) ...`.
fn os_error(message: &str) -> Option<i32> {
    let (_, rest) = message.split_once("(os error ")?;
    rest.split(')').next()?.parse().ok()
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
        let m =
            "cannot listen on 127.0.0.1:80: Address already in use (os error 98) (EADDRINUSE: Address already in use)";
        let v = describe_bus(&BusError::Listen(m.into()));
        assert_eq!(v["name"], "ListenError");
        assert_eq!(v["code"], "EADDRINUSE");
        assert_eq!(v["errno"], -98);
        assert_eq!(v["address"], "127.0.0.1:80");
        assert_eq!(v["syscall"], "listen");
        let v = describe_bus(&BusError::Listen("`x` is not a listen address: (Eh)".into()));
        assert!(v.get("code").is_none(), "{v}");
    }
}
