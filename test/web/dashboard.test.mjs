// The dashboard in a real browser: starts `mesh --role=all` with the synthetic market feed, opens
// http://127.0.0.1:PORT/ in Debian's chromium (headless, driven by playwright-core) and checks
// that the page loads without console errors, the price chart receives live trades, the trades
// table fills, an account can register and sign in, and a submitted task shows up as succeeded.
// Saves dashboard.png (and mesh.log) in the artifacts directory.
//
//   node test/web/dashboard.test.mjs MESH_BINARY ARTIFACTS_DIR
//
// Needs MESH_TEST_PG_URL and MESH_TEST_REDIS_URL (run it under scripts/with-test-servers.sh),
// psql, chromium at /usr/bin/chromium (or MESH_CHROMIUM) and web/node_modules
// (scripts/npm-deps.sh web). MESH_DASHBOARD_URL points it at a server already running instead.
import {spawn, execFileSync} from 'node:child_process';
import {randomBytes} from 'node:crypto';
import fs from 'node:fs';
import {createRequire} from 'node:module';
import net from 'node:net';
import path from 'node:path';
import test from 'node:test';
import assert from 'node:assert/strict';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const {chromium} = require('playwright-core');

const meshBinary = process.argv[2] ?? process.env.MESH_BINARY;
const artifacts = path.resolve(process.argv[3] ?? process.env.MESH_WEB_ARTIFACTS ?? 'web-artifacts');
const chromiumPath = process.env.MESH_CHROMIUM ?? '/usr/bin/chromium';

const READY_TIMEOUT_MS = 90_000;   // mesh migrates a fresh database and starts every role
const LIVE_TIMEOUT_MS = 60_000;    // the synthetic feed's trades reach the browser
const TASK_TIMEOUT_MS = 60_000;    // a task goes through Kafka, the worker and the updater
const STOP_TIMEOUT_MS = 15_000;    // mesh drains after SIGTERM

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this test under scripts/with-test-servers.sh`);
  return value;
}

// A port that was free a moment ago; mesh is restarted on another if it loses the race.
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address();
      server.close(() => resolve(port));
    });
  });
}

// A new database on the throwaway Postgres, so the test sees only its own trades and users.
function freshDatabase(baseUrl) {
  const name = `web_${process.pid}_${randomBytes(4).toString('hex')}`;
  execFileSync('psql', [baseUrl, '-qAtc', `CREATE DATABASE ${name}`], {timeout: 30_000});
  const url = new URL(baseUrl);
  url.pathname = '/' + name;
  return url.toString();
}

async function waitFor(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
                  (last ? `: ${last.message}` : ''));
}

class Mesh {
  constructor(port, args, env, logPath) {
    this.port = port;
    this.exited = null;
    this.log = fs.openSync(logPath, 'a');
    this.child = spawn(meshBinary, [`--listen=127.0.0.1:${port}`, ...args],
                       {env, stdio: ['ignore', this.log, this.log]});
    this.done = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exited = {code, signal};
        resolve();
      });
    });
  }

  async ready() {
    await waitFor(`mesh /readyz on port ${this.port}`, READY_TIMEOUT_MS, async () => {
      if (this.exited) throw new Error(`mesh exited early (${JSON.stringify(this.exited)})`);
      const response = await fetch(`http://127.0.0.1:${this.port}/readyz`,
                                   {signal: AbortSignal.timeout(2000)});
      return response.status === 200;
    });
  }

  async stop() {
    if (!this.exited) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await this.done;
      clearTimeout(timer);
    }
    fs.closeSync(this.log);
  }
}

async function startMesh() {
  if (!meshBinary) throw new Error('usage: dashboard.test.mjs MESH_BINARY ARTIFACTS_DIR');
  const args = [
    '--role=all',
    '--kafka-brokers=embedded',
    `--pg-url=${freshDatabase(required('MESH_TEST_PG_URL'))}`,
    `--redis-url=${required('MESH_TEST_REDIS_URL')}`,
    '--ingester-source=synthetic',
  ];
  const env = {...process.env, MESH_JWT_SECRET: randomBytes(32).toString('hex')};
  const logPath = path.join(artifacts, 'mesh.log');
  fs.writeFileSync(logPath, '');
  let lastError;
  for (let attempt = 0; attempt < 3; ++attempt) {
    const mesh = new Mesh(await freePort(), args, env, logPath);
    try {
      await mesh.ready();
      return mesh;
    } catch (error) {
      lastError = error;
      await mesh.stop();
      if (!mesh.exited || mesh.exited.code === null) break;  // hung, not a lost port race
    }
  }
  throw new Error(`${lastError.message}; see ${logPath}`);
}

