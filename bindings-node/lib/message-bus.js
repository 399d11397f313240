'use strict';

// The worker side: drover's MessageBus (an EventEmitter) over the addon's NativeBus.
//
// The constructor is synchronous; the core handshake is not. Sends made before the handshake
// completes are kept by the addon, in order, and sent right after it.

const { EventEmitter } = require('node:events');
const errors = require('./errors');
const { WorkerStatuses } = require('./statuses');
const { toJson } = require('./json');
const requests = require('./requests');
const { Store, Cache } = require('./shared-state');
const runtimeStats = require('./runtime-stats');

/** The longest application status, bytes, and the most counters (PROTOCOL.md §5.8). */
const MAX_APP_STATUS_BYTES = 64;
const MAX_COUNTERS = 32;
/** A cache load may take up to the longest request timeout (PROTOCOL.md §5.5). */
const CACHE_WAIT_MS = 600000;

let created = false;

function ignoreSignal() {}

class MessageBus extends EventEmitter {
    /**
     * Connects this worker to its master. Throws NotAWorkerError outside a process started by a
     * drover master, MessageBusError if a MessageBus was already created in this process.
     */
    constructor(options = {}) {
        super();
        if (options === null || typeof options !== 'object') {
            throw new TypeError(`new MessageBus(options): options must be an object, got ${options === null ? 'null' : typeof options}`);
        }
        const fd = process.env.DROVER_IPC_FD;
        if (fd === undefined || fd === '') {
            throw new errors.NotAWorkerError(
                'MessageBus: this process was not started by a drover master (DROVER_IPC_FD is not set); ' +
                'run it as a worker of MasterFactory.create({ script }) or another drover master',
            );
        }
        if (created) {
            throw new errors.MessageBusError('MessageBus: this process already has one (its channel can be owned once)');
        }
        created = true;
        const { NativeBus } = require('./native');
        this.meta = null;
        // Each worker's inspector (opened by SIGUSR1, `drover debug`) on a free port of its own, not
        // all on 9229, unless the process chose one (--inspect*, in its arguments or NODE_OPTIONS).
        const chosen = [...process.execArgv, ...(process.env.NODE_OPTIONS || '').split(/\s+/)].some((o) => o.startsWith('--inspect'));
        if (!chosen && process.debugPort === 9229) process.debugPort = 0;
        this._heartbeat = null;
        this._stats = null;
        this._closing = null;
        // Events come as JSON text: JSON.parse is cheaper than building objects through N-API.
        // null: nothing for JavaScript (the addon delivered the event through its own call).
        this._native = errors.call(() => new NativeBus((text) => {
            if (text != null) this._onEvent(JSON.parse(text));
        }));
        // Usable directly as callbacks: server.listen(port, mb.sendStarted), server.close(mb.sendStopped).
        this.sendStarted = this.sendStarted.bind(this);
        this.sendStopped = this.sendStopped.bind(this);
        this.sendShuttedDown = this.sendShuttedDown.bind(this);
        this.sendMessage = this.sendMessage.bind(this);
        this.close = this.close.bind(this);
        // As drover 1.0's MessageBus: SIGTERM and SIGINT do not end a worker in service, its master
        // does (stop, quit). A service manager that signals the whole cgroup, or a `kill 0`, would
        // otherwise end every worker before the master could stop them gracefully. Unlike 1.0, only
        // from STARTED until the master's stop or quit: a SIGTERM after those is the master's own
        // escalation, and a worker that never started is ended by it at once. The app's own
        // listeners are kept (1.0 removed them).
        // The handlers of requests (handle()), by name.
        this._handlers = new Map();
        // This worker's requests under way (requestNow), by their number.
        this._calls = new Map();
        this._callNumber = 0;
        /** The master's shared store (PROTOCOL.md §5.6): get, set, delete, cas, keys, watch, unwatch. */
        this.store = new Store((op, args) => this._request('master', `drover.store.${op}`, toJson(args)), 'MessageBus');
        /** The cache every worker of the master shares, with single-flight getOrLoad (PROTOCOL.md §5.7). */
        this.cache = new Cache((op, args) => this._request('master', `drover.cache.${op}`, toJson(args), CACHE_WAIT_MS));
        this._ignoreSignals = options.ignoreSignals !== false;
        this._signalsIgnored = false;
        if (options.sharedListen !== false) {
            // server.listen(PORT) now gets the master's shared socket (lib/listen.js says why here).
            require('./listen').install(this);
        }
    }

