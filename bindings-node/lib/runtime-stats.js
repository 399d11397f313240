'use strict';

// What a Node worker's heartbeats carry (PROTOCOL.md §5.1, `stats`): event-loop lag from
// perf_hooks' event-loop delay histogram and garbage collections from a 'gc' PerformanceObserver,
// so a recycle predicate in any face can judge a Node worker by them.

const { monitorEventLoopDelay, PerformanceObserver, performance } = require('node:perf_hooks');

/** The histogram's timer period, ms: its samples are this period plus the lag. */
const RESOLUTION_MS = 10;

const NS_PER_MS = 1e6;

/** Milliseconds of lag of a histogram value (ns), rounded to µs; 0 without samples. */
function lag(ns) {
    if (!Number.isFinite(ns)) return 0;
    return Math.max(0, Math.round((ns / NS_PER_MS - RESOLUTION_MS) * 1000) / 1000);
}

/**
 * Starts measuring. `take(intervalMs)` gives the stats since the last take (lag: mean, p99 and max
 * over the interval) and the collections since the start (count, total ms); `stop()` ends it.
 *
 * Resetting the histogram also forgets its last timestamp, so a sample straddling a take is lost:
 * the caller takes after the loop turn's timers (the histogram's runs then), and the max is at
 * least how late the take itself is (`intervalMs` after the last one).
 */
function start() {
    const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    delay.enable();
    let gcCount = 0;
    let gcMs = 0;
    let lastTake = null;
    let observer = null;
    try {
        observer = new PerformanceObserver((list) => {
            for (const entry of list.getEntries()) {
                gcCount += 1;
                gcMs += entry.duration;
            }
        });
        observer.observe({ entryTypes: ['gc'] });
    } catch {
        // No 'gc' entries on this runtime: the counts stay 0.
        observer = null;
    }
    return {
        take(intervalMs) {
            const now = performance.now();
            const late = lastTake === null ? 0 : Math.max(0, now - lastTake - intervalMs);
            lastTake = now;
            const stats = {
                event_loop_lag_ms: lag(delay.count > 0 ? delay.mean : NaN),
                event_loop_lag_p99_ms: lag(delay.count > 0 ? delay.percentile(99) : NaN),
                event_loop_lag_max_ms: Math.max(lag(delay.count > 0 ? delay.max : NaN), Math.round(late * 1000) / 1000),
                gc_count: gcCount,
                gc_ms: Math.round(gcMs * 1000) / 1000,
            };
            delay.reset();
            return stats;
        },
        stop() {
            delay.disable();
            if (observer) observer.disconnect();
        },
    };
}

module.exports = { start };
