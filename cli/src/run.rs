//! `drover run`: validate everything, bind the control socket (and the HTTP endpoint), start every
//! group, then serve signals and control requests until every group is shut down.
//!
//! Every lifecycle decision is core's: drover's signal policy ([`SignalPolicy`]), reload with
//! rollback, restart policies, shutdown escalation. This file wires them to the outside world and
//! logs what happens.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use drover::signals::SignalStream;
use drover::{Event, Events, Master, MasterStatus, OutputLines, SignalAction, SignalPolicy, Subject, WorkerStatus};

use crate::config::{self, OnGroupFailure, Plan};
use crate::control::{self, GroupReport, Request, Response, StatusReport, WorkerRef, WorkerReport};
use crate::logs::{Log, LogOptions, Who};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::usage::CpuRates;
use crate::{fdlimit, http, procinfo, reaper, usage, watchdog, RunArgs};

/// How long `drover status --app` and `/status/app` wait for the workers' status functions.
const APP_STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// The exits kept per group for `status` and the monitor page (the newest; older ones go).
pub const RECENT_EXITS: usize = 10;

/// Exit code for a configuration drover refuses (nothing was started).
const BAD_CONFIG: u8 = 2;

/// Exit code when a group failed for good and `--on-group-failure exit` (the default) ended the
/// run: it gave up restarting, or every worker exited and none is being restarted.
pub const GROUP_FAILED: u8 = 3;

