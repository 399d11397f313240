//! A drover worker in Rust: an HTTP/1.1 server with keep-alive that drains without dropping a
//! request, per the recipe of `docs/DRAINING.md`:
//!
//! - it serves the socket the master passed (systemd-style, fd 3) or, with `LISTEN_ADDRESS`,
//!   asks the master for one over the MessageBus;
//! - on `stop` it stops accepting (its copy of the shared socket is dropped: the master's stays
//!   open, new connections go to the other workers), answers every further request on an open
//!   connection with `Connection: close` (the client then opens its next connection elsewhere),
//!   closes an idle connection only when no request can be racing the close (none in progress,
//!   none half-read, none in the kernel's receive buffer, and quiet for `IDLE_GRACE` since both its
//!   last response and the stop: a client still using it would have sent by then), and reports
//!   STOPPED when the last connection is gone or `DRAIN_TIMEOUT_MS` (default 10 s) expires.
//!
//! When the master asks for a warm-up (PROTOCOL.md §5.11), it first answers the warm-up GETs with
//! the same handler on a private loopback listener, then takes the shared socket.
//!
//! Each response body is the worker's pid. Run it under a master (`master.rs`, or
//! `tests/tests/http_load.rs`); on its own it says it is not a drover worker.

use drover::{BusEvent, MessageBus};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// What the accept loop and the connections share.
struct Drain {
    draining: AtomicBool,
    /// When the stop arrived (set before `draining`).
    since: OnceLock<Instant>,
    open: AtomicUsize,
    /// Signalled when `draining` is set and when a connection ends.
    changed: Notify,
}

/// How long a connection must have been idle before a draining worker closes it.
const IDLE_GRACE: Duration = Duration::from_millis(500);

/// When a connection last did anything, whether a request is in progress, and what was read.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// Bytes read from the connection, ever; and their number when the last response was made.
    bytes_read: AtomicU64,
    idle_bytes: AtomicU64,
    last: std::sync::Mutex<Option<Instant>>,
}

impl Activity {
    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
    }

    fn end(&self) {
        self.idle_bytes
            .store(self.bytes_read.load(Ordering::SeqCst), Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.touch();
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether a draining worker may close this connection (socket `fd`, stop at `stop`) without
    /// racing a request. hyper's `graceful_shutdown()` closes a connection it considers idle on
    /// the spot, and it considers idle one with a request half-read, or still in the kernel's
    /// buffer: both are checked here.
    fn may_close(&self, fd: RawFd, stop: Instant) -> bool {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return false;
        }
        // Bytes read since the last response: a request is arriving (hyper has part of it).
        if self.bytes_read.load(Ordering::SeqCst) != self.idle_bytes.load(Ordering::SeqCst) {
            return false;
        }
        // A request in the kernel's receive buffer, not read yet.
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int; `fd` is this connection's socket, open while its
        // task (our caller) holds the stream.
        if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } == 0 && queued > 0 {
            return false;
        }
        // Quiet for the grace since the stop too, not only since the last response. The stop
        // itself sets off requests on idle connections: each busy connection gets a
        // `Connection: close` answer within milliseconds, and a pooling client sends its next
        // request at once on another connection from its pool, often one to this worker that sat
        // unused there for longer than the grace. Closing that one at the stop would race the very
        // request the stop caused (the client reads our FIN after writing it).
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        let quiet_since = last.map_or(stop, |t| t.max(stop));
        quiet_since.elapsed() >= IDLE_GRACE
    }
}

