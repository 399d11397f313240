//! Counters and histograms fed by each group's events and by the operations drover runs, and the
//! Prometheus text that `/metrics` serves. Gauges (workers by status, each worker's memory and CPU
//! time, drover's own `process_*`) are read at scrape time.
//!
//! Series, by group: `drover_workers{status}` (FAILED counts workers that failed, alive or not),
//! `drover_group_status{status}` (1 for the group's current status), `drover_workers_desired`,
//! `drover_group_up`, `drover_worker_restarts_total{reason}` (reason: how the worker had exited),
//! `drover_worker_recycles_total{reason}` (age, memory), `drover_worker_exits_total`,
//! `drover_reloads_total{outcome}`, `drover_worker_start_duration_seconds` (spawn to STARTED) and
//! `drover_reload_duration_seconds` histograms, `drover_worker_resident_memory_bytes{id}`,
//! `drover_worker_cpu_seconds_total{id}`, `drover_worker_app_status{instance,status}` and
//! `drover_worker_app_counter{instance,counter}` (what workers publish), IPC and heartbeat counters; `drover_build_info`,
//! `drover_log_lines_dropped_total`, and the standard `process_*` series of drover itself.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use drover::{Master, MasterStatus, WorkerId, WorkerStatus};

use crate::procinfo;

