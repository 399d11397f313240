'use strict';

// The nearest Node peer of drover's shared store (issue 18): clusterfy-style storage kept in the
// primary and reached over Node's IPC — the worker `process.send`s { id, get: path } and the
// primary answers with the value at that dot path (`child.send`). A minimal equivalent written
// for the bench, not clusterfy itself. The child times N gets, one at a time, and the primary
// prints {"ipc_storage_get": {p50_us, p99_us}} as one JSON line.
// Usage: node bench/node/ipc-storage.js [N]
const { fork } = require('node:child_process');
const { timed } = require('./timing');

const N = Number(process.argv[2] || 20000);

function percentiles(ns) {
    const us = ns.map((v) => v / 1000).sort((a, b) => a - b);
    const at = (p) => Math.round(us[Math.min(us.length - 1, Math.floor(p * us.length))] * 10) / 10;
    return { p50_us: at(0.5), p99_us: at(0.99) };
}

function at(tree, path) {
    return path.split('.').reduce((node, key) => (node && typeof node === 'object' ? node[key] : undefined), tree);
}

if (process.argv[3] === 'child') {
    const waiting = new Map();
    let next = 0;
    process.on('message', (m) => {
        const resolve = waiting.get(m.id);
        waiting.delete(m.id);
        resolve(m.value);
    });
    const get = (path) => new Promise((resolve) => {
        const id = ++next;
        waiting.set(id, resolve);
        process.send({ id, get: path });
    });
    (async () => {
        await timed(Math.min(1000, N), () => get('bench.key'));
        const ns = await timed(N, () => get('bench.key'));
        process.send({ done: percentiles(ns) });
        process.disconnect();
    })();
} else {
    const store = { bench: { key: 'x'.repeat(64) } };
    const child = fork(__filename, [String(N), 'child']);
    child.on('message', (m) => {
        if (m.done) {
            console.log(JSON.stringify({ ipc_storage_get: m.done }));
        } else {
            child.send({ id: m.id, value: at(store, m.get) ?? null });
        }
    });
}
