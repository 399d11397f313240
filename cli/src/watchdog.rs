//! systemd's watchdog (`WatchdogSec=` in the unit): when systemd sets `$WATCHDOG_USEC` (and
//! `$WATCHDOG_PID` names this process, or is unset), drover sends `WATCHDOG=1` every half of that
//! interval (sd_watchdog_enabled(3)). The pets come from a task on the runtime that supervises,
//! answers the control socket and forwards events: a master stuck there stops petting, and systemd
//! kills and restarts the service after the interval (as `Restart=` and `WatchdogSignal=` say).

use std::time::Duration;

use crate::notify::Notifier;

/// The shortest pet interval: a `WatchdogSec=` below 2 ms is taken as 2 ms.
const MIN_PET: Duration = Duration::from_millis(1);

/// Half of `$WATCHDOG_USEC`, if the watchdog is enabled for this process.
pub fn pet_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    Some((Duration::from_micros(usec) / 2).max(MIN_PET))
}

/// Pets the watchdog every `every`, until the process ends.
pub async fn run(notify: Notifier, every: Duration) {
    let mut tick = tokio::time::interval(every);
    // After a stall, one pet, not a burst of the missed ones: a stall is what systemd should see.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        notify.watchdog();
    }
}