    /**
     * Asks the master for its listening socket on `address` ('host:port', '[v6]:port', a port,
     * 'unix:/path'): every worker asking for the same address shares one socket, which the master
     * keeps open through restarts and reloads. Resolves with { fd, local }; the fd is yours (give
     * it to `server.listen({ fd })`). Rejects with ListenError (with `code`, e.g. 'EADDRINUSE').
     * `server.listen(PORT)` does this by itself unless the bus was created with `sharedListen: false`.
     */
    listen(address) {
        const text = typeof address === 'number' ? String(address) : address;
        if (typeof text !== 'string' || text === '') {
            return Promise.reject(new TypeError(`MessageBus.listen(address): expected a non-empty string or a port number, got ${address === null ? 'null' : typeof address}`));
        }
        return this._native.listen(text).catch((e) => {
            throw errors.fromNative(e);
        });
    }

    /**
     * Registers (or replaces) handler `name` and declares this worker's handlers to the master
     * (all of them, each time). Called with (args, from) for every request to this worker (from:
     * the asking worker's id, 0 for the master); its result (or its promise's value) is the answer,
     * as JSON; a thrown error or a rejected promise is the asker's RequestError 'handler_failed'
     * with its message. Throws TypeError for a wrong type, RequestError for a bad name or a 257th
     * handler. Returns the bus.
     */
    handle(name, handler) {
        requests.checkHandler(name, handler, 'MessageBus.handle(name, handler)');
        const names = [...new Set([...this._handlers.keys(), name])];
        errors.call(() => this._native.setHandlers(names));
        this._handlers.set(name, handler);
        return this;
    }

    /**
     * Calls handler `name` of `target` with `args` (JSON), routed by the master: 'master' (its
     * handle()), 'worker:ID' (or a number, or { worker: ID }), 'name:NAME' (or { name }), 'any'
     * (one worker that declared it, in turn) or 'all' (every other one: resolves with a list of
     * { worker, result } or { worker, error: { code, message } }). Resolves with the result;
     * rejects with a RequestError whose `code` is 'no_such_handler', 'no_such_target', 'timeout'
     * (options.timeout ms, default 30 000, at most 600 000), 'target_gone', 'handler_failed'...
     */
    request(target, name, args, options) {
        const what = 'MessageBus.request(target, name, args, options)';
        let call;
        try {
            call = requests.checkCall(what, target, name, args, options);
        } catch (e) {
            return Promise.reject(e);
        }
        return this._request(call.target, name, call.json, call.timeout);
    }

    // A request in core's form (target text, JSON text of the arguments, timeout ms or
    // undefined), settled on the JS thread by the read that brings its answer (a 'settled'
    // event). Before the handshake is over, the runtime's path waits for it instead.
    _request(target, name, json, timeout) {
        const number = ++this._callNumber;
        let now;
        try {
            now = errors.call(() => this._native.requestNow(number, target, name, json, timeout));
        } catch (e) {
            return Promise.reject(errors.fromNative(e));
        }
        if (now === '') {
            return Promise.resolve()
                .then(() => errors.call(() => this._native.request(target, name, json, timeout)))
                .then(JSON.parse, (e) => {
                    throw errors.fromNative(e);
                });
        }
        const settled = new Promise((resolve, reject) => this._calls.set(number, { resolve, reject }));
        if (now != null) this._settle(JSON.parse(now));
        return settled;
    }

