'use strict';

// Loads the native half of drover (the N-API addon built from this folder's Rust crate).
const path = require('node:path');
const fs = require('node:fs');

const ADDON = process.env.DROVER_NODE_ADDON || path.join(__dirname, '..', 'drover.node');

function load() {
    if (!fs.existsSync(ADDON)) {
        throw new Error(
            `drover: the native addon ${ADDON} is missing. Build it with \`npm run build\` ` +
            '(in bindings-node/; it runs `cargo build --workspace` and copies the library there).',
        );
    }
    // dlopen rather than require: DROVER_NODE_ADDON may name a cargo output (a .so) directly.
    const addon = { exports: {} };
    process.dlopen(addon, ADDON);
    return addon.exports;
}

module.exports = load();
