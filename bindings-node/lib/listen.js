'use strict';

// Transparent shared listening, as Node's cluster does it: once a worker has created its
// MessageBus, `server.listen(PORT)` (and every other TCP port form) asks the master for its socket
// on that address over the bus, and listens on the fd it receives. Every worker asking for the same
// address gets the same socket, which the master keeps open through restarts and reloads.
//
// Why at `new MessageBus()` and not at `require('drover')`: the request travels over the bus, whose
// channel only one MessageBus may own; and requiring drover must not change how a process that is
// not (yet) a drover worker listens — a master that happens to run under another drover master,
// a script that only uses `drain`. An app creates its MessageBus before it listens (drover's usage).
//
// Only TCP port forms are taken over. Paths, handles, `{ fd }`, and `{ exclusive: true }`,
// `{ ipv6Only: true }`, `{ reusePort: true }` (the app asks for a socket of its own) go to Node's
// own listen unchanged, as do invalid arguments (so Node throws its own errors).

const fs = require('node:fs');
const { isLoaded } = require('./builtins');

const kPending = Symbol('drover.listen.pending');
let bus = null;
// Every server this process listened on since the bus took listen over: the preload drains them
// when the master stops the worker (preload.js). Removed once closed.
const servers = new Set();
// node:net's own listen, once taken over. node:net is not loaded here: a worker that never
// listens should not pay for it (1.6-1.8 MiB resident with Node 20; bench/node/bench.js).
let originalListen = null;


function takeOver() {
    const net = require('node:net');
    if (net.Server.prototype.listen !== listen) {
        originalListen = net.Server.prototype.listen;
        net.Server.prototype.listen = listen;
    }
}

/**
 * Takes over `net.Server.prototype.listen` for this process's MessageBus: now if node:net is
 * loaded (an app that required http or net before it created its bus, or imported them: ES
 * imports are all loaded first), else right after the first `require` that loads it (through
 * http, https, tls, net, ...). An ES module that imports node:http dynamically only after it
 * created its bus listens on its own socket: import it statically (or call `mb.listen`).
 */
function install(messageBus) {
    bus = messageBus;
    if (isLoaded('net')) {
        takeOver();
        return;
    }
    const Module = require('node:module');
    const original = Module.prototype.require;
    let done = false;
    Module.prototype.require = function require(id) {
        const exports = original.apply(this, arguments);
        if (!done && isLoaded('net')) {
            done = true;
            takeOver();
            // Unwrapped unless someone wrapped require after us (then their wrapper keeps calling
            // this one, which only passes through now).
            if (Module.prototype.require === require) Module.prototype.require = original;
        }
        return exports;
    };
}

// Node's own argument rules (lib/net.js normalizeArgs, validatePort).
const toNumber = (x) => ((x = Number(x)) >= 0 ? x : false);
const isPipeName = (s) => typeof s === 'string' && toNumber(s) === false;
const validPort = (port) =>
    (typeof port === 'number' || (typeof port === 'string' && port.trim().length !== 0)) &&
    +port === +port >>> 0 &&
    +port <= 0xffff;

/** The TCP request in listen()'s arguments, or null when Node's own listen must handle them. */
function tcpRequest(args) {
    const last = args[args.length - 1];
    const cb = typeof last === 'function' ? last : null;
    const backlogFromArgs = toNumber(args.length > 1 && args[1]) || toNumber(args.length > 2 && args[2]);
    const a0 = args[0];
    let port;
    let host;
    let backlog = backlogFromArgs;
    let signal;
    if (a0 !== null && typeof a0 === 'object') {
        const o = a0;
        if (o instanceof require('node:net').Server || o._handle || o.handle || typeof o.fd === 'number') return null;
        if (o.exclusive || o.ipv6Only || o.reusePort) return null;
        if (o.port === undefined || o.port === null) {
            // Node: { port: undefined } is a random port; no port at all is a path or an error.
            if (!('port' in o) || o.path !== undefined) return null;
            port = 0;
        } else {
            port = o.port;
        }
        host = o.host;
        backlog = o.backlog || backlogFromArgs;
        signal = o.signal;
    } else if (isPipeName(a0)) {
        return null;
    } else {
        port = args.length === 0 || typeof a0 === 'function' || a0 === null || a0 === undefined ? 0 : a0;
        host = args.length > 1 && typeof args[1] === 'string' ? args[1] : undefined;
    }
    if (!validPort(port)) return null;
    if (signal !== undefined && (signal === null || typeof signal.aborted !== 'boolean')) return null;
    return { port: Number(port), host: host || undefined, backlog: backlog || undefined, cb, signal };
}