    _settle(e) {
        const call = this._calls.get(e.call);
        if (!call) return;
        this._calls.delete(e.call);
        if (e.error) call.reject(errors.fromDescription(e.error));
        else call.resolve(e.result);
    }

    /**
     * Registers status function `name` (cluster2's status registry): the master's
     * gatherStatuses() calls `fn()` on every worker that has it and gathers the values (a promise's
     * value; a throw is that worker's error). Declared as handler `status.<name>`. Returns the bus.
     */
    registerStatus(name, fn) {
        const what = 'MessageBus.registerStatus(name, fn)';
        if (typeof name !== 'string') {
            throw new TypeError(`${what}: name must be a string, got ${name === null ? 'null' : typeof name}`);
        }
        if (typeof fn !== 'function') {
            throw new TypeError(`${what}: fn must be a function, got ${fn === null ? 'null' : typeof fn}`);
        }
        return this.handle(`status.${name}`, () => fn());
    }

    /**
     * Publishes this worker's application status (clusterfy's 'IDLE' / 'PROCESSING'; null clears
     * it; at most 64 bytes) and counters ({ name: finite number }, at most 32, names of 1–64
     * bytes), replacing the last ones: shown in the master's getWorkers() (appStatus, counters),
     * `drover status` and /metrics. Resolves once written. Throws TypeError for a wrong type,
     * RangeError past a bound.
     */
    setAppStatus(status, counters = {}) {
        const what = 'MessageBus.setAppStatus(status, counters)';
        if (status !== null && status !== undefined && typeof status !== 'string') {
            throw new TypeError(`${what}: status must be a string or null, got ${typeof status}`);
        }
        if (typeof status === 'string' && (Buffer.byteLength(status) > MAX_APP_STATUS_BYTES || /[\u0000-\u001f\u007f-\u009f]/.test(status))) {
            throw new RangeError(`${what}: status must be at most ${MAX_APP_STATUS_BYTES} bytes without control characters`);
        }
        if (counters === null || typeof counters !== 'object' || Array.isArray(counters)) {
            throw new TypeError(`${what}: counters must be an object of numbers, got ${counters === null ? 'null' : Array.isArray(counters) ? 'array' : typeof counters}`);
        }
        const names = Object.keys(counters);
        if (names.length > MAX_COUNTERS) {
            throw new RangeError(`${what}: ${names.length} counters, at most ${MAX_COUNTERS}`);
        }
        for (const name of names) {
            const value = counters[name];
            if (typeof value !== 'number' || !Number.isFinite(value)) {
                throw new TypeError(`${what}: counter ${JSON.stringify(name)} must be a finite number, got ${typeof value} ${String(value)}`);
            }
            if (name.length === 0 || Buffer.byteLength(name) > 64) {
                throw new RangeError(`${what}: counter name ${JSON.stringify(name)} must be 1 to 64 bytes`);
            }
        }
        errors.call(() => this._native.setAppStatus(status == null ? null : status, JSON.stringify(counters)));
        return this._written();
    }

    /**
     * Sends `data` (JSON) to other workers, routed by the master: 'worker:ID' (or a number, or
     * { worker }), 'name:NAME' (or { name }), 'any' or 'all' (every other worker). They get it as
     * a 'worker-message' event (data, fromWorkerId). Resolves with how many it was written to;
     * rejects with a RequestError ('no_such_target' for an unknown or dead worker: never dropped
     * silently).
     */
    sendTo(target, data) {
        return requests.sendTo(this._native, 'MessageBus.sendTo(target, data)', target, data);
    }

    /**
     * Joins leadership `key` (PROTOCOL.md §5.10): the master elects one STARTED participant and
     * tells every participant who leads with a 'leader' event ({ key, leader, term, you }), now
     * and at each change (leader null: nobody, for now). A leader that is being stopped is told
     * it no longer leads; it must release what only the leader holds and call leaderResign(key):
     * nobody else is elected until it does or exits. Resolves once the master took it.
     */
    leaderJoin(key) {
        return this._leadership('join', key);
    }

