'use strict';

// Readiness without drover's MessageBus, from a Node master.
const test = require('node:test');
const assert = require('node:assert/strict');
const { MasterFactory, ExitReasons } = require('..');
const { fixture, waitFor, record, waitGone, httpGet } = require('../test-support/helpers');

const get = httpGet;

test("ready: 'node-ipc' runs a PM2-style app unchanged: STARTED at process.send('ready'), stopped with 'shutdown'", async (t) => {
    const master = MasterFactory.create({ script: fixture('pm2-app.js'), count: 2, ready: 'node-ipc', name: 'pm2-style' });
    t.after(() => master.hardShutdown());
    const listening = new Map();
    master.on('message', (m, id) => {
        if (m.listening) listening.set(id, m);
    });
    const startedAt = new Map();
    master.on('worker-status', (id, status) => {
        if (status === 3) startedAt.set(id, Date.now());
    });
    const exits = record(master, 'worker-exit');
    await master.start();

    const workers = master.getWorkers();
    assert.deepEqual(workers.map((w) => w.status), [3, 3]);
    for (const w of workers) {
        const booted = listening.get(w.id);
        assert.ok(booted, `worker ${w.id} said it listens before it was STARTED`);
        const wait = startedAt.get(w.id) - booted.at;
        assert.ok(wait >= 150, `worker ${w.id} was STARTED ${wait} ms after listening, before its 'ready'`);
        assert.equal(await get(booted.listening), String(w.pid));
    }
    const echo = waitFor(master, 'message', (m, id) => id === workers[0].id && m.echo);
    await master.send(workers[0].id, { hello: 1 });
    assert.deepEqual((await echo)[0], { echo: { hello: 1 } });

    await master.gracefulShutdown();
    assert.equal(exits.length, 2);
    for (const [reason, , info] of exits) {
        // It left on 'shutdown', as asked: a requested exit (code 0), not a NormalExit.
        assert.ok(reason instanceof ExitReasons.AbnormalExit && reason.requested, `${reason.constructor.name} ${JSON.stringify(reason.payload)}: the app left on 'shutdown'`);
        assert.deepEqual(reason.payload, { code: 0 });
        assert.equal(info.requested, true);
    }
    await waitGone(workers.map((w) => w.pid));
});