/// What the control socket, the HTTP endpoint, the signal handler and the event forwarders share.
pub struct Shared {
    pub groups: Vec<(String, Master)>,
    /// The config file, read again at each reload (none when the group came from the command line).
    source: Option<config::Source>,
    /// Each group's options as last applied, to say what a reload changes; and its cron schedule.
    applied: std::sync::Mutex<std::collections::HashMap<String, (drover::MasterOptions, CronSender)>>,
    pub metrics: Metrics,
    pub log: Log,
    pub notify: Notifier,
    /// Control requests hold a read guard while they run; the exit waits for them to answer.
    pub in_flight: tokio::sync::RwLock<()>,
    stopping: AtomicBool,
    /// What a group that fails for good does to the run.
    on_group_failure: OnGroupFailure,
    /// The run's exit code once a group failed for good (0: none did).
    failure_code: AtomicU8,
    /// Groups whose every worker exited with none being restarted, until one starts again.
    emptied: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Poked when the run may be over: a group's status changed, or the run began stopping.
    maybe_finished: tokio::sync::Notify,
    /// Per group, the long operation under way (from the event stream): its name and how many
    /// workers reported STARTED since it began.
    progress: std::sync::Mutex<std::collections::HashMap<String, (&'static str, usize)>>,
    /// Workers' recent CPU use, for `status`.
    cpu: CpuRates,
    /// Per group, its last [`RECENT_EXITS`] exits in words, newest last.
    recent_exits: std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<String>>>,
    /// Each group's ECV monitor, running while it is here (replaced when a reload changes it).
    ecv: std::sync::Mutex<std::collections::HashMap<String, (drover::ecv::EcvMonitor, drover::EcvGuard)>>,
    /// The monitor page's token; `None`: the monitor is off.
    pub monitor_token: Option<String>,
}

pub fn main(args: RunArgs) -> ExitCode {
    let plan = match config::plan(&args) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("drover: {error}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    if args.check {
        for warning in &plan.warnings {
            eprintln!("drover: warning: {warning}");
        }
        for group in &plan.groups {
            let c = &group.config;
            println!("{}: {} worker(s) of {}", group.name, c.count, c.program.display());
        }
        for key in &plan.ignored {
            println!("ignored: {key}: {}", crate::pm2::why_ignored(key));
        }
        return ExitCode::SUCCESS;
    }
    // `drover: master GROUP,...` in ps; while single-threaded, the arguments read (see
    // `set_own_title`). A failure only leaves the old name.
    let title = drover::title::master_title(plan.groups.iter().map(|g| g.name.as_str()));
    if let Err(error) = drover::title::set_own_title(&title) {
        eprintln!("drover: warning: the process title could not be set: {error}");
    }
    // One thread: a supervisor's work is a few frames, signals and timers at a time, and every
    // thread is resident memory beside the workers. It is also the thread parked on the I/O
    // driver, which busy polling needs (inert unless a group sets `busyPollUs`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(drover::busy_poll::park_hook())
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("drover: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Before the first fd is opened; told in the log once it runs.
    let raised_fd_limit = fdlimit::raise();
    runtime.block_on(run(args, plan, raised_fd_limit))
}

async fn run(args: RunArgs, plan: Plan, raised_fd_limit: Option<String>) -> ExitCode {
    let socket_path = control::socket_path(&crate::SocketArg {
        socket: plan.socket.clone(),
    });
    let socket = if args.no_socket {
        None
    } else {
        match control::server::bind(&socket_path) {
            Ok(socket) => Some(socket),
            Err(error) => {
                eprintln!("drover: {error}");
                return ExitCode::FAILURE;
            }
        }
    };
    let log_options = LogOptions {
        format: plan.log_format,
        timestamps: args.timestamps,
        file: args.log_file.clone().map(|path| crate::log_file::FileOptions {
            path,
            max_bytes: args.log_file_size,
            keep: args.log_files,
        }),
    };
    let log = match Log::start(&log_options) {
        Ok(log) => log,
        Err(error) => {
            eprintln!("drover: {error}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    // From here on every word to stderr goes through the log's printer: a stderr nobody reads
    // must not block the master. `fail` waits a bounded time for it before returning.
    let fail = |code: ExitCode, message: String| {
        log.error(&message);
        log.flush(Duration::from_secs(3));
        code
    };
    if let Some(message) = raised_fd_limit {
        log.info("fd-limit", &message);
    }
    // Whether a worker's child that leaves its process group is stopped with it (README, Containment).
    log.info(
        "containment",
        &format!("workers are contained by {}", drover::containment()),
    );
    let pid1 = std::process::id() == 1;
    if pid1 || args.subreaper {
        if let Err(error) = reaper::become_subreaper() {
            return fail(ExitCode::FAILURE, format!("cannot become a subreaper: {error}"));
        }
        tokio::spawn(reaper::run(log.clone()));
    }

    if let Some(source) = &plan.source {
        for key in &plan.ignored {
            log.info(
                "config",
                &format!(
                    "{}: ignored {key}: {}",
                    source.path.display(),
                    crate::pm2::why_ignored(key)
                ),
            );
        }
    }
    let mut groups = Vec::new();
    let mut feeds = Vec::new();
    let mut applied = std::collections::HashMap::new();
    let mut crons = Vec::new();
    let mut ecv = std::collections::HashMap::new();
    for group in plan.groups {
        let master = match Master::new(group.config) {
            Ok(master) => master,
            Err(error) => {
                return fail(ExitCode::from(BAD_CONFIG), format!("group {}: {error}", group.name));
            }
        };
        if let Some(monitor) = group.ecv {
            log.info(
                "ecv",
                &format!(
                    "group {}: ECV monitor probes {} every {:?} (out of rotation after {} failure(s))",
                    group.name,
                    monitor.url(),
                    monitor.interval(),
                    monitor.failures_before_down()
                ),
            );
            let guard = master.monitor_ecv(monitor.clone());
            ecv.insert(group.name.clone(), (monitor, guard));
        }
        if let Some(command) = group.pre_start {
            crate::pre_start::install(&master, command, &master.config());
        }
        feeds.push((group.name.clone(), master.events(), master.output()));
        let (cron_tx, cron_rx) = tokio::sync::watch::channel(group.cron_restart);
        crons.push((group.name.clone(), master.clone(), cron_rx));
        applied.insert(group.name.clone(), (group.options, cron_tx));
        groups.push((group.name, master));
    }
    let monitor_token = match (plan.monitor.enabled, &plan.monitor.token) {
        (false, _) => None,
        (true, Some(token)) => Some(token.clone()),
        (true, None) => match http::new_token() {
            Ok(token) => Some(token),
            Err(error) => return fail(ExitCode::FAILURE, format!("--monitor: cannot make a token: {error}")),
        },
    };
    let shared = Arc::new(Shared {
        groups,
        source: plan.source.clone(),
        applied: std::sync::Mutex::new(applied),
        metrics: Metrics::default(),
        log: log.clone(),
        notify: Notifier::from_env(log.clone()),
        in_flight: tokio::sync::RwLock::new(()),
        stopping: AtomicBool::new(false),
        on_group_failure: plan.on_group_failure,
        failure_code: AtomicU8::new(0),
        emptied: Default::default(),
        maybe_finished: tokio::sync::Notify::new(),
        progress: Default::default(),
        cpu: CpuRates::default(),
        recent_exits: Default::default(),
        ecv: std::sync::Mutex::new(ecv),
        monitor_token,
    });
    for warning in &plan.warnings {
        log.info("warning", warning);
    }
    for (_, master) in &shared.groups {
        let mut status = master.watch_status();
        let shared = shared.clone();
        tokio::spawn(async move {
            while status.changed().await.is_ok() {
                shared.maybe_finished.notify_one();
            }
        });
    }
    for (name, events, output) in feeds {
        tokio::spawn(forward(shared.clone(), name, events, output));
    }
    tokio::spawn(report_drops(shared.clone()));
    for (name, master, cron) in crons {
        tokio::spawn(cron_restarts(shared.clone(), name, master, cron));
    }
    tokio::spawn(sample_cpu(shared.clone()));
    if let Some(every) = watchdog::pet_interval() {
        log.info(
            "watchdog",
            &format!("systemd watchdog: WATCHDOG=1 every {}ms", every.as_millis()),
        );
        tokio::spawn(watchdog::run(shared.notify.clone(), every));
    }

    if let Some(addr) = &plan.http {
        match http::serve(addr, shared.clone()).await {
            Ok(local) => {
                log.info(
                    "http",
                    &format!("http listening on {local} (/livez, /readyz, /health, /ecv, /metrics)"),
                );
                if let Some(token) = &shared.monitor_token {
                    // Said once, to whoever started drover: the way into the monitor.
                    let shown = if plan.monitor.token.is_some() {
                        "TOKEN"
                    } else {
                        token.as_str()
                    };
                    log.info(
                        "monitor",
                        &format!("monitor page: http://{local}/monitor?token={shown}"),
                    );
                }
            }
            Err(error) => {
                return fail(ExitCode::FAILURE, format!("--http {addr}: {error}"));
            }
        }
    }
    match socket {
        Some(socket) => {
            log.info("control", &format!("control socket {}", socket_path.display()));
            tokio::spawn(control::server::serve(socket, shared.clone()));
        }
        None => log.info(
            "control",
            "no control socket (--no-socket): signals, /metrics and the log are the way in",
        ),
    }

    let mut signals = match SignalStream::new() {
        Ok(s) => s,
        Err(error) => {
            return fail(ExitCode::FAILURE, format!("cannot handle signals: {error}"));
        }
    };

    // Start every group at once; one that cannot start ends the run (after ending the others).
    let starts = shared.groups.clone().into_iter().map(|(name, master)| {
        let shared = shared.clone();
        async move {
            let name = name.as_str();
            let config = master.config();
            shared.log.event(
                Who {
                    group: name,
                    id: None,
                    pid: None,
                },
                "starting",
                &format!("starting {} worker(s) of {}", config.count, config.program.display()),
            );
            let began = Instant::now();
            let result = master.start().await;
            match &result {
                Ok(()) => shared.log.event(
                    Who {
                        group: name,
                        id: None,
                        pid: None,
                    },
                    "started",
                    &format!(
                        "{0}/{0} workers STARTED in {1:.2}s",
                        config.count,
                        began.elapsed().as_secs_f64()
                    ),
                ),
                Err(error) => shared.log.event(
                    Who {
                        group: name,
                        id: None,
                        pid: None,
                    },
                    "start-failed",
                    &format!("start failed: {error}"),
                ),
            }
            result.map_err(|e| format!("group {name} did not start: {e}"))
        }
    });
    let started = tokio::select! {
        results = futures_join_all(starts) => results.into_iter().collect::<Result<Vec<()>, String>>(),
        signal = signals.recv() => Err(format!("{} during start", drover::signal_name(signal))),
    };
    let mut code = ExitCode::SUCCESS;
    match started {
        Ok(_) => {
            shared.log.info("ready", "every group is STARTED");
            shared.notify.ready();
        }
        Err(error) => {
            log.error(&error);
            code = ExitCode::FAILURE;
            shared.shutdown(false).await;
        }
    }

    // Until every group is shut down *and* the run is stopping: a group stopped on its own
    // (`drover stop GROUP`) may be started again.
    // Core's dispatch: a task per signal, so that a second SIGINT can harden a graceful shutdown.
    let on_signal = {
        let shared = shared.clone();
        move |signal| shared.clone().on_signal(signal)
    };
    drover::signals::dispatch_until(&mut signals, shared.clone().until_finished(), on_signal).await;
    let failure = shared.failure_code.load(Ordering::Relaxed);
    if failure != 0 {
        code = ExitCode::from(failure);
    }

    // Let answers in flight (a `drover stop` waiting for this) go out, then the log.
    let _ = tokio::time::timeout(Duration::from_secs(3), shared.in_flight.write()).await;
    shared.log.info("exit", "every worker is stopped; exiting");
    shared.metrics.set_dropped("", shared.log.dropped());
    let dropped = shared.metrics.dropped_total();
    if dropped > 0 {
        log.error(&format!(
            "{dropped} log line(s) were dropped because the output could not keep up"
        ));
    }
    // Bounded: with stdout or stderr stuck (a paused terminal, a pipe nobody reads) drover exits
    // anyway, leaving the printer threads blocked where they are.
    log.flush(Duration::from_secs(3));
    code
}

/// `futures::future::join_all` without the dependency: every future runs concurrently.
async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

impl Shared {
    /// The pids of every live worker of every group.
    fn live_pids(&self) -> Vec<u32> {
        self.groups
            .iter()
            .flat_map(|(_, m)| m.workers())
            .filter(|w| w.is_alive())
            .map(|w| w.pid)
            .collect()
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    fn group(&self, name: &str) -> Result<&Master, String> {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
            .ok_or_else(|| {
                let known: Vec<&str> = self.groups.iter().map(|(n, _)| n.as_str()).collect();
                format!("no group {name:?} (groups: {})", known.join(", "))
            })
    }

    fn begin_stopping(&self, how: &str) {
        if !self.stopping.swap(true, Ordering::Relaxed) {
            self.notify.stopping();
        }
        self.maybe_finished.notify_one();
        self.log.info("stopping", &format!("shutting down ({how})"));
    }

    /// Resolves once the run is stopping and every group is shut down.
    async fn until_finished(self: Arc<Self>) {
        loop {
            let all_down = self.groups.iter().all(|(_, m)| m.status() == MasterStatus::ShutDown);
            if self.stopping() && all_down {
                return;
            }
            self.maybe_finished.notified().await;
        }
    }

    /// A group failed for good: it gave up restarting, or it has no worker left and none coming.
    /// Said loudly; with `--on-group-failure exit`, the run ends with [`GROUP_FAILED`].
    fn group_failed(self: &Arc<Self>, group: &str, why: &str) {
        if self.stopping() {
            return;
        }
        match self.on_group_failure {
            OnGroupFailure::Exit => {
                self.log.error(&format!(
                    "group {group} FAILED ({why}): shutting everything down, exit status {GROUP_FAILED} (--on-group-failure keep to keep the other groups running)"
                ));
                self.failure_code.store(GROUP_FAILED, Ordering::Relaxed);
                let shared = self.clone();
                tokio::spawn(async move { shared.shutdown(false).await });
            }
            OnGroupFailure::Keep => {
                self.log.error(&format!(
                    "group {group} FAILED ({why}); the other groups keep running (--on-group-failure keep)"
                ));
            }
        }
    }

    /// The group's status as `drover status` shows it: FAILED as well when no worker is left
    /// and none is coming (core's status stays STARTED: nothing was given up).
    fn group_status(&self, name: &str, master: &Master) -> String {
        let status = master.status();
        let emptied = self.emptied.lock().unwrap_or_else(|p| p.into_inner()).contains(name);
        if status == MasterStatus::Started && emptied {
            MasterStatus::Failed.to_string()
        } else {
            status.to_string()
        }
    }

    /// The worker `worker` names in `master`.
    fn resolve(master: &Master, group: &str, worker: WorkerRef) -> Result<u64, String> {
        let found = match worker {
            WorkerRef::Instance(i) => master.worker_at(i),
            WorkerRef::Id(id) => master.worker(id),
        };
        found.map(|w| w.id).ok_or_else(|| {
            let mut places: Vec<String> = master
                .workers()
                .iter()
                .map(|w| format!("{} (id {})", w.instance, w.id))
                .collect();
            places.sort();
            places.dedup();
            format!("{group}: no {worker} (instances: {})", places.join(", "))
        })
    }

    /// Shuts every group down, concurrently; returns when every worker is reaped.
    pub async fn shutdown(&self, hard: bool) {
        self.begin_stopping(if hard { "hard: SIGKILL" } else { "graceful" });
        let downs = self.groups.iter().map(|(_, m)| {
            let m = m.clone();
            async move {
                if hard {
                    m.hard_shutdown().await
                } else {
                    m.graceful_shutdown().await
                }
            }
        });
        for result in futures_join_all(downs).await {
            if let Err(error) = result {
                self.log.info("stopping", &format!("shutdown: {error}"));
            }
        }
    }

    /// Applies core's signal policy to every group.
    async fn on_signal(self: Arc<Self>, signal: i32) {
        let name = drover::signal_name(signal);
        let policy = SignalPolicy::default();
        let mut tasks = Vec::new();
        let mut reloads = Vec::new();
        // A group stopped on its own (`drover stop GROUP`) ignores the signal, but the run still
        // ends on a shutdown signal when every group was stopped that way.
        let all_down = self.groups.iter().all(|(_, m)| m.status() == MasterStatus::ShutDown);
        if all_down && policy.action(signal, MasterStatus::Started) == SignalAction::GracefulShutdown {
            self.begin_stopping(&format!("{name}: graceful"));
        }
        for (group, master) in &self.groups {
            let action = policy.action(signal, master.status());
            match action {
                SignalAction::Reload => {
                    self.log.info("signal", &format!("{name}: reloading {group}"));
                    reloads.push((group.clone(), master.clone()));
                    continue;
                }
                SignalAction::GracefulShutdown => self.begin_stopping(&format!("{name}: graceful")),
                SignalAction::HardShutdown => self.begin_stopping(&format!("{name} again: hard, SIGKILL")),
                SignalAction::Ignore => {
                    self.log
                        .info("signal", &format!("{name}: ignored by {group} ({})", master.status()));
                    continue;
                }
            }
            let shared = self.clone();
            let (group, master) = (group.clone(), master.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(error) = master.apply_signal_action(action).await {
                    shared.log.info("signal", &format!("{group}: {error}"));
                }
            }));
        }
        if !reloads.is_empty() {
            // The errors are in the log already, as each reload's outcome.
            let _ = self.clone().reload_groups(reloads).await;
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Reloads `selected`, with the config file read again (once for all of them): each group is
    /// reloaded with what the file now says, and what changed is logged. A file that is no longer
    /// valid reloads nothing: the error is the one `drover run` would give, and the running config
    /// stays. Returns each group's outcome.
    async fn reload_groups(
        self: Arc<Self>,
        selected: Vec<(String, Master)>,
    ) -> Result<Vec<(String, Result<(), String>)>, String> {
        let mut fresh = match self.reread().await {
            Ok(fresh) => fresh,
            Err(error) => {
                let message = format!("config not applied, nothing reloaded: {error}");
                self.log.error(&message);
                return Err(message);
            }
        };
        let reloads = selected.into_iter().map(|(name, master)| {
            let shared = self.clone();
            let group = fresh.as_mut().and_then(|groups| groups.remove(&name));
            async move {
                let result = shared.reload(&name, &master, group).await.map_err(|e| e.to_string());
                (name, result)
            }
        });
        let outcomes = futures_join_all(reloads).await;
        if let (Some(source), Some(rest)) = (&self.source, fresh) {
            for name in rest.keys().filter(|n| self.group(n).is_err()) {
                self.log.info(
                    "config",
                    &format!(
                        "group {name} is new in {}: not started (restart drover to start it)",
                        source.path.display()
                    ),
                );
            }
        }
        Ok(outcomes)
    }

    /// The groups of the config file as it is now, by name; `None` without a file.
    async fn reread(&self) -> Result<Option<std::collections::HashMap<String, config::Group>>, String> {
        let Some(source) = self.source.clone() else {
            return Ok(None);
        };
        // Reading an ecosystem file runs node (bounded by pm2::EVAL_TIMEOUT): off the loop.
        let plan = tokio::task::spawn_blocking(move || config::from_file(&source))
            .await
            .map_err(|e| format!("reading the config file: {e}"))?
            .map_err(|e| e.to_string())?;
        Ok(Some(plan.groups.into_iter().map(|g| (g.name.clone(), g)).collect()))
    }

    /// A graceful reload of one group (with `fresh`, its config as the file now says, if read),
    /// logged, counted and told to systemd.
    async fn reload(&self, name: &str, master: &Master, fresh: Option<config::Group>) -> Result<(), drover::Error> {
        let who = Who {
            group: name,
            id: None,
            pid: None,
        };
        let mut new_config = None;
        if let Some(group) = fresh {
            let changes = {
                let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
                applied
                    .get(name)
                    .map(|(old, cron)| {
                        let pattern = |c: Option<&croner::Cron>| c.map(|c| format!("{:?}", c.pattern.to_string()));
                        let mut changed = changes(old, &group.options);
                        let (was, now) = (pattern(cron.borrow().as_ref()), pattern(group.cron_restart.as_ref()));
                        if was != now {
                            let unset = || "(unset)".to_string();
                            changed.push(format!(
                                "cronRestart: {} → {}",
                                was.unwrap_or_else(unset),
                                now.unwrap_or_else(unset)
                            ));
                        }
                        changed
                    })
                    .unwrap_or_default()
            };
            let said = if changes.is_empty() {
                "config unchanged".to_string()
            } else {
                format!("config changed: {}", changes.join("; "))
            };
            self.log.event(who, "config", &said);
            new_config = Some((group.config, group.options, group.cron_restart, group.ecv));
        } else if let Some(source) = &self.source {
            self.log.event(
                who,
                "config",
                &format!(
                    "no longer in {}: reloaded with its running config (restart drover to remove it)",
                    source.path.display()
                ),
            );
        }
        let (count, reload) = match &new_config {
            Some((c, _, _, _)) => (c.count, c.reload),
            None => {
                let c = master.config();
                (c.count, c.reload)
            }
        };
        self.log.event(
            who,
            "reloading",
            &format!("reloading {count} worker(s), {}", strategy(reload)),
        );
        self.notify.reloading();
        let began = Instant::now();
        let result = match new_config {
            Some((config, options, cron, ecv)) => {
                let result = master.graceful_reload(Some(config)).await;
                if result.is_ok() {
                    self.replace_ecv(name, master, ecv);
                    let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some((old, cron_tx)) = applied.get_mut(name) {
                        *old = options;
                        cron_tx.send_replace(cron);
                    }
                }
                result
            }
            None => master.graceful_reload(None).await,
        };
        self.notify.reload_done();
        self.metrics.reload_duration(name, began.elapsed());
        match &result {
            Ok(()) => {
                self.metrics.reload(name, "ok");
                self.log.event(
                    who,
                    "reloaded",
                    &format!("reloaded in {:.2}s", began.elapsed().as_secs_f64()),
                );
            }
            Err(error) => {
                let outcome = match error {
                    drover::Error::ReloadRolledBack { .. } => "rolled_back",
                    _ => "failed",
                };
                self.metrics.reload(name, outcome);
                self.log.event(who, "reload-failed", &error.to_string());
            }
        }
        result
    }

    /// Every group's gathered status functions (cluster2's status registry), by group, then worker
    /// id, then status name: for `drover status --app` and `/status/app`.
    pub async fn app_statuses(&self) -> serde_json::Value {
        let gathers = self.groups.iter().map(|(name, master)| {
            let (name, master) = (name.clone(), master.clone());
            async move { (name, master.gather_statuses(APP_STATUS_TIMEOUT).await) }
        });
        serde_json::Value::Object(futures_join_all(gathers).await.into_iter().collect())
    }

    /// Runs a control request to its end.
    pub async fn handle(self: &Arc<Self>, request: Request) -> Response {
        match request {
            Request::Status => Response {
                ok: true,
                status: Some(self.status_report().await),
                ..Response::default()
            },
            Request::AppStatus => Response {
                ok: true,
                app: Some(self.app_statuses().await),
                ..Response::default()
            },
            Request::Reload { group } => {
                let selected: Vec<(String, Master)> = match &group {
                    Some(name) => match self.group(name) {
                        Ok(m) => vec![(name.clone(), m.clone())],
                        Err(e) => return Response::failed(e),
                    },
                    None => self.groups.clone(),
                };
                let outcomes = match self.clone().reload_groups(selected).await {
                    Ok(outcomes) => outcomes,
                    Err(error) => return Response::failed(error),
                };
                let mut done = Vec::new();
                let mut failed = Vec::new();
                for (name, result) in outcomes {
                    match result {
                        Ok(()) => done.push(name),
                        Err(e) => failed.push(format!("{name}: {e}")),
                    }
                }
                if failed.is_empty() {
                    Response::done(format!("reloaded {}", done.join(", ")))
                } else {
                    Response::failed(failed.join("; "))
                }
            }
            Request::Scale { group, count } => {
                let master = match self.group(&group) {
                    Ok(m) => m,
                    Err(e) => return Response::failed(e),
                };
                let Ok(n) = usize::try_from(count) else {
                    return Response::failed(format!("scale: the count must be at least 1, got {count}"));
                };
                let before = master.config().count;
                self.log.event(
                    Who {
                        group: &group,
                        id: None,
                        pid: None,
                    },
                    "scaling",
                    &format!("scaling from {before} to {n} worker(s)"),
                );
                match master.rescale(n).await {
                    Ok(()) => Response::done(format!("{group}: {n} worker(s) (was {before})")),
                    Err(e) => Response::failed(format!("{group}: scale to {n}: {e}")),
                }
            }
            Request::Restart { group, worker } => {
                let master = match self.group(&group) {
                    Ok(m) => m,
                    Err(e) => return Response::failed(e),
                };
                let ids = match worker {
                    Some(worker) => match Self::resolve(master, &group, worker) {
                        Ok(id) => vec![id],
                        Err(e) => return Response::failed(e),
                    },
                    // Every worker, one after the other, in instance order: the others serve
                    // meanwhile.
                    None => {
                        let mut workers = master.workers();
                        workers.sort_by_key(|w| (w.instance, w.id));
                        workers.into_iter().map(|w| w.id).collect()
                    }
                };
                let mut restarted = Vec::new();
                for id in ids {
                    if let Err(e) = master.restart_worker(id).await {
                        return Response::failed(format!("{group}: restart worker {id}: {e}"));
                    }
                    if let Some(w) = master.worker(id) {
                        restarted.push(format!("instance {} (id {}, pid {})", w.instance, w.id, w.pid));
                    }
                }
                Response::done(format!("{group}: restarted {}", restarted.join(", ")))
            }
            Request::Send { group, worker, data } => {
                let master = match self.group(&group) {
                    Ok(m) => m,
                    Err(e) => return Response::failed(e),
                };
                let id = match worker.map(|w| Self::resolve(master, &group, w)).transpose() {
                    Ok(id) => id,
                    Err(e) => return Response::failed(e),
                };
                match id {
                    Some(id) => match master.send(id, &data).await {
                        Ok(()) => {
                            self.metrics.messages_out(&group, 1);
                            Response::done(format!("sent to {group} worker {id}"))
                        }
                        Err(e) => Response::failed(format!("{group}: {e}")),
                    },
                    None => match master.broadcast(&data).await {
                        Ok(n) => {
                            self.metrics.messages_out(&group, n as u64);
                            Response::done(format!("sent to {n} worker(s) of {group}"))
                        }
                        Err(e) => Response::failed(format!("{group}: {e}")),
                    },
                }
            }
            Request::CallHandler {
                group,
                target,
                name,
                args,
                timeout_ms,
            } => {
                let master = match self.group(&group) {
                    Ok(m) => m,
                    Err(e) => return Response::failed(e),
                };
                let target = match target.parse() {
                    Ok(target) => target,
                    Err(e) => return Response::failed(format!("bad_request: {e}")),
                };
                let timeout = drover::request::timeout_of(timeout_ms);
                match master.request(target, &name, &args, timeout).await {
                    Ok(result) => Response {
                        ok: true,
                        result: Some(result),
                        ..Response::default()
                    },
                    Err(e) => Response::failed(format!("{}: {}", request_error_code(&e), e.message)),
                }
            }
            Request::Reconfigure {
                group,
                config,
                timeout_ms,
            } => {
                let master = match self.group(&group) {
                    Ok(m) => m,
                    Err(e) => return Response::failed(e),
                };
                let timeout = timeout_ms
                    .map(std::time::Duration::from_millis)
                    .unwrap_or(drover::master::reconfigure::DEFAULT_RECONFIGURE_TIMEOUT);
                match master.reconfigure(config, timeout).await {
                    Ok(acks) => {
                        for ack in &acks {
                            let why = match &ack.outcome {
                                drover::master::reconfigure::ReconfigureOutcome::Refused(why) => format!(": {why}"),
                                _ => String::new(),
                            };
                            self.log.event(
                                Who {
                                    group: &group,
                                    id: Some(ack.id),
                                    pid: Some(ack.pid),
                                },
                                "reconfigure",
                                &format!("new config {}{why}", ack.outcome.code()),
                            );
                        }
                        Response {
                            ok: true,
                            result: Some(serde_json::Value::Array(acks.iter().map(|a| a.to_json()).collect())),
                            ..Response::default()
                        }
                    }
                    Err(e) => Response::failed(format!("{group}: {e}")),
                }
            }
            Request::Debug {
                group,
                worker,
                timeout_ms,
            } => {
                let master = match self.group(&group) {
                    Ok(m) => m,
                    Err(e) => return Response::failed(e),
                };
                let id = match Self::resolve(master, &group, worker) {
                    Ok(id) => id,
                    Err(e) => return Response::failed(e),
                };
                let Some(info) = master.worker(id).filter(|w| w.is_alive()) else {
                    return Response::failed(format!("{group}: worker {id} is not running"));
                };
                let timeout = timeout_ms
                    .map(std::time::Duration::from_millis)
                    .unwrap_or(crate::debug::DEFAULT_DEBUG_TIMEOUT);
                let pid = info.pid;
                let opened = tokio::task::spawn_blocking(move || crate::debug::open_inspector(pid, timeout)).await;
                match opened {
                    Ok(Ok(inspector)) => Response {
                        ok: true,
                        message: Some(format!(
                            "{group} instance {} (id {id}, pid {pid}): inspector on {}",
                            info.instance, inspector.address
                        )),
                        result: Some(serde_json::json!({
                            "url": inspector.url,
                            "address": inspector.address.to_string(),
                            "id": id,
                            "pid": pid,
                        })),
                        ..Response::default()
                    },
                    Ok(Err(e)) => Response::failed(format!("{group} worker {id}: {e}")),
                    Err(e) => Response::failed(format!("{group} worker {id}: {e}")),
                }
            }
            Request::Logs { group, lines, .. } => {
                if let Some(name) = &group {
                    if let Err(e) = self.group(name) {
                        return Response::failed(e);
                    }
                }
                Response {
                    ok: true,
                    lines: Some(self.log.ring().tail(group.as_deref(), lines)),
                    ..Response::default()
                }
            }
            Request::Stop {
                hard,
                group: Some(group),
            } => {
                let master = match self.group(&group) {
                    Ok(m) => m.clone(),
                    Err(e) => return Response::failed(e),
                };
                let exits = master.workers().iter().filter(|w| w.is_alive()).count();
                let who = Who {
                    group: &group,
                    id: None,
                    pid: None,
                };
                self.log
                    .event(who, "stopping", "stopping the group (drover start to start it again)");
                let result = if hard {
                    master.hard_shutdown().await
                } else {
                    master.graceful_shutdown().await
                };
                match result {
                    Ok(()) => Response::done(format!(
                        "{group}: stopped ({}): {exits} worker process(es) ended and reaped",
                        if hard { "hard" } else { "graceful" }
                    )),
                    Err(e) => Response::failed(format!("{group}: stop: {e}")),
                }
            }
            Request::Start { group } => {
                let master = match self.group(&group) {
                    Ok(m) => m.clone(),
                    Err(e) => return Response::failed(e),
                };
                if self.stopping() {
                    return Response::failed("drover is shutting down");
                }
                if !master.status().is_idle() {
                    return Response::failed(format!(
                        "{group} is {}: nothing to start (drover restart {group} replaces its workers)",
                        master.status()
                    ));
                }
                let count = master.config().count;
                let who = Who {
                    group: &group,
                    id: None,
                    pid: None,
                };
                self.log.event(who, "starting", &format!("starting {count} worker(s)"));
                match master.start_again().await {
                    Ok(()) => Response::done(format!("{group}: {count} worker(s) STARTED")),
                    Err(e) => Response::failed(format!("{group}: start: {e}")),
                }
            }
            Request::Down { group } => self.mark(&group, true),
            Request::Up { group } => self.mark(&group, false),
            Request::Stop { hard, group: None } => {
                let exits: usize = self
                    .groups
                    .iter()
                    .map(|(_, m)| m.workers().iter().filter(|w| w.is_alive()).count())
                    .sum();
                self.shutdown(hard).await;
                Response::done(format!(
                    "stopped ({}): {exits} worker process(es) ended and reaped",
                    if hard { "hard" } else { "graceful" }
                ))
            }
        }
    }

    /// Runs `monitor` as the group's ECV monitor if it differs from the one running (an unchanged
    /// one keeps running, with what it has seen so far).
    fn replace_ecv(&self, name: &str, master: &Master, monitor: Option<drover::ecv::EcvMonitor>) {
        let mut monitors = self.ecv.lock().unwrap_or_else(|p| p.into_inner());
        let running = monitors.get(name).map(|(m, _)| m);
        if running == monitor.as_ref() {
            return;
        }
        let who = Who {
            group: name,
            id: None,
            pid: None,
        };
        match monitor {
            Some(monitor) => {
                self.log.event(
                    who,
                    "ecv",
                    &format!(
                        "ECV monitor now probes {} every {:?}",
                        monitor.url(),
                        monitor.interval()
                    ),
                );
                let guard = master.monitor_ecv(monitor.clone());
                monitors.insert(name.to_string(), (monitor, guard));
            }
            None => {
                self.log.event(who, "ecv", "ECV monitor removed");
                monitors.remove(name);
            }
        }
    }

    /// `drover down` (`down`) and `drover up`: core's manual mark; the answer says where the
    /// group now stands (a monitor may still hold it down).
    fn mark(&self, group: &str, down: bool) -> Response {
        let master = match self.group(group) {
            Ok(m) => m,
            Err(e) => return Response::failed(e),
        };
        if down {
            master.mark_down();
        } else {
            master.mark_up();
        }
        match master.rotation().why() {
            None => Response::done(format!("{group}: in rotation")),
            Some(why) => Response::done(format!("{group}: out of rotation ({why})")),
        }
    }

    pub async fn status_report(&self) -> StatusReport {
        let rates = self.cpu.rates(&self.live_pids()).await;
        let now = SystemTime::now();
        let groups = self
            .groups
            .iter()
            .map(|(name, master)| {
                let workers: Vec<WorkerReport> = master
                    .workers()
                    .into_iter()
                    .map(|w| {
                        let alive = w.is_alive();
                        let since = w.started_at.unwrap_or(w.spawned_at);
                        let uptime = if alive {
                            now.duration_since(since).unwrap_or_default().as_secs_f64()
                        } else {
                            0.0
                        };
                        let cpu = alive.then(|| procinfo::cpu_seconds(w.pid)).flatten();
                        WorkerReport {
                            id: w.id,
                            instance: w.instance,
                            pid: w.pid,
                            status: w.status.to_string(),
                            uptime_secs: uptime,
                            restarts: w.restarts,
                            generation: w.generation,
                            rss_bytes: alive.then(|| drover::rss_bytes(w.pid)).flatten(),
                            cpu_seconds: cpu,
                            cpu_percent: alive.then(|| rates.get(&w.pid).copied()).flatten(),
                            exit: w.exit.map(|e| e.reason.to_string()),
                            name: w.name,
                            app_status: w.app_status,
                            counters: w.counters,
                        }
                    })
                    .collect();
                let rotation = master.rotation();
                let recent_exits = self
                    .recent_exits
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(name)
                    .map(|exits| exits.iter().cloned().collect())
                    .unwrap_or_default();
                GroupReport {
                    name: name.clone(),
                    in_rotation: rotation.in_rotation(),
                    out_of_rotation: rotation.why(),
                    recent_exits,
                    leaders: master
                        .leaderships()
                        .into_iter()
                        .map(|l| crate::control::LeaderReport {
                            key: l.key,
                            leader: l.leader,
                            term: l.term,
                            participants: l.participants,
                        })
                        .collect(),
                    status: self.group_status(name, master),
                    count: master.config().count,
                    started: workers
                        .iter()
                        .filter(|w| w.status == WorkerStatus::Started.name())
                        .count(),
                    workers,
                }
            })
            .collect();
        StatusReport {
            pid: std::process::id(),
            groups,
        }
    }
}

/// Logs and counts one group's events, and prints its workers' output.
async fn forward(shared: Arc<Shared>, group: String, mut events: Events, mut output: OutputLines) {
    let mut events_open = true;
    let mut output_open = true;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while events_open || output_open {
        tokio::select! {
            event = events.recv(), if events_open => match event {
                Some(event) => {
                    watch_failure(&shared, &group, &event);
                    on_event(&shared, &group, event);
                }
                None => events_open = false,
            },
            line = output.recv(), if output_open => match line {
                Some(line) => shared.log.output(&group, &line),
                None => output_open = false,
            },
            _ = tick.tick() => {}
        }
        shared.metrics.set_dropped(&group, output.dropped());
    }
}

/// Progress of a long operation (a start, a reload), followed from the event stream: the master's
/// status opens and closes the operation, each worker's STARTED counts. A line redrawn in place on
/// a terminal, a log line otherwise.
fn progress(shared: &Shared, group: &str, event: &Event) {
    let mut ops = shared.progress.lock().unwrap_or_else(|p| p.into_inner());
    match event {
        Event::MasterStatus {
            to: MasterStatus::Starting,
            ..
        } => {
            ops.insert(group.to_string(), ("starting", 0));
        }
        Event::MasterStatus {
            to: MasterStatus::Reloading,
            ..
        } => {
            ops.insert(group.to_string(), ("reloading", 0));
        }
        Event::MasterStatus { .. } => {
            // Ended short of its count (a failed start, a rolled-back reload): its line goes.
            let ended = ops.remove(group).is_some();
            if ended && shared.log.has_terminal() {
                shared.log.progress_end();
            }
        }
        Event::Status {
            to: WorkerStatus::Started,
            ..
        } => {
            let Some((operation, ready)) = ops.get_mut(group) else {
                return;
            };
            *ready += 1;
            let wanted = shared
                .groups
                .iter()
                .find(|(name, _)| name == group)
                .map_or(0, |(_, m)| m.config().count);
            let line = format!("{operation}: {ready}/{wanted} STARTED");
            if shared.log.has_terminal() {
                shared.log.progress(format!("[{group}] {line}"), *ready >= wanted);
            } else {
                shared.log.event(
                    Who {
                        group,
                        id: None,
                        pid: None,
                    },
                    "progress",
                    &line,
                );
            }
        }
        _ => {}
    }
}

/// Follows whether the group failed for good (core's events say when), and acts on it.
fn watch_failure(shared: &Arc<Shared>, group: &str, event: &Event) {
    match event {
        Event::GaveUp { restarts, window } => shared.group_failed(
            group,
            &format!("gave up restarting: more than {restarts} restarts within {window:?}"),
        ),
        Event::NoWorkerLeft => {
            shared
                .emptied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(group.to_string());
            // A FAILED status says a group gave up; this is the other way to fail for good.
            shared.metrics.set_group_failed(group, true);
            shared.group_failed(group, "no worker left: every worker exited and none is being restarted");
        }
        Event::Status {
            to: WorkerStatus::Started,
            ..
        } => {
            let was = shared.emptied.lock().unwrap_or_else(|p| p.into_inner()).remove(group);
            if was {
                shared.metrics.set_group_failed(group, false);
            }
        }
        _ => {}
    }
}

fn on_event(shared: &Shared, group: &str, event: Event) {
    progress(shared, group, &event);
    // The metrics first: they count events the log does not show.
    match &event {
        Event::Message { .. } => shared.metrics.message_in(group),
        Event::Exit(exit) => {
            shared
                .metrics
                .exit(group, exit.id, exit.reason.kind_name(), exit.requested);
            let mut recent = shared.recent_exits.lock().unwrap_or_else(|p| p.into_inner());
            let exits = recent.entry(group.to_string()).or_default();
            if exits.len() >= RECENT_EXITS {
                exits.pop_front();
            }
            exits.push_back(event.to_string());
        }
        Event::Restarting { id, .. } => shared.metrics.restart(group, *id),
        Event::Recycling { reason, .. } => shared.metrics.recycle(group, recycle_reason(reason)),
        Event::Status {
            id,
            to: WorkerStatus::Started,
            ..
        } => {
            if let Some(worker) = shared.group(group).ok().and_then(|m| m.worker(*id)) {
                if let Some(started) = worker.started_at {
                    let took = started.duration_since(worker.spawned_at).unwrap_or_default();
                    shared.metrics.worker_start(group, took);
                }
            }
        }
        Event::Heartbeat { .. } => shared.metrics.heartbeat(group),
        _ => {}
    }
    // The log's name for each line (its JSON schema): core's, in kebab case, but for two names
    // the log had first; and the lines it leaves out.
    let name = match &event {
        Event::Status {
            to: WorkerStatus::Started,
            ..
        } => "started".to_string(),
        Event::Status { .. } | Event::Heartbeat { .. } => return,
        Event::Exit(_) => "exited".to_string(),
        Event::MasterStatus { .. } => "status".to_string(),
        _ => event.kind_name().replace('_', "-"),
    };
    let (id, pid) = match event.subject() {
        Subject::Worker { id, pid } => (Some(id), pid),
        Subject::Master => (None, None),
    };
    let who = Who { group, id, pid };
    if let Event::Exit(exit) = &event {
        shared.log.exit(who, exit, &event.summary().to_string());
        return;
    }
    let message = match &event {
        // A STARTED line is the one status change the log shows: it says so in a word.
        Event::Status { .. } => "started".to_string(),
        // The log shows what a worker said, cut to a readable length.
        Event::Message { data, .. } => {
            let mut text = data.to_string();
            if text.len() > 2000 {
                let mut cut = 2000;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str("...");
            }
            format!("message: {text}")
        }
        _ => event.summary().to_string(),
    };
    shared.log.event(who, &name, &message);
}

/// Why a worker was recycled, as a metric label, from core's reason ("age ... reached the limit",
/// "resident memory ... exceeds the limit").
fn recycle_reason(reason: &str) -> &'static str {
    if reason.starts_with("age") {
        "age"
    } else if reason.contains("memory") {
        "memory"
    } else {
        "other"
    }
}

/// Samples every live worker's CPU time, for recent rates in `status`.
async fn sample_cpu(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(usage::SAMPLE_EVERY);
    loop {
        tick.tick().await;
        shared.cpu.sample(&shared.live_pids());
    }
}

/// Tells in the log when lines were dropped, at most once a second.
async fn report_drops(shared: Arc<Shared>) {
    let mut reported = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        shared.metrics.set_dropped("", shared.log.dropped());
        let total = shared.metrics.dropped_total();
        if total > reported {
            shared.log.info(
                "log-dropped",
                &format!("{} log line(s) dropped so far: the output could not keep up", total),
            );
            reported = total;
        }
    }
}

/// A group's cron schedule (`cronRestart`), replaced when a reload applies a new one.
type CronSender = tokio::sync::watch::Sender<Option<croner::Cron>>;

/// Reloads the group at each time of its `cronRestart` schedule (local time), as PM2's
/// `cron_restart` restarts an app, but make-before-break. Follows the schedule a reload applies.
async fn cron_restarts(
    shared: Arc<Shared>,
    name: String,
    master: Master,
    mut cron: tokio::sync::watch::Receiver<Option<croner::Cron>>,
) {
    loop {
        let next = cron.borrow_and_update().as_ref().map(|c| {
            let now = chrono::Local::now();
            (
                c.pattern.to_string(),
                c.find_next_occurrence(&now, false).map(|t| (t - now).to_std()),
            )
        });
        let wait = match next {
            Some((pattern, Ok(Ok(wait)))) => Some((pattern, wait)),
            Some((pattern, _)) => {
                shared.log.info(
                    "cron",
                    &format!("{name}: `{pattern}` has no next time: no more cron reloads"),
                );
                None
            }
            None => None,
        };
        tokio::select! {
            changed = cron.changed() => if changed.is_err() { return },
            _ = async {
                match &wait {
                    Some((_, d)) => tokio::time::sleep(*d).await,
                    None => std::future::pending().await,
                }
            } => {
                if shared.stopping() {
                    return;
                }
                let pattern = wait.map(|(p, _)| p).unwrap_or_default();
                shared.log.info("cron", &format!("{name}: cronRestart `{pattern}`: reloading"));
                let _ = shared.clone().reload_groups(vec![(name.clone(), master.clone())]).await;
            }
        }
    }
}

/// What differs between two option sets, one entry per key (`env` per variable): `key: old → new`.
fn changes(old: &drover::MasterOptions, new: &drover::MasterOptions) -> Vec<String> {
    fn flat(options: &drover::MasterOptions) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(options) {
            for (key, value) in map {
                match value {
                    serde_json::Value::Null => {}
                    serde_json::Value::Object(vars) if key == "env" => {
                        for (var, v) in vars {
                            out.insert(format!("env.{var}"), v.to_string());
                        }
                    }
                    other => {
                        out.insert(key, other.to_string());
                    }
                }
            }
        }
        out
    }
    let shorten = |v: Option<&String>| match v {
        None => "(unset)".to_string(),
        Some(v) if v.chars().count() > 60 => format!("{}…", v.chars().take(60).collect::<String>()),
        Some(v) => v.clone(),
    };
    let (old, new) = (flat(old), flat(new));
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| format!("{k}: {} → {}", shorten(old.get(k)), shorten(new.get(k))))
        .collect()
}

fn strategy(reload: drover::ReloadStrategy) -> String {
    match reload {
        drover::ReloadStrategy::AllAtOnce => "all at once".into(),
        drover::ReloadStrategy::Rolling { batch } => format!("rolling, {batch} at a time"),
    }
}

/// A request error's code as the wire spells it (e.g. `no_such_handler`).
fn request_error_code(error: &drover::request::RequestError) -> String {
    serde_json::to_value(error.code)
        .ok()
        .and_then(|code| code.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}
