'use strict';

// The master's shared store (PROTOCOL.md §5.6) and single-flight cache (§5.7) as typed helpers.
// Each operation is one request to the master's built-in `drover.store.*` / `drover.cache.*`
// handler (core answers them): this layer only checks JavaScript's arguments and names the
// handler. `call(op, args)` is the side's way there: a worker's request to 'master', or the
// master's own `Master::store`.

const { toJson } = require('./json');

/** Changes told before the watch's number is known here, kept for it (PROTOCOL.md: at most 64 watches a worker). */
const MAX_EARLY_CHANGES = 1024;

function typeName(value) {
    return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}

function checkPath(path, what) {
    if (typeof path !== 'string') {
        throw new TypeError(`${what}: path must be a string (dot path, '' for the whole tree), got ${typeName(path)}`);
    }
}

function checkJson(value, what, arg) {
    try {
        return JSON.parse(toJson(value));
    } catch (e) {
        throw new TypeError(`${what}: ${arg} must be JSON-serializable: ${e.message}`, { cause: e });
    }
}

/** options.ttl (ms) as core's `ttl_ms`, or undefined for none. */
function ttlOf(options, what) {
    if (options === undefined) return undefined;
    if (options === null || typeof options !== 'object') {
        throw new TypeError(`${what}: options must be an object, got ${typeName(options)}`);
    }
    const { ttl } = options;
    if (ttl === undefined) return undefined;
    if (typeof ttl !== 'number' || !Number.isFinite(ttl) || !(ttl > 0)) {
        throw new TypeError(`${what}: options.ttl must be a number of milliseconds > 0, got ${typeName(ttl)} ${String(ttl)}`);
    }
    return Math.max(1, Math.round(ttl));
}

/**
 * The store of one side. `call(op, args)` resolves with the result of `drover.store.<op>`.
 * `watchable`: whether `watch` is offered (a worker's store; the master's user reads directly).
 */
class Store {
    constructor(call, side) {
        this._call = call;
        this._side = side;
        // Watch number -> callback; changes for a number not yet known wait in `_early`.
        this._watches = new Map();
        this._early = [];
    }

    /** The value at `path` ('' for the whole tree), or null. */
    async get(path) {
        checkPath(path, `${this._side}.store.get(path)`);
        return this._call('get', { path });
    }

    /** Puts `value` (JSON) at `path`; with `{ ttl }` (ms) it is removed that long after. */
    async set(path, value, options) {
        const what = `${this._side}.store.set(path, value, options)`;
        checkPath(path, what);
        const json = checkJson(value, what, 'value');
        const ttl_ms = ttlOf(options, what);
        await this._call('set', { path, value: json, ttl_ms });
    }

    /** Removes the value at `path`; resolves with whether there was one. */
    async delete(path) {
        checkPath(path, `${this._side}.store.delete(path)`);
        return this._call('delete', { path });
    }

    /**
     * Puts `value` at `path` only if the value there equals `expected` (null: absent); resolves
     * with whether it did. `{ ttl }` as for set.
     */
    async cas(path, expected, value, options) {
        const what = `${this._side}.store.cas(path, expected, value, options)`;
        checkPath(path, what);
        const exp = checkJson(expected, what, 'expected');
        const json = checkJson(value, what, 'value');
        const ttl_ms = ttlOf(options, what);
        return this._call('cas', { path, expected: exp, value: json, ttl_ms });
    }

    /** The keys directly below `path` ('' or absent: the top level), sorted. */
    async keys(path = '') {
        checkPath(path, `${this._side}.store.keys(path)`);
        return this._call('keys', { path });
    }

    /**
     * Calls `callback(value, path)` for each change at, below or above `path`, in the order the
     * changes were made (value null: deleted or expired). Resolves with the watch's number, for
     * unwatch().
     */
    async watch(path, callback) {
        const what = `${this._side}.store.watch(path, callback)`;
        checkPath(path, what);
        if (typeof callback !== 'function') {
            throw new TypeError(`${what}: callback must be a function, got ${typeName(callback)}`);
        }
        const { watch } = await this._call('watch', { path });
        this._watches.set(watch, callback);
        // Changes read on the channel before the answer reached this promise: told now, in order.
        const early = this._early.filter((c) => c.watch === watch);
        this._early = this._early.filter((c) => c.watch !== watch);
        for (const change of early) this._tell(callback, change);
        return watch;
    }

    /** Ends watch `watch`; resolves with whether it was one of this side's watches. */
    async unwatch(watch) {
        if (typeof watch !== 'number' || !Number.isInteger(watch) || watch < 1) {
            throw new TypeError(`${this._side}.store.unwatch(watch): watch must be the positive integer watch() gave, got ${typeName(watch)} ${String(watch)}`);
        }
        this._watches.delete(watch);
        return this._call('unwatch', { watch });
    }

    /** A `changed` frame: { watch, path, value }. */
    _changed(change) {
        const callback = this._watches.get(change.watch);
        if (callback) {
            this._tell(callback, change);
        } else {
            // Its watch() has not resolved yet (or it was unwatched: dropped as the oldest later).
            this._early.push(change);
            if (this._early.length > MAX_EARLY_CHANGES) this._early.shift();
        }
    }

    _tell(callback, change) {
        try {
            callback(change.value, change.path);
        } catch (e) {
            process.nextTick(() => {
                throw e;
            });
        }
    }
}

/** The message a failed loader's waiters get. */
function failureMessage(e) {
    if (e instanceof Error) return e.message;
    return typeof e === 'string' ? e : String(e);
}

/** A worker's side of the shared cache. `call(op, args, timeoutMs)` resolves with `drover.cache.<op>`'s result. */
class Cache {
    constructor(call) {
        this._call = call;
    }

    /**
     * The value of `key` in the cache all workers share, loaded with `loader()` (a value or a
     * promise of one, JSON) when nobody has: of all callers missing `key` at once, in any worker,
     * one runs its loader; the others wait for its value. A failing loader rejects every waiter
     * (RequestError 'handler_failed' with its message; its own caller gets its error) and the next
     * call loads again. `{ ttl }` (ms): loaded again that long after.
     */
    async getOrLoad(key, loader, options) {
        const what = 'MessageBus.cache.getOrLoad(key, loader, options)';
        if (typeof key !== 'string') {
            throw new TypeError(`${what}: key must be a string, got ${typeName(key)}`);
        }
        if (typeof loader !== 'function') {
            throw new TypeError(`${what}: loader must be a function, got ${typeName(loader)}`);
        }
        const ttl_ms = ttlOf(options, what);
        const answer = await this._call('get_or_load', { key });
        if (Object.prototype.hasOwnProperty.call(answer, 'value')) return answer.value;
        const token = answer.load;
        let value;
        try {
            value = await loader();
            if (value === undefined) throw new TypeError(`${what}: the loader gave undefined, which is not JSON`);
            value = JSON.parse(toJson(value));
        } catch (e) {
            await this._call('fail', { key, token, message: failureMessage(e) }).catch(() => {});
            throw e;
        }
        await this._call('fill', { key, token, value, ttl_ms });
        return value;
    }

    /** Removes `key`'s loaded value; resolves with whether there was one. */
    async delete(key) {
        if (typeof key !== 'string') {
            throw new TypeError(`MessageBus.cache.delete(key): key must be a string, got ${typeName(key)}`);
        }
        return this._call('delete', { key });
    }
}

module.exports = { Store, Cache, MAX_EARLY_CHANGES };
