'use strict';

// Usage: graceful reload — every worker replaced (new generation first, then the old one ends)
// while a client keeps sending requests: none fails.
const path = require('node:path');
const { MasterFactory } = require('../../bindings-node');
const { get, printStatuses } = require('./common');

const PORT = 2500;
const master = MasterFactory.create({ script: path.join(__dirname, 'app.js'), count: 2, env: { PORT }, name: 'app' });
process.on('SIGINT', () => master.gracefulShutdown());

// A client that asks a worker that is STARTED (each worker has its own port here, with no load
// balancer in front: a request that races a worker's stop is retried on a current one).
async function client(stop) {
    let ok = 0;
    let retried = 0;
    while (!stop.done) {
        const started = master.getWorkers().filter((w) => w.status === 3);
        if (!started.length) throw new Error('no STARTED worker during the reload');
        try {
            await get(PORT + started[ok % started.length].id);
            ok++;
        } catch {
            retried++;
        }
    }
    return { ok, retried };
}

(async () => {
    await master.start();
    const before = master.getWorkers().map((w) => `${w.id}:${w.pid}`);
    const stop = { done: false };
    const requests = client(stop);
    await master.gracefulReload();
    stop.done = true;
    console.log(`reloaded: ${before.join(' ')} -> ${master.getWorkers().map((w) => `${w.id}:${w.pid}`).join(' ')}`);
    const { ok, retried } = await requests;
    console.log(`${ok} requests served during the reload (${retried} raced a stopping worker and were retried)`);
    printStatuses(master);
    await master.gracefulShutdown();
})().catch((err) => {
    console.error(err);
    process.exitCode = 1;
    return master.hardShutdown();
});
