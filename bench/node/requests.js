'use strict';

// Request/response round trips in the Node face (issue 18), p50/p99, against a plain message
// round trip over the same channel (master send → worker's reply → master 'message' event), the
// nearest peer in the same run:
// - master → worker request (`master.request(1, 'echo')`, the worker's JS handler answers);
// - worker → master request (the master's JS handler answers), timed in the worker;
// - worker → worker request, routed by the master, timed in the asking worker.
// Usage: node bench/node/requests.js [rounds]   (DROVER_NODE_ADDON picks a release addon)
const path = require('node:path');
const { MasterFactory } = require('../../bindings-node');
const { timed } = require('./timing');

const ROUNDS = Number(process.argv[2] || 5000);
const WARMUP = 1000;

function summary(name, ns) {
    const us = ns.map((v) => v / 1000).sort((a, b) => a - b);
    const at = (p) => us[Math.min(us.length - 1, Math.floor((p / 100) * us.length))].toFixed(1);
    return { name, p50_us: +at(50), p99_us: +at(99), rounds: us.length };
}

async function main() {
    const master = MasterFactory.create({ script: path.join(__dirname, 'request-worker.js'), count: 2 });
    master.handle('echo', (args) => args);
    await master.start();
    const ping = (seq) => new Promise((resolve) => {
        const listener = (m, id) => {
            if (id === 1 && m.pong === seq) {
                master.off('message', listener);
                resolve();
            }
        };
        master.on('message', listener);
        master.send(1, { cmd: 'ping', seq });
    });
    const workerTimes = (to) => new Promise((resolve) => {
        const listener = (m, id) => {
            if (id === 1 && m.timed === to) {
                master.off('message', listener);
                resolve(m.ns);
            }
        };
        master.on('message', listener);
        master.send(1, { cmd: 'time-requests', to, n: ROUNDS, warmup: WARMUP });
    });
    const rows = [];
    await timed(WARMUP, ping);
    rows.push(summary('message round trip master → worker → master (peer)', await timed(ROUNDS, ping)));
    await timed(WARMUP, (i) => master.request(1, 'echo', { seq: i }));
    rows.push(summary('request master → worker (JS handler)', await timed(ROUNDS, (i) => master.request(1, 'echo', { seq: i }))));
    rows.push(summary('request worker → master (JS handler)', await workerTimes('master')));
    rows.push(summary('request worker → master → worker (JS handler)', await workerTimes('worker:2')));
    console.table(rows);
    await master.gracefulShutdown();
}

main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
});