function alreadyListening() {
    const e = new Error('Listen method has been called more than once without closing.');
    e.code = 'ERR_SERVER_ALREADY_LISTEN';
    return e;
}

/** The master's address for `host` (resolved as Node resolves it) and `port`. */
function masterAddress(host, port, callback) {
    if (!host) {
        // A bare port: all interfaces, IPv6 and IPv4 (IPv4 only on a host without IPv6), as Node.
        process.nextTick(callback, null, String(port));
        return;
    }
    // Required here: a worker that listens on a bare port (most) never loads the resolver.
    require('node:dns').lookup(host, (err, ip, family) => {
        if (err) callback(err);
        else callback(null, family === 6 ? `[${ip}]:${port}` : `${ip}:${port}`);
    });
}

function listen(...args) {
    if (!bus) return originalListen.apply(this, args);
    require('./drain').track(this);
    if (!servers.has(this)) {
        servers.add(this);
        this.once('close', () => servers.delete(this));
    }
    if (this._handle) return originalListen.apply(this, args); // Node throws ERR_SERVER_ALREADY_LISTEN
    if (this[kPending]) throw alreadyListening();
    const request = tcpRequest(args);
    if (!request) return originalListen.apply(this, args);

    const server = this;
    const token = {};
    server[kPending] = token;
    if (request.cb) server.once('listening', request.cb);
    // close() before the socket arrived cancels (Node emits 'close' even when not listening).
    const onClose = () => {
        if (server[kPending] === token) server[kPending] = null;
    };
    server.once('close', onClose);
    if (request.signal) {
        const onAbort = () => server.close();
        if (request.signal.aborted) process.nextTick(onAbort);
        else {
            request.signal.addEventListener('abort', onAbort, { once: true });
            server.once('close', () => request.signal.removeEventListener('abort', onAbort));
        }
    }
    const current = () => server[kPending] === token;
    const fail = (err) => {
        server.off('close', onClose);
        if (!current()) return;
        server[kPending] = null;
        // As Node does: 'error' on the next tick (unhandled, it is an uncaught exception).
        process.nextTick(() => server.emit('error', err));
    };

    masterAddress(request.host, request.port, (lookupError, address) => {
        if (lookupError) {
            fail(lookupError);
            return;
        }
        const listening = bus.listen(address);
        const warmed = listening.then(() => require('./warmup').warmupOf(bus)).then((w) => require('./warmup').warm(server, w));
        Promise.all([listening, warmed]).then(([{ fd, local, balance }]) => {
            server.off('close', onClose);
            if (!current()) {
                fs.close(fd, () => {});
                return;
            }
            server[kPending] = null;
            if (balance === 'reuseport') {
                // This worker's own slot: it accepts on it, and serves what the master hands it
                // from a slot whose worker is away (PROTOCOL.md §5.3).
                takeHandedConnections(server, local);
            } else if (balance) {
                // The master accepts; this worker must not: it serves what is handed to it.
                fs.close(fd, () => {});
                listenBalanced(server, local, request.backlog);
                return;
            }
            try {
                // Node's own listen on the received fd: it emits 'listening' (and calls the callback).
                if (request.backlog) originalListen.call(server, { fd }, request.backlog);
                else originalListen.call(server, { fd });
            } catch (e) {
                fs.close(fd, () => {});
                process.nextTick(() => server.emit('error', e));
            }
        }, (err) => {
            if (err && err.port === undefined && typeof err === 'object') err.port = request.port;
            fail(err);
        });
    });
    return this;
}

