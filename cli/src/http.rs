//! The optional HTTP endpoint (`--http ADDR`), on hyper:
//! - `GET /livez`: 200 while drover supervises, through restarts, reloads and a failed group (a
//!   Kubernetes liveness probe: restarting the container would not help then). It is answered by the
//!   same one-thread runtime that supervises: a stuck master answers nothing, and the probe fails.
//! - `GET /readyz`: 200 when every group runs its count of STARTED workers and is in rotation,
//!   else 503 with the groups that are short or out of rotation (ECV: `drover down`, the monitor;
//!   the body says which group and why), and 503 from the moment a shutdown begins (a readiness
//!   probe, a load balancer's health check). `GET /health` is the same, kept for configurations
//!   that use it.
//! - `GET /ecv`: cluster2's ECV probe: 200 `status=AVAILABLE` while every group is in rotation,
//!   else 503 `status=OUT_OF_ROTATION` and why (whatever the workers' count).
//! - `GET /metrics`: Prometheus text.
//! - With `--monitor` only, each behind the token ([`authorize`]): `GET /monitor`, the monitor page
//!   (`monitor.html`: plain HTML and JS, no build step); `GET /api/workers`, what it polls (the
//!   `drover status --json` report); `POST /api/action`, a control request (`{"cmd":"reload",
//!   "group":"web"}`: reload, scale, restart, down, up, as the control socket takes them); `POST
//!   /groups/NAME/down` and `/up`. Without `--monitor` these are 404.
//!
//! Bounded against slow or idle clients (the endpoint may face a network): at most
//! [`MAX_CONNECTIONS`] at once, a connection past that is closed at once, unanswered; the headers
//! of each request (and the next request on a kept-alive connection) must arrive within
//! [`HEADER_TIMEOUT`]; headers are at most [`MAX_HEADER_BYTES`]; a request body at most
//! [`MAX_BODY_BYTES`]; a connection lives at most [`CONNECTION_LIFETIME`] whatever it does. So a
//! slow-loris client holds a few fds for a few seconds, never the master's fd budget.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::control::Request as ControlRequest;
use crate::metrics::group_ready;
use crate::run::Shared;

/// The monitor page: plain HTML and JS, served as it is.
const MONITOR_PAGE: &str = include_str!("monitor.html");

/// The longest request body (the monitor's actions are a line of JSON).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The header that carries the monitor's token (required for actions: a cookie alone is what a
/// cross-site form would send).
pub const TOKEN_HEADER: &str = "x-drover-token";

/// The cookie `/monitor?token=` sets, so that the page's own requests need no token in the URL.
pub const TOKEN_COOKIE: &str = "drover_monitor";

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
                    async move { Ok::<_, std::convert::Infallible>(respond(req, &shared).await) }
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

type Answer = Response<Full<Bytes>>;

fn text(status: StatusCode, content_type: &str, body: String) -> Answer {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Answer {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".into()) + "\n";
    text(status, "application/json", body)
}

async fn respond(req: Request<Incoming>, shared: &Arc<Shared>) -> Answer {
    let path = req.uri().path().to_string();
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    let monitored = path == "/monitor" || path.starts_with("/api/") || path.starts_with("/groups/");
    if monitored {
        let Some(token) = shared.monitor_token.clone() else {
            return text(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: the monitor is off (start drover run with --monitor)\n".into(),
            );
        };
        return monitor(req, shared, &token).await;
    }
    if !is_get {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into());
    }
    match path.as_str() {
        "/livez" => text(StatusCode::OK, "text/plain", "ok: supervising\n".into()),
        "/readyz" | "/health" => readyz(shared),
        "/ecv" => {
            let out = out_of_rotation(shared);
            if out.is_empty() {
                text(StatusCode::OK, "text/plain", "status=AVAILABLE\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("status=OUT_OF_ROTATION\n{}\n", out.join("\n")),
                )
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
            "not found: try /livez, /readyz, /ecv, /metrics or /status/app\n".into(),
        ),
    }
}

/// Each group out of rotation, and why: `web: out of rotation (marked down by hand)`.
fn out_of_rotation(shared: &Shared) -> Vec<String> {
    shared
        .groups
        .iter()
        .filter_map(|(name, m)| m.rotation().why().map(|why| format!("{name}: out of rotation ({why})")))
        .collect()
}

fn readyz(shared: &Shared) -> Answer {
    if shared.stopping() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n".into());
    }
    let mut unready: Vec<String> = shared
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
    unready.extend(out_of_rotation(shared));
    if unready.is_empty() {
        text(StatusCode::OK, "text/plain", "ok\n".into())
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", unready.join("\n") + "\n")
    }
}

/// A fresh monitor token: 128 random bits, in hex.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares without stopping at the first difference (the time taken says nothing of the token).
fn same_token(given: &str, token: &str) -> bool {
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Where a request's token came from, if it has one.
enum Presented {
    Header(String),
    Cookie(String),
    Nothing,
}

fn presented(req: &Request<Incoming>) -> Presented {
    let headers = req.headers();
    if let Some(value) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return Presented::Header(value.trim().to_string());
    }
    let cookie = headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| value.to_string());
    match cookie {
        Some(value) => Presented::Cookie(value),
        None => Presented::Nothing,
    }
}

/// Why the monitor refuses a request.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("unauthorized: the monitor needs its token (the {TOKEN_HEADER} header, or open /monitor?token=TOKEN)")]
    NoToken,
    #[error("forbidden: wrong monitor token")]
    WrongToken,
    #[error("forbidden: an action needs the token in the {TOKEN_HEADER} header, not only the cookie")]
    CookieOnly,
    #[error("payload too large: a request body is at most {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("bad body: {0}")]
    BadBody(String),
}

