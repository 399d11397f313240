'use strict';

// The harness (run it through ./run.sh, which builds, installs the tools and cleans up):
// for each run, for each contender, on a fresh supervisor:
//   1. start 4 workers: from the supervisor's command to the 4th worker answering;
//   2. supervisor RSS, 0.5 s after the start;
//   3. a reload, idle: from the trigger to every old worker gone and every new one answering
//      (and the supervisor saying it is done);
//   4. the load (load.js: 20 keep-alive connections, 2,000 req/s, 15 s) with the same reload at
//      t = 3 s: failed requests, p99, and the reload's duration under load;
//   5. kill -9 of one worker: to its replacement answering;
//   6. shutdown, and a check that no worker is left.
// Times come from the workers' own events (app.js appends them to a file), the same for every
// supervisor. Every wait has a deadline; every process started is recorded in $BENCH_WORK/pids
// for run.sh's trap.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');

const HERE = __dirname;
const ROOT = path.resolve(HERE, '..', '..');
const WORK = process.env.BENCH_WORK || fs.mkdtempSync('/tmp/drover-bench-compare-');
const RUNS = Number(process.env.RUNS || 5);
const WORKERS = 4;
const BOOT_MS = Number(process.env.BOOT_MS || 200);
const DURATION_MS = Number(process.env.DURATION_MS || 15000);
const RELOAD_AT_MS = Number(process.env.RELOAD_AT_MS || 3000);
// Below Linux's ephemeral range (32768–60999 by default): a port in it can be taken at any moment by
// some connection's local end (a run once failed with EADDRINUSE on 41060 that way).
const BASE_PORT = Number(process.env.BASE_PORT || 21000);
const CONTENDERS = (process.env.CONTENDERS || 'drover,pm2,cluster').split(',').filter(Boolean);
const DROVER_BIN = process.env.DROVER_BIN || path.join(ROOT, 'target', 'release', 'drover');
const PM2 = path.join(HERE, 'node_modules', 'pm2', 'bin', 'pm2');
const DROVER_NODE_PKG = path.join(ROOT, 'bindings-node');
const OUT = process.env.OUT || path.join(WORK, 'results.json');

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const note = (...a) => process.stderr.write(`${a.join(' ')}\n`);

// Environment of every contender: NODE_EXTRA_CA_CERTS costs ~90 ms per Node start here.
const baseEnv = { ...process.env };
delete baseEnv.NODE_EXTRA_CA_CERTS;
// The release addon cargo built, not bindings-node/drover.node, which `npm run build` (debug)
// overwrites: the figures must not depend on which build another engineer copied last.
baseEnv.DROVER_NODE_ADDON = process.env.DROVER_NODE_ADDON || path.join(ROOT, 'target', 'release', 'libdrover_node.so');
for (const k of ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'NOTIFY_SOCKET', 'NODE_CHANNEL_FD', 'PM2_HOME']) delete baseEnv[k];

function track(pid) {
    if (pid) fs.appendFileSync(path.join(WORK, 'pids'), `${pid}\n`);
}

/** A child in its own process group, recorded for cleanup; stdout lines parsed as JSON. */
function start(cmd, args, env, label) {
    const child = spawn(cmd, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    track(child.pid);
    child.lines = [];
    child.waiters = [];
    child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const logFile = fs.createWriteStream(path.join(WORK, `${label}.log`), { flags: 'a' });
    child.stderr.pipe(logFile);
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
        logFile.write(`${line}\n`);
        let o;
        try {
            o = JSON.parse(line);
        } catch {
            return;
        }
        child.lines.push(o);
        for (const w of child.waiters.splice(0)) w();
    });
    return child;
}

