'use strict';

// The worker side: MessageBus in Node workers, seen from a master.
const test = require('node:test');
const assert = require('node:assert/strict');
const { MasterFactory, ExitReasons, WorkerFailedError } = require('..');
const { nodeWorker, fixture, waitFor, record, waitGone } = require('../test-support/helpers');

test('sends made before the handshake completes are kept, in order', async (t) => {
    const master = MasterFactory.create({ script: fixture('early-worker.js'), count: 1 });
    // On failure too: a master left running would keep the test process alive.
    t.after(() => master.hardShutdown());
    const messages = record(master, 'message');
    await master.start();
    if (messages.length < 2) await waitFor(master, 'message', () => messages.length === 2);
    assert.deepEqual(messages.map(([m]) => m), [{ early: 1 }, { early: 2 }]);
    const [w] = master.getWorkers();
    const exits = record(master, 'worker-exit');
    await master.gracefulShutdown();
    // The worker closed its bus (twice) and exited with code 0, as the master asked: not a
    // NormalExit, which is a worker leaving on its own.
    assert.ok(exits[0][0] instanceof ExitReasons.AbnormalExit);
    assert.deepEqual(exits[0][0].payload, { code: 0 });
    assert.equal(exits[0][0].requested, true);
    assert.equal(exits[0][2].lastStatus, 7);
    await waitGone([w.pid]);
});

test('a worker exits by itself after closing its server and its bus', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 2, quitTimeout: 10000 });
    // On failure too: a master left running would keep the test process alive.
    t.after(() => master.hardShutdown());
    await master.start();
    const pids = master.getWorkers().map((w) => w.pid);
    const exits = record(master, 'worker-exit');
    await master.gracefulShutdown();
    assert.equal(exits.length, 2);
    for (const [reason, , info] of exits) {
        // Asked for by the shutdown: AbnormalExit { code: 0 }, as drover 1.0 reported it.
        assert.ok(reason instanceof ExitReasons.AbnormalExit, `${reason.constructor.name} ${JSON.stringify(reason.payload)}`);
        assert.deepEqual(reason.payload, { code: 0 });
        assert.equal(reason.requested, true);
        assert.equal(info.requested, true);
        assert.equal(info.lastStatus, 7, 'SHUTTED_DOWN was reported before the exit');
    }
    await waitGone(pids);
});

test('messages flow both ways and a burst arrives complete and in order', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1 });
    // On failure too: a master left running would keep the test process alive.
    t.after(() => master.hardShutdown());
    await master.start();
    const seqs = [];
    const done = waitFor(master, 'message', (m) => {
        if (typeof m.seq === 'number') seqs.push(m.seq);
        return seqs.length === 2000;
    });
    await master.send(1, { cmd: 'burst', n: 2000 });
    await done;
    assert.deepEqual(seqs, [...Array(2000).keys()]);
    await master.gracefulShutdown();
});

test('messages are JSON both ways: toJSON applies, and what JSON cannot carry is a TypeError', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1 });
    // On failure too: a master left running would keep the test process alive.
    t.after(() => master.hardShutdown());
    await master.start();
    const text = 'é ✓ "quoted"\n\u2028 😀 \\u0000';
    const deep = JSON.parse('['.repeat(100) + ']'.repeat(100));
    const sent = { cmd: 'json', when: new Date(0), text, nested: [1, { a: null }], deep, gone: undefined };
    const reply = waitFor(master, 'message', (m) => m.echo !== undefined);
    await master.send(1, sent);
    const [m] = await reply;
    assert.deepEqual(m.echo, { cmd: 'json', when: '1970-01-01T00:00:00.000Z', text, nested: [1, { a: null }], deep });
    await assert.rejects(master.send(1, { big: 1n }), TypeError);
    // JSON text that a Rust or C peer could not decode is refused here, naming why, rather than
    // failing the worker that receives it: a lone surrogate, and nesting deeper than 128.
    await assert.rejects(master.send(1, { s: 'a\ud800' }), (e) => e instanceof TypeError && /must be JSON: .*surrogate|hex escape/.test(e.message));
    await assert.rejects(master.send(1, JSON.parse('['.repeat(129) + ']'.repeat(129))), (e) => e instanceof TypeError && /recursion limit/.test(e.message));
    const cyclic = {};
    cyclic.self = cyclic;
    await assert.rejects(master.broadcast(cyclic), TypeError);
    await master.gracefulShutdown();
});

test('heartbeats come from the JS loop: a blocked loop is detected as hung', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1, heartbeatInterval: 100, heartbeatTolerance: 300 });
    // On failure too: a master left running would keep the test process alive.
    t.after(() => master.hardShutdown());
    const beats = record(master, 'heartbeat');
    await master.start();
    await waitFor(master, 'heartbeat', () => beats.length >= 3);
    assert.ok(beats.some(([, info]) => info.rssBytes > 1e6), 'heartbeats carry the worker RSS');
    const [w] = master.getWorkers();
    const failed = waitFor(master, 'worker-failed');
    const exited = waitFor(master, 'worker-exit');
    await master.send(w.id, { cmd: 'block', ms: 3000 });
    const [err, id] = await failed;
    assert.ok(err instanceof WorkerFailedError);
    assert.equal(id, w.id);
    assert.match(err.message, /heartbeat/);
    await exited;
    await master.hardShutdown();
    await waitGone([w.pid]);
});
