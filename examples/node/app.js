'use strict';

// The functional context of every example: an HTTP server behind drover's MessageBus.
// Once the MessageBus exists, server.listen(PORT) gets the master's shared socket for that
// address (as in Node's cluster): every worker listens on the same port, and the socket stays
// open in the master through restarts and reloads, so no client is ever refused.
const http = require('node:http');
const { MessageBus, drain } = require('../../bindings-node');

const mb = new MessageBus();

const server = http.createServer((req, res) => {
    res.end(`${process.env.RESPONSE || 'hello'} from pid ${process.pid}\n`);
});

mb.on('stop', async () => {
    // Stop accepting (other workers take the new connections), answer what is in flight with
    // `Connection: close`, close idle keep-alive connections only when no request can race.
    await drain(server, { timeout: 10000 });
    mb.sendStopped();
});

mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close(); // nothing is left to keep the process alive: it exits by itself
});

// Loopback only for the examples; `server.listen(PORT)` shares every interface the same way.
server.listen(Number(process.env.PORT || 2000), '127.0.0.1', mb.sendStarted);
