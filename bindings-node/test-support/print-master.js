'use strict';

// A Node master whose workers print (print-worker.js): starts 2, prints their pids, shuts down.
const path = require('node:path');
const { MasterFactory } = require('..');

const master = MasterFactory.create({ script: path.join(__dirname, 'print-worker.js'), count: 2, signals: false });
(async () => {
    await master.start();
    console.log(`master started ${master.getWorkers().map((w) => w.pid).join(',')}`);
    await master.gracefulShutdown();
    console.log('master shut down');
})();
