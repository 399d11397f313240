#!/usr/bin/env node
'use strict';

// `npm run build`: builds the workspace (the addon, the `drover` command and the test worker) with
// cargo, copies the addon library to bindings-node/drover.node, and fills this platform's prebuilt
// package, npm/<platform>/ (the addon as drover.<platform>.node, the command as bin/drover, the
// licence files), which `npm run pack` packs. Honours CARGO_TARGET_DIR; `--release` builds release.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { PLATFORMS, currentPlatform, addonFile } = require('../lib/platform');

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
const out = path.join(target, release ? 'release' : 'debug');
const lib = process.platform === 'darwin' ? 'libdrover_node.dylib' : 'libdrover_node.so';

/** Copies to a temporary name and renames: a running process keeps the old mapping intact. */
function install(from, to, { stripDebug = false } = {}) {
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.copyFileSync(from, `${to}.tmp`);
    if (stripDebug) {
        // A debug build carries ~60 MB of debug info per binary: a package does without it.
        spawnSync('strip', ['--strip-debug', `${to}.tmp`], { stdio: 'ignore' });
    }
    fs.renameSync(`${to}.tmp`, to);
    console.log(`drover build: ${from} -> ${to}`);
}

install(path.join(out, lib), path.join(__dirname, '..', 'drover.node'));

const platform = currentPlatform();
if (PLATFORMS.includes(platform)) {
    const dir = path.join(__dirname, '..', 'npm', platform);
    install(path.join(out, lib), path.join(dir, addonFile(platform)), { stripDebug: !release });
    install(path.join(out, 'drover'), path.join(dir, 'bin', 'drover'), { stripDebug: !release });
    for (const license of ['LICENSE-MIT', 'LICENSE-APACHE']) {
        install(path.join(root, license), path.join(dir, license));
    }
} else {
    console.log(`drover build: no prebuilt package is made for ${platform} (only ${PLATFORMS.join(', ')})`);
}
