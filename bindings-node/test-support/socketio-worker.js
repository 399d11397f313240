'use strict';

// A socket.io server in a drover worker, long-polling only, for the sticky-session test: the
// event 'whoami' is answered with this worker's pid. On stop it closes every client (they
// reconnect elsewhere) and its server.
const http = require('node:http');
const { Server } = require('socket.io');
const { MessageBus } = require('..');

const mb = new MessageBus();
const server = http.createServer();
const io = new Server(server, { transports: ['polling'] });
io.on('connection', (socket) => {
    socket.on('whoami', (ack) => {
        if (typeof ack === 'function') ack(process.pid);
    });
});
// A poll that reaches a worker that does not know its session: what sticky sessions prevent.
io.engine.on('connection_error', (err) => {
    mb.sendMessage({ connectionError: err.message, pid: process.pid });
});

mb.on('stop', () => {
    io.close(() => mb.sendStopped());
});
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
});
server.listen(Number(process.env.PORT || 0), () => mb.sendStarted());
