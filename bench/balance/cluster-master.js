'use strict';

// Node's own `cluster` with 4 workers: SCHEDULING=rr (Node's default on Linux: the primary
// accepts and hands connections round-robin) or none (every worker accepts on the shared socket).
const cluster = require('node:cluster');
const path = require('node:path');

cluster.schedulingPolicy = process.env.SCHEDULING === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR;
cluster.setupPrimary({ exec: path.join(__dirname, 'app.js') });
const workers = Array.from({ length: 4 }, () => cluster.fork());
Promise.all(workers.map((w) => new Promise((r) => w.on('message', (m) => m === 'ready' && r())))).then(() => {
    process.stdout.write('ready\n');
});
process.on('SIGTERM', () => {
    for (const w of workers) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 500);
});