/** Waits for a stdout JSON line matching pred (seen after index `from`). */
async function line(child, pred, timeoutMs, what) {
    const deadline = now() + timeoutMs;
    for (;;) {
        const hit = child.lines.find(pred);
        if (hit) return hit;
        if (now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await Promise.race([new Promise((r) => child.waiters.push(r)), sleep(Math.min(50, deadline - now())), child.exited]);
        if (child.exitCode !== null || child.signalCode !== null) {
            const late = child.lines.find(pred);
            if (late) return late;
            throw new Error(`${what}: the process exited (${child.exitCode ?? child.signalCode})`);
        }
    }
}

/** Runs a command to its end (bounded), returning its end time. */
async function run(cmd, args, env, label, timeoutMs = 60000) {
    const child = start(cmd, args, env, label);
    const timer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), timeoutMs);
    const { code, signal } = await child.exited;
    clearTimeout(timer);
    const t = now();
    if (code !== 0) throw new Error(`${label}: ${cmd} ${args.join(' ')} ended with ${code ?? signal} (see ${WORK}/${label}.log)`);
    return t;
}

function killGroup(pid, sig) {
    try {
        process.kill(-pid, sig);
    } catch {
        try {
            process.kill(pid, sig);
        } catch {
            // gone
        }
    }
}

function alive(pid) {
    try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
    } catch {
        return false;
    }
}

function rssKb(pid) {
    try {
        const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
        return m ? Number(m[1]) : null;
    } catch {
        return null;
    }
}

/** The workers' events file, read incrementally. */
class Events {
    constructor(file) {
        this.file = file;
        fs.writeFileSync(file, '');
        this.all = [];
        this.offset = 0;
        this.rest = '';
    }

    poll() {
        const fd = fs.openSync(this.file, 'r');
        try {
            const buf = Buffer.alloc(1 << 16);
            for (;;) {
                const n = fs.readSync(fd, buf, 0, buf.length, this.offset);
                if (n <= 0) break;
                this.offset += n;
                this.rest += buf.toString('utf8', 0, n);
            }
        } finally {
            fs.closeSync(fd);
        }
        const lines = this.rest.split('\n');
        this.rest = lines.pop();
        for (const l of lines) {
            if (!l) continue;
            const e = JSON.parse(l);
            if (e.ev === 'boot') track(e.pid);
            this.all.push(e);
        }
        return this.all;
    }

