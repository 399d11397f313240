'use strict';

// drover 1.0's API as its users relied on it, one test per difference issue 13 found (each fails
// on the package as it was before): exit reasons, restartWorkerById, options, statuses, return
// values, errors, signals on both sides.
const test = require('node:test');
const assert = require('node:assert/strict');
const drover = require('..');
const { fixture, nodeWorker, waitFor, record, waitGone, isAlive, runNode, spawnNode } = require('../test-support/helpers');

const { MasterFactory, Master, ExitReasons, WorkerStatuses, InvalidConfigurationError, InappropriateConditionError } = drover;

test("exits the master asked for are never NormalExit (a 1.0 handler would hard-quit); a worker's own exit(0) is", async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 2, signals: false });
    t.after(() => master.hardShutdown());
    await master.start();
    const exits = record(master, 'worker-exit');
    const [first, second] = master.getWorkers();
    await master.send(first.id, { cmd: 'exit', code: 0 });
    await waitFor(master, 'worker-exit', (reason, id) => id === first.id);
    assert.ok(exits[0][0] instanceof ExitReasons.NormalExit);
    assert.equal(exits[0][0].requested, false);
    assert.equal(await master.restartWorkerById(first.id), true);
    assert.equal(await master.rescale(1), -1, 'rescale resolves with the change in count');
    const retired = exits.find(([, id]) => id === second.id);
    assert.ok(retired && retired[0] instanceof ExitReasons.AbnormalExit, 'a retired worker is AbnormalExit');
    assert.deepEqual(retired[0].payload, { code: 0 });
    assert.equal(retired[0].requested, true);
    const pids = master.getWorkers().map((w) => w.pid);
    await master.hardShutdown();
    const killed = exits.pop();
    assert.equal(killed[1], first.id);
    assert.ok(killed[0] instanceof ExitReasons.ExternalSignal, 'a hard shutdown kill is ExternalSignal, as in 1.0');
    assert.equal(killed[0].requested, true);
    await waitGone([first.pid, second.pid, ...pids]);
});

test('restartWorkerById does nothing (resolves false) for a gone id or a master that does not run; true once replaced', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1, signals: false });
    t.after(() => master.hardShutdown());
    assert.equal(await master.restartWorkerById(1), false, 'before start');
    await master.start();
    assert.equal(await master.restartWorkerById(99), false, 'an unknown id');
    const [w] = master.getWorkers();
    process.kill(w.pid, 'SIGKILL');
    await waitFor(master, 'worker-exit');
    assert.deepEqual(master.getWorkersStatuses(), [WorkerStatuses.FAILED], 'a dead worker is FAILED, never STARTED');
    assert.equal(master.getWorkers()[0].statusName, 'FAILED');
    assert.equal(await master.restartWorkerById(w.id), true);
    assert.deepEqual(master.getWorkersStatuses(), [WorkerStatuses.STARTED]);
    await master.gracefulShutdown();
    assert.equal(await master.restartWorkerById(w.id), false, 'after shutdown');
});

test("a worker dying during start() does not crash a master running drover 1.0's exit handler", async () => {
    const r = await runNode([fixture('compat-master.js')], { env: { COMPAT_MODE: 'die-during-start' } });
    assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    assert.match(r.stdout, /worker-exit AbnormalExit \{"code":3\}/);
    assert.match(r.stdout, /start failed: WorkerStatusError/);
});

test("Master.STATUS_* and getStatus() are drover 1.0's numbers; getStatusName() is ours", async (t) => {
    assert.deepEqual(
        [Master.STATUS_SHUTTED_DOWN, Master.STATUS_STARTING, Master.STATUS_STARTED, Master.STATUS_STOPPING, Master.STATUS_STOPPED],
        [1, 2, 3, 4, 5],
    );
    const master = MasterFactory.create({ script: nodeWorker, count: 1, signals: false });
    t.after(() => master.hardShutdown());
    assert.equal(master.getStatus(), Master.STATUS_SHUTTED_DOWN);
    await master.start();
    assert.equal(master.getStatus(), Master.STATUS_STARTED);
    assert.equal(master.getStatusName(), 'STARTED');
    await master.gracefulShutdown();
    assert.equal(master.getStatus(), Master.STATUS_SHUTTED_DOWN);
    assert.equal(master.getStatusName(), 'SHUT_DOWN');
});

test('drover 1.0 options are accepted, validated and applied; getConfig returns them', async (t) => {
    const cluster = require('node:cluster');
    const options = {
        script: nodeWorker,
        count: 1,
        env: { NODE_WORKER_MODE: 'never-start' },
        signals: false,
        schedulingPolicy: cluster.SCHED_RR,
        statusTimeout: 300,
        restartTimeout: 300,
    };
    for (const [key, value] of [['schedulingPolicy', 7], ['statusTimeout', 0], ['restartTimeout', 'soon'], ['signals', { reload: 'SIGNOPE' }], ['signals', { restart: 'SIGHUP' }]]) {
        assert.throws(() => MasterFactory.create({ ...options, [key]: value }), (e) => e instanceof InvalidConfigurationError && e.message.includes(key), `${key}: ${JSON.stringify(value)}`);
    }
    const master = MasterFactory.create(options);
    t.after(() => master.hardShutdown());
    assert.deepEqual(master.getConfig(), options);
    // statusTimeout bounds each status change: here, spawn to STARTED.
    const began = Date.now();
    await assert.rejects(master.start(), (e) => e instanceof drover.WorkerStatusError && /within 300ms/.test(e.message));
    assert.ok(Date.now() - began < 5000, `start gave up after ${Date.now() - began} ms`);
});

