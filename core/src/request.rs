//! Requests between the master and its workers, and messages from worker to worker, all routed
//! by the master (PROTOCOL.md §5.5): what a request is addressed to ([`Target`]), how one fails
//! ([`RequestError`]) and the bounds that keep a flooding worker from harming the others.
//!
//! A handler is registered by name on the master ([`crate::Master::handle`]) or declared by a
//! worker (`handlers` frame; [`crate::BusSender::set_handlers`]). A request names a target and a
//! handler, carries JSON arguments and a timeout, and resolves with the handler's JSON result or
//! a typed error: no such handler, no such target, timeout, target gone, handler failed (with its
//! message), or too many requests in flight. Nothing is dropped silently.
//!
//! ```
//! use drover::request::Target;
//!
//! assert_eq!("worker:3".parse::<Target>(), Ok(Target::Worker(3)));
//! assert_eq!("name:web-2".parse::<Target>(), Ok(Target::Name("web-2".into())));
//! assert_eq!(Target::Any.to_string(), "any");
//! assert!("everyone".parse::<Target>().is_err());
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::WorkerId;

/// How long a request waits for its answer unless it says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest timeout a request may ask for (a longer one is cut to this).
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Requests in flight through one master at once (from all workers and the master itself); past
/// it a request is answered at once with [`RequestErrorCode::Overloaded`].
pub const MAX_PENDING_REQUESTS: usize = 4096;
/// Requests in flight from one worker at once: a worker flooding requests is refused before it
/// can take the master's whole budget from the others.
pub const MAX_PENDING_PER_WORKER: usize = 256;
/// Handler names one worker (or the master) may declare.
pub const MAX_HANDLERS: usize = 256;
/// The longest handler name, in bytes.
pub const MAX_HANDLER_NAME: usize = 128;

/// The start of the name of a worker's status function (PROTOCOL.md §5.8): a handler named
/// `status.memory` is the status function `memory`, which [`crate::Master::gather_statuses`] calls.
pub const STATUS_FUNCTION_PREFIX: &str = "status.";

