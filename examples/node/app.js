'use strict';

// The functional context of every example: an HTTP server behind drover's MessageBus.
// Node 20 has no SO_REUSEPORT, so each worker listens on PORT + its worker id.
const http = require('node:http');
const { MessageBus } = require('../../bindings-node');

const port = Number(process.env.PORT || 2000) + Number(process.env.DROVER_WORKER_ID);
const mb = new MessageBus();

const server = http.createServer((req, res) => {
    res.end(`${process.env.RESPONSE || 'hello'} from pid ${process.pid}\n`);
});

mb.on('stop', () => {
    server.close(mb.sendStopped);
});

mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close(); // nothing is left to keep the process alive: it exits by itself
});

server.listen(port, '127.0.0.1', mb.sendStarted);
