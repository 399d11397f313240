'use strict';

// A worker's stdout and stderr are its master's (docs/PROTOCOL.md §2.3), also under a Node master,
// which marks its own fds 0-2 close-on-exec at start-up: a worker's console.log and console.error
// arrive where the master's own output goes, a pipe or a file.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { fixture, runNode } = require('../test-support/helpers');

function assertWorkersWrote(stdout, stderr) {
    const pids = stdout.match(/master started ([\d,]+)/)[1].split(',');
    for (const pid of pids) {
        assert.match(stdout, new RegExp(`^worker ${pid} to stdout$`, 'm'), `stdout:\n${stdout}`);
        assert.match(stderr, new RegExp(`^worker ${pid} to stderr$`, 'm'), `stderr:\n${stderr}`);
    }
    assert.match(stdout, /master shut down/);
}

test("a Node master's workers write to the master's stdout and stderr when those are pipes", async () => {
    const r = await runNode([fixture('print-master.js')]);
    assert.equal(r.code, 0, r.stderr);
    assertWorkersWrote(r.stdout, r.stderr);
});

test("a Node master's workers write to the master's stdout and stderr when those are files", async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-output-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const out = fs.openSync(path.join(dir, 'out'), 'w');
    const err = fs.openSync(path.join(dir, 'err'), 'w');
    const child = spawn(process.execPath, [fixture('print-master.js')], { stdio: ['ignore', out, err] });
    fs.closeSync(out);
    fs.closeSync(err);
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    const [code] = await new Promise((resolve) => child.on('exit', (...a) => resolve(a)));
    clearTimeout(timer);
    const stdout = fs.readFileSync(path.join(dir, 'out'), 'utf8');
    const stderr = fs.readFileSync(path.join(dir, 'err'), 'utf8');
    assert.equal(code, 0, stderr);
    assertWorkersWrote(stdout, stderr);
});
