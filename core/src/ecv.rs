//! ECV (cluster2's "extended content verification"): whether a group is *in rotation*, that is,
//! whether a load balancer should send it traffic, apart from whether its workers run.
//!
//! A group is taken out of rotation by hand ([`crate::Master::mark_down`], `drover down GROUP`,
//! `POST /groups/NAME/down`) or by a monitor ([`crate::Master::monitor_ecv`]) that probes a URL
//! the workers serve and judges the answer with a [`Validator`]. Out of rotation, the workers keep
//! running and serving what reaches them (connections already open drain normally); only the
//! health answers a balancer reads (`/readyz`, `/ecv` of the `drover` command) say "out of
//! rotation". The two causes are kept apart ([`Rotation`]): `mark_up` lifts the manual mark only,
//! and the monitor lifts its own once a probe passes, so a group marked down by hand for
//! maintenance does not come back because its health check passes.
//!
//! ```
//! use drover::ecv::{EcvMonitor, EcvOptions, Validator};
//!
//! let options: EcvOptions = serde_json::from_str(
//!     r#"{"url": "http://127.0.0.1:8080/health", "validator": "^ok", "interval": "2s", "failuresBeforeDown": 3}"#,
//! )?;
//! let monitor = EcvMonitor::new(options)?;
//! assert_eq!(monitor.failures_before_down(), 3);
//! assert!(matches!(monitor.validator(), Validator::BodyMatches { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::config::Millis;

/// The shortest interval between two probes.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest interval between two probes.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// The longest a probe may take (connect, send, answer).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The most consecutive failures [`EcvOptions::failures_before_down`] may ask for.
pub const MAX_FAILURES_BEFORE_DOWN: u32 = 1000;
/// The most bytes of a probed answer's body that are read and matched; a longer body fails the
/// probe (a health page is small; a huge one must not take the master's memory).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest regular expression a validator may be (it is compiled once, with a size limit).
pub const MAX_PATTERN_BYTES: usize = 4096;

/// Whether a group is in rotation, and if not, why: both causes, each on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rotation {
    /// Marked down by hand ([`crate::Master::mark_down`]) and not marked up since.
    pub manual: bool,
    /// The ECV monitor's last failure while it judges the group down, in words.
    pub monitor: Option<String>,
}

impl Rotation {
    /// In rotation: neither marked down by hand nor by the monitor.
    pub fn in_rotation(&self) -> bool {
        !self.manual && self.monitor.is_none()
    }

    /// Why the group is out of rotation, in words (`None`: it is in rotation), e.g. `"marked down
    /// by hand; monitor: http://127.0.0.1:8080/health answered 503"`.
    pub fn why(&self) -> Option<String> {
        match (self.manual, &self.monitor) {
            (false, None) => None,
            (true, None) => Some("marked down by hand".into()),
            (false, Some(m)) => Some(format!("monitor: {m}")),
            (true, Some(m)) => Some(format!("marked down by hand; monitor: {m}")),
        }
    }
}

/// How the monitor judges an answer.
#[derive(Debug, Clone)]
pub enum Validator {
    /// Any 2xx status (the default).
    Success,
    /// The answer's status code must be this one.
    Status(u16),
    /// The answer's status must be 2xx and its body (at most [`MAX_BODY_BYTES`]) must match.
    BodyMatches {
        /// The regular expression as given.
        pattern: String,
        /// It, compiled.
        regex: regex_automata::meta::Regex,
    },
}

