'use strict';

// Leader/follower clients (cluster-client's pattern) over the master's election (PROTOCOL.md
// §5.10): only the elected leader creates the real client and holds its upstream connection;
// every process (the leader too) calls it through one interface. Followers reach the leader by
// requests routed by the master (handler `leader:NAME`) and get the events of their
// subscriptions as worker messages (`{ cc: NAME, term, topic, seq, data }`). The wire form is
// PROTOCOL.md §5.10's "Leader clients".

const { EventEmitter } = require('node:events');
const { RequestError } = require('./errors');

/** Defaults of the bounds (docs/LIMITS.md). */
const LIMITS = Object.freeze({
    // Invokes, publishes and subscribes of one client waiting for an answer.
    maxPendingInvokes: 1024,
    // Subscriptions (a follower and a topic) one leader forwards events to.
    maxSubscriptions: 1024,
    // Events on their way to one follower (written, not yet acknowledged); past it, events to
    // that follower are dropped and it is told of the gap by the sequence numbers.
    maxForwardQueue: 256,
});

const NOT_LEADER = 'not-leader:';

function overloaded(message) {
    return Object.assign(new RequestError(message), { code: 'overloaded' });
}

class ClusterClient extends EventEmitter {
    /**
     * `bus`: this worker's MessageBus. `DataClient`: the real client's class, created with
     * `new DataClient(...options.args)` in the leader only (an async `ready()` of its is awaited;
     * `close()` is called when the process stops leading). Options: `name` (the leadership's key,
     * required), `args`, `delegates` (method names to create on this object as invokes), `timeout`
     * (ms an invoke may take, default 30 000), and the bounds `maxPendingInvokes`,
     * `maxSubscriptions`, `maxForwardQueue` (docs/LIMITS.md).
     *
     * Events: 'leader' ({ leader, term, you }), 'gap' ({ topic, reason, lastData, term }: the
     * events of `topic` after `lastData` until the next one delivered may be lost — reason
     * 'leader-changed' or 'dropped'), 'resubscribed' ({ topic, term }), 'error'.
     */
    constructor(bus, DataClient, options = {}) {
        super();
        if (typeof DataClient !== 'function') {
            throw new TypeError(`cluster(DataClient, options): DataClient must be a class, got ${typeof DataClient}`);
        }
        if (options === null || typeof options !== 'object' || typeof options.name !== 'string' || options.name === '') {
            throw new TypeError('cluster(DataClient, options): options.name (the leadership key) must be a non-empty string');
        }
        this.name = options.name;
        this._bus = bus;
        this._DataClient = DataClient;
        this._args = Array.isArray(options.args) ? options.args : [];
        this._timeout = options.timeout ?? 30000;
        this._limits = { ...LIMITS };
        for (const k of Object.keys(LIMITS)) {
            if (options[k] !== undefined) {
                if (!Number.isInteger(options[k]) || options[k] < 1) {
                    throw new TypeError(`cluster(DataClient, options): options.${k} must be a positive integer`);
                }
                this._limits[k] = options[k];
            }
        }
        this._handler = `leader:${this.name}`;
        this._term = 0;
        this._leader = null;
        this._you = false;
        this._client = null; // the real client, in the leader
        this._becoming = null; // a promise while the real client is being created
        this._pending = 0;
        this._leaderWaiters = [];
        this._closed = false;
        // This process's subscriptions, by topic key: { topic, listeners, term, lastSeq, lastData, subscribed }.
        this._subs = new Map();
        // In the leader: topic key -> { topic, seq, followers: Set<worker id> }.
        this._upstream = new Map();
        this._followerCount = 0;
        this._inFlight = new Map(); // follower id -> events written, not acknowledged
        for (const method of options.delegates ?? []) {
            this[method] = (...args) => this.invoke(method, ...args);
        }
        this._onLeader = (e) => {
            if (e.key === this.name) this._leaderChanged(e);
        };
        this._onMessage = (data, from) => {
            if (data && data.cc === this.name) this._event(data, from);
        };
        bus.on('leader', this._onLeader);
        bus.on('worker-message', this._onMessage);
        bus.handle(this._handler, (args, from) => this._serve(args, from));
        this._joined = bus.leaderJoin(this.name);
        this._joined.catch((e) => this.emit('error', e));
    }

