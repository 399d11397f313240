'use strict';

// Which prebuilt package carries the native half of drover (the N-API addon and the `drover`
// command) for this machine, as napi-rs projects name them: one npm package per platform,
// `drover-<os>-<cpu>[-<libc>]`, each an optionalDependency of `drover` that npm installs only where
// its `os`/`cpu`/`libc` match. The release workflow (.github/workflows/release.yml) builds them;
// `npm run build` fills this machine's in npm/<platform>/.
const fs = require('node:fs');
const path = require('node:path');

/** Every platform a prebuilt package is published for: drover needs Linux (pidfd, cgroups). */
const PLATFORMS = Object.freeze([
    'linux-x64-gnu',
    'linux-arm64-gnu',
    'linux-x64-musl',
    'linux-arm64-musl',
]);

/** 'gnu' or 'musl' on Linux (what Node itself was linked against), null elsewhere. */
function linuxLibc() {
    if (process.platform !== 'linux') return null;
    // Node's own report says which glibc it runs on; a musl Node has none.
    const header = process.report && typeof process.report.getReport === 'function'
        ? process.report.getReport().header
        : {};
    if (header.glibcVersionRuntime) return 'gnu';
    try {
        return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl') ? 'musl' : 'gnu';
    } catch {
        return 'gnu';
    }
}

/** This machine's platform name, e.g. 'linux-x64-gnu' (whether or not a package exists for it). */
function currentPlatform({ platform = process.platform, arch = process.arch, libc = linuxLibc() } = {}) {
    return platform === 'linux' ? `${platform}-${arch}-${libc || 'gnu'}` : `${platform}-${arch}`;
}

/** The npm package name for a platform. */
function packageName(platform) {
    return `drover-${platform}`;
}

/** The addon's file name inside its platform package. */
function addonFile(platform) {
    return `drover.${platform}.node`;
}

/**
 * The directory of this machine's platform package, or an Error saying what is missing and what
 * to do: the supported platforms, and how to build from source (naming what that needs, and
 * whether cargo was found).
 */
function platformPackageDir(options = {}) {
    const platform = currentPlatform(options);
    const name = packageName(platform);
    const resolve = options.resolve || ((request) => require.resolve(request));
    if (PLATFORMS.includes(platform)) {
        try {
            return { platform, dir: path.dirname(resolve(`${name}/package.json`)) };
        } catch {
            // Not installed: npm skipped it (--no-optional, --omit=optional, or a lockfile made on
            // another platform); the error below says so.
        }
    }
    return { platform, error: new Error(missingMessage(platform, name, options)) };
}

function missingMessage(platform, name, { hasCargo = cargoOnPath } = {}) {
    const supported = PLATFORMS.includes(platform);
    const lines = [
        supported
            ? `drover: the prebuilt package for this platform, ${name}, is not installed ` +
              '(npm skips optional dependencies with --omit=optional or --no-optional, or when ' +
              'package-lock.json was made on another platform). Reinstall with optional ' +
              `dependencies: \`npm install drover\` (or \`npm install ${name}\`).`
            : `drover: no prebuilt package for ${platform}. Prebuilt packages exist for: ` +
              `${PLATFORMS.join(', ')}.`,
    ];
    const cargo = hasCargo();
    lines.push(
        'To build it from source instead you need Rust (cargo, 1.88 or newer), a C compiler and ' +
            'git' + (cargo ? ` (cargo found: ${cargo})` : ' (cargo is not on PATH: https://rustup.rs)') +
            ': `git clone https://github.com/drover-rs/drover && cd drover/bindings-node && npm ci && ' +
            'npm run build:release`, then set DROVER_NODE_ADDON=<clone>/target/release/libdrover_node.so ' +
            '(and DROVER_BINARY=<clone>/target/release/drover for the command).',
    );
    return lines.join('\n');
}

/** The path of `cargo` on PATH, or null. */
function cargoOnPath() {
    for (const dir of (process.env.PATH || '').split(path.delimiter)) {
        if (!dir) continue;
        const candidate = path.join(dir, 'cargo');
        try {
            fs.accessSync(candidate, fs.constants.X_OK);
            return candidate;
        } catch {
            // not in this directory
        }
    }
    return null;
}

module.exports = { PLATFORMS, currentPlatform, packageName, addonFile, platformPackageDir, missingMessage };
