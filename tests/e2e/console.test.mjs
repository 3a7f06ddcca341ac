// The operator's console (issue #19) in real headless Chromium (Debian /usr/bin/chromium via
// playwright-core, never a browser download) against the real sidecar and ringside-pub:
// reload after a failure keeps the failed task and its output; deep links open a terminal in view;
// the filter box is kept in the URL across a reload; a bad server filter is reported once and not
// retried; 500 tasks through three agents keep the page bounded with the running task on top; the
// ANSI fallback renders colours; in Redis mode the other instance serves it all. Screenshots of each state go to $RINGSIDE_E2E_SCREENSHOTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { RealBackend, realBinaries, repoRoot } from './backends.mjs';

const CHROMIUM = process.env.RINGSIDE_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.RINGSIDE_E2E_SCREENSHOTS || path.join(repoRoot, 'build', 'e2e-screenshots');
const bins = realBinaries();
if (!bins) throw new Error('the console tests need the real ringside and ringside-pub (build them first)');

let browser;
let backend;

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `console-${name}.png`) });
}

async function newPage() {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log('# page error:', e.message));
  return page;
}

async function metric(b, name) {
  const text = await (await fetch(`${b.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ').pop()) : null;
}

/** Is the element's box inside the viewport? */
async function inView(page, selector) {
  return page.evaluate((sel) => {
    const r = document.querySelector(sel)?.getBoundingClientRect();
    return !!r && r.width > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth;
  }, selector);
}

before(async () => {
  // Every test opens pages and terminals from 127.0.0.1: no per-IP connection rate.
  backend = new RealBackend(bins, { extraArgs: ['--no-auth', '--conn-rate', '0'] });
  await backend.start();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
  // One failed task with coloured output, one completed, one running.
  await backend.pubAs('builder', 'web', ['status', 'working', 'building the site']);
  await backend.pubAs('builder', 'web', ['task-start', 'compile', 'compile the site']);
  await backend.pubAs('builder', 'web', ['term', 'compile'], '\x1b[01;34msrc\x1b[0m  main.c\r\n\x1b[31merror: undefined reference to `boom\'\x1b[0m\r\n');
  await backend.pubAs('builder', 'web', ['task-end', 'compile', 'failed', '3']);
  await backend.pubAs('builder', 'web', ['status', 'failed', 'compile failed']);
  await backend.pubAs('tester', 'web', ['task-start', 'unit', 'unit tests']);
  await backend.pubAs('tester', 'web', ['task-end', 'unit', 'completed', '0']);
  await backend.pubAs('deployer', 'infra', ['status', 'working', 'rolling out']);
  await backend.pubAs('deployer', 'infra', ['task-start', 'rollout', 'roll out v2']);
  await backend.pubAs('deployer', 'infra', ['progress', 'rollout', '2', '5', 'canary']);
});

after(async () => {
  if (browser) await browser.close();
  if (backend) { await backend.stop(); backend.cleanup(); }
});

