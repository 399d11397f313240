'use strict';

// drover's Node binding vs Node's own process.send, between a master and one worker:
// round-trip latency (p50/p99), one-way messages/s (worker → master), and the RSS a drover
// worker adds over a plain `node` process. Usage: node bench/node/bench.js [rounds] [burst]
const path = require('node:path');
const fs = require('node:fs');
const { fork, spawn } = require('node:child_process');
const { MasterFactory } = require('../../bindings-node');

const ROUNDS = Number(process.argv[2] || 20000);
const BURST = Number(process.argv[3] || 200000);
const WARMUP = 2000;
// The busy-poll window of the second drover row (microseconds; BUSY_POLL_US overrides).
const BUSY_POLL_US = Number(process.env.BUSY_POLL_US || 100);

function percentile(sorted, p) {
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(name, rtts, perSecond) {
    const us = rtts.map((ns) => Number(ns) / 1000).sort((a, b) => a - b);
    return { name, p50_us: +percentile(us, 50).toFixed(1), p99_us: +percentile(us, 99).toFixed(1), msgs_per_s: Math.round(perSecond) };
}

function rssKiB(pid) {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(status.match(/VmRSS:\s+(\d+) kB/)[1]);
}

// PSS (shared pages divided among the processes that map them) and private memory, in KiB: RSS
// counts every shared page (the addon's code, Node's) whole in every process.
function memKiB(pid) {
    const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const field = (name) => Number(rollup.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm'))[1]);
    return { pss: field('Pss'), priv: field('Private_Clean') + field('Private_Dirty') };
}

// Round trips one at a time: send ping, wait for its pong.
async function roundTrips(send, onReply, n) {
    const rtts = [];
    for (let seq = 0; seq < n + WARMUP; seq++) {
        const t0 = process.hrtime.bigint();
        await new Promise((resolve) => {
            onReply.resolve = resolve;
            send({ cmd: 'ping', seq });
        });
        if (seq >= WARMUP) rtts.push(process.hrtime.bigint() - t0);
    }
    return rtts;
}

async function burst(send, onBurst, n) {
    const t0 = process.hrtime.bigint();
    await new Promise((resolve) => {
        onBurst.expect = n;
        onBurst.resolve = resolve;
        send({ cmd: 'burst', n });
    });
    return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

async function benchDrover(busyPollUs) {
    const master = MasterFactory.create({ script: path.join(__dirname, 'worker.js'), count: 1, busyPollUs });
    const reply = {};
    const b = { got: 0 };
    master.on('message', (m) => {
        if (m.pong !== undefined) reply.resolve();
        else if (++b.got === b.expect) b.resolve();
    });
    await master.start();
    const [w] = master.getWorkers();
    const send = (msg) => { master.send(w.id, msg); };
    const rtts = await roundTrips(send, reply, ROUNDS);
    const rate = await burst(send, b, BURST);
    await master.gracefulShutdown();
    const name = busyPollUs ? `drover, busyPollUs ${busyPollUs}` : 'drover (napi MessageBus)';
    return summary(name, rtts, rate);
}

async function benchNode() {
    const child = fork(path.join(__dirname, 'child.js'), { stdio: 'inherit' });
    const reply = {};
    const b = { got: 0 };
    await new Promise((resolve) => child.once('message', resolve));
    child.on('message', (m) => {
        if (m.pong !== undefined) reply.resolve();
        else if (++b.got === b.expect) b.resolve();
    });
    const send = (msg) => child.send(msg);
    const rtts = await roundTrips(send, reply, ROUNDS);
    const rate = await burst(send, b, BURST);
    child.send({ cmd: 'quit' });
    await new Promise((resolve) => child.on('exit', resolve));
    return summary('node process.send (fork)', rtts, rate);
}

// RSS of an idle drover worker vs an idle plain node process.
async function benchRss() {
    const samples = 5;
    const master = MasterFactory.create({ script: path.join(__dirname, 'worker.js'), count: samples });
    await master.start();
    await new Promise((r) => setTimeout(r, 500)); // let both settle after start-up
    const plain = [];
    for (let i = 0; i < samples; i++) {
        plain.push(spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }));
    }
    await new Promise((r) => setTimeout(r, 1000));
    const avg = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const workerPids = master.getWorkers().map((w) => w.pid);
    const plainPids = plain.map((c) => c.pid);
    const droverKiB = avg(workerPids.map(rssKiB));
    const plainKiB = avg(plainPids.map(rssKiB));
    const droverMem = workerPids.map(memKiB);
    const plainMem = plainPids.map(memKiB);
    const added = (key) => +((avg(droverMem.map((m) => m[key])) - avg(plainMem.map((m) => m[key]))) / 1024).toFixed(2);
    plain.forEach((c) => c.kill());
    await master.gracefulShutdown();
    return {
        drover_worker_rss_mib: +(droverKiB / 1024).toFixed(1),
        plain_node_rss_mib: +(plainKiB / 1024).toFixed(1),
        added_mib: +((droverKiB - plainKiB) / 1024).toFixed(1),
        added_pss_mib: added('pss'),
        added_private_mib: added('priv'),
    };
}

(async () => {
    console.log(`node ${process.version}, ${ROUNDS} round trips (after ${WARMUP} warm-up), bursts of ${BURST}`);
    console.table([await benchDrover(0), await benchDrover(BUSY_POLL_US), await benchNode()]);
    console.table([await benchRss()]);
})().catch((e) => {
    console.error(e);
    process.exitCode = 1;
});
