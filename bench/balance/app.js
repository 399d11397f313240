'use strict';

// The app every contender runs: 4 copies answer GET / with "ok" and count what they answered.
// Each writes its count to $COUNT_DIR/<pid> every 100 ms and at exit, so the bench reads the
// share per worker the same way for every master. Under drover it creates its MessageBus first
// (server.listen(PORT) then reaches the master); under Node's cluster, cluster does that.
const fs = require('node:fs');
const path = require('node:path');

const bus = process.env.DROVER_IPC_FD ? new (require(process.env.DROVER_PACKAGE).MessageBus)() : null;
const http = require('node:http');

let count = 0;
const file = path.join(process.env.COUNT_DIR, String(process.pid));
const save = () => fs.writeFileSync(file, String(count));
setInterval(save, 100).unref();

const server = http.createServer((req, res) => {
    count++;
    res.end('ok');
});
server.keepAliveTimeout = 30000;
server.listen(Number(process.env.PORT), () => {
    if (bus) bus.sendStarted();
    else if (process.send) process.send('ready');
});
const quit = () => {
    save();
    process.exit(0);
};
if (bus) {
    bus.on('stop', () => server.close(() => bus.sendStopped()));
    bus.on('quit', () => {
        save();
        bus.sendShuttedDown();
        bus.close();
        setImmediate(quit);
    });
}
process.on('SIGTERM', quit);
process.on('disconnect', quit);