    /** Whether this process leads (holds the real client). */
    get isLeader() {
        return this._you;
    }

    /** The leading worker's id (null: none for now). */
    get leader() {
        return this._leader;
    }

    /** Resolves once a leader is known (and, in the leader, its client is ready). */
    async ready() {
        await this._joined;
        await this._leaderKnown();
    }

    /** Calls `method` of the real client with `args` in the leader; resolves with its result. */
    invoke(method, ...args) {
        return this._call({ op: 'invoke', method, args }, (c) => {
            if (typeof c[method] !== 'function') throw new TypeError(`the client has no method ${JSON.stringify(method)}`);
            return c[method](...args);
        });
    }

    /** Publishes `data` on `topic` through the leader's client (`client.publish(topic, data)`). */
    publish(topic, data) {
        return this._call({ op: 'publish', topic, data }, (c) => c.publish(topic, data));
    }

    /**
     * Calls `listener(data)` for each event of `topic` the leader's client emits
     * (`client.subscribe(topic, cb)` in the leader). Kept across leader changes (with 'gap' and
     * 'resubscribed' events). Resolves once the leader subscribed.
     */
    subscribe(topic, listener) {
        if (typeof listener !== 'function') {
            return Promise.reject(new TypeError('ClusterClient.subscribe(topic, listener): listener must be a function'));
        }
        const key = JSON.stringify(topic);
        let sub = this._subs.get(key);
        if (sub) {
            sub.listeners.add(listener);
            return sub.subscribed;
        }
        // term: the leader's term it was (re)subscribed under (0: no leader yet, nothing to miss).
        sub = { topic, listeners: new Set([listener]), term: this._term, lastSeq: 0, lastData: undefined, gapOpen: false, subscribed: null };
        this._subs.set(key, sub);
        sub.subscribed = this._subscribe(key, sub);
        return sub.subscribed;
    }

    /** Stops calling `listener` for `topic` (the last one unsubscribes at the leader). */
    async unsubscribe(topic, listener) {
        const key = JSON.stringify(topic);
        const sub = this._subs.get(key);
        if (!sub) return;
        sub.listeners.delete(listener);
        if (sub.listeners.size > 0) return;
        this._subs.delete(key);
        if (this._you) this._drop(key, 0);
        else if (this._leader !== null) {
            await this._bus.request(this._leader, this._handler, { op: 'unsubscribe', topic, term: this._term }).catch(() => {});
        }
    }

    /** Leaves the leadership (closing the real client if this process leads). */
    async close() {
        if (this._closed) return;
        this._closed = true;
        this._bus.off('leader', this._onLeader);
        this._bus.off('worker-message', this._onMessage);
        await this._release();
        await this._bus.leaderLeave(this.name).catch(() => {});
    }

    // --- election -------------------------------------------------------------------------

    _leaderKnown() {
        if (this._leader !== null && !this._becoming) return Promise.resolve();
        if (this._leader !== null) return this._becoming;
        return new Promise((resolve) => this._leaderWaiters.push(resolve));
    }

    _leaderChanged({ leader, term, you }) {
        if (term <= this._term || this._closed) return; // stale (PROTOCOL.md §5.10)
        const wasLeader = this._you;
        this._term = term;
        this._leader = leader ?? null;
        this._you = !!you;
        this.emit('leader', { leader: this._leader, term, you: this._you });
        if (wasLeader && !this._you) {
            // Deposed: let go of the upstream connection first, then tell the master.
            this._release().then(() => this._bus.leaderResign(this.name)).catch((e) => this.emit('error', e));
        }
        // Every subscription may have missed events from here: said, then made again.
        for (const [key, sub] of this._subs) {
            if (sub.term !== 0 && !sub.gapOpen) {
                sub.gapOpen = true;
                this.emit('gap', { topic: sub.topic, reason: 'leader-changed', lastData: sub.lastData, term });
            }
            sub.term = term;
            sub.lastSeq = 0;
        }
        if (this._leader === null) return;
        const known = () => {
            for (const resolve of this._leaderWaiters.splice(0)) resolve();
        };
        if (this._you) {
            this._becoming = this._become(term)
                .catch((e) => {
                    // The client could not be created here: said, and another may try.
                    this.emit('error', e);
                    return this._bus.leaderResign(this.name).catch(() => {});
                })
                .finally(() => {
                    this._becoming = null;
                });
            this._becoming.then(known, known);
        } else {
            known();
        }
        for (const [key, sub] of this._subs) {
            sub.subscribed = this._subscribe(key, sub).catch((e) => this.emit('error', e));
        }
    }

