//! Warm-up (PROTOCOL.md §5.11): a worker's own HTTP server answers the GETs its master's
//! `warmup` asks for, on a private loopback listener, before the worker takes the shared sockets
//! and reports STARTED.
//!
//! [`run`] is the client half, for any worker library (Rust's [`crate::MessageBus::warm_up`], C's
//! `drover_bus_warm_up()`): `requests` plain HTTP/1.1 `GET path` requests one after the other,
//! each a new connection (`Connection: close`) marked `x-drover-warmup: N`, all within
//! `timeout_ms`. The worker serves them with its own handler; `run` only asks, reads each answer
//! (at most [`MAX_WARMUP_RESPONSE_BYTES`] of it) and reports. It blocks the calling thread, so the
//! server must answer on another thread (or runtime).
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpListener;
//! use drover::protocol::WarmupMeta;
//!
//! // A private loopback server, answering on its own thread.
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//! std::thread::spawn(move || {
//!     for stream in listener.incoming() {
//!         let mut stream = stream.unwrap();
//!         let mut request = [0u8; 1024];
//!         let _ = stream.read(&mut request);
//!         let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
//!     }
//! });
//! let warmup = WarmupMeta { requests: 3, path: "/warm".into(), timeout_ms: 10_000 };
//! let report = drover::warmup::run(&warmup, addr);
//! assert_eq!(report.done, 3);
//! assert!(report.ended_early.is_none());
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::protocol::{WarmupMeta, WorkerMeta};

/// The most bytes of one warm-up response [`run`] reads (status line, headers and body): the rest
/// is not read, the connection is closed and the response counted in [`WarmupReport::cut`].
pub const MAX_WARMUP_RESPONSE_BYTES: usize = 1 << 20;

/// What ended a warm-up before its last request was answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WarmupError {
    /// The warm-up's `timeout_ms` passed before all requests were answered.
    #[error("warm-up timed out: {done} of {requests} requests answered within {timeout_ms} ms")]
    TimedOut {
        /// Requests answered in time.
        done: u32,
        /// Requests asked for.
        requests: u32,
        /// The warm-up's whole duration.
        timeout_ms: u64,
    },
    /// A request could not be sent or its answer read.
    #[error("warm-up request {n} to {addr}: {source}")]
    Io {
        /// The request (1-based).
        n: u32,
        /// The server's address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The server's answer did not start with an HTTP/1.x status line.
    #[error("warm-up request {n} to {addr}: the answer is not HTTP (it starts {start:?})")]
    NotHttp {
        /// The request (1-based).
        n: u32,
        /// The server's address.
        addr: SocketAddr,
        /// The first bytes of the answer (at most 64), lossily decoded.
        start: String,
    },
}

/// What a warm-up did ([`run`]).
#[derive(Debug)]
pub struct WarmupReport {
    /// Requests asked for (the welcome's `requests`).
    pub requests: u32,
    /// Requests answered (with any status).
    pub done: u32,
    /// Answers whose status was not 2xx or 3xx (they do not end the warm-up).
    pub bad_statuses: u32,
    /// The status of the last answer, if any.
    pub last_status: Option<u16>,
    /// Answers of [`MAX_WARMUP_RESPONSE_BYTES`] or more, cut there (counted in `done`).
    pub cut: u32,
    /// What ended the warm-up early; `None` when every request was answered.
    pub ended_early: Option<WarmupError>,
    /// How long the warm-up took.
    pub elapsed: Duration,
}

/// Sends `warmup.requests` `GET warmup.path` requests to `addr` one after the other, within
/// `warmup.timeout_ms` in all, and reports. Never fails: an error or the timeout ends it early
/// ([`WarmupReport::ended_early`]), and the worker goes on.
pub fn run(warmup: &WarmupMeta, addr: SocketAddr) -> WarmupReport {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(warmup.timeout_ms);
    let mut report = WarmupReport {
        requests: warmup.requests,
        done: 0,
        bad_statuses: 0,
        last_status: None,
        cut: 0,
        ended_early: None,
        elapsed: Duration::ZERO,
    };
    for n in 1..=warmup.requests {
        let timed_out = |done| WarmupError::TimedOut {
            done,
            requests: warmup.requests,
            timeout_ms: warmup.timeout_ms,
        };
        let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            report.ended_early = Some(timed_out(report.done));
            break;
        };
        match get(addr, &warmup.path, n, left) {
            Ok(answer) => {
                report.done += 1;
                report.last_status = Some(answer.status);
                if !(200..400).contains(&answer.status) {
                    report.bad_statuses += 1;
                }
                if answer.cut {
                    report.cut += 1;
                }
            }
            Err(GetError::Io(e)) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                report.ended_early = Some(timed_out(report.done));
                break;
            }
            Err(GetError::Io(source)) => {
                report.ended_early = Some(WarmupError::Io { n, addr, source });
                break;
            }
            Err(GetError::NotHttp(start)) => {
                report.ended_early = Some(WarmupError::NotHttp { n, addr, start });
                break;
            }
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// The warm-up a worker's welcome asks for ([`WorkerMeta::warmup`]), run against `addr` and an
/// early end logged as a warning; `None` when it asks for none. What every worker library calls
/// ([`crate::MessageBus::warm_up`], C's `drover_bus_warm_up()`).
pub fn for_worker(meta: &WorkerMeta, addr: SocketAddr) -> Option<WarmupReport> {
    let report = run(meta.warmup.as_ref()?, addr);
    if let Some(error) = &report.ended_early {
        tracing::warn!(
            done = report.done,
            requests = report.requests,
            "{error}; the worker goes on"
        );
    }
    Some(report)
}

struct Answer {
    status: u16,
    cut: bool,
}

enum GetError {
    Io(io::Error),
    NotHttp(String),
}

impl From<io::Error> for GetError {
    fn from(e: io::Error) -> Self {
        GetError::Io(e)
    }
}

/// One `GET path` on a new connection, all within `left`.
fn get(addr: SocketAddr, path: &str, n: u32, left: Duration) -> Result<Answer, GetError> {
    let deadline = Instant::now() + left;
    // What is left of the warm-up bounds each step; zero would mean "no timeout" to std.
    let remaining = || -> io::Result<Duration> {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))
    };
    let mut stream = TcpStream::connect_timeout(&addr, remaining()?)?;
    stream.set_write_timeout(Some(remaining()?))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nx-drover-warmup: {n}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    // Read to the end (the server closes after the answer), never more than the bound: the
    // buffer grows with what arrives, never past MAX_WARMUP_RESPONSE_BYTES.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let cut = loop {
        stream.set_read_timeout(Some(remaining()?))?;
        let read = match stream.read(&mut chunk) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if read == 0 {
            break false;
        }
        let room = MAX_WARMUP_RESPONSE_BYTES - answer.len();
        answer.extend_from_slice(&chunk[..read.min(room)]);
        if read >= room {
            break true;
        }
    };
    status_of(&answer).map(|status| Answer { status, cut }).ok_or_else(|| {
        let start = &answer[..answer.len().min(64)];
        GetError::NotHttp(String::from_utf8_lossy(start).into_owned())
    })
}

