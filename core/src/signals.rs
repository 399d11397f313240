//! Opt-in signal handling, with drover's defaults: SIGHUP reloads, SIGTERM and SIGINT shut down
//! gracefully, a second SIGINT (during that shutdown) shuts down hard.
//!
//! Off unless asked for: as a library drover never installs a signal handler on its own, because a
//! handler, once registered with tokio, stays for the life of the process. A host with its own
//! signal machinery (Node) delivers signals itself through [`Master::handle_signal`].

use std::sync::Arc;

use crate::error::Error;
use crate::master::Master;
use crate::status::MasterStatus;

/// What a signal makes a master do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalAction {
    /// `graceful_reload(None)`.
    Reload,
    /// `graceful_shutdown()`.
    GracefulShutdown,
    /// `hard_shutdown()`.
    HardShutdown,
    /// Nothing.
    Ignore,
}

/// Which signal does what. The default is drover's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalPolicy {
    /// Signals that reload.
    pub reload: Vec<i32>,
    /// Signals that shut down gracefully.
    pub graceful: Vec<i32>,
    /// Signals that, arriving while a shutdown runs, make it hard.
    pub hard_when_repeated: Vec<i32>,
}

impl Default for SignalPolicy {
    fn default() -> SignalPolicy {
        SignalPolicy {
            reload: vec![libc::SIGHUP],
            graceful: vec![libc::SIGTERM, libc::SIGINT],
            hard_when_repeated: vec![libc::SIGINT],
        }
    }
}

impl SignalPolicy {
    /// The action for `signal` when the master is in `status`.
    pub fn action(&self, signal: i32, status: MasterStatus) -> SignalAction {
        let shutting_down = matches!(status, MasterStatus::Stopping | MasterStatus::ShutDown);
        if shutting_down && self.hard_when_repeated.contains(&signal) {
            SignalAction::HardShutdown
        } else if shutting_down {
            SignalAction::Ignore
        } else if self.graceful.contains(&signal) {
            SignalAction::GracefulShutdown
        } else if self.reload.contains(&signal) {
            match status {
                MasterStatus::Started | MasterStatus::Failed => SignalAction::Reload,
                // A reload storm coalesces into the reload that runs; before start there is nothing to reload.
                _ => SignalAction::Ignore,
            }
        } else {
            SignalAction::Ignore
        }
    }
}

impl Master {
    /// Applies drover's signal policy to `signal`, as if the process had received it, and returns
    /// what was done once it is done.
    pub async fn handle_signal(&self, signal: i32) -> Result<SignalAction, Error> {
        let action = SignalPolicy::default().action(signal, self.status());
        tracing::debug!(signal = %crate::signal_name(signal), ?action, "signal");
        self.apply_signal_action(action).await?;
        Ok(action)
    }

    /// Does what `action` says (a policy's decision, [`SignalPolicy::action`]), and returns once
    /// it is done. For a host that decides with a policy of its own, or logs around the action.
    pub async fn apply_signal_action(&self, action: SignalAction) -> Result<(), Error> {
        match action {
            SignalAction::Reload => self.graceful_reload(None).await,
            SignalAction::GracefulShutdown => self.graceful_shutdown().await,
            SignalAction::HardShutdown => self.hard_shutdown().await,
            SignalAction::Ignore => Ok(()),
        }
    }
}

/// SIGHUP, SIGTERM and SIGINT as a stream of their numbers. Creating it installs tokio's handlers
/// for the three, which stay for the life of the process (tokio never removes one): only a
/// program that owns its process (the `drover` binary, a supervisor's `main`) makes one.
#[derive(Debug)]
pub struct SignalStream {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl SignalStream {
    /// Installs the handlers. Must be called within a tokio runtime.
    pub fn new() -> std::io::Result<SignalStream> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(SignalStream {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal received (one of each kind is kept while nobody waits).
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.hup.recv() => libc::SIGHUP,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.int.recv() => libc::SIGINT,
        }
    }
}

/// Resolves once every master in `masters` is SHUT_DOWN.
pub async fn all_shut_down(masters: &[Master]) {
    for mut rx in masters.iter().map(Master::watch_status) {
        let _ = rx.wait_for(|s| *s == MasterStatus::ShutDown).await;
    }
}

/// Hands every signal from `signals` to `on_signal` until every master in `masters` is shut
/// down. Each future `on_signal` gives runs as its own task, so that a second SIGINT can harden
/// a graceful shutdown that is still running.
pub async fn dispatch_until_shut_down<F, Fut>(signals: &mut SignalStream, masters: &[Master], on_signal: F)
where
    F: FnMut(i32) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    dispatch_until(signals, all_shut_down(masters), on_signal).await
}

/// Hands every signal from `signals` to `on_signal` until `done` resolves: for a host whose end
/// is more than its masters being shut down (the `drover` command: a group stopped on its own may
/// be started again). Each future `on_signal` gives runs as its own task.
pub async fn dispatch_until<D, F, Fut>(signals: &mut SignalStream, done: D, mut on_signal: F)
where
    D: std::future::Future<Output = ()>,
    F: FnMut(i32) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::pin!(done);
    loop {
        tokio::select! {
            _ = &mut done => return,
            signal = signals.recv() => {
                tokio::spawn(on_signal(signal));
            }
        }
    }
}

/// Installs handlers for SIGHUP, SIGTERM and SIGINT that apply drover's policy to every master in
/// `masters`, and resolves once they are all shut down by a signal. The handlers stay installed for
/// the life of the process (tokio never removes one). Must be called within a tokio runtime.
///
/// ```no_run
/// # async fn run(master: drover::Master) -> std::io::Result<()> {
/// master.start().await.expect("workers started");
/// drover::signals::run_until_signalled(&[master]).await?; // HUP reloads, TERM/INT end it
/// # Ok(()) }
/// ```
pub async fn run_until_signalled(masters: &[Master]) -> std::io::Result<()> {
    let mut signals = SignalStream::new()?;
    let all: Arc<[Master]> = masters.to_vec().into();
    dispatch_until_shut_down(&mut signals, masters, move |signal| {
        let all = all.clone();
        async move {
            for master in all.iter() {
                let master = master.clone();
                // Each master on its own: one slow reload does not hold back the others.
                tokio::spawn(async move {
                    if let Err(error) = master.handle_signal(signal).await {
                        tracing::warn!(%error, signal, "signal action failed");
                    }
                });
            }
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drovers_signal_policy() {
        let p = SignalPolicy::default();
        assert_eq!(p.action(libc::SIGHUP, MasterStatus::Started), SignalAction::Reload);
        assert_eq!(p.action(libc::SIGHUP, MasterStatus::Reloading), SignalAction::Ignore);
        assert_eq!(
            p.action(libc::SIGTERM, MasterStatus::Started),
            SignalAction::GracefulShutdown
        );
        assert_eq!(
            p.action(libc::SIGINT, MasterStatus::Reloading),
            SignalAction::GracefulShutdown
        );
        assert_eq!(
            p.action(libc::SIGINT, MasterStatus::Stopping),
            SignalAction::HardShutdown
        );
        assert_eq!(p.action(libc::SIGTERM, MasterStatus::Stopping), SignalAction::Ignore);
        assert_eq!(p.action(libc::SIGUSR1, MasterStatus::Started), SignalAction::Ignore);
    }
}
