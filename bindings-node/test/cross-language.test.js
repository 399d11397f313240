'use strict';

// A Node master supervising Rust workers (target/debug/drover-test-worker): one protocol.
const test = require('node:test');
const assert = require('node:assert/strict');
const { MasterFactory, ExitReasons, WorkerStatusError } = require('..');
const { rustWorker, waitFor, record, waitGone } = require('../test-support/helpers');

test('a Node master supervises Rust workers', async (t) => {
    const master = MasterFactory.create({ program: rustWorker, count: 3 });
    t.after(() => master.hardShutdown());
    await master.start();
    assert.deepEqual(master.getWorkersStatuses(), [3, 3, 3]);
    const [a, b, c] = master.getWorkers();

    await t.test('messages round-trip through the Rust MessageBus', async () => {
        const reply = waitFor(master, 'message', (m, id) => id === a.id && m.echo);
        await master.send(a.id, { cmd: 'echo', data: 'ü' });
        assert.deepEqual((await reply)[0].echo, { cmd: 'echo', data: 'ü' });
    });

    await t.test('kill -9 of a Rust worker is ExternalSignal SIGKILL', async () => {
        const exited = waitFor(master, 'worker-exit', (_r, id) => id === a.id);
        process.kill(a.pid, 'SIGKILL');
        const [reason] = await exited;
        assert.ok(reason instanceof ExitReasons.ExternalSignal);
        assert.equal(reason.payload.signal, 'SIGKILL');
    });

    await t.test('exit(3) of a Rust worker is AbnormalExit 3', async () => {
        const exited = waitFor(master, 'worker-exit', (_r, id) => id === b.id);
        await master.send(b.id, { cmd: 'exit', code: 3 });
        const [reason] = await exited;
        assert.ok(reason instanceof ExitReasons.AbnormalExit);
        assert.equal(reason.payload.code, 3);
    });

    await t.test('a Rust worker that breaks the protocol is reported and failed', async () => {
        const protocolError = waitFor(master, 'protocol-error', (_e, id) => id === c.id);
        const exited = waitFor(master, 'worker-exit', (_r, id) => id === c.id);
        await master.send(c.id, { cmd: 'malformed' });
        const [err] = await protocolError;
        assert.match(err.message, /malformed frame/);
        await exited;
    });

    await t.test('restart and rescale work on Rust workers; shutdown leaves nothing', async () => {
        await master.restartWorkerById(a.id);
        await master.rescale(4);
        const pids = master.getWorkers().map((w) => w.pid);
        const exits = record(master, 'worker-exit');
        await master.gracefulShutdown();
        assert.ok(exits.length >= 2);
        await waitGone([a.pid, b.pid, c.pid, ...pids]);
    });
});

test('a Rust worker that exits before STARTED fails start() with its code', async (t) => {
    const master = MasterFactory.create({ program: rustWorker, count: 1, env: { DROVER_TEST_MODE: 'exit-before-start:4' } });
    t.after(() => master.hardShutdown()); // on failure too: a running master keeps the process alive
    await assert.rejects(master.start(), (e) => e instanceof WorkerStatusError && e.exitReason.code === 4);
});