test('reload after a failure: the failed task and its output are one click away', async () => {
  const page = await newPage();
  await page.goto(`${backend.httpUrl}/`);
  await page.waitForSelector('[data-agent="builder"] .failure:not([hidden])', { timeout: 10000 });
  await page.reload();
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10000 });
  const failure = page.locator('[data-agent="builder"] .failure');
  await failure.waitFor({ timeout: 10000 });
  assert.match(await failure.innerText(), /Last task failed: compile the site \(exit 3\)/);
  assert.equal(await page.locator('#summary').getAttribute('data-failed-tasks'), '1');
  assert.equal(await page.locator('#summary').getAttribute('data-running'), '1');
  // History is collapsed, with outcome and duration.
  assert.equal(await page.locator('[data-agent="builder"] details.history').getAttribute('open'), null);
  assert.match(await page.locator('[data-agent="builder"] .history__summary').innerText(), /1 ended · 1 failed/);
  assert.equal(await page.locator('[data-agent="builder"] .hist').count(), 0, 'rows are built only when opened');
  await page.locator('[data-agent="builder"] .history__summary').click();
  const row = page.locator('[data-agent="builder"] .hist[data-task="compile"]');
  assert.match(await row.innerText(), /failed[\s\S]*compile the site[\s\S]*exit 3 · \d+(\.\d)?s/);
  assert.match(await page.locator('#activity').innerText(), /builder ended compile the site: failed \(exit 3\)/);
  await shot(page, '01-after-reload');
  await failure.locator('button', { hasText: 'Show output' }).click();
  const term = '.term[data-task="compile"]';
  await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes('undefined reference'), term, { timeout: 10000 });
  await page.waitForSelector(`${term}[data-state="ended"]`, { timeout: 10000 });
  assert.ok(await inView(page, term), 'the terminal opens in view');
  assert.ok(await page.locator(`${term} .term__status`).innerText().then((t) => /failed · exit 3/.test(t)));
  assert.equal(await page.locator(`${term} button`, { hasText: /Pause|Resume/ }).isHidden(), true, 'no pause on a finished log');
  assert.match(await page.evaluate(() => location.hash), /^#task=compile&agent=builder&run=\d+$/);
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator(`${term} button`, { hasText: 'Download raw' }).click()]);
  const file = await download.path();
  assert.ok(fs.readFileSync(file).includes(Buffer.from('\x1b[31merror: undefined reference')), 'raw bytes, escape codes included');
  await shot(page, '02-failed-output');
  await page.context().close();
});

test('a deep link opens the task\'s terminal', async () => {
  const page = await newPage();
  await page.goto(`${backend.httpUrl}/#task=compile&agent=builder`);
  const term = '.term[data-task="compile"]';
  await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes('undefined reference'), term, { timeout: 10000 });
  assert.ok(await inView(page, term));
  // A live task's terminal from its link: follow/pause offered.
  await page.goto(`${backend.httpUrl}/#task=rollout`);
  await page.waitForSelector('.term[data-task="rollout"][data-state="connected"]', { timeout: 10000 });
  assert.equal(await page.locator('.term[data-task="rollout"] button', { hasText: 'Pause' }).isVisible(), true);
  await shot(page, '03-deep-link-live');
  await page.locator('.term[data-task="rollout"] button', { hasText: 'Close' }).click();
  assert.equal(await page.evaluate(() => location.hash), '');
  await page.context().close();
});

test('filter box: reflected in the URL, kept across a reload, shown while active', async () => {
  const page = await newPage();
  await page.goto(`${backend.httpUrl}/`);
  await page.waitForSelector('[data-agent="deployer"]', { timeout: 10000 });
  await page.fill('#filter', 'status:failed');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('q') === 'status:failed', null, { timeout: 5000 });
  await page.reload();
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10000 });
  await page.waitForSelector('[data-agent="builder"]', { timeout: 10000 });
  assert.equal(await page.inputValue('#filter'), 'status:failed');
  assert.equal(await page.locator('[data-agent="deployer"]').isHidden(), true);
  assert.equal(await page.locator('[data-agent="builder"]').isVisible(), true);
  assert.match(await page.locator('#filter-active').innerText(), /Showing “status:failed” — 1 of 3 agents/);
  await shot(page, '04-filter');
  // A chip of the summary bar is a filter too; Clear removes it.
  await page.locator('#summary .chip--running').click();
  await page.waitForFunction(() => new URL(location.href).searchParams.get('q') === 'running', null, { timeout: 5000 });
  assert.equal(await page.locator('[data-agent="deployer"]').isVisible(), true);
  await page.locator('#filter-clear').click();
  await page.waitForFunction(() => !new URL(location.href).searchParams.has('q'), null, { timeout: 5000 });
  assert.equal(await page.locator('#filter-active').isHidden(), true);
  await page.context().close();
});

