'use strict';

// preload.js, the `drover` command's way to run Node apps unchanged (cli/README.md): a no-op
// outside a drover worker; in one, the app's own `listen(PORT)` shares the master's socket, the
// worker is STARTED when it listens, and a stop drains it. (End to end through the `drover`
// binary: cli/tests/node_apps.rs.)
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { MasterFactory } = require('..');
const { fixture, runNode, httpGet, waitGone } = require('../test-support/helpers');

const preload = path.join(__dirname, '..', 'preload.js');

/** A loopback port nothing listens on now. */
function freePort() {
    return new Promise((resolve, reject) => {
        const probe = require('node:net').createServer().listen(0, '127.0.0.1', () => {
            const { port } = probe.address();
            probe.close(() => resolve(port));
        });
        probe.on('error', reject);
    });
}

test('outside a drover worker the preload changes nothing and takes itself out of NODE_OPTIONS', async () => {
    const env = { NODE_OPTIONS: `--no-warnings --require ${preload}`, DROVER_IPC_FD: '' };
    const script = `
        const net = require('node:net');
        const server = net.createServer().listen(0, '127.0.0.1', () => {
            console.log(JSON.stringify({
                port: server.address().port,
                ownListen: net.Server.prototype.listen.name,
                nodeOptions: process.env.NODE_OPTIONS,
            }));
            server.close();
        });`;
    const r = await runNode(['-e', script], { env });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.ok(out.port > 0, r.stdout);
    assert.notEqual(out.ownListen, 'preloadListen', "Node's own listen, not the preload's");
    assert.equal(out.nodeOptions, '--no-warnings', 'the preload left, the user option stayed');
});

test('under a drover master an unmodified Express app shares its port, is ready when it listens, and drains on stop', async (t) => {
    const port = await freePort();
    const master = MasterFactory.create({
        script: fixture('express-app.js'),
        count: 2,
        env: { PORT: String(port), NODE_OPTIONS: `--require ${preload}`, DROVER_PRELOAD_READY: 'listen' },
    });
    t.after(() => master.hardShutdown().catch(() => {}));
    await master.start();
    const pids = master.getWorkers().map((w) => w.pid);
    const seen = new Set();
    for (let i = 0; i < 200 && seen.size < 2; i++) seen.add(Number(await httpGet(port)));
    assert.deepEqual([...seen].sort(), [...pids].sort(), 'both workers answer on the one port');
    // Each knows its place: NODE_APP_INSTANCE (a Node program) = DROVER_INSTANCE = getWorkers().
    const places = new Map(master.getWorkers().map((w) => [w.pid, w.instance]));
    assert.deepEqual([...places.values()].sort(), [0, 1]);
    const told = new Map();
    for (let i = 0; i < 200 && told.size < 2; i++) {
        const env = JSON.parse(await httpGet(port, '/env'));
        told.set(env.pid, env);
    }
    for (const [pid, env] of told) {
        assert.equal(env.instance, String(places.get(pid)), JSON.stringify(env));
        assert.equal(env.droverInstance, env.instance);
    }
    await master.gracefulShutdown();
    await waitGone(pids);
});
