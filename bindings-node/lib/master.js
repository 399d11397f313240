'use strict';

// The master side: drover's Master (an EventEmitter) over the addon's NativeMaster.

const { EventEmitter } = require('node:events');
const { NativeMaster } = require('./native');
const errors = require('./errors');
const exitReasons = require('./exit-reasons');
const { toJson } = require('./json');

// Statuses in which the master supervises no process: it does not keep Node's loop alive.
const IDLE = new Set(['INITIALIZED', 'STOPPED', 'SHUT_DOWN']);

// The masters that supervise workers (or wait for a flush), held here as the addon holds Node's
// loop: a master the app keeps no reference to goes on supervising. An idle master is not held, so
// one the app drops is collected with its native half (and its thread-safe function, which holds
// the event callback: that callback reaches the master only through a WeakRef, or the two would
// keep each other alive forever).
const live = new Set();

function durationMs(d) {
    return d && typeof d === 'object' ? d.secs * 1000 + d.nanos / 1e6 : d;
}

/** Turns drover's options into core's MasterOptions JSON text. */
function nativeOptions(options, what) {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
        throw new TypeError(`${what}: options must be an object, got ${options === null ? 'null' : typeof options}`);
    }
    const o = { ...options };
    if (o.script !== undefined && o.node === undefined) {
        // Workers run with the same Node as the master, not whatever `node` PATH finds.
        o.node = process.execPath;
    }
    let json;
    try {
        json = JSON.stringify(o);
    } catch (e) {
        throw new TypeError(`${what}: options must be JSON-serializable: ${e.message}`, { cause: e });
    }
    return json;
}

class Master extends EventEmitter {
    /**
     * Validates `options` (core's validation) and creates the master; nothing is spawned until
     * `start()`. Prefer `MasterFactory.create(options)`.
     */
    constructor(options) {
        super();
        const json = nativeOptions(options, 'MasterFactory.create');
        this._flushes = new Map();
        this._nextFlush = 1;
        this._referenced = false;
        this._status = 'INITIALIZED';
        // Events come as JSON text: JSON.parse is cheaper than building objects through N-API.
        const self = new WeakRef(this);
        const onEvent = (text) => {
            const master = self.deref();
            // null: the addon only handed a worker's channel over, on this thread, in its turn.
            if (master && text != null) master._onEvent(JSON.parse(text));
        };
        this._native = errors.call(() => new NativeMaster(json, onEvent));
    }

    /** The master's name (from `name`, else the script's or program's name). */
    get name() {
        return this._native.name();
    }

    /** Spawns `count` workers; resolves when every one reported STARTED. */
    start() {
        return this._op(() => this._native.start());
    }

    /** The master's status: 'INITIALIZED', 'STARTING', 'STARTED', 'RELOADING', 'STOPPING', 'STOPPED', 'SHUT_DOWN', 'FAILED'. */
    getStatus() {
        return errors.call(() => this._native.status());
    }

    /** Every worker's status (WorkerStatuses numbers), in worker id order, as drover returns them. */
    getWorkersStatuses() {
        return this._workers().map((w) => w.status);
    }

    /** Every worker in detail: id, pid, status, statusName, startedAt, restarts, ... */
    getWorkers() {
        return this._workers().map((w) => ({
            id: w.id,
            pid: w.pid,
            status: w.status,
            statusName: w.statusName,
            spawnedAt: new Date(w.spawnedAt),
            startedAt: w.startedAt == null ? null : new Date(w.startedAt),
            restarts: w.restarts,
            generation: w.generation,
            rssBytes: w.rssBytes == null ? null : w.rssBytes,
            alive: w.alive,
            failure: w.failure == null ? null : w.failure,
            exitReason: w.exit ? exitReasons.fromNative(w.exit.reason) : null,
        }));
    }

    _workers() {
        return errors.call(() => this._native.workers());
    }

    /**
     * Every listening socket the master holds — declared (`listen` option) or asked for by a
     * worker (`server.listen(PORT)`, `mb.listen()`) — as [{ address, local }]: the address asked
     * for and the one bound (the real port for port 0), e.g. { address: '[::]:0', local: '[::]:40123' }.
     */
    getListeningSockets() {
        // Not `listeners()`: EventEmitter has that name.
        return errors.call(() => this._native.listeners());
    }

    /** Changes the number of workers (newcomers are awaited until STARTED). */
    rescale(count) {
        return this._op(() => this._native.rescale(typeof count === 'number' ? count : badType('rescale(count)', 'a number', count)));
    }

    /** Replaces every worker (make-before-break) with the current options, or new ones; rolls back on failure. */
    gracefulReload(options) {
        return this._op(() => this._native.gracefulReload(options === undefined ? undefined : nativeOptions(options, 'gracefulReload')));
    }

    /** stop → STOPPED → quit → exit for every worker (then SIGTERM, SIGKILL); resolves when all are reaped. Idempotent. */
    gracefulShutdown() {
        return this._op(() => this._native.gracefulShutdown());
    }

    /** SIGKILL to every worker; resolves when all are reaped. Idempotent. */
    hardShutdown() {
        return this._op(() => this._native.hardShutdown());
    }

