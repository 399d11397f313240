'use strict';

// Shared state held by the master (clusterfy's storage, cluster2's cache and status registry):
// workers read what the master stored, load an expensive value once for all of them, publish an
// application status and answer status functions. One file: the master runs it again as each of
// its workers (DROVER_IPC_FD is set there).
const { MasterFactory, MessageBus } = require('../../bindings-node');

if (process.env.DROVER_IPC_FD) {
    const mb = new MessageBus();
    const id = Number(process.env.DROVER_WORKER_ID);
    mb.registerStatus('uptime', () => ({ worker: id, up: process.uptime() > 0 }));
    mb.on('message', async ({ cmd }) => {
        if (cmd !== 'work') return;
        const greeting = await mb.store.get('config.greeting');
        // Every worker asks at once; one of them runs the loader, the others get its value.
        const answer = await mb.cache.getOrLoad('answer', async () => {
            mb.sendMessage({ loading: id });
            await new Promise((resolve) => setTimeout(resolve, 200)); // something slow
            return 42;
        });
        await mb.setAppStatus('DONE', { answers: 1 });
        mb.sendMessage({ greeting, answer });
    });
    mb.on('stop', () => mb.sendStopped());
    mb.on('quit', () => mb.sendShuttedDown().then(() => mb.close()));
    mb.sendStarted();
} else {
    const master = MasterFactory.create({ script: __filename, count: 3, name: 'shared' });
    (async () => {
        await master.start();
        await master.store.set('config.greeting', 'hello');
        let loads = 0;
        const answers = [];
        const done = new Promise((resolve) => {
            master.on('message', (m) => {
                if (m.loading) loads += 1;
                if (m.answer !== undefined) answers.push(m);
                if (answers.length === 3) resolve();
            });
        });
        for (const w of master.getWorkers()) await master.send(w.id, { cmd: 'work' });
        await done;
        console.log(`answers: ${answers.map((a) => `${a.greeting} ${a.answer}`).join(', ')}; loaded ${loads} time(s)`);
        console.log('app status:', master.getWorkers().map((w) => `${w.id} ${w.appStatus}`).join(', '));
        const statuses = await master.gatherStatuses({ timeout: 5000 });
        console.log('status functions:', Object.keys(statuses).map((id) => statuses[id].uptime.worker).join(' '));
        await master.gracefulShutdown();
    })().catch((err) => {
        console.error(err);
        process.exitCode = 1;
        return master.hardShutdown();
    });
}
