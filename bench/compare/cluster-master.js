'use strict';

// Contender (c): a minimal Node `cluster` master. 4 workers share PORT through the master
// (Node's default round-robin on Linux). A killed worker is replaced at once. SIGHUP → rolling
// restart, one worker at a time: fork the new one, wait for its 'ready' message (it listens
// first), then ask the old one to shut down ('shutdown' message, as PM2 does) and wait for its
// exit (SIGKILL after STOP_TIMEOUT_MS). SIGTERM → the same shutdown for all, then exit.
const cluster = require('node:cluster');
const path = require('node:path');

const now = () => performance.timeOrigin + performance.now();
const say = (o) => process.stdout.write(`${JSON.stringify({ ...o, t: now() })}\n`);
const COUNT = Number(process.env.WORKERS || 4);
const STOP_TIMEOUT_MS = Number(process.env.STOP_TIMEOUT_MS || 5000);

cluster.setupPrimary({ exec: path.join(__dirname, 'app.js') });
const retiring = new Set();
let shuttingDown = false;

function fork() {
    const w = cluster.fork();
    const ready = new Promise((resolve, reject) => {
        w.on('message', (m) => m === 'ready' && resolve(w));
        w.once('exit', () => reject(new Error(`worker ${w.process.pid} exited before ready`)));
    });
    ready.catch(() => {});
    return { w, ready };
}

function retire(w) {
    retiring.add(w);
    return new Promise((resolve) => {
        if (w.isDead()) return resolve();
        const timer = setTimeout(() => w.process.kill('SIGKILL'), STOP_TIMEOUT_MS);
        w.once('exit', () => {
            clearTimeout(timer);
            resolve();
        });
        w.send('shutdown');
    });
}

cluster.on('exit', (w) => {
    if (retiring.has(w) || shuttingDown) return;
    fork(); // kill -9 or a crash: replace it at once
});

let busy = Promise.resolve();
process.on('SIGHUP', () => {
    busy = busy.then(async () => {
        const t0 = now();
        for (const old of Object.values(cluster.workers)) {
            if (retiring.has(old)) continue;
            await fork().ready;
            await retire(old);
        }
        say({ ev: 'reloaded', ms: now() - t0 });
    }).catch((err) => say({ ev: 'reload-failed', message: err.message }));
});
process.on('SIGTERM', () => {
    busy = busy.then(async () => {
        shuttingDown = true;
        await Promise.all(Object.values(cluster.workers).map(retire));
        say({ ev: 'shut-down' });
        process.exit(0);
    });
});

const t0 = now();
Promise.all(Array.from({ length: COUNT }, () => fork().ready)).then(
    () => say({ ev: 'started', ms: now() - t0 }),
    (err) => {
        say({ ev: 'start-failed', message: err.message });
        process.exit(1);
    },
);