    async until(pred, timeoutMs, what) {
        const deadline = now() + timeoutMs;
        for (;;) {
            const r = pred(this.poll());
            if (r) return r;
            if (now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
            await sleep(2);
        }
    }

    readyPids(after = 0) {
        return [...new Set(this.all.filter((e) => e.ev === 'ready' && e.t >= after).map((e) => e.pid))];
    }

    /** Workers that reported ready and are still alive. */
    current() {
        return this.readyPids().filter(alive);
    }
}

// ---- contenders ---------------------------------------------------------------------------------

/** What the two `drover` command contenders share: the pid, `drover reload`, SIGTERM to stop. */
function droverCommand(child, socket, env, label) {
    return {
        supervisorPid: () => child().pid,
        async reload() {
            return run(DROVER_BIN, ['reload', '--socket', socket], env, `${label}-reload`, 30000);
        },
        async stop() {
            process.kill(child().pid, 'SIGTERM');
            await Promise.race([child().exited, sleep(20000)]);
            killGroup(child().pid, 'SIGKILL');
        },
    };
}

const contenders = {
    // (a) a Node master using require('drover')
    drover: (env, label) => {
        let child;
        return {
            name: `drover, Node master, ${env.BENCH_STOP === 'close' ? 'server.close()' : 'drain'}`,
            async start() {
                child = start(process.execPath, [path.join(HERE, 'drover-master.js')], env, label);
                const started = await line(child, (o) => o.ev === 'started' || o.ev === 'start-failed', 30000, 'drover start');
                if (started.ev !== 'started') throw new Error(`drover start failed: ${started.message}`);
                return started.t;
            },
            supervisorPid: () => child.pid,
            async reload() {
                const n = child.lines.length;
                process.kill(child.pid, 'SIGHUP');
                const r = await line(child, (o) => child.lines.indexOf(o) >= n && /^reload/.test(o.ev), 30000, 'drover reload');
                if (r.ev !== 'reloaded') throw new Error(`drover reload failed: ${r.message}`);
                return r.t;
            },
            async stop() {
                process.kill(child.pid, 'SIGTERM');
                await Promise.race([child.exited, sleep(20000)]);
                killGroup(child.pid, 'SIGKILL');
            },
        };
    },
    // the drover CLI (Rust master), apps unchanged for PM2: readiness from Node's IPC channel
    'drover-cli': (env, label) => {
        let child;
        const socket = path.join(WORK, `${label}.sock`);
        return {
            name: `drover CLI (Rust master), node-ipc, ${env.BENCH_STOP === 'close' ? 'server.close()' : 'drain'}`,
            async start() {
                // The same options as drover-master.js, through a config file (the command line
                // has no restartDelay): `drover run -c FILE`.
                const config = path.join(WORK, `${label}.toml`);
                fs.writeFileSync(config, [
                    // The app's own PM2 handlers ('shutdown' → its drain), as before the preload
                    // existed: drover-cli-app is the contender with it.
                    'nodePreload = "off"',
                    '[groups.bench]',
                    `program = ${JSON.stringify(process.execPath)}`,
                    `args = [${JSON.stringify(path.join(HERE, 'app.js'))}]`,
                    `count = ${WORKERS}`,
                    `listen = ["127.0.0.1:${env.PORT}"]`,
                    'ready = "node-ipc"',
                    'restart = "always"',
                    'restartDelay = 1',
                    `stopTimeout = ${env.STOP_TIMEOUT_MS}`,
                    '',
                ].join('\n'));
                child = start(DROVER_BIN, ['run', '-c', config, '--socket', socket], env, label);
                return null;
            },
            ...droverCommand(() => child, socket, env, label),
        };
    },
    // The unmodified app under the drover command, as a PM2 user runs it: `drover run -n 4
    // --ready node-ipc -- node app.js`, every other option drover's default. No listen declared and
    // no drover code in the app: the app calls `server.listen(PORT)` and `process.send('ready')`;
    // drover's preload (NODE_OPTIONS=--require, bindings-node/preload.js) gives every worker the
    // master's socket for that port and drains its keep-alive connections when it is stopped (the
    // app's own 'shutdown' handler, server.close(), is not reached).
    'drover-cli-app': (env0, label) => {
        const env = { BENCH_STOP: 'close', ...env0 };
        let child;
        const socket = path.join(WORK, `${label}.sock`);
        return {
            name: 'unmodified app under the drover command (preload)',
            async start() {
                child = start(DROVER_BIN, ['run', '-n', String(WORKERS), '--name', 'bench', '--ready', 'node-ipc',
                    '--socket', socket, '--', process.execPath, path.join(HERE, 'app.js')], env, label);
                return null;
            },
            ...droverCommand(() => child, socket, env, label),
        };
    },
    // (b) PM2 cluster mode, a fresh daemon (private PM2_HOME) per run
    pm2: (env0, label) => {
        const env = { BENCH_STOP: 'close', ...env0 }; // PM2's documented graceful-stop idiom
        const home = path.join(WORK, `pm2-${label}`);
        const e = { ...env, PM2_HOME: home };
        const pm2 = (args, what, t) => run(process.execPath, [PM2, ...args], e, `${label}-${what}`, t);
        let daemon = null;
        return {
            name: `PM2 cluster mode, ${env.BENCH_STOP === 'drain' ? 'drain' : 'server.close()'}`,
            async prepare() {
                fs.mkdirSync(home, { recursive: true });
                fs.appendFileSync(path.join(WORK, 'pm2-homes'), `${home}\n`);
                await pm2(['ping'], 'ping'); // the daemon runs before the timed start
                daemon = Number(fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8'));
                track(daemon);
            },
            async start() {
                return pm2(['start', path.join(HERE, 'app.js'), '-i', String(WORKERS), '--name', 'bench',
                    '--wait-ready', '--listen-timeout', '10000', '--kill-timeout', String(env.STOP_TIMEOUT_MS)], 'start');
            },
            supervisorPid: () => daemon,
            async reload() {
                return pm2(['reload', 'bench'], 'reload', 60000);
            },
            async stop() {
                await pm2(['delete', 'bench'], 'delete').catch((err) => note(err.message));
                await pm2(['kill'], 'kill').catch((err) => note(err.message));
            },
        };
    },
    // (c) a minimal Node cluster master, rolling restart
    cluster: (env0, label) => {
        const env = { BENCH_STOP: 'close', ...env0 }; // the usual idiom: server.close(), then exit
        let child;
        return {
            name: `Node cluster, rolling, ${env.BENCH_STOP === 'drain' ? 'drain' : 'server.close()'}`,
            async start() {
                child = start(process.execPath, [path.join(HERE, 'cluster-master.js')], env, label);
                const s = await line(child, (o) => o.ev === 'started' || o.ev === 'start-failed', 30000, 'cluster start');
                if (s.ev !== 'started') throw new Error(`cluster start failed: ${s.message}`);
                return s.t;
            },
            supervisorPid: () => child.pid,
            async reload() {
                const n = child.lines.length;
                process.kill(child.pid, 'SIGHUP');
                const r = await line(child, (o) => child.lines.indexOf(o) >= n && /^reload/.test(o.ev), 60000, 'cluster reload');
                if (r.ev !== 'reloaded') throw new Error(`cluster reload failed: ${r.message}`);
                return r.t;
            },
            async stop() {
                process.kill(child.pid, 'SIGTERM');
                await Promise.race([child.exited, sleep(20000)]);
                killGroup(child.pid, 'SIGKILL');
            },
        };
    },
};
// The same contenders with the other stop handler in the app (KIND+close, KIND+drain).
for (const base of ['pm2', 'cluster', 'drover', 'drover-cli']) {
    for (const stop of ['close', 'drain']) {
        contenders[`${base}+${stop}`] = (env, label) => contenders[base]({ ...env, BENCH_STOP: stop }, label);
    }
}

// ---- one run ----------------------------------------------------------------------------------

/** Triggers a reload and measures it: until the supervisor is done, every old worker is gone
 * and WORKERS new ones answer. */
async function measureReload(c, ev) {
    const old = ev.current();
    const t0 = now();
    const done = await c.reload();
    const end = await ev.until((all) => {
        const fresh = ev.readyPids(t0).filter((p) => !old.includes(p) && alive(p));
        if (fresh.length < WORKERS || old.some(alive)) return null;
        const exits = all.filter((e) => e.ev === 'exit' && old.includes(e.pid)).map((e) => e.t);
        const readies = all.filter((e) => e.ev === 'ready' && fresh.includes(e.pid)).map((e) => e.t);
        // an old worker killed without an exit event: the moment we saw it gone
        const gone = exits.length === old.length ? Math.max(...exits) : now();
        return Math.max(done ?? 0, gone, ...readies);
    }, 30000, 'the reload to complete');
    return { ms: end - t0, supervisorMs: done ? done - t0 : null };
}

async function once(kind, runIndex, port) {
    const label = `${kind}-${runIndex}`;
    const events = new Events(path.join(WORK, `${label}.events.jsonl`));
    const env = {
        ...baseEnv, PORT: String(port), BENCH_EVENTS: events.file, BOOT_MS: String(BOOT_MS),
        DROVER_NODE_PKG, STOP_TIMEOUT_MS: '5000', DRAIN_TIMEOUT_MS: '4000', WORKERS: String(WORKERS),
    };
    const c = contenders[kind](env, label);
    const r = { kind, run: runIndex, loadavg: require('node:os').loadavg()[0] };
    try {
        if (c.prepare) await c.prepare();
        const t0 = now();
        const supervisorDone = await c.start();
        const lastReady = await events.until(() => {
            const ready = events.all.filter((e) => e.ev === 'ready');
            return ready.length >= WORKERS ? ready[WORKERS - 1].t : null;
        }, 30000, `${WORKERS} workers ready`);
        r.startMs = lastReady - t0;
        r.startSupervisorMs = supervisorDone ? supervisorDone - t0 : null;
        // the supervisor's own start-up left out: first worker process started → 4th answering
        const firstOrigin = Math.min(...events.all.filter((e) => e.ev === 'boot').slice(0, WORKERS).map((e) => e.origin));
        r.startFromFirstSpawnMs = lastReady - firstOrigin;
        await sleep(500);
        r.rssKb = rssKb(c.supervisorPid());

        const idle = await measureReload(c, events);
        r.reloadIdleMs = idle.ms;
        await sleep(1000);

        const load = start(process.execPath, [path.join(HERE, 'load.js')], { ...baseEnv, PORT: String(port), DURATION_MS: String(DURATION_MS) }, `${label}-load`);
        const begin = await line(load, (o) => o.ev === 'begin', 10000, 'the load to begin');
        await sleep(begin.t0 + RELOAD_AT_MS - now());
        const loaded = await measureReload(c, events);
        r.reloadLoadMs = loaded.ms;
        const res = await line(load, (o) => o.ev === 'result', DURATION_MS + 30000, 'the load result');
        r.load = res;
        r.failed = res.failed;
        r.p99 = res.p99;
        r.servedBy = Object.keys(res.pids).length;
        r.stopModes = [...new Set(events.poll().filter((e) => e.ev === 'stop').map((e) => e.mode))];

        await sleep(500);
        const victim = events.current()[0];
        const known = new Set(events.readyPids());
        const tk = now();
        process.kill(victim, 'SIGKILL');
        const replaced = await events.until((all) => all.find((e) => e.ev === 'ready' && e.t >= tk && !known.has(e.pid)), 30000, 'a replacement for the killed worker');
        r.killMs = replaced.t - tk;
        await sleep(300);
    } catch (err) {
        r.error = err.message;
        note(`  ${label}: ${err.message}`);
    } finally {
        await c.stop().catch((err) => note(`  ${label} stop: ${err.message}`));
        const pids = [...new Set(events.poll().map((e) => e.pid))];
        const left = await events.until(() => (pids.some(alive) ? null : []), 15000, 'every worker to end').catch(() => pids.filter(alive));
        if (left.length) {
            r.leftBehind = left;
            for (const p of left) killGroup(p, 'SIGKILL');
        }
    }
    return r;
}

/** One worker's own boot: `node app.js`, standalone, from spawn to answering. */
async function oneBoot(i) {
    const events = new Events(path.join(WORK, `boot-${i}.events.jsonl`));
    const env = { ...baseEnv, PORT: String(BASE_PORT - 1 - i), BENCH_EVENTS: events.file, BOOT_MS: String(BOOT_MS) };
    const t0 = now();
    const child = start(process.execPath, [path.join(HERE, 'app.js')], env, `boot-${i}`);
    try {
        const ready = await events.until((all) => all.find((e) => e.ev === 'ready'), 10000, 'the standalone app');
        return ready.t - t0;
    } finally {
        child.kill('SIGTERM');
        await Promise.race([child.exited, sleep(5000)]);
        killGroup(child.pid, 'SIGKILL');
    }
}

// ---- the table ----------------------------------------------------------------------------------

const median = (a) => {
    const s = [...a].sort((x, y) => x - y);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
function cell(values, fmt) {
    const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
    if (!v.length) return '–';
    return `${fmt(median(v))} [${fmt(Math.min(...v))}–${fmt(Math.max(...v))}]`;
}
const ms = (x) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`);
const ms1 = (x) => `${x.toFixed(1)} ms`;
const n0 = (x) => String(Math.round(x));
const mb = (x) => `${(x / 1024).toFixed(1)} MB`;

function table(results, boot) {
    const kinds = [...new Set(results.map((r) => r.kind))];
    const by = (k, f) => results.filter((r) => r.kind === k && !r.error).map(f);
    const bootMed = median(boot);
    const header = ['', ...kinds.map((k) => contenders[k]({}, `name-${k}`).name), 'goal'];
    const rows = [
        ['failed requests (whole run, reload at 3 s)', ...kinds.map((k) => cell(by(k, (r) => r.failed), n0)), '0'],
        ['requests sent (of 2,000/s × the duration)', ...kinds.map((k) => cell(by(k, (r) => r.load.sent), n0)), ''],
        ['runs with 0 failed', ...kinds.map((k) => `${by(k, (r) => r.failed).filter((f) => f === 0).length}/${results.filter((r) => r.kind === k).length}`), '5/5'],
        ['reload under load', ...kinds.map((k) => cell(by(k, (r) => r.reloadLoadMs), ms)), '< 1.5 s'],
        ['reload idle', ...kinds.map((k) => cell(by(k, (r) => r.reloadIdleMs), ms)), ''],
        ['p99 latency (whole run)', ...kinds.map((k) => cell(by(k, (r) => r.p99), ms1)), ''],
        ['time to all 4 ready (start)', ...kinds.map((k) => cell(by(k, (r) => r.startMs), ms)), `≤ 1.2 × ${ms(bootMed)} = ${ms(1.2 * bootMed)}`],
        ['… of which: 1st worker process start → 4th answering', ...kinds.map((k) => cell(by(k, (r) => r.startFromFirstSpawnMs), ms)), ''],
        ['kill -9 → replacement answering', ...kinds.map((k) => cell(by(k, (r) => r.killMs), ms)), `≤ 1.1 × ${ms(bootMed)} = ${ms(1.1 * bootMed)}`],
        ['supervisor RSS', ...kinds.map((k) => cell(by(k, (r) => r.rssKb), mb)), '< PM2 daemon / 10'],
        ['worker pids that served (of the load run)', ...kinds.map((k) => cell(by(k, (r) => r.servedBy), n0)), ''],
    ];
    const lines = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
    for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
    return `${lines.join('\n')}\n\nOne worker's own boot (\`node app.js\`, spawn → answering): ${cell(boot, ms)}.`;
}

(async () => {
    note(`work dir ${WORK}; runs ${RUNS}; contenders ${CONTENDERS.join(', ')}`);
    for (const k of CONTENDERS) if (!contenders[k]) throw new Error(`unknown contender ${k}`);
    const boot = [];
    for (let i = 0; i < Math.max(RUNS, 3); i++) boot.push(await oneBoot(i));
    note(`one boot: ${boot.map(ms).join(', ')}`);
    const results = [];
    for (let run = 1; run <= RUNS; run++) {
        for (const [ci, kind] of CONTENDERS.entries()) {
            const port = BASE_PORT + run * 20 + ci;
            const r = await once(kind, run, port);
            results.push(r);
            const errs = r.load ? JSON.stringify({ ...r.load.errors, timeouts: r.load.timeouts, non2xx: r.load.non2xx }) : '';
            note(`run ${run} ${kind}: start ${r.startMs && ms(r.startMs)}, reload idle ${r.reloadIdleMs && ms(r.reloadIdleMs)}, `
                + `loaded ${r.reloadLoadMs && ms(r.reloadLoadMs)}, failed ${r.failed} ${errs} of ${r.load && r.load.sent}, `
                + `p99 ${r.p99 && ms1(r.p99)}, kill ${r.killMs && ms(r.killMs)}, rss ${r.rssKb} kB`
                + `, stop ${r.stopModes}, loadavg ${r.loadavg.toFixed(1)}${r.error ? `, ERROR ${r.error}` : ''}${r.leftBehind ? `, LEFT ${r.leftBehind}` : ''}`);
            fs.writeFileSync(OUT, JSON.stringify({ boot, results }, null, 1));
        }
    }
    process.stdout.write(`${table(results, boot)}\n`);
    note(`raw results: ${OUT}`);
})().catch((err) => {
    note(`bench: ${err.stack || err.message}`);
    process.exitCode = 1;
});
