'use strict';

// A keep-alive HTTP client for the load tests: `sockets` loops, each sending its next request as
// soon as the previous answer arrived, over an http.Agent of at most `sockets` keep-alive
// connections. Every answer is a worker's pid; every failure is recorded with the socket it was on
// and the pid that socket was last answered by.
const http = require('node:http');

const kPid = Symbol('pid');

function startLoad({ port, host = '127.0.0.1', sockets = 20, maxMs = 20000, maxRequests = 200000 }) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: sockets });
    const live = new Set(); // client sockets currently open
    const stats = { sent: 0, ok: 0, failed: [], perPid: new Map(), connections: 0 };
    let stopped = false;
    const started = Date.now();

    const one = () => new Promise((resolve) => {
        stats.sent++;
        const req = http.get({ host, port, path: '/', agent }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { body += d; });
            res.on('end', () => {
                const pid = Number(body);
                if (res.statusCode === 200 && pid > 0) {
                    stats.ok++;
                    stats.perPid.set(pid, (stats.perPid.get(pid) || 0) + 1);
                    req.socket[kPid] = pid;
                } else {
                    stats.failed.push({ code: `HTTP ${res.statusCode}`, message: body });
                }
                resolve();
            });
            res.on('error', (err) => {
                stats.failed.push({ code: err.code, message: err.message, pid: req.socket && req.socket[kPid], socket: req.socket, at: Date.now() });
                resolve();
            });
        });
        req.on('socket', (socket) => {
            if (!live.has(socket) && !socket[kPid]) {
                live.add(socket);
                stats.connections++;
                socket.once('close', () => live.delete(socket));
            }
        });
        req.on('error', (err) => {
            stats.failed.push({ code: err.code, message: err.message, pid: req.socket && req.socket[kPid], socket: req.socket, at: Date.now() });
            resolve();
        });
    });

    const loops = Array.from({ length: sockets }, async () => {
        while (!stopped && Date.now() - started < maxMs && stats.sent < maxRequests) {
            await one();
        }
    });
    const done = Promise.all(loops).then(() => {
        agent.destroy();
        return stats;
    });
    return {
        stats,
        /** The open client sockets last answered by `pid`. */
        socketsOf: (pid) => [...live].filter((s) => s[kPid] === pid && !s.destroyed),
        /** The pid with the most open client sockets. */
        busiestPid() {
            const count = new Map();
            for (const s of live) if (s[kPid] && !s.destroyed) count.set(s[kPid], (count.get(s[kPid]) || 0) + 1);
            return [...count].sort((a, b) => b[1] - a[1])[0];
        },
        /** Resolves once `n` more requests have been answered. */
        async answered(n, timeoutMs = 10000) {
            const target = stats.ok + n;
            const deadline = Date.now() + timeoutMs;
            while (stats.ok < target) {
                if (Date.now() > deadline) throw new Error(`fewer than ${n} answers within ${timeoutMs} ms (${stats.failed.length} failures)`);
                await new Promise((r) => setTimeout(r, 10));
            }
        },
        stop() {
            stopped = true;
            return done;
        },
    };
}

/** One line of figures for the test's output. */
function summary(stats) {
    const perPid = [...stats.perPid].map(([pid, n]) => `${pid}:${n}`).join(' ');
    return `sent ${stats.sent}, ok ${stats.ok}, failed ${stats.failed.length}, connections ${stats.connections}, per pid ${perPid}`;
}

module.exports = { startLoad, summary, kPid };
