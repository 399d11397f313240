'use strict';

// drain(server): stop an HTTP server without losing a request, when its listening socket is
// shared (the master keeps it open, other workers accept on it). The reasoning is in
// docs/DRAINING.md; in short:
//
// 1. Stop accepting: close this process's copy of the listening socket only (net.Server's close,
//    not http.Server's, which also closes idle keep-alive connections at once: a request already
//    on the wire on one of them would be reset). New connections go to the other workers.
// 2. Every further response on an open connection says `Connection: close`, and Node closes the
//    connection once it is written: the client learns in-band that it must reconnect.
// 3. An idle connection (no request in progress) is closed only when no request can be racing
//    the close: after a full event-loop turn (so bytes already in the kernel's receive buffer are
//    read and parsed: such a request becomes a response with `Connection: close`), with no byte
//    read since its last response, and quiet for `idleGrace` ms, counted from the drain's start
//    for a connection that was already quiet then.
// 4. Resolve when the last connection is gone, or at `timeout` (then destroy what is left).

const net = require('node:net');
const { isLoaded } = require('./builtins');

const kState = Symbol('drover.drain');
const DEFAULT_TIMEOUT_MS = 10000;
const DEFAULT_IDLE_GRACE_MS = 500;

// Node keeps an http.Server's connections in a private list (the one closeIdleConnections uses).
// Read only for connections accepted before drover started following the server.
// `which`: 'all', or 'active' (a request is being parsed or answered on them).
function nodeConnections(server, which = 'all') {
    const key = Object.getOwnPropertySymbols(server).find((s) => s.description === 'http.server.connections');
    const list = key && server[key];
    if (!list || typeof list[which] !== 'function') return [];
    try {
        return list[which]().map((parser) => parser && parser.socket).filter(Boolean);
    } catch {
        return [];
    }
}

function adopt(state, socket) {
    let c = state.sockets.get(socket);
    if (c) return c;
    // idleSince and idleBytes matter only once a drain has begun; it sets them.
    c = { requests: 0, responses: new Set(), idleSince: 0, idleBytes: 0, upgraded: false };
    state.sockets.set(socket, c);
    socket.once('close', () => {
        state.sockets.delete(socket);
        state.changed();
    });
    return c;
}

/** A request that arrives while draining: its response ends the connection. */
function onRequest(state, req, res) {
    const socket = req.socket;
    const c = adopt(state, socket);
    if (state.draining) {
        res.setHeader('Connection', 'close');
    }
    follow(state, c, socket, res);
}

/**
 * The response `socket` is writing, if it is not followed yet: a request that was in progress
 * when the drain began, or a pipelined one Node attached once the one before it finished.
 */
function catchUp(state, c, socket) {
    const res = socket._httpMessage;
    if (!res || res.writableFinished || c.responses.has(res)) return;
    if (!res.headersSent) res.setHeader('Connection', 'close');
    follow(state, c, socket, res);
}

/** Counts `res` as in progress on connection `c` until it closes. */
function follow(state, c, socket, res) {
    c.requests++;
    c.responses.add(res);
    res.once('close', () => {
        c.requests--;
        c.responses.delete(res);
        c.idleSince = Date.now();
        c.idleBytes = socket.bytesRead;
        state.changed();
    });
}

/**
 * Starts following `server`'s connections (idempotent). drover does it for every server listened
 * on in a worker; `drain` does it for any other server. Requests are followed only from the
 * drain's start (the responses in progress then are found on their sockets): nothing runs per
 * request while the server serves, which keeps a keep-alive server at Node's own speed.
 */
function track(server) {
    if (server[kState]) return server[kState];
    const state = { sockets: new Map(), draining: null, changed: () => {} };
    Object.defineProperty(server, kState, { value: state });
    // A TLS server exists only if node:tls is loaded: don't load it to ask.
    const secure = isLoaded('tls') && server instanceof require('node:tls').Server;
    server.on(secure ? 'secureConnection' : 'connection', (socket) => adopt(state, socket));
    // Upgraded connections (WebSocket...) belong to the app: never closed as idle, only at timeout.
    const upgraded = (req, socket) => {
        adopt(state, socket).upgraded = true;
    };
    server.on('upgrade', upgraded);
    server.on('connect', upgraded);
    for (const socket of nodeConnections(server)) adopt(state, socket);
    return state;
}

function option(options, name, fallback) {
    const value = options[name] === undefined ? fallback : options[name];
    if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) {
        throw new TypeError(`drain(server, options): ${name} must be a finite number of milliseconds >= 0, got ${String(value)}`);
    }
    return value;
}

/**
 * Drains an HTTP server: stops accepting (this worker's copy of the listening socket only),
 * answers further requests with `Connection: close`, closes idle connections once no request can
 * be racing, and resolves when the last connection is gone or `timeout` ms passed (then destroys
 * the rest). Calling it again returns the same promise.
 *
 * Resolves with { connections, closedIdle, destroyed, timedOut, ms }.
 */
