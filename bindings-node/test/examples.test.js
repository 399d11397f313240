'use strict';

// Every example in examples/node runs, demonstrates, and exits by itself with code 0.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { root, runNode } = require('../test-support/helpers');

const examples = {
    'cluster.js': [
        /one port for all: 127\.0\.0\.1:1934\n(hello from pid \d+\n){4}kill -9 \d+\n/,
        // The exit event and the request answered by another worker come in either order.
        /kill -9 \d+\n[\s\S]*during the restart: hello from pid \d+\n[\s\S]*worker 2 restarted/,
        /kill -9 \d+\n[\s\S]*worker 2 exited: ExternalSignal \{"signal":"SIGKILL"\}\n[\s\S]*worker 2 restarted[\s\S]*master SHUT_DOWN/,
    ],
    'multi-app.js': /multi-app-cluster foo from pid \d+ \| multi-app-cluster bar from pid \d+ \| multi-app-cluster baz from pid \d+[\s\S]*all masters shut down/,
    'rescale.js': /rescaled to 4[\s\S]*rescaled to 1; worker ids left: 1\n/,
    'graceful-reload.js': /reloaded: 1:\d+ 2:\d+ -> 3:\d+ 4:\d+\n[1-9]\d+ requests served around the reload, 0 failed/,
    'single-instance.js': /worker 2 STARTED\nworker 1 exited/,
    'shared-state.js': /answers: hello 42, hello 42, hello 42; loaded 1 time\(s\)\napp status: 1 DONE, 2 DONE, 3 DONE\nstatus functions: 1 2 3\n/,
    'requests.js': /worker 2: \{ askedBy: 0, by: 2, square: 49 \}\nany: \{ askedBy: 0, by: \d, square: 9 \}\nworker 9: no_such_target\nworker 1 says \{ 'from 3': 'total 18' \}\n/,
};

for (const [file, expected] of Object.entries(examples)) {
    test(`examples/node/${file} runs and exits by itself`, async () => {
        const r = await runNode(['--unhandled-rejections=strict', path.join(root, 'examples', 'node', file)], { timeoutMs: 30000 });
        assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
        for (const pattern of [expected].flat()) assert.match(r.stdout, pattern);
    });
}
