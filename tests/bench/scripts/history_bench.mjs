// Task-history benchmark (issue #19; docs/benchmarks.md "Task history"): N agents × M ended tasks
// with K bytes of output each through the real sidecar (default options) and the real SDK
// (delivery_rs_agent), then: the snapshot's size (JSON, and on the wire with permessage-deflate)
// and the time to receive it; the dashboard's time to first paint of all agents in headless Debian
// Chromium; the sidecar's RSS for the retained history at the default budget.
//   node history_bench.mjs [--agents 100] [--tasks 20] [--bytes 65536] [--runs 5] [--smoke]
// Prints one RESULT line; exits non-zero unless every task reached the history.
import { spawn } from 'node:child_process';
import zlib from 'node:zlib';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..', '..');
const requireE2e = createRequire(path.join(root, 'tests', 'e2e', 'package.json'));
const { WebSocket } = requireE2e('ws');
const { chromium } = requireE2e('playwright-core');

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? Number(argv[i + 1]) : dflt; };
const SMOKE = argv.includes('--smoke');
const AGENTS = opt('agents', SMOKE ? 5 : 100);
const TASKS = opt('tasks', SMOKE ? 3 : 20);
const BYTES = opt('bytes', SMOKE ? 4096 : 65536);
const RUNS = opt('runs', SMOKE ? 1 : 5);
const BIN = process.env.RINGSIDE_BIN || path.join(root, 'build', 'bin');
const CHROMIUM = process.env.RINGSIDE_CHROMIUM || '/usr/bin/chromium';

const shm = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-hist-bench-'));
const sidecar = spawn(path.join(BIN, 'ringside'), ['--no-auth', '--dashboard', '--listen', '127.0.0.1:0',
  '--shm-dir', shm, '--conn-rate', '0', '--user-conns', '0', '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
sidecar.stderr.on('data', (d) => { if (log.length < 65536) log += d; });

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}
async function metrics(base) {
  const out = {};
  for (const l of (await (await fetch(`${base}/metrics`)).text()).split('\n')) {
    if (l && !l.startsWith('#')) { const i = l.lastIndexOf(' '); out[l.slice(0, i)] = Number(l.slice(i + 1)); }
  }
  return out;
}
/** Polls until pred(value) holds, bounded in time (the sidecar has no event to await here). */
async function until(what, fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** One agent process: M tasks with BYTES of output each, alternately failed and completed. */
function runAgent(i) {
  return new Promise((resolve, reject) => {
    const p = spawn(path.join(BIN, 'delivery_rs_agent'), ['--shm-dir', shm, '--agent', `bench-agent-${i}`,
      '--project', `bench-${i % 10}`], { stdio: ['pipe', 'pipe', 'inherit'] });
    let lines = 0;
    let buf = '';
    const want = TASKS * 3 + 1;
    p.stdout.on('data', (d) => { buf += d; lines = buf.split('\n').length - 1; if (lines >= want) p.stdin.end(); });
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`agent ${i} exited ${code}`))));
    let script = '';
    for (let t = 0; t < TASKS; t++) {
      script += `start task-${t} build step ${t} of agent ${i}\n`;
      script += `fill task-${t} ${BYTES} 4096\n`;
      script += `end task-${t} ${t % 3 === 0 ? 'failed' : 'completed'} ${t % 3 === 0 ? 2 : 0}\n`;
    }
    p.stdin.write(script + 'close\n');
  });
}

async function snapshotOnce(base, deflate) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const ws = new WebSocket(`${base.replace('http', 'ws')}/ws/events`, { perMessageDeflate: deflate });
    ws.once('message', (data) => {
      const ms = performance.now() - t0;
      // What permessage-deflate sends (no context takeover: each message compressed on its own).
      const wire = zlib.deflateRawSync(data).length;
      const snap = JSON.parse(data);
      ws.close();
      resolve({ ms, json: data.length, wire, agents: snap.agents.length, history: snap.agents.reduce((n, a) => n + a.history.length, 0) });
    });
    ws.on('error', reject);
  });
}

try {
  const port = Number(await until('the sidecar', () => /"port":(\d+)/.exec(log)?.[1], 10000));
  const base = `http://127.0.0.1:${port}`;
  const rss0 = rssKiB(sidecar.pid);
  const t0 = Date.now();
  for (let i = 0; i < AGENTS; i += 10) {
    await Promise.all(Array.from({ length: Math.min(10, AGENTS - i) }, (_, k) => runAgent(i + k)));
  }
  const total = AGENTS * TASKS;
  const m = await until(`${total} ended tasks in the history`, async () => {
    const x = await metrics(base);
    return x.ringside_history_tasks >= total ? x : null;
  }, 60000);
  const pubSeconds = (Date.now() - t0) / 1000;
  const rss1 = rssKiB(sidecar.pid);

  const plain = [];
  const deflated = [];
  for (let r = 0; r < RUNS; r++) { plain.push(await snapshotOnce(base, false)); deflated.push(await snapshotOnce(base, true)); }
  if (plain[0].agents !== AGENTS || plain[0].history !== total) throw new Error(`snapshot has ${plain[0].agents} agents, ${plain[0].history} ended tasks`);

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
  const paints = [];
  const fcps = [];
  try {
    for (let r = 0; r < RUNS; r++) {
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await ctx.newPage();
      await page.goto(`${base}/`);
      await page.waitForFunction((n) => document.querySelectorAll('[data-agent]').length >= n && window.ringside?.model.firstRenderMs !== undefined,
        AGENTS, { timeout: 30000 });
      const t = await page.evaluate(() => ({ first: window.ringside.model.firstRenderMs,
        fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null }));
      paints.push(t.first);
      fcps.push(t.fcp);
      await ctx.close();
    }
  } finally {
    await browser.close();
  }
  const res = {
    agents: AGENTS, tasks_per_agent: TASKS, bytes_per_task: BYTES, publish_s: pubSeconds,
    snapshot_json_bytes: plain[0].json, snapshot_deflated_bytes: plain[0].wire, snapshot_ms_median_deflate: Number(median(deflated.map((x) => x.ms)).toFixed(1)),
    snapshot_ms_median: Number(median(plain.map((x) => x.ms)).toFixed(1)),
    first_render_ms_median: Number(median(paints).toFixed(0)), fcp_ms_median: Number(median(fcps).toFixed(0)),
    rss_start_kib: rss0, rss_after_kib: rss1, rss_growth_kib: rss1 - rss0,
    history_output_bytes: m.ringside_history_output_bytes, history_tasks: m.ringside_history_tasks,
    dropped_budget: m['ringside_history_output_dropped_total{reason="budget"}'],
  };
  console.log('RESULT ' + JSON.stringify(res));
} finally {
  sidecar.kill('SIGKILL');
  fs.rmSync(shm, { recursive: true, force: true });
}