    /** Gives up leading `key` (another is elected; this worker stays a participant). */
    leaderResign(key) {
        return this._leadership('resign', key);
    }

    /** Leaves leadership `key` (letting go of it if this worker leads). */
    leaderLeave(key) {
        return this._leadership('leave', key);
    }

    _leadership(op, key) {
        if (typeof key !== 'string') {
            return Promise.reject(new TypeError(`MessageBus.leader${op[0].toUpperCase()}${op.slice(1)}(key): key must be a string, got ${key === null ? 'null' : typeof key}`));
        }
        return this.request('master', `drover.leader.${op}`, { key });
    }

    /**
     * A client of which only the leader process holds the real one (cluster-client's pattern;
     * lib/cluster-client.js): `new DataClient(...options.args)` is created in the elected leader
     * only; everywhere `invoke(method, ...args)`, `subscribe(topic, listener)` and
     * `publish(topic, data)` reach it through the leader. See ClusterClient.
     */
    cluster(DataClient, options) {
        const { ClusterClient } = require('./cluster-client');
        return new ClusterClient(this, DataClient, options);
    }

    /**
     * Reports STARTED: this worker is ready. Returns a promise that resolves once it is written (as
     * drover 1.0's); an optional callback runs then too.
     */
    sendStarted(callback) {
        return this._status(WorkerStatuses.STARTED, callback);
    }

    /** Reports STOPPED: no new work taken, in-flight work finished. Resolves once written. */
    sendStopped(callback) {
        return this._status(WorkerStatuses.STOPPED, callback);
    }

    /** Reports SHUTTED_DOWN: everything released, the worker is about to exit. Resolves once written. */
    sendShuttedDown(callback) {
        return this._status(WorkerStatuses.SHUTTED_DOWN, callback);
    }

    /**
     * Sends a JSON message to the master (its 'message' event). Returns a promise that resolves
     * once it is written to the channel (drover 1.0 returned one too). Throws TypeError at once for
     * a message that is not JSON-serializable.
     */
    sendMessage(message) {
        errors.call(() => this._native.sendMessage(toJson(message)));
        return this._written();
    }

    // A promise of "written" that a caller may ignore (1.0's callers do: `server.listen(port,
    // mb.sendStarted)`) without an unhandled rejection; one who awaits it still sees the error.
    _written() {
        const written = this.flush();
        written.catch(() => {});
        return written;
    }

    /** Resolves once every send made so far is written to the channel. */
    flush() {
        return this._native.flush().catch((e) => {
            throw errors.fromNative(e);
        });
    }

    /**
     * Flushes, then closes the bus: no more sends, no more events, and the bus no longer keeps
     * the process alive. Callable any number of times.
     */
    close() {
        if (!this._closing) {
            this._stopHeartbeat();
            this._closing = this.flush()
                .catch(() => {})
                .then(() => {
                    errors.call(() => this._native.close());
                    this.emit('close');
                });
        }
        return this._closing;
    }

    _status(status, callback) {
        errors.call(() => this._native.sendStatus(status));
        if (status === WorkerStatuses.STARTED) this._guardSignals(true);
        const written = this._written();
        // Callers pass node callbacks' arguments here (server.close(mb.sendStopped) passes an error):
        // only a function is a callback.
        if (typeof callback === 'function') {
            written.then(() => callback(), (e) => callback(e));
        }
        return written;
    }