test('a bad server filter is shown once and never retried', async () => {
  const before400 = await metric(backend, 'ringside_http_rejections_total{reason="bad_filter"}');
  const page = await newPage();
  await page.goto(`${backend.httpUrl}/?agent_ids=${encodeURIComponent('bad id')}`);
  await page.waitForSelector('#alert:not([hidden])', { timeout: 10000 });
  assert.match(await page.locator('#alert').innerText(), /Bad filter — not retried\..*agent_ids: 'bad id' is not a valid id/s);
  assert.equal(await page.locator('#alert').getAttribute('data-error'), 'bad_filter');
  assert.equal(await page.locator('#conn').getAttribute('data-state'), 'disconnected');
  const after1 = await metric(backend, 'ringside_http_rejections_total{reason="bad_filter"}');
  // One upgrade and the one plain request that tells the page why; then nothing more. Absence can
  // only be shown over a window: 3 s is several retries at the client's first backoff steps.
  await page.waitForTimeout(3000);
  const after2 = await metric(backend, 'ringside_http_rejections_total{reason="bad_filter"}');
  assert.equal(after1 - before400, 2);
  assert.equal(after2, after1, 'the refused request was retried');
  assert.equal(await page.locator('#banner').isHidden(), true, 'no reconnect banner for a permanent error');
  assert.match(await page.locator('#filter-active').innerText(), /server filter agent_ids=bad id/);
  await shot(page, '05-bad-filter');
  await page.context().close();
});

test('the ANSI fallback renders colours and never raw escape codes', async () => {
  const page = await newPage();
  await page.goto(`${backend.httpUrl}/?renderer=plain#task=compile&agent=builder`);
  const term = '.term[data-task="compile"]';
  await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes('undefined reference'), term, { timeout: 10000 });
  assert.equal(await page.locator(term).getAttribute('data-renderer'), 'pre');
  const text = await page.locator(`${term} .term__pre`).textContent();
  assert.ok(!text.includes('\x1b') && !text.includes('[01;34m'), `raw escape codes shown: ${JSON.stringify(text)}`);
  const colours = await page.$$eval(`${term} .term__pre span`, (ss) => ss.map((s) => [s.textContent, getComputedStyle(s).color, getComputedStyle(s).fontWeight]));
  assert.deepEqual(colours.find((c) => c[0] === 'src'), ['src', 'rgb(36, 114, 200)', '700']);
  assert.ok(colours.some((c) => c[0].startsWith('error:') && c[1] === 'rgb(205, 49, 49)'));
  await shot(page, '06-ansi-fallback');
  await page.context().close();
});

test('500 tasks through three agents: the page stays bounded and the running task stays on top', async () => {
  const page = await newPage();
  await page.goto(`${backend.httpUrl}/`);
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10000 });
  const agents = ['busy-1', 'busy-2', 'busy-3'];
  const perAgent = [167, 167, 166];
  const cdp = await page.context().newCDPSession(page);
  const heap = async () => { await cdp.send('HeapProfiler.collectGarbage'); return (await cdp.send('Runtime.getHeapUsage')).usedSize; };
  let heapHalf = null;
  await Promise.all(agents.map(async (ag, k) => {
    for (let i = 0; i < perAgent[k]; i++) {
      if (k === 0 && i === 83) heapHalf = await heap();
      await backend.pubAs(ag, 'load', ['task-start', `job-${i}`, `job ${i} of ${ag}`]);
      await backend.pubAs(ag, 'load', ['task-end', `job-${i}`, i % 7 === 0 ? 'failed' : 'completed', i % 7 === 0 ? '1' : '0']);
    }
    await backend.pubAs(ag, 'load', ['task-start', 'current', `current work of ${ag}`]);
  }));
  await page.waitForFunction((ags) => ags.every((a) => document.querySelector(`[data-agent="${a}"] .task[data-task="current"]`)),
    agents, { timeout: 60000 });
  await page.fill('#filter', 'project:load');
  for (const ag of agents) await page.locator(`[data-agent="${ag}"] .history__summary`).click();
  const m = await page.evaluate((ags) => ({
    nodes: document.getElementsByTagName('*').length,
    height: document.documentElement.scrollHeight,
    history: ags.map((a) => document.querySelectorAll(`[data-agent="${a}"] .hist`).length),
    summary: document.querySelector(`[data-agent="${ags[0]}"] .history__summary`).textContent,
    activity: document.querySelectorAll('#activity li').length,
    runningFirst: ags.every((a) => {
      const card = document.querySelector(`[data-agent="${a}"]`);
      const run = card.querySelector('.task[data-task="current"]');
      const hist = card.querySelector('.history');
      return run.compareDocumentPosition(hist) & Node.DOCUMENT_POSITION_FOLLOWING;
    }),
  }), agents);
  const heapEnd = await heap();
  console.log(`# after 500 tasks: ${m.nodes} elements, page ${m.height} px, history rows ${m.history}, activity ${m.activity}, JS heap ${heapHalf} → ${heapEnd} bytes`);
  assert.ok(heapEnd - heapHalf < 1024 * 1024, `JS heap grew ${heapEnd - heapHalf} bytes over the second half`);
  assert.deepEqual(m.history, [20, 20, 20], 'history per agent bounded');
  assert.ok(m.nodes < 1500, `DOM not bounded: ${m.nodes} elements`);
  assert.ok(m.height < 2000, `page grew to ${m.height} px`);
  assert.ok(m.activity <= 200);
  assert.ok(m.runningFirst, 'the running task sits above the history');
  assert.ok(await inView(page, '[data-agent="busy-1"] .task[data-task="current"]'), 'the running task is in view');
  await shot(page, '07-500-tasks');
  await page.context().close();
});

