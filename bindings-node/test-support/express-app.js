'use strict';

// An Express app that knows nothing of drover (as PM2 runs it): it listens on PORT and answers
// every request with its pid, its instance index and its NODE_OPTIONS. /slow?ms=N answers after
// N ms. With APP_READY_IPC=1 it also says `process.send('ready')` once listening (a PM2
// `wait_ready` app).
const express = require('express');

const app = express();
app.get('/slow', (req, res) => setTimeout(() => res.send(String(process.pid)), Number(req.query.ms) || 0));
app.get('/env', (req, res) =>
    res.json({
        pid: process.pid,
        instance: process.env.NODE_APP_INSTANCE,
        droverInstance: process.env.DROVER_INSTANCE,
        nodeOptions: process.env.NODE_OPTIONS || null,
        maxOldSpace: require('node:v8').getHeapStatistics().heap_size_limit,
    }),
);
app.get('/', (req, res) => res.send(String(process.pid)));
app.listen(Number(process.env.PORT), () => {
    if (process.env.APP_READY_IPC === '1' && process.send) process.send('ready');
});
