'use strict';

// An HTTP worker that counts its warm-up requests (PROTOCOL.md §5.11), for
// test/reconfigure.test.js: each answer is { pid, warm, client, cold } — warm-up hits (header
// x-drover-warmup), client hits, and client hits that came before the warm-up was complete (must
// stay 0). Listens on PORT through the master's shared socket; message { cmd: 'counts' } replies
// { counts }.
const http = require('node:http');
const { MessageBus } = require('..');

const mb = new MessageBus();
const wanted = Number(process.env.WARMUP_REQUESTS);
const counts = { pid: process.pid, warm: 0, client: 0, cold: 0, paths: [] };
const server = http.createServer((req, res) => {
    if (req.headers['x-drover-warmup']) {
        counts.warm += 1;
        if (!counts.paths.includes(req.url)) counts.paths.push(req.url);
    } else {
        counts.client += 1;
        if (counts.warm < wanted) counts.cold += 1;
    }
    res.end(JSON.stringify(counts));
});
server.listen(Number(process.env.PORT), () => mb.sendStarted());
mb.on('message', (msg) => {
    if (msg && msg.cmd === 'counts') mb.sendMessage({ counts });
});
mb.on('stop', () => server.close(() => mb.sendStopped()));
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
    process.exit(0);
});
