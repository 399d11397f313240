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
        match action {
            SignalAction::Reload => self.graceful_reload(None).await?,
            SignalAction::GracefulShutdown => self.graceful_shutdown().await?,
            SignalAction::HardShutdown => self.hard_shutdown().await?,
            SignalAction::Ignore => {}
        }
        Ok(action)
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
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let masters: Arc<[Master]> = masters.to_vec().into();
    let mut done = Vec::new();
    for m in masters.iter() {
        done.push(m.watch_status());
    }
    let all_down = async move {
        for mut rx in done {
            let _ = rx.wait_for(|s| *s == MasterStatus::ShutDown).await;
        }
    };
    tokio::pin!(all_down);
    loop {
        let signal = tokio::select! {
            _ = &mut all_down => return Ok(()),
            _ = hup.recv() => libc::SIGHUP,
            _ = term.recv() => libc::SIGTERM,
            _ = int.recv() => libc::SIGINT,
        };
        for master in masters.iter() {
            let master = master.clone();
            // Each action runs on its own, so a second SIGINT can harden a graceful shutdown.
            tokio::spawn(async move {
                if let Err(error) = master.handle_signal(signal).await {
                    tracing::warn!(%error, signal, "signal action failed");
                }
            });
        }
    }
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
