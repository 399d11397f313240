'use strict';

// Warm-up (PROTOCOL.md §5.11, cluster2's): when the master's welcome carries `warmup`
// ({ requests, path, timeout_ms }), a server taking over the master's shared socket first answers
// `requests` GETs of `path`, one after the other, on a private loopback listener: each is handed
// to the server's own 'request' listeners (the app), marked with the header `x-drover-warmup: N`.
// Only then does it listen on the shared socket (and so report STARTED through the preload): no
// client request reaches a cold worker. A request that fails or the whole warm-up outliving
// `timeout_ms` ends the warm-up early; the worker then listens all the same, and says so on stderr.
// Servers that are not HTTP servers are not warmed.

/** The warm-up the master asked for, once the bus has its welcome; null for none. */
function warmupOf(bus) {
    const of = (meta) => (meta && meta.warmup) || null;
    if (bus.meta) return Promise.resolve(of(bus.meta));
    return new Promise((resolve) => bus.once('connected', (meta) => resolve(of(meta))));
}

/** One GET of `path` on `port`, resolved with its status; rejects on error or after `ms`. */
function get(http, port, path, n, ms) {
    return new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path, headers: { 'x-drover-warmup': String(n) }, agent: false }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode));
            res.on('error', reject);
        });
        req.setTimeout(Math.max(1, ms), () => req.destroy(new Error(`warm-up request ${n} timed out`)));
        req.on('error', reject);
    });
}

/** Warms `server` (an http.Server) as `warmup` says; resolves when done, never rejects. */
async function warm(server, warmup) {
    const http = require('node:http');
    if (!warmup || !(server instanceof http.Server)) return;
    const deadline = Date.now() + warmup.timeout_ms;
    // A private server whose requests go to the app's own listeners.
    const privateServer = http.createServer((req, res) => server.emit('request', req, res));
    try {
        await new Promise((resolve, reject) => {
            privateServer.once('error', reject);
            // `exclusive`: Node's own listen, never the master's shared socket (lib/listen.js).
            privateServer.listen({ port: 0, host: '127.0.0.1', exclusive: true }, resolve);
        });
        const { port } = privateServer.address();
        for (let n = 1; n <= warmup.requests; n++) {
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`warm-up: ${n - 1} of ${warmup.requests} requests within ${warmup.timeout_ms} ms`);
            await get(http, port, warmup.path, n, left);
        }
    } catch (e) {
        process.stderr.write(`drover: warm-up ended early, listening anyway: ${e && e.message}\n`);
    } finally {
        privateServer.close();
        privateServer.closeAllConnections?.();
    }
}

module.exports = { warmupOf, warm };
