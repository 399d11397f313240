'use strict';

// worker-exit reports drover's three reasons, as classes, with their payloads.
const test = require('node:test');
const assert = require('node:assert/strict');
const { MasterFactory, ExitReasons } = require('..');
const { nodeWorker, waitFor, waitGone } = require('../test-support/helpers');

test('exit reasons', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 3 });
    await master.start();
    const [a, b, c] = master.getWorkers();
    t.after(() => master.hardShutdown());

    await t.test('a worker killed with kill -9 exits with ExternalSignal { signal: "SIGKILL" }', async () => {
        const exited = waitFor(master, 'worker-exit', (_r, id) => id === a.id);
        process.kill(a.pid, 'SIGKILL');
        const [reason, id, info] = await exited;
        assert.ok(reason instanceof ExitReasons.ExternalSignal);
        assert.ok(!(reason instanceof ExitReasons.AbnormalExit));
        assert.deepEqual(reason.payload, { signal: 'SIGKILL' });
        assert.equal(id, a.id);
        assert.equal(info.pid, a.pid);
        assert.equal(info.requested, false);
    });

    await t.test('a worker that calls exit(0) exits with NormalExit { code: 0 }', async () => {
        const exited = waitFor(master, 'worker-exit', (_r, id) => id === b.id);
        await master.send(b.id, { cmd: 'exit', code: 0 });
        const [reason] = await exited;
        assert.ok(reason instanceof ExitReasons.NormalExit);
        assert.deepEqual(reason.payload, { code: 0 });
    });

    await t.test('a worker that calls exit(3) exits with AbnormalExit { code: 3 }', async () => {
        const exited = waitFor(master, 'worker-exit', (_r, id) => id === c.id);
        await master.send(c.id, { cmd: 'exit', code: 3 });
        const [reason] = await exited;
        assert.ok(reason instanceof ExitReasons.AbnormalExit);
        assert.deepEqual(reason.payload, { code: 3 });
        assert.equal(reason.payload.signal, undefined);
    });

    await t.test('the dead workers are reported as such and their pids are gone', async () => {
        await waitGone([a.pid, b.pid, c.pid]);
        const workers = master.getWorkers();
        assert.equal(workers.length, 3);
        assert.ok(workers.every((w) => !w.alive && w.exitReason instanceof ExitReasons.ExitReason));
    });
});

test('the README exit handler restarts a killed worker by id', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 2 });
    t.after(() => master.hardShutdown()); // on failure too: a running master keeps the process alive
    master.on('worker-exit', async (reason, workerId) => {
        if (reason instanceof ExitReasons.ExternalSignal || reason instanceof ExitReasons.AbnormalExit) {
            await master.restartWorkerById(workerId);
        }
    });
    await master.start();
    const [victim] = master.getWorkers();
    const restarted = waitFor(master, 'worker-status', (id, to) => id === victim.id && to === 3);
    process.kill(victim.pid, 'SIGKILL');
    await restarted;
    const now = master.getWorkers().find((w) => w.id === victim.id);
    assert.notEqual(now.pid, victim.pid);
    assert.equal(now.restarts, 1);
    assert.deepEqual(master.getWorkersStatuses(), [3, 3]);
    const pids = master.getWorkers().map((w) => w.pid);
    await master.gracefulShutdown();
    await waitGone(pids);
});
