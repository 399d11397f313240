// The monitor page of `drover run --monitor`, in headless Chromium with real clicks that change
// real workers: a real `drover` supervising `sleep` workers, checked through `drover status`
// and /readyz, never through the page alone.
//
// Needs Debian's chromium at /usr/bin/chromium (scripts/test.sh installs it when it can, else
// says loudly that this is skipped) and `target/debug/drover` (or $DROVER_BIN).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const CHROMIUM = process.env.DROVER_CHROMIUM || '/usr/bin/chromium';
const DROVER = process.env.DROVER_BIN || path.join(__dirname, '..', '..', 'target', 'debug', 'drover');
// Generous: a loaded 2-CPU machine.
const WAIT_MS = 30000;
const TOKEN = 'browser-test-token-0123456789';

const missing = !fs.existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM}` : !fs.existsSync(DROVER) ? `no drover at ${DROVER} (cargo build)` : null;
if (missing) {
  console.error(`\n!!! SKIPPED: the monitor page's browser test: ${missing} !!!\n`);
}

/** Polls `check` (async, truthy when done) until WAIT_MS; fails with `what`. */
async function until(what, check) {
  const end = Date.now() + WAIT_MS;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function startDrover(dir) {
  const socket = path.join(dir, 'ctl.sock');
  const child = spawn(
    DROVER,
    ['run', '--socket', socket, '--http', '127.0.0.1:0', '--monitor', '--monitor-token', TOKEN,
      '-n', '2', '--name', 'web', '--ready', 'spawn', '--', 'sleep', '1000'],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DROVER_TIMESTAMPS: 'never' } },
  );
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const address = until('drover to listen and start', async () => {
    const m = out.match(/http listening on (\S+)/);
    return m && out.includes('every group is STARTED') ? m[1] : null;
  });
  return { child, socket, address, output: () => out };
}

function status(socket) {
  const text = execFileSync(DROVER, ['status', '--json', '--socket', socket], { encoding: 'utf8' });
  const web = JSON.parse(text).groups.find((g) => g.name === 'web');
  return web.workers.filter((w) => w.exit == null);
}

test('the monitor page shows the workers and its clicks restart, scale, reload and mark down real workers', { skip: missing || false, timeout: 240000 }, async () => {
  const { chromium } = require('playwright-core');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-monitor-'));
  const drover = startDrover(dir);
  let context;
  try {
    const addr = await drover.address;
    const base = `http://${addr}`;

    // Without the token the API refuses; with a wrong one too; an action with the cookie alone too.
    assert.strictEqual((await fetch(`${base}/api/workers`)).status, 401);
    assert.strictEqual((await fetch(`${base}/api/workers`, { headers: { 'x-drover-token': 'wrong-wrong-wrong-wrong' } })).status, 403);
    const forged = await fetch(`${base}/api/action`, {
      method: 'POST', headers: { cookie: `drover_monitor=${TOKEN}` }, body: '{"cmd":"down","group":"web"}',
    });
    assert.strictEqual(forged.status, 403);
    assert.strictEqual((await fetch(`${base}/readyz`)).status, 200);

    context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = context.pages()[0] || await context.newPage();
    await page.goto(`${base}/monitor?token=${TOKEN}`);
    // The token left the address bar for a cookie.
    assert.strictEqual(new URL(page.url()).pathname, '/monitor');
    assert.strictEqual(new URL(page.url()).search, '');

    // The workers, live.
    const rows = page.locator('section[data-group="web"] tr[data-worker]');
    await until('2 worker rows', async () => (await rows.count()) === 2);
    const before = status(drover.socket);
    assert.strictEqual(before.length, 2);
    for (const w of before) {
      await until(`worker ${w.id}'s row with pid ${w.pid}`, async () =>
        (await page.locator(`tr[data-worker="${w.id}"][data-pid="${w.pid}"][data-status="STARTED"]`).count()) === 1);
    }

    // Restart one: its pid changes in `drover status`, the other's does not.
    const [victim, other] = before;
    await page.locator(`tr[data-worker="${victim.id}"] button[data-action="restart"]`).click();
    const restarted = await until('the restarted worker to have a new pid', async () => {
      const w = status(drover.socket).find((x) => x.id === victim.id);
      return w && w.pid !== victim.pid && w.status === 'STARTED' ? w : null;
    });
    assert.strictEqual(status(drover.socket).find((x) => x.id === other.id).pid, other.pid);
    await until('the page to show the new pid', async () =>
      (await page.locator(`tr[data-worker="${victim.id}"][data-pid="${restarted.pid}"]`).count()) === 1);

    // Scale to 3: three workers run.
    await page.locator('input[data-scale-input="web"]').fill('3');
    await page.locator('section[data-group="web"] button[data-action="scale"]').click();
    await until('3 running workers', async () => {
      const ws = status(drover.socket);
      return ws.length === 3 && ws.every((w) => w.status === 'STARTED');
    });
    for (const w of status(drover.socket)) {
      assert.ok(execFileSync('ps', ['-o', 'comm=', '-p', String(w.pid)], { encoding: 'utf8' }).includes('sleep'));
    }
    await until('3 worker rows', async () => (await rows.count()) === 3);

    // Reload: a new generation replaces every worker.
    const old = new Set(status(drover.socket).map((w) => w.pid));
    await page.locator('section[data-group="web"] button[data-action="reload"]').click();
    await until('3 new workers after the reload', async () => {
      const ws = status(drover.socket);
      return ws.length === 3 && ws.every((w) => !old.has(w.pid) && w.status === 'STARTED' && w.generation === 1);
    });

    // Mark down: /readyz says 503 out of rotation; the workers run on.
    await page.locator('section[data-group="web"] button[data-action="down"]').click();
    const body = await until('/readyz 503', async () => {
      const r = await fetch(`${base}/readyz`);
      return r.status === 503 ? r.text() : null;
    });
    assert.match(body, /web: out of rotation \(marked down by hand\)/);
    await until('the page to say out of rotation', async () =>
      (await page.locator('section[data-group="web"] [data-rotation="out"]').count()) === 1);
    assert.strictEqual(status(drover.socket).length, 3);

    // And up again.
    await page.locator('section[data-group="web"] button[data-action="up"]').click();
    await until('/readyz 200', async () => (await fetch(`${base}/readyz`)).status === 200);
  } catch (e) {
    console.error(drover.output());
    throw e;
  } finally {
    if (context) await context.close();
    drover.child.kill('SIGTERM');
    await new Promise((r) => (drover.child.exitCode != null ? r() : drover.child.once('exit', r)));
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
