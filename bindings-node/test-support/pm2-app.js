'use strict';

// A PM2-style app that knows nothing of drover: an HTTP server, `process.send('ready')` once
// booted (200 ms after listening), and on the message 'shutdown' it closes and exits by itself.
const http = require('node:http');

const server = http.createServer((req, res) => res.end(String(process.pid)));
server.listen(0, '127.0.0.1', () => {
    process.send({ listening: server.address().port, at: Date.now() });
    setTimeout(() => process.send('ready'), 200);
});
process.on('message', (msg) => {
    if (msg === 'shutdown') server.close(() => process.exit(0));
    else process.send({ echo: msg });
});
