'use strict';

// The baseline: the same worker on Node's own IPC (child_process.fork + process.send).
process.on('message', (msg) => {
    if (msg.cmd === 'ping') {
        process.send({ pong: msg.seq });
    } else if (msg.cmd === 'burst') {
        for (let i = 0; i < msg.n; i++) process.send({ seq: i });
    } else if (msg.cmd === 'quit') {
        process.disconnect();
    }
});
process.send({ ready: true });
