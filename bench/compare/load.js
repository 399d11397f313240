'use strict';

// The load: CONNS keep-alive connections sending RATE requests/s in total (each connection one
// request every CONNS/RATE s, staggered, at most one in flight), for DURATION_MS, to
// http://127.0.0.1:PORT/. A standards-following HTTP/1.1 client (Node's http, one keep-alive
// Agent socket per connection): it honours `Connection: close` by opening a new connection for
// the next request. Every request is accounted for: a response with 2xx, a non-2xx, a
// connection error (code), or a timeout (TIMEOUT_MS). Prints {ev:'begin'} when it starts, then one
// JSON result line. Latency is measured from the request's scheduled time (so a stall is not
// hidden by the client waiting) and from its actual send.
const http = require('node:http');

const PORT = Number(process.env.PORT);
const CONNS = Number(process.env.CONNS || 20);
const RATE = Number(process.env.RATE || 2000);
const DURATION_MS = Number(process.env.DURATION_MS || 15000);
const TIMEOUT_MS = Number(process.env.TIMEOUT_MS || 10000);
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

const interval = (CONNS * 1000) / RATE;
const result = { sent: 0, ok: 0, non2xx: 0, timeouts: 0, errors: {}, failures: [], pids: {}, connections: 0 };
const service = [];
const scheduled = [];

function once(agent) {
    return new Promise((resolve) => {
        let done = false;
        const finish = (outcome) => {
            if (!done) {
                done = true;
                resolve(outcome);
            }
        };
        const req = http.get({ host: '127.0.0.1', port: PORT, path: '/', agent }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { body += d; });
            res.on('end', () => finish({ status: res.statusCode, body }));
            res.on('error', (err) => finish({ error: err.code || err.message }));
        });
        req.on('socket', (s) => {
            if (!s.benchSeen) {
                s.benchSeen = true;
                result.connections++;
            }
        });
        req.setTimeout(TIMEOUT_MS, () => {
            finish({ timeout: true });
            req.destroy();
        });
        req.on('error', (err) => finish({ error: err.code || err.message }));
    });
}

async function lane(i, t0, end) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let due = t0 + (i * interval) / CONNS;
    while (due < end) {
        await sleep(due - now());
        const sentAt = now();
        result.sent++;
        const r = await once(agent);
        const t = now();
        if (r.status >= 200 && r.status < 300) {
            result.ok++;
            service.push(t - sentAt);
            scheduled.push(t - due);
            const pid = r.body.split(' ')[1];
            if (pid) result.pids[pid.trim()] = (result.pids[pid.trim()] || 0) + 1;
        } else {
            const kind = r.timeout ? 'timeout' : r.error ? r.error : `status ${r.status}`;
            if (r.timeout) result.timeouts++;
            else if (r.error) result.errors[r.error] = (result.errors[r.error] || 0) + 1;
            else result.non2xx++;
            if (result.failures.length < 50) result.failures.push({ t: sentAt, kind });
        }
        due += interval;
        if (due < t - interval) due = t; // fell behind (a stall): resume from now, do not burst
    }
    agent.destroy();
}

function pct(a, p) {
    if (!a.length) return null;
    const s = Float64Array.from(a).sort();
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** CLIENT=autocannon: the same load by autocannon (a cross-check; see README.md for its limits). */
async function viaAutocannon() {
    const autocannon = require('autocannon');
    const t0 = now();
    process.stdout.write(`${JSON.stringify({ ev: 'begin', t0 })}\n`);
    const errors = {};
    const inst = autocannon({
        url: `http://127.0.0.1:${PORT}/`, connections: CONNS, overallRate: RATE,
        duration: DURATION_MS / 1000, timeout: TIMEOUT_MS / 1000,
    });
    inst.on('reqError', (err) => { errors[err.code || err.message] = (errors[err.code || err.message] || 0) + 1; });
    const r = await inst;
    const ok = r['2xx'];
    // autocannon's own failure counters: connection errors (timeouts included) and non-2xx.
    // `unanswered` (sent − answered − errors) is informational: with -R it stays near one
    // second's worth of requests (about RATE) whatever the server does, so it is no failure count.
    process.stdout.write(`${JSON.stringify({
        ev: 'result', client: 'autocannon', sent: r.requests.sent, ok, non2xx: r.non2xx, timeouts: r.timeouts,
        errors, resets: r.resets, unanswered: r.requests.sent - r.requests.total - r.errors,
        failed: r.errors + r.non2xx, pids: {},
        elapsedMs: now() - t0, p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max,
    })}\n`);
}

(async () => {
    if (process.env.CLIENT === 'autocannon') return viaAutocannon();
    const t0 = now() + 20;
    const end = t0 + DURATION_MS;
    process.stdout.write(`${JSON.stringify({ ev: 'begin', t0 })}\n`);
    await Promise.all(Array.from({ length: CONNS }, (_, i) => lane(i, t0, end)));
    const failed = result.sent - result.ok;
    process.stdout.write(`${JSON.stringify({
        ev: 'result',
        ...result,
        failed,
        elapsedMs: now() - t0,
        p50: pct(service, 50),
        p99: pct(service, 99),
        max: service.length ? Math.max(...service) : null,
        p99FromSchedule: pct(scheduled, 99),
    })}\n`);
})();
