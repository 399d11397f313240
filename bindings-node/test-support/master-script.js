'use strict';

// A Node master process for the hygiene tests. MASTER_MODE:
//   shutdown  start, print the pids, gracefulShutdown, then nothing: the process must exit by itself
//   idle      create a master and never start it: nothing keeps the process alive
//   serve     start, print "started <pids>", shut down gracefully on SIGTERM
const { MasterFactory } = require('..');

// signals: false — this app handles SIGTERM itself (drover 1.0's default would too, and reject its call).
const master = MasterFactory.create({ script: require('node:path').join(__dirname, 'worker.js'), count: 2, signals: false });
const mode = process.env.MASTER_MODE;

(async () => {
    if (mode === 'idle') return;
    await master.start();
    console.log(`started ${master.getWorkers().map((w) => w.pid).join(',')}`);
    if (mode === 'serve') {
        process.on('SIGTERM', () => {
            master.gracefulShutdown().then(() => console.log('shut down'));
        });
        return;
    }
    await master.gracefulShutdown();
    console.log('shut down');
})();
