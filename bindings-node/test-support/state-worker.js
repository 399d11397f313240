'use strict';

// A Node worker using the shared store, the single-flight cache, the application status and the
// status registry (PROTOCOL.md §5.6–5.8), for test/shared-state.test.js. Every command message
// ({ seq, cmd, ... }) is answered by { seq, ok } or { seq, error: { name, code, message } }.
// Commands: store ({ op, args }: mb.store[op](...args)), watch ({ path }: each change comes as
// { changed: { path, value } }), load ({ key, n, ms, fail, gated }: n concurrent getOrLoad calls,
// then { issued }; their loader reports { loading }, waits ms (gated: for the master's
// { release: key }) and returns `from-<id>` or fails; ok: each outcome),
// app-status ({ status, counters }), block ({ ms }: busy-waits, blocking the event loop),
// flood ({ n, name }: n requests at once to the master's handler; ok: 'ok' or the error code of
// each), type-errors (ok: the TypeErrors of calls with wrong argument types).
const { MessageBus } = require('..');

const mb = new MessageBus();
const id = Number(process.env.DROVER_WORKER_ID);

const describe = (e) => ({ name: e.name, code: e.code, message: e.message });

mb.registerStatus('whoami', () => ({ id }));
mb.registerStatus('later', async () => ({ pending: id * 10 }));

// Loads under way, waiting for the master's { release: key } (a gated load).
const gates = new Map();
mb.on('message', (msg) => {
    if (msg && msg.release && gates.has(msg.release)) gates.get(msg.release)();
});

async function load({ key, n, ms, fail, gated }) {
    const loader = async () => {
        mb.sendMessage({ loading: key, by: id });
        if (gated) await new Promise((resolve) => gates.set(key, resolve));
        else await new Promise((resolve) => setTimeout(resolve, ms));
        if (fail) throw new Error(`load of ${key} failed in ${id}`);
        return `from-${id}`;
    };
    const calls = Array.from({ length: n }, () => mb.cache.getOrLoad(key, loader, { ttl: 60000 }));
    // Written to the channel before this message: the master has them once it reads it.
    mb.sendMessage({ issued: key, by: id });
    const outcomes = await Promise.allSettled(calls);
    return outcomes.map((o) => (o.status === 'fulfilled' ? { value: o.value } : { error: describe(o.reason) }));
}

function typeErrors() {
    const attempts = [
        () => mb.setAppStatus(42),
        () => mb.setAppStatus('OK', { jobs: 'three' }),
        () => mb.registerStatus('x', 'not a function'),
    ];
    const tooMany = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`c${i}`, i]));
    attempts.push(() => mb.setAppStatus('x'.repeat(65)), () => mb.setAppStatus('OK', tooMany));
    const thrown = attempts.map((attempt) => {
        try {
            attempt();
            return null;
        } catch (e) {
            return describe(e);
        }
    });
    return Promise.all([
        mb.store.get(7),
        mb.store.set('a', 1, { ttl: 'soon' }),
        mb.store.set('a', 10n),
        mb.store.watch('a', null),
        mb.cache.getOrLoad('k', 'not a function'),
        mb.cache.getOrLoad(5, () => 1),
    ].map((p) => p.then(() => null, describe))).then((rejected) => [...thrown, ...rejected]);
}

async function run(msg) {
    switch (msg.cmd) {
        case 'store':
            return mb.store[msg.op](...msg.args);
        case 'watch':
            return mb.store.watch(msg.path, (value, path) => mb.sendMessage({ changed: { path, value } }));
        case 'load':
            return load(msg);
        case 'app-status':
            return mb.setAppStatus(msg.status, msg.counters).then(() => true);
        case 'block': {
            const until = Date.now() + msg.ms;
            while (Date.now() < until);
            return true;
        }
        case 'flood': {
            // n requests at once to the master's handler msg.name: how each ended.
            const calls = Array.from({ length: msg.n }, (_, i) => mb.request('master', msg.name, i));
            const outcomes = await Promise.allSettled(calls);
            return outcomes.map((o) => (o.status === 'fulfilled' ? 'ok' : o.reason.code));
        }
        case 'type-errors':
            return typeErrors();
        default:
            throw new Error(`unknown command ${msg.cmd}`);
    }
}

mb.on('message', (msg) => {
    if (!msg || msg.seq === undefined) return;
    Promise.resolve()
        .then(() => run(msg))
        .then(
            (ok) => mb.sendMessage({ seq: msg.seq, ok: ok === undefined ? null : ok }),
            (e) => mb.sendMessage({ seq: msg.seq, error: describe(e) }),
        );
});
mb.on('stop', () => mb.sendStopped());
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
});
mb.sendStarted();
