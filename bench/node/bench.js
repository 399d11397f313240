'use strict';

// drover's Node binding vs Node's own process.send, between a master and one worker:
// round-trip latency (p50/p99), one-way messages/s (worker → master, the median of 3 bursts),
// and the RSS a drover worker adds over a plain `node` process. The contenders run side by side
// and take turns in blocks of 1,000 round trips. Usage: node bench/node/bench.js [rounds] [burst]
const path = require('node:path');
const fs = require('node:fs');
const { fork, spawn } = require('node:child_process');
const { MasterFactory } = require('../../bindings-node');

const ROUNDS = Number(process.argv[2] || 20000);
const BURST = Number(process.argv[3] || 200000);
const WARMUP = 2000;
// The busy-poll window of the second drover row (microseconds; BUSY_POLL_US overrides, and 0
// leaves the row out).
const BUSY_POLL_US = Number(process.env.BUSY_POLL_US ?? 100);

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

// Round trips one at a time: send ping, wait for its pong. Returns the round-trip times (ns).
async function roundTrips(c, n) {
    const rtts = [];
    for (let i = 0; i < n; i++) {
        const seq = c.seq++;
        const t0 = process.hrtime.bigint();
        await new Promise((resolve) => {
            c.reply.resolve = resolve;
            c.send({ cmd: 'ping', seq });
        });
        rtts.push(process.hrtime.bigint() - t0);
    }
    return rtts;
}

// One burst of `n` messages, worker → master; returns messages/s.
async function burst(c, n) {
    const t0 = process.hrtime.bigint();
    await new Promise((resolve) => {
        c.burst.got = 0;
        c.burst.expect = n;
        c.burst.resolve = resolve;
        c.send({ cmd: 'burst', n });
    });
    return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

// A contender: a master and one worker, with send / reply / burst plumbing.
function plumbing(name) {
    const c = { name, seq: 0, reply: {}, burst: {}, rtts: [], rates: [] };
    c.onMessage = (m) => {
        if (m.pong !== undefined) c.reply.resolve();
        else if (m.seq !== undefined && ++c.burst.got === c.burst.expect) c.burst.resolve();
    };
    return c;
}

async function drover(busyPollUs) {
    const c = plumbing(busyPollUs ? `drover, busyPollUs ${busyPollUs}` : 'drover (napi MessageBus)');
    const master = MasterFactory.create({ script: path.join(__dirname, 'worker.js'), count: 1, busyPollUs });
    master.on('message', c.onMessage);
    await master.start();
    const [w] = master.getWorkers();
    c.send = (msg) => { master.send(w.id, msg); };
    c.close = () => master.gracefulShutdown();
    return c;
}

async function node() {
    const c = plumbing('node process.send (fork)');
    const child = fork(path.join(__dirname, 'child.js'), { stdio: 'inherit' });
    await new Promise((resolve) => child.once('message', resolve));
    child.on('message', c.onMessage);
    c.send = (msg) => child.send(msg);
    c.close = async () => {
        child.send({ cmd: 'quit' });
        await new Promise((resolve) => child.on('exit', resolve));
    };
    return c;
}

// The contenders take turns, a block of round trips (then a burst) each, so that whatever else
// the machine does at some moment weighs on all of them alike.
async function compare(contenders) {
    const BLOCK = 1000;
    for (const c of contenders) await roundTrips(c, WARMUP);
    for (let done = 0; done < ROUNDS; done += BLOCK) {
        for (const c of contenders) c.rtts.push(...(await roundTrips(c, Math.min(BLOCK, ROUNDS - done))));
    }
    for (let i = 0; i < 3; i++) {
        for (const c of contenders) c.rates.push(await burst(c, BURST));
    }
    for (const c of contenders) await c.close();
    return contenders.map((c) => summary(c.name, c.rtts, c.rates.sort((a, b) => a - b)[1]));
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
    const contenders = [await drover(0)];
    if (BUSY_POLL_US > 0) contenders.push(await drover(BUSY_POLL_US));
    contenders.push(await node());
    console.table(await compare(contenders));
    console.table([await benchRss()]);
})().catch((e) => {
    console.error(e);
    process.exitCode = 1;
});
