'use strict';

// The drover side of the benchmark: answers pings, sends bursts, or just idles (for RSS).
const { MessageBus } = require('../../bindings-node');

const mb = new MessageBus();
mb.on('message', (msg) => {
    if (msg.cmd === 'ping') {
        mb.sendMessage({ pong: msg.seq });
    } else if (msg.cmd === 'burst') {
        for (let i = 0; i < msg.n; i++) mb.sendMessage({ seq: i });
    }
});
mb.on('stop', mb.sendStopped);
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
});
mb.sendStarted();
