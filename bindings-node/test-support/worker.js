'use strict';

// A Node worker for the tests: a TCP server behind drover's MessageBus, misbehaving on demand.
// NODE_WORKER_MODE: normal | exit-before-start:<code> | never-start | ignore-stop | block-after-start
// Messages ({ cmd }): echo (replies { echo: data }), exit (code), pid, env (name), block (ms),
// burst (n), ping (replies { pong: seq } — the benchmark's), send-returns, signal-self (SIGTERM and
// SIGINT to itself, then { survived: true }).
const net = require('node:net');
const { MessageBus } = require('..');

const [mode, arg] = (process.env.NODE_WORKER_MODE || 'normal').split(':');
const mb = new MessageBus();

const server = net.createServer((socket) => socket.end(`hello from ${process.pid}\n`));

mb.on('stop', () => {
    if (mode === 'ignore-stop') return;
    server.close(mb.sendStopped);
});

mb.on('quit', () => {
    if (mode === 'ignore-stop') return;
    mb.sendShuttedDown();
    // Exit by ourselves: no server, no bus, nothing keeps the loop alive.
    mb.close();
});

mb.on('message', (msg) => {
    switch (msg && msg.cmd) {
        case 'exit':
            process.exit(msg.code);
            break;
        case 'pid':
            mb.sendMessage({ pid: process.pid });
            break;
        case 'env':
            mb.sendMessage({ env: process.env[msg.name] === undefined ? null : process.env[msg.name] });
            break;
        case 'block': {
            const until = Date.now() + msg.ms;
            while (Date.now() < until) { /* a blocked event loop */ }
            break;
        }
        case 'burst':
            for (let i = 0; i < msg.n; i++) mb.sendMessage({ seq: i });
            break;
        case 'ping':
            mb.sendMessage({ pong: msg.seq });
            break;
        case 'send-returns': {
            // drover 1.0's sends return promises.
            const sent = mb.sendMessage({ probe: true });
            const status = mb.sendStarted();
            mb.sendMessage({ sendReturnsPromise: sent instanceof Promise, statusReturnsPromise: status instanceof Promise });
            break;
        }
        case 'signal-self':
            // With a default disposition the process would end inside kill(), before the reply.
            process.kill(process.pid, 'SIGTERM');
            process.kill(process.pid, 'SIGINT');
            setTimeout(() => mb.sendMessage({ survived: true }), 50);
            break;
        default:
            mb.sendMessage({ echo: msg });
    }
});

if (mode === 'exit-before-start') {
    process.exit(Number(arg));
} else if (mode !== 'never-start') {
    server.listen(0, '127.0.0.1', mb.sendStarted);
}