/// The buckets of the duration histograms, seconds: a worker ready at once to a slow reload.
const DURATION_BUCKETS: [f64; 12] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Restart reasons: how the worker had exited (core's names of the exit kinds).
const EXIT_KINDS: [&str; 3] = drover::ExitReason::KIND_NAMES;

/// The most workers whose last exit is remembered per group, to label their restart (a bound:
/// ids grow across reloads).
const REMEMBERED_EXITS: usize = 10_000;

/// A Prometheus histogram of durations.
#[derive(Default, Clone)]
struct Histogram {
    /// Observations at most each bucket's bound (not cumulative; summed when rendered).
    buckets: [u64; DURATION_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|bound| secs <= *bound) {
            self.buckets[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, group: &str) {
        let mut cumulative = 0;
        for (bound, n) in DURATION_BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{group=\"{group}\",le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{group=\"{group}\",le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{group=\"{group}\"}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{group=\"{group}\"}} {}", self.count);
    }
}

#[derive(Default)]
struct GroupCounters {
    /// exit kind of the worker's last exit → restarts.
    restarts: BTreeMap<&'static str, u64>,
    /// reason → recycles.
    recycles: BTreeMap<&'static str, u64>,
    /// Each worker's last unasked exit kind, until its restart is counted.
    last_exit: BTreeMap<WorkerId, &'static str>,
    /// (reason kind, requested) → count.
    exits: BTreeMap<(&'static str, bool), u64>,
    worker_start: Histogram,
    reload: Histogram,
    /// outcome → count.
    reloads: BTreeMap<&'static str, u64>,
    messages_in: u64,
    messages_out: u64,
    heartbeats: u64,
}

/// Every counter, by group.
#[derive(Default)]
pub struct Metrics {
    groups: Mutex<BTreeMap<String, GroupCounters>>,
    /// Log lines lost, by group (core's output channel) and by the printer (`""`).
    dropped: Mutex<BTreeMap<String, u64>>,
    /// Groups that failed for good with core's status still STARTED: no worker left, none coming.
    failed: Mutex<std::collections::BTreeSet<String>>,
}

impl Metrics {
    fn with(&self, group: &str, f: impl FnOnce(&mut GroupCounters)) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        f(groups.entry(group.to_string()).or_default())
    }

    /// Worker `id` is restarted: counted under how it had exited.
    pub fn restart(&self, group: &str, id: WorkerId) {
        self.with(group, |g| {
            let kind = g.last_exit.remove(&id).unwrap_or("AbnormalExit");
            *g.restarts.entry(kind).or_default() += 1
        })
    }

    pub fn recycle(&self, group: &str, reason: &'static str) {
        self.with(group, |g| *g.recycles.entry(reason).or_default() += 1)
    }

    pub fn exit(&self, group: &str, id: WorkerId, kind: &'static str, requested: bool) {
        self.with(group, |g| {
            *g.exits.entry((kind, requested)).or_default() += 1;
            if !requested {
                if g.last_exit.len() >= REMEMBERED_EXITS {
                    g.last_exit.pop_first();
                }
                g.last_exit.insert(id, kind);
            }
        })
    }

    /// A worker went from spawn to STARTED in `took`.
    pub fn worker_start(&self, group: &str, took: Duration) {
        self.with(group, |g| g.worker_start.observe(took))
    }

    /// A reload of `group` took `took` (whatever its outcome).
    pub fn reload_duration(&self, group: &str, took: Duration) {
        self.with(group, |g| g.reload.observe(took))
    }

    pub fn reload(&self, group: &str, outcome: &'static str) {
        self.with(group, |g| *g.reloads.entry(outcome).or_default() += 1)
    }

    pub fn message_in(&self, group: &str) {
        self.with(group, |g| g.messages_in += 1)
    }

    pub fn messages_out(&self, group: &str, n: u64) {
        self.with(group, |g| g.messages_out += n)
    }

    pub fn heartbeat(&self, group: &str) {
        self.with(group, |g| g.heartbeats += 1)
    }

    /// Records the running total of lines `source` has dropped.
    pub fn set_dropped(&self, source: &str, total: u64) {
        let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        dropped.insert(source.to_string(), total);
    }

    /// Every line dropped so far.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    /// The Prometheus text exposition of everything, with the masters' current state.
    /// Whether `group` is left with no worker and none coming (a group that gave up says so with
    /// its FAILED status).
    pub fn set_group_failed(&self, group: &str, failed: bool) {
        let mut set = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed {
            set.insert(group.to_string());
        } else {
            set.remove(group);
        }
    }

    pub fn render(&self, masters: &[(String, Master)]) -> String {
        let mut out = String::new();
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let empty = GroupCounters::default();
        let counters = |name: &str| groups.get(name).unwrap_or(&empty);

        header(
            &mut out,
            "drover_build_info",
            "gauge",
            "The drover command's version (always 1).",
        );
        let _ = writeln!(
            out,
            "drover_build_info{{version=\"{}\"}} 1",
            esc(env!("CARGO_PKG_VERSION"))
        );
        header(
            &mut out,
            "drover_workers",
            "gauge",
            "Worker processes by status (FAILED: workers that failed, whether their process is gone or not).",
        );
        for (name, master) in masters {
            let workers = master.workers();
            for status in WorkerStatus::ALL {
                // A FAILED worker counts until it is replaced, process gone or not: a group whose
                // workers failed and were left says so.
                let n = workers
                    .iter()
                    .filter(|w| w.status == status && (w.is_alive() || status == WorkerStatus::Failed))
                    .count();
                let _ = writeln!(out, "drover_workers{{group=\"{}\",status=\"{status}\"}} {n}", esc(name));
            }
        }
        header(
            &mut out,
            "drover_group_status",
            "gauge",
            "1 for each group's current status (FAILED: it gave up restarting its workers).",
        );
        for (name, master) in masters {
            let current = master.status();
            for status in MasterStatus::ALL {
                let _ = writeln!(
                    out,
                    "drover_group_status{{group=\"{}\",status=\"{status}\"}} {}",
                    esc(name),
                    u8::from(status == current)
                );
            }
        }
        header(
            &mut out,
            "drover_workers_desired",
            "gauge",
            "Workers each group should run.",
        );
        for (name, master) in masters {
            let _ = writeln!(
                out,
                "drover_workers_desired{{group=\"{}\"}} {}",
                esc(name),
                master.config().count
            );
        }
        header(
            &mut out,
            "drover_group_failed",
            "gauge",
            "1 when a group failed for good: it gave up restarting (FAILED), or no worker is left and none is coming.",
        );
        {
            let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            for (name, master) in masters {
                let is_failed = master.status() == drover::MasterStatus::Failed || failed.contains(name);
                let _ = writeln!(
                    out,
                    "drover_group_failed{{group=\"{}\"}} {}",
                    esc(name),
                    u8::from(is_failed)
                );
            }
        }
        header(
            &mut out,
            "drover_group_up",
            "gauge",
            "1 when every worker a group should run is STARTED.",
        );
        for (name, master) in masters {
            let _ = writeln!(
                out,
                "drover_group_up{{group=\"{}\"}} {}",
                esc(name),
                u8::from(group_ready(master))
            );
        }
        header(
            &mut out,
            "drover_worker_restarts_total",
            "counter",
            "Automatic restarts of workers that exited unasked, by how they had exited.",
        );
        for (name, _) in masters {
            for reason in EXIT_KINDS {
                let n = counters(name).restarts.get(reason).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "drover_worker_restarts_total{{group=\"{}\",reason=\"{reason}\"}} {n}",
                    esc(name)
                );
            }
        }
        header(
            &mut out,
            "drover_worker_recycles_total",
            "counter",
            "Workers replaced (make-before-break) for being too old or too big, by reason.",
        );
        for (name, _) in masters {
            for reason in ["age", "memory"] {
                let n = counters(name).recycles.get(reason).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "drover_worker_recycles_total{{group=\"{}\",reason=\"{reason}\"}} {n}",
                    esc(name)
                );
            }
        }
        header(
            &mut out,
            "drover_worker_exits_total",
            "counter",
            "Worker process exits, by reason and whether drover asked for them.",
        );
        for (name, _) in masters {
            for reason in EXIT_KINDS {
                for requested in [false, true] {
                    let n = counters(name).exits.get(&(reason, requested)).copied().unwrap_or(0);
                    let _ = writeln!(
                        out,
                        "drover_worker_exits_total{{group=\"{}\",reason=\"{reason}\",requested=\"{requested}\"}} {n}",
                        esc(name)
                    );
                }
            }
        }
        header(
            &mut out,
            "drover_reloads_total",
            "counter",
            "Graceful reloads, by outcome.",
        );
        for (name, _) in masters {
            for outcome in ["ok", "rolled_back", "failed"] {
                let n = counters(name).reloads.get(outcome).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "drover_reloads_total{{group=\"{}\",outcome=\"{outcome}\"}} {n}",
                    esc(name)
                );
            }
        }
        header(
            &mut out,
            "drover_ipc_messages_total",
            "counter",
            "User messages over the MessageBus, by direction.",
        );
        for (name, _) in masters {
            let c = counters(name);
            let _ = writeln!(
                out,
                "drover_ipc_messages_total{{group=\"{}\",direction=\"from_worker\"}} {}",
                esc(name),
                c.messages_in
            );
            let _ = writeln!(
                out,
                "drover_ipc_messages_total{{group=\"{}\",direction=\"to_worker\"}} {}",
                esc(name),
                c.messages_out
            );
        }
        header(
            &mut out,
            "drover_heartbeats_total",
            "counter",
            "Heartbeats received from workers.",
        );
        for (name, _) in masters {
            let _ = writeln!(
                out,
                "drover_heartbeats_total{{group=\"{}\"}} {}",
                esc(name),
                counters(name).heartbeats
            );
        }
        header(
            &mut out,
            "drover_worker_start_duration_seconds",
            "histogram",
            "From a worker's spawn to its STARTED.",
        );
        for (name, _) in masters {
            counters(name)
                .worker_start
                .render(&mut out, "drover_worker_start_duration_seconds", &esc(name));
        }
        header(
            &mut out,
            "drover_reload_duration_seconds",
            "histogram",
            "Graceful reloads of a group, from start to outcome.",
        );
        for (name, _) in masters {
            counters(name)
                .reload
                .render(&mut out, "drover_reload_duration_seconds", &esc(name));
        }
        render_workers(&mut out, masters);
        procinfo::render_process_metrics(&mut out);
        header(
            &mut out,
            "drover_log_lines_dropped_total",
            "counter",
            "Worker output lines dropped because the log could not keep up.",
        );
        let _ = writeln!(out, "drover_log_lines_dropped_total {}", self.dropped_total());
        out
    }
}

