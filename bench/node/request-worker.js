'use strict';

// The worker side of bench/node/requests.js: answers `echo` requests and pings, and on command
// times its own requests (to the master's JS handler, to another worker) and reports them.
const { MessageBus } = require('../../bindings-node');
const { timed } = require('./timing');

const mb = new MessageBus();
mb.handle('echo', (args) => args);

mb.on('message', async (msg) => {
    if (msg.cmd === 'ping') {
        mb.sendMessage({ pong: msg.seq });
    } else if (msg.cmd === 'time-requests') {
        await timed(msg.warmup, (i) => mb.request(msg.to, 'echo', { seq: i }));
        const ns = await timed(msg.n, (i) => mb.request(msg.to, 'echo', { seq: i }));
        mb.sendMessage({ timed: msg.to, ns });
    }
});
mb.on('stop', mb.sendStopped);
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
});
mb.sendStarted();