/// Where a request or a worker-to-worker message goes. On the wire, a string: `"master"`,
/// `"worker:ID"`, `"name:NAME"`, `"any"` (one worker that handles the request, round-robin) or
/// `"all"` (every other worker that handles it; the results gathered).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The master's own handlers.
    Master,
    /// A worker by id.
    Worker(WorkerId),
    /// A worker by name (its welcome's `name`).
    Name(String),
    /// One live worker that declared the handler, in turn (for a message: one live worker).
    Any,
    /// Every live worker that declared the handler, except the sender; the answer is a list of
    /// per-worker results and errors (for a message: every live worker but the sender).
    All,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Master => f.write_str("master"),
            Target::Worker(id) => write!(f, "worker:{id}"),
            Target::Name(name) => write!(f, "name:{name}"),
            Target::Any => f.write_str("any"),
            Target::All => f.write_str("all"),
        }
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Target, String> {
        match text {
            "master" => Ok(Target::Master),
            "any" => Ok(Target::Any),
            "all" => Ok(Target::All),
            _ => {
                if let Some(id) = text.strip_prefix("worker:") {
                    id.parse()
                        .ok()
                        .filter(|id| *id > 0)
                        .map(Target::Worker)
                        .ok_or_else(|| format!("{text:?}: a worker id is a positive integer"))
                } else if let Some(name) = text.strip_prefix("name:").filter(|n| !n.is_empty()) {
                    Ok(Target::Name(name.to_string()))
                } else {
                    Err(format!(
                        r#"{text:?} is not a target: "master", "worker:ID", "name:NAME", "any" or "all""#
                    ))
                }
            }
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Target, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a request failed, as a stable code (the wire's `error.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
/// New codes may be added in a compatible version (PROTOCOL.md §13): match with a `_` arm.
#[non_exhaustive]
pub enum RequestErrorCode {
    /// The target has no handler of that name (or, for `any`/`all`, no live worker has one).
    NoSuchHandler,
    /// No worker has that id or name.
    NoSuchTarget,
    /// No answer within the request's timeout.
    Timeout,
    /// The target exited (or stopped reading) before it answered.
    TargetGone,
    /// The handler ran and failed; the message is its own.
    HandlerFailed,
    /// Too many requests in flight (the sender's or the master's bound).
    Overloaded,
    /// The request itself is malformed (a bad target or handler name).
    BadRequest,
    /// The master is gone, or shutting the channel.
    MasterGone,
    /// The store could not make a write durable (its disk refused it): nothing was changed.
    Unavailable,
    /// A code this build does not know (from a newer peer).
    #[serde(other)]
    Unknown,
}

/// A failed request: its code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    /// What kind of failure.
    pub code: RequestErrorCode,
    /// What happened, in words (a handler's own message for `handler_failed`).
    pub message: String,
}

impl RequestError {
    /// An error of `code` saying `message`.
    pub fn new(code: RequestErrorCode, message: impl Into<String>) -> RequestError {
        RequestError {
            code,
            message: message.into(),
        }
    }
}

/// An outcome as the wire carries it: `result` or `error`, one of the two members present.
pub fn split<T>(outcome: Result<T, RequestError>) -> (Option<T>, Option<RequestError>) {
    match outcome {
        Ok(value) => (Some(value), None),
        Err(error) => (None, Some(error)),
    }
}

/// Checks a handler name: 1..=[`MAX_HANDLER_NAME`] bytes, no control characters.
pub fn check_handler_name(name: &str) -> Result<(), RequestError> {
    if name.is_empty() || name.len() > MAX_HANDLER_NAME || name.chars().any(char::is_control) {
        return Err(RequestError::new(
            RequestErrorCode::BadRequest,
            format!("{name:?} is not a handler name (1 to {MAX_HANDLER_NAME} bytes, no control characters)"),
        ));
    }
    Ok(())
}

/// The timeout a request asked for, within [`MAX_REQUEST_TIMEOUT`] (none: the default).
pub fn timeout_of(timeout_ms: Option<u64>) -> Duration {
    timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
        .min(MAX_REQUEST_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_and_bad_ones_say_what_is_accepted() {
        for t in [
            Target::Master,
            Target::Worker(7),
            Target::Name("email".into()),
            Target::Any,
            Target::All,
        ] {
            assert_eq!(t.to_string().parse::<Target>(), Ok(t.clone()));
            let json = serde_json::to_string(&t).unwrap_or_default();
            assert_eq!(serde_json::from_str::<Target>(&json).ok(), Some(t));
        }
        for bad in ["", "worker:0", "worker:x", "name:", "others"] {
            let err = bad.parse::<Target>().err().unwrap_or_default();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn error_codes_are_snake_case_and_unknown_ones_are_kept_as_unknown() {
        let e = RequestError::new(RequestErrorCode::NoSuchHandler, "no handler \"x\"");
        let json = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"code": "no_such_handler", "message": "no handler \"x\""})
        );
        let newer: RequestError =
            serde_json::from_str(r#"{"code":"quota","message":"m"}"#).unwrap_or_else(|_| e.clone());
        assert_eq!(newer.code, RequestErrorCode::Unknown);
    }

    #[test]
    fn handler_names_and_timeouts_are_bounded() {
        assert!(check_handler_name("resize").is_ok());
        assert!(check_handler_name("").is_err());
        assert!(check_handler_name(&"x".repeat(MAX_HANDLER_NAME + 1)).is_err());
        assert!(check_handler_name("a\nb").is_err());
        assert_eq!(timeout_of(None), DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(timeout_of(Some(u64::MAX)), MAX_REQUEST_TIMEOUT);
        assert_eq!(timeout_of(Some(250)), Duration::from_millis(250));
    }
}
