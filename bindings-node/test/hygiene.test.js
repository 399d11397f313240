'use strict';

// Process hygiene: a Node master exits by itself after gracefulShutdown(); the addon keeps the
// loop alive only while it supervises something; nothing is left behind.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { fixture, runNode, waitGone, isAlive } = require('../test-support/helpers');

/** `promise`, or after `ms` a rejection with `message` (or `fallback` when message is null). */
function withDeadline(promise, ms, message, fallback) {
    let timer;
    const deadline = new Promise((resolve, reject) => {
        timer = setTimeout(() => (message === null ? resolve(fallback) : reject(new Error(message))), ms);
    });
    return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

const strict = ['--unhandled-rejections=strict', '--trace-uncaught'];

test('a Node master exits by itself after gracefulShutdown, leaving no worker behind', async () => {
    const r = await runNode([...strict, fixture('master-script.js')], { env: { MASTER_MODE: 'shutdown' } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /started (\d+),(\d+)\nshut down\n/);
    const pids = r.stdout.match(/started ([\d,]+)/)[1].split(',').map(Number);
    await waitGone(pids);
    assert.equal(r.stderr, '');
});

test('a master that was never started does not keep Node alive', async () => {
    const r = await runNode([...strict, fixture('master-script.js')], { env: { MASTER_MODE: 'idle' }, timeoutMs: 5000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
});

test('a master with running workers keeps Node alive until it is shut down', async () => {
    const child = spawn(process.execPath, [...strict, fixture('master-script.js')], {
        env: { ...process.env, MASTER_MODE: 'serve' },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    const started = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('master did not start')), 15000);
        child.stdout.on('data', (d) => {
            out += d;
            const m = out.match(/started ([\d,]+)\n/);
            if (m) {
                clearTimeout(timer);
                resolve(m[1].split(',').map(Number));
            }
        });
    });
    // Nothing but the addon holds the loop: the master is still there, supervising.
    const stillThere = await withDeadline(exited.then(() => false), 700, null, true);
    assert.ok(stillThere, 'the master process exited while supervising workers');
    assert.ok(started.every(isAlive));
    child.kill('SIGTERM');
    const { code } = await withDeadline(exited, 15000, 'master did not exit after SIGTERM');
    assert.equal(code, 0);
    assert.match(out, /shut down/);
    await waitGone(started);
});

test('a killed master takes its workers with it (PDEATHSIG)', async () => {
    const child = spawn(process.execPath, [fixture('master-script.js')], {
        env: { ...process.env, MASTER_MODE: 'serve' },
        stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    const pids = await new Promise((resolve) => {
        child.stdout.on('data', (d) => {
            out += d;
            const m = out.match(/started ([\d,]+)\n/);
            if (m) resolve(m[1].split(',').map(Number));
        });
    });
    child.kill('SIGKILL');
    await waitGone(pids);
});

test('a master the app dropped is collected when idle, and keeps supervising while it has workers', async () => {
    const { code, stdout, stderr } = await runNode(['--expose-gc', fixture('gc-masters.js')], { timeoutMs: 60000 });
    assert.equal(code, 0, stderr);
    const result = JSON.parse(stdout.trim().split('\n').pop());
    assert.equal(result.collected, result.total, `only ${result.collected} of ${result.total} idle masters were collected`);
    assert.equal(result.supervising.collected, false, 'a master with workers is not collected');
    assert.deepEqual(result.supervising.alive, result.supervising.pids, 'its workers kept running');
    // The process exited without a shutdown: its workers went with it.
    await waitGone(result.supervising.pids);
});

test('status tables are core\'s: the protocol numbers of PROTOCOL.md §6, frozen', () => {
    const { WorkerStatuses, MasterStatuses } = require('..');
    assert.deepEqual({ ...WorkerStatuses }, {
        INITIALIZED: 1, STARTING: 2, STARTED: 3, STOPPING: 4, STOPPED: 5, SHUTTING_DOWN: 6, SHUTTED_DOWN: 7, FAILED: 8,
    });
    assert.deepEqual(Object.keys(MasterStatuses).sort(), ['FAILED', 'INITIALIZED', 'RELOADING', 'SHUT_DOWN', 'STARTED', 'STARTING', 'STOPPED', 'STOPPING']);
    assert.ok(Object.isFrozen(WorkerStatuses) && Object.isFrozen(MasterStatuses));
});