/// A connection's stream, counting the bytes hyper reads from it.
struct Counted {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        this.activity.bytes_read.fetch_add(read, Ordering::SeqCst);
        result
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut bus = match MessageBus::connect().await {
        Ok(bus) => bus,
        Err(e) => {
            eprintln!("worker: {e}");
            std::process::exit(2);
        }
    };
    warm_up(&bus).await;
    let std_listener = match std::env::var("LISTEN_ADDRESS") {
        Ok(address) => match bus.listen(&address).await {
            Ok(listening) => std::net::TcpListener::from(listening.fd),
            Err(e) => {
                eprintln!("worker: {e}");
                std::process::exit(3);
            }
        },
        // SAFETY: fd 3 is the socket the master passed (LISTEN_FDS=1), taken once here.
        Err(_) => unsafe { std::net::TcpListener::from_raw_fd(3) },
    };
    std_listener
        .set_nonblocking(true)
        .expect("the socket accepts non-blocking mode");
    let listener = TcpListener::from_std(std_listener).expect("a listening TCP socket");
    let drain = Arc::new(Drain {
        draining: AtomicBool::new(false),
        since: OnceLock::new(),
        open: AtomicUsize::new(0),
        changed: Notify::new(),
    });
    let (stop_accepting, mut accepting) = watch::channel(false);
    let accept_drain = drain.clone();
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                conn = listener.accept() => conn,
                _ = accepting.changed() => break, // drops our copy of the socket
            };
            let Ok((stream, _)) = conn else { continue };
            let drain = accept_drain.clone();
            drain.open.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let activity = Arc::new(Activity::default());
                let service_drain = drain.clone();
                let service_activity = activity.clone();
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let closing = service_drain.draining.load(Ordering::SeqCst);
                    let activity = service_activity.clone();
                    activity.begin();
                    async move {
                        let mut response = app_response();
                        if closing {
                            // hyper closes the connection after writing this response.
                            response
                                .headers_mut()
                                .insert(hyper::header::CONNECTION, "close".parse().expect("valid"));
                        }
                        activity.end();
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let fd = stream.as_raw_fd();
                let stream = Counted {
                    stream,
                    activity: activity.clone(),
                };
                let conn = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                // While draining, every IDLE_GRACE / 4: an idle connection no request can be racing
                // is one the client has stopped using: close it. A busy one closes itself after its
                // next response.
                let mut tick = tokio::time::interval(IDLE_GRACE / 4);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut closing = false;
                loop {
                    // Created before `draining` is read: the stop's notify_waiters() reaches it.
                    let changed = drain.changed.notified();
                    let draining = drain.draining.load(Ordering::SeqCst);
                    tokio::select! {
                        _ = conn.as_mut() => break,
                        _ = tick.tick(), if draining && !closing => {
                            let stop = drain.since.get().copied().unwrap_or_else(Instant::now);
                            if activity.may_close(fd, stop) {
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                            }
                        }
                        // Wakes this loop at the stop (without it, a connection idle at the stop
                        // would stay open until the drain timeout).
                        _ = changed, if !draining => {}
                    }
                }
                drain.open.fetch_sub(1, Ordering::SeqCst);
                drain.changed.notify_waiters();
            });
        }
    });
    bus.send_started().await.expect("the master is there");
    let timeout = Duration::from_millis(
        std::env::var("DRAIN_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000),
    );
    while let Some(event) = bus.recv().await {
        match event {
            BusEvent::Stop => {
                let _ = drain.since.set(Instant::now());
                drain.draining.store(true, Ordering::SeqCst);
                drain.changed.notify_waiters();
                let _ = stop_accepting.send(true);
                let _ = tokio::time::timeout(timeout, async {
                    loop {
                        let changed = drain.changed.notified();
                        if drain.open.load(Ordering::SeqCst) == 0 {
                            break;
                        }
                        changed.await;
                    }
                })
                .await;
                let _ = bus.send_stopped().await;
            }
            BusEvent::Quit => {
                let _ = bus.send_shutted_down().await;
                std::process::exit(0);
            }
            BusEvent::Closed(_) => std::process::exit(0),
            // Messages, and kinds a newer master may send (PROTOCOL.md §13): nothing to do.
            _ => {}
        }
    }
}

/// The app's answer to every request: the worker's pid.
fn app_response() -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from(std::process::id().to_string())))
}

/// The warm-up the master asked for, if any: the app's handler serves a private loopback listener
/// while drover's warm-up client (on a blocking thread) sends it the warm-up GETs.
async fn warm_up(bus: &MessageBus) {
    if bus.meta().warmup.is_none() {
        return;
    }
    let private = match TcpListener::bind("127.0.0.1:0")
        .await
        .and_then(|l| Ok((l.local_addr()?, l)))
    {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!("worker: no warm-up, cannot bind a loopback listener: {e}");
            return;
        }
    };
    let (addr, private) = private;
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = private.accept().await {
            let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, std::convert::Infallible>(app_response())
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    let meta = bus.meta().clone();
    // Blocking (std sockets): on the blocking pool, while this runtime serves the listener.
    if let Ok(Some(report)) = tokio::task::spawn_blocking(move || drover::warmup::for_worker(&meta, addr)).await {
        eprintln!(
            "worker: warmed up with {} of {} requests in {:?}",
            report.done, report.requests, report.elapsed
        );
    }
    server.abort();
}