test('Redis mode, two instances: after a reload on the other instance the failed task and its output are there', async () => {
  const { spawn } = await import('node:child_process');
  const { freePort } = await import('./backends.mjs');
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || '/tmp', 'rs-e2e-redis-'));
  const redis = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  const a = new RealBackend(bins, { extraArgs: ['--no-auth', '--conn-rate', '0', '--redis', url, '--projects', '*', '--instance-id', 'A'] });
  const b = new RealBackend(bins, { extraArgs: ['--no-auth', '--conn-rate', '0', '--redis', url, '--projects', '*', '--instance-id', 'B'] });
  try {
    // /readyz is 200 only once the instance is caught up with Redis (start() waits for it).
    await a.start();
    await b.start();
    const page = await newPage();
    await page.goto(`${b.httpUrl}/`);
    await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10000 });
    await a.pubAs('remote-agent', 'cluster', ['task-start', 'migrate', 'migrate the database']);
    await a.pubAs('remote-agent', 'cluster', ['term', 'migrate'], '\x1b[33mwarning\x1b[0m: table locked\r\n\x1b[31mERROR: migration 42 failed\x1b[0m\r\n');
    await a.pubAs('remote-agent', 'cluster', ['task-end', 'migrate', 'failed', '42']);
    await page.waitForSelector('[data-agent="remote-agent"] .failure:not([hidden])', { timeout: 10000 });
    await page.reload();
    await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10000 });
    const failure = page.locator('[data-agent="remote-agent"] .failure');
    await failure.waitFor({ timeout: 10000 });
    assert.match(await failure.innerText(), /migrate the database \(exit 42\)/);
    await failure.locator('button', { hasText: 'Show output' }).click();
    await page.waitForFunction(() => document.querySelector('.term[data-task="migrate"]')?.textContent.includes('migration 42 failed'), null, { timeout: 10000 });
    await page.waitForSelector('.term[data-task="migrate"][data-state="ended"]', { timeout: 10000 });
    assert.ok(await inView(page, '.term[data-task="migrate"]'));
    await shot(page, '08-redis-other-instance');
    assert.equal(await metric(b, 'ringside_history_redis_total{op="fetch",result="ok"}'), 1, 'served by B from Redis');
    await page.context().close();
  } finally {
    await a.stop(); a.cleanup();
    await b.stop(); b.cleanup();
    redis.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a task id started again: the new run starts empty, each ended run opens its own output', async () => {
  // The tester's repro (issue 19): "build #1" fails, then the same task id runs again.
  await backend.pubAs('rerunner', 'web', ['task-start', 'build', 'build #1']);
  await backend.pubAs('rerunner', 'web', ['term', 'build'], 'RUN ONE: FATAL disk full\r\n');
  await backend.pubAs('rerunner', 'web', ['task-end', 'build', 'failed', '1']);
  const page = await newPage();
  await page.goto(`${backend.httpUrl}/`);
  await page.waitForSelector('[data-agent="rerunner"] .failure:not([hidden])', { timeout: 10000 });
  await backend.pubAs('rerunner', 'web', ['task-start', 'build', 'build #2']);
  await backend.pubAs('rerunner', 'web', ['term', 'build'], 'RUN TWO: compiling\r\n');
  const live = page.locator('[data-agent="rerunner"] .task[data-task="build"] button', { hasText: 'Show terminal' });
  await live.click();
  const term = '.term[data-task="build"]';
  await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes('RUN TWO'), term, { timeout: 10000 });
  assert.ok(!(await page.locator(term).innerText()).includes('RUN ONE'), 'run 2 starts with an empty scrollback');
  // During run 2, run 1's history row shows run 1's output.
  await page.locator(`${term} button`, { hasText: 'Close' }).click();
  await page.locator('[data-agent="rerunner"] .history__summary').click();
  const row = page.locator('[data-agent="rerunner"] .hist[data-task="build"]');
  assert.match(await row.innerText(), /build #1/);
  assert.ok((await row.locator('.hist__title').boundingBox()).width > 40, 'the title is not squeezed away at 1280 px');
  assert.equal(await row.locator('.hist__title').getAttribute('title'), 'build #1 (build)');
  await row.locator('button', { hasText: 'Output' }).click();
  await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes('RUN ONE'), term, { timeout: 10000 });
  await page.waitForSelector(`${term}[data-state="ended"]`, { timeout: 10000 });
  assert.ok(!(await page.locator(term).innerText()).includes('RUN TWO'));
  await shot(page, '09-rerun-first-output');
  // After run 2 ended too: two rows, each with its own output; the failure line is run 1's.
  await page.locator(`${term} button`, { hasText: 'Close' }).click();
  await backend.pubAs('rerunner', 'web', ['task-end', 'build', 'completed', '0']);
  await page.waitForFunction(() => document.querySelectorAll('[data-agent="rerunner"] .hist[data-task="build"]').length === 2, null, { timeout: 10000 });
  const rows = page.locator('[data-agent="rerunner"] .hist[data-task="build"]');
  assert.match(await rows.nth(0).innerText(), /build #2/);
  assert.match(await rows.nth(1).innerText(), /build #1/);
  await rows.nth(1).locator('button', { hasText: 'Output' }).click();
  await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes('RUN ONE'), term, { timeout: 10000 });
  await page.waitForSelector(`${term}[data-state="ended"]`, { timeout: 10000 });
  assert.ok(!(await page.locator(term).innerText()).includes('RUN TWO'));
  await page.locator(`${term} button`, { hasText: 'Close' }).click();
  await rows.nth(0).locator('button', { hasText: 'Output' }).click();
  await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes('RUN TWO'), term, { timeout: 10000 });
  await page.waitForSelector(`${term}[data-state="ended"]`, { timeout: 10000 });
  assert.ok(!(await page.locator(term).innerText()).includes('RUN ONE'));
  await page.context().close();
});