impl PartialEq for Validator {
    /// The same check: the same status, or the same pattern as written.
    fn eq(&self, other: &Validator) -> bool {
        match (self, other) {
            (Validator::Success, Validator::Success) => true,
            (Validator::Status(a), Validator::Status(b)) => a == b,
            (Validator::BodyMatches { pattern: a, .. }, Validator::BodyMatches { pattern: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// The ECV monitor's options, as a config file writes them (camelCase; `failures_before_down`
/// is accepted too).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EcvOptions {
    /// `http://HOST:PORT/PATH` of a worker's health page (plain HTTP: a worker on this host).
    pub url: String,
    /// A status code (`200`), or a regular expression the body of a 2xx answer must match
    /// (`"^ok"`). Default: any 2xx answer.
    #[serde(default)]
    pub validator: Option<serde_json::Value>,
    /// Between two probes ([`Millis`]); default 5 s, from [`MIN_INTERVAL`] to [`MAX_INTERVAL`].
    #[serde(default)]
    pub interval: Option<Millis>,
    /// The longest one probe may take; default 2 s, at most [`MAX_TIMEOUT`].
    #[serde(default)]
    pub timeout: Option<Millis>,
    /// Consecutive failed probes before the group is marked down; default 1, at most
    /// [`MAX_FAILURES_BEFORE_DOWN`]. One passing probe marks it up again.
    #[serde(default, alias = "failures_before_down")]
    pub failures_before_down: Option<u32>,
}

/// A validated ECV monitor: what [`crate::Master::monitor_ecv`] runs. Two are equal when they
/// probe the same URL the same way (a host re-reading its config keeps a monitor that is unchanged).
#[derive(Debug, Clone, PartialEq)]
pub struct EcvMonitor {
    url: hyper::Uri,
    authority: String,
    validator: Validator,
    interval: Duration,
    timeout: Duration,
    failures_before_down: u32,
}

/// An ECV option that cannot be used, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcvError {
    /// The URL is not `http://HOST:PORT/PATH`.
    #[error("ecv `url`: {url:?} {why}")]
    Url {
        /// What was given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The validator is neither a status code nor a regular expression that compiles.
    #[error("ecv `validator`: {0}")]
    Validator(String),
    /// A duration or count out of its range.
    #[error("ecv `{field}`: {message}")]
    OutOfRange {
        /// `interval`, `timeout` or `failuresBeforeDown`.
        field: &'static str,
        /// The value and the range.
        message: String,
    },
}

/// Why a probe failed, in words (what the group's rotation shows).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    /// No connection, or it broke.
    #[error("{url}: {error}")]
    Unreachable {
        /// The probed URL.
        url: String,
        /// The error.
        error: String,
    },
    /// No complete answer within the timeout.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout {
        /// The probed URL.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The answer's status is not the one expected.
    #[error("{url} answered {status}, expected {expected}")]
    Status {
        /// The probed URL.
        url: String,
        /// The status it answered.
        status: u16,
        /// What the validator expects.
        expected: String,
    },
    /// The body does not match the validator.
    #[error("{url}: the body does not match /{pattern}/")]
    Body {
        /// The probed URL.
        url: String,
        /// The validator's pattern.
        pattern: String,
    },
    /// The body is longer than [`MAX_BODY_BYTES`].
    #[error("{url}: the body is longer than {MAX_BODY_BYTES} bytes")]
    TooLong {
        /// The probed URL.
        url: String,
    },
}

fn duration(
    field: &'static str,
    value: Option<Millis>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, EcvError> {
    let Some(Millis(ms)) = value else {
        return Ok(default);
    };
    let out_of_range = || EcvError::OutOfRange {
        field,
        message: format!("must be from {min:?} to {max:?}, got {ms} ms"),
    };
    if !ms.is_finite() || ms < min.as_secs_f64() * 1000.0 || ms > max.as_secs_f64() * 1000.0 {
        return Err(out_of_range());
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

impl EcvMonitor {
    /// Validates `options`: the URL, the validator (a regular expression is compiled here), the
    /// ranges. An error names the field.
    pub fn new(options: EcvOptions) -> Result<EcvMonitor, EcvError> {
        let url_error = |why: &str| EcvError::Url {
            url: options.url.clone(),
            why: why.into(),
        };
        let url: hyper::Uri = options
            .url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| url_error(&format!("is not a URL: {e}")))?;
        if url.scheme_str() != Some("http") {
            return Err(url_error(
                "must start with http:// (the monitor probes a worker over plain HTTP)",
            ));
        }
        if url.authority().is_none() {
            return Err(url_error("has no host"));
        }
        let port = url.port_u16().unwrap_or(80);
        let host = url.host().unwrap_or_default().trim_matches(['[', ']']);
        let authority = format!(
            "{}:{port}",
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_string()
            }
        );
        let validator = match &options.validator {
            None => Validator::Success,
            Some(serde_json::Value::Number(n)) => match n.as_u64().filter(|c| (100..=599).contains(c)) {
                Some(code) => Validator::Status(code as u16),
                None => {
                    return Err(EcvError::Validator(format!(
                        "a status code must be from 100 to 599, got {n}"
                    )))
                }
            },
            Some(serde_json::Value::String(pattern)) => {
                if pattern.len() > MAX_PATTERN_BYTES {
                    return Err(EcvError::Validator(format!(
                        "the pattern is {} bytes long, at most {MAX_PATTERN_BYTES}",
                        pattern.len()
                    )));
                }
                let regex = regex_automata::meta::Regex::builder()
                    .configure(regex_automata::meta::Config::new().nfa_size_limit(Some(1 << 20)))
                    .build(pattern)
                    .map_err(|e| EcvError::Validator(format!("{pattern:?} is not a regular expression: {e}")))?;
                Validator::BodyMatches {
                    pattern: pattern.clone(),
                    regex,
                }
            }
            Some(other) => {
                return Err(EcvError::Validator(format!(
                    "expected a status code (200) or a regular expression (\"^ok\"), got {other}"
                )))
            }
        };
        let interval = duration(
            "interval",
            options.interval,
            Duration::from_secs(5),
            MIN_INTERVAL,
            MAX_INTERVAL,
        )?;
        let timeout = duration(
            "timeout",
            options.timeout,
            Duration::from_secs(2),
            Duration::from_millis(1),
            MAX_TIMEOUT,
        )?;
        let failures_before_down = options.failures_before_down.unwrap_or(1);
        if !(1..=MAX_FAILURES_BEFORE_DOWN).contains(&failures_before_down) {
            return Err(EcvError::OutOfRange {
                field: "failuresBeforeDown",
                message: format!("must be from 1 to {MAX_FAILURES_BEFORE_DOWN}, got {failures_before_down}"),
            });
        }
        Ok(EcvMonitor {
            url,
            authority,
            validator,
            interval,
            timeout,
            failures_before_down,
        })
    }

    /// The probed URL.
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    /// How answers are judged.
    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Between two probes.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The longest one probe may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Consecutive failed probes before the group is marked down.
    pub fn failures_before_down(&self) -> u32 {
        self.failures_before_down
    }

    /// Probes the URL once: `Ok` if the answer passes the validator, else why not. Never takes
    /// longer than the timeout.
    pub async fn probe(&self) -> Result<(), ProbeFailure> {
        let url = self.url();
        match tokio::time::timeout(self.timeout, self.probe_unbounded()).await {
            Ok(result) => result,
            Err(_) => Err(ProbeFailure::Timeout {
                url,
                timeout: self.timeout,
            }),
        }
    }

    async fn probe_unbounded(&self) -> Result<(), ProbeFailure> {
        let url = self.url();
        let unreachable = |error: String| ProbeFailure::Unreachable {
            url: url.clone(),
            error,
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // Driven beside the request (it delivers the body after the head), and ended with the
        // probe, even one cut short by its timeout.
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let request = async {
            let path = self.url.path_and_query().map_or("/", |p| p.as_str());
            let request = hyper::Request::get(path)
                .header(hyper::header::HOST, self.url.authority().map_or("", |a| a.as_str()))
                .header(hyper::header::CONNECTION, "close")
                .header(hyper::header::USER_AGENT, "drover-ecv")
                .body(Empty::<Bytes>::new())
                .map_err(|e| unreachable(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            match &self.validator {
                Validator::Success if (200..300).contains(&status) => Ok(()),
                Validator::Success => Err(ProbeFailure::Status {
                    url: url.clone(),
                    status,
                    expected: "2xx".into(),
                }),
                Validator::Status(code) if status == *code => Ok(()),
                Validator::Status(code) => Err(ProbeFailure::Status {
                    url: url.clone(),
                    status,
                    expected: code.to_string(),
                }),
                Validator::BodyMatches { pattern, regex } => {
                    if !(200..300).contains(&status) {
                        return Err(ProbeFailure::Status {
                            url: url.clone(),
                            status,
                            expected: "2xx".into(),
                        });
                    }
                    let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                        .collect()
                        .await
                        .map_err(|e| {
                            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                                ProbeFailure::TooLong { url: url.clone() }
                            } else {
                                unreachable(e.to_string())
                            }
                        })?
                        .to_bytes();
                    if regex.is_match(&body[..]) {
                        Ok(())
                    } else {
                        Err(ProbeFailure::Body {
                            url: url.clone(),
                            pattern: pattern.clone(),
                        })
                    }
                }
            }
        };
        let result = request.await;
        drop(connection);
        result
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: &str) -> Result<EcvMonitor, EcvError> {
        EcvMonitor::new(serde_json::from_str(json).expect("options parse"))
    }

    #[test]
    fn bad_options_are_refused_naming_the_field() {
        let cases = [
            (r#"{"url": "https://x:1/"}"#, "ecv `url`"),
            (r#"{"url": "not a url at all"}"#, "ecv `url`"),
            (r#"{"url": "http://127.0.0.1:1/", "validator": 99}"#, "ecv `validator`"),
            (
                r#"{"url": "http://127.0.0.1:1/", "validator": "(unclosed"}"#,
                "ecv `validator`",
            ),
            (
                r#"{"url": "http://127.0.0.1:1/", "validator": true}"#,
                "ecv `validator`",
            ),
            (r#"{"url": "http://127.0.0.1:1/", "interval": 1}"#, "ecv `interval`"),
            (r#"{"url": "http://127.0.0.1:1/", "interval": "2h"}"#, "ecv `interval`"),
            (r#"{"url": "http://127.0.0.1:1/", "timeout": "61s"}"#, "ecv `timeout`"),
            (
                r#"{"url": "http://127.0.0.1:1/", "failuresBeforeDown": 0}"#,
                "ecv `failuresBeforeDown`",
            ),
            (
                r#"{"url": "http://127.0.0.1:1/", "failures_before_down": 1001}"#,
                "ecv `failuresBeforeDown`",
            ),
        ];
        for (json, field) in cases {
            let error = options(json).expect_err(json).to_string();
            assert!(error.starts_with(field), "{json}: {error}");
        }
        let long = format!(
            r#"{{"url": "http://127.0.0.1:1/", "validator": "{}"}}"#,
            "a".repeat(MAX_PATTERN_BYTES + 1)
        );
        assert!(options(&long)
            .expect_err("too long")
            .to_string()
            .contains("at most 4096"));
    }

    #[test]
    fn rotation_says_both_causes() {
        let mut rotation = Rotation::default();
        assert!(rotation.in_rotation());
        assert_eq!(rotation.why(), None);
        rotation.manual = true;
        rotation.monitor = Some("x answered 503".into());
        assert!(!rotation.in_rotation());
        assert_eq!(
            rotation.why().as_deref(),
            Some("marked down by hand; monitor: x answered 503")
        );
    }
}
