'use strict';

// Shared by the test files (each runs in its own process under `node --test`).
const path = require('node:path');
const fs = require('node:fs');
const { once } = require('node:events');

const root = path.resolve(__dirname, '..', '..');
const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, 'target');

const fixture = (name) => path.join(__dirname, name);
const nodeWorker = fixture('worker.js');
const rustWorker = path.join(targetDir, 'debug', 'drover-test-worker');

if (!fs.existsSync(rustWorker)) {
    throw new Error(`${rustWorker} is missing: run \`npm run build\` (it runs cargo build --workspace)`);
}

/** Resolves with the arguments of the first `event` whose arguments satisfy `predicate`. */
function waitFor(emitter, event, predicate = () => true, timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            emitter.off(event, listener);
            reject(new Error(`no '${event}' event matching within ${timeoutMs} ms`));
        }, timeoutMs);
        function listener(...args) {
            if (predicate(...args)) {
                clearTimeout(timer);
                emitter.off(event, listener);
                resolve(args);
            }
        }
        emitter.on(event, listener);
    });
}

/** Collects every `event`'s arguments. */
function record(emitter, event) {
    const seen = [];
    emitter.on(event, (...args) => seen.push(args));
    return seen;
}

function isAlive(pid) {
    try {
        process.kill(pid, 0);
        return true;
    } catch (e) {
        return e.code === 'EPERM';
    }
}

/** Waits until no pid of `pids` exists (zombies included: kill(pid, 0) succeeds on a zombie). */
async function waitGone(pids, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const alive = pids.filter(isAlive);
        if (alive.length === 0) return;
        if (Date.now() > deadline) throw new Error(`processes still alive after ${timeoutMs} ms: ${alive.join(', ')}`);
        await new Promise((r) => setTimeout(r, 20));
    }
}

/** GET `path` (default /) on 127.0.0.1:`port` over a fresh connection; resolves with the body. */
function httpGet(port, path = '/') {
    return new Promise((resolve, reject) => {
        require('node:http')
            .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
                let body = '';
                res.on('data', (d) => { body += d; });
                res.on('end', () => resolve(body));
            })
            .on('error', reject);
    });
}

/**
 * Spawns `node ...args` with stdout and stderr collected: { child, exited (resolves { code,
 * signal }), out(), err() }.
 */
function spawnNode(args, { cwd, env } = {}) {
    const { spawn } = require('node:child_process');
    const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    return { child, exited, out: () => out, err: () => err };
}

/** Runs `node script` and resolves with { code, signal, stdout, stderr, ms } (rejects after a deadline). */
function runNode(args, { env, timeoutMs = 20000 } = {}) {
    const { spawn } = require('node:child_process');
    const started = Date.now();
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`node ${args.join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
        }, timeoutMs);
        child.on('exit', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
        });
    });
}

module.exports = { root, targetDir, fixture, nodeWorker, rustWorker, waitFor, record, isAlive, waitGone, runNode, spawnNode, once, httpGet };
