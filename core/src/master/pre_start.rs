//! The master's pre-start hook (powerhouse's start hook): user code the master runs before it
//! spawns the first worker of a start, e.g. to migrate a database or warm a shared cache. A hook
//! that fails (or outlives the start timeout) fails the start: no worker is spawned, the master's
//! status is what it was, and the error carries the hook's reason.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{lock, Inner, Master};
use crate::error::Error;

/// A pre-start hook, as [`Master::pre_start`] keeps it.
pub type PreStartHook = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

impl Master {
    /// Has the master run `hook` at each [`Master::start`] (and [`Master::start_again`]), before
    /// its first worker spawns, replacing any hook set before. `Err(reason)`, or a hook still
    /// running after the config's start timeout, fails the start with [`Error::PreStart`] and
    /// spawns nothing.
    ///
    /// ```no_run
    /// # async fn f(master: drover::Master) -> Result<(), drover::Error> {
    /// master.pre_start(|| async {
    ///     std::fs::create_dir_all("/tmp/app-cache").map_err(|e| format!("cache dir: {e}"))
    /// });
    /// master.start().await?;
    /// # Ok(()) }
    /// ```
    pub fn pre_start<F, Fut>(&self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let hook = Arc::new(hook);
        *lock(&self.inner.pre_start) = Some(Arc::new(move || {
            let hook = hook.clone();
            Box::pin(async move { hook().await })
        }));
    }
}

impl Inner {
    /// Runs the pre-start hook, if there is one, within the start timeout.
    pub(super) async fn run_pre_start(&self) -> Result<(), Error> {
        let Some(hook) = lock(&self.pre_start).clone() else {
            return Ok(());
        };
        let timeout = self.config().timeouts.start;
        match tokio::time::timeout(timeout, hook()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Error::PreStart { message }),
            Err(_) => Err(Error::PreStart {
                message: format!("still running after the start timeout ({timeout:?})"),
            }),
        }
    }
}
