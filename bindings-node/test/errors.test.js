'use strict';

// Bad input is rejected with the right class and a message naming what was wrong; never a crash.
const test = require('node:test');
const assert = require('node:assert/strict');
const drover = require('..');
const { nodeWorker, rustWorker, waitGone } = require('../test-support/helpers');

const { MasterFactory, InvalidConfigurationError, InappropriateConditionError, WorkerStatusError, WorkerNotFoundError, DroverError } = drover;

test('bad options are InvalidConfigurationError naming the option', () => {
    const cases = [
        [{ script: nodeWorker, count: 0 }, /count/],
        [{ count: 2 }, /program.*script|script.*required/],
        [{ script: '/nonexistent/app.js' }, /script.*nonexistent/],
        [{ script: nodeWorker, program: rustWorker }, /either `program` or `script`/],
        [{ program: 'no-such-program-drover' }, /no-such-program-drover not found/],
        [{ script: nodeWorker, startTimeout: -5 }, /startTimeout/],
        [{ script: nodeWorker, reloadStrategy: 'sideways' }, /reloadStrategy/],
        [{ script: nodeWorker, bogusOption: 1 }, /bogusOption/],
        [{ script: nodeWorker, env: { A: { nested: true } } }, /env/],
        [{ script: nodeWorker, busyPollUs: -1 }, /busyPollUs/],
        [{ script: nodeWorker, busyPollUs: 20000 }, /busyPollUs.*at most 10000/],
        [{ script: nodeWorker, stopTimeout: '10 parsecs' }, /`stopTimeout`: "10 parsecs" is not a duration.*"5s"/],
        [{ script: nodeWorker, stopTimeout: '0s' }, /`stopTimeout` must be a positive number of milliseconds, got 0/],
        [{ script: nodeWorker, maxMemoryBytes: 'lots' }, /`maxMemoryBytes`: "lots" is not a size/],
    ];
    for (const [options, message] of cases) {
        assert.throws(() => MasterFactory.create(options), (e) => {
            assert.ok(e instanceof InvalidConfigurationError, `${JSON.stringify(options)} gave ${e}`);
            assert.ok(e instanceof DroverError);
            assert.equal(e.name, 'InvalidConfigurationError');
            assert.match(e.message, message);
            return true;
        });
    }
});

test('durations and sizes may be strings with units', () => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1, stopTimeout: '10s', killTimeout: 2500, maxAge: '1h 30m', maxMemoryBytes: '150MiB' });
    assert.equal(master.getConfig().stopTimeout, '10s', 'the options are kept as given');
    assert.throws(() => MasterFactory.create({ script: nodeWorker, stopTimeout: true }), (e) => e instanceof TypeError && /stopTimeout/.test(e.message));
});

test('wrong JS types are TypeErrors, not crashes', async () => {
    assert.throws(() => MasterFactory.create(), TypeError);
    assert.throws(() => MasterFactory.create('app.js'), TypeError);
    assert.throws(() => MasterFactory.create({ script: nodeWorker, count: '4' }), (e) => e instanceof TypeError && /count/.test(e.message));
    assert.throws(() => MasterFactory.create({ script: 42 }), (e) => e instanceof TypeError && /script/.test(e.message));
    assert.throws(() => MasterFactory.create({ script: nodeWorker, count: 10n }), TypeError);
    const master = MasterFactory.create({ script: nodeWorker, count: 1 });
    await assert.rejects(master.rescale('3'), TypeError);
    await assert.rejects(master.rescale(1.5), TypeError);
    await assert.rejects(master.restartWorkerById({}), TypeError);
    await assert.rejects(master.restartWorkerById(-1), TypeError);
    await assert.rejects(master.send('1', {}), TypeError);
    // A function is not JSON: like JSON.stringify, it becomes null, so the message itself is fine
    // and only the worker is missing; a BigInt cannot be sent at all.
    await assert.rejects(master.send(1, () => {}), WorkerNotFoundError);
    await assert.rejects(master.send(1, 10n), TypeError);
});

test('operations in the wrong status are InappropriateConditionError', async () => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1 });
    await assert.rejects(master.rescale(2), (e) => {
        assert.ok(e instanceof InappropriateConditionError);
        assert.equal(e.status, 'INITIALIZED');
        assert.match(e.message, /cannot rescale while the master is INITIALIZED/);
        return true;
    });
    // drover 1.0: restarting a worker of a master that does not run does nothing.
    assert.equal(await master.restartWorkerById(1), false);
    await assert.rejects(master.gracefulReload(), InappropriateConditionError);
});

test('send to an unknown worker id is WorkerNotFoundError, restartWorkerById of one does nothing; rescale(0) InvalidArgumentError', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1 });
    t.after(() => master.hardShutdown()); // on failure too: a running master keeps the process alive
    await master.start();
    assert.equal(await master.restartWorkerById(99), false);
    await assert.rejects(master.send(99, {}), WorkerNotFoundError);
    await assert.rejects(master.rescale(0), (e) => e instanceof drover.InvalidArgumentError && e.size === 0);
    await master.gracefulShutdown();
});

test('a worker that exits before STARTED fails start() with WorkerStatusError and its exit reason', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 2, env: { NODE_WORKER_MODE: 'exit-before-start:3' } });
    t.after(() => master.hardShutdown()); // on failure too: a running master keeps the process alive
    await assert.rejects(master.start(), (e) => {
        assert.ok(e instanceof WorkerStatusError, String(e));
        assert.match(e.message, /exited with code 3 before reporting STARTED/);
        assert.deepEqual(e.exitReason, { kind: 'AbnormalExit', code: 3 });
        assert.equal(typeof e.workerId, 'number');
        assert.ok(e.cause instanceof Error);
        return true;
    });
    assert.equal(master.getStatusName(), 'STOPPED');
    assert.equal(master.getStatus(), drover.Master.STATUS_STOPPED);
    await waitGone(master.getWorkers().map((w) => w.pid));
});

test('a worker that never starts fails start() after startTimeout', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1, env: { NODE_WORKER_MODE: 'never-start' }, startTimeout: 300 });
    t.after(() => master.hardShutdown()); // on failure too: a running master keeps the process alive
    const failed = [];
    master.on('worker-failed', (err, id) => failed.push([err, id]));
    await assert.rejects(master.start(), (e) => e instanceof WorkerStatusError && /did not report STARTED within/.test(e.message));
    assert.equal(failed.length, 1);
    assert.ok(failed[0][0] instanceof drover.WorkerFailedError);
    await master.hardShutdown();
});

test('new MessageBus() outside a drover worker throws NotAWorkerError', () => {
    const saved = process.env.DROVER_IPC_FD;
    delete process.env.DROVER_IPC_FD;
    try {
        assert.throws(() => new drover.MessageBus(), (e) => {
            assert.ok(e instanceof drover.NotAWorkerError);
            assert.match(e.message, /not started by a drover master/);
            return true;
        });
    } finally {
        if (saved !== undefined) process.env.DROVER_IPC_FD = saved;
    }
});
