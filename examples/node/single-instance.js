'use strict';

// Usage 3: a single app instance (count 1). A reload still has zero downtime: the new instance
// is STARTED before the old one is shut down.
const path = require('node:path');
const { MasterFactory } = require('../../bindings-node');
const { printStatuses } = require('./common');

const master = MasterFactory.create({ script: path.join(__dirname, 'app.js'), count: 1, env: { PORT: 2600 }, name: 'app' });
process.on('SIGINT', () => master.gracefulShutdown());

const log = [];
master.on('worker-status', (id, to) => {
    if (to === 3) log.push(`worker ${id} STARTED`);
});
master.on('worker-exit', (reason, id) => log.push(`worker ${id} exited`));

(async () => {
    await master.start();
    printStatuses(master);
    await master.gracefulReload();
    console.log(log.join('\n')); // worker 2 STARTED comes before worker 1 exited
    printStatuses(master);
    await master.gracefulShutdown();
})().catch((err) => {
    console.error(err);
    process.exitCode = 1;
    return master.hardShutdown();
});