// Servers listening on a socket whose connections the master accepts (balance round-robin or
// sticky) or may hand over (reuseport), by the socket's bound address (the `listener` of each
// `connection` event).
const balanced = new Map();

/** `[::]:8080` or `127.0.0.1:8080` as getsockname's `{ address, family, port }`. */
function sockname(local) {
    const colon = local.lastIndexOf(':');
    let address = local.slice(0, colon);
    const v6 = address.startsWith('[');
    if (v6) address = address.slice(1, -1);
    return { address, family: v6 ? 'IPv6' : 'IPv4', port: Number(local.slice(colon + 1)) };
}

/** `server` (listening on its own socket) also serves the connections handed to it for `local`. */
function takeHandedConnections(server, local) {
    balanced.set(local, server);
    server.once('close', () => {
        if (balanced.get(local) === server) balanced.delete(local);
    });
}

/**
 * Makes `server` listen without a socket of its own, as Node's cluster does for its round-robin
 * workers: a stand-in handle answers `address()` and `close()`, and Node's own listen machinery
 * (`_listen2`, which cluster relies on too) emits 'listening'. Connections come from `connection`.
 */
function listenBalanced(server, local, backlog) {
    const name = sockname(local);
    const handle = {
        listen: () => 0,
        getsockname: (out) => {
            Object.assign(out, name);
            return 0;
        },
        close: (cb) => {
            if (balanced.get(local) === server) balanced.delete(local);
            if (typeof cb === 'function') process.nextTick(cb);
        },
        ref: () => {},
        unref: () => {},
    };
    balanced.set(local, server);
    server._handle = handle;
    server._listen2(name.address, name.port, name.family === 'IPv6' ? 6 : 4, backlog);
}

/**
 * A `connection` event from the master: the server listening on its socket gets it as a
 * 'connection' of its own (what Node's accept would have done: the connection count, `noDelay`,
 * `keepAlive`, `maxConnections`); with no such server, the bus emits it as
 * `'connection', fd, { listener, remote }` for an app that called `mb.listen` itself, and with
 * nobody to take it the connection is closed.
 */
function connection(messageBus, e) {
    const server = balanced.get(e.listener);
    if (!server) {
        if (messageBus.listenerCount('connection') > 0) {
            messageBus.emit('connection', e.fd, { listener: e.listener, remote: e.remote });
        } else {
            fs.close(e.fd, () => {});
        }
        return;
    }
    if (server.maxConnections != null && server._connections >= server.maxConnections) {
        fs.close(e.fd, () => {});
        return;
    }
    const net = require('node:net');
    let socket;
    try {
        socket = new net.Socket({
            fd: e.fd,
            readable: true,
            writable: true,
            allowHalfOpen: server.allowHalfOpen,
            pauseOnCreate: server.pauseOnConnect,
        });
    } catch (err) {
        fs.close(e.fd, () => {});
        process.nextTick(() => server.emit('error', err));
        return;
    }
    if (server.noDelay) socket.setNoDelay(true);
    if (server.keepAlive) socket.setKeepAlive(true, server.keepAliveInitialDelay);
    server._connections++;
    socket.server = server;
    socket._server = server;
    server.emit('connection', socket);
}

/**
 * The sockets this process was started with, systemd style (a drover master's declared `listen`):
 * `[{ fd, name }]` from fd 3, when `LISTEN_PID` is this process; otherwise `[]`.
 */
function listenFds() {
    const env = process.env;
    if (Number(env.LISTEN_PID) !== process.pid) return [];
    const count = Number(env.LISTEN_FDS);
    if (!Number.isInteger(count) || count <= 0) return [];
    const names = (env.LISTEN_FDNAMES || '').split(':');
    return Array.from({ length: count }, (_, i) => ({ fd: 3 + i, name: names[i] || `listen${i}` }));
}

/** The servers listened on through the bus's take-over that are not closed yet. */
function listenedServers() {
    return [...servers];
}

module.exports = { install, listenFds, tcpRequest, listenedServers, connection };
