//! The Node.js addon of drover: a thin N-API layer over the Rust core.
//!
//! The npm package `drover` (`index.js` and `lib/` beside this crate) is the API users see; this
//! crate is the native half underneath it and decides nothing about processes, states or the
//! protocol. It only translates:
//!
//! - [`master::NativeMaster`] wraps a core [`drover::Master`]. Operations are promises; the
//!   master's [`drover::Event`]s are serialized (core's serde form) and handed to one JavaScript
//!   callback through one thread-safe function per master. That function starts *unreferenced*;
//!   the JS layer references it only while the master supervises something (or a flush is
//!   pending), so the addon keeps Node's loop alive exactly as long as there is real work.
//! - [`bus::NativeBus`] wraps a core [`drover::MessageBus`] (the worker side), connected with
//!   `auto_heartbeat: false`: the JS layer sends heartbeats from its own timer, so a blocked JS
//!   event loop is seen by the master as a hung worker.
//!
//! Sends are *enqueued synchronously* on the calling (JS) thread — see `start_now` — so two
//! sends made one after the other reach the channel in that order, whatever the runtime does.
//!
//! Every exported body runs under `catch_unwind` (`#[napi(catch_unwind)]` for synchronous ones,
//! `guard` for futures): no panic crosses into Node. Errors cross as JS errors whose message
//! carries a tagged JSON description ([`error`]) that the JS layer turns into drover's classes.

// No unwrap/expect outside tests: what a user or a worker controls is an error, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod bus;
pub mod error;
pub mod host;
pub mod js_call;
pub mod master;
mod request;
pub mod uv;

use futures_util::FutureExt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A future boxed for the runtime.
pub(crate) type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The addon's runtime, made when Node loads the addon: one worker thread (a master's or a bus's
/// work is a few small frames at a time, and every extra thread is resident memory in every Node
/// worker), with drover's busy-poll hook, which does nothing unless a master config or a worker's
/// environment turns busy polling on. If it cannot be built, napi makes its default runtime.
#[napi_derive::module_init]
fn init_runtime() {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("drover")
        .enable_all()
        .on_thread_park(drover::busy_poll::park_hook())
        .build()
    {
        Ok(runtime) => napi::bindgen_prelude::create_custom_tokio_runtime(runtime),
        Err(e) => eprintln!("drover: cannot build the addon's runtime ({e}); using napi's default"),
    }
}

/// Polls `fut` once, now, on the calling thread (inside the addon's tokio runtime context), and
/// gives back either its output or the rest of it.
///
/// Core's send functions enqueue their frame on the first poll and then wait for the writer to
/// report; polling once here therefore fixes the order of frames to the order of the JS calls.
/// A future may be polled again later with another waker: that is part of `Future`'s contract.
pub(crate) fn start_now<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Result<T, Boxed<T>> {
    let mut fut: Boxed<T> = Box::pin(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match napi::bindgen_prelude::within_runtime_if_available(|| fut.as_mut().poll(&mut cx)) {
        Poll::Ready(value) => Ok(value),
        Poll::Pending => Err(fut),
    }
}

/// Runs `fut` with panics turned into an error, so a bug in a future rejects its promise instead
/// of unwinding through the runtime.
pub(crate) async fn guard<T>(fut: impl Future<Output = napi::Result<T>>) -> napi::Result<T> {
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(error::internal(&panic_message(&*panic))),
    }
}

/// The message of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with no message".to_string()
    }
}

/// Core's tables of statuses as JSON, so that the JS package names them from the one place the
/// other faces do: worker statuses with their protocol numbers, master statuses with their codes.
#[napi_derive::napi(catch_unwind)]
pub fn status_tables_json() -> String {
    use drover::{MasterStatus, WorkerStatus};
    serde_json::json!({
        "workers": WorkerStatus::ALL.map(|s| serde_json::json!({ "name": s.name(), "code": s.code() })),
        "masters": MasterStatus::ALL.map(|s| serde_json::json!({ "name": s.name(), "code": s.code() })),
    })
    .to_string()
}

/// The version of the addon (the crate's), for the JS layer to check it loaded the right file.
#[napi_derive::napi(catch_unwind)]
pub fn addon_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
