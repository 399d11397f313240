'use strict';

// Usage 2: several apps in one main process — three masters, started in parallel, each with its
// own port shared by its workers.
const path = require('node:path');
const { MasterFactory } = require('../../bindings-node');
const { get, printStatuses } = require('./common');

const app = path.join(__dirname, 'app.js');
const masters = {
    foo: MasterFactory.create({ name: 'foo', script: app, count: 2, env: { PORT: 2100, RESPONSE: 'multi-app-cluster foo' } }),
    bar: MasterFactory.create({ name: 'bar', script: app, count: 2, env: { PORT: 2200, RESPONSE: 'multi-app-cluster bar' } }),
    baz: MasterFactory.create({ name: 'baz', script: app, count: 4, env: { PORT: 2300, RESPONSE: 'multi-app-cluster baz' } }),
};

for (const [name, master] of Object.entries(masters)) {
    master.on('worker-exit', (reason, id) => console.log(`[${name}] worker ${id} exited: ${reason.constructor.name}`));
}

const shutdown = () => Promise.all(Object.values(masters).map((m) => m.gracefulShutdown()));
process.on('SIGINT', shutdown);

(async () => {
    await Promise.all(Object.values(masters).map((m) => m.start()));
    for (const master of Object.values(masters)) printStatuses(master);
    console.log(await get(2100), '|', await get(2200), '|', await get(2300));
    await shutdown();
    console.log('all masters shut down');
})().catch((err) => {
    console.error(err);
    process.exitCode = 1;
    return Promise.all(Object.values(masters).map((m) => m.hardShutdown()));
});
