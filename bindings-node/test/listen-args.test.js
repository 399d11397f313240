'use strict';

// Which server.listen() calls drover takes over (TCP port forms) and which stay Node's own.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { tcpRequest } = require('../lib/listen');

const cb = () => {};
const req = (port, extra = {}) => ({ port, host: undefined, backlog: undefined, cb: null, signal: undefined, ...extra });

test('every TCP port form of listen() is taken over, as Node reads its arguments', () => {
    assert.deepEqual(tcpRequest([]), req(0));
    assert.deepEqual(tcpRequest([cb]), req(0, { cb }));
    assert.deepEqual(tcpRequest([null, cb]), req(0, { cb }));
    assert.deepEqual(tcpRequest([8080]), req(8080));
    assert.deepEqual(tcpRequest(['8080']), req(8080));
    assert.deepEqual(tcpRequest([8080, cb]), req(8080, { cb }));
    assert.deepEqual(tcpRequest([8080, '127.0.0.1', cb]), req(8080, { host: '127.0.0.1', cb }));
    assert.deepEqual(tcpRequest([8080, 511]), req(8080, { backlog: 511 }));
    assert.deepEqual(tcpRequest([8080, '::1', 100, cb]), req(8080, { host: '::1', backlog: 100, cb }));
    assert.deepEqual(tcpRequest([{ port: 8080, host: 'localhost' }, cb]), req(8080, { host: 'localhost', cb }));
    assert.deepEqual(tcpRequest([{ port: undefined }]), req(0));
    assert.deepEqual(tcpRequest([{ port: 0, backlog: 64 }]), req(0, { backlog: 64 }));
});

test('paths, fds, handles, private sockets and invalid arguments are left to Node', () => {
    for (const args of [
        ['/tmp/app.sock'],
        ['-1'],
        [{ path: '/tmp/app.sock' }],
        [{ fd: 3 }],
        [{ handle: {} }],
        [net.createServer()],
        [{ port: 8080, exclusive: true }],
        [{ port: 8080, ipv6Only: true }],
        [{ port: 8080, reusePort: true }],
        [{}],
        [70000],
        [8080.5],
        [true],
        [''],
    ]) {
        assert.equal(tcpRequest(args), null, `listen(${JSON.stringify(args)}) is Node's own`);
    }
});
