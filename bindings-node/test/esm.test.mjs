// `import` from an ES module: every export of require('drover') is also a named export (Node finds
// a CommonJS module's named exports by reading its `module.exports = { ... }`).
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as drover from '../index.js';
import { MasterFactory, ExitReasons, WorkerStatuses, InvalidConfigurationError, drain, listenFds } from '../index.js';

const require = createRequire(import.meta.url);

test('every export of require("drover") is a named export of import', () => {
    const cjs = require('../index.js');
    const named = Object.keys(drover).filter((k) => k !== 'default');
    assert.deepEqual(named.sort(), Object.keys(cjs).sort());
    for (const name of named) assert.equal(drover[name], cjs[name], name);
    assert.equal(typeof MasterFactory.create, 'function');
    assert.equal(typeof ExitReasons.ExternalSignal, 'function');
    assert.equal(WorkerStatuses.STARTED, 3);
    assert.throws(() => MasterFactory.create({ count: 1 }), InvalidConfigurationError);
    assert.deepEqual(listenFds(), []);
    return assert.rejects(drain(null), TypeError);
});