    /**
     * Applies drover's signal policy: SIGHUP reloads, SIGTERM/SIGINT shut down gracefully, a second
     * SIGINT during a shutdown makes it hard. Wire it yourself: `process.on('SIGHUP', (s) => master.handleSignal(s))`.
     * Resolves with the action taken: 'Reload', 'GracefulShutdown', 'HardShutdown' or 'Ignore'.
     */
    handleSignal(signal) {
        const number = typeof signal === 'string' ? require('node:os').constants.signals[signal] : signal;
        if (typeof number !== 'number') {
            return Promise.reject(new TypeError(`handleSignal: unknown signal ${String(signal)}`));
        }
        let action;
        return this._op(async () => {
            action = await this._native.handleSignal(number);
        }).then(() => action);
    }

    /** Replaces worker `id`'s process (the old one is ended gracefully first). */
    restartWorkerById(id) {
        return this._op(() => this._native.restartWorker(typeof id === 'number' ? id : badType('restartWorkerById(id)', 'a number', id)));
    }

    /** Sends a JSON message to worker `id`; resolves once written to its channel. */
    send(id, message) {
        return this._call(() => this._native.send(typeof id === 'number' ? id : badType('send(id, message)', 'a number', id), toJson(message)));
    }

    /** Sends a JSON message to every running worker; resolves with how many it reached. */
    broadcast(message) {
        return this._call(() => this._native.broadcast(toJson(message)));
    }

    // A lifecycle operation: errors become drover's classes, and every event emitted before the
    // operation ended is delivered before the promise settles.
    async _op(fn) {
        let error;
        try {
            await fn();
        } catch (e) {
            error = errors.fromNative(e);
        }
        await this._flush();
        if (error) {
            throw error;
        }
    }

    async _call(fn) {
        try {
            return await fn();
        } catch (e) {
            throw errors.fromNative(e);
        }
    }

    // Resolves once every event the master emitted so far has been delivered.
    _flush() {
        return new Promise((resolve) => {
            const id = this._nextFlush++;
            this._flushes.set(id, resolve);
            if (!this._native.flush(id)) {
                this._flushes.delete(id);
                resolve();
            }
            this._updateRef();
        });
    }

    // The addon keeps Node's loop alive only while the master supervises workers or a flush waits.
    _updateRef() {
        const wanted = this._flushes.size > 0 || !IDLE.has(this._status);
        if (wanted !== this._referenced) {
            this._referenced = wanted;
            this._native.setRef(wanted);
            if (wanted) live.add(this);
            else live.delete(this);
        }
    }

    _emitError(err, workerId) {
        // 'error' is emitted only when someone listens: a misbehaving worker must not crash the master.
        if (this.listenerCount('error') > 0) {
            this.emit('error', err, workerId);
        }
    }

    _onEvent(e) {
        switch (e.event) {
            case 'master_status':
                this._status = e.to;
                this._updateRef();
                this.emit('status', e.to, e.from);
                break;
            case 'status':
                this.emit('worker-status', e.id, e.to, e.from, e.pid);
                break;
            case 'message':
                this.emit('message', e.data, e.id, e.pid);
                break;
            case 'exit':
                this.emit('worker-exit', exitReasons.fromNative(e.reason), e.id, {
                    pid: e.pid,
                    requested: e.requested,
                    lastStatus: e.last_status,
                });
                break;
            case 'protocol_error': {
                const err = Object.assign(new errors.ProtocolError(`worker ${e.id} (pid ${e.pid}): ${e.message}`), {
                    workerId: e.id,
                    pid: e.pid,
                    detail: e.error,
                });
                this.emit('protocol-error', err, e.id);
                this._emitError(err, e.id);
                break;
            }
            case 'failed': {
                const err = Object.assign(
                    new errors.WorkerFailedError(`worker ${e.id}${e.pid == null ? '' : ` (pid ${e.pid})`}: ${e.message}`),
                    { workerId: e.id, pid: e.pid, failure: e.failure },
                );
                this.emit('worker-failed', err, e.id);
                this._emitError(err, e.id);
                break;
            }
            case 'heartbeat':
                this.emit('heartbeat', e.id, { pid: e.pid, rssBytes: e.rss_bytes });
                break;
            case 'restarting':
                this.emit('worker-restarting', e.id, { delayMs: durationMs(e.delay), restarts: e.restarts });
                break;
            case 'recycling':
                this.emit('worker-recycling', e.id, e.reason);
                break;
            case 'gave_up':
                this.emit('gave-up', { restarts: e.restarts, windowMs: durationMs(e.window) });
                break;
            case 'flush': {
                const resolve = this._flushes.get(e.id);
                this._flushes.delete(e.id);
                this._updateRef();
                if (resolve) {
                    resolve();
                }
                break;
            }
            default:
                // An event this layer does not know yet (a newer core): passed on as is.
                this.emit('event', e);
        }
    }
}

function badType(what, expected, got) {
    throw new TypeError(`${what}: expected ${expected}, got ${got === null ? 'null' : typeof got}`);
}

const MasterFactory = {
    /** Creates a master; see Master's options in index.d.ts. Throws InvalidConfigurationError or TypeError. */
    create(options) {
        return new Master(options);
    },
};

module.exports = { Master, MasterFactory };
