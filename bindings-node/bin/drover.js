#!/usr/bin/env node
'use strict';

// The `drover` command of the npm package: runs the native binary from this platform's prebuilt
// package (or DROVER_BINARY) with this process's arguments, stdio and environment, passes on the
// signals a supervisor is driven by, and exits as it did.
const { spawn } = require('node:child_process');
const path = require('node:path');
const { platformPackageDir } = require('../lib/platform');

function binaryPath() {
    if (process.env.DROVER_BINARY) return process.env.DROVER_BINARY;
    const found = platformPackageDir();
    if (found.error) {
        console.error(found.error.message);
        process.exit(1);
    }
    return path.join(found.dir, 'bin', 'drover');
}

const binary = binaryPath();
const child = spawn(binary, process.argv.slice(2), { stdio: 'inherit' });
child.on('error', (err) => {
    console.error(`drover: cannot run ${binary}: ${err.message}`);
    process.exit(1);
});
// A terminal's Ctrl-C reaches both (same process group); `kill <this pid>` reaches only us.
const forwarded = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];
for (const signal of forwarded) {
    process.on(signal, () => child.kill(signal));
}
child.on('exit', (code, signal) => {
    if (signal) {
        for (const s of forwarded) process.removeAllListeners(s);
        process.kill(process.pid, signal);
        return;
    }
    process.exit(code === null ? 1 : code);
});
