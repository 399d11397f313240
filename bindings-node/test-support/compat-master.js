'use strict';

// A Node master written for drover 1.0, for the compatibility tests. COMPAT_MODE:
//   signals           two masters with 1.0's default signals (SIGHUP reload, SIGTERM shutdown) and
//                     an app listener of its own for SIGHUP; prints what happens
//   no-signals        one master with `signals: false`: SIGHUP does what it does without drover
//   die-during-start  workers that exit before STARTED, under drover 1.0's README exit handler
const { MasterFactory, ExitReasons } = require('..');
const { nodeWorker } = require('./helpers');

const mode = process.env.COMPAT_MODE;
const log = (line) => console.log(line);

function oneZeroHandler(master) {
    // drover 1.0's README handler, as every 1.0 user copied it.
    master.on('worker-exit', async (reason, workerId) => {
        log(`worker-exit ${reason.constructor.name} ${JSON.stringify(reason.payload)}`);
        if (reason instanceof ExitReasons.ExternalSignal || reason instanceof ExitReasons.AbnormalExit) {
            await master.restartWorkerById(workerId);
        } else {
            await master.hardShutdown();
        }
    });
}

(async () => {
    if (mode === 'die-during-start') {
        const master = MasterFactory.create({ script: nodeWorker, count: 2, env: { NODE_WORKER_MODE: 'exit-before-start:3' } });
        oneZeroHandler(master);
        try {
            await master.start();
        } catch (err) {
            log(`start failed: ${err.name}`);
        }
        return;
    }
    const names = mode === 'signals' ? ['a', 'b'] : ['a'];
    const masters = names.map((name) => {
        const master = MasterFactory.create({ script: nodeWorker, count: 1, name, ...(mode === 'no-signals' ? { signals: false } : {}) });
        oneZeroHandler(master);
        master.on('status', (to) => log(`${name} ${to}`));
        return master;
    });
    if (mode === 'signals') {
        process.on('SIGHUP', () => log('app SIGHUP listener'));
    }
    await Promise.all(masters.map((m) => m.start()));
    log(`started ${masters.flatMap((m) => m.getWorkers().map((w) => w.pid)).join(',')}`);
    // Keeps the process alive on its own, as the examples' health check does.
    setInterval(() => log(`pids ${masters.flatMap((m) => m.getWorkers().map((w) => w.pid)).join(',')}`), 200);
})();
