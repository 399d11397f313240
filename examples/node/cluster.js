'use strict';

// Usage 1: a single app in cluster mode — 4 instances of app.js on one port (the master holds the
// socket, every worker accepts on it), restarted when killed. Runs a few seconds, kills one worker
// to show the restart (the port never stops answering), then shuts down gracefully.
const path = require('node:path');
const { MasterFactory, ExitReasons } = require('../../bindings-node');
const { get, printStatuses, sleep } = require('./common');

const PORT = 1934;
const master = MasterFactory.create({
    script: path.join(__dirname, 'app.js'),
    count: 4,
    env: { PORT },
});

const quit = async (code, signal, force = false) => {
    try {
        if (force) {
            await master.hardShutdown();
        } else {
            await master.gracefulShutdown();
        }
    } catch (err) {
        console.error(err);
    }
};

master.on('worker-exit', async (reason, workerId) => {
    console.log(`worker ${workerId} exited: ${reason.constructor.name} ${JSON.stringify(reason.payload)}`);
    if (master.getStatusName() !== 'STARTED') return; // a shutdown is ending it
    if (reason instanceof ExitReasons.ExternalSignal || reason instanceof ExitReasons.AbnormalExit) {
        await master.restartWorkerById(workerId);
        console.log(`worker ${workerId} restarted`);
    } else {
        const { code, signal } = reason.payload;
        await quit(code, signal, true);
    }
});

process.on('SIGINT', () => quit());

const run = async () => {
    await master.start();
    // Here all 4 instances did their bootstrap (their servers listen).
    printStatuses(master, 'app');
    console.log(`one port for all: ${master.getListeningSockets().map((l) => l.local).join(', ')}`);
    for (let i = 0; i < 4; i++) console.log(await get(PORT));
    const victim = master.getWorkers()[1];
    console.log(`kill -9 ${victim.pid}`);
    const restarted = new Promise((resolve) => master.on('worker-status', (id, to) => id === victim.id && to === 3 && resolve()));
    process.kill(victim.pid, 'SIGKILL');
    // Meanwhile the port keeps answering: the other workers accept on the same socket.
    console.log(`during the restart: ${await get(PORT)}`);
    await restarted;
    await sleep(100);
    printStatuses(master, 'app');
    await quit();
    console.log(`master ${master.getStatusName()}; exiting by itself`);
};

run().catch((err) => {
    console.error(err);
    process.exitCode = 1;
    return master.hardShutdown();
});
