'use strict';

// A Node master process for shared-state.test.js: one worker (stuck-worker.js); prints
// "started <master pid> <worker pid>", and shuts down on SIGTERM. The test stops it (SIGSTOP) to
// play a master that never answers.
const path = require('node:path');
const { MasterFactory } = require('..');

const master = MasterFactory.create({ script: path.join(__dirname, 'stuck-worker.js'), count: 1, signals: false });
(async () => {
    await master.start();
    console.log(`started ${process.pid} ${master.getWorkers()[0].pid}`);
    process.on('SIGTERM', () => {
        master.hardShutdown().then(() => process.exit(0));
    });
})();
