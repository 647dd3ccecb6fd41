// Browser test of the dashboard at GET /_mock/ui, in headless Chromium.
//
//   npm ci --prefix tests/browser            # once: playwright-core (no browser download)
//   JLM_BIN=target/release/job-launcher-mock node tests/browser/dashboard.test.mjs
//
// Env: JLM_BIN (the service binary; default target/release/job-launcher-mock),
// JLM_SCREENSHOT (default target/dashboard.png), CHROMIUM (default /usr/bin/chromium).
// Starts its own service on a free port, so it needs nothing else running.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BIN = process.env.JLM_BIN || 'target/release/job-launcher-mock';
const SHOT = process.env.JLM_SCREENSHOT || 'target/dashboard.png';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 10_000;
const HOSTILE = '<img src=x onerror=alert(1)>';

let passed = 0;
let failed = 0;
const pass = (name) => { passed++; console.log(`PASS ${name}`); };
const fail = (name, err) => { failed++; console.log(`FAIL ${name}: ${err && err.message ? err.message : err}`); };
function assert(cond, msg) { if (!cond) throw new Error(msg); }

// ---------------------------------------------------------------- the service
function startService(args = []) {
  return new Promise((resolve, reject) => {
    if (!fs.existsSync(BIN)) return reject(new Error(`JLM_BIN ${BIN} does not exist (cargo build --release first)`));
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('JLM_')) delete env[k]; // flags come from here only
    const child = spawn(BIN, ['--port', '0', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no "listening on" line in 15 s; stdout: ${out} stderr: ${err}`)), 15_000);
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      out += d;
      // eslint-disable-next-line no-control-regex
      const m = out.replace(/\x1b\[[0-9;]*m/g, '').match(/listening on (http:\/\/[^\s"',]+)/);
      if (m) { clearTimeout(timer); resolve({ child, base: m[1].replace(/\/$/, ''), logs: () => err }); }
    });
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`service exited (${code}) before listening: ${err}`)); });
  });
}

async function stopService(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

async function post(base, body) {
  const r = await fetch(`${base}/job-launcher/launcher/status`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`POST ${body.jobId} ${body.state} -> ${r.status} ${text}`);
  return JSON.parse(text);
}

// ------------------------------------------------------------------- the test
const SEED = [
  { jobId: 'run-a', state: 'running', jobConfig: { id: 'nightly', type: 'aggregation' }, startTime: '2026-11-29T10:00:00Z' },
  { jobId: 'run-b', state: 'running', jobConfig: { id: 'reindex-products', type: 'spark' }, startTime: '2026-11-29T09:00:00Z' },
  { jobId: 'run-b', state: 'finished', endTime: '2026-11-29T09:12:34.567Z', duration: 754567 },
  { jobId: 'run-c', state: 'running', jobConfig: { id: 'signals-rollup', type: 'aggregation' }, startTime: '2026-11-29T08:00:00Z' },
  // result.jobRunId differing from jobId is accepted with a warning
  { jobId: 'run-c', state: 'error', endTime: '2026-11-29T08:00:03.250Z', duration: 3250, result: { jobRunId: 'other-run' } },
  { jobId: 'run-xss', state: 'running', jobConfig: { id: HOSTILE, type: 'custom_python_job' }, startTime: '2026-11-29T10:05:00Z' },
];
const SEEDED_IDS = ['run-a', 'run-b', 'run-c', 'run-xss'];

async function main() {
  let svc = null;
  let svc2 = null; // the one with --admin-token
  let context = null;
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jlm-chromium-'));
  const watchdog = setTimeout(() => { fail('whole run under 60 s', 'timed out'); cleanup().finally(() => process.exit(1)); }, 58_000);
  async function cleanup() {
    if (context) await context.close().catch(() => {});
    context = null;
    for (const s of [svc, svc2]) if (s) await stopService(s.child).catch(() => {});
    svc = svc2 = null;
    fs.rmSync(userDir, { recursive: true, force: true });
  }

  // Each step runs in order; after the first failure the rest are skipped.
  let broken = false;
  async function step(name, fn, always = false) {
    if (broken && !always) { console.log(`SKIP ${name}`); return; }
    try { await fn(); pass(name); } catch (e) { fail(name, e); broken = true; }
  }

  try {
    let chromium;
    try { ({ chromium } = await import('playwright-core')); } catch (e) {
      throw new Error(`playwright-core is missing: run "npm ci --prefix tests/browser" (${e.message})`);
    }
    assert(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);

    await step('service starts and prints its address', async () => { svc = await startService(); });
    const base = svc ? svc.base : '';
    await step('seed updates are accepted (running, finished, error, hostile config id)', async () => {
      for (const u of SEED) await post(base, u);
    });

    const dialogs = [];
    const pageErrors = [];
    const foreign = [];
    let page;
    await step('chromium starts with a fresh profile', async () => {
      context = await chromium.launchPersistentContext(userDir, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
          '--no-first-run', '--disable-component-update', '--disable-sync'],
        viewport: { width: 1440, height: 900 },
      });
      page = context.pages()[0] || await context.newPage();
      page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
      page.on('pageerror', (e) => pageErrors.push(e.message));
      page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });
      page.on('request', (r) => { if (!r.url().startsWith(base + '/') && !r.url().startsWith('data:')) foreign.push(r.url()); });
    });

    await step('GET /_mock/ui is an HTML page', async () => {
      const r = await page.goto(`${base}/_mock/ui`, { waitUntil: 'domcontentloaded', timeout: WAIT });
      assert(r && r.status() === 200, `status ${r && r.status()}`);
      assert(/text\/html/.test(r.headers()['content-type'] || ''), `content-type ${r.headers()['content-type']}`);
    });

    await step('every run is in the DOM as text, with no interaction', async () => {
      await page.waitForFunction((ids) => {
        const t = document.querySelector('#runs')?.textContent || '';
        return ids.every((id) => t.includes(id));
      }, SEEDED_IDS, { timeout: WAIT });
      const rows = await page.$$eval('#runs [data-job-id]', (els) => els.map((e) => e.getAttribute('data-job-id')));
      assert(rows.length === SEEDED_IDS.length, `rows ${JSON.stringify(rows)}`);
      assert(await page.locator('#empty').isHidden(), '#empty is visible while there are runs');
    });

    await step('runs are newest first', async () => {
      const rows = await page.$$eval('#runs [data-job-id]', (els) => els.map((e) => e.getAttribute('data-job-id')));
      assert(JSON.stringify(rows) === JSON.stringify([...SEEDED_IDS].reverse()), `order ${JSON.stringify(rows)}`);
    });

    await step('state badges carry data-state and the state as text', async () => {
      for (const [id, st] of [['run-a', 'running'], ['run-b', 'finished'], ['run-c', 'error'], ['run-xss', 'running']]) {
        const b = page.locator(`[data-job-id="${id}"] [data-state]`);
        assert(await b.getAttribute('data-state') === st, `${id} data-state ${await b.getAttribute('data-state')}`);
        assert((await b.textContent()).trim() === st, `${id} badge text ${await b.textContent()}`);
      }
    });

    await step('config id, type, human-readable duration and warnings count are shown', async () => {
      const t = await page.locator('[data-job-id="run-b"]').textContent();
      for (const want of ['reindex-products', 'spark', '12m 34s']) assert(t.includes(want), `run-b row lacks ${want}: ${t}`);
      const warn = await page.locator('[data-job-id="run-c"] td').last().textContent();
      assert(warn.trim() === '1', `run-c warnings cell: ${warn}`);
    });

    await step('hostile config id is literal text: no <img src=x>, no dialog', async () => {
      const t = await page.locator('[data-job-id="run-xss"]').textContent();
      assert(t.includes(HOSTILE), `row text: ${t}`);
      const imgs = await page.$$eval('img', (els) => els.filter((e) => e.getAttribute('src') === 'x').length);
      assert(imgs === 0, `${imgs} img[src=x] element(s) in the page`);
      assert(dialogs.length === 0, `dialog fired: ${dialogs.join(', ')}`);
    });

    await step('state filter shows only that state, "all" restores every run', async () => {
      await page.click('[data-filter="finished"]');
      await page.waitForFunction(() => document.querySelectorAll('#runs [data-job-id]').length === 1, null, { timeout: WAIT });
      assert(await page.locator('#runs [data-job-id="run-b"]').count() === 1, 'run-b not shown under finished');
      await page.click('[data-filter="all"]');
      await page.waitForFunction((n) => document.querySelectorAll('#runs [data-job-id]').length === n, SEEDED_IDS.length, { timeout: WAIT });
    });

    await step('#live-status reads "live"', async () => {
      await page.waitForFunction(() => document.getElementById('live-status')?.textContent.trim() === 'live', null, { timeout: WAIT });
    });

    await step('a new run appears live, at the top, without reload', async () => {
      await post(base, { jobId: 'run-live', state: 'running', jobConfig: { id: 'live-config', type: 'spark' }, startTime: '2026-11-29T11:00:00Z' });
      await page.waitForSelector('[data-job-id="run-live"]', { timeout: WAIT });
      const first = await page.$eval('#runs [data-job-id]', (e) => e.getAttribute('data-job-id'));
      assert(first === 'run-live', `first row is ${first}`);
    });

    await step('its state turns finished live', async () => {
      await post(base, { jobId: 'run-live', state: 'finished', endTime: '2026-11-29T11:01:30Z', duration: 90000 });
      await page.waitForSelector('[data-job-id="run-live"] [data-state="finished"]', { timeout: WAIT });
    });

    await step('clicking a run shows its history as a timeline', async () => {
      await page.click('[data-job-id="run-b"]');
      await page.waitForFunction(() => document.querySelectorAll('#detail ol.timeline > li').length === 2, null, { timeout: WAIT });
      const t = await page.locator('#detail').textContent();
      for (const want of ['"state": "finished"', '"duration": 754567', 'reindex-products']) assert(t.includes(want), `timeline lacks ${want}`);
    });

    await step('the open timeline gets new entries live', async () => {
      await page.click('[data-job-id="run-a"]');
      await page.waitForFunction(() => document.querySelector('#detail h2')?.textContent === 'run-a'
        && document.querySelectorAll('#detail ol.timeline > li').length === 1, null, { timeout: WAIT });
      await post(base, { jobId: 'run-a', state: 'running', hostname: 'driver-run-a' });
      await page.waitForFunction(() => document.querySelectorAll('#detail ol.timeline > li').length === 2, null, { timeout: WAIT });
      const last = await page.locator('#detail ol.timeline > li').last().textContent();
      assert(last.includes('driver-run-a'), `last entry: ${last}`);
    });

    await step('a session\'s page shows its runs only, live, and the picker goes back', async () => {
      const made = await fetch(`${base}/_mock/sessions`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'ui-session' }),
      });
      assert(made.status === 201, `POST /_mock/sessions -> ${made.status}`);
      const sessionBase = `${base}/sessions/ui-session`;
      await post(sessionBase, { jobId: 'run-in-session', state: 'running', jobConfig: { id: 'session-job', type: 'spark' } });
      const p3 = await context.newPage();
      p3.on('pageerror', (e) => pageErrors.push(e.message));
      const r = await p3.goto(`${sessionBase}/`, { waitUntil: 'domcontentloaded', timeout: WAIT });
      assert(r && r.status() === 200 && p3.url().endsWith('/sessions/ui-session/_mock/ui'), `landed on ${p3.url()}`);
      await p3.waitForSelector('[data-job-id="run-in-session"]', { timeout: WAIT });
      const rows = await p3.$$eval('#runs [data-job-id]', (els) => els.map((e) => e.getAttribute('data-job-id')));
      assert(JSON.stringify(rows) === '["run-in-session"]', `the session's page shows ${JSON.stringify(rows)}`);
      await p3.waitForFunction(() => document.getElementById('live-status')?.textContent.trim() === 'live', null, { timeout: WAIT });
      await post(base, { jobId: 'run-root-meanwhile', state: 'running' });
      await post(sessionBase, { jobId: 'run-in-session-live', state: 'running' });
      await p3.waitForSelector('[data-job-id="run-in-session-live"]', { timeout: WAIT });
      assert(await p3.locator('[data-job-id="run-root-meanwhile"]').count() === 0, 'a root run on the session page');
      const options = await p3.$$eval('#session option', (els) => els.map((e) => e.value));
      assert(options.includes('') && options.includes('ui-session'), `picker options ${JSON.stringify(options)}`);
      assert(await p3.$eval('#session', (e) => e.value) === 'ui-session', 'the picker names this session');
      await Promise.all([p3.waitForURL(`${base}/_mock/ui`, { timeout: WAIT }), p3.selectOption('#session', '')]);
      await p3.waitForSelector('[data-job-id="run-root-meanwhile"]', { timeout: WAIT });
      assert(await p3.locator('[data-job-id="run-in-session"]').count() === 0, 'a session run on the root page');
      await p3.close();
    });

    await step('screenshot', async () => {
      assert(page, 'no page');
      fs.mkdirSync(path.dirname(path.resolve(SHOT)), { recursive: true });
      await page.screenshot({ path: SHOT, fullPage: true });
      console.log(`     screenshot: ${path.resolve(SHOT)}`);
    }, true); // also after a failure: it shows what the page looked like

    await step('with --admin-token, ?access_token= reaches the API and the event stream', async () => {
      const TOKEN = 'tok-' + process.pid;
      svc2 = await startService(['--admin-token', TOKEN]);
      await post(svc2.base, { jobId: 'run-tok', state: 'running', jobConfig: { id: 'guarded', type: 'spark' } });
      const p2 = await context.newPage();
      p2.on('pageerror', (e) => pageErrors.push(e.message));
      p2.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
      const r = await p2.goto(`${svc2.base}/_mock/ui?access_token=${TOKEN}`, { waitUntil: 'domcontentloaded', timeout: WAIT });
      assert(r && r.status() === 200, `status ${r && r.status()}`);
      await p2.waitForSelector('[data-job-id="run-tok"]', { timeout: WAIT });
      await p2.waitForFunction(() => document.getElementById('live-status')?.textContent.trim() === 'live', null, { timeout: WAIT });
      await post(svc2.base, { jobId: 'run-tok-live', state: 'running' });
      await p2.waitForSelector('[data-job-id="run-tok-live"]', { timeout: WAIT });
      assert(await p2.locator('#error').isHidden(), `error shown: ${await p2.locator('#error').textContent()}`);
      const denied = await fetch(`${svc2.base}/_mock/runs`);
      assert(denied.status === 401, `/_mock/runs without the token -> ${denied.status}`);
      await p2.close();
    });

    await step('no page errors, no dialogs, no requests off the service', async () => {
      assert(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
      assert(dialogs.length === 0, `dialogs: ${dialogs.join(' | ')}`);
      assert(foreign.length === 0, `foreign requests: ${foreign.join(' ')}`);
    });
  } catch (e) {
    fail('setup', e);
  } finally {
    await cleanup();
    clearTimeout(watchdog);
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main();
