'use strict';

// The shared store, the single-flight cache, application status, the status registry and the
// recycle predicate (PROTOCOL.md §5.1, §5.6–5.8) in the Node face, with real Node workers.
const test = require('node:test');
const assert = require('node:assert/strict');
const { MasterFactory, RequestError, WorkerStatuses } = require('..');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { fixture, waitFor, spawnNode } = require('../test-support/helpers');

const { Store, MAX_EARLY_CHANGES } = require('../lib/shared-state');

const stateWorker = fixture('state-worker.js');
const DEADLINE = 30000;

let seq = 0;
/** Runs command `cmd` in worker `id` (test-support/state-worker.js) and resolves with its `ok`. */
async function run(master, id, cmd) {
    const mine = ++seq;
    const reply = waitFor(master, 'message', (m, from) => from === id && m && m.seq === mine, DEADLINE);
    await master.send(id, { ...cmd, seq: mine });
    const [m] = await reply;
    if (m.error) throw Object.assign(new Error(m.error.message), m.error);
    return m.ok;
}

function create(options) {
    return MasterFactory.create({ script: stateWorker, count: 4, ...options });
}

test('store, cache, app status and status registry from Node workers and the master', async (t) => {
    const master = create({});
    t.after(() => master.hardShutdown());
    await master.start();
    const store = (id, op, ...args) => run(master, id, { cmd: 'store', op, args });

    await t.test('a worker writes, another reads; the master reads and writes the same store', async () => {
        await store(1, 'set', 'users.42', { name: 'ada' });
        assert.deepEqual(await store(2, 'get', 'users.42.name'), 'ada');
        assert.deepEqual(await master.store.get('users'), { 42: { name: 'ada' } });
        await master.store.set('config.mode', 'fast');
        assert.equal(await store(3, 'get', 'config.mode'), 'fast');
        assert.deepEqual(await store(4, 'keys', ''), ['config', 'users']);
        assert.deepEqual(await master.store.keys(), ['config', 'users']);
        assert.equal(await store(1, 'cas', 'config.mode', 'slow', 'x'), false);
        assert.equal(await store(2, 'cas', 'config.mode', 'fast', 'safe'), true);
        assert.equal(await master.store.cas('config.mode', 'safe', 'fast'), true);
        assert.equal(await store(3, 'delete', 'users.42'), true);
        assert.equal(await master.store.delete('users.42'), false);
        assert.equal(await store(4, 'get', 'users.42'), null);
    });

    await t.test('a value with a ttl is gone after it', async () => {
        await store(1, 'set', 'session.s1', 'x', { ttl: 200 });
        assert.equal(await store(2, 'get', 'session.s1'), 'x');
        const until = Date.now() + DEADLINE;
        while ((await master.store.get('session.s1')) !== null) {
            assert.ok(Date.now() < until, 'expired within the deadline');
            await new Promise((resolve) => setTimeout(resolve, 50));
        }
    });

    await t.test('a watcher hears every change under its path, in order', async () => {
        const watch = await run(master, 1, { cmd: 'watch', path: 'jobs' });
        assert.ok(Number.isInteger(watch) && watch > 0);
        const heard = [];
        const all = new Promise((resolve) => {
            master.on('message', function listener(m, from) {
                if (from !== 1 || !m || !m.changed) return;
                heard.push(m.changed);
                if (heard.length === 4) {
                    master.off('message', listener);
                    resolve();
                }
            });
        });
        await store(2, 'set', 'jobs.a', 1);
        await store(3, 'set', 'jobs.b', 2);
        await master.store.set('other', 0); // not under 'jobs': not told
        await store(2, 'delete', 'jobs.a');
        await master.store.set('jobs.b', 3);
        await all;
        assert.deepEqual(heard, [
            { path: 'jobs.a', value: 1 },
            { path: 'jobs.b', value: 2 },
            { path: 'jobs.a', value: null },
            { path: 'jobs.b', value: 3 },
        ]);
        assert.equal(await store(1, 'unwatch', watch), true);
        await assert.rejects(master.store.watch('jobs', () => {}), (e) => e instanceof RequestError && e.code === 'bad_request');
    });

    await t.test('getOrLoad: 100 callers in 4 workers, one load; a failed load rejects all, then loads again', async () => {
        let loads = 0;
        const counting = (m) => {
            if (m && m.loading) loads += 1;
        };
        master.on('message', counting);
        t.after(() => master.off('message', counting));
        const ids = [1, 2, 3, 4];
        // Every worker's 25 calls reach the master before the load ends: the loader waits for a
        // release, sent once each worker said it issued its calls and one of them is loading.
        const gatedLoad = (key, fail) => {
            const issued = new Set();
            let loading = false;
            const release = new Promise((resolve) => {
                const listener = (m, from) => {
                    if (m && m.issued === key) issued.add(from);
                    if (m && m.loading === key) loading = true;
                    if (issued.size === ids.length && loading) {
                        master.off('message', listener);
                        resolve();
                    }
                };
                master.on('message', listener);
            }).then(() => master.broadcast({ release: key }));
            const runs = Promise.all(ids.map((id) => run(master, id, { cmd: 'load', key, n: 25, fail, gated: true })));
            return Promise.all([runs, release]).then(([outcomes]) => outcomes);
        };
        const ok = await gatedLoad('k1', false);
        const values = ok.flat();
        assert.equal(values.length, 100);
        assert.equal(loads, 1, 'the loader ran once');
        const value = values[0].value;
        assert.match(value, /^from-[1-4]$/);
        for (const v of values) assert.deepEqual(v, { value });

        loads = 0;
        const failed = (await gatedLoad('k2', true)).flat();
        assert.equal(loads, 1, 'the failing loader ran once');
        assert.equal(failed.length, 100);
        for (const f of failed) {
            assert.ok(f.error, `every caller fails, got ${JSON.stringify(f)}`);
            assert.match(f.error.message, /^load of k2 failed in [1-4]$/);
        }
        assert.equal(failed.filter((f) => f.error.code === 'handler_failed').length, 99, 'the waiters get handler_failed');

        loads = 0;
        const again = await run(master, 2, { cmd: 'load', key: 'k2', n: 3, ms: 10 });
        assert.equal(loads, 1, 'the next call loads again');
        assert.deepEqual(again, [{ value: 'from-2' }, { value: 'from-2' }, { value: 'from-2' }]);
    });

    await t.test('setAppStatus is shown in getWorkers(); gatherStatuses gathers registerStatus functions', async () => {
        await run(master, 3, { cmd: 'app-status', status: 'PROCESSING', counters: { jobs: 3, queue: 12 } });
        const w3 = master.getWorkers().find((w) => w.id === 3);
        assert.equal(w3.appStatus, 'PROCESSING');
        assert.deepEqual(w3.counters, { jobs: 3, queue: 12 });
        assert.equal(w3.instance, 2);
        assert.equal(typeof w3.name, 'string');
        await run(master, 3, { cmd: 'app-status', status: null, counters: {} });
        assert.equal(master.getWorkers().find((w) => w.id === 3).appStatus, null);

        const statuses = await master.gatherStatuses({ timeout: 10000 });
        assert.deepEqual(Object.keys(statuses).sort(), ['1', '2', '3', '4']);
        for (const id of [1, 2, 3, 4]) {
            assert.deepEqual(statuses[id], { whoami: { id }, later: { pending: id * 10 } });
        }
    });

    await t.test("past 256 of a worker's requests in flight, the next are refused at once; the others answer", async () => {
        // The worker issues all 300 in one tick, before it can read any answer: 256 are in flight.
        master.handle('index', (i) => i);
        const flood = run(master, 2, { cmd: 'flood', n: 300, name: 'index' });
        const outcomes = await flood;
        assert.equal(outcomes.filter((o) => o === 'ok').length, 256);
        assert.equal(outcomes.filter((o) => o === 'overloaded').length, 44);
    });

    await t.test('wrong argument types are TypeErrors naming the argument', async () => {
        const errs = await run(master, 1, { cmd: 'type-errors' });
        const expected = [
            /setAppStatus\(status, counters\): status must be/,
            /setAppStatus\(status, counters\): counter "jobs" must be a finite number/,
            /registerStatus\(name, fn\): fn must be a function/,
            /status must be at most 64 bytes/,
            /33 counters, at most 32/,
            /store\.get\(path\): path must be a string/,
            /options\.ttl must be a number/,
            /value must be JSON-serializable/,
            /callback must be a function/,
            /loader must be a function/,
            /key must be a string/,
        ];
        assert.equal(errs.length, expected.length);
        errs.forEach((e, i) => {
            assert.ok(e, `attempt ${i} failed`);
            assert.equal(e.name, i === 3 || i === 4 ? 'RangeError' : 'TypeError', e.message);
            assert.match(e.message, expected[i]);
        });
        await assert.rejects(master.store.set(1, 2), TypeError);
        assert.throws(() => master.recycleWhen('lag > 5'), /recycleWhen\(predicate\): predicate must be a function/);
        await assert.rejects(master.gatherStatuses({ timeout: -1 }), TypeError);
    });
});

