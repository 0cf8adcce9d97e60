// Browser test of the dashboard against a running hermod (started by run.sh): Debian's
// chromium driven by playwright-core (no browser download). Logs in with the initial admin
// password, changes it, watches the live message rate move while `hermod pub` publishes, finds
// the `hermod sub` client, opens it, subscribes on its behalf, kicks it; checks the Rules page
// (run.sh's rule counted what was published, its bridge is up and carries messages);
// screenshots every page into $ARTIFACTS.
//
// Env: BASE_URL (admin listener), MQTT_PORT, HERMOD_BIN, INITIAL_PASSWORD, ARTIFACTS,
// CHROMIUM (default /usr/bin/chromium).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const need = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run interop/dashboard/run.sh)`);
  return v;
};
const BASE = need('BASE_URL').replace(/\/$/, '');
const MQTT_PORT = need('MQTT_PORT');
const HERMOD = need('HERMOD_BIN');
const INITIAL = need('INITIAL_PASSWORD');
const ART = process.env.ARTIFACTS || path.join(path.dirname(new URL(import.meta.url).pathname), 'artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const NEW_PASSWORD = 'dash-test-' + Math.random().toString(36).slice(2, 10);
fs.mkdirSync(ART, { recursive: true });

const children = [];
function hermod(args, name) {
  const out = fs.openSync(path.join(ART, name + '.log'), 'w');
  const p = spawn(HERMOD, args, { stdio: ['ignore', out, out] });
  children.push(p);
  return p;
}
const exited = (p, ms) => new Promise((resolve) => {
  if (p.exitCode !== null || p.signalCode !== null) return resolve(true);
  const t = setTimeout(() => resolve(false), ms);
  p.once('exit', () => { clearTimeout(t); resolve(true); });
});

test('dashboard', { timeout: 240_000 }, async (t) => {
  const udd = fs.mkdtempSync(path.join(os.tmpdir(), 'hermod-dash-chromium-'));
  const ctx = await chromium.launchPersistentContext(udd, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const problems = [];
  const page = ctx.pages()[0] || await ctx.newPage();
  page.setDefaultTimeout(15_000);
  // Failed fetches show in the console as 'Failed to load resource'; they are judged below by
  // their response instead (the 404 of a kicked client and the 401 of a bad token are expected).
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push('console: ' + m.text()); });
  const expected = [/\/api\/v5\/clients\/dash-sub(\/subscriptions)?$/, /\/api\/v5\/login$/];
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const u = new URL(r.url());
    if (r.status() === 401 && badTokenStep) return;
    if ((r.status() === 404 || r.status() === 401) && expected.some((re) => re.test(u.pathname))) return;
    problems.push(`HTTP ${r.status()} ${r.request().method()} ${u.pathname}${u.search}`);
  });
  let badTokenStep = false;
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  // Nothing may leave loopback (no CDN, no fonts from elsewhere).
  page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) problems.push('off-origin request: ' + r.url()); });
  const shot = (name) => page.screenshot({ path: path.join(ART, name + '.png'), fullPage: true });
  const sub = hermod(['sub', '-p', MQTT_PORT, '-h', '127.0.0.1', '-t', 't', '-i', 'dash-sub', '-q', '1', '-V', '5', '-W', '180'], 'hermod-sub');

  try {
    await t.test('served with CSP, types and ETag', async () => {
      const r = await fetch(BASE + '/');
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type'), /^text\/html/);
      const csp = r.headers.get('content-security-policy') || '';
      assert.match(csp, /script-src 'self'(;|$)/);
      assert.match(csp, /default-src 'none'/);
      const etag = r.headers.get('etag');
      assert.ok(etag, 'ETag on /');
      const again = await fetch(BASE + '/', { headers: { 'If-None-Match': etag } });
      assert.equal(again.status, 304);
      const js = await fetch(BASE + '/assets/js/main.js');
      assert.match(js.headers.get('content-type'), /javascript/);
      const up = await fetch(BASE + '/assets/vendor/uplot/uPlot.iife.min.js');
      assert.equal(up.status, 200);
    });

    await t.test('login with the initial password, forced change', async () => {
      await page.goto(BASE + '/');
      await page.waitForSelector('#login-pass');
      await shot('01-login');
      await page.fill('#login-user', 'admin');
      await page.fill('#login-pass', 'wrong-password');
      await page.click('button[type=submit]');
      await page.waitForSelector('.banner >> text=Login failed');
      await page.fill('#login-pass', INITIAL);
      await page.click('button[type=submit]');
      await page.waitForSelector('#pw-new');
      await shot('02-change-password');
      await page.fill('#pw-new', NEW_PASSWORD);
      await page.fill('#pw-again', NEW_PASSWORD);
      await page.click('button[type=submit]');
      await page.waitForSelector('#live-rate');
      const tok = await page.evaluate(() => JSON.parse(sessionStorage.getItem('hermod.session')));
      assert.ok(tok && tok.token && !tok.mustChange, 'token kept in sessionStorage');
      // The new password works, the initial one no longer does.
      const ok = await fetch(BASE + '/api/v5/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: NEW_PASSWORD }) });
      assert.equal(ok.status, 200);
      assert.equal((await ok.json()).password_change_required, false);
    });

    await t.test('overview: live message rate moves while hermod pub sends', async () => {
      await page.waitForFunction(() => +document.querySelector('#live-rate').dataset.points >= 2, null, { timeout: 15_000 });
      const before = await page.$eval('#live-rate', (e) => +e.dataset.maxReceived || 0);
      const pub = hermod(['pub', '-p', MQTT_PORT, '-h', '127.0.0.1', '-t', 't', '-m', 'hello from the dashboard test', '-q', '1', '--repeat', '200', '--repeat-delay', '0.02'], 'hermod-pub');
      await page.waitForFunction((b) => +document.querySelector('#live-rate').dataset.maxReceived > b, before, { timeout: 30_000 });
      const after = await page.$eval('#live-rate', (e) => ({ max: +e.dataset.maxReceived, sent: +e.dataset.lastSent }));
      assert.ok(after.max > before, `received rate moved: ${before} -> ${after.max}`);
      assert.ok(await exited(pub, 30_000), 'hermod pub finished');
      assert.equal(pub.exitCode, 0, 'hermod pub exit code');
      // A retained message for the Retained page.
      const ret = hermod(['pub', '-p', MQTT_PORT, '-h', '127.0.0.1', '-t', 'dash/status', '-r', '-m', '{"online":true,"note":"retained by the dashboard test"}'], 'hermod-pub-retained');
      assert.ok(await exited(ret, 15_000));
      await page.waitForTimeout(2500); // one more poll so the screenshot shows the bump and the cards
      await shot('03-overview');
    });

    await t.test('clients: hermod sub is listed, found by id', async () => {
      await page.goto(BASE + '/#/clients');
      await page.waitForSelector('a[href="#/clients/dash-sub"]');
      await shot('04-clients');
      await page.fill('#filter-clientid', 'dash-s');
      await page.waitForFunction(() => document.querySelector('#list-count')?.textContent.includes('matching'));
      await page.waitForSelector('a[href="#/clients/dash-sub"]');
      const rows = await page.$$eval('tbody tr', (trs) => trs.length);
      assert.equal(rows, 1, 'one client matches dash-s');
    });

    await t.test('client detail: subscriptions, subscribe on behalf', async () => {
      await page.click('a[href="#/clients/dash-sub"]');
      await page.waitForSelector('#client-title');
      assert.equal(await page.textContent('#client-title'), 'dash-sub');
      await page.waitForSelector('#client-subs code >> text=t');
      await page.fill('#sub-topic', 'dash/extra/#');
      await page.selectOption('#sub-qos', '1');
      await page.click('#sub-submit');
      await page.waitForSelector('#client-subs code >> text=dash/extra/#');
      assert.equal(await page.textContent('#stat-subs'), '2');
      await shot('05-client-detail');
    });

    await t.test('subscriptions, topics pages', async () => {
      await page.goto(BASE + '/#/subscriptions');
      await page.waitForSelector('tbody code >> text=dash/extra/#');
      await shot('06-subscriptions');
      await page.goto(BASE + '/#/topics');
      await page.waitForSelector('tbody code >> text=dash/extra/#');
      await shot('07-topics');
    });

    await t.test('retained: view as text and hex', async () => {
      await page.goto(BASE + '/#/retained');
      await page.waitForSelector('tbody >> text=dash/status');
      await shot('08-retained');
      await page.click('tbody button:has-text("View")');
      await page.waitForSelector('#payload-text');
      assert.match(await page.textContent('#payload-text'), /retained by the dashboard test/);
      await page.click('dialog button:has-text("Hex")');
      await page.waitForSelector('#payload-hex');
      assert.match(await page.textContent('#payload-hex'), /^00000000 {2}7b 22/);
      await shot('08b-retained-payload');
      await page.click('dialog button:has-text("Close")');
    });

    await t.test('banned: add, list', async () => {
      await page.goto(BASE + '/#/banned');
      await page.waitForSelector('#ban-who');
      await page.fill('#ban-who', 'dash-banned-client');
      await page.fill('#ban-reason', 'dashboard test');
      await page.click('#ban-submit');
      await page.waitForSelector('tbody >> text=dash-banned-client');
      await shot('09-banned');
    });

    await t.test('users and API keys: secret shown once', async () => {
      await page.goto(BASE + '/#/users');
      await page.waitForSelector('tbody >> text=admin');
      await page.fill('#key-name', 'dash-test-key');
      await page.fill('#key-desc', 'created by the dashboard test');
      await page.click('#key-submit');
      await page.waitForSelector('#new-secret');
      const secret = (await page.textContent('#new-secret')).trim();
      assert.ok(secret.length >= 8, 'a secret is shown');
      await shot('10b-api-key-secret');
      await page.click('dialog button:has-text("I have stored it")');
      await page.waitForSelector('tbody >> text=dash-test-key');
      await shot('10-users');
    });

    await t.test('rules: the rule counted what hermod pub sent, the bridge carries messages', async () => {
      const pub = hermod(['pub', '-p', MQTT_PORT, '-h', '127.0.0.1', '-t', 'dash/bridge/hello', '-m', 'over the bridge', '-q', '1', '--repeat', '5', '--repeat-delay', '0.02'], 'hermod-pub-bridge');
      assert.ok(await exited(pub, 15_000), 'hermod pub (bridge) finished');
      assert.equal(pub.exitCode, 0, 'hermod pub (bridge) exit code');
      await page.goto(BASE + '/#/rules');
      await page.waitForSelector('a.active[data-page="rules"]');
      await page.waitForSelector('tbody[data-rule="copy-t"]');
      const num = (sel) => page.$eval(sel, (e) => +e.textContent.replace(/,/g, ''));
      // The overview step published 200 messages to t; the rule republished every one.
      assert.ok(await num('tbody[data-rule="copy-t"] [data-metric="matched"]') >= 200, 'matched >= 200');
      assert.equal(await num('tbody[data-rule="copy-t"] [data-metric="failed"]'), 0);
      assert.equal(await page.textContent('tbody[data-rule="copy-t"] .from code'), 't');
      assert.ok(await num('tbody[data-rule="copy-t"] tr[data-action="republish"] [data-metric="succeeded"]') >= 200, 'republish succeeded >= 200');
      const bridge = 'tr:has(b[data-bridge="mirror"])';
      await page.waitForSelector(bridge + ' .pill.ok');
      // The page refreshes every 5 s: wait for the 5 messages to show.
      await page.waitForFunction((sel) => +(document.querySelector(sel)?.textContent || '0').replace(/,/g, '') >= 5,
        bridge + ' [data-metric="messages_out"]', { timeout: 20_000 });
      assert.equal(await page.textContent(bridge + ' td.mono'), `127.0.0.1:${MQTT_PORT}`);
      await shot('13-rules');
    });

    await t.test('kick the client: it is gone', async () => {
      await page.goto(BASE + '/#/clients/dash-sub');
      await page.waitForSelector('#kick');
      await page.click('#kick');
      await page.click('dialog button:has-text("Kick")');
      await page.waitForSelector('#client-gone, .pagehead .pill:has-text("disconnected")', { timeout: 15_000 });
      await shot('11-client-kicked');
      await page.goto(BASE + '/#/clients?clientid=dash-sub&match=exact&conn_state=connected');
      await page.waitForSelector('.empty');
      assert.equal(await page.$$eval('a[href="#/clients/dash-sub"]', (a) => a.length), 0, 'dash-sub no longer listed as connected');
      await shot('12-clients-after-kick');
      assert.ok(await exited(sub, 10_000) || true);
    });

    await t.test('a bad token sends the page back to login', async () => {
      badTokenStep = true;
      await page.evaluate(() => { const s = JSON.parse(sessionStorage.getItem('hermod.session')); s.token = 'bogus'; sessionStorage.setItem('hermod.session', JSON.stringify(s)); });
      await page.goto(BASE + '/#/clients');
      await page.waitForSelector('#login-pass');
      assert.match(page.url(), /#\/login/);
    });

    await t.test('no console errors, no CSP violations, nothing off-origin', () => {
      assert.deepEqual(problems, []);
    });
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await ctx.close();
    fs.rmSync(udd, { recursive: true, force: true });
  }
});
