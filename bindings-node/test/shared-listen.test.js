'use strict';

// Listening sockets held by the master and shared by Node workers, under keep-alive load:
// transparent `server.listen(PORT)`, the declared `listen` option, kill -9, bind errors.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const fs = require('node:fs');
const { MasterFactory } = require('..');
const { fixture, waitFor, record, waitGone, httpGet } = require('../test-support/helpers');
const { startLoad, summary } = require('../test-support/load');

const httpWorker = fixture('http-worker.js');
const quietWorker = fixture('quiet-worker.js');

/** One request on a fresh connection; resolves with the answering worker's pid. */
const get = async (port) => Number(await httpGet(port));
const portOf = (local) => Number(local.slice(local.lastIndexOf(':') + 1));

/** Keep-alive load while the master reloads, restarts a worker and rescales; returns the stats. */
async function underLoad(master, port, t) {
    const load = startLoad({ port, sockets: 20, maxMs: 20000 });
    const steps = [];
    const step = async (name, op) => {
        await load.answered(200);
        const started = Date.now();
        await op();
        steps.push(`${name} ${Date.now() - started} ms`);
    };
    try {
        await step('reload', () => master.gracefulReload());
        await step('restart', () => master.restartWorkerById(master.getWorkers()[0].id));
        await step('rescale 6', () => master.rescale(6));
        await step('rescale 4', () => master.rescale(4));
        await load.answered(200);
    } finally {
        await load.stop();
    }
    t.diagnostic(`${steps.join(', ')}; ${summary(load.stats)}`);
    return load.stats;
}

function assertNothingLost(stats, servedBy) {
    const failures = stats.failed.map((f) => `${f.code} ${f.message}`);
    assert.deepEqual(failures, [], `${stats.failed.length} of ${stats.sent} requests failed`);
    assert.equal(stats.ok, stats.sent);
    assert.ok(stats.ok >= 1000, `only ${stats.ok} requests were answered`);
    const pids = [...stats.perPid.keys()];
    assert.ok(pids.length > 1, `only ${pids.join(',')} served requests`);
    for (const pid of pids) assert.ok(servedBy.has(pid), `pid ${pid} is not a worker of this master`);
}

test('4 workers calling server.listen(PORT) share one master-held port; reload, restart and rescale under keep-alive load lose no request', async (t) => {
    const master = MasterFactory.create({ script: httpWorker, count: 4, env: { HTTP_LISTEN: 'port', PORT: 0 }, name: 'transparent' });
    t.after(() => master.hardShutdown());
    const listening = record(master, 'message');
    const workerPids = new Set();
    master.on('worker-status', (id, status, from, pid) => workerPids.add(pid));
    await master.start();

    const held = master.getListeningSockets();
    assert.equal(held.length, 1, JSON.stringify(held));
    assert.equal(held[0].address, '[::]:0', 'a bare port is every interface, IPv6 and IPv4, as Node binds it');
    const port = portOf(held[0].local);
    const ports = listening.filter(([m]) => m.listening).map(([m]) => m.listening.port);
    assert.deepEqual(ports, [port, port, port, port], 'port 0 is one random port shared by every worker (as cluster)');

    const stats = await underLoad(master, port, t);
    assertNothingLost(stats, workerPids);
    const drained = listening.filter(([m]) => m.drained).map(([m]) => m.drained);
    assert.ok(drained.length >= 6, `${drained.length} workers drained`);
    assert.ok(drained.every((d) => !d.timedOut), JSON.stringify(drained));

    const pids = master.getWorkers().map((w) => w.pid);
    await master.gracefulShutdown();
    await waitGone(pids);
    await assert.rejects(
        new Promise((resolve, reject) => net.connect(port, '127.0.0.1').on('connect', resolve).on('error', reject)),
        { code: 'ECONNREFUSED' },
        'the socket closes with the master',
    );
});

test('the declared listen option hands one socket to every worker systemd-style; the same load loses no request', async (t) => {
    const master = MasterFactory.create({
        script: httpWorker,
        count: 4,
        env: { HTTP_LISTEN: 'fds' },
        listen: ['web=127.0.0.1:0'],
        name: 'declared',
    });
    t.after(() => master.hardShutdown());
    const messages = record(master, 'message');
    const workerPids = new Set();
    master.on('worker-status', (id, status, from, pid) => workerPids.add(pid));
    await master.start();
    const held = master.getListeningSockets();
    assert.equal(held.length, 1);
    assert.equal(held[0].address, '127.0.0.1:0');
    assert.deepEqual(messages.filter(([m]) => m.fdName).map(([m]) => m.fdName), ['web', 'web', 'web', 'web']);
    const stats = await underLoad(master, portOf(held[0].local), t);
    assertNothingLost(stats, workerPids);
    await master.gracefulShutdown();
});

