'use strict';

// Contender (a): a Node master using require('drover') (the package in bindings-node). It holds
// the listening socket (`listen`) and passes it to 4 workers systemd-style; `restart: 'always'`
// replaces a killed worker at once. Controlled by the harness with signals: SIGHUP → graceful
// reload, SIGTERM → graceful shutdown. Reports on stdout, one JSON object a line.
const path = require('node:path');
const { MasterFactory } = require(process.env.DROVER_NODE_PKG || 'drover');

const now = () => performance.timeOrigin + performance.now();
const say = (o) => process.stdout.write(`${JSON.stringify({ ...o, t: now() })}\n`);

const master = MasterFactory.create({
    name: 'bench',
    script: path.join(__dirname, 'app.js'),
    count: Number(process.env.WORKERS || 4),
    listen: [`127.0.0.1:${process.env.PORT}`],
    restart: 'always',
    restartDelay: 1,
    stopTimeout: Number(process.env.STOP_TIMEOUT_MS || 5000),
});
master.on('error', (err) => say({ ev: 'error', message: String(err && err.message) }));

let busy = Promise.resolve();
process.on('SIGHUP', () => {
    busy = busy.then(async () => {
        const t0 = now();
        try {
            await master.gracefulReload();
            say({ ev: 'reloaded', ms: now() - t0 });
        } catch (err) {
            say({ ev: 'reload-failed', message: String(err && err.message) });
        }
    });
});
process.on('SIGTERM', () => {
    busy = busy.then(async () => {
        await master.gracefulShutdown().catch(() => master.hardShutdown());
        say({ ev: 'shut-down' });
    });
});

const t0 = now();
master.start().then(
    () => say({ ev: 'started', ms: now() - t0 }),
    (err) => {
        say({ ev: 'start-failed', message: String(err && err.message) });
        process.exitCode = 1;
        return master.hardShutdown();
    },
);