test('changes read before their watch() resolves are kept for it, at most MAX_EARLY_CHANGES, the oldest dropped', async () => {
    let answer;
    const store = new Store((op) => {
        assert.equal(op, 'watch');
        return new Promise((resolve) => {
            answer = resolve;
        });
    }, 'Test');
    const heard = [];
    const watching = store.watch('a', (value, path) => heard.push([path, value]));
    const extra = 5;
    for (let i = 0; i < MAX_EARLY_CHANGES + extra; i++) store._changed({ watch: 7, path: 'a.b', value: i });
    store._changed({ watch: 8, path: 'a', value: 'not ours' });
    answer({ watch: 7 });
    assert.equal(await watching, 7);
    assert.equal(heard.length, MAX_EARLY_CHANGES - 1, 'past the bound the oldest went, the other watch\'s one included');
    assert.deepEqual(heard[0], ['a.b', extra + 1]);
    assert.deepEqual(heard.at(-1), ['a.b', MAX_EARLY_CHANGES + extra - 1]);
    store._changed({ watch: 7, path: 'a.c', value: 'later' });
    assert.deepEqual(heard.at(-1), ['a.c', 'later'], 'then told at once');
});

test('a recycle predicate on event-loop lag replaces a Node worker that blocks its loop, make-before-break', async (t) => {
    const master = create({ count: 2, heartbeatInterval: 100, heartbeatTolerance: 20000, memoryCheckInterval: 200 });
    t.after(() => master.hardShutdown());
    const seen = [];
    master.recycleWhen((stats, worker) => {
        seen.push({ id: worker.id, stats });
        return stats.event_loop_lag_max_ms > 500 ? `event-loop lag ${stats.event_loop_lag_max_ms} ms` : false;
    });
    await master.start();
    const order = [];
    master.on('worker-status', (id, to) => order.push({ id, to }));
    master.on('worker-exit', (_reason, id) => order.push({ id, exit: true }));

    // A heartbeat with the Node stats arrives while the loop is fine: the predicate keeps it.
    await waitFor(master, 'heartbeat', (id) => id === 1 && seen.some((s) => s.id === 1), DEADLINE);
    const calm = seen.find((s) => s.id === 1).stats;
    for (const name of ['event_loop_lag_ms', 'event_loop_lag_p99_ms', 'event_loop_lag_max_ms', 'gc_count', 'gc_ms', 'rss_bytes']) {
        assert.equal(typeof calm[name], 'number', `${name} in ${JSON.stringify(calm)}`);
    }
    assert.deepEqual(Object.keys(master.getWorkers()[0].stats).sort(), ['event_loop_lag_max_ms', 'event_loop_lag_ms', 'event_loop_lag_p99_ms', 'gc_count', 'gc_ms']);

    const recycling = waitFor(master, 'worker-recycling', () => true, DEADLINE);
    await run(master, 1, { cmd: 'block', ms: 1500 });
    const [victim, reason] = await recycling.catch((e) => {
        const lags = seen.filter((s) => s.id === 1).map((s) => s.stats.event_loop_lag_max_ms);
        throw new Error(`${e.message}; worker 1's max lags: ${lags.slice(-40).join(' ')}`);
    });
    assert.equal(victim, 1);
    assert.match(reason, /event-loop lag \d+(\.\d+)? ms/);
    await waitFor(master, 'worker-exit', (_r, id) => id === 1, DEADLINE);

    const started = order.findIndex((e) => e.id > 2 && e.to === WorkerStatuses.STARTED);
    const stopping = order.findIndex((e) => e.id === 1 && (e.to === WorkerStatuses.STOPPING || e.exit));
    assert.ok(started >= 0, `a replacement STARTED: ${JSON.stringify(order)}`);
    assert.ok(started < stopping, `the replacement STARTED before worker 1 was stopped: ${JSON.stringify(order)}`);
    const ids = master.getWorkers().filter((w) => w.alive).map((w) => w.id).sort();
    assert.deepEqual(ids.length, 2);
    assert.ok(!ids.includes(1));
});

test("a worker's request to a master that never answers (stopped) still ends, with 'timeout'", async (t) => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'drover-stuck-')), 'outcome.json');
    const run = spawnNode([fixture('stuck-master.js')], { env: { STUCK_OUT: out } });
    t.after(() => {
        run.child.kill('SIGCONT');
        run.child.kill('SIGKILL'); // its worker goes with it (PDEATHSIG)
    });
    const until = Date.now() + DEADLINE;
    while (!/started \d+ \d+/.test(run.out())) {
        assert.ok(Date.now() < until, `the master started: ${run.out()} ${run.err()}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const [, masterPid, workerPid] = run.out().match(/started (\d+) (\d+)/).map(Number);
    process.kill(masterPid, 'SIGSTOP');
    process.kill(workerPid, 'SIGUSR2');
    while (!fs.existsSync(out) || fs.readFileSync(out, 'utf8') === '') {
        assert.ok(Date.now() < until, 'the request ended within the deadline');
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const outcome = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(outcome.name, 'RequestError', JSON.stringify(outcome));
    assert.equal(outcome.code, 'timeout', JSON.stringify(outcome));
    assert.ok(outcome.ms >= 300, `not before its timeout: ${outcome.ms} ms`);
});
