#!/usr/bin/env node
'use strict';

// `npm run build`: builds the workspace (the addon and the test worker) with cargo and copies the
// addon library to bindings-node/drover.node. Honours CARGO_TARGET_DIR; `--release` builds release.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..');
const release = process.argv.includes('--release');
const args = ['build', '--workspace', ...(release ? ['--release'] : [])];
const r = spawnSync('cargo', args, { cwd: root, stdio: 'inherit' });
if (r.error) {
    console.error(`drover build: could not run cargo: ${r.error.message}`);
    process.exit(1);
}
if (r.status !== 0) {
    process.exit(r.status === null ? 1 : r.status);
}
const target = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, 'target');
const lib = process.platform === 'darwin' ? 'libdrover_node.dylib' : 'libdrover_node.so';
const from = path.join(target, release ? 'release' : 'debug', lib);
const to = path.join(__dirname, '..', 'drover.node');
// Copy to a temporary name and rename: a running process keeps the old mapping intact.
fs.copyFileSync(from, `${to}.tmp`);
fs.renameSync(`${to}.tmp`, to);
console.log(`drover build: ${from} -> ${to}`);
