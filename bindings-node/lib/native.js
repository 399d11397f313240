'use strict';

// Loads the native half of drover (the N-API addon built from this folder's Rust crate), from the
// first of:
// 1. DROVER_NODE_ADDON, a path (e.g. a cargo output, target/release/libdrover_node.so);
// 2. ./drover.node beside this package, which `npm run build` puts there in a checkout;
// 3. this platform's prebuilt package (drover-linux-x64-gnu, ...), installed by npm as an
//    optionalDependency (lib/platform.js).
const path = require('node:path');
const fs = require('node:fs');
const { platformPackageDir, addonFile } = require('./platform');

function addonPath() {
    if (process.env.DROVER_NODE_ADDON) return process.env.DROVER_NODE_ADDON;
    const local = path.join(__dirname, '..', 'drover.node');
    if (fs.existsSync(local)) return local;
    const found = platformPackageDir();
    if (found.error) throw found.error;
    return path.join(found.dir, addonFile(found.platform));
}

function load() {
    const file = addonPath();
    if (!fs.existsSync(file)) {
        throw new Error(
            `drover: the native addon ${file} is missing. In a checkout, build it with \`npm run build\` ` +
            '(in bindings-node/; it runs `cargo build --workspace` and copies the library there).',
        );
    }
    // dlopen rather than require: DROVER_NODE_ADDON may name a cargo output (a .so) directly.
    const addon = { exports: {} };
    process.dlopen(addon, file);
    Object.defineProperty(addon.exports, '__file', { value: file });
    return addon.exports;
}

module.exports = load();