/// The status code of an answer that starts `HTTP/1.x NNN`.
fn status_of(answer: &[u8]) -> Option<u16> {
    let rest = answer.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    fn meta(requests: u32, timeout_ms: u64) -> WarmupMeta {
        WarmupMeta {
            requests,
            path: "/warm".into(),
            timeout_ms,
        }
    }

    /// A loopback server answering each connection with `answer`, sending each request's head.
    fn serve(answer: Vec<u8>) -> (SocketAddr, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (heads, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).map(|r| r == 1).unwrap_or(false) {
                    head.push(byte[0]);
                }
                let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                let _ = stream.write_all(&answer);
            }
        });
        (addr, rx)
    }

    #[test]
    fn every_request_is_sent_in_order_marked_with_its_number() {
        let (addr, heads) = serve(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec());
        let report = run(&meta(5, 30_000), addr);
        assert!(report.ended_early.is_none(), "{:?}", report.ended_early);
        assert_eq!(
            (report.done, report.bad_statuses, report.last_status),
            (5, 0, Some(204))
        );
        for n in 1..=5 {
            let head = heads.recv_timeout(Duration::from_secs(30)).expect("a request");
            assert!(head.starts_with("GET /warm HTTP/1.1\r\n"), "{head}");
            assert!(head.contains(&format!("\r\nx-drover-warmup: {n}\r\n")), "{head}");
            assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        }
    }

    #[test]
    fn error_statuses_are_counted_and_do_not_end_the_warm_up() {
        let (addr, _heads) = serve(b"HTTP/1.0 503 Busy\r\n\r\n".to_vec());
        let report = run(&meta(3, 30_000), addr);
        assert!(report.ended_early.is_none());
        assert_eq!(
            (report.done, report.bad_statuses, report.last_status),
            (3, 3, Some(503))
        );
    }

    #[test]
    fn a_server_that_never_answers_ends_the_warm_up_at_its_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        // Accepted by the kernel (backlog), never answered.
        let report = run(&meta(2, 300), addr);
        drop(listener);
        assert_eq!(report.done, 0);
        assert!(
            matches!(
                report.ended_early,
                Some(WarmupError::TimedOut {
                    done: 0,
                    requests: 2,
                    timeout_ms: 300
                })
            ),
            "{:?}",
            report.ended_early
        );
        assert!(report.elapsed >= Duration::from_millis(300), "{:?}", report.elapsed);
    }

    #[test]
    fn an_answer_past_the_bound_is_cut_and_counted() {
        let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        answer.resize(MAX_WARMUP_RESPONSE_BYTES * 3, b'x');
        let (addr, _heads) = serve(answer);
        let report = run(&meta(2, 30_000), addr);
        assert!(report.ended_early.is_none(), "{:?}", report.ended_early);
        assert_eq!((report.done, report.cut, report.last_status), (2, 2, Some(200)));
    }

    #[test]
    fn an_answer_exactly_at_the_bound_is_not_cut() {
        let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        answer.resize(MAX_WARMUP_RESPONSE_BYTES - 1, b'x');
        let (addr, _heads) = serve(answer);
        let report = run(&meta(1, 30_000), addr);
        assert_eq!((report.done, report.cut), (1, 0), "{:?}", report.ended_early);
    }

    #[test]
    fn a_refused_connection_ends_the_warm_up_naming_the_request() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let report = run(&meta(4, 30_000), addr);
        let error = report.ended_early.expect("ended early");
        assert!(matches!(error, WarmupError::Io { n: 1, .. }), "{error:?}");
        assert!(
            error.to_string().starts_with("warm-up request 1 to 127.0.0.1:"),
            "{error}"
        );
    }

    #[test]
    fn an_answer_that_is_not_http_ends_the_warm_up() {
        let (addr, _heads) = serve(b"SSH-2.0-OpenSSH\r\n".to_vec());
        let report = run(&meta(2, 30_000), addr);
        assert!(
            matches!(report.ended_early, Some(WarmupError::NotHttp { n: 1, .. })),
            "{:?}",
            report.ended_early
        );
    }

    #[test]
    fn status_lines_are_parsed_strictly() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 404"), Some(404));
        assert_eq!(status_of(b"HTTP/1.1 2x0 OK"), None);
        assert_eq!(status_of(b"HTTP/2 200"), None);
        assert_eq!(status_of(b""), None);
    }
}
