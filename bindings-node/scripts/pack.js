#!/usr/bin/env node
'use strict';

// `npm run pack`: the npm packages as they are published, packed with `npm pack`:
// - `drover`: staged in <target>/npm/drover/ from this folder's package.json `files`, with the
//   licence files and, in its package.json, one optionalDependency per platform package (at this
//   version) and neither scripts nor devDependencies. (Not in the package.json of the checkout:
//   there, `npm ci` would look for platform packages that are not published yet.)
// - this platform's prebuilt package, npm/<platform>/, as `npm run build` filled it.
//
//   node scripts/pack.js [--out DIR] [--no-platform]
//   (--guard: the checkout's `prepack`, refusing a plain `npm pack`)
//
// Prints the tarballs' paths as a JSON array. --no-platform packs `drover` alone (the release
// workflow packs each platform package where it was built).
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { PLATFORMS, currentPlatform, packageName, addonFile } = require('../lib/platform');

if (process.argv.includes('--guard')) {
    // `prepack` of the checkout's package.json: a plain `npm pack` here would make a package
    // without its platform packages, which fails on every consumer's machine.
    if (!process.env.DROVER_PACKING) {
        console.error(
            'drover: pack with `npm run pack` (scripts/pack.js), not `npm pack`: it stages the package ' +
                'with its platform packages as optionalDependencies, and packs this platform\'s.',
        );
        process.exit(1);
    }
    process.exit(0);
}

const here = path.resolve(__dirname, '..');
const root = path.resolve(here, '..');
const argv = process.argv.slice(2);
const outIndex = argv.indexOf('--out');
const outDir = path.resolve(outIndex >= 0 && argv[outIndex + 1] ? argv[outIndex + 1] : path.join(here, 'dist'));
const withPlatform = !argv.includes('--no-platform');

function fail(message) {
    console.error(`drover pack: ${message}`);
    process.exit(1);
}

function npmPack(dir) {
    const r = spawnSync('npm', ['pack', '--json', '--pack-destination', outDir], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, DROVER_PACKING: '1' },
    });
    if (r.status !== 0) fail(`npm pack in ${dir} failed:\n${r.stderr}`);
    const [result] = JSON.parse(r.stdout);
    return path.join(outDir, result.filename);
}

const manifest = JSON.parse(fs.readFileSync(path.join(here, 'package.json'), 'utf8'));
const target = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, 'target');
const stage = path.join(target, 'npm', manifest.name);
fs.rmSync(stage, { recursive: true, force: true });
fs.mkdirSync(stage, { recursive: true });
for (const entry of [...manifest.files, 'README.md']) {
    if (entry.startsWith('LICENSE-')) continue;
    fs.cpSync(path.join(here, entry), path.join(stage, entry), { recursive: true });
}
for (const license of ['LICENSE-MIT', 'LICENSE-APACHE']) {
    fs.copyFileSync(path.join(root, license), path.join(stage, license));
}
// drover 1.0's files where its package had them (src/WorkerStatuses.js...), each requiring its
// lib/v1/ twin: its examples, run from inside the package, reach them as `../../src/X`, past the
// `exports` map. (Not in the checkout: bindings-node/src/ is the addon's Rust source.)
const v1 = path.join(here, 'lib', 'v1');
for (const file of fs.readdirSync(v1, { recursive: true })) {
    if (!file.endsWith('.js')) continue;
    const stub = path.join(stage, 'src', file);
    const twin = path.relative(path.dirname(stub), path.join(stage, 'lib', 'v1', file));
    fs.mkdirSync(path.dirname(stub), { recursive: true });
    fs.writeFileSync(stub, `'use strict';\n\n// drover 1.0's path (lib/v1/README.md).\nmodule.exports = require(${JSON.stringify(twin.startsWith(".") ? twin : `./${twin}`)});\n`);
}
const published = { ...manifest };
delete published.scripts;
delete published.devDependencies;
published.files = [...manifest.files, 'src/'];
published.optionalDependencies = Object.fromEntries(PLATFORMS.map((p) => [packageName(p), manifest.version]));
fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(published, null, 2)}\n`);

fs.mkdirSync(outDir, { recursive: true });
const tarballs = [npmPack(stage)];
if (withPlatform) {
    const platform = currentPlatform();
    if (!PLATFORMS.includes(platform)) fail(`no prebuilt package is made for ${platform}`);
    const dir = path.join(here, 'npm', platform);
    for (const file of [addonFile(platform), 'bin/drover', 'LICENSE-MIT']) {
        if (!fs.existsSync(path.join(dir, file))) fail(`${path.join(dir, file)} is missing: run \`npm run build\` first`);
    }
    const platformManifest = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    if (platformManifest.version !== manifest.version) {
        fail(`${dir}/package.json is version ${platformManifest.version}, drover is ${manifest.version}`);
    }
    tarballs.push(npmPack(dir));
}
console.log(JSON.stringify(tarballs));
