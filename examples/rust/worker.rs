//! A drover worker in Rust: an HTTP/1.1 server with keep-alive that drains without dropping a
//! request, per the recipe of `docs/DRAINING.md`:
//!
//! - it serves the socket the master passed (systemd-style, fd 3) or, with `LISTEN_ADDRESS`,
//!   asks the master for one over the MessageBus;
//! - on `stop` it stops accepting (its copy of the shared socket is dropped: the master's stays
//!   open, new connections go to the other workers), answers every further request on an open
//!   connection with `Connection: close` (the client then opens its next connection elsewhere),
//!   closes a connection only once it has been idle for `IDLE_GRACE` (a client still using it
//!   would have sent by then), and reports STOPPED when the last connection is gone or
//!   `DRAIN_TIMEOUT_MS` (default 10 s) expires.
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
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

/// What the accept loop and the connections share.
struct Drain {
    draining: AtomicBool,
    open: AtomicUsize,
    /// Signalled when `draining` is set and when a connection ends.
    changed: Notify,
}

/// How long a connection must have been idle before a draining worker closes it.
const IDLE_GRACE: Duration = Duration::from_millis(500);

/// When a connection last did anything, and whether a request is in progress.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Activity {
    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.touch();
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    /// Zero while a request is in progress.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.map_or(Duration::MAX, |t| t.elapsed())
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
                        let mut response = Response::new(Full::new(Bytes::from(std::process::id().to_string())));
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
                let conn = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                // While draining, a connection that has sat idle for IDLE_GRACE is one the client
                // has stopped using: close it. A busy one closes itself after its next response.
                let mut closing = false;
                loop {
                    tokio::select! {
                        _ = conn.as_mut() => break,
                        _ = tokio::time::sleep(IDLE_GRACE), if !closing && drain.draining.load(Ordering::SeqCst) => {
                            if activity.idle_for() >= IDLE_GRACE {
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                            }
                        }
                        _ = drain.changed.notified(), if !closing => {}
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
                drain.draining.store(true, Ordering::SeqCst);
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
            BusEvent::Message(_) => {}
            BusEvent::Closed(_) => std::process::exit(0),
        }
    }
}
