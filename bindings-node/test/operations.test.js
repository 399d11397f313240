'use strict';

// Every Master operation against real Node workers.
const test = require('node:test');
const assert = require('node:assert/strict');
const { MasterFactory, WorkerStatuses, InappropriateConditionError, InvalidConfigurationError } = require('..');
const { nodeWorker, waitFor, record, waitGone, isAlive } = require('../test-support/helpers');

const allPids = new Set();
const track = (master) => master.getWorkers().forEach((w) => allPids.add(w.pid));

test('master operations', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 2, env: { GREETING: 'hi', PORT: 1934 }, name: 'ops' });
    const masterStatuses = record(master, 'status');
    assert.equal(master.getStatusName(), 'INITIALIZED');
    assert.equal(master.name, 'ops');
    t.after(() => master.hardShutdown());

    await t.test('start resolves when every worker reported STARTED', async () => {
        await master.start();
        assert.equal(master.getStatusName(), 'STARTED');
        assert.deepEqual(master.getWorkersStatuses(), [WorkerStatuses.STARTED, WorkerStatuses.STARTED]);
        const workers = master.getWorkers();
        assert.deepEqual(workers.map((w) => w.id), [1, 2]);
        for (const w of workers) {
            assert.ok(isAlive(w.pid));
            assert.ok(w.startedAt instanceof Date);
            assert.equal(w.restarts, 0);
            assert.equal(w.statusName, 'STARTED');
        }
        // Status events were delivered before start() resolved.
        assert.deepEqual(masterStatuses.map(([to]) => to), ['STARTING', 'STARTED']);
        track(master);
    });

    await t.test('markDown takes the group out of rotation, its workers running on; markUp brings it back', async () => {
        assert.deepEqual(master.getRotation(), { inRotation: true, manual: false, monitor: null });
        const pids = master.getWorkers().map((w) => w.pid);
        const out = waitFor(master, 'rotation', (info) => !info.inRotation);
        master.markDown();
        const [info] = await out;
        assert.equal(info.manual, true);
        assert.equal(info.message, 'marked down by hand');
        assert.deepEqual(master.getRotation(), { inRotation: false, manual: true, monitor: null });
        assert.deepEqual(master.getWorkers().map((w) => w.pid), pids);
        assert.ok(pids.every(isAlive));
        const back = waitFor(master, 'rotation', (i) => i.inRotation);
        master.markUp();
        await back;
        assert.equal(master.getRotation().inRotation, true);
    });

    await t.test('monitorEcv follows a health page: out of rotation while it fails, back when it passes', async () => {
        let healthy = true;
        const server = require('node:http').createServer((req, res) => {
            res.writeHead(healthy ? 200 : 503);
            res.end(healthy ? 'ok' : 'sick');
        });
        await new Promise((r) => server.listen(0, '127.0.0.1', r));
        const url = `http://127.0.0.1:${server.address().port}/health`;
        assert.throws(() => master.monitorEcv({ url, interval: 1 }), (e) => e instanceof InvalidConfigurationError && /interval/.test(e.message));
        const monitor = master.monitorEcv({ url, validator: '^ok', interval: 100, failuresBeforeDown: 2 });
        try {
            const out = waitFor(master, 'rotation', (info) => !info.inRotation);
            healthy = false;
            const [info] = await out;
            assert.equal(info.monitor, `${url} answered 503, expected 2xx`);
            assert.equal(info.manual, false);
            const back = waitFor(master, 'rotation', (i) => i.inRotation);
            healthy = true;
            await back;
        } finally {
            monitor.stop();
            monitor.stop();
            server.close();
        }
        assert.equal(master.getRotation().inRotation, true);
    });

    await t.test('env reaches the workers, numbers stringified', async () => {
        const reply = waitFor(master, 'message', (m, id) => id === 1 && m.env !== undefined);
        await master.send(1, { cmd: 'env', name: 'PORT' });
        assert.deepEqual((await reply)[0], { env: '1934' });
    });

    await t.test('send reaches one worker and keeps the order of the calls', async () => {
        const seen = [];
        const all = waitFor(master, 'message', (m, id) => {
            if (id === 2 && m.echo) seen.push(m.echo.n);
            return seen.length === 50;
        });
        const sends = [];
        for (let n = 0; n < 50; n++) sends.push(master.send(2, { n }));
        await Promise.all(sends);
        await all;
        assert.deepEqual(seen, [...Array(50).keys()]);
    });

    await t.test('broadcast reaches every worker and resolves with the count', async () => {
        const from = new Set();
        const both = waitFor(master, 'message', (m, id) => {
            if (m.echo && m.echo.hello === 'all') from.add(id);
            return from.size === 2;
        });
        assert.equal(await master.broadcast({ hello: 'all' }), 2);
        await both;
    });

    await t.test('restartWorkerById replaces the process under the same id', async () => {
        const before = master.getWorkers()[0];
        const exits = record(master, 'worker-exit');
        await master.restartWorkerById(before.id);
        const after = master.getWorkers()[0];
        assert.equal(after.id, before.id);
        assert.notEqual(after.pid, before.pid);
        assert.equal(after.restarts, 1);
        assert.equal(after.status, WorkerStatuses.STARTED);
        assert.equal(exits.length, 1);
        assert.equal(exits[0][1], before.id);
        assert.equal(exits[0][2].requested, true);
        await waitGone([before.pid]);
        track(master);
    });

    await t.test('rescale up spawns and awaits newcomers; down retires the newest', async () => {
        await master.rescale(4);
        assert.deepEqual(master.getWorkersStatuses(), [3, 3, 3, 3]);
        track(master);
        const newest = master.getWorkers().slice(2).map((w) => w.pid);
        await master.rescale(2);
        assert.deepEqual(master.getWorkers().map((w) => w.id), [1, 2]);
        await waitGone(newest);
    });

    await t.test('gracefulReload replaces every worker by a new generation', async () => {
        const old = master.getWorkers();
        await master.gracefulReload();
        const now = master.getWorkers();
        assert.equal(now.length, 2);
        assert.ok(now.every((w) => w.generation === 1 && w.status === 3));
        assert.ok(now.every((w) => !old.some((o) => o.pid === w.pid)));
        await waitGone(old.map((w) => w.pid));
        track(master);
    });

    await t.test('gracefulReload with new options applies them (count)', async () => {
        await master.gracefulReload({ script: nodeWorker, count: 3, name: 'ops' });
        assert.deepEqual(master.getWorkersStatuses(), [3, 3, 3]);
        track(master);
    });

    await t.test('handleSignal applies drover\'s policy: SIGHUP reloads', async () => {
        const old = master.getWorkers().map((w) => w.pid);
        assert.equal(await master.handleSignal('SIGHUP'), 'Reload');
        assert.ok(master.getWorkers().every((w) => !old.includes(w.pid) && w.status === 3));
        track(master);
    });

    await t.test('gracefulShutdown ends every worker and leaves no process behind; a second one is rejected, as in 1.0', async () => {
        const exits = record(master, 'worker-exit');
        await master.gracefulShutdown();
        assert.equal(master.getStatusName(), 'SHUT_DOWN');
        assert.equal(exits.length, 3, 'worker-exit events are delivered before gracefulShutdown resolves');
        await waitGone([...allPids]);
        await assert.rejects(master.gracefulShutdown(), InappropriateConditionError);
        await master.hardShutdown();
    });

    await t.test('operations after shutdown are InappropriateConditionError', async () => {
        await assert.rejects(master.rescale(3), InappropriateConditionError);
        await assert.rejects(master.start(), (e) => e instanceof InappropriateConditionError && e.status === 'SHUT_DOWN');
    });
});