test('more than 50 running tasks: 50 shown, the rest counted, the summary counts all', async () => {
  const page = await newPage();
  await page.goto(`${backend.httpUrl}/`);
  await page.waitForSelector('[data-agent="deployer"] .task[data-task="rollout"]', { timeout: 10000 });
  const base = Number(await page.locator('#summary').getAttribute('data-running'));
  assert.ok(base >= 1, `running before: ${base}`);
  await page.context().close();
  for (let i = 0; i < 60; i++) await backend.pubAs('many', 'web', ['task-start', `job-${i}`, `job ${i}`]);
  const p2 = await newPage();
  await p2.goto(`${backend.httpUrl}/`);
  const card = '[data-agent="many"]';
  await p2.waitForFunction((s) => document.querySelector(s)?.textContent === 'and 10 more running tasks', `${card} .tasks__more`, { timeout: 10000 });
  await p2.waitForFunction((n) => Number(document.querySelector('#summary')?.dataset.running) === n, base + 60, { timeout: 10000 });
  assert.equal(await p2.locator(`${card} .task`).count(), 50);
  await backend.pubAs('many', 'web', ['task-start', 'job-60', 'job 60']);
  await p2.waitForFunction((n) => Number(document.querySelector('#summary')?.dataset.running) === n, base + 61, { timeout: 10000 });
  await p2.waitForFunction((s) => document.querySelector(s)?.textContent === 'and 11 more running tasks', `${card} .tasks__more`, { timeout: 10000 });
  assert.equal(await p2.locator(`${card} .task`).count(), 50);
  // Tasks that end make room: a counted task is then shown.
  for (let i = 0; i < 11; i++) await backend.pubAs('many', 'web', ['task-end', `job-${i}`, 'completed', '0']);
  await p2.waitForSelector(`${card} .tasks__more[hidden]`, { state: 'attached', timeout: 10000 });
  assert.equal(await p2.locator(`${card} .task`).count(), 50);
  await p2.context().close();
});

