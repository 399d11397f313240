'use strict';

// Connections the master accepts itself and hands to one worker each (`balance: 'round-robin'`):
// Node workers that call `server.listen(PORT)` get them as ordinary 'connection's; every worker
// gets its share, and a restart, a rescale or a reload refuses and resets no connection.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { MasterFactory } = require('..');
const { fixture, record } = require('../test-support/helpers');

const httpWorker = fixture('http-worker.js');
const portOf = (local) => Number(local.slice(local.lastIndexOf(':') + 1));

/** One request on a new connection (agent: false sends `Connection: close`): `{ pid }` or `{ error }`. */
function getOnce(port) {
    return new Promise((resolve) => {
        http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { body += d; });
            res.on('end', () => resolve(res.statusCode === 200 ? { pid: Number(body) } : { error: `HTTP ${res.statusCode}` }));
            res.on('error', (err) => resolve({ error: err.code || err.message }));
        }).on('error', (err) => resolve({ error: err.code || err.message }));
    });
}

/** `clients` loops of one new connection per request, until `stop()`; `done` gives the stats. */
function newConnectionLoad(port, clients) {
    const stats = { ok: 0, failed: [], perPid: new Map() };
    let stopped = false;
    // Waiters for a number of answers (or the first failure), told after each answer.
    let waiters = [];
    const tell = () => {
        waiters = waiters.filter((w) => {
            const done = stats.ok >= w.target || stats.failed.length > 0;
            if (done) w.resolve();
            return !done;
        });
    };
    const loops = Array.from({ length: clients }, async () => {
        while (!stopped) {
            const answer = await getOnce(port);
            if (answer.error) stats.failed.push(answer.error);
            else {
                stats.ok++;
                stats.perPid.set(answer.pid, (stats.perPid.get(answer.pid) || 0) + 1);
            }
            tell();
        }
    });
    const answered = (n) => new Promise((resolve) => {
        waiters.push({ target: stats.ok + n, resolve });
        tell();
    });
    return {
        stats,
        answered,
        stop: async () => {
            stopped = true;
            await Promise.all(loops);
            return stats;
        },
    };
}

async function balancedMaster(t, extra = {}) {
    const master = MasterFactory.create({
        script: httpWorker,
        count: 4,
        env: { HTTP_LISTEN: 'port', PORT: 0 },
        name: 'balanced',
        balance: 'round-robin',
        ...extra,
    });
    t.after(() => master.hardShutdown());
    const messages = record(master, 'message');
    await master.start();
    const held = master.getListeningSockets();
    assert.equal(held.length, 1, JSON.stringify(held));
    const port = portOf(held[0].local);
    const listening = messages.filter(([m]) => m.listening).map(([m]) => m.listening.port);
    assert.deepEqual(listening, [port, port, port, port], "every worker's server.address() names the master's port");
    return { master, port };
}

// Round-robin hands connections out in turn: an exact share. Reuseport lets the kernel hash each
// connection to a worker's own socket: an even share over many connections.
for (const [balance, connections, bound] of [['round-robin', 400, 1.3], ['reuseport', 2000, 1.35]]) {
    test(`${balance}: ${connections} new connections one after another are shared evenly by 4 Node workers`, async (t) => {
        const { master, port } = await balancedMaster(t, { balance });
        const perPid = new Map();
        for (let i = 0; i < connections; i++) {
            const answer = await getOnce(port);
            assert.equal(answer.error, undefined, `request ${i} failed: ${answer.error}`);
            perPid.set(answer.pid, (perPid.get(answer.pid) || 0) + 1);
        }
        const pids = master.getWorkers().map((w) => w.pid).sort();
        assert.deepEqual([...perPid.keys()].sort(), pids, 'every worker got connections');
        const shares = [...perPid.values()];
        const ratio = Math.max(...shares) / Math.min(...shares);
        t.diagnostic(`shares ${shares.join(' ')}, max/min ${ratio.toFixed(2)}`);
        assert.ok(ratio < bound, `shares ${shares.join(' ')}`);
    });

    // With reuseport, while a worker is stopping and until its replacement listens, the master
    // serves its slot by handing the connections to the other Node workers; a slot scaled away
    // is drained into them before it closes.
    test(`${balance}: a restart, a rescale and a reload under new-connection load refuse and reset no connection`, async (t) => {
        const { master, port } = await balancedMaster(t, { balance });
        const load = newConnectionLoad(port, 8);
        const served = new Set();
        master.on('worker-status', (id, status, from, pid) => served.add(pid));
        for (const w of master.getWorkers()) served.add(w.pid);
        const steps = [];
        const step = async (name, op) => {
            await load.answered(100);
            const started = Date.now();
            await op();
            steps.push(`${name} ${Date.now() - started} ms`);
        };
        let stats;
        try {
            await step('restart', () => master.restartWorkerById(master.getWorkers()[0].id));
            await step('rescale 6', () => master.rescale(6));
            await step('rescale 3', () => master.rescale(3));
            await step('reload', () => master.gracefulReload());
            await load.answered(100);
        } finally {
            stats = await load.stop();
        }
        t.diagnostic(`${steps.join(', ')}; ${stats.ok} answered, per pid ${[...stats.perPid.values()].join(' ')}`);
        assert.deepEqual(stats.failed, [], `${stats.failed.length} connections failed`);
        assert.ok(stats.ok >= 500, `only ${stats.ok} answered`);
        for (const pid of stats.perPid.keys()) assert.ok(served.has(pid), `pid ${pid} is not a worker of this master`);
        assert.ok(stats.perPid.size >= 7, `only ${stats.perPid.size} workers served (4 + 1 restarted + 2 scaled up + 3 reloaded)`);
    });
}
