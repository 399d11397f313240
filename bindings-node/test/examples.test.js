'use strict';

// Every example in examples/node runs, demonstrates, and exits by itself with code 0.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { root, runNode } = require('../test-support/helpers');

const examples = {
    'cluster.js': /worker 2 exited: ExternalSignal \{"signal":"SIGKILL"\}\nworker 2 restarted[\s\S]*master SHUT_DOWN/,
    'multi-app.js': /multi-app-cluster foo[\s\S]*all masters shut down/,
    'rescale.js': /rescaled to 4[\s\S]*rescaled to 1; worker ids left: 1\n/,
    'graceful-reload.js': /reloaded: 1:\d+ 2:\d+ -> 3:\d+ 4:\d+/,
    'single-instance.js': /worker 2 STARTED\nworker 1 exited/,
};

for (const [file, expected] of Object.entries(examples)) {
    test(`examples/node/${file} runs and exits by itself`, async () => {
        const r = await runNode(['--unhandled-rejections=strict', path.join(root, 'examples', 'node', file)], { timeoutMs: 30000 });
        assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
        assert.match(r.stdout, expected);
    });
}
