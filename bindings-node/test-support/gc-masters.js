'use strict';

// Run with --expose-gc. Masters the app dropped: an idle one (never started, or shut down) is
// collected; a supervising one is not, and its workers keep running. Prints one JSON line:
// { collected, total, supervising: { pids, collected } }, then exits (the supervising master's
// workers go with this process).
const { MasterFactory } = require('..');
const { nodeWorker, isAlive } = require('./helpers');

const finalized = new Set();
const registry = new FinalizationRegistry((label) => finalized.add(label));

async function idleMasters(n) {
    for (let i = 0; i < n; i++) {
        const master = MasterFactory.create({ script: nodeWorker, count: 1 });
        registry.register(master, `idle-${i}`);
        if (i % 2 === 1) {
            await master.start();
            await master.gracefulShutdown();
        }
    }
}

async function supervising() {
    const master = MasterFactory.create({ script: nodeWorker, count: 2 });
    registry.register(master, 'supervising');
    await master.start();
    return master.getWorkers().map((w) => w.pid);
}

async function collect() {
    for (let i = 0; i < 10; i++) {
        global.gc();
        await new Promise((r) => setTimeout(r, 20));
    }
}

(async () => {
    const total = 10;
    await idleMasters(total);
    const pids = await supervising();
    await collect();
    const collected = [...finalized].filter((l) => l.startsWith('idle-')).length;
    const alive = pids.filter(isAlive);
    console.log(JSON.stringify({ collected, total, supervising: { pids, alive, collected: finalized.has('supervising') } }));
    process.exit(0);
})().catch((e) => {
    console.error(e);
    process.exit(1);
});
