// ringside.js against the real sidecar (build/bin/ringside) for the task-history protocol
// (issue #19): the snapshot's `history`, an ended task's terminal, close 4010 (output expired) and
// a 400 at the handshake, both permanent: reported once and never retried.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RingsideClient, RingsideTerminal } from '../../sidecar/web/ringside.js';
import { loadWs, repoRoot } from './support/deps.mjs';

const { WebSocket } = loadWs();
const BIN = process.env.RINGSIDE_BIN || path.join(repoRoot, 'build', 'bin');

/** Starts a sidecar on an ephemeral port; resolves when it logs `listening`. */
function startSidecar(args = []) {
  const shm = mkdtempSync(path.join(tmpdir(), 'rs-js-'));
  const proc = spawn(path.join(BIN, 'ringside'), ['--no-auth', '--listen', '127.0.0.1:0', '--shm-dir', shm,
    '--conn-rate', '0', '--user-conns', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`sidecar did not start: ${log}`)); }, 10000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /"msg":"listening".*"port":(\d+)/.exec(log);
      if (m && timer) {
        clearTimeout(timer);
        resolve({ port: Number(m[1]), shm, pub: (...a) => pub(shm, a), logs: () => log,
          stop: () => { proc.kill('SIGKILL'); rmSync(shm, { recursive: true, force: true }); } });
      }
    });
    proc.on('exit', (code) => reject(new Error(`sidecar exited ${code}: ${log}`)));
  });
}

function pub(shm, args, input) {
  const i = args.indexOf('--stdin');
  if (i >= 0) { input = args[i + 1]; args = args.slice(0, i); }
  execFileSync(path.join(BIN, 'ringside-pub'), ['--shm-dir', shm, '--agent', 'a1', '--project', 'p1', ...args],
    { input: input ?? '', timeout: 10000 });
}

/** Resolves with the first value of `event` on emitter for which pred holds; rejects after ms. */
function once(emitter, event, pred = () => true, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`timed out waiting for ${event}`)); }, ms);
    const off = emitter.on(event, (v) => { if (pred(v)) { clearTimeout(timer); off(); resolve(v); } });
  });
}

const FAST = { initialMs: 50, maxMs: 100, factor: 2, resetAfterMs: 120000 };

async function endedTask(sc, task, outcome, output, code) {
  const c = new RingsideClient({ url: `ws://127.0.0.1:${sc.port}/ws/events`, WebSocket, environment: null, fetch });
  await once(c, 'snapshot');
  sc.pub('task-start', task, `title ${task}`);
  if (output) sc.pub('term', task, '--stdin', output);
  sc.pub('task-end', task, outcome, String(code));
  await once(c, 'task_ended', (e) => e.task_id === task);
  c.close();
}

test('the snapshot carries each agent\'s ended tasks, newest first', async (t) => {
  const sc = await startSidecar();
  t.after(() => sc.stop());
  await endedTask(sc, 't1', 'failed', 'boom\r\n', 3);
  await endedTask(sc, 't2', 'completed', 'ok\r\n', 0);
  const c = new RingsideClient({ url: `ws://127.0.0.1:${sc.port}/ws/events`, WebSocket, environment: null, fetch });
  const snap = await once(c, 'snapshot');
  c.close();
  const a = snap.agents.find((x) => x.agent_id === 'a1');
  assert.deepEqual(a.tasks, []);
  assert.deepEqual(a.history.map((h) => [h.task_id, h.state, h.exit_code, h.output_bytes, h.output_retained]),
    [['t2', 'completed', 0, 4, true], ['t1', 'failed', 3, 6, true]]);
  for (const h of a.history) {
    assert.equal(typeof h.duration_seconds, 'number');
    assert.ok(Date.parse(h.ended_at) >= Date.parse(h.started_at));
  }
});

test('an ended task\'s terminal: header (ended), its output, task_ended, then halted as ended', async (t) => {
  const sc = await startSidecar();
  t.after(() => sc.stop());
  await endedTask(sc, 't1', 'failed', '\x1b[31mred\x1b[0m\r\n', 2);
  const term = new RingsideTerminal({ baseUrl: `ws://127.0.0.1:${sc.port}`, taskId: 't1', WebSocket, environment: null, fetch, backoff: FAST });
  const chunks = [];
  term.on('data', (b) => chunks.push(Buffer.from(b)));
  const header = once(term, 'header');
  const end = once(term, 'task_ended');
  const halted = once(term, 'state', (s) => s.reason === 'ended');
  const h = await header;
  assert.equal(h.ended, true);
  assert.equal(h.output_bytes, 14);
  assert.equal((await end).exit_code, 2);
  await halted;
  assert.equal(Buffer.concat(chunks).toString(), '\x1b[31mred\x1b[0m\r\n');
  assert.equal(term.nextRetryAt, null);
  term.close();
});

test('expired output (4010) is reported once and not retried', async (t) => {
  const sc = await startSidecar(['--history-tasks', '1']);
  t.after(() => sc.stop());
  await endedTask(sc, 't1', 'failed', 'x', 1);
  await endedTask(sc, 't2', 'failed', 'y', 1);
  let opened = 0;
  class CountingWs extends WebSocket { constructor(...a) { super(...a); opened++; } }
  const term = new RingsideTerminal({ baseUrl: `ws://127.0.0.1:${sc.port}`, taskId: 't1', WebSocket: CountingWs, environment: null, fetch, backoff: FAST });
  let expired = 0;
  term.on('expired', () => expired++);
  const s = await once(term, 'state', (x) => x.reason === 'expired');
  assert.equal(s.state, 'disconnected');
  assert.equal(s.code, 4010);
  // Long enough for several retries at the FAST backoff, had there been any.
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(opened, 1);
  assert.equal(expired, 1);
  assert.equal(term.nextRetryAt, null);
  term.close();
});

test('a bad filter (400) is reported once with the server\'s message and not retried', async (t) => {
  const sc = await startSidecar();
  t.after(() => sc.stop());
  let opened = 0;
  class CountingWs extends WebSocket { constructor(...a) { super(...a); opened++; } }
  const c = new RingsideClient({ url: `ws://127.0.0.1:${sc.port}/ws/events`, WebSocket: CountingWs, environment: null,
    fetch, backoff: FAST, filters: { agent_ids: ['bad id'] } });
  const errors = [];
  c.on('bad_request', (e) => errors.push(e));
  const s = await once(c, 'state', (x) => x.reason === 'bad_request');
  assert.equal(s.status, 400);
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(opened, 1);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].error, 'bad_filter');
  assert.match(errors[0].message, /agent_ids/);
  assert.equal(c.nextRetryAt, null);
  c.close();
});
