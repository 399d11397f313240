'use strict';

// A worker that never listens: reports whether node:net got loaded (it should not be: drover loads
// it only for server.listen, drain and listenFds), then idles until stopped.
const { MessageBus } = require('..');

const mb = new MessageBus();
mb.on('stop', () => mb.sendStopped());
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
});
mb.sendStarted();
mb.sendMessage({ netLoaded: process.moduleLoadList.includes('NativeModule net') });
