//! Counters fed by each group's events and by the operations drover runs, and the Prometheus text
//! that `/metrics` serves. Gauges (workers by status) are read from the masters at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use drover::{Master, WorkerStatus};

#[derive(Default)]
struct GroupCounters {
    restarts: u64,
    /// (reason kind, requested) → count.
    exits: BTreeMap<(&'static str, bool), u64>,
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

    pub fn restart(&self, group: &str) {
        self.with(group, |g| g.restarts += 1)
    }

    pub fn exit(&self, group: &str, kind: &'static str, requested: bool) {
        self.with(group, |g| *g.exits.entry((kind, requested)).or_default() += 1)
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

        header(&mut out, "drover_workers", "gauge", "Worker processes by status.");
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
            "Automatic restarts of workers.",
        );
        for (name, _) in masters {
            let _ = writeln!(
                out,
                "drover_worker_restarts_total{{group=\"{}\"}} {}",
                esc(name),
                counters(name).restarts
            );
        }
        header(
            &mut out,
            "drover_worker_exits_total",
            "counter",
            "Worker process exits, by reason and whether drover asked for them.",
        );
        for (name, _) in masters {
            for reason in ["NormalExit", "AbnormalExit", "ExternalSignal"] {
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

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped as the exposition format requires.
fn esc(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