    /** This process leads from `term`: creates the real client. */
    async _become(term) {
        const client = new this._DataClient(...this._args);
        if (typeof client.ready === 'function') await client.ready();
        if (this._term !== term) {
            // Deposed while connecting: close it at once.
            if (typeof client.close === 'function') await client.close();
            return;
        }
        this._client = client;
    }

    /** Closes the real client and forgets the followers. */
    async _release() {
        if (this._becoming) await this._becoming.catch(() => {});
        const client = this._client;
        this._client = null;
        this._upstream.clear();
        this._followerCount = 0;
        this._inFlight.clear();
        if (client && typeof client.close === 'function') await client.close();
    }

    // --- calls ----------------------------------------------------------------------------

    /** Runs `local(client)` in the leader, or sends `request` to it; retries across elections. */
    async _call(request, local) {
        if (this._pending >= this._limits.maxPendingInvokes) {
            throw overloaded(`${this._pending} calls of client ${JSON.stringify(this.name)} wait for the leader, the most it holds (maxPendingInvokes)`);
        }
        this._pending++;
        try {
            const deadline = Date.now() + this._timeout;
            for (;;) {
                const left = deadline - Date.now();
                if (left <= 0) {
                    throw Object.assign(new RequestError(`client ${JSON.stringify(this.name)}: no leader answered within ${this._timeout} ms`), { code: 'timeout' });
                }
                await Promise.race([this._leaderKnown().catch(() => {}), sleep(left)]);
                if (this._leader === null) continue;
                if (this._you) {
                    if (!this._client) {
                        await sleep(20);
                        continue;
                    }
                    return await local(this._client);
                }
                const term = this._term;
                let answer;
                try {
                    answer = await this._bus.request(this._leader, this._handler, { ...request, term }, { timeout: left });
                } catch (e) {
                    // The leader died or is not (yet) the leader: wait for the election, then again.
                    if (retryable(e)) {
                        await sleep(20);
                        continue;
                    }
                    throw e;
                }
                if (answer && answer.error) throw Object.assign(new Error(answer.error.message), { name: answer.error.name || 'Error' });
                return answer ? answer.result : undefined;
            }
        } finally {
            this._pending--;
        }
    }

    /** Subscribes `sub` with the current leader (or the real client, here). */
    async _subscribe(key, sub) {
        const term = this._term;
        if (this._you || this._leader === null) {
            await this._leaderKnown();
            if (this._you && this._term === term) {
                this._forward(key, sub.topic, 0);
                this.emit('resubscribed', { topic: sub.topic, term });
                return;
            }
            if (this._term !== term) return; // the next election subscribes again
        }
        await this._call({ op: 'subscribe', topic: sub.topic }, () => this._forward(key, sub.topic, 0));
        if (this._term === term) this.emit('resubscribed', { topic: sub.topic, term });
    }

    // --- in the leader --------------------------------------------------------------------

