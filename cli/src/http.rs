//! The optional HTTP endpoint (`--http ADDR`), on hyper:
//! - `GET /health`: 200 when every group runs its count of STARTED workers, else 503 with the
//!   groups that are short (a Kubernetes readiness probe, a load balancer's health check).
//! - `GET /metrics`: Prometheus text.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

use crate::metrics::group_ready;
use crate::run::Shared;

/// Binds `addr`; the server runs until the process ends.
pub async fn serve(addr: &str, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(error) => {
                    shared.log.info("http", &format!("accept failed: {error}"));
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&req, &shared)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}

fn respond(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
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
        "/health" => {
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
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /health or /metrics\n".into(),
        ),
    }
}
