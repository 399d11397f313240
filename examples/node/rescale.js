'use strict';

// Usage: runtime rescaling — 2 workers, up to 4, down to 1.
const path = require('node:path');
const { MasterFactory } = require('../../bindings-node');
const { printStatuses } = require('./common');

const master = MasterFactory.create({ script: path.join(__dirname, 'app.js'), count: 2, env: { PORT: 2400 }, name: 'app' });
process.on('SIGINT', () => master.gracefulShutdown());

(async () => {
    await master.start();
    printStatuses(master);
    await master.rescale(4);
    console.log('rescaled to 4');
    printStatuses(master);
    await master.rescale(1);
    console.log('rescaled to 1; worker ids left:', master.getWorkers().map((w) => w.id).join(','));
    printStatuses(master);
    await master.gracefulShutdown();
})().catch((err) => {
    console.error(err);
    process.exitCode = 1;
    return master.hardShutdown();
});
