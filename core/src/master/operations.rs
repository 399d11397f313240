//! The lifecycle operations (start, restart a worker, rescale, shutdown, recycle one worker) and
//! the slot-table steps they are made of. The reload is in `reload.rs`.
//!
//! Each operation is a future that the master's loop (`arbiter.rs`) runs, one at a time, while it
//! keeps handling exits and restarts; a shutdown cancels the running one by dropping it. So an
//! operation never sees a cancellation: it is simply not polled again, and the shutdown that
//! follows ends whatever it had spawned.
//!
//! **Who may put a process in a slot.** A slot takes a new process only in place of the one its
//! spawner meant to replace (or, for a new id, only if the slot does not exist yet), and never
//! while an operation retires it ([`Inner::install`]). A restart by policy and an operation that
//! race for the same worker therefore never both keep a process: the loser ends the one it made.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::events::{Event, WorkerFailure};
use super::worker::{spawn_worker, WorkerHandle, WorkerInfo, WorkerSpec};
use super::{lock, Inner, Slot};
use crate::config::MasterConfig;
use crate::error::{Error, StartFailure};
use crate::status::{MasterStatus, WorkerStatus};
use crate::WorkerId;

/// Where a new worker goes: its id and the instance index it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Place {
    pub id: WorkerId,
    pub instance: u32,
}

/// What [`Inner::declared_sockets`] gives a worker.
struct DeclaredSockets {
    /// Its fds 3.., with their names.
    sockets: Vec<(String, Arc<std::os::fd::OwnedFd>)>,
    /// The `reuseport` listeners among them.
    slotted: Vec<Arc<crate::listen::Listener>>,
}

/// The ids of `places`.
pub(super) fn ids_of(places: &[Place]) -> Vec<WorkerId> {
    places.iter().map(|p| p.id).collect()
}

