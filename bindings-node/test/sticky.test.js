'use strict';

// Sticky sessions (`balance: 'sticky'`) with a real socket.io server and client: long-polling
// only, a new connection for every poll, clients from several source addresses. Each client's
// polls all reach one worker (else socket.io answers "Session ID unknown"), and a restart of one
// worker moves only that worker's clients.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { io } = require('socket.io-client');
const { MasterFactory } = require('..');
const { fixture, record, waitFor } = require('../test-support/helpers');

const worker = fixture('socketio-worker.js');
const portOf = (local) => Number(local.slice(local.lastIndexOf(':') + 1));
const CLIENTS = 12;
const DEADLINE_MS = 30000;

/** Resolves with `promise`'s value, or rejects naming `what` after the deadline. */
function within(promise, what) {
    let timer;
    const late = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not happen within ${DEADLINE_MS} ms`)), DEADLINE_MS);
    });
    return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** A long-polling socket.io client whose every request is a new connection from `localAddress`. */
function client(port, localAddress) {
    const agent = new http.Agent({ keepAlive: false, localAddress });
    const socket = io(`http://127.0.0.1:${port}`, {
        transports: ['polling'],
        agent,
        forceNew: true,
        reconnectionDelay: 50,
        reconnectionDelayMax: 200,
    });
    const seen = { connects: 0, errors: [] };
    socket.on('connect', () => { seen.connects++; });
    socket.on('connect_error', (err) => seen.errors.push(err.message));
    return { socket, seen, localAddress };
}

/** The pid of the worker serving `c`, asked three times (three round trips, each a new poll). */
async function whoami(c) {
    const pids = [];
    for (let i = 0; i < 3; i++) {
        pids.push(await within(c.socket.timeout(DEADLINE_MS).emitWithAck('whoami'), `an answer to ${c.localAddress}`));
    }
    assert.ok(pids.every((p) => p === pids[0]), `${c.localAddress} was answered by ${pids.join(', ')}`);
    return pids[0];
}

function connected(c) {
    return c.socket.connected ? Promise.resolve() : within(new Promise((r) => c.socket.once('connect', r)), `${c.localAddress} connecting`);
}

test('sticky: socket.io long-polling works across 4 workers, and a restart moves only the restarted worker\'s clients', async (t) => {
    const master = MasterFactory.create({ script: worker, count: 4, env: { PORT: 0 }, name: 'sticky', balance: 'sticky' });
    t.after(() => master.hardShutdown());
    const messages = record(master, 'message');
    await master.start();
    const port = portOf(master.getListeningSockets()[0].local);

    const clients = Array.from({ length: CLIENTS }, (_, i) => client(port, `127.0.0.${i + 2}`));
    t.after(() => clients.forEach((c) => c.socket.close()));
    await Promise.all(clients.map(connected));
    const before = new Map();
    for (const c of clients) before.set(c, await whoami(c));
    const byPid = new Map();
    for (const [c, pid] of before) byPid.set(pid, [...(byPid.get(pid) || []), c.localAddress]);
    t.diagnostic(`clients per worker: ${[...byPid.values()].map((a) => a.length).join(' ')}`);
    assert.ok(byPid.size >= 3, `${CLIENTS} addresses went to only ${byPid.size} workers`);
    const ids = new Map(clients.map((c) => [c, c.socket.id]));
    const unknownBefore = messages.filter(([m]) => m.connectionError).map(([m]) => `${m.pid}: ${m.connectionError}`);
    assert.deepEqual(unknownBefore, [], 'no poll reached a worker that did not know its session');
    assert.ok(clients.every((c) => c.seen.connects === 1 && c.seen.errors.length === 0), 'every client connected once, without an error');

    // Restart the worker with the most clients.
    const [victimPid] = [...byPid.entries()].sort((a, b) => b[1].length - a[1].length)[0];
    const victim = master.getWorkers().find((w) => w.pid === victimPid);
    const started = waitFor(master, 'worker-status', (id, status) => id === victim.id && status === 3, DEADLINE_MS);
    await master.restartWorkerById(victim.id);
    await started;

    const moved = clients.filter((c) => before.get(c) === victimPid);
    const stayed = clients.filter((c) => before.get(c) !== victimPid);
    // The restarted worker's clients lost their session (the worker closed them) and connect
    // again: to their second choice while the worker is down, and back to its instance index once
    // it is up (which may cost them a second reconnect). Each ends up served, polls all on one worker.
    const livePids = new Set(master.getWorkers().map((w) => w.pid));
    for (const c of moved) {
        const until = Date.now() + DEADLINE_MS;
        for (;;) {
            await connected(c);
            try {
                const pid = await whoami(c);
                assert.ok(livePids.has(pid), `${c.localAddress} is served by ${pid}, no live worker`);
                break;
            } catch (err) {
                if (Date.now() > until || err instanceof assert.AssertionError) throw err;
            }
        }
    }
    // Everyone else kept its worker and its session: no reconnect, the same socket id.
    for (const c of stayed) {
        assert.equal(await whoami(c), before.get(c), `${c.localAddress} moved though its worker stayed`);
        assert.equal(c.socket.id, ids.get(c), `${c.localAddress} lost its session`);
        assert.equal(c.seen.connects, 1, `${c.localAddress} reconnected`);
    }
    // Sessions unknown to the worker a poll reached: only the moved clients' (the stayed ones
    // never reconnected), so none before the restart.
    const unknown = messages.filter(([m]) => m.connectionError);
    t.diagnostic(`polls that reached a worker without their session (moved clients, after the restart): ${unknown.length}`);
});