/// Whether `master` runs its count of STARTED workers.
pub fn group_ready(master: &Master) -> bool {
    let started = master
        .workers()
        .iter()
        .filter(|w| w.is_alive() && w.status == WorkerStatus::Started)
        .count();
    started >= master.config().count
}

/// Each live worker's resident memory and CPU time, labelled by group and id.
fn render_workers(out: &mut String, masters: &[(String, Master)]) {
    let live: Vec<(&str, drover::WorkerInfo)> = masters
        .iter()
        .flat_map(|(name, m)| m.workers().into_iter().map(move |w| (name.as_str(), w)))
        .filter(|(_, w)| w.is_alive())
        .collect();
    header(
        out,
        "drover_worker_resident_memory_bytes",
        "gauge",
        "Resident memory of each live worker process.",
    );
    for (group, w) in &live {
        if let Some(rss) = drover::rss_bytes(w.pid) {
            let _ = writeln!(
                out,
                "drover_worker_resident_memory_bytes{{group=\"{}\",id=\"{}\"}} {rss}",
                esc(group),
                w.id
            );
        }
    }
    header(
        out,
        "drover_worker_cpu_seconds_total",
        "counter",
        "User and system CPU time of each live worker process (rate() it for a recent CPU use).",
    );
    for (group, w) in &live {
        if let Some(cpu) = procinfo::cpu_seconds(w.pid) {
            let _ = writeln!(
                out,
                "drover_worker_cpu_seconds_total{{group=\"{}\",id=\"{}\"}} {cpu}",
                esc(group),
                w.id
            );
        }
    }
    header(
        out,
        "drover_worker_app_status",
        "gauge",
        "1 for the application status each live worker published (IDLE, PROCESSING...).",
    );
    for (group, w) in &live {
        if let Some(status) = &w.app_status {
            let _ = writeln!(
                out,
                "drover_worker_app_status{{group=\"{}\",instance=\"{}\",status=\"{}\"}} 1",
                esc(group),
                w.instance,
                esc(status)
            );
        }
    }
    header(
        out,
        "drover_worker_app_counter",
        "gauge",
        "The counters each live worker published, by name.",
    );
    for (group, w) in &live {
        for (name, value) in &w.counters {
            let _ = writeln!(
                out,
                "drover_worker_app_counter{{group=\"{}\",instance=\"{}\",counter=\"{}\"}} {value}",
                esc(group),
                w.instance,
                esc(name)
            );
        }
    }
}

pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped as the exposition format requires.
fn esc(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
