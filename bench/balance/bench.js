'use strict';

// Request share per worker and throughput, 4 workers behind one master-held port, under wrk:
// drover (balance shared / round-robin / reuseport) against Node's cluster (SCHED_RR, its Linux default, and
// SCHED_NONE), each with keep-alive connections and with a new connection per request
// (`Connection: close`). Each (contender, mode) gets a fresh master, so each worker's count is
// that run's alone. Prints a Markdown table on stdout, progress on stderr.
//
//   node bench/balance/bench.js [--duration S] [--connections N] [--runs R]
//
// DROVER_PACKAGE (default: ../../bindings-node) is the drover package the master and app
// require; set DROVER_NODE_ADDON to a release build (target/release/libdrover_node.so).
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const arg = (name, dflt) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const DURATION = arg('duration', 10);
const CONNECTIONS = arg('connections', 32);
const RUNS = arg('runs', 1);
const pkg = process.env.DROVER_PACKAGE || path.resolve(__dirname, '../../bindings-node');

const contenders = [
    { name: 'drover shared', script: 'drover-master.js', env: { BALANCE: 'shared' } },
    { name: 'drover round-robin', script: 'drover-master.js', env: { BALANCE: 'round-robin' } },
    { name: 'drover reuseport', script: 'drover-master.js', env: { BALANCE: 'reuseport' } },
    { name: 'node cluster SCHED_RR', script: 'cluster-master.js', env: { SCHEDULING: 'rr' } },
    { name: 'node cluster SCHED_NONE', script: 'cluster-master.js', env: { SCHEDULING: 'none' } },
];
const modes = [
    { name: 'keep-alive', wrk: [] },
    { name: 'new connection per request', wrk: ['-H', 'Connection: close'] },
];

const freePort = () => new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
    });
});

async function one(contender, mode) {
    const port = await freePort();
    const countDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-balance-'));
    const master = spawn(process.execPath, [path.join(__dirname, contender.script)], {
        env: { ...process.env, ...contender.env, PORT: String(port), COUNT_DIR: countDir, DROVER_PACKAGE: pkg },
        stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise((resolve, reject) => {
        let out = '';
        master.stdout.on('data', (d) => {
            out += d;
            if (out.includes('ready\n')) resolve();
        });
        master.once('exit', (code) => reject(new Error(`${contender.name} exited (${code}) before ready`)));
    });
    const wrk = spawnSync('wrk', ['-t2', `-c${CONNECTIONS}`, `-d${DURATION}s`, ...mode.wrk, `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
    const rps = Number((/Requests\/sec:\s+([\d.]+)/.exec(wrk.stdout) || [])[1]);
    const errors = (/Socket errors:.*|Non-2xx.*/.exec(wrk.stdout) || [''])[0];
    await new Promise((r) => setTimeout(r, 300)); // the workers' next count write
    const shares = fs.readdirSync(countDir).map((f) => Number(fs.readFileSync(path.join(countDir, f), 'utf8')));
    master.kill('SIGTERM');
    await new Promise((r) => master.once('exit', r));
    fs.rmSync(countDir, { recursive: true, force: true });
    shares.sort((a, b) => b - a);
    const ratio = Math.min(...shares) > 0 ? Math.max(...shares) / Math.min(...shares) : Infinity;
    return { rps, shares, ratio, errors };
}

(async () => {
    const rows = [];
    for (let run = 1; run <= RUNS; run++) {
        for (const mode of modes) {
            for (const contender of contenders) {
                process.stderr.write(`run ${run}: ${contender.name}, ${mode.name} ... `);
                const r = await one(contender, mode);
                process.stderr.write(`${r.rps} req/s, shares ${r.shares.join(' ')}, max/min ${r.ratio.toFixed(2)} ${r.errors}\n`);
                rows.push({ run, contender: contender.name, mode: mode.name, ...r });
            }
        }
    }
    console.log(`wrk -t2 -c${CONNECTIONS} -d${DURATION}s, 4 workers, ${os.cpus().length} CPUs, Node ${process.version}\n`);
    console.log('| run | mode | master | req/s | requests per worker | max/min | wrk errors |');
    console.log('| --- | --- | --- | ---: | --- | ---: | --- |');
    for (const r of rows) {
        console.log(`| ${r.run} | ${r.mode} | ${r.contender} | ${Math.round(r.rps)} | ${r.shares.join(' / ')} | ${r.ratio.toFixed(2)} | ${r.errors || '—'} |`);
    }
})().catch((err) => {
    console.error(err);
    process.exit(1);
});