function drain(server, options = {}) {
    if (!(server instanceof net.Server)) {
        return Promise.reject(new TypeError(`drain(server): expected a net.Server or http.Server, got ${server === null ? 'null' : typeof server}`));
    }
    if (options === null || typeof options !== 'object') {
        return Promise.reject(new TypeError('drain(server, options): options must be an object'));
    }
    let timeout;
    let idleGrace;
    try {
        timeout = option(options, 'timeout', DEFAULT_TIMEOUT_MS);
        idleGrace = option(options, 'idleGrace', DEFAULT_IDLE_GRACE_MS);
    } catch (e) {
        return Promise.reject(e);
    }
    const state = track(server);
    if (state.draining) return state.draining;

    const started = Date.now();
    const result = { connections: state.sockets.size, closedIdle: 0, destroyed: 0, timedOut: false, ms: 0 };
    // 1. This worker's copy of the listening socket only; not http's close (it closes idle
    //    connections on the spot). Node emits 'close' on the server once every connection is gone.
    if (server.listening) {
        net.Server.prototype.close.call(server);
    }
    // 2. Responses whose headers are not written yet end the connection: those in progress now,
    //    and (prepended, so before the app's handler answers) those of requests still to come.
    server.prependListener('request', (req, res) => onRequest(state, req, res));
    // A connection whose parser is inside a request (partly read) counts as having read bytes
    // since its last response: the first sweep sees it as arriving, not idle.
    const active = new Set(nodeConnections(server, 'active'));
    for (const [socket, c] of state.sockets) {
        c.idleSince = started;
        c.idleBytes = active.has(socket) ? -1 : socket.bytesRead;
        catchUp(state, c, socket);
    }

    state.draining = new Promise((resolve) => {
        let sweepTimer = null;
        let turn = null;
        let done = false;
        const finish = (timedOut) => {
            if (done) return;
            done = true;
            clearTimeout(deadline);
            clearTimeout(sweepTimer);
            clearImmediate(turn);
            state.changed = () => {};
            stopConnectionsCheck(server);
            result.timedOut = timedOut;
            result.ms = Date.now() - started;
            resolve(result);
        };
        const deadline = setTimeout(() => {
            for (const socket of state.sockets.keys()) {
                socket.destroy();
                result.destroyed++;
            }
            finish(true);
        }, timeout);

        // 3. Idle connections are judged after a full event-loop turn: two setImmediate hops
        //    put a poll phase between the decision and the check wherever drain() was called
        //    from, so a request already in the kernel's buffer is read, parsed and counted.
        const schedule = () => {
            if (done) return;
            if (state.sockets.size === 0) {
                finish(false);
                return;
            }
            if (turn === null) {
                turn = setImmediate(() => {
                    turn = setImmediate(sweep);
                });
            }
        };
        const sweep = () => {
            turn = null;
            const now = Date.now();
            let next = Infinity;
            for (const [socket, c] of state.sockets) {
                catchUp(state, c, socket);
                if (c.requests > 0 || c.upgraded || c.closing) continue;
                if (socket.bytesRead !== c.idleBytes) {
                    // Bytes arrived since its last response: a request is coming in; it will be
                    // answered with `Connection: close`.
                    c.idleBytes = socket.bytesRead;
                    c.idleSince = now;
                }
                // Quiet since the drain began too, not only since its last response. The drain
                // itself sets off requests on idle connections: each busy connection gets its
                // `Connection: close` answer within milliseconds, and a pooling client (Node's
                // agent, hyper, browsers) sends its next request at once on another connection
                // from its pool, often one to this server that sat unused there for longer than
                // idleGrace. Closing that one at the first sweep races the very request the drain
                // caused (the client reads our FIN after writing it: `socket hang up`). After
                // idleGrace from the start that burst has landed and been answered with
                // `Connection: close`; only connections nobody reaches for are closed.
                const quiet = now - Math.max(c.idleSince, started);
                if (quiet >= idleGrace) {
                    c.closing = true;
                    result.closedIdle++;
                    socket.destroySoon();
                } else {
                    next = Math.min(next, idleGrace - quiet);
                }
            }
            clearTimeout(sweepTimer);
            sweepTimer = next === Infinity ? null : setTimeout(schedule, next);
        };
        state.changed = schedule;
        schedule();
    });
    return state.draining;
}

// http.Server checks its connections' timeouts on an (unref'd) interval that its own close()
// clears; drain bypasses that close, so it clears the interval once done.
function stopConnectionsCheck(server) {
    const key = Object.getOwnPropertySymbols(server).find((s) => s.description === 'http.server.connectionsCheckingInterval');
    if (key && server[key]) clearInterval(server[key]);
}

module.exports = { drain, track, DEFAULT_TIMEOUT_MS, DEFAULT_IDLE_GRACE_MS };
