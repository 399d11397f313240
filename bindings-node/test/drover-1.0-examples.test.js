'use strict';

// drover 1.0's five original examples, unchanged (../shared/seeds/drover-1.0-examples, MIT), run
// against this package as a 1.0 user would: every port serves, a worker killed with kill -9 is
// replaced, the 5 s reload or rescale passes under requests with none failed, the status lines
// print, and SIGINT ends the master with exit 0 and no process left. The five run concurrently.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { root, httpGet, waitGone, isAlive, spawnNode } = require('../test-support/helpers');

const seeds = path.resolve(root, '..', 'shared', 'seeds', 'drover-1.0-examples');
const pkg = path.resolve(__dirname, '..');

// Missing seeds fail the file: a compatibility suite that skips proves nothing.
if (!fs.existsSync(path.join(seeds, 'simple-app', 'main.js'))) {
    throw new Error(`drover 1.0's examples are missing: expected them in ${seeds} (see the issue 13 notes)`);
}

// What each example serves (port -> body) and the status lines of one health-check block.
const examples = {
    'simple-app': { ports: { 2103: 'simple-app' }, block: { app: 1 } },
    'single-app-cluster': { ports: { 2099: 'single-app-cluster' }, block: { app: 4 } },
    'multi-app-cluster': {
        ports: { 2100: 'app-foo: multi-app-cluster', 2101: 'app-bar: multi-app-cluster', 2102: 'app-baz: multi-app-cluster' },
        block: { foo: 2, bar: 2, baz: 4 },
    },
    // After 5 s: foo 4 -> 2, bar 2 -> 4.
    'runtime-scaling': {
        ports: { 2104: 'app-foo: multi-app-cluster', 2105: 'app-bar: multi-app-cluster' },
        block: { foo: 4, bar: 2 },
        after: { foo: 2, bar: 4 },
    },
    // After 5 s every worker is replaced.
    'graceful-reload': {
        ports: { 2106: 'app-foo: multi-app-cluster', 2107: 'app-bar: multi-app-cluster' },
        block: { foo: 1, bar: 4 },
        replaced: true,
    },
};

/** The layout the examples expect: <dir>/index.js, <dir>/src/WorkerStatuses.js, <dir>/examples/<name>. */
function layout() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-1.0-examples-'));
    fs.mkdirSync(path.join(dir, 'src'));
    fs.writeFileSync(path.join(dir, 'index.js'), `module.exports = require(${JSON.stringify(pkg)});\n`);
    fs.writeFileSync(path.join(dir, 'src', 'WorkerStatuses.js'), `module.exports = require(${JSON.stringify(pkg)}).WorkerStatuses;\n`);
    // express and lodash: this package's dev dependencies.
    fs.symlinkSync(path.join(pkg, 'node_modules'), path.join(dir, 'node_modules'));
    for (const name of Object.keys(examples)) {
        fs.cpSync(path.join(seeds, name), path.join(dir, 'examples', name), { recursive: true });
    }
    return dir;
}

/** The master's children (workers fork from any of its threads). */
function children(pid) {
    const pids = new Set();
    let tasks = [];
    try {
        tasks = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
        return pids;
    }
    for (const tid of tasks) {
        try {
            for (const p of fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) {
                if (p.trim()) pids.add(Number(p));
            }
        } catch {
            // the thread ended meanwhile
        }
    }
    return pids;
}

