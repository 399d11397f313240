'use strict';

// Requests and worker-to-worker messages (PROTOCOL.md §5.5) in the Node face, with real
// processes: a Node master calling Rust, Node and Python workers, Node workers answering and
// calling each other and the master's JS handlers, and messages between workers.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { MasterFactory, RequestError, DroverError } = require('..');
const { rustWorker, waitFor } = require('../test-support/helpers');

const requestWorker = path.join(__dirname, '..', 'test-support', 'request-worker.js');
const pythonWorker = path.join(__dirname, '..', '..', 'examples', 'python', 'worker.py');

/** Asserts that `promise` rejects with a RequestError of `code` (and a message matching `message`). */
async function rejectsWith(promise, code, message = /./) {
    await assert.rejects(promise, (e) => {
        assert.ok(e instanceof RequestError, `a RequestError, got ${e && e.name}: ${e && e.message}`);
        assert.ok(e instanceof DroverError);
        assert.equal(e.code, code, e.message);
        assert.match(e.message, message);
        return true;
    });
}

/** Sends `command` to worker `id` and resolves with its first reply carrying one of `keys`. */
async function ask(master, id, command, keys) {
    const reply = waitFor(master, 'message', (m, from) => from === id && m && keys.some((k) => k in m), 20000);
    await master.send(id, command);
    return (await reply)[0];
}