/// The instance indexes of a group of `count` workers: `0..count` (at most
/// [`crate::config::MAX_WORKERS`], so it fits).
pub(super) fn instance_count(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

impl Inner {
    /// The declared sockets of `config` a worker of `instance` inherits, bound now if they are
    /// not yet, in declaration order (a `reuseport` socket's: that instance's slot); and the
    /// `reuseport` ones, whose slot the worker holds once it has a pid.
    fn declared_sockets(&self, config: &MasterConfig, instance: u32) -> Result<DeclaredSockets, Error> {
        let mut sockets = Vec::with_capacity(config.listen.len());
        let mut slotted = Vec::new();
        for (i, spec) in config.listen.iter().enumerate() {
            let balance = spec.balance.unwrap_or(config.balance);
            let listener = self
                .listeners
                .get_or_bind(&spec.addr, crate::listen::Holder::Declared, balance)
                .map_err(Error::Listen)?;
            if listener.balance.master_accepts() {
                // The master accepts its connections: workers ask for it (`listen`) and get
                // them one by one, never the socket at fd 3.. to accept on.
                continue;
            }
            let name = spec.name.clone().unwrap_or_else(|| format!("listen{i}"));
            let fd = listener.socket_for(instance, None).map_err(Error::Listen)?;
            sockets.push((name, fd));
            if listener.slots.is_some() {
                slotted.push(listener);
            }
        }
        Ok(DeclaredSockets { sockets, slotted })
    }

    /// Spawns a process for worker `id` (not yet in the table: see [`Inner::install`]).
    pub(super) async fn spawn(
        &self,
        config: &Arc<MasterConfig>,
        id: WorkerId,
        instance: u32,
        restarts: u32,
        generation: u64,
    ) -> Result<WorkerHandle, Error> {
        let DeclaredSockets {
            sockets: inherited,
            slotted,
        } = self.declared_sockets(config, instance)?;
        let (user_config_version, config) = self.with_latest_user_config(config);
        let config = &config;
        let spec = WorkerSpec {
            id,
            instance,
            restarts,
            generation,
            config: config.clone(),
            inherited,
            slotted,
            listeners: self.listeners.clone(),
            router: Some(self.router.clone()),
            host: lock(&self.host).clone(),
        };
        let spawned = spawn_worker(spec, self.events.clone()).await;
        spawned
            .map(|h| h.with_user_config_version(user_config_version))
            .map_err(|failure| {
                self.events.emit(Event::Failed {
                    id,
                    pid: None,
                    failure: failure.clone(),
                });
                Error::Start {
                    id,
                    pid: None,
                    failure: StartFailure::Failed(failure),
                }
            })
    }

    /// Puts `handle` in slot `id` in place of the process `replaces` (`None`: a new worker, whose
    /// slot must not exist yet). False if the slot moved on meanwhile (another process took it,
    /// it was removed) or is being retired: the caller ends the process it made.
    pub(super) fn install(
        &self,
        id: WorkerId,
        handle: &WorkerHandle,
        replaces: Option<u32>,
        restarts: u32,
        generation: u64,
        config: &Arc<MasterConfig>,
    ) -> bool {
        let mut slots = lock(&self.slots);
        match (slots.get_mut(&id), replaces) {
            (None, None) => {
                let slot = Slot {
                    handle: handle.clone(),
                    instance: handle.info().instance,
                    restarts,
                    generation,
                    config: config.clone(),
                    retiring: false,
                };
                slots.insert(id, slot);
                self.catch_up_user_config(handle);
                true
            }
            (Some(slot), Some(pid)) if !slot.retiring && slot.handle.info().pid == pid => {
                slot.handle = handle.clone();
                slot.restarts = restarts;
                slot.config = config.clone();
                self.catch_up_user_config(handle);
                true
            }
            _ => false,
        }
    }

    /// Spawns a worker into its slot and waits until it is STARTED; an error names the worker and
    /// why. If the slot moved on meanwhile (an automatic restart replaced `replaces` first), the
    /// process made here is ended: the worker was restarted all the same.
    async fn start_one(
        &self,
        config: &Arc<MasterConfig>,
        Place { id, instance }: Place,
        restarts: u32,
        generation: u64,
        replaces: Option<u32>,
    ) -> Result<(), Error> {
        let handle = self.spawn(config, id, instance, restarts, generation).await?;
        if !self.install(id, &handle, replaces, restarts, generation, config) {
            handle.kill();
            handle.wait_exit().await;
            return Ok(());
        }
        let info = handle.wait_settled().await;
        if info.status == WorkerStatus::Started && info.is_alive() {
            return Ok(());
        }
        let failure = match (info.failure, info.exit) {
            (Some(failure), _) => StartFailure::Failed(failure),
            (None, Some(exit)) => StartFailure::Exited(exit.reason),
            (None, None) => StartFailure::Failed(WorkerFailure::Reported),
        };
        Err(Error::Start {
            id,
            pid: Some(info.pid),
            failure,
        })
    }

    /// Starts new workers at `places` concurrently; the first failure wins (the others keep
    /// their slots).
    pub(super) async fn start_many(
        &self,
        config: &Arc<MasterConfig>,
        places: &[Place],
        generation: u64,
    ) -> Result<(), Error> {
        let starts = places
            .iter()
            .map(|&place| self.start_one(config, place, 0, generation, None));
        futures_util::future::try_join_all(starts).await.map(|_| ())
    }

    /// New workers, one per instance index in `instances`, each under a new id.
    pub(super) fn new_places(&self, instances: impl IntoIterator<Item = u32>) -> Vec<Place> {
        instances
            .into_iter()
            .map(|instance| Place {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                instance,
            })
            .collect()
    }

    /// The `n` lowest instance indexes no worker fills (retiring workers' count as free).
    pub(super) fn free_instances(&self, n: usize) -> Vec<u32> {
        let taken: std::collections::BTreeSet<u32> = lock(&self.slots)
            .values()
            .filter(|s| !s.retiring)
            .map(|s| s.instance)
            .collect();
        (0u32..).filter(|i| !taken.contains(i)).take(n).collect()
    }

    /// The instance index of worker `id`, if it is in the table.
    pub(super) fn instance_of(&self, id: WorkerId) -> Option<u32> {
        lock(&self.slots).get(&id).map(|s| s.instance)
    }

    /// Ends the given workers gracefully (or kills them), concurrently, and removes them from the
    /// table once reaped. From the first step their slots take no new process.
    pub(super) async fn retire(&self, ids: &[WorkerId], hard: bool) {
        let handles: Vec<WorkerHandle> = {
            let mut slots = lock(&self.slots);
            ids.iter()
                .filter_map(|id| {
                    let slot = slots.get_mut(id)?;
                    slot.retiring = true;
                    Some(slot.handle.clone())
                })
                .collect()
        };
        for h in &handles {
            if hard {
                h.kill()
            } else {
                h.retire()
            }
        }
        futures_util::future::join_all(handles.iter().map(|h| h.wait_exit())).await;
        let mut slots = lock(&self.slots);
        for id in ids {
            slots.remove(id);
        }
    }

    pub(super) fn all_ids(&self) -> Vec<WorkerId> {
        lock(&self.slots).keys().copied().collect()
    }

    /// [`crate::Master::start`], from the statuses `from` (`start_again` adds `ShutDown`).
    pub(super) async fn start(&self, from: &[MasterStatus]) -> Result<(), Error> {
        self.require("start", from)?;
        let previous = self.status();
        self.set_status(MasterStatus::Starting);
        if let Err(err) = self.run_pre_start().await {
            self.set_status(previous);
            return Err(err);
        }
        let config = self.config();
        // Every declared socket is bound before the first worker exists: a port in use is a start
        // error, not a crash loop.
        self.listeners.set_worker_count(config.count);
        if let Err(err) = self.declared_sockets(&config, 0) {
            self.set_status(previous);
            return Err(err);
        }
        let places = self.new_places(0..instance_count(config.count));
        let generation = self.generation.load(Ordering::Relaxed);
        match self.start_many(&config, &places, generation).await {
            Ok(()) => {
                self.set_status(MasterStatus::Started);
                Ok(())
            }
            Err(err) => {
                tracing::debug!(error = %err, "start failed; ending the workers it spawned");
                self.retire(&self.all_ids(), false).await;
                self.set_status(MasterStatus::Stopped);
                Err(err)
            }
        }
    }

    /// [`crate::Master::restart_worker`].
    pub(super) async fn restart_worker(&self, id: WorkerId) -> Result<(), Error> {
        self.require("restart_worker", &[MasterStatus::Started])?;
        let (handle, instance, restarts, generation, config) = {
            let slots = lock(&self.slots);
            let slot = slots.get(&id).ok_or(Error::UnknownWorker { id })?;
            (
                slot.handle.clone(),
                slot.instance,
                slot.restarts,
                slot.generation,
                slot.config.clone(),
            )
        };
        handle.retire();
        let old = handle.wait_exit().await;
        let place = Place { id, instance };
        self.start_one(&config, place, restarts + 1, generation, Some(old.pid))
            .await
    }

    /// [`crate::Master::rescale`].
    pub(super) async fn rescale(&self, count: usize) -> Result<(), Error> {
        self.require("rescale", &[MasterStatus::Started])?;
        let config = self.config();
        let current: Vec<WorkerInfo> = self.workers();
        if count > current.len() {
            let places = self.new_places(self.free_instances(count - current.len()));
            let generation = self.generation.load(Ordering::Relaxed);
            if let Err(err) = self.start_many(&config, &places, generation).await {
                self.retire(&ids_of(&places), false).await;
                return Err(err);
            }
        } else if count < current.len() {
            // Before the workers go: their `reuseport` slots then close as they exit.
            self.listeners.set_worker_count(count);
            let mut victims = current;
            // Dead and failed workers first, then the highest instances (so that the others
            // keep filling 0..count).
            victims.sort_by_key(|w| {
                (
                    w.is_alive() && w.status != WorkerStatus::Failed,
                    std::cmp::Reverse(w.instance),
                    std::cmp::Reverse(w.id),
                )
            });
            let ids: Vec<WorkerId> = victims.iter().take(victims.len() - count).map(|w| w.id).collect();
            self.retire(&ids, false).await;
        }
        self.listeners.set_worker_count(count);
        self.update_config(|c| c.count = count);
        Ok(())
    }

    pub(super) fn update_config(&self, change: impl FnOnce(&mut MasterConfig)) {
        let mut config = lock(&self.config);
        let mut next = (**config).clone();
        change(&mut next);
        *config = Arc::new(next);
    }

    /// [`crate::Master::graceful_shutdown`] and [`crate::Master::hard_shutdown`] (the loop has
    /// already killed every worker for a hard one, and cancelled the running operation).
    pub(super) async fn shutdown(&self, hard: bool) -> Result<(), Error> {
        if self.status() == MasterStatus::ShutDown {
            return Ok(());
        }
        self.set_status(MasterStatus::Stopping);
        self.retire(&self.all_ids(), hard).await;
        self.listeners.close_all().await;
        self.set_status(MasterStatus::ShutDown);
        Ok(())
    }

    /// Replaces worker `victim` (too old or too big), make-before-break: a successor is started,
    /// and only once it is STARTED is `victim` ended, so capacity never drops (cluster2's death
    /// queue). If the successor does not start, the victim keeps serving.
    pub(super) async fn recycle(&self, victim: WorkerId) -> Result<(), Error> {
        if self.status() != MasterStatus::Started {
            return Ok(());
        }
        let config = self.config();
        let Some(instance) = self.instance_of(victim) else {
            return Ok(());
        };
        // The successor fills the victim's place.
        let successor = self.new_places([instance]);
        let generation = self.generation.load(Ordering::Relaxed);
        match self.start_many(&config, &successor, generation).await {
            Ok(()) => self.retire(&[victim], false).await,
            Err(err) => {
                tracing::warn!(error = %err, id = victim, "recycling: the successor did not start; keeping the worker");
                self.retire(&ids_of(&successor), false).await;
            }
        }
        Ok(())
    }
}