test('the dashboard in headless chromium', {timeout: 300_000}, async (t) => {
  fs.mkdirSync(artifacts, {recursive: true});
  const mesh = process.env.MESH_DASHBOARD_URL ? null : await startMesh();
  const base = process.env.MESH_DASHBOARD_URL ?? `http://127.0.0.1:${mesh.port}`;
  const problems = [];
  let browser;
  let page;
  try {
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--no-sandbox'],
      timeout: 60_000,
    });
    page = await browser.newPage({viewport: {width: 1400, height: 1000}});
    page.setDefaultTimeout(30_000);
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));

    await t.test('the page and its assets load', async () => {
      const response = await page.goto(base + '/', {waitUntil: 'load'});
      assert.equal(response.status(), 200);
      assert.equal(await page.title(), 'mesh: live markets');
      assert.equal(await page.evaluate(() => typeof window.LightweightCharts), 'object');
    });

    const market = page.locator('article.market').first();
    await t.test('the price chart receives live trades from the synthetic feed', async () => {
      await market.waitFor({state: 'attached', timeout: LIVE_TIMEOUT_MS});
      const chart = market.locator('.price-chart');
      const live = async () => Number(await chart.getAttribute('data-live-points'));
      const first = await waitFor('a first live trade point', LIVE_TIMEOUT_MS,
                                  async () => (await live()) > 0 && (await live()));
      await waitFor('more live trade points', LIVE_TIMEOUT_MS, async () => (await live()) > first);
      assert.equal(await market.locator('.connection').getAttribute('data-state'), 'open');
      // The library drew the series: its canvases are on the page.
      assert.ok((await chart.locator('canvas').count()) > 0);
      assert.ok(Number(await market.locator('.candle-chart').getAttribute('data-candles')) > 0);
    });

    await t.test('the recent-trades table fills', async () => {
      const rows = market.locator('.trade-rows tr');
      await waitFor('three trade rows', LIVE_TIMEOUT_MS, async () => (await rows.count()) >= 3);
      const cells = await rows.first().locator('td').allTextContents();
      assert.equal(cells.length, 4);
      assert.match(cells[1], /^(buy|sell)$/);
      assert.match(cells[2], /^\d+(\.\d+)?$/);
      assert.match(cells[3], /^\d+(\.\d+)?$/);
    });

    await t.test('register, sign in, and a submitted task succeeds', async () => {
      const username = 'web_' + randomBytes(4).toString('hex');
      await page.fill('#login-form input[name=username]', username);
      await page.fill('#login-form input[name=password]', 'correct horse battery');
      await page.click('#register');
      await page.locator('#signed-in').waitFor({state: 'visible'});
      assert.equal(await page.textContent('#user-name'), username);

      const text = 'hello from the browser ' + randomBytes(3).toString('hex');
      await page.selectOption('#task-form select[name=type]', 'echo');
      await page.fill('#task-form input[name=value]', text);
      await page.click('#task-form button[type=submit]');
      const done = page.locator('#task-rows tr[data-status=succeeded]', {hasText: text});
      await done.waitFor({state: 'attached', timeout: TASK_TIMEOUT_MS});
      assert.equal(await done.locator('td').nth(1).textContent(), 'echo');
    });

    await t.test('no console errors', async () => {
      assert.deepEqual(problems, []);
    });
  } finally {
    // Saved on failure too: the picture often tells what went wrong.
    if (page) {
      await page.screenshot({path: path.join(artifacts, 'dashboard.png'), fullPage: true})
        .catch((error) => console.log(`# no screenshot: ${error.message}`));
    }
    if (browser) await browser.close();
    if (mesh) await mesh.stop();
  }
});
