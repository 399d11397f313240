//! The optional HTTP endpoint (`--http ADDR`), on hyper:
//! - `GET /livez`: 200 while drover supervises, through restarts, reloads and a failed group (a
//!   Kubernetes liveness probe: restarting the container would not help then). It is answered by the
//!   same one-thread runtime that supervises: a stuck master answers nothing, and the probe fails.
//! - `GET /readyz`: 200 when every group runs its count of STARTED workers, else 503 with the
//!   groups that are short, and 503 from the moment a shutdown begins (a readiness probe, a load
//!   balancer's health check). `GET /health` is the same, kept for configurations that use it.
//! - `GET /metrics`: Prometheus text.
//!
//! Bounded against slow or idle clients (the endpoint may face a network): at most
//! [`MAX_CONNECTIONS`] at once, a connection past that is closed at once, unanswered; the headers
//! of each request (and the next request on a kept-alive connection) must arrive within
//! [`HEADER_TIMEOUT`]; headers are at most [`MAX_HEADER_BYTES`]; a connection lives at most
//! [`CONNECTION_LIFETIME`] whatever it does. So a slow-loris client holds a few fds for a few
//! seconds, never the master's fd budget.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::group_ready;
use crate::run::Shared;

/// Connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 128;

/// How long a client has to send a request's headers, from the connection's start or the end of
/// the previous response (an idle kept-alive connection is closed after this).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest request head (request line and headers).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The longest a connection is kept, however busy (a client that never reads its response).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Binds `addr`; the server runs until the process ends.
pub async fn serve(addr: &str, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        // Said once per burst, not once per refused connection: the log is bounded too.
        let mut refused: u64 = 0;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(error) => {
                    // EMFILE and the like: back off instead of spinning on the error.
                    shared.log.info("http", &format!("accept failed: {error}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refused += 1;
                if refused.is_power_of_two() {
                    shared.log.info(
                        "http",
                        &format!("{refused} HTTP connection(s) refused so far: {MAX_CONNECTIONS} already open"),
                    );
                }
                drop(stream);
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&req, &shared).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_header_size(MAX_HEADER_BYTES)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
                drop(slot);
            });
        }
    });
    Ok(local)
}

async fn respond(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into());
    }
    match req.uri().path() {
        "/livez" => text(StatusCode::OK, "text/plain", "ok: supervising\n".into()),
        "/readyz" | "/health" => {
            let short: Vec<String> = shared
                .groups
                .iter()
                .filter(|(_, m)| !group_ready(m))
                .map(|(name, m)| {
                    let started = m
                        .workers()
                        .iter()
                        .filter(|w| w.is_alive() && w.status == drover::WorkerStatus::Started)
                        .count();
                    format!("{name}: {started}/{} STARTED ({})", m.config().count, m.status())
                })
                .collect();
            if short.is_empty() && !shared.stopping() {
                text(StatusCode::OK, "text/plain", "ok\n".into())
            } else if shared.stopping() {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", short.join("\n") + "\n")
            }
        }
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(&shared.groups),
        ),
        "/status/app" => text(
            StatusCode::OK,
            "application/json",
            shared.app_statuses().await.to_string() + "\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /livez, /readyz, /metrics or /status/app\n".into(),
        ),
    }
}
