'use strict';

// drover 1.0's face of the master: its options (signals, schedulingPolicy, restartTimeout,
// statusTimeout) mapped onto core's, its master status numbers, and which operation outcomes its
// API treats as "nothing to do". README.md, "Compatibility with drover 1.0", says why for each.

const os = require('node:os');
const errors = require('./errors');

// cluster.SCHED_NONE and cluster.SCHED_RR (not read from node:cluster: loading it is not free).
const SCHED_NONE = 1;
const SCHED_RR = 2;

/** drover 1.0's master status numbers (`Master.STATUS_*`), plus FAILED (ours: the master gave up). */
const MASTER_STATUS = Object.freeze({
    SHUTTED_DOWN: 1,
    STARTING: 2,
    STARTED: 3,
    STOPPING: 4,
    STOPPED: 5,
    FAILED: 6,
});

/**
 * Our status names onto 1.0's: 1.0 has no INITIALIZED (a new master is SHUTTED_DOWN, as is one
 * shut down) and no RELOADING (a reloading master is STARTED: it serves throughout).
 */
const STATUS_OF_NAME = Object.freeze({
    INITIALIZED: 'SHUTTED_DOWN',
    STARTING: 'STARTING',
    STARTED: 'STARTED',
    RELOADING: 'STARTED',
    STOPPING: 'STOPPING',
    STOPPED: 'STOPPED',
    SHUT_DOWN: 'SHUTTED_DOWN',
    FAILED: 'FAILED',
});

const DEFAULT_SIGNALS = Object.freeze({ reload: 'SIGHUP', shutdown: 'SIGTERM' });
// Node cannot listen for these (process.on throws), and a master must not take over SIGCHLD.
const UNUSABLE_SIGNALS = new Set(['SIGKILL', 'SIGSTOP', 'SIGCHLD']);

function invalid(what, message) {
    return new errors.InvalidConfigurationError(`${what}: ${message}`);
}

function positiveMs(what, key, value) {
    if (!Number.isSafeInteger(value) || value <= 0) {
        throw invalid(what, `"${key}" must be a positive integer (milliseconds), got ${JSON.stringify(value)}`);
    }
    return value;
}

/** Validates `signals` (1.0's option) into { reload, shutdown } signal names, either possibly null. */
function parseSignals(what, signals) {
    if (signals === undefined) return { ...DEFAULT_SIGNALS };
    if (signals === false || signals === null) return { reload: null, shutdown: null };
    if (typeof signals !== 'object' || Array.isArray(signals)) {
        throw invalid(what, `"signals" must be an object like { reload: 'SIGHUP', shutdown: 'SIGTERM' }, or false, got ${typeof signals}`);
    }
    const parsed = { reload: null, shutdown: null };
    for (const [key, value] of Object.entries(signals)) {
        if (!(key in parsed)) {
            throw invalid(what, `"signals.${key}" is not an option (reload, shutdown)`);
        }
        if (value === undefined || value === null || value === false) continue;
        if (typeof value !== 'string' || !(value in os.constants.signals) || UNUSABLE_SIGNALS.has(value)) {
            throw invalid(what, `"signals.${key}" must be a signal name Node can listen for, like 'SIGHUP', got ${JSON.stringify(value)}`);
        }
        parsed[key] = value;
    }
    if (parsed.reload && parsed.reload === parsed.shutdown) {
        throw invalid(what, `"signals.reload" and "signals.shutdown" are both ${parsed.reload}`);
    }
    return parsed;
}

/**
 * Splits a master's options into core's (with 1.0's timeouts mapped onto core's, where core's own
 * are not given) and the signals to handle. Throws InvalidConfigurationError naming the option.
 */
function splitOptions(options, what) {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
        throw new TypeError(`${what}: options must be an object, got ${options === null ? 'null' : typeof options}`);
    }
    const { signals, schedulingPolicy, restartTimeout, statusTimeout, ...core } = options;
    if (schedulingPolicy !== undefined && schedulingPolicy !== SCHED_NONE && schedulingPolicy !== SCHED_RR) {
        throw invalid(what, `"schedulingPolicy" must be cluster.SCHED_NONE (1) or cluster.SCHED_RR (2), got ${JSON.stringify(schedulingPolicy)}`);
    }
    if (statusTimeout !== undefined) {
        // Each awaited status change: spawn to STARTED, stop to STOPPED.
        positiveMs(what, 'statusTimeout', statusTimeout);
        if (core.startTimeout === undefined) core.startTimeout = statusTimeout;
        if (core.stopTimeout === undefined) core.stopTimeout = statusTimeout;
    }
    if (restartTimeout !== undefined) {
        // The time a worker being replaced or retired gets from `quit` to its exit.
        positiveMs(what, 'restartTimeout', restartTimeout);
        if (core.quitTimeout === undefined) core.quitTimeout = restartTimeout;
    }
    return { core, signals: parseSignals(what, signals) };
}

/** A deep copy of options (JSON data: what core receives is their JSON text). */
function cloneOptions(options) {
    return JSON.parse(JSON.stringify(options));
}

/** gracefulReload's options over the ones in force: top-level keys replace; `signals` stays as created. */
function mergeForReload(current, options) {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
        throw new TypeError(`gracefulReload: options must be an object, got ${options === null ? 'null' : typeof options}`);
    }
    if (options.signals !== undefined) {
        throw invalid('gracefulReload', '"signals" is set once, by MasterFactory.create');
    }
    const merged = cloneOptions({ ...current, ...options });
    // A reload that sets `program` replaces `script` (and the other way round): not both.
    if (options.program !== undefined && options.script === undefined) delete merged.script;
    if (options.script !== undefined && options.program === undefined) delete merged.program;
    return merged;
}

/**
 * Whether restartWorkerById's error means "nothing to restart" in drover 1.0's terms: the worker
 * is gone from the master, the master is not STARTED, or a shutdown cancelled the restart.
 */
function isMootRestart(err) {
    return err instanceof errors.WorkerNotFoundError
        || err instanceof errors.InappropriateConditionError
        || err instanceof errors.OperationCancelledError;
}

module.exports = {
    MASTER_STATUS,
    STATUS_OF_NAME,
    SCHED_NONE,
    SCHED_RR,
    splitOptions,
    cloneOptions,
    mergeForReload,
    isMootRestart,
};
