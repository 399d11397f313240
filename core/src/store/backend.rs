//! Where the shared store and cache are kept (PROTOCOL.md §5.6, §5.7), behind one interface.
//!
//! The default, *embedded* backend is the master's own [`Store`](super::Store) and cache, which
//! the master's router drives synchronously under its lock: that is what gives it answers in the
//! order the requests came and a change told before the next write. A backend *outside* the
//! master — [`RedisStore`](super::redis::RedisStore), shared by several masters — implements
//! [`StoreBackend`]: the router hands it every `drover.store.*` and `drover.cache.*` operation
//! (with the same arguments and answers), keeps its own workers' watches and waiting cache
//! callers, and hears every change and every load's end, whichever master made it, through
//! [`StoreBackend::subscribe`].

use futures_util::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use crate::request::RequestError;

/// Changes committed together, in order: each changed path and its new value (`null`: removed).
pub type Changes = Vec<(String, Value)>;

/// How a cache load ended: the value, or why not.
pub type CacheOutcome = Result<Value, RequestError>;

/// What the master asks of a store and cache kept outside it. Every operation's error is a
/// [`RequestError`] the asking worker gets as it is: `unavailable` when the backend cannot be
/// reached, `overloaded` past a bound, `bad_request` for a bad path or argument.
pub trait StoreBackend: Send + Sync + std::fmt::Debug {
    /// `get`, `keys`, `set`, `delete` or `cas` of `path` (the request's `args` for `value` and
    /// `expected`; `ttl` already checked); the result the embedded store would give.
    fn store<'a>(
        &'a self,
        op: &'a str,
        path: &'a str,
        args: &'a Value,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<Value, RequestError>>;

    /// Resolves once changes committed from now on will reach [`StoreBackend::subscribe`]'s
    /// `on_changes` (a watch is answered after this), or fails.
    fn wait_subscribed(&self) -> BoxFuture<'_, Result<(), RequestError>>;

    /// Removes what is past its time, telling the change to every subscriber. Called about once
    /// a second by every master.
    fn sweep(&self) -> BoxFuture<'_, Result<(), RequestError>>;

    /// `get_or_load`: `Some({"value": V})`, `Some({"load": TOKEN})` for the one caller that must
    /// load, or `None`: another caller loads it (its end comes to `on_cache`, or to
    /// [`StoreBackend::cache_poll`]).
    fn cache_get_or_load<'a>(
        &'a self,
        key: &'a str,
        load_timeout: Duration,
    ) -> BoxFuture<'a, Result<Option<Value>, RequestError>>;

    /// For callers waiting on `key`: how its load ended, or `None` while it goes on.
    fn cache_poll<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<CacheOutcome>, RequestError>>;

    /// `fill`: whether `token` still held the load.
    fn cache_fill<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        value: &'a Value,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<bool, RequestError>>;

    /// `fail` (or its loader gone): whether `token` still held the load.
    fn cache_fail<'a>(
        &'a self,
        key: &'a str,
        token: u64,
        error: &'a RequestError,
    ) -> BoxFuture<'a, Result<bool, RequestError>>;

    /// `delete`: whether a loaded value was removed.
    fn cache_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, RequestError>>;

    /// Hears every change and every load's end, from every master sharing the backend, for as
    /// long as `alive` says (the future ends then).
    fn subscribe(
        self: Arc<Self>,
        alive: Box<dyn Fn() -> bool + Send>,
        on_changes: Box<dyn Fn(Changes) + Send>,
        on_cache: Box<dyn Fn(String, CacheOutcome) + Send>,
    ) -> BoxFuture<'static, ()>;

    /// The runtime the backend's connections live in (where a synchronous caller outside any
    /// runtime waits).
    fn runtime(&self) -> &tokio::runtime::Handle;
}
