//! Workers' CPU use as a recent rate, for `drover status`: CPU time used over the last few seconds
//! divided by those seconds, not over the process's whole life (a fresh worker that spent its first
//! second loading code is not "86 % busy" a minute later, nor a busy one "idle" after a quiet hour).
//!
//! [`CpuRates::sample`] runs every [`SAMPLE_EVERY`] and keeps the last two samples of each live
//! worker (so the memory is bounded by the number of workers); a rate is measured against the newest
//! sample at least [`MIN_WINDOW`] old, or, for a worker too new to have one, over a short wait.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::procinfo::cpu_seconds;

/// How often every worker's CPU time is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// The shortest window a rate is measured over.
pub const MIN_WINDOW: Duration = Duration::from_millis(500);

/// The wait for a worker without a usable sample yet.
const SHORT_WINDOW: Duration = Duration::from_millis(250);

/// Samples kept per worker.
const KEPT: usize = 2;

/// (when, CPU seconds used by then), per pid.
#[derive(Default)]
pub struct CpuRates {
    samples: Mutex<HashMap<u32, VecDeque<(Instant, f64)>>>,
}

impl CpuRates {
    /// Records the CPU time of each of `pids` (the live workers) and forgets every other pid.
    pub fn sample(&self, pids: &[u32]) {
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.retain(|pid, _| pids.contains(pid));
        for &pid in pids {
            let Some(cpu) = cpu_seconds(pid) else { continue };
            let kept = samples.entry(pid).or_default();
            kept.push_back((now, cpu));
            while kept.len() > KEPT {
                kept.pop_front();
            }
        }
    }

    /// The newest sample of `pid` at least [`MIN_WINDOW`] before `now`.
    fn baseline(&self, pid: u32, now: Instant) -> Option<(Instant, f64)> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples
            .get(&pid)?
            .iter()
            .rev()
            .find(|(at, _)| now.duration_since(*at) >= MIN_WINDOW)
            .copied()
    }

    /// Each pid's CPU use over the recent past, percent of one core (`None`: its process is gone).
    pub async fn rates(&self, pids: &[u32]) -> HashMap<u32, f64> {
        let now = Instant::now();
        let mut rates = HashMap::new();
        let mut fresh = Vec::new();
        for &pid in pids {
            match (self.baseline(pid, now), cpu_seconds(pid)) {
                (Some(baseline), Some(cpu)) => {
                    rates.insert(pid, percent(baseline, (now, cpu)));
                }
                (None, Some(cpu)) => fresh.push((pid, (now, cpu))),
                (_, None) => {}
            }
        }
        if !fresh.is_empty() {
            tokio::time::sleep(SHORT_WINDOW).await;
            let later = Instant::now();
            for (pid, first) in fresh {
                if let Some(cpu) = cpu_seconds(pid) {
                    rates.insert(pid, percent(first, (later, cpu)));
                }
            }
        }
        rates
    }
}

fn percent((t0, cpu0): (Instant, f64), (t1, cpu1): (Instant, f64)) -> f64 {
    let secs = t1.duration_since(t0).as_secs_f64();
    if secs > 0.0 {
        (100.0 * (cpu1 - cpu0) / secs).max(0.0)
    } else {
        0.0
    }
}
