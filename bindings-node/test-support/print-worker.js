'use strict';

// A worker that writes one line to stdout and one to stderr, then reports STARTED.
const { MessageBus } = require('..');

const mb = new MessageBus();
console.log(`worker ${process.pid} to stdout`);
console.error(`worker ${process.pid} to stderr`);
mb.on('stop', () => mb.sendStopped());
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
});
mb.sendStarted();
