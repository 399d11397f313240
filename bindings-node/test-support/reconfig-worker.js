'use strict';

// A Node worker taking new configs (PROTOCOL.md §5.11), for test/reconfigure.test.js. A config
// with `refuse` is refused with that reason (as an Error); any other is applied after a tick
// (asynchronously, as an app reopening a pool would). With RECONF_NO_LISTENER=1 it has no
// 'reconfigure' listener at all. Message { cmd: 'config' } replies { config } (the one in force).
const { MessageBus } = require('..');

const mb = new MessageBus();
if (process.env.RECONF_NO_LISTENER !== '1') {
    mb.on('reconfigure', (config, ack) => {
        if (config && config.refuse) {
            ack(new Error(config.refuse));
            return;
        }
        setImmediate(() => ack());
    });
}
mb.on('message', (msg) => {
    if (msg && msg.cmd === 'config') mb.sendMessage({ config: mb.meta.config });
});
mb.on('stop', () => mb.sendStopped());
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
});
mb.sendStarted();
