'use strict';

// drain(server) on a real HTTP server, in this process, with raw keep-alive clients.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const { once } = require('node:events');
const { drain } = require('..');

/** An HTTP server on a random loopback port; /slow?ms=N answers after N ms, /never never. */
async function serve() {
    const server = http.createServer((req, res) => {
        const slow = /^\/slow\?ms=(\d+)/.exec(req.url);
        if (req.url === '/never') return;
        if (slow) setTimeout(() => res.end('slow'), Number(slow[1]));
        else res.end('ok');
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    return server;
}

/** A raw keep-alive connection that parses the responses it gets and records how it ended. */
async function connect(port) {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const conn = { socket, responses: [], ended: null, buffer: '' };
    socket.setEncoding('latin1');
    socket.on('data', (d) => {
        conn.buffer += d;
        for (;;) {
            const head = conn.buffer.indexOf('\r\n\r\n');
            if (head < 0) break;
            const headers = conn.buffer.slice(0, head);
            const length = Number(/content-length: (\d+)/i.exec(headers)[1]);
            if (conn.buffer.length < head + 4 + length) break;
            conn.responses.push({
                status: Number(headers.split(' ')[1]),
                connection: (/\r\nconnection: ([^\r]*)/i.exec(headers) || [])[1],
                body: conn.buffer.slice(head + 4, head + 4 + length),
            });
            conn.buffer = conn.buffer.slice(head + 4 + length);
        }
    });
    conn.closed = new Promise((resolve) => {
        socket.on('error', (e) => { conn.ended = e.code; });
        socket.on('close', () => resolve(conn.ended || 'closed'));
    });
    conn.send = (path) => socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    conn.answered = async (n) => {
        const deadline = Date.now() + 5000;
        while (conn.responses.length < n) {
            if (Date.now() > deadline) throw new Error(`${conn.responses.length} responses, expected ${n}`);
            await new Promise((r) => setTimeout(r, 5));
        }
    };
    return conn;
}

test('a request already on the wire when drain starts is answered with Connection: close, not reset', async () => {
    const server = await serve();
    const conn = await connect(server.address().port);
    conn.send('/');
    await conn.answered(1);
    assert.equal(conn.responses[0].connection, 'keep-alive');
    // The next request is in the server's receive buffer, not yet read, when the stop comes.
    conn.send('/');
    const stats = await drain(server, { idleGrace: 0 });
    assert.equal(await conn.closed, 'closed');
    assert.equal(conn.responses.length, 2, 'the racing request was answered');
    assert.deepEqual(conn.responses[1], { status: 200, connection: 'close', body: 'ok' });
    assert.equal(stats.closedIdle, 0);
    assert.equal(stats.timedOut, false);
});

test('for contrast, Node\'s own server.close() loses that request (the keep-alive race drain avoids)', async () => {
    const server = await serve();
    const conn = await connect(server.address().port);
    conn.send('/');
    await conn.answered(1);
    conn.send('/');
    server.close();
    await conn.closed;
    assert.equal(conn.responses.length, 1, 'Node closed the connection with the request unanswered');
});

test('a request in progress completes with Connection: close; new connections are no longer accepted', async () => {
    const server = await serve();
    const { port } = server.address();
    const conn = await connect(port);
    const arrived = once(server, 'request');
    conn.send('/slow?ms=150');
    await arrived;
    const drained = drain(server);
    await assert.rejects(connect(port), { code: 'ECONNREFUSED' }, 'this server stopped accepting');
    const stats = await drained;
    assert.deepEqual(conn.responses, [{ status: 200, connection: 'close', body: 'slow' }]);
    assert.equal(await conn.closed, 'closed');
    assert.equal(stats.connections, 1);
    assert.equal(stats.closedIdle, 0);
    assert.equal(drain(server), drained, 'calling it again returns the same promise');
});

test('an idle keep-alive connection is closed once quiet for idleGrace; drain resolves when it is gone', async () => {
    const server = await serve();
    const conn = await connect(server.address().port);
    conn.send('/');
    await conn.answered(1);
    const quietSince = Date.now();
    const stats = await drain(server, { idleGrace: 200 });
    assert.ok(Date.now() - quietSince >= 195, `closed after ${Date.now() - quietSince} ms of quiet`);
    assert.equal(await conn.closed, 'closed', 'a clean close, not a reset');
    assert.equal(stats.closedIdle, 1);
    assert.equal(stats.destroyed, 0);
});

test('a connection already quiet at the stop is not closed then: the request a pooling client sends on it when its busy one gets `Connection: close` is answered', async () => {
    const server = await serve();
    // Followed from the start, as drover follows every server listened on in a worker (a server
    // drain never saw counts its connections as quiet from the drain's start).
    require('../lib/drain').track(server);
    const { port } = server.address();
    const pooled = await connect(port);
    pooled.send('/');
    await pooled.answered(1);
    // `pooled` sits unused for longer than idleGrace, as a spare connection in a client's pool
    // does, while `busy` serves; the stop comes with a request in progress on `busy`.
    const busy = await connect(port);
    busy.send('/slow?ms=300');
    await busy.answered(1);
    const arrived = once(server, 'request');
    busy.send('/slow?ms=10');
    await arrived;
    const drained = drain(server, { idleGrace: 300 });
    await busy.answered(2);
    assert.equal(busy.responses[1].connection, 'close');
    // The client's next request goes to the other connection of its pool, at once.
    pooled.send('/');
    const stats = await drained;
    assert.equal(await pooled.closed, 'closed');
    assert.equal(pooled.responses.length, 2, 'the request sent after the stop was answered');
    assert.deepEqual(pooled.responses[1], { status: 200, connection: 'close', body: 'ok' });
    assert.equal(stats.closedIdle, 0);
});

test('drain gives up at its timeout and destroys what is left', async () => {
    const server = await serve();
    const conn = await connect(server.address().port);
    const arrived = once(server, 'request');
    conn.send('/never');
    await arrived;
    const stats = await drain(server, { timeout: 200 });
    assert.equal(stats.timedOut, true);
    assert.equal(stats.destroyed, 1);
    assert.ok(stats.ms >= 195, `${stats.ms} ms`);
    await conn.closed;
    assert.equal(conn.responses.length, 0);
});

test('drain rejects what is not a server, and bad options, with a TypeError', async () => {
    await assert.rejects(drain({}), TypeError);
    const server = await serve();
    await assert.rejects(drain(server, { timeout: -1 }), /timeout must be a finite number/);
    await drain(server);
});
