'use strict';

// Leader/follower clients (lib/cluster-client.js, PROTOCOL.md §5.10) with real processes and a
// real TCP upstream that counts its connections: 4 Node workers hold exactly one upstream
// connection; followers invoke and subscribe through the leader; kill -9 the leader and a new
// one connects, never two at once, and every event number is received or inside a reported gap.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const path = require('node:path');
const { MasterFactory } = require('..');
const { waitFor } = require('../test-support/helpers');

const leaderWorker = path.join(__dirname, '..', 'test-support', 'leader-worker.js');
const DEADLINE = 30000;

/**
 * The upstream: `GET key` → `VALUE key KEY-IN-CAPITALS`; `SUB` → `EVENT n` lines every 3 ms (one
 * numbering for all). Counts live connections and the most at once; a new connection is counted
 * on the next turn of the loop, after the ends the kernel already reported.
 */
function startUpstream() {
    const stats = { live: 0, max: 0, accepted: 0, n: 0 };
    const subscribers = new Set();
    const server = net.createServer((socket) => {
        stats.accepted++;
        let counted = false;
        setImmediate(() => {
            if (socket.destroyed) return;
            counted = true;
            stats.live++;
            stats.max = Math.max(stats.max, stats.live);
        });
        socket.on('close', () => {
            if (counted) stats.live--;
            subscribers.delete(socket);
        });
        socket.on('error', () => {});
        socket.setEncoding('utf8');
        let buffered = '';
        socket.on('data', (chunk) => {
            buffered += chunk;
            let at;
            while ((at = buffered.indexOf('\n')) >= 0) {
                const [kind, key] = buffered.slice(0, at).split(' ');
                buffered = buffered.slice(at + 1);
                if (kind === 'GET') socket.write(`VALUE ${key} ${key.toUpperCase()}\n`);
                else if (kind === 'SUB') subscribers.add(socket);
            }
        });
    });
    const ticker = setInterval(() => {
        stats.n++;
        for (const s of subscribers) s.write(`EVENT ${stats.n}\n`);
    }, 3);
    return new Promise((resolve) => {
        server.listen(0, '127.0.0.1', () => {
            resolve({
                port: server.address().port,
                stats,
                close: () => {
                    clearInterval(ticker);
                    for (const s of subscribers) s.destroy();
                    server.close();
                },
            });
        });
    });
}

/** Everything each worker reported, in its order. */
function recordReports(master) {
    const reports = new Map();
    master.on('message', (m, id) => {
        if (!reports.has(id)) reports.set(id, []);
        reports.get(id).push(m);
    });
    return reports;
}

async function until(cond, what) {
    const end = Date.now() + DEADLINE;
    while (!cond()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 10));
    }
}

/** The leader every worker in `ids` last reported (null unless they agree). */
function agreedLeader(reports, ids) {
    const seen = ids.map((id) => {
        const leaders = (reports.get(id) ?? []).filter((m) => m.leader).map((m) => m.leader);
        return leaders.length ? leaders[leaders.length - 1].leader : null;
    });
    return seen.every((l) => l !== null && l === seen[0]) ? seen[0] : null;
}

function eventsOf(reports, id) {
    return (reports.get(id) ?? []).flatMap((m) => m.events ?? []);
}