impl Refused {
    fn answer(&self) -> Answer {
        let status = match self {
            Refused::NoToken => StatusCode::UNAUTHORIZED,
            Refused::WrongToken | Refused::CookieOnly => StatusCode::FORBIDDEN,
            Refused::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refused::BadBody(_) => StatusCode::BAD_REQUEST,
        };
        text(status, "text/plain", format!("{self}\n"))
    }
}

/// Whether a request may use the monitor: not without a token, nor with a wrong one, nor for an
/// action (`needs_header`) whose token came only in the cookie (a cross-site request carries the
/// cookie, never the header).
fn authorize(req: &Request<Incoming>, token: &str, needs_header: bool) -> Result<(), Refused> {
    let (given, from_header) = match presented(req) {
        Presented::Header(given) => (given, true),
        Presented::Cookie(given) => (given, false),
        Presented::Nothing => return Err(Refused::NoToken),
    };
    if !same_token(&given, token) {
        return Err(Refused::WrongToken);
    }
    if needs_header && !from_header {
        return Err(Refused::CookieOnly);
    }
    Ok(())
}

/// The token in `/monitor?token=...`, if any.
fn query_token(req: &Request<Incoming>) -> Option<String> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| value.to_string())
}

async fn monitor(req: Request<Incoming>, shared: &Arc<Shared>, token: &str) -> Answer {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/monitor") => {
            if let Some(given) = query_token(&req) {
                if !same_token(&given, token) {
                    return text(
                        StatusCode::FORBIDDEN,
                        "text/plain",
                        "forbidden: wrong monitor token\n".into(),
                    );
                }
                // The token goes into a cookie and out of the address bar (and its history).
                return Response::builder()
                    .status(StatusCode::SEE_OTHER)
                    .header("location", "/monitor")
                    .header(
                        "set-cookie",
                        format!("{TOKEN_COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict"),
                    )
                    .header("cache-control", "no-store")
                    .body(Full::new(Bytes::new()))
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
            }
            if let Err(refused) = authorize(&req, token, false) {
                return refused.answer();
            }
            // The page sends the token back in the header for its actions; only a page of this
            // origin can read it (the same-origin policy), which is what defeats a forged request.
            let page = MONITOR_PAGE.replace("{{TOKEN}}", token);
            let mut answer = text(StatusCode::OK, "text/html; charset=utf-8", page);
            let headers = answer.headers_mut();
            for (name, value) in [
                (
                    "content-security-policy",
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'",
                ),
                ("x-frame-options", "DENY"),
                ("referrer-policy", "no-referrer"),
                ("x-content-type-options", "nosniff"),
            ] {
                headers.insert(name, hyper::header::HeaderValue::from_static(value));
            }
            answer
        }
        (Method::GET, "/api/workers") => {
            if let Err(refused) = authorize(&req, token, false) {
                return refused.answer();
            }
            json(StatusCode::OK, &shared.status_report().await)
        }
        (Method::POST, "/api/action") => {
            if let Err(refused) = authorize(&req, token, true) {
                return refused.answer();
            }
            let body = match read_body(req).await {
                Ok(body) => body,
                Err(refused) => return refused.answer(),
            };
            let request = match crate::control::parse_request(&body) {
                Ok(request) => request,
                Err(error) => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        &crate::control::Response::failed(error.to_string()),
                    )
                }
            };
            let allowed = matches!(
                request,
                ControlRequest::Reload { .. }
                    | ControlRequest::Scale { .. }
                    | ControlRequest::Restart { .. }
                    | ControlRequest::Down { .. }
                    | ControlRequest::Up { .. }
            );
            if !allowed {
                return json(
                    StatusCode::BAD_REQUEST,
                    &crate::control::Response::failed(
                        "the monitor takes reload, scale, restart, down and up (the control socket takes the rest)",
                    ),
                );
            }
            act(shared, request).await
        }
        (Method::POST, path) if path.starts_with("/groups/") => {
            if let Err(refused) = authorize(&req, token, true) {
                return refused.answer();
            }
            let rest = &path["/groups/".len()..];
            let request = match rest.rsplit_once('/') {
                Some((group, "down")) if !group.is_empty() => ControlRequest::Down {
                    group: group.to_string(),
                },
                Some((group, "up")) if !group.is_empty() => ControlRequest::Up {
                    group: group.to_string(),
                },
                _ => {
                    return text(
                        StatusCode::NOT_FOUND,
                        "text/plain",
                        "not found: POST /groups/NAME/down or /groups/NAME/up\n".into(),
                    )
                }
            };
            act(shared, request).await
        }
        (_, "/monitor" | "/api/workers" | "/api/action") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: the monitor serves /monitor, /api/workers, /api/action, /groups/NAME/down|up\n".into(),
        ),
    }
}

/// Runs a control request as the control socket would (the one implementation), answering its
/// JSON answer: 200 if done, 409 if refused (a group unknown, an operation that failed).
async fn act(shared: &Arc<Shared>, request: ControlRequest) -> Answer {
    shared.log.info(
        "monitor",
        &format!(
            "action from the monitor: {}",
            serde_json::to_string(&request).unwrap_or_default()
        ),
    );
    let _in_flight = shared.in_flight.read().await;
    let response = shared.handle(request).await;
    let status = if response.ok {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    json(status, &response)
}

/// The request's body, at most [`MAX_BODY_BYTES`].
async fn read_body(req: Request<Incoming>) -> Result<Vec<u8>, Refused> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(body) => Ok(body.to_bytes().to_vec()),
        Err(error) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(Refused::TooLarge),
        Err(error) => Err(Refused::BadBody(error.to_string())),
    }
}
