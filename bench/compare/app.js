'use strict';

// The one small HTTP app every contender runs (bench/compare/README.md). It boots for BOOT_MS
// (200 ms, a timer: simulated bootstrap), listens, then reports ready in its supervisor's own way:
//
//   - drover (Node master, `ready: message`): the MessageBus — `sendStarted()`, `stop` → drain →
//     `sendStopped()`, `quit` → `sendShuttedDown()`, close the bus, exit by itself;
//   - PM2 cluster mode, Node `cluster`, drover CLI with `--ready node-ipc`: `process.send('ready')`,
//     and the message 'shutdown' (or SIGINT) → drain → exit 0.
//
// The listening socket: under a drover master with `listen`, the inherited fd 3 (LISTEN_FDS,
// systemd-style); under PM2 and `cluster`, `server.listen(PORT)`, which Node's cluster shares.
//
// BENCH_STOP picks the stop handler: `drain` (default) or `close` (the common idiom:
// `server.close()` then exit, which resets a request racing on an idle keep-alive connection and
// waits for busy ones to go idle). Every boot, ready, stop and exit is appended to BENCH_EVENTS
// as one JSON line with a wall-clock time in ms (sub-ms), so the harness times every supervisor
// the same way, from the workers' side.
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');

const now = () => performance.timeOrigin + performance.now();
const EVENTS = process.env.BENCH_EVENTS;
function log(ev, extra) {
    if (!EVENTS) return;
    try {
        fs.appendFileSync(EVENTS, `${JSON.stringify({ ev, pid: process.pid, t: now(), ...extra })}\n`);
    } catch {
        // the harness is gone: nothing to report to
    }
}
log('boot', { origin: performance.timeOrigin });

const PORT = Number(process.env.PORT || 3000);
const BOOT_MS = Number(process.env.BOOT_MS || 200);
const STOP = process.env.BENCH_STOP || 'drain';
const DRAIN_TIMEOUT_MS = Number(process.env.DRAIN_TIMEOUT_MS || 4000);

let draining = false;
const server = http.createServer((req, res) => {
    // While draining, every response closes its connection: the client reconnects, and the
    // shared listening socket gives the new connection to a worker that is not stopping.
    if (draining) res.setHeader('Connection', 'close');
    res.end(`ok ${process.pid}\n`);
});

// Idle keep-alive connections are the race: a request may be on the wire on one of them.
const connections = new Set();
server.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
});

/**
 * Drain (used until the drover package's `drain` helper is available): stop accepting (the
 * listening socket stays open in the supervisor and the other workers), never close an idle
 * connection by ourselves before the deadline (a request may be racing on it), answer each
 * further request with `Connection: close` (Node then closes the socket after the response),
 * and resolve when the last connection is gone or after `timeout` (then destroy what is left).
 */
function ownDrain(srv, { timeout }) {
    return new Promise((resolve) => {
        draining = true;
        const timer = setTimeout(() => {
            for (const s of connections) s.destroy();
        }, timeout);
        // net.Server's close, not http.Server's: http's also closes idle keep-alive connections.
        net.Server.prototype.close.call(srv, () => {
            clearTimeout(timer);
            resolve();
        });
    });
}

function closeIdiom(srv) {
    return new Promise((resolve) => srv.close(() => resolve()));
}

let droverDrain = null;
function stopServing() {
    log('stop', { mode: STOP === 'close' ? 'close' : droverDrain ? 'drover.drain' : 'own drain' });
    if (STOP === 'close') return closeIdiom(server);
    if (droverDrain) {
        draining = true; // our handler adds Connection: close too; harmless with the helper
        return droverDrain(server, { timeout: DRAIN_TIMEOUT_MS });
    }
    return ownDrain(server, { timeout: DRAIN_TIMEOUT_MS });
}

process.on('exit', () => log('exit'));

const listenOn = () =>
    Number(process.env.LISTEN_PID) === process.pid && Number(process.env.LISTEN_FDS) >= 1
        ? { fd: 3 }
        : { port: PORT, host: '127.0.0.1' };
function bootThen(ready) {
    setTimeout(() => {
        server.listen(listenOn(), () => {
            log('ready', { via: JSON.stringify(listenOn()) });
            ready();
        });
    }, BOOT_MS);
}

if (typeof process.send === 'function') {
    // PM2, Node's cluster, or a drover master reading readiness from the Node IPC channel.
    let stopping = false;
    const shutdown = () => {
        if (stopping) return;
        stopping = true;
        stopServing().then(() => process.exit(0));
    };
    process.on('message', (m) => {
        if (m === 'shutdown' || (m && m.type === 'shutdown')) shutdown();
    });
    process.on('SIGINT', shutdown);
    bootThen(() => process.send('ready'));
} else if (process.env.DROVER_IPC_FD) {
    const drover = require(process.env.DROVER_NODE_PKG || 'drover');
    if (typeof drover.drain === 'function' && process.env.BENCH_OWN_DRAIN !== '1') droverDrain = drover.drain;
    const mb = new drover.MessageBus();
    mb.on('stop', async () => {
        await stopServing();
        mb.sendStopped();
    });
    mb.on('quit', () => {
        mb.sendShuttedDown();
        mb.close(); // nothing else keeps the process alive: it exits by itself
    });
    bootThen(() => mb.sendStarted());
} else {
    // Standalone: the harness's "one worker's own boot" baseline.
    process.on('SIGTERM', () => stopServing().then(() => process.exit(0)));
    bootThen(() => {});
}