test('kill -9 of a worker under load: only requests on its own connections fail, none is refused, the others keep accepting', async (t) => {
    const master = MasterFactory.create({ script: httpWorker, count: 4, env: { HTTP_LISTEN: 'host', PORT: 0 }, name: 'kill' });
    t.after(() => master.hardShutdown());
    await master.start();
    assert.equal(master.getListeningSockets()[0].address, '127.0.0.1:0');
    const port = portOf(master.getListeningSockets()[0].local);
    const load = startLoad({ port, sockets: 20, maxMs: 15000 });
    let victim;
    let victimSockets;
    let okAtKill;
    try {
        await load.answered(500);
        const [pid, n] = load.busiestPid();
        victim = pid;
        victimSockets = new Set(load.socketsOf(victim));
        assert.equal(victimSockets.size, n);
        const exit = waitFor(master, 'worker-exit', (reason, id, info) => info.pid === victim);
        okAtKill = load.stats.ok;
        process.kill(victim, 'SIGKILL');
        const [reason] = await exit;
        assert.equal(reason.payload.signal, 'SIGKILL');
        await load.answered(1000);
    } finally {
        await load.stop();
    }
    const { stats } = load;
    const codes = stats.failed.map((f) => f.code).join(',');
    t.diagnostic(`victim ${victim} had ${victimSockets.size} of 20 connections; ${summary(stats)}; failures: ${codes || 'none'}`);
    for (const f of stats.failed) {
        assert.notEqual(f.code, 'ECONNREFUSED', 'no connection is ever refused');
        assert.ok(victimSockets.has(f.socket), `a request failed on a connection of pid ${f.pid}, not the killed ${victim}: ${f.code} ${f.message}`);
    }
    assert.ok(stats.failed.length <= victimSockets.size, `${stats.failed.length} failures for ${victimSockets.size} connections of the killed worker`);
    const after = [...stats.perPid.keys()].filter((pid) => pid !== victim);
    assert.ok(after.length >= 2, `the other workers keep serving: ${after}`);
    assert.ok(stats.ok - okAtKill >= 1000);
    await master.gracefulShutdown();
});

test('a port the master cannot bind is the server\'s error event, with EADDRINUSE and the address', async (t) => {
    const taken = net.createServer();
    await new Promise((resolve) => taken.listen(0, '127.0.0.1', resolve));
    t.after(() => taken.close());
    const port = taken.address().port;
    // The bus before node:http: listen is taken over when http loads node:net, not before.
    const env = { HTTP_LISTEN: 'host', PORT: port, HTTP_BUS_FIRST: '1' };
    const master = MasterFactory.create({ script: httpWorker, count: 1, env, name: 'taken' });
    t.after(() => master.hardShutdown());
    const error = waitFor(master, 'message', (m) => m.listenError);
    await master.start();
    const [{ listenError: e }] = await error;
    assert.equal(e.name, 'ListenError');
    assert.equal(e.code, 'EADDRINUSE');
    assert.equal(e.errno, -98);
    assert.equal(e.syscall, 'listen');
    assert.equal(e.address, `127.0.0.1:${port}`);
    assert.equal(e.port, port);
    assert.match(e.message, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    assert.deepEqual(master.getListeningSockets(), []);
    await master.gracefulShutdown();
});

test('paths and exclusive listens are Node\'s own: nothing is asked of the master', async (t) => {
    const master = MasterFactory.create({ script: httpWorker, count: 1, env: { HTTP_LISTEN: 'passthrough' }, name: 'own' });
    t.after(() => master.hardShutdown());
    const reply = waitFor(master, 'message', (m) => m.pipe);
    await master.start();
    const [{ pipe, own }] = await reply;
    assert.match(pipe, /drover-http-worker-\d+\.sock$/);
    assert.ok(fs.statSync(pipe).isSocket());
    assert.equal(own.address, '127.0.0.1');
    assert.deepEqual(master.getListeningSockets(), []);
    await master.gracefulShutdown();
});

test('a worker that never listens does not load node:net; one that creates its bus first still shares the port', async (t) => {
    const quiet = MasterFactory.create({ script: quietWorker, count: 1, name: 'quiet' });
    t.after(() => quiet.hardShutdown());
    const loaded = waitFor(quiet, 'message', (m) => m.netLoaded !== undefined);
    await quiet.start();
    const [{ netLoaded }] = await loaded;
    assert.equal(netLoaded, false, 'require(drover) and new MessageBus() leave node:net unloaded');
    await quiet.gracefulShutdown();

    const master = MasterFactory.create({ script: httpWorker, count: 2, env: { HTTP_BUS_FIRST: '1' }, name: 'busfirst' });
    t.after(() => master.hardShutdown());
    await master.start();
    const sockets = master.getListeningSockets();
    assert.equal(sockets.length, 1, 'both workers asked the master for the one socket');
    const port = portOf(sockets[0].local);
    const pids = new Set();
    for (let i = 0; i < 40 && pids.size < 2; i++) pids.add(await get(port));
    assert.equal(pids.size, 2, 'both workers accept on the shared port');
    await master.gracefulShutdown();
});