test('one upstream connection for 4 workers, kept across a kill -9 of the leader, no event silently lost', async (t) => {
    const upstream = await startUpstream();
    t.after(() => upstream.close());
    const master = MasterFactory.create({
        script: leaderWorker,
        count: 4,
        name: 'cc',
        env: { DROVER_TEST_UPSTREAM_PORT: String(upstream.port) },
    });
    t.after(() => master.hardShutdown());
    const reports = recordReports(master);
    await master.start();
    const ids = master.getWorkers().map((w) => w.id);
    assert.equal(ids.length, 4);

    await until(() => agreedLeader(reports, ids) !== null, 'a leader every worker knows');
    const first = agreedLeader(reports, ids);
    assert.equal(master.leader('upstream').leader, first, "the master's view agrees");
    assert.equal(master.leader('nobody-joined'), null);
    await until(() => ids.every((id) => eventsOf(reports, id).length > 20), 'events in every worker');
    assert.equal(upstream.stats.live, 1, 'one upstream connection');
    assert.equal(upstream.stats.accepted, 1);

    // Followers' invokes are answered by the leader's client.
    for (const id of ids) {
        const reply = waitFor(master, 'message', (m, from) => from === id && m && (m.got || m.get_error), DEADLINE);
        await master.send(id, { cmd: 'get', key: `k${id}` });
        const [m] = await reply;
        assert.deepEqual(m, { got: `k${id}`, value: `K${id}` }, `worker ${id}`);
    }

    const leaderPid = master.getWorkers().find((w) => w.id === first).pid;
    process.kill(leaderPid, 'SIGKILL');
    const followers = ids.filter((id) => id !== first);
    await until(() => {
        const l = agreedLeader(reports, followers);
        return l !== null && l !== first;
    }, 'a new leader the followers know');
    const killedAt = upstream.stats.n;
    await until(() => followers.every((id) => eventsOf(reports, id).some((n) => n > killedAt + 30)), 'events again in every follower');
    await until(() => upstream.stats.accepted === 2 && upstream.stats.live === 1, 'the new leader connected');
    assert.equal(upstream.stats.max, 1, 'never two upstream connections at once');

    for (const id of followers) {
        // In the order reported: each missing number lies after a gap's lastData and before the
        // first event received after that gap.
        const list = reports.get(id);
        const received = new Set(eventsOf(reports, id));
        const covered = [];
        list.forEach((m, i) => {
            if (!m.gap) return;
            const next = list.slice(i + 1).flatMap((r) => r.events ?? [])[0];
            covered.push([m.gap.lastData ?? 0, next ?? Infinity]);
        });
        const all = [...received];
        const lo = Math.min(...all);
        const hi = Math.max(...all);
        const missing = [];
        for (let n = lo; n <= hi; n++) if (!received.has(n)) missing.push(n);
        const silent = missing.filter((n) => !covered.some(([a, b]) => n > a && n < b));
        assert.deepEqual(silent, [], `worker ${id}: events lost without a gap (gaps ${JSON.stringify(covered)})`);
        assert.ok(covered.length >= 1, `worker ${id} was told of the leader change`);
        assert.ok(list.some((m) => m.resubscribed), `worker ${id} resubscribed`);
    }
});

test('past maxPendingInvokes, a call is refused at once with overloaded', async (t) => {
    const upstream = await startUpstream();
    t.after(() => upstream.close());
    const master = MasterFactory.create({
        script: leaderWorker,
        count: 1,
        name: 'cc-bound',
        env: { DROVER_TEST_UPSTREAM_PORT: String(upstream.port) },
    });
    t.after(() => master.hardShutdown());
    await master.start();
    const [id] = master.getWorkers().map((w) => w.id);
    const reply = waitFor(master, 'message', (m, from) => from === id && m && m.overloaded, DEADLINE);
    await master.send(id, { cmd: 'overload' });
    const [m] = await reply;
    assert.equal(m.overloaded.code, 'overloaded');
    assert.equal(m.overloaded.name, 'RequestError');
    assert.match(m.overloaded.message, /2 calls .*maxPendingInvokes/);
});

test('a leader restarted gracefully is deposed, closes its client and resigns before another connects', async (t) => {
    const upstream = await startUpstream();
    t.after(() => upstream.close());
    const master = MasterFactory.create({
        script: leaderWorker,
        count: 3,
        name: 'cc-stop',
        env: { DROVER_TEST_UPSTREAM_PORT: String(upstream.port) },
    });
    t.after(() => master.hardShutdown());
    const reports = recordReports(master);
    await master.start();
    const ids = master.getWorkers().map((w) => w.id);
    await until(() => agreedLeader(reports, ids) !== null, 'a leader every worker knows');
    const first = agreedLeader(reports, ids);
    await until(() => upstream.stats.live === 1, 'the leader connected');

    const followers = ids.filter((id) => id !== first);
    // Each follower is told nobody leads (the old leader is being stopped) before it is told the next.
    await master.restartWorkerById(first);
    await until(() => {
        const l = agreedLeader(reports, followers);
        return l !== null && l !== first;
    }, 'a new leader the followers know');
    for (const id of followers) {
        const told = reports.get(id).filter((m) => m.leader).map((m) => m.leader.leader);
        const next = told.lastIndexOf(agreedLeader(reports, followers));
        assert.ok(told.slice(0, next).includes(null), `worker ${id} was told nobody leads first: ${JSON.stringify(told)}`);
    }
    await until(() => upstream.stats.accepted === 2 && upstream.stats.live === 1, 'the new leader connected');
    const at = upstream.stats.n;
    await until(() => followers.every((id) => eventsOf(reports, id).some((n) => n > at + 10)), 'events again');
    assert.equal(upstream.stats.max, 1, 'never two upstream connections at once');
});
