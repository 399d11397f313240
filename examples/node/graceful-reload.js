'use strict';

// Usage: graceful reload — every worker replaced (new generation first, then the old one drains
// and ends) while a client keeps sending requests on keep-alive connections: none fails.
const path = require('node:path');
const { MasterFactory } = require('../../bindings-node');
const http = require('node:http');
const { get, printStatuses, sleep } = require('./common');

const PORT = 2500;
const master = MasterFactory.create({ script: path.join(__dirname, 'app.js'), count: 2, env: { PORT }, name: 'app' });
process.on('SIGINT', () => master.gracefulShutdown());

// A client sending requests back to back over 8 keep-alive connections to the one shared port.
// The old workers drain (their next answer says `Connection: close`), new connections go to
// the new workers, and the master's socket never closes: no request fails.
async function client(stop) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    let ok = 0;
    let failed = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
        while (!stop.done) {
            try {
                await get(PORT, agent);
                ok++;
            } catch {
                failed++;
            }
        }
    }));
    agent.destroy();
    return { ok, failed };
}

(async () => {
    await master.start();
    const before = master.getWorkers().map((w) => `${w.id}:${w.pid}`);
    const stop = { done: false };
    const requests = client(stop);
    await sleep(200);
    await master.gracefulReload();
    await sleep(200);
    stop.done = true;
    console.log(`reloaded: ${before.join(' ')} -> ${master.getWorkers().map((w) => `${w.id}:${w.pid}`).join(' ')}`);
    const { ok, failed } = await requests;
    console.log(`${ok} requests served around the reload, ${failed} failed`);
    printStatuses(master);
    await master.gracefulShutdown();
})().catch((err) => {
    console.error(err);
    process.exitCode = 1;
    return master.hardShutdown();
});
