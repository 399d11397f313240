'use strict';

// Sends before the handshake can have completed: they must arrive, in order.
const { MessageBus } = require('..');

const mb = new MessageBus();
mb.sendMessage({ early: 1 });
mb.sendStarted();
mb.sendMessage({ early: 2 });
mb.on('stop', mb.sendStopped);
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
    mb.close();
});