    // A new config from the master (PROTOCOL.md §5.11): the 'reconfigure' listeners get
    // (config, ack); the first ack() answers (ack() or ack(null): applied; ack(error or reason):
    // refused). No listener: refused at once, so the master hears it rather than a timeout.
    _reconfigure(version, config) {
        let answered = false;
        const ack = (err) => {
            if (answered) return;
            answered = true;
            if (err === undefined || err === null) {
                if (this.meta) this.meta.config = config;
            }
            const reason = err === undefined || err === null ? undefined : err instanceof Error ? err.message : String(err);
            try {
                this._native.ackReconfigure(version, reason);
            } catch (e) {
                if (this.listenerCount('error') > 0) this.emit('error', errors.fromNative(e));
            }
        };
        if (this.listenerCount('reconfigure') === 0) {
            ack("this worker has no 'reconfigure' listener");
            return;
        }
        this.emit('reconfigure', config, ack);
    }

    _guardSignals(on) {
        if (!this._ignoreSignals || on === this._signalsIgnored) return;
        this._signalsIgnored = on;
        for (const signal of ['SIGTERM', 'SIGINT']) {
            if (on) process.on(signal, ignoreSignal);
            else process.off(signal, ignoreSignal);
        }
    }

    _stopHeartbeat() {
        if (this._heartbeat) {
            clearInterval(this._heartbeat);
            this._heartbeat = null;
        }
        if (this._stats) {
            this._stats.stop();
            this._stats = null;
        }
    }

    _onEvent(e) {
        switch (e.event) {
            case 'connected':
                this.meta = e.meta;
                // The master's `processTitle`: `drover: GROUP #INSTANCE` in ps (command line and comm).
                if (e.meta && typeof e.meta.title === 'string') process.title = e.meta.title;
                if (e.meta && e.meta.heartbeat_ms && !this._closing) {
                    // From the JS loop, so a blocked loop is seen as hung. Unref'd: it keeps nothing alive.
                    // Each carries the loop's lag and the GCs (PROTOCOL.md §5.1 `stats`).
                    this._stats = runtimeStats.start();
                    const send = () => {
                        if (!this._stats) return;
                        try {
                            this._native.heartbeat(JSON.stringify(this._stats.take(e.meta.heartbeat_ms)));
                        } catch {
                            this._stopHeartbeat();
                        }
                    };
                    // After this loop turn's timers: a loop that was blocked has the delay
                    // histogram's timer due too, and it must record the block before it is read.
                    const beat = () => setImmediate(send);
                    send();
                    this._heartbeat = setInterval(beat, e.meta.heartbeat_ms);
                    this._heartbeat.unref();
                }
                this.emit('connected', e.meta);
                break;
            case 'connect-error': {
                this._stopHeartbeat();
                errors.call(() => this._native.unref());
                this.emit('error', errors.fromDescription(e.error));
                break;
            }
            case 'stop':
                this._guardSignals(false);
                this.emit('stop');
                break;
            case 'quit':
                this._guardSignals(false);
                this.emit('quit');
                break;
            case 'message':
                this.emit('message', e.data);
                break;
            case 'settled':
                this._settle(e);
                break;
            case 'store-changed':
                this.store._changed(e);
                break;
            case 'worker-message':
                this.emit('worker-message', e.data, e.from);
                break;
            case 'connection':
                // A connection the master accepted on a balanced socket (round-robin, sticky).
                require('./listen').connection(this, e);
                break;
            case 'leader':
                this.emit('leader', { key: e.key, leader: e.leader ?? null, term: e.term, you: e.you });
                break;
            case 'reconfigure':
                this._reconfigure(e.version, e.config);
                break;
            case 'request':
                requests.answer(this._handlers, e, (id, ok, text) => this._native.respond(id, ok, text));
                break;
            case 'error':
                if (this.listenerCount('error') > 0) {
                    this.emit('error', errors.fromDescription(e.error));
                }
                break;
            case 'closed':
                // The master closed the channel: nothing more will come; do not keep the process alive.
                this._stopHeartbeat();
                errors.call(() => this._native.unref());
                this.emit('disconnect', e.error ? errors.fromDescription(e.error) : null);
                break;
            default:
                break;
        }
    }
}

/** Whether this process created its MessageBus (its channel can be owned once). */
function busCreated() {
    return created;
}

module.exports = { MessageBus, busCreated };