test('over the per-address connection rate the drawer says so and when it retries', async () => {
  // Its own sidecar: the page (1 connection) and two terminals within a minute, --conn-rate 2.
  const b = new RealBackend(bins, { extraArgs: ['--no-auth', '--conn-rate', '2'] });
  await b.start();
  try {
    await b.pubAs('limited', 'web', ['task-start', 'once', 'once']);
    await b.pubAs('limited', 'web', ['term', 'once'], 'only once\r\n');
    await b.pubAs('limited', 'web', ['task-end', 'once', 'failed', '1']);
    const page = await newPage();
    await page.goto(`${b.httpUrl}/`);
    const show = page.locator('[data-agent="limited"] .failure button', { hasText: 'Show output' });
    await show.click();
    const term = '.term[data-task="once"]';
    await page.waitForSelector(`${term}[data-state="ended"]`, { timeout: 10000 });
    await page.locator(`${term} button`, { hasText: 'Close' }).click();
    await show.click();
    await page.waitForSelector(`${term}[data-state="rate_limited"]`, { timeout: 10000 });
    assert.match(await page.locator(`${term} .term__status`).innerText(), /too many connections from this address — retrying in \d+ s/);
    await shot(page, '10-rate-limited');
    await page.context().close();
  } finally {
    await b.stop();
    b.cleanup();
  }
});

test('the ANSI fallback: a bare carriage return overwrites the line', async () => {
  await backend.pubAs('progressbar', 'misc', ['task-start', 'dl', 'download']);
  await backend.pubAs('progressbar', 'misc', ['term', 'dl'], 'start\r\n10%');
  await backend.pubAs('progressbar', 'misc', ['term', 'dl'], '\r50%\r100%\r\ndone\r\n');
  await backend.pubAs('progressbar', 'misc', ['task-end', 'dl', 'completed', '0']);
  const page = await newPage();
  await page.goto(`${backend.httpUrl}/?renderer=plain#task=dl&agent=progressbar`);
  const pre = '.term[data-task="dl"] .term__pre';
  await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes('done'), pre, { timeout: 10000 });
  assert.equal(await page.locator(pre).evaluate((e) => e.textContent), 'start\n100%\ndone\n');
  await page.context().close();
});

test('an agent with nothing running and no update for forget_s leaves the page', async () => {
  await backend.pubAs('short-lived', 'misc', ['status', 'completed', 'done for today']);
  const page = await newPage();
  await page.goto(`${backend.httpUrl}/?forget_s=2`);
  await page.waitForSelector('[data-agent="short-lived"]', { timeout: 10000 });
  await page.waitForSelector('[data-agent="short-lived"]', { state: 'detached', timeout: 10000 });
  assert.equal(await page.locator('[data-agent="deployer"]').count(), 1, 'an agent with a running task stays');
  await page.context().close();
});