test('restartTimeout bounds how long a worker being retired gets to exit after quit', async (t) => {
    // ignore-stop: the worker ignores stop and quit; the master's SIGTERM after them ends it.
    const master = MasterFactory.create({
        script: nodeWorker, count: 1, env: { NODE_WORKER_MODE: 'ignore-stop' }, signals: false,
        statusTimeout: 10000, stopTimeout: 200, restartTimeout: 200, killTimeout: 200,
    });
    t.after(() => master.hardShutdown());
    await master.start();
    const exits = record(master, 'worker-exit');
    const began = Date.now();
    await master.gracefulShutdown();
    const took = Date.now() - began;
    assert.ok(took < 4000, `shutdown took ${took} ms: quit waited for core's 5 s default instead of restartTimeout`);
    assert.equal(exits[0][0].payload.signal, 'SIGTERM', "the master's SIGTERM after stop and quit ends the worker");
});

test('rescale resolves with the change in count; rescale(0) is InvalidArgumentError; a second gracefulShutdown is rejected', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1, signals: false });
    t.after(() => master.hardShutdown());
    await master.start();
    assert.equal(await master.rescale(3), 2);
    assert.equal(await master.rescale(3), 0);
    await assert.rejects(master.rescale(0), drover.InvalidArgumentError);
    await assert.rejects(master.start(), drover.AlreadyInitializedError);
    assert.equal(master.getConfig().count, 3);
    const first = master.gracefulShutdown();
    await assert.rejects(master.gracefulShutdown(), InappropriateConditionError);
    await first;
});

test('gracefulReload(options) merges them over the options in force', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1, env: { GREETING: 'one' }, signals: false });
    t.after(() => master.hardShutdown());
    await master.start();
    await master.gracefulReload({ count: 2 });
    assert.deepEqual(master.getWorkersStatuses(), [3, 3]);
    const [w] = master.getWorkers();
    const reply = waitFor(master, 'message', (m) => m && 'env' in m);
    await master.send(w.id, { cmd: 'env', name: 'GREETING' });
    assert.deepEqual((await reply)[0], { env: 'one' }, 'the env in force was kept');
    assert.equal(master.getConfig().script, nodeWorker);
    await master.gracefulShutdown();
});

test("a worker's MessageBus sends return promises, and SIGTERM and SIGINT do not end it (its master does)", async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1, signals: false });
    t.after(() => master.hardShutdown());
    await master.start();
    const [w] = master.getWorkers();
    const returns = waitFor(master, 'message', (m) => m && 'sendReturnsPromise' in m);
    await master.send(w.id, { cmd: 'send-returns' });
    assert.deepEqual((await returns)[0], { sendReturnsPromise: true, statusReturnsPromise: true });
    const survived = waitFor(master, 'message', (m) => m && m.survived);
    await master.send(w.id, { cmd: 'signal-self' });
    await survived;
    assert.ok(isAlive(w.pid));
    await master.gracefulShutdown();
    await waitGone([w.pid]);
});

/** Spawns compat-master.js, with `lines(pattern)` to wait for its output. */
function compatMaster(mode) {
    const m = spawnNode([fixture('compat-master.js')], { env: { COMPAT_MODE: mode } });
    m.lines = (pattern, timeoutMs = 20000) => new Promise((resolve, reject) => {
        const deadline = Date.now() + timeoutMs;
        const poll = () => {
            const found = m.out().match(pattern);
            if (found) return resolve(found);
            if (Date.now() > deadline) return reject(new Error(`no ${pattern} within ${timeoutMs} ms\nstdout:\n${m.out()}\nstderr:\n${m.err()}`));
            setTimeout(poll, 25);
        };
        poll();
    });
    return m;
}

test("signals as drover 1.0's defaults: SIGHUP reloads each master once, SIGTERM shuts them down, the app's listeners still run", async (t) => {
    const m = compatMaster('signals');
    t.after(() => m.child.kill('SIGKILL'));
    const started = (await m.lines(/started ([\d,]+)\n/))[1].split(',').map(Number);
    m.child.kill('SIGHUP');
    await m.lines(/a RELOADING\n[\s\S]*a STARTED\n/);
    await m.lines(/b RELOADING\n[\s\S]*b STARTED\n/);
    await m.lines(/app SIGHUP listener/);
    await waitGone(started);
    assert.equal(m.out().match(/a RELOADING/g).length, 1, 'one reload per master per signal');
    assert.doesNotMatch(m.out(), /worker-exit NormalExit/);
    const reloaded = (await m.lines(/pids (\d+,\d+)\n/))[1].split(',').map(Number);
    m.child.kill('SIGTERM');
    const end = await m.exited;
    // Shut down gracefully, then the signal's own action: the process ends by SIGTERM.
    assert.deepEqual(end, { code: null, signal: 'SIGTERM' }, m.err());
    assert.match(m.out(), /a SHUT_DOWN\n/);
    assert.match(m.out(), /b SHUT_DOWN\n/);
    await waitGone(reloaded);
});

test('signals: false installs nothing: SIGHUP does what it does without drover', async (t) => {
    const m = compatMaster('no-signals');
    t.after(() => m.child.kill('SIGKILL'));
    const started = (await m.lines(/started ([\d,]+)\n/))[1].split(',').map(Number);
    m.child.kill('SIGHUP');
    assert.deepEqual(await m.exited, { code: null, signal: 'SIGHUP' });
    await waitGone(started);
});