    /** A follower's request to this process's handler. */
    async _serve(args, from) {
        if (!this._you || (args && args.term > this._term)) throw new Error(`${NOT_LEADER} worker is not the leader of ${this.name} (yet)`);
        if (!this._client) {
            if (this._becoming) await this._becoming;
            if (!this._client) throw new Error(`${NOT_LEADER} no client`);
        }
        const c = this._client;
        try {
            switch (args.op) {
                case 'invoke':
                    if (typeof c[args.method] !== 'function') throw new TypeError(`the client has no method ${JSON.stringify(args.method)}`);
                    return { result: await c[args.method](...(args.args ?? [])) };
                case 'publish':
                    return { result: await c.publish(args.topic, args.data) };
                case 'subscribe':
                    this._forward(JSON.stringify(args.topic), args.topic, from);
                    return { result: true };
                case 'unsubscribe':
                    this._drop(JSON.stringify(args.topic), from);
                    return { result: true };
                default:
                    throw new TypeError(`unknown op ${JSON.stringify(args.op)}`);
            }
        } catch (e) {
            if (e && typeof e.message === 'string' && e.message.startsWith(NOT_LEADER)) throw e;
            return { error: { name: e && e.name, message: e instanceof Error ? e.message : String(e) } };
        }
    }

    /** Forwards `topic`'s events to `follower` (0: this process), subscribing upstream once. */
    _forward(key, topic, follower) {
        let up = this._upstream.get(key);
        if (!up) {
            up = { topic, seq: 0, followers: new Set() };
            this._upstream.set(key, up);
            this._client.subscribe(topic, (data) => this._emitUpstream(key, up, data));
        }
        if (follower !== 0 && !up.followers.has(follower)) {
            if (this._followerCount >= this._limits.maxSubscriptions) {
                throw overloaded(`the leader of ${JSON.stringify(this.name)} forwards ${this._followerCount} subscriptions, the most it holds (maxSubscriptions)`);
            }
            this._followerCount++;
            up.followers.add(follower);
        }
    }

    _drop(key, follower) {
        const up = this._upstream.get(key);
        if (up && follower !== 0 && up.followers.delete(follower)) this._followerCount--;
    }

    /** One upstream event: to this process's listeners and to each subscribed follower. */
    _emitUpstream(key, up, data) {
        if (this._upstream.get(key) !== up) return; // released
        up.seq++;
        const sub = this._subs.get(key);
        if (sub) this._deliver(sub, data);
        const message = { cc: this.name, term: this._term, topic: key, seq: up.seq, data };
        for (const follower of up.followers) {
            const n = this._inFlight.get(follower) ?? 0;
            if (n >= this._limits.maxForwardQueue) continue; // dropped: the follower sees the seq jump
            this._inFlight.set(follower, n + 1);
            this._bus.sendTo(follower, message).then(
                () => this._inFlight.set(follower, (this._inFlight.get(follower) ?? 1) - 1),
                () => {
                    // The follower is gone: stop forwarding to it.
                    this._inFlight.delete(follower);
                    for (const u of this._upstream.values()) if (u.followers.delete(follower)) this._followerCount--;
                },
            );
        }
    }

    // --- in a follower --------------------------------------------------------------------

    /** An event the leader forwarded. */
    _event(message, from) {
        const sub = this._subs.get(message.topic);
        // Only the current leader's: what a former leader wrote before it died is covered by the gap.
        if (!sub || message.term !== this._term || from !== this._leader) return;
        if (sub.lastSeq !== 0 && message.seq !== sub.lastSeq + 1 && !sub.gapOpen) {
            this.emit('gap', { topic: sub.topic, reason: 'dropped', lastData: sub.lastData, term: this._term, missed: message.seq - sub.lastSeq - 1 });
        }
        sub.lastSeq = message.seq;
        this._deliver(sub, message.data);
    }

    _deliver(sub, data) {
        sub.lastData = data;
        sub.gapOpen = false;
        for (const listener of sub.listeners) {
            try {
                listener(data);
            } catch (e) {
                this.emit('error', e);
            }
        }
    }
}

function retryable(e) {
    return (
        e &&
        (e.code === 'target_gone' ||
            e.code === 'no_such_target' ||
            e.code === 'no_such_handler' ||
            (e.code === 'handler_failed' && typeof e.message === 'string' && e.message.includes(NOT_LEADER)))
    );
}

function sleep(ms) {
    return new Promise((r) => setTimeout(r, ms).unref());
}

module.exports = { ClusterClient, LIMITS };
