'use strict';

// Shared by requests.js and request-worker.js (the master and the worker time the same way).

/** Runs `once(i)` n times, one at a time; resolves with each run's time in nanoseconds. */
async function timed(n, once) {
    const ns = [];
    for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint();
        await once(i);
        ns.push(Number(process.hrtime.bigint() - t0));
    }
    return ns;
}

module.exports = { timed };
