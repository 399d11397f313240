'use strict';

// A Node worker of drover-bench-routing (issue 18): on {"cmd":"routing","n":N,"redis":"HOST:PORT"}
// it times, one at a time, N shared-store gets (`mb.store.get`: worker → master → worker), N
// requests to worker 2's `echo` handler (worker → master → worker → master → worker) and, with
// `redis`, N Redis `GET bench.key` over one TCP connection (a minimal RESP client: no npm
// dependency), and replies {"routing": {NAME: {p50_us, p99_us}}}. Worker 2 answers `echo`.
const net = require('node:net');
const { MessageBus } = require('../../bindings-node');
const { timed } = require('./timing');

const mb = new MessageBus();
mb.handle('echo', (args) => args);

function percentiles(ns) {
    const us = ns.map((v) => v / 1000).sort((a, b) => a - b);
    const at = (p) => Math.round(us[Math.min(us.length - 1, Math.floor(p * us.length))] * 10) / 10;
    return { p50_us: at(0.5), p99_us: at(0.99) };
}

/** One connection to Redis; `get()` resolves with the reply's bytes (one command at a time). */
function redisClient(address) {
    const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
    const socket = net.connect({ host, port });
    socket.setNoDelay(true);
    let waiting = null;
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk) => {
        buffered = Buffer.concat([buffered, chunk]);
        // A bulk string: $LEN\r\nDATA\r\n
        const eol = buffered.indexOf('\r\n');
        if (eol < 0) return;
        const len = Number(buffered.subarray(1, eol).toString());
        const total = eol + 2 + Math.max(len, 0) + (len >= 0 ? 2 : 0);
        if (buffered.length < total) return;
        const reply = buffered.subarray(eol + 2, eol + 2 + Math.max(len, 0));
        buffered = buffered.subarray(total);
        const resolve = waiting;
        waiting = null;
        resolve(reply);
    });
    const ready = new Promise((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
    });
    const command = Buffer.from('*2\r\n$3\r\nGET\r\n$9\r\nbench.key\r\n');
    return {
        ready,
        get: () => new Promise((resolve) => {
            waiting = resolve;
            socket.write(command);
        }),
        close: () => socket.destroy(),
    };
}

async function routing({ n, redis }) {
    const warmup = Math.min(1000, n);
    const report = {};
    await timed(warmup, () => mb.store.get('bench.key'));
    report.store_get = percentiles(await timed(n, () => mb.store.get('bench.key')));
    await timed(warmup, (i) => mb.request('worker:2', 'echo', i));
    report.request_worker_to_worker = percentiles(await timed(n, (i) => mb.request('worker:2', 'echo', i)));
    if (redis) {
        try {
            const client = redisClient(redis);
            await client.ready;
            await timed(warmup, () => client.get());
            report.redis_get = percentiles(await timed(n, () => client.get()));
            client.close();
        } catch (e) {
            report.redis_get = { error: e.message };
        }
    }
    return report;
}

mb.on('message', (msg) => {
    if (msg && msg.cmd === 'routing') {
        routing(msg).then(
            (report) => mb.sendMessage({ routing: report }),
            (e) => mb.sendMessage({ routing: { error: { message: e.message } } }),
        );
    }
});
mb.on('stop', mb.sendStopped);
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
});
mb.sendStarted();
