'use strict';

// Reconfigure (PROTOCOL.md §5.11) and the pre-start hook in the Node face, with real processes:
// a Node master pushing configs to Node workers (applied, refused, no listener) and to Rust
// workers, a replacement starting with the latest config, and a failing hook spawning nothing.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { MasterFactory, PreStartError, ReconfigureError } = require('..');
const { rustWorker, waitFor } = require('../test-support/helpers');

const worker = path.join(__dirname, '..', 'test-support', 'reconfig-worker.js');

async function configOf(master, id) {
    const reply = waitFor(master, 'message', (m, from) => from === id && m && 'config' in m, 20000);
    await master.send(id, { cmd: 'config' });
    return (await reply)[0].config;
}

test('Node workers apply or refuse a new config, and a replacement starts with it', async () => {
    const master = MasterFactory.create({ script: worker, count: 2, name: 'rc', config: { level: 1 } });
    try {
        await master.start();
        const pids = master.getWorkers().map((w) => w.pid);
        const told = [];
        master.on('worker-reconfigured', (id, info) => told.push([id, info.version, info.error]));
        const acks = await master.reconfigure({ level: 2 });
        assert.deepEqual(acks.map((a) => [a.id, a.outcome]), [[1, 'applied'], [2, 'applied']]);
        assert.equal(acks[0].name, 'rc-1');
        assert.deepEqual(await configOf(master, 1), { level: 2 });
        assert.deepEqual(await configOf(master, 2), { level: 2 });
        assert.deepEqual(master.getWorkers().map((w) => w.pid), pids, 'nobody was restarted');
        if (told.length < 2) await waitFor(master, 'worker-reconfigured', () => told.length >= 2, 20000);
        assert.deepEqual(told.sort(), [[1, 1, null], [2, 1, null]]);

        const refused = await master.reconfigure({ refuse: 'level must be a number' });
        assert.deepEqual(refused.map((a) => [a.outcome, a.error]), [
            ['refused', 'level must be a number'],
            ['refused', 'level must be a number'],
        ]);
        assert.deepEqual(await configOf(master, 1), { level: 2 }, 'a refused config is not in force');

        await master.reconfigure({ level: 3 });
        await master.restartWorkerById(2);
        assert.deepEqual(await configOf(master, 2), { level: 3 }, 'the replacement got it in its welcome');

        await assert.rejects(master.reconfigure({ big: 'x'.repeat(17 * 1024 * 1024) }), ReconfigureError);
        await assert.rejects(master.reconfigure({}, { timeout: -1 }), TypeError);
    } finally {
        await master.hardShutdown();
    }
});

test('a Node worker without a listener refuses; a Rust worker applies', async () => {
    const deaf = MasterFactory.create({ script: worker, count: 1, name: 'deaf', env: { RECONF_NO_LISTENER: '1' } });
    const rust = MasterFactory.create({ program: rustWorker, count: 1, name: 'rs' });
    try {
        await deaf.start();
        const [ack] = await deaf.reconfigure({ a: 1 }, { timeout: 20000 });
        assert.equal(ack.outcome, 'refused');
        assert.match(ack.error, /no 'reconfigure' listener/);

        await rust.start();
        const acks = await rust.reconfigure({ a: 1 }, { timeout: 20000 });
        assert.deepEqual(acks.map((a) => a.outcome), ['applied']);
        const ignored = await rust.reconfigure({ ignore: true }, { timeout: 300 });
        assert.deepEqual(ignored.map((a) => a.outcome), ['timeout']);
    } finally {
        await deaf.hardShutdown();
        await rust.hardShutdown();
    }
});

test('a throwing pre-start hook fails the start and spawns nothing; a resolving one lets it through', async () => {
    const master = MasterFactory.create({ script: worker, count: 2, name: 'hooked' });
    let runs = 0;
    master.preStart(async () => {
        runs += 1;
        if (runs === 1) throw new Error('migrations pending');
    });
    try {
        const spawned = [];
        master.on('worker-status', (id) => spawned.push(id));
        await assert.rejects(master.start(), (e) => {
            assert.ok(e instanceof PreStartError, `${e && e.name}: ${e && e.message}`);
            assert.equal(e.reason, 'migrations pending');
            assert.match(e.message, /pre-start hook failed: migrations pending/);
            return true;
        });
        assert.equal(master.getWorkers().length, 0);
        assert.deepEqual(spawned, []);
        await master.start();
        assert.equal(runs, 2);
        assert.equal(master.getWorkers().length, 2);
        assert.throws(() => master.preStart('no'), TypeError);
    } finally {
        await master.hardShutdown();
    }
});