async function until(what, check, timeoutMs, log) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = await check();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${log()}`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

/** The complete health-check blocks printed so far, each as { app: ['STARTED', ...], ... }. */
function blocks(stdout) {
    const parsed = [];
    const parts = stdout.split('---\n');
    parts.pop(); // the block being printed
    for (const part of parts) {
        const block = {};
        for (const m of part.matchAll(/^\[(\w+)-(\d+)\]: (\w+)$/gm)) {
            (block[m[1]] ||= [])[Number(m[2])] = m[3];
        }
        parsed.push(block);
    }
    return parsed;
}

/** A block where each app has exactly `counts[app]` workers, all STARTED. */
function healthy(block, counts) {
    return Object.entries(counts).every(([app, n]) => block[app] && block[app].length === n && block[app].every((s) => s === 'STARTED'))
        && Object.keys(block).length === Object.keys(counts).length;
}

/** Requests on every port, one after another per port, until stopped; counts failures. */
function load(ports) {
    const stats = { ok: 0, failed: [], stop: false };
    const loops = Object.entries(ports).map(async ([port, body]) => {
        while (!stats.stop) {
            try {
                const got = await httpGet(Number(port));
                if (got === body) stats.ok += 1;
                else stats.failed.push(`${port}: ${JSON.stringify(got)}`);
            } catch (e) {
                stats.failed.push(`${port}: ${e.code || e.message}`);
            }
        }
    });
    stats.done = () => {
        stats.stop = true;
        return Promise.all(loops);
    };
    return stats;
}

async function drive(dir, name) {
    const spec = examples[name];
    const { child, exited, out, err } = spawnNode(['main.js'], { cwd: path.join(dir, 'examples', name) });
    const log = () => `${name} stdout:\n${out().slice(-3000)}\nstderr:\n${err().slice(-3000)}`;
    const seen = new Set();
    // The workers run the example's app scripts; the master's other child is core's guardian.
    // Pid -> app ('app', 'foo', 'bar', 'baz': the script app.js or app-<name>.js).
    const apps = () => {
        const now = new Map();
        for (const p of children(child.pid)) {
            seen.add(p);
            let cmdline = '';
            try {
                cmdline = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
            } catch {
                continue;
            }
            const m = cmdline.match(/\/app(?:-(\w+))?\.js\0/);
            if (m) now.set(p, m[1] || 'app');
        }
        return now;
    };
    const workers = () => new Set(apps().keys());
    const counts = () => {
        const c = {};
        for (const app of apps().values()) c[app] = (c[app] || 0) + 1;
        return c;
    };
    const total = Object.values(spec.block).reduce((a, b) => a + b, 0);
    try {
        // Started: every worker up, every port answers with its app's body.
        await until(`${name}: ${total} workers`, () => workers().size === total, 30000, log);
        for (const [port, body] of Object.entries(spec.ports)) {
            assert.equal(await until(`${name}: port ${port}`, () => httpGet(Number(port)).catch(() => null), 20000, log), body);
        }
        // Once start() resolved (the health check prints): kill -9 one worker; the handler restarts it.
        await until(`${name}: a healthy status block`, () => blocks(out()).some((b) => healthy(b, spec.block)), 20000, log);
        const before = workers();
        const victim = [...before][0];
        process.kill(victim, 'SIGKILL');
        await until(`${name}: worker ${victim} replaced`, () => {
            const now = workers();
            return !now.has(victim) && now.size === total;
        }, 20000, log);
        const afterKill = workers();
        // The 5 s timer (reload, rescale; nothing for the others) under requests: none may fail.
        const stats = load(spec.ports);
        const printed = out().length;
        // The load must be on before the 5 s step begins, or it would prove nothing about the step.
        const pending = spec.replaced ? [...workers()].every((p) => afterKill.has(p)) : spec.after ? JSON.stringify(counts()) === JSON.stringify(spec.block) : true;
        assert.ok(pending, `${name}: the 5 s step began before the requests did (a very slow start?)\n${log()}`);
        const final = spec.after || spec.block;
        await until(`${name}: the 5 s step done and a healthy status block`, () => {
            const now = workers();
            // isAlive: an exiting worker is a zombie (no cmdline) until its master reaps it.
            if (spec.replaced && [...afterKill].some(isAlive)) return false;
            return blocks(out().slice(printed)).some((b) => healthy(b, final)) && now.size === total;
        }, 30000, log);
        if (!spec.after && !spec.replaced) {
            // No timer of their own: still serve under load for a few seconds, like the others.
            await new Promise((r) => setTimeout(r, 3000));
        }
        await stats.done();
        assert.deepEqual(stats.failed, [], `${name}: failed requests (${stats.ok} ok)\n${log()}`);
        assert.ok(stats.ok > 0, `${name}: no request was answered`);
        // SIGINT: the example shuts down gracefully and exits 0, leaving nothing behind.
        workers();
        child.kill('SIGINT');
        const end = await Promise.race([exited, new Promise((r) => setTimeout(() => r(null), 20000).unref())]);
        assert.ok(end, `${name}: no exit within 20 s of SIGINT\n${log()}`);
        assert.deepEqual(end, { code: 0, signal: null }, log());
        await waitGone([...seen], 5000);
        assert.doesNotMatch(err(), /Error/, log());
        return { ok: stats.ok };
    } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        for (const p of seen) {
            try {
                process.kill(p, 'SIGKILL');
            } catch {
                // gone, as it should be
            }
        }
    }
}

test("drover 1.0's five examples run unchanged and behave as with 1.0", { concurrency: true }, async (t) => {
    const dir = layout();
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    await Promise.all(Object.keys(examples).map((name) => t.test(`${name}: serves, replaces a killed worker, passes its 5 s step with 0 failed requests, exits 0 on SIGINT`, async (st) => {
        const { ok } = await drive(dir, name);
        st.diagnostic(`${name}: ${ok} requests answered after the kill, through the 5 s step, 0 failed`);
    })));
});
