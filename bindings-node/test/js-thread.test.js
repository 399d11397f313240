'use strict';

// The master's worker channels and a worker's channel are read on the JS thread (the addon's
// libuv poll handles): what that must not change, and what it must not break.
const test = require('node:test');
const assert = require('node:assert/strict');
const { MasterFactory } = require('..');
const { nodeWorker, fixture, waitFor, record, waitGone, runNode } = require('../test-support/helpers');

test('a worker is seen STARTED before the message it sent after STARTED, and after the one it sent before', async () => {
    // Messages go straight to JS while the worker's actor has nothing pending; a message that
    // follows a status still being handled waits its turn behind the status's events.
    const master = MasterFactory.create({ script: fixture('early-worker.js'), count: 1 });
    const log = [];
    master.on('worker-status', (id, to) => log.push(`status ${to}`));
    master.on('message', (m) => log.push(`message ${m.early}`));
    await master.start();
    if (!log.includes('message 2')) await waitFor(master, 'message', (m) => m.early === 2);
    assert.deepEqual(log.filter((e) => e !== 'status 1'), ['message 1', 'status 3', 'message 2']);
    await master.gracefulShutdown();
});

test('a blocked master loop is not a hung worker: heartbeats wait unread and count once read', async () => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1, heartbeatInterval: 100, heartbeatTolerance: 300 });
    const failed = record(master, 'worker-failed');
    const beats = record(master, 'heartbeat');
    await master.start();
    const [w] = master.getWorkers();
    await waitFor(master, 'heartbeat', () => beats.length >= 2);
    // Four times interval + tolerance with nobody reading the worker's channel.
    const until = Date.now() + 1600;
    while (Date.now() < until) { /* the master's JS thread is busy */ }
    const before = beats.length;
    await waitFor(master, 'heartbeat', () => beats.length >= before + 3);
    assert.deepEqual(failed, [], 'the worker was not failed as hung');
    const [again] = master.getWorkers();
    assert.equal(again.pid, w.pid);
    assert.equal(again.statusName, 'STARTED');
    const reply = waitFor(master, 'message', (m) => m.echo !== undefined);
    await master.send(w.id, { cmd: 'still-there' });
    assert.deepEqual((await reply)[0], { echo: { cmd: 'still-there' } });
    await master.gracefulShutdown();
    await waitGone([w.pid]);
});

test("a throwing 'message' listener is an uncaught exception, and the master goes on", async () => {
    const { code, stdout, stderr } = await runNode([fixture('throwing-master.js')]);
    assert.equal(code, 0, stderr);
    assert.deepEqual(stdout.trim().split('\n'), ['uncaught: the listener threw', 'the next message arrived', 'shut down']);
});

test('10,000 round trips between a Node master and a Node worker: every reply, in order', async () => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1 });
    await master.start();
    let expect = 0;
    let next;
    master.on('message', (m) => {
        if (m.pong === undefined) return;
        assert.equal(m.pong, expect, 'replies come in order');
        expect += 1;
        next();
    });
    for (let seq = 0; seq < 10000; seq++) {
        await new Promise((resolve) => {
            next = resolve;
            master.send(1, { cmd: 'ping', seq });
        });
    }
    assert.equal(expect, 10000);
    await master.gracefulShutdown();
});