test('a Node master calls Rust workers by id, name, any and all, and gets typed errors', async (t) => {
    const master = MasterFactory.create({
        program: rustWorker,
        count: 2,
        name: 'rs',
        env: { DROVER_TEST_HANDLERS: 'echo,whoami,fail,slow,never,exit' },
    });
    t.after(() => master.hardShutdown());
    const askers = [];
    master.handle('double', (n, from) => {
        askers.push(from);
        return n * 2;
    });
    await master.start();

    await t.test('by id, { worker }, name and the master itself', async () => {
        assert.deepEqual(await master.request(1, 'whoami'), { id: 1 });
        assert.deepEqual(await master.request('worker:2', 'echo', { a: ['ü', 1] }), { a: ['ü', 1] });
        assert.deepEqual(await master.request({ worker: 2 }, 'whoami'), { id: 2 });
        assert.deepEqual(await master.request('name:rs-1', 'whoami'), { id: 1 });
        assert.deepEqual(await master.request({ name: 'rs-2' }, 'whoami'), { id: 2 });
        assert.equal(await master.request('master', 'double', 21), 42);
        assert.deepEqual(askers, [0], 'the master itself asks as worker 0');
    });

    await t.test('any goes round the workers; all gathers every answer', async () => {
        const ids = new Set();
        for (let i = 0; i < 4; i++) ids.add((await master.request('any', 'whoami')).id);
        assert.deepEqual([...ids].sort(), [1, 2]);
        const all = await master.request('all', 'whoami', null, { timeout: 10000 });
        assert.deepEqual(all.map((r) => r.worker).sort(), [1, 2]);
        for (const r of all) assert.deepEqual(r.result, { id: r.worker });
    });

    await t.test('a Rust worker calls the JS handler of the master', async () => {
        const reply = await ask(master, 1, { cmd: 'request', to: 'master', name: 'double', args: 4 }, ['response', 'request_error']);
        assert.deepEqual(reply, { response: 8 });
        assert.deepEqual(askers, [0, 1]);
    });

    await t.test('typed errors: no such handler, no such target, timeout, handler failed', async () => {
        await rejectsWith(master.request(1, 'nope'), 'no_such_handler', /nope/);
        await rejectsWith(master.request('master', 'nope'), 'no_such_handler', /nope/);
        await rejectsWith(master.request(99, 'echo'), 'no_such_target', /99/);
        await rejectsWith(master.request('name:nobody', 'echo'), 'no_such_target', /nobody/);
        await rejectsWith(master.request('any', 'nope'), 'no_such_handler');
        const started = Date.now();
        await rejectsWith(master.request(1, 'never', null, { timeout: 300 }), 'timeout');
        assert.ok(Date.now() - started >= 250, 'the timeout is the one asked for');
        await rejectsWith(master.request(2, 'fail'), 'handler_failed', /^failed on purpose$/);
    });

    await t.test('the JS handler of the master: a throw and a rejection are handler_failed', async () => {
        master.handle('throws', () => {
            throw new Error('thrown in the master');
        });
        master.handle('rejects', async () => {
            throw new Error('rejected in the master');
        });
        master.handle('bigint', () => 1n);
        await rejectsWith(master.request('master', 'throws'), 'handler_failed', /^thrown in the master$/);
        await rejectsWith(master.request('master', 'rejects'), 'handler_failed', /^rejected in the master$/);
        await rejectsWith(master.request('master', 'bigint'), 'handler_failed', /BigInt/);
        const reply = await ask(master, 2, { cmd: 'request', to: 'master', name: 'throws' }, ['response', 'request_error']);
        assert.deepEqual(reply.request_error, { code: 'handler_failed', message: 'thrown in the master' });
    });

    await t.test('a JS handler of the master that never answers times out, and its answer later is ignored', async () => {
        let late;
        master.handle('hangs', () => new Promise((resolve) => {
            late = resolve;
        }));
        await rejectsWith(master.request('master', 'hangs', null, { timeout: 200 }), 'timeout');
        late('too late');
        assert.equal(await master.request('master', 'double', 2), 4, 'the master still answers');
    });

    await t.test('past 4096 requests in flight, the next are refused at once with overloaded; the rest answer', async () => {
        const held = [];
        master.handle('held', (n) => new Promise((resolve) => held.push(() => resolve(n))));
        const refused = [];
        // The requests reach the router in any order: whichever 4 come last are refused.
        const calls = [];
        for (let i = 0; i < 4096 + 4; i++) {
            calls.push(master.request('master', 'held', i, { timeout: 60000 }).then(
                (r) => ({ i, r }),
                (e) => {
                    refused.push(e);
                    return { i, e };
                },
            ));
        }
        const deadline = Date.now() + 20000;
        while (held.length + refused.length < 4100 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        assert.equal(held.length, 4096, 'every request in the bound reached the JS handler');
        assert.equal(refused.length, 4);
        for (const e of refused) {
            assert.ok(e instanceof RequestError, `refused: ${e}`);
            assert.equal(e.code, 'overloaded');
        }
        for (const release of held) release();
        const answered = (await Promise.all(calls)).filter((a) => !a.e);
        assert.equal(answered.length, 4096);
        for (const a of answered) assert.equal(a.r, a.i);
    });

    await t.test('wrong types are TypeErrors naming the argument; bad names RequestErrors', async () => {
        await assert.rejects(master.request(null, 'echo'), (e) => e instanceof TypeError && /target/.test(e.message));
        await assert.rejects(master.request('everyone', 'echo'), (e) => e instanceof TypeError && /"everyone"/.test(e.message));
        await assert.rejects(master.request('worker:0', 'echo'), (e) => e instanceof TypeError && /positive integer/.test(e.message));
        await assert.rejects(master.request(1, 5), (e) => e instanceof TypeError && /name must be a string/.test(e.message));
        await assert.rejects(master.request(1, 'echo', 1n), (e) => e instanceof TypeError && /args must be JSON/.test(e.message));
        await assert.rejects(master.request(1, 'echo', null, { timeout: -1 }), (e) => e instanceof TypeError && /options.timeout/.test(e.message));
        await assert.rejects(master.request(1, 'echo', null, 5), (e) => e instanceof TypeError && /options must be an object/.test(e.message));
        assert.throws(() => master.handle('x', 5), (e) => e instanceof TypeError && /handler must be a function/.test(e.message));
        assert.throws(() => master.handle('', () => 1), (e) => e instanceof RequestError && e.code === 'bad_request');
        assert.throws(() => master.handle('x'.repeat(129), () => 1), (e) => e instanceof RequestError && e.code === 'bad_request');
    });

    await t.test('a worker that exits before it answers: target_gone', async () => {
        await rejectsWith(master.request(2, 'exit', null, { timeout: 20000 }), 'target_gone');
    });
});

test('Node workers answer requests, call each other and the master, and message each other', async (t) => {
    const master = MasterFactory.create({ script: requestWorker, count: 3, name: 'js' });
    t.after(() => master.hardShutdown());
    master.handle('double', (n, from) => ({ doubled: n * 2, from }));
    await master.start();
    const request = (id, to, name, args, timeout) => ask(master, id, { cmd: 'request', to, name, args, timeout }, ['response', 'request_error']);
    const sendTo = (id, to, data) => ask(master, id, { cmd: 'send-to', to, data }, ['sent', 'send_error']);

    await t.test('the master calls a Node worker by id and all', async () => {
        assert.deepEqual(await master.request(1, 'whoami'), { id: 1, lang: 'node', asker: 0 });
        assert.deepEqual(await master.request({ name: 'js-3' }, 'echo', [1, 'two']), [1, 'two']);
        const all = await master.request('all', 'whoami');
        assert.deepEqual(all.map((r) => r.result.id).sort(), [1, 2, 3]);
    });

    await t.test('worker to worker by id, and to all others', async () => {
        assert.deepEqual(await request(1, 'worker:2', 'whoami'), { response: { id: 2, lang: 'node', asker: 1 } });
        const { response } = await request(1, 'all', 'whoami');
        assert.deepEqual(response.map((r) => r.worker).sort(), [2, 3], 'all but the asker');
        for (const r of response) assert.deepEqual(r.result, { id: r.worker, lang: 'node', asker: 1 });
    });

    await t.test('a worker calls the JS handler of the master', async () => {
        assert.deepEqual(await request(3, 'master', 'double', 21), { response: { doubled: 42, from: 3 } });
    });

    await t.test('typed errors reach the asking worker as RequestErrors', async () => {
        const failed = await request(1, 'worker:2', 'fail');
        assert.deepEqual(failed.request_error, { name: 'RequestError', code: 'handler_failed', message: 'failed in node', isRequestError: true });
        const rejected = await request(1, 'worker:2', 'reject');
        assert.equal(rejected.request_error.message, 'rejected in node');
        assert.equal((await request(1, 'worker:2', 'nope')).request_error.code, 'no_such_handler');
        assert.equal((await request(1, 'worker:99', 'whoami')).request_error.code, 'no_such_target');
        assert.equal((await request(1, 'master', 'nope')).request_error.code, 'no_such_handler');
        const slow = await request(1, 'worker:2', 'slow', { ms: 5000 }, 300);
        assert.equal(slow.request_error.code, 'timeout');
        assert.equal((await request(1, 'everyone', 'whoami')).request_error.name, 'TypeError');
    });

    await t.test('worker-messages: to one worker, to all, and to a worker that does not exist', async () => {
        const got = waitFor(master, 'message', (m, id) => id === 2 && m.got !== undefined);
        assert.deepEqual(await sendTo(1, 'worker:2', { hi: 'ü' }), { sent: 1 });
        assert.deepEqual((await got)[0], { from: 1, got: { hi: 'ü' } });

        const seen = new Map();
        const both = new Promise((resolve) => {
            const listener = (m, id) => {
                if (m && m.got && m.got.to === 'all') seen.set(id, m);
                if (seen.size === 2) {
                    master.off('message', listener);
                    resolve();
                }
            };
            master.on('message', listener);
        });
        assert.deepEqual(await sendTo(3, 'all', { to: 'all' }), { sent: 2 });
        await both;
        assert.deepEqual([...seen.keys()].sort(), [1, 2]);
        for (const m of seen.values()) assert.equal(m.from, 3);

        const lost = await sendTo(1, 'worker:99', { lost: true });
        assert.equal(lost.send_error.code, 'no_such_target');
        assert.ok(lost.send_error.isRequestError);
    });
});

function hasPython() {
    const r = spawnSync('python3', ['--version']);
    return r.status === 0;
}

test('cross-language: a Node master and a Node worker call the Python worker; Python and Rust call Node', async (t) => {
    if (!hasPython()) {
        const why = 'python3 is not on PATH: the cross-language request test with examples/python/worker.py cannot run';
        console.warn(`SKIPPED: ${why}`);
        t.skip(why);
        return;
    }
    // Worker 1 Python, worker 2 Node, worker 3 Rust: one master, three languages, one protocol.
    const script = [
        `if [ "$DROVER_WORKER_ID" = 1 ]; then exec python3 '${pythonWorker}';`,
        `elif [ "$DROVER_WORKER_ID" = 2 ]; then exec '${process.execPath}' '${requestWorker}';`,
        `else exec '${rustWorker}'; fi`,
    ].join(' ');
    const master = MasterFactory.create({
        program: 'sh',
        args: ['-c', script],
        count: 3,
        name: 'mixed',
        env: { DROVER_TEST_HANDLERS: 'whoami' },
    });
    t.after(() => master.hardShutdown());
    await master.start();

    // The Node master calls Python.
    assert.equal(await master.request(1, 'add', [1, 2, 3]), 6);
    await rejectsWith(master.request(1, 'whoami'), 'no_such_handler');

    // The Node worker calls Python, and Rust.
    const toPython = await ask(master, 2, { cmd: 'request', to: 'worker:1', name: 'add', args: [40, 2] }, ['response', 'request_error']);
    assert.deepEqual(toPython, { response: 42 });
    const toRust = await ask(master, 2, { cmd: 'request', to: 'worker:3', name: 'whoami' }, ['response', 'request_error']);
    assert.deepEqual(toRust, { response: { id: 3 } });

    // Python calls Node; Rust calls Node.
    const fromPython = await ask(master, 1, { ask: { to: 'worker:2', name: 'whoami' } }, ['answer', 'answer_error']);
    assert.deepEqual(fromPython, { answer: { id: 2, lang: 'node', asker: 1 } });
    const fromRust = await ask(master, 3, { cmd: 'request', to: 'worker:2', name: 'echo', args: { from: 'rust' } }, ['response', 'request_error']);
    assert.deepEqual(fromRust, { response: { from: 'rust' } });

    // A worker-message from Node to Rust.
    const got = waitFor(master, 'message', (m, id) => id === 3 && m.got !== undefined);
    assert.deepEqual(await ask(master, 2, { cmd: 'send-to', to: 'worker:3', data: 'to rust' }, ['sent', 'send_error']), { sent: 1 });
    assert.deepEqual((await got)[0], { from: 2, got: 'to rust' });
});
