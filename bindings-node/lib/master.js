'use strict';

// The master side: drover's Master (an EventEmitter) over the addon's NativeMaster.

const { EventEmitter } = require('node:events');
const { NativeMaster } = require('./native');
const errors = require('./errors');
const exitReasons = require('./exit-reasons');
const { toJson } = require('./json');
const compat = require('./compat');
const signals = require('./signals');
const { WorkerStatuses } = require('./statuses');
const requests = require('./requests');
const { Store } = require('./shared-state');

// Statuses in which an operation is under way that ends by itself (in STARTED, STOPPED or FAILED).
const BUSY = new Set(['STARTING', 'RELOADING']);

// The masters that supervise workers (or wait for a flush), held here as the addon holds Node's
// loop: a master the app keeps no reference to goes on supervising. An idle master is not held, so
// one the app drops is collected with its native half (and its thread-safe function, which holds
// the event callback: that callback reaches the master only through a WeakRef, or the two would
// keep each other alive forever).
const live = new Set();

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
    // drover 1.0's master statuses (what getStatus() returns); getStatusName() gives ours.
    static get STATUS_SHUTTED_DOWN() { return compat.MASTER_STATUS.SHUTTED_DOWN; }
    static get STATUS_STARTING() { return compat.MASTER_STATUS.STARTING; }
    static get STATUS_STARTED() { return compat.MASTER_STATUS.STARTED; }
    static get STATUS_STOPPING() { return compat.MASTER_STATUS.STOPPING; }
    static get STATUS_STOPPED() { return compat.MASTER_STATUS.STOPPED; }
    static get STATUS_FAILED() { return compat.MASTER_STATUS.FAILED; }

    /**
     * Validates `options` (drover 1.0's `signals`, `schedulingPolicy`, `restartTimeout`,
     * `statusTimeout` here, the rest by core) and creates the master; nothing is spawned until
     * `start()`. Installs the `signals` handlers (default: SIGHUP reloads, SIGTERM shuts down).
     * Prefer `MasterFactory.create(options)`.
     */
    constructor(options) {
        super();
        const { core, signals: wanted } = compat.splitOptions(options, 'MasterFactory.create');
        const json = nativeOptions(core, 'MasterFactory.create');
        this._options = compat.cloneOptions(options);
        this._shutdownAsked = false;
        this._signalRef = null;
        this._flushes = new Map();
        this._nextFlush = 1;
        this._referenced = false;
        // Whether the master supervises no process (core's idle statuses, told by each
        // master_status event): it then does not keep Node's loop alive. Created INITIALIZED: idle.
        this._idle = true;
        // The JS handlers of requests (handle()), by name.
        this._handlers = new Map();
        this._recyclePredicate = null;
        // Worker id -> the pid the predicate condemned: judged no more (a later calm heartbeat
        // must not take back a replacement the master may be about to start).
        this._condemned = new Map();
        /**
         * The shared store workers reach with `mb.store` (PROTOCOL.md §5.6), read and written
         * directly: get, set, delete, cas, keys (watch is a worker's; here, read on demand).
         */
        // Made outside this constructor: a closure here that captured `this` would put the
        // master in the context the event callback (held by the addon) shares, and keep it alive.
        this.store = masterStore(this);
        // Events come as JSON text: JSON.parse is cheaper than building objects through N-API.
        const self = new WeakRef(this);
        const onEvent = (text) => {
            const master = self.deref();
            // null: the addon only handed a worker's channel over, on this thread, in its turn.
            if (master && text != null) master._onEvent(JSON.parse(text));
        };
        this._native = errors.call(() => new NativeMaster(json, onEvent));
        signals.install(this, wanted);
    }

    /** A copy of the options in force (as given, merged by gracefulReload, `count` as rescaled). */
    getConfig() {
        const config = compat.cloneOptions(this._options);
        config.count = errors.call(() => this._native.count());
        return config;
    }

    /** The master's name (from `name`, else the script's or program's name). */
    get name() {
        return this._native.name();
    }

    /**
     * Spawns `count` workers; resolves when every one reported STARTED. Rejects with
     * AlreadyInitializedError (an InappropriateConditionError) if the master is not INITIALIZED or
     * STOPPED (after a failed start), as drover 1.0 does.
     */
    start() {
        return this._op(() => this._native.start()).catch((err) => {
            throw err instanceof errors.InappropriateConditionError ? errors.AlreadyInitializedError.from(err) : err;
        });
    }

    /**
     * Who leads leadership `key` among the workers that joined it (PROTOCOL.md §5.10, a worker's
     * `bus.leaderJoin(key)` or `bus.cluster(..., { name: key })`): `{ leader, term }` (leader null:
     * nobody for now), or null when no worker joined `key`.
     */
    leader(key) {
        if (typeof key !== 'string') throw new TypeError(`Master.leader(key): key must be a string, got ${key === null ? 'null' : typeof key}`);
        return errors.call(() => this._native.leader(key));
    }

    /** The master's status as drover 1.0's number: one of `Master.STATUS_*` (see getStatusName()). */
    getStatus() {
        return compat.MASTER_STATUS[compat.STATUS_OF_NAME[this.getStatusName()]];
    }

    /** The master's status: 'INITIALIZED', 'STARTING', 'STARTED', 'RELOADING', 'STOPPING', 'STOPPED', 'SHUT_DOWN', 'FAILED'. */
    getStatusName() {
        return errors.call(() => this._native.status());
    }

    /** Every worker's status (WorkerStatuses numbers), in worker id order, as drover returns them. */
    getWorkersStatuses() {
        return this._workers().map((w) => w.status);
    }

    /** Every worker in detail: id, instance, pid, status, statusName, startedAt, restarts, ... */
    getWorkers() {
        return this._workers().map(details);
    }

    /**
     * Asks every worker's status functions (their registerStatus()) and resolves with
     * { workerId: { name: value | { error } } }; a worker that does not answer within
     * options.timeout ms (default 30 000) has its error in its place.
     */
    async gatherStatuses(options) {
        const timeout = requests.timeoutOf(options, 'Master.gatherStatuses(options)');
        try {
            return JSON.parse(await errors.call(() => this._native.gatherStatuses(timeout)));
        } catch (e) {
            throw errors.fromNative(e);
        }
    }

    /**
     * Recycles (replaces make-before-break, one at a time) each STARTED worker for which
     * `predicate(stats, worker)` says so: true, or a string giving the reason. It runs at each of
     * the worker's heartbeats (so `heartbeatInterval` must be set), with `stats` the heartbeat's
     * statistics (a Node worker's `event_loop_lag_ms`, `event_loop_lag_p99_ms`,
     * `event_loop_lag_max_ms` over the last interval, `gc_count`, `gc_ms` since it started; plus
     * `rss_bytes`) and `worker` as getWorkers() gives it. Once it asks for a replacement, that
     * process is not asked again: the master replaces it at its next check (`memoryCheckInterval`,
     * default 5 s). A throwing predicate keeps the worker (its error is emitted as 'error'). Set
     * it before start(): as core's, it takes effect from the next start or operation. Replaces a
     * predicate set before; returns the master.
     */
    recycleWhen(predicate) {
        if (typeof predicate !== 'function') {
            throw new TypeError(`Master.recycleWhen(predicate): predicate must be a function, got ${predicate === null ? 'null' : typeof predicate}`);
        }
        if (!this._recyclePredicate) errors.call(() => this._native.enableRecyclePredicate());
        this._recyclePredicate = predicate;
        return this;
    }

    // Asks the recycle predicate about heartbeat `e`'s worker, with its stats, and hands core its
    // verdict (the worker's snapshot may already hold a later heartbeat's stats).
    _judge(e) {
        const { id } = e;
        const w = errors.call(() => this._native.worker(id));
        if (!w || !w.alive || w.pid == null || this._condemned.get(id) === w.pid) return;
        let reason = null;
        try {
            const stats = { ...(e.stats || {}), rss_bytes: e.rss_bytes == null ? w.rssBytes : e.rss_bytes };
            const verdict = this._recyclePredicate(stats, details(w));
            if (typeof verdict === 'string' && verdict !== '') reason = verdict;
            else if (verdict) reason = 'the recycle predicate';
        } catch (e) {
            this._emitError(e, id);
        }
        if (reason !== null) this._condemned.set(id, w.pid);
        errors.call(() => this._native.setRecycleVerdict(id, w.pid, reason));
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

    /**
     * Changes the number of workers (newcomers are awaited until STARTED). Resolves with the change
     * in the number of workers (drover 1.0's value): `rescale(6)` from 4 resolves with 2.
     */
    async rescale(count) {
        if (typeof count === 'number' && count <= 0) {
            // drover 1.0 checks this before anything else, whatever the master's status.
            throw Object.assign(new errors.InvalidArgumentError(`rescale(count): count must be positive, got ${count}`), { size: count });
        }
        let before = 0;
        await this._op(() => {
            const target = typeof count === 'number' ? count : badType('rescale(count)', 'a number', count);
            before = this._workers().length;
            return this._native.rescale(target);
        });
        return count - before;
    }

    /**
     * Replaces every worker (make-before-break) and rolls back on failure. `options`, if given, are
     * merged over the options in force (top-level keys: `{ count: 3 }` keeps the script, env, ...),
     * and the result is in force from then on.
     */
    gracefulReload(options) {
        return this._op(async () => {
            let json;
            let merged;
            if (options !== undefined) {
                merged = compat.mergeForReload(this.getConfig(), options);
                json = nativeOptions(compat.splitOptions(merged, 'gracefulReload').core, 'gracefulReload');
            }
            await this._native.gracefulReload(json);
            if (merged) {
                this._options = merged;
            }
        });
    }

    /**
     * stop → STOPPED → quit → exit for every worker (then SIGTERM, SIGKILL); resolves when all are
     * reaped. As in drover 1.0, rejects with InappropriateConditionError if the master never
     * started or a shutdown was already asked for.
     */
    gracefulShutdown() {
        const status = this.getStatusName();
        if (this._shutdownAsked || status === 'INITIALIZED' || status === 'SHUT_DOWN') {
            const err = new errors.InappropriateConditionError(
                `gracefulShutdown: the master ${this._shutdownAsked ? 'is already being shut down' : `is ${status}`}`,
            );
            return Promise.reject(Object.assign(err, { operation: 'graceful_shutdown', status }));
        }
        this._shutdownAsked = true;
        return this._op(() => this._native.gracefulShutdown());
    }

    /** SIGKILL to every worker; resolves when all are reaped. Callable at any time, any number of times. */
    hardShutdown() {
        this._shutdownAsked = true;
        return this._op(() => this._native.hardShutdown());
    }

    /**
     * Applies drover's signal policy: SIGHUP reloads, SIGTERM/SIGINT shut down gracefully, a second
     * SIGINT during a shutdown makes it hard. The `signals` option (drover 1.0's) already wires SIGHUP
     * and SIGTERM by default; with `signals: false`, wire this yourself:
     * `process.on('SIGHUP', (s) => master.handleSignal(s))`.
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

    /**
     * Replaces worker `id`'s process (the old one is ended gracefully first) and resolves with true
     * once the new one is STARTED. Called while the master starts or reloads, it waits for that to
     * end first. As in drover 1.0 it does nothing — resolves with false — for an id the master no
     * longer has (retired by a reload, rescale or shutdown), while the master is not STARTED (a
     * failed start, a shutdown), or when a shutdown cancels it: a 1.0 'worker-exit' handler calls
     * it for every exit, including those the master asked for.
     */
    async restartWorkerById(id) {
        let restarted = true;
        await this._op(async () => {
            const target = typeof id === 'number' ? id : badType('restartWorkerById(id)', 'a number', id);
            await this._settled();
            try {
                await this._native.restartWorker(target);
            } catch (e) {
                if (!compat.isMootRestart(errors.fromNative(e))) throw e;
                restarted = false;
            }
        });
        return restarted;
    }

    /**
     * Takes the group out of rotation by hand (cluster2's ECV "mark down"): what answers a load
     * balancer's health check for it says "out of rotation" while its workers keep running and
     * serving. Emits 'rotation' if that changes anything; lasts until markUp().
     */
    markDown() {
        this._native.markDown();
    }

    /** Lifts markDown(): the group is in rotation again unless an ECV monitor judges it down. */
    markUp() {
        this._native.markUp();
    }

    /**
     * Runs an ECV monitor: `{ url, validator, interval, timeout, failuresBeforeDown }` (the
     * `drover` command's `ecv` key; PROTOCOL.md §5.9). While the master is STARTED it probes
     * `url`, takes the group out of rotation after `failuresBeforeDown` failures in a row and puts
     * it back at the first pass. Returns `{ stop() }`. Throws InvalidConfigurationError.
     */
    monitorEcv(options) {
        let native;
        try {
            native = this._native.monitorEcv(toJson(options));
        } catch (e) {
            throw errors.fromNative(e);
        }
        return { stop: () => native.stop() };
    }

    /** `{ inRotation, manual, monitor }`: whether the group is in rotation, and each cause when not. */
    getRotation() {
        return this._native.rotation();
    }

    /** Sends a JSON message to worker `id`; resolves once written to its channel. */
    send(id, message) {
        return this._call(() => this._native.send(typeof id === 'number' ? id : badType('send(id, message)', 'a number', id), toJson(message)));
    }

    /** Sends a JSON message to every running worker; resolves with how many it reached. */
    broadcast(message) {
        return this._call(() => this._native.broadcast(toJson(message)));
    }

    /**
     * Registers (or replaces) handler `name`, called with (args, fromWorkerId) for every request
     * to 'master' (from a worker, or `request('master', ...)` here, when fromWorkerId is 0). Its
     * result (or the value of the promise it returns) is the answer, as JSON; a thrown error or a
     * rejected promise is the asker's RequestError 'handler_failed' with its message. Throws
     * TypeError for a wrong type, RequestError for a bad name (empty, > 128 bytes, control
     * characters) or a 257th handler. Returns the master.
     */
    handle(name, handler) {
        requests.checkHandler(name, handler, 'Master.handle(name, handler)');
        errors.call(() => this._native.handle(name));
        this._handlers.set(name, handler);
        return this;
    }

    /**
     * Pushes `config` (any JSON: the workers' new user config) to every worker without restarting
     * them (PROTOCOL.md §5.11); workers spawned later get it in their welcome. Resolves with one
     * answer per worker: `{ id, name, instance, pid, outcome, error? }`, `outcome` being
     * 'applied', 'refused' (`error` is the worker's reason), 'timeout' (no answer within
     * `options.timeout` ms, default 10 000, at most 600 000) or 'gone' (it exited). Rejects with a
     * ReconfigureError if the config does not fit in one frame.
     */
    reconfigure(config, options) {
        return this._call(async () => {
            const what = 'Master.reconfigure(config, options)';
            const json = toJson(config);
            const timeout = options === undefined ? undefined : requests.timeoutOf(options, what);
            return JSON.parse(await this._native.reconfigure(json, timeout));
        });
    }

    /**
     * Runs `hook` (a function; may return a promise) before each start's first worker spawns. A
     * hook that throws or rejects, or outlives the start timeout, fails `start()` with a
     * PreStartError and spawns nothing. Returns the master.
     */
    preStart(hook) {
        if (typeof hook !== 'function') {
            throw new TypeError(`Master.preStart(hook): hook must be a function, got ${hook === null ? 'null' : typeof hook}`);
        }
        this._preStart = hook;
        errors.call(() => this._native.setPreStart());
        return this;
    }

    /**
     * Calls handler `name` of `target` with `args` (JSON): 'master' (this master's handle()),
     * 'worker:ID' (or a number, or { worker: ID }), 'name:NAME' (or { name }), 'any' (one worker
     * that declared it, in turn) or 'all' (every one: resolves with a list of { worker, result }
     * or { worker, error: { code, message } }). Resolves with the result; rejects with a
     * RequestError whose `code` is 'no_such_handler', 'no_such_target', 'timeout' (options.timeout
     * ms, default 30 000, at most 600 000), 'target_gone', 'handler_failed', 'overloaded'...
     */
    request(target, name, args, options) {
        return requests.request(this._native, 'Master.request(target, name, args, options)', target, name, args, options);
    }

    // Resolves once the master is neither starting nor reloading (a worker that died meanwhile is
    // then either part of a failed start, gone with a reload, or in a STARTED master's table).
    _settled() {
        const busy = () => BUSY.has(this.getStatusName());
        if (!busy()) return Promise.resolve();
        return new Promise((resolve) => {
            const check = () => {
                if (!busy()) {
                    this.off('status', check);
                    resolve();
                }
            };
            this.on('status', check);
        });
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
        const wanted = this._flushes.size > 0 || !this._idle;
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
                this._idle = e.idle;
                this._updateRef();
                if (e.to === 'SHUT_DOWN') {
                    signals.uninstall(this);
                }
                this.emit('status', e.to, e.from);
                break;
            case 'spawned':
                // Announced as a status event to INITIALIZED, as before core had a spawned event.
                this.emit('worker-status', e.id, WorkerStatuses.INITIALIZED, WorkerStatuses.INITIALIZED, e.pid);
                break;
            case 'status':
                this.emit('worker-status', e.id, e.to, e.from, e.pid);
                break;
            case 'message':
                this.emit('message', e.data, e.id, e.pid);
                break;
            case 'exit':
                if (this._recyclePredicate && e.pid != null) {
                    this._condemned.delete(e.id);
                    errors.call(() => this._native.setRecycleVerdict(e.id, e.pid, null));
                }
                this.emit('worker-exit', exitReasons.fromNative(e.reason, e.requested), e.id, {
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
                if (this._recyclePredicate) this._judge(e);
                this.emit('heartbeat', e.id, { pid: e.pid, rssBytes: e.rss_bytes, stats: e.stats || {} });
                break;
            case 'restarting':
                this.emit('worker-restarting', e.id, { delayMs: e.delay_ms, restarts: e.restarts });
                break;
            case 'recycling':
                this.emit('worker-recycling', e.id, e.reason);
                break;
            case 'reconfigured':
                this.emit('worker-reconfigured', e.id, { pid: e.pid, version: e.version, error: e.error ?? null });
                break;
            case 'gave_up':
                this.emit('gave-up', { restarts: e.restarts, windowMs: e.window_ms });
                break;
            case 'rotation':
                this.emit('rotation', { inRotation: e.in_rotation, manual: e.manual, monitor: e.monitor, message: e.message });
                break;
            case 'pre-start': {
                const hook = this._preStart;
                const reply = (ok, text) => {
                    try {
                        this._native.respond(e.id, ok, text);
                    } catch {
                        // The master is gone: nothing waits for the hook any more.
                    }
                };
                new Promise((resolve) => resolve(hook()))
                    .then(() => reply(true, 'null'), (err) => reply(false, err instanceof Error ? err.message : String(err)));
                break;
            }
            case 'request':
                requests.answer(this._handlers, e, (id, ok, text) => this._native.respond(id, ok, text));
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

/** The master's own view of the shared store: reads and writes, no watches. */
function masterStore(master) {
    return new Store(async (op, args) => {
        if (op === 'watch' || op === 'unwatch') {
            throw Object.assign(
                new errors.RequestError(`Master.store.${op}: the master's user reads the store directly; watches are for workers`),
                { code: 'bad_request' },
            );
        }
        try {
            return JSON.parse(await errors.call(() => master._native.store(op, toJson(args))));
        } catch (e) {
            throw errors.fromNative(e);
        }
    }, 'Master');
}

/** A worker's details as getWorkers() gives them, from the addon's snapshot. */
function details(w) {
    return {
        id: w.id,
        instance: w.instance,
        name: w.name,
        appStatus: w.appStatus == null ? null : w.appStatus,
        counters: w.counters || {},
        stats: w.stats || {},
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
        exitReason: w.exit ? exitReasons.fromNative(w.exit.reason, w.exit.requested) : null,
    };
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
