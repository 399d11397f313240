//! Graceful reload: a new generation of workers replaces the running one, make-before-break.
//!
//! - **All at once** (drover's): start the whole new generation; when every new worker is STARTED,
//!   end the old generation. Peak: old + new.
//! - **Rolling** (k8s-style surge): start `batch` new workers; when they are STARTED, end `batch` old
//!   ones; repeat. Peak: old + batch. At every moment at least min(old count, new count) workers
//!   are STARTED.
//!
//! **Rollback.** A new worker that exits, fails or misses its start timeout stops the reload; it is
//! never assumed ready. The new workers are ended and the old generation keeps serving: with all at
//! once it was never touched; with rolling, every old worker already replaced is first replaced back
//! (a worker on the old config is started before each new one is ended), so the group returns to
//! the old config and count. The error names the worker that failed and why.
//!
//! **One at a time.** A reload asked for while one runs is refused (not queued): a storm of SIGHUPs
//! gives one reload. Rescale and restart-by-id are refused during a reload. A shutdown cancels the
//! reload and wins: it ends every worker, old and half-started new.
//!
//! **Exits during a reload** are the master loop's, by policy (`crate::policy::decide_exit`): a
//! new worker that crashes after it reported STARTED is restarted at once (on the new config),
//! as in any other state; an old worker that crashes is left to the reload, which replaces it,
//! or, if the reload rolls back, restarted once it has. A reload that completes gives the new
//! release a fresh restart-intensity budget.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::arbiter::Op;
use super::operations::{ids_of, instance_count, Place};
use super::{Inner, Master};
use crate::config::MasterConfig;
use crate::error::Error;
use crate::policy::ReloadStrategy;
use crate::status::MasterStatus;
use crate::WorkerId;

impl Master {
    /// Replaces every worker by a new generation, with the current config or `new_config` (a new
    /// release: program, args, env, count...). See the module docs for strategies and rollback.
    ///
    /// Returns when the new generation is STARTED and the old one is reaped; on a failed start, when
    /// the rollback is complete, with [`Error::ReloadRolledBack`].
    pub async fn graceful_reload(&self, new_config: Option<MasterConfig>) -> Result<(), Error> {
        let new_config = new_config.map(MasterConfig::validate).transpose()?;
        self.inner
            .require("graceful_reload", &[MasterStatus::Started, MasterStatus::Failed])?;
        if new_config.is_some() {
            self.inner.end_user_config_override();
        }
        self.submit(Op::Reload {
            config: new_config.map(Box::new),
        })
        .await
    }
}

impl Inner {
    /// [`Master::graceful_reload`], with a validated config.
    pub(super) async fn reload(&self, new_config: Option<MasterConfig>) -> Result<(), Error> {
        self.require("graceful_reload", &[MasterStatus::Started, MasterStatus::Failed])?;
        let previous_status = self.status();
        self.set_status(MasterStatus::Reloading);
        let old_config = self.config();
        let config = new_config.map(Arc::new).unwrap_or_else(|| old_config.clone());
        let old_ids = self.all_ids();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(name = %config.name, generation, old = old_ids.len(), new = config.count, "reload begins");
        let steps = match config.reload {
            ReloadStrategy::AllAtOnce => self.reload_all_at_once(&config, &old_ids, generation).await,
            ReloadStrategy::Rolling { batch } => {
                self.reload_rolling(&old_config, &config, &old_ids, generation, batch)
                    .await
            }
        };
        match steps {
            Ok(()) => {
                self.listeners.set_worker_count(config.count);
                *super::lock(&self.config) = config;
                self.set_status(MasterStatus::Started);
                Ok(())
            }
            Err(cause) => {
                self.set_status(previous_status);
                Err(Error::ReloadRolledBack { cause: Box::new(cause) })
            }
        }
    }

    async fn reload_all_at_once(
        &self,
        config: &Arc<MasterConfig>,
        old: &[WorkerId],
        generation: u64,
    ) -> Result<(), Error> {
        // The new generation fills 0..count beside the old one.
        let new = self.new_places(0..instance_count(config.count));
        if let Err(err) = self.start_many(config, &new, generation).await {
            self.retire(&ids_of(&new), false).await;
            return Err(err);
        }
        self.retire(old, false).await;
        Ok(())
    }

    async fn reload_rolling(
        &self,
        old_config: &Arc<MasterConfig>,
        config: &Arc<MasterConfig>,
        old: &[WorkerId],
        generation: u64,
        batch: usize,
    ) -> Result<(), Error> {
        // Old workers go in instance order, so that each batch replaces the places it fills.
        let mut remaining_old: Vec<WorkerId> = old.to_vec();
        remaining_old.sort_by_key(|&id| (self.instance_of(id), id));
        let mut retired_old = 0usize;
        let mut started_new: Vec<Place> = Vec::new();
        while started_new.len() < config.count {
            let n = batch.min(config.count - started_new.len());
            let first = instance_count(started_new.len());
            let places = self.new_places(first..first.saturating_add(instance_count(n)));
            if let Err(err) = self.start_many(config, &places, generation).await {
                self.retire(&ids_of(&places), false).await;
                self.roll_back(old_config, &started_new, retired_old).await;
                return Err(err);
            }
            started_new.extend(&places);
            let victims: Vec<WorkerId> = remaining_old.drain(..n.min(remaining_old.len())).collect();
            retired_old += victims.len();
            self.retire(&victims, false).await;
        }
        self.retire(&remaining_old, false).await;
        Ok(())
    }

    /// Puts back `count` workers on the old config, one before each new worker is ended (in the
    /// place that one filled).
    async fn roll_back(&self, old_config: &Arc<MasterConfig>, new: &[Place], count: usize) {
        let generation = self.generation.load(Ordering::Relaxed).saturating_sub(1);
        let mut new = new.iter();
        for i in 0..count {
            let instance = new.clone().next().map_or(instance_count(i), |p| p.instance);
            let place = self.new_places([instance]);
            if let Err(err) = self.start_many(old_config, &place, generation).await {
                // The old release no longer starts either: keep the new worker rather than drop capacity.
                tracing::warn!(error = %err, "rollback could not start a worker on the old config");
                self.retire(&ids_of(&place), false).await;
                let _kept = new.next();
                continue;
            }
            if let Some(victim) = new.next() {
                self.retire(&[victim.id], false).await;
            }
        }
        let rest: Vec<WorkerId> = new.map(|p| p.id).collect();
        self.retire(&rest, false).await;
    }
}
