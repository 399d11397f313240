'use strict';

// Requests and messages between processes, routed by the master: the master and its workers
// answer requests by name, and workers call each other. One file: the master runs it again as
// each of its workers (DROVER_IPC_FD is set there).
const { MasterFactory, MessageBus, RequestError } = require('../../bindings-node');

if (process.env.DROVER_IPC_FD) {
    // A worker: answers `square`, says who asked, and passes messages from other workers on.
    const mb = new MessageBus();
    const id = Number(process.env.DROVER_WORKER_ID);
    mb.handle('square', (n, from) => ({ square: n * n, by: id, askedBy: from }));
    mb.on('worker-message', (data, from) => mb.sendMessage({ [`from ${from}`]: data }));
    mb.on('message', async ({ cmd }) => {
        if (cmd === 'ask-others') {
            const answers = await mb.request('all', 'square', id); // every other worker
            const total = await mb.request('master', 'sum', answers.map((a) => a.result.square));
            await mb.sendTo({ worker: 1 }, `total ${total}`);
        }
    });
    mb.on('stop', () => mb.sendStopped());
    mb.on('quit', () => mb.sendShuttedDown().then(() => mb.close()));
    mb.sendStarted();
} else {
    const master = MasterFactory.create({ script: __filename, count: 3, name: 'squares' });
    master.handle('sum', (numbers) => numbers.reduce((a, b) => a + b, 0));
    master.on('message', (data, id) => console.log(`worker ${id} says`, data));
    (async () => {
        await master.start();
        console.log('worker 2:', await master.request('worker:2', 'square', 7));
        console.log('any:', await master.request('any', 'square', 3));
        await master.request('worker:9', 'square', 1).catch((e) => {
            if (e instanceof RequestError) console.log(`worker 9: ${e.code}`); // no_such_target
        });
        const relayed = new Promise((resolve) => master.once('message', resolve));
        await master.send(3, { cmd: 'ask-others' });
        await relayed;
        await master.gracefulShutdown();
    })().catch((err) => {
        console.error(err);
        process.exitCode = 1;
        return master.hardShutdown();
    });
}
