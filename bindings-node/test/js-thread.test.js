'use strict';

// The master's worker channels and a worker's channel are read on the JS thread (the addon's
// libuv poll handles): what that must not change, and what it must not break.
const test = require('node:test');
const assert = require('node:assert/strict');
const { MasterFactory } = require('..');
const { nodeWorker, rustWorker, fixture, waitFor, record, waitGone, runNode } = require('../test-support/helpers');

test('a worker is seen STARTED before the message it sent after STARTED, and after the one it sent before', async (t) => {
    // Messages go straight to JS while the worker's actor has nothing pending; a message that
    // follows a status still being handled waits its turn behind the status's events.
    const master = MasterFactory.create({ script: fixture('early-worker.js'), count: 1 });
    t.after(() => master.hardShutdown()); // on failure too: a running master keeps the process alive
    const log = [];
    master.on('worker-status', (id, to) => log.push(`status ${to}`));
    master.on('message', (m) => log.push(`message ${m.early}`));
    await master.start();
    if (!log.includes('message 2')) await waitFor(master, 'message', (m) => m.early === 2);
    assert.deepEqual(log.filter((e) => e !== 'status 1'), ['message 1', 'status 3', 'message 2']);
    await master.gracefulShutdown();
});

test('a blocked master loop is not a hung worker: heartbeats wait unread and count once read', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1, heartbeatInterval: 100, heartbeatTolerance: 300 });
    t.after(() => master.hardShutdown()); // on failure too: a running master keeps the process alive
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

test('a burst that crosses heartbeats arrives whole and in order', async (t) => {
    // Each heartbeat goes to the worker's actor, and messages behind it wait in the addon for
    // the actor's mark, which comes through the thread-safe function: they must still come in order.
    // The Rust test worker: its heartbeats come from their own task, in the middle of a burst.
    const master = MasterFactory.create({ program: rustWorker, count: 1, heartbeatInterval: 5, heartbeatTolerance: 5000 });
    t.after(() => master.hardShutdown()); // on failure too: a running master keeps the process alive
    await master.start();
    const beats = record(master, 'heartbeat');
    const seqs = [];
    const done = waitFor(master, 'message', (m) => {
        if (typeof m.seq === 'number') seqs.push(m.seq);
        return seqs.length === 20000;
    });
    await master.send(1, { cmd: 'burst', n: 20000 });
    await done;
    assert.deepEqual(seqs, [...Array(20000).keys()]);
    assert.ok(beats.length > 0, 'heartbeats were handled meanwhile');
    await master.gracefulShutdown();
});

test('10,000 round trips between a Node master and a Node worker: every reply, in order', async (t) => {
    const master = MasterFactory.create({ script: nodeWorker, count: 1 });
    t.after(() => master.hardShutdown()); // on failure too: a running master keeps the process alive
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

test('a command that came in the same read as the welcome reaches the worker', async (t) => {
    // A master may write the welcome and what it held for the worker in one go; the worker's
    // handshake read then takes both, and the socket is never readable again for the second.
    // Here the master is this test, speaking the protocol over a socketpair (Node's 'pipe' stdio).
    const { spawn } = require('node:child_process');
    const child = spawn(process.execPath, [nodeWorker], {
        // never-start: it does not listen (nobody here answers a listen request).
        env: { ...process.env, NODE_WORKER_MODE: 'never-start', DROVER_IPC_FD: '3', DROVER_WORKER_ID: '1', DROVER_PROTOCOL_VERSION: '1' },
        stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
    });
    const channel = child.stdio[3];
    const lines = [];
    let buffered = '';
    let onLine = () => {};
    channel.on('data', (d) => {
        buffered += d;
        let nl;
        while ((nl = buffered.indexOf('\n')) >= 0) {
            lines.push(JSON.parse(buffered.slice(0, nl)));
            buffered = buffered.slice(nl + 1);
            onLine();
        }
    });
    const next = (predicate) => new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no such frame; got ${JSON.stringify(lines)}`)), 15000);
        onLine = () => {
            const found = lines.find(predicate);
            if (found) {
                clearTimeout(timer);
                resolve(found);
            }
        };
        onLine();
    });
    child.on('exit', () => channel.destroy());
    t.after(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const hello = await next((f) => f.type === 'hello');
    assert.equal(hello.pid, child.pid);
    const worker = { id: 1, name: 'test-1', group: 'test', config: null, max_frame_bytes: 1048576 };
    channel.write(`${JSON.stringify({ type: 'welcome', version: 1, worker })}\n${JSON.stringify({ type: 'message', data: { cmd: 'early' } })}\n`);
    const echo = await next((f) => f.type === 'message' && f.data.echo !== undefined);
    assert.deepEqual(echo.data, { echo: { cmd: 'early' } });
    const exited = new Promise((resolve) => child.on('exit', (...a) => resolve(a)));
    channel.write(`${JSON.stringify({ type: 'stop' })}\n`);
    await next((f) => f.type === 'status' && f.status === 5);
    channel.write(`${JSON.stringify({ type: 'quit' })}\n`);
    const killer = setTimeout(() => child.kill('SIGKILL'), 15000);
    assert.deepEqual(await exited, [0, null], 'the worker exits by itself after quit');
    clearTimeout(killer);
});