test('with processTitle, a Node worker shows as "drover: GROUP #INSTANCE" in ps', async () => {
    const fs = require('node:fs');
    const master = MasterFactory.create({ script: worker, count: 2, name: 'titled', processTitle: true });
    const plain = MasterFactory.create({ script: worker, count: 1, name: 'plain' });
    try {
        await master.start();
        const read = (pid, what) => fs.readFileSync(`/proc/${pid}/${what}`, 'utf8').replace(/\0+$/, '').trim();
        // Set when the worker's bus takes its welcome, which may come just after STARTED went out.
        const titles = () => master.getWorkers().map((w) => read(w.pid, 'cmdline')).sort();
        const deadline = Date.now() + 30000;
        while (titles()[0] !== 'drover: titled #0' && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.deepEqual(titles(), ['drover: titled #0', 'drover: titled #1']);
        for (const w of master.getWorkers()) assert.match(read(w.pid, 'comm'), /^drover: titled/);
        // Off by default: the command line is the worker's own.
        await plain.start();
        assert.match(read(plain.getWorkers()[0].pid, 'cmdline'), /reconfig-worker\.js/);
    } finally {
        await master.hardShutdown();
        await plain.hardShutdown();
    }
});

test('warm-up: a worker answers its warm-up requests before any client request reaches it', async () => {
    const http = require('node:http');
    const net = require('node:net');
    const port = await new Promise((resolve) => {
        const probe = net.createServer().listen(0, '127.0.0.1', () => {
            const { port: p } = probe.address();
            probe.close(() => resolve(p));
        });
    });
    const warmWorker = path.join(__dirname, '..', 'test-support', 'warm-worker.js');
    const master = MasterFactory.create({
        script: warmWorker,
        count: 2,
        name: 'warm',
        env: { PORT: String(port), WARMUP_REQUESTS: '5' },
        warmup: { requests: 5, path: '/warm?probe=1', timeout: 20000 },
    });
    // Clients knock from before the start until the end: none may reach a cold worker.
    let stop = false;
    const answers = [];
    const knock = async () => {
        while (!stop) {
            const body = await new Promise((resolve) => {
                const req = http.get({ host: '127.0.0.1', port, path: '/client', agent: false }, (res) => {
                    let text = '';
                    res.on('data', (c) => (text += c));
                    res.on('end', () => resolve(text));
                });
                req.on('error', () => resolve(null));
            });
            if (body) answers.push(JSON.parse(body));
            else await new Promise((r) => setTimeout(r, 5));
        }
    };
    const knocking = [knock(), knock()];
    try {
        await master.start();
        await master.restartWorkerById(1);
        await waitFor(master, 'message', () => false, 300).catch(() => {});
        stop = true;
        await Promise.all(knocking);
        assert.ok(answers.length > 0, 'clients were served');
        for (const a of answers) {
            assert.equal(a.warm, 5, `a client reached pid ${a.pid} after ${a.warm} warm-up requests`);
            assert.equal(a.cold, 0);
            assert.deepEqual(a.paths, ['/warm?probe=1']);
        }
        // Every worker, the replacement included, was warmed: 5 hits each.
        for (const w of master.getWorkers()) {
            const reply = waitFor(master, 'message', (m, from) => from === w.id && m && m.counts, 20000);
            await master.send(w.id, { cmd: 'counts' });
            const [{ counts }] = await reply;
            assert.equal(counts.warm, 5);
            assert.equal(counts.cold, 0);
        }
        assert.throws(() => MasterFactory.create({ script: warmWorker, warmup: { requests: 0 } }), /warmup\.requests/);
        assert.throws(() => MasterFactory.create({ script: warmWorker, warmup: { path: 'no-slash' } }), /warmup\.path/);
    } finally {
        stop = true;
        await master.hardShutdown();
    }
});
