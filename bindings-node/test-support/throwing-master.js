'use strict';

// A Node master whose 'message' listener throws once: the error must reach 'uncaughtException'
// (as a throwing listener of any Node stream's event does), and the master must go on working.
const path = require('node:path');
const { MasterFactory } = require('..');

const master = MasterFactory.create({ script: path.join(__dirname, 'worker.js'), count: 1 });
process.on('uncaughtException', (e) => {
    console.log(`uncaught: ${e.message}`);
    master.send(1, { n: 2 });
});
master.on('message', (m) => {
    if (m.echo && m.echo.n === 1) throw new Error('the listener threw');
    if (m.echo && m.echo.n === 2) {
        console.log('the next message arrived');
        master.gracefulShutdown().then(() => console.log('shut down'));
    }
});
master.start().then(() => master.send(1, { n: 1 }));
