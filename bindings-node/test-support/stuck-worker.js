'use strict';

// The worker of stuck-master.js: on SIGUSR2 it asks its master's handler `never` (timeout 300 ms)
// and writes how that ended, { code, message, ms }, to the file STUCK_OUT names.
const fs = require('node:fs');
const { MessageBus } = require('..');

const mb = new MessageBus();
process.on('SIGUSR2', () => {
    const t0 = Date.now();
    mb.request('master', 'never', null, { timeout: 300 }).then(
        (result) => fs.writeFileSync(process.env.STUCK_OUT, JSON.stringify({ result, ms: Date.now() - t0 })),
        (e) => fs.writeFileSync(process.env.STUCK_OUT, JSON.stringify({ name: e.name, code: e.code, message: e.message, ms: Date.now() - t0 })),
    );
});
mb.on('stop', () => mb.sendStopped());
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
});
mb.sendStarted();
