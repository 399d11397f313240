'use strict';

// An HTTP worker for the shared-listening tests: answers every request with its pid, drains on
// stop. HTTP_LISTEN says how it listens:
//   port         server.listen(PORT)                    (transparent: the master's shared socket)
//   host         server.listen(PORT, '127.0.0.1')       (the same, one interface)
//   fds          server.listen({ fd }) on the socket the master declared (LISTEN_FDS, systemd style)
//   passthrough  a Unix path and an exclusive port: Node's own listen, nothing asked of the master
// A request to /slow?ms=N answers after N ms. Messages: { cmd: 'drain-stats' }.
// HTTP_BUS_FIRST=1: see below.
// HTTP_BUS_FIRST=1: the MessageBus is created before node:http is required (so before node:net is
// loaded): server.listen must still reach the master.
const path = require('node:path');
const os = require('node:os');
const { MessageBus, drain, listenFds } = require('..');

const busFirst = process.env.HTTP_BUS_FIRST === '1' ? new MessageBus() : null;
const http = require('node:http');
const mb = busFirst || new MessageBus();
const server = http.createServer((req, res) => {
    const slow = /^\/slow\?ms=(\d+)/.exec(req.url);
    const answer = () => res.end(String(process.pid));
    if (slow) setTimeout(answer, Number(slow[1]));
    else answer();
});

mb.on('stop', async () => {
    const stats = await drain(server, { timeout: 5000 });
    mb.sendMessage({ drained: stats, pid: process.pid });
    mb.sendStopped();
});
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
});

const ready = () => {
    mb.sendMessage({ listening: server.address(), pid: process.pid });
    mb.sendStarted();
};

const mode = process.env.HTTP_LISTEN || 'port';
const port = Number(process.env.PORT || 0);
if (mode === 'port') {
    server.listen(port, ready);
} else if (mode === 'host') {
    server.on('error', (err) => {
        const { message, code, errno, syscall, address } = err;
        mb.sendMessage({ listenError: { name: err.name, message, code, errno, syscall, address, port: err.port } });
        mb.sendStarted();
    });
    server.listen(port, '127.0.0.1', ready);
} else if (mode === 'fds') {
    const [socket] = listenFds();
    server.listen({ fd: socket.fd }, () => {
        mb.sendMessage({ fdName: socket.name });
        ready();
    });
} else if (mode === 'passthrough') {
    const pipe = path.join(os.tmpdir(), `drover-http-worker-${process.pid}.sock`);
    const own = http.createServer((req, res) => res.end('own'));
    own.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
        server.listen(pipe, () => {
            mb.sendMessage({ pipe: server.address(), own: own.address() });
            mb.sendStarted();
        });
    });
    mb.on('stop', () => own.close());
}
