'use strict';

// drover as a new user installs it: the packages `npm run pack` makes (`drover` and this platform's
// prebuilt package, each by `npm pack`), installed from their tarballs into an empty directory,
// offline, with no cargo on PATH; then required, imported as ESM, type-checked with `tsc --strict`,
// used to supervise a worker that requires it too, and run as `npx drover --version`; and installed
// with `npm install -g`, which gives the `drover` command.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { PLATFORMS, currentPlatform, packageName, addonFile, missingMessage } = require('../lib/platform');

const here = path.resolve(__dirname, '..');
const version = require('../package.json').version;
const platform = currentPlatform();
// Generous: a loaded 2-CPU machine packs ~25 MB of binaries.
const DEADLINE_MS = 120000;

/** Runs a command to completion; fails the test with its output if it fails. */
function run(command, args, options = {}) {
    const r = spawnSync(command, args, { encoding: 'utf8', timeout: DEADLINE_MS, ...options });
    if (r.error) throw r.error;
    assert.equal(r.status, 0, `${command} ${args.join(' ')} failed (${r.status}, ${r.signal}):\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
}

/** The real path of `name` on PATH. */
function which(name) {
    for (const dir of (process.env.PATH || '').split(path.delimiter)) {
        const candidate = path.join(dir, name);
        if (dir && fs.existsSync(candidate)) return fs.realpathSync(candidate);
    }
    throw new Error(`${name} is not on PATH`);
}

/**
 * An environment whose PATH holds node, npm, npx and sh only (links in `dir`): no cargo, whatever the
 * machine has in /usr/bin. Nothing of the checkout leaks in (DROVER_NODE_ADDON, DROVER_BINARY).
 */
function bareEnv(dir) {
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    for (const tool of ['npm', 'npx', 'sh']) fs.symlinkSync(which(tool), path.join(bin, tool));
    const env = { ...process.env, PATH: bin, npm_config_update_notifier: 'false' };
    for (const name of Object.keys(env)) {
        if (name.startsWith('DROVER_') || name.startsWith('npm_package_') || name === 'NODE_EXTRA_CA_CERTS') delete env[name];
    }
    return env;
}

function tarList(tarball) {
    return run('tar', ['tzf', tarball]).split('\n').filter(Boolean);
}

test(`the packed packages install offline into an empty directory and work without cargo (${platform})`, { timeout: 4 * DEADLINE_MS }, () => {
    assert.ok(PLATFORMS.includes(platform), `no prebuilt package is made for ${platform}`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-package-'));
    try {
        const tarballs = JSON.parse(run(process.execPath, [path.join(here, 'scripts', 'pack.js'), '--out', path.join(dir, 'dist')]));
        assert.deepEqual(tarballs.map((t) => path.basename(t)), [`drover-${version}.tgz`, `${packageName(platform)}-${version}.tgz`]);

        // What each package carries.
        const main = tarList(tarballs[0]);
        for (const file of ['index.js', 'index.d.ts', 'lib/native.js', 'lib/platform.js', 'bin/drover.js', 'LICENSE-MIT', 'LICENSE-APACHE', 'README.md']) {
            assert.ok(main.includes(`package/${file}`), `drover's package lacks ${file}: ${main}`);
        }
        assert.ok(!main.some((f) => f.endsWith('.node')), `drover's package carries an addon: ${main}`);
        const native = tarList(tarballs[1]);
        for (const file of [addonFile(platform), 'bin/drover', 'LICENSE-MIT', 'LICENSE-APACHE', 'package.json']) {
            assert.ok(native.includes(`package/${file}`), `${packageName(platform)} lacks ${file}: ${native}`);
        }

        const consumer = path.join(dir, 'consumer');
        fs.mkdirSync(consumer);
        fs.writeFileSync(path.join(consumer, 'package.json'), '{ "name": "consumer", "version": "1.0.0", "private": true }\n');
        const env = bareEnv(dir);
        const cargo = spawnSync('cargo', ['--version'], { env });
        assert.equal(cargo.error && cargo.error.code, 'ENOENT', 'cargo must not be on the consumer\'s PATH');
        run('npm', ['install', '--offline', '--no-audit', '--no-fund', ...tarballs], { cwd: consumer, env });

        const installed = JSON.parse(fs.readFileSync(path.join(consumer, 'node_modules', 'drover', 'package.json'), 'utf8'));
        assert.deepEqual(Object.keys(installed.optionalDependencies).sort(), PLATFORMS.map(packageName).sort());
        assert.equal(installed.scripts, undefined);
        assert.equal(installed.devDependencies, undefined);

        // require: the addon comes from the platform package (read from the process's own mappings).
        fs.writeFileSync(
            path.join(consumer, 'cjs.js'),
            `const drover = require('drover');
             const mapped = require('fs').readFileSync('/proc/self/maps', 'utf8').split('\\n')
                 .map((l) => l.split(/\\s+/).pop()).filter((f) => f.endsWith('.node'));
             let invalid = null;
             try { drover.MasterFactory.create({ script: 'worker.js', count: 0 }); } catch (e) { invalid = e.name; }
             console.log(JSON.stringify({ mapped: [...new Set(mapped)], invalid, factory: typeof drover.MasterFactory.create }));\n`,
        );
        const cjs = JSON.parse(run('node', ['cjs.js'], { cwd: consumer, env }));
        assert.deepEqual(cjs.mapped, [path.join(fs.realpathSync(consumer), 'node_modules', packageName(platform), addonFile(platform))]);
        assert.equal(cjs.invalid, 'InvalidConfigurationError');
        assert.equal(cjs.factory, 'function');

        // drover 1.0's module paths: its package had no `exports` map, and carried src/ and its
        // examples, which reach src/ from inside the package (`../../index`, `../../src/X` from
        // node_modules/drover/examples/<name>/). Each path is what `require('drover')` exports.
        const example = path.join(consumer, 'node_modules', 'drover', 'examples', 'v1');
        fs.mkdirSync(example, { recursive: true });
        fs.writeFileSync(
            path.join(example, 'main.js'),
            `const drover = require('drover');
             const wrong = [];
             const check = (p, v) => require(p) === v || wrong.push(p);
             for (const name of ['WorkerStatuses', 'ExitReasons', 'MasterFactory', 'Master', 'MessageBus']) {
                 check('drover/src/' + name, drover[name]);
                 check('../../src/' + name, drover[name]);
             }
             check('drover/src/WorkerStatuses.js', drover.WorkerStatuses);
             check('../../index', drover);
             for (const p of ['drover/src/Error', '../../src/Error']) {
                 if (require(p).InvalidConfigurationError !== drover.InvalidConfigurationError) wrong.push(p);
             }
             if (typeof drover.WorkerStatuses.STARTED !== 'number') wrong.push('WorkerStatuses.STARTED');
             console.log(JSON.stringify(wrong));\n`,
        );
        assert.deepEqual(JSON.parse(run('node', [path.join(example, 'main.js')], { cwd: consumer, env })), []);

        // import, as an ES module: named exports and the default export.
        fs.writeFileSync(
            path.join(consumer, 'esm.mjs'),
            `import drover, { MasterFactory, MessageBus, ExitReasons } from 'drover';
             console.log([typeof MasterFactory.create, typeof MessageBus, typeof ExitReasons.ExternalSignal, drover.MasterFactory === MasterFactory].join(' '));\n`,
        );
        assert.equal(run('node', ['esm.mjs'], { cwd: consumer, env }).trim(), 'function function function true');

        // A real master from the installed package supervising a worker that requires it too.
        fs.writeFileSync(
            path.join(consumer, 'worker.js'),
            `const { MessageBus } = require('drover');
             const mb = new MessageBus();
             mb.on('stop', () => mb.sendStopped());
             mb.on('quit', () => { mb.sendShuttedDown(); mb.close(); });
             mb.sendStarted();\n`,
        );
        fs.writeFileSync(
            path.join(consumer, 'master.js'),
            `const { MasterFactory } = require('drover');
             const master = MasterFactory.create({ script: require('path').join(__dirname, 'worker.js'), count: 2 });
             master.start()
                 .then(() => { console.log('started', master.getWorkers().length); return master.gracefulShutdown(); })
                 .then(() => console.log('shut down'))
                 .catch((e) => { console.error(e); process.exit(1); });\n`,
        );
        assert.equal(run('node', ['master.js'], { cwd: consumer, env }), 'started 2\nshut down\n');

        // tsc --strict on a consumer, resolving 'drover' through its `exports` and `types`: app.ts
        // passes, and wrong.ts's type error is found (or the types were not really checked).
        const tsc = path.join(here, 'node_modules', 'typescript', 'bin', 'tsc');
        const typeRoots = path.join(here, 'node_modules', '@types');
        const tsconfig = JSON.stringify({
            compilerOptions: { strict: true, noEmit: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', types: ['node'], typeRoots: [typeRoots] },
            files: ['app.ts', 'wrong.ts'],
        });
        fs.writeFileSync(
            path.join(consumer, 'app.ts'),
            `import { MasterFactory, ExitReasons, type Master } from 'drover';
             const master: Master = MasterFactory.create({ script: 'worker.js', count: 2 });
             master.on('worker-exit', (reason, id) => {
                 if (reason instanceof ExitReasons.ExternalSignal) void master.restartWorkerById(id);
             });
             export {};\n`,
        );
        fs.writeFileSync(path.join(consumer, 'wrong.ts'), `import { MasterFactory } from 'drover';\nconst n: number = MasterFactory.create({ script: 'w.js' });\nexport { n };\n`);
        fs.writeFileSync(path.join(consumer, 'tsconfig.json'), tsconfig);
        const checked = spawnSync('node', [tsc, '-p', 'tsconfig.json'], { cwd: consumer, env, encoding: 'utf8', timeout: DEADLINE_MS });
        const errors = checked.stdout.split('\n').filter((l) => /error TS/.test(l));
        assert.notEqual(checked.status, 0, 'tsc accepted a consumer with a type error');
        assert.equal(errors.length, 1, `app.ts must type-check and wrong.ts fail once:\n${checked.stdout}${checked.stderr}`);
        assert.match(errors[0], /^wrong\.ts.*Type 'Master' is not assignable to type 'number'/);

        // The command, through npx and the package's bin shim.
        assert.equal(run('npx', ['--no', '--', 'drover', '--version'], { cwd: consumer, env }).trim(), `drover ${version}`);

        // An unmodified app under the installed command: both workers listen on one PORT, which
        // needs the package's preload, found with its addon in the platform package (not beside
        // it, as in a checkout). Without it the second worker dies of EADDRINUSE. The worker that
        // finds both listening (a line each in listening.txt) sends drover SIGTERM: exit 0.
        fs.writeFileSync(
            path.join(consumer, 'plain.js'),
            `const fs = require('node:fs');
             require('node:http').createServer((req, res) => res.end('ok')).listen(Number(process.env.PORT), () => {
                 fs.appendFileSync('listening.txt', process.pid + '\\n');
                 if (fs.readFileSync('listening.txt', 'utf8').trim().split('\\n').length === 2) process.kill(process.ppid, 'SIGTERM');
             });\n`,
        );
        const port = String(20000 + (process.pid % 20000));
        const plain = spawnSync(
            path.join(consumer, 'node_modules', '.bin', 'drover'),
            ['run', '-n', '2', '--no-socket', '--', 'node', 'plain.js'],
            { cwd: consumer, env: { ...env, PORT: port }, encoding: 'utf8', timeout: DEADLINE_MS },
        );
        const listening = new Set(fs.readFileSync(path.join(consumer, 'listening.txt'), 'utf8').trim().split('\n'));
        assert.equal(plain.status, 0, `drover run: ${plain.status}\n${plain.stderr}`);
        assert.equal(listening.size, 2, `two workers listening on ${port}:\n${plain.stderr}`);
        assert.doesNotMatch(plain.stderr, /preload was not found/);

        // `npm install -g drover`, as a PM2 user would (into a prefix of its own): a `drover` command.
        const global = path.join(dir, 'global');
        run('npm', ['install', '--global', '--prefix', global, '--offline', '--no-audit', '--no-fund', ...tarballs], { cwd: dir, env });
        assert.equal(run(path.join(global, 'bin', 'drover'), ['--version'], { env }).trim(), `drover ${version}`);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

test('a plain `npm pack` of the checkout is refused, naming `npm run pack`', () => {
    const env = { ...process.env };
    delete env.DROVER_PACKING;
    const r = spawnSync('npm', ['pack', '--dry-run'], { cwd: here, env, encoding: 'utf8', timeout: DEADLINE_MS });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /pack with `npm run pack` \(scripts\/pack\.js\), not `npm pack`/);
});

test('without a prebuilt package, the error names the platform, the supported ones and how to build', () => {
    const unsupported = missingMessage('linux-riscv64-gnu', packageName('linux-riscv64-gnu'), { hasCargo: () => null });
    assert.match(unsupported, /no prebuilt package for linux-riscv64-gnu\. Prebuilt packages exist for: linux-x64-gnu, linux-arm64-gnu, linux-x64-musl, linux-arm64-musl\./);
    assert.match(unsupported, /cargo is not on PATH/);
    assert.match(unsupported, /npm run build:release/);
    const skipped = missingMessage('linux-x64-gnu', 'drover-linux-x64-gnu', { hasCargo: () => '/usr/bin/cargo' });
    assert.match(skipped, /drover-linux-x64-gnu, is not installed/);
    assert.match(skipped, /--omit=optional/);
    assert.match(skipped, /cargo found: \/usr\/bin\/cargo/);
    assert.equal(currentPlatform({ platform: 'linux', arch: 'arm64', libc: 'musl' }), 'linux-arm64-musl');
    assert.equal(currentPlatform({ platform: 'darwin', arch: 'arm64', libc: null }), 'darwin-arm64');
});