test('hardShutdown kills every worker (even one ignoring stop) and reaps it', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 2, env: { NODE_WORKER_MODE: 'ignore-stop' } });
    t.after(() => master.hardShutdown()); // on failure too: a running master keeps the process alive
    await master.start();
    const pids = master.getWorkers().map((w) => w.pid);
    const exits = record(master, 'worker-exit');
    await master.hardShutdown();
    assert.equal(exits.length, 2);
    assert.ok(exits.every(([r]) => r.payload.signal === 'SIGKILL'));
    await waitGone(pids);
});

test('gracefulShutdown escalates to SIGTERM/SIGKILL for a worker that ignores stop', async (t) => {
    const master = MasterFactory.create({
        script: nodeWorker,
        count: 1,
        env: { NODE_WORKER_MODE: 'ignore-stop' },
        stopTimeout: 200,
        quitTimeout: 200,
        killTimeout: 200,
    });
    t.after(() => master.hardShutdown()); // on failure too: a running master keeps the process alive
    await master.start();
    const [w] = master.getWorkers();
    const [exit] = await Promise.all([waitFor(master, 'worker-exit'), master.gracefulShutdown()]);
    assert.equal(exit[0].constructor.name, 'ExternalSignal');
    await waitGone([w.pid]);
});

test('busyPollUs reaches the workers, and messages go both ways with it set', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1, busyPollUs: 200 });
    t.after(() => master.hardShutdown());
    await master.start();
    const [w] = master.getWorkers();
    const env = waitFor(master, 'message', (m) => m.env !== undefined);
    await master.send(w.id, { cmd: 'env', name: 'DROVER_BUSY_POLL_US' });
    assert.deepEqual((await env)[0], { env: '200' });
    // Round trips one at a time: each answer arrives, whole and in order.
    for (let n = 0; n < 500; n++) {
        const reply = waitFor(master, 'message', (m) => m.echo !== undefined);
        await master.send(w.id, { n });
        assert.deepEqual((await reply)[0], { echo: { n } });
    }
    await master.gracefulShutdown();
});
