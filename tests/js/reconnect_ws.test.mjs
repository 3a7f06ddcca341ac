// RingsideClient against a real WebSocket server (npm `ws`) on 127.0.0.1: reconnect, resume with
// exactly-once delivery, reload on a new epoch, handshake error diagnosis, terminals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RingsideClient, RingsideTerminal } from '../../sidecar/web/ringside.js';
import { ProtocolServer } from './support/protocol_server.mjs';
import { loadWs } from './support/deps.mjs';

const { WebSocket } = loadWs();
const FAST = { initialMs: 100, maxMs: 400, factor: 2, resetAfterMs: 120000 };

/** Resolve when pred() holds, checked after every client event; reject after ms. */
function until(client, pred, ms = 5000, what = 'condition') {
  return new Promise((resolve, reject) => {
    const check = () => { if (pred()) { cleanup(); resolve(); } };
    const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for ${what}`)); }, ms);
    const offs = ['state', 'message', 'snapshot', 'close', 'data', 'header', 'forbidden', 'handshake_error']
      .map((t) => client.on(t, check));
    function cleanup() { clearTimeout(timer); offs.forEach((f) => f()); }
    check();
  });
}

/** Poll a server-side condition (the server has no event to await here): bounded in time. */
async function poll(pred, ms = 5000, what = 'condition') {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function newClient(server, extra = {}) {
  return new RingsideClient({ url: `${server.url}/ws/events`, WebSocket, environment: null,
    fetch, backoff: FAST, ...extra });
}

test('snapshot first, live events, pong for heartbeats', async (t) => {
  const server = await new ProtocolServer().start();
  t.after(() => server.kill());
  server.publish({ type: 'agent_status', agent_id: 'a1', project_id: 'p1', old_status: 'idle', new_status: 'working' });
  const c = newClient(server);
  t.after(() => c.close());
  const snaps = [];
  c.on('snapshot', (s) => snaps.push(s));
  await until(c, () => snaps.length === 1, 5000, 'snapshot');
  assert.equal(snaps[0].agents[0].status, 'working');
  assert.equal(snaps[0].reload, true);
  const got = [];
  c.on('agent_status', (e) => got.push(e.new_status));
  server.publish({ type: 'agent_status', agent_id: 'a1', project_id: 'p1', old_status: 'working', new_status: 'stuck' });
  server.heartbeat();
  const conn = [...server.clients][0];
  await until(c, () => got.length === 1, 5000, 'event');
  await poll(() => conn.received.some((m) => m.type === 'pong'), 5000, 'pong');
  assert.deepEqual(got, ['stuck']);
});

test('connection lost: reconnect, resume, events of the outage exactly once and in order', async (t) => {
  const server = await new ProtocolServer().start();
  t.after(() => server.kill());
  const c = newClient(server);
  t.after(() => c.close());
  const seqs = [];
  c.on('agent_status', (e) => seqs.push(e.seq));
  await until(c, () => c.state === 'connected', 5000, 'connected');
  server.publish({ type: 'agent_status', agent_id: 'a1', project_id: 'p1', new_status: 'working' });
  await until(c, () => seqs.length === 1, 5000, 'first event');

  // Drop every socket without a close frame (network failure); publish while the client is away.
  const states = [];
  c.on('state', (s) => states.push(s.state));
  for (const cl of server.clients) cl.ws._socket.destroy();
  await until(c, () => c.state === 'disconnected', 5000, 'disconnected');
  for (let i = 0; i < 5; i++) server.publish({ type: 'agent_status', agent_id: 'a1', project_id: 'p1', new_status: `s${i}` });
  await until(c, () => seqs.length === 6, 5000, 'replayed events');
  assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6]);
  assert.ok(states.includes('connecting') && states.at(-1) === 'connected');
  const resume = server.connections.at(-1).params;
  assert.equal(resume.last_sequence_id, '1');
  assert.equal(resume.epoch, 'e1');
});

test('server restart with a new epoch: fresh snapshot marked as reload, nothing replayed', async (t) => {
  const server = await new ProtocolServer({ epoch: 'run1' }).start();
  t.after(() => server.kill());
  const c = newClient(server);
  t.after(() => c.close());
  const snaps = [];
  c.on('snapshot', (s) => snaps.push(s));
  server.publish({ type: 'agent_status', agent_id: 'a1', project_id: 'p1', new_status: 'working' });
  await until(c, () => snaps.length === 1, 5000, 'snapshot');
  await server.kill();
  await until(c, () => c.state === 'disconnected', 5000, 'disconnected');
  await server.restart({ keepHistory: false, epoch: 'run2' });
  server.publish({ type: 'agent_status', agent_id: 'a1', project_id: 'p1', new_status: 'stuck' });
  await until(c, () => snaps.length === 2, 8000, 'second snapshot');
  assert.equal(snaps[1].reload, true);
  assert.equal(snaps[1].epoch, 'run2');
  assert.equal(snaps[1].agents[0].status, 'stuck');
  assert.deepEqual(c.position.params(), { last_sequence_id: '1', epoch: 'run2' });
});

test('handshake refused with 403: diagnosed over HTTP, reported, no retry loop', async (t) => {
  const server = await new ProtocolServer().start();
  t.after(() => server.kill());
  server.rejectNext = { status: 403, error: 'forbidden', message: 'Your token does not grant project p9 — ask an admin' };
  server.httpRejections = server.rejectNext;
  const c = newClient(server, { token: 'tok' });
  t.after(() => c.close());
  const errors = [];
  c.on('handshake_error', (e) => errors.push(e));
  await until(c, () => c.state === 'disconnected' && c.lastReason === 'forbidden', 5000, 'forbidden');
  assert.equal(errors[0].status, 403);
  assert.match(errors[0].message, /ask an admin/);
  const attempts = server.connections.length;
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(server.connections.length, attempts, 'no further attempts');
});

test('handshake refused with 429 + Retry-After: waits at least that long', async (t) => {
  const server = await new ProtocolServer().start();
  t.after(() => server.kill());
  server.rejectNext = { status: 429, error: 'rate_limited', message: 'Too many connections', retryAfter: 2 };
  server.httpRejections = server.rejectNext;
  const c = newClient(server);
  t.after(() => c.close());
  const states = [];
  c.on('state', (s) => states.push(s));
  await until(c, () => states.some((s) => s.reason === 'rate_limited'), 5000, 'rate limited');
  const s = states.find((x) => x.reason === 'rate_limited');
  assert.ok(s.nextRetryAt - Date.now() > 1500, 'Retry-After honoured');
  server.rejectNext = null;
  server.httpRejections = null;
  await until(c, () => c.state === 'connected', 5000, 'connected after Retry-After');
});

test('graceful shutdown message: reconnects after reconnect_after_ms', async (t) => {
  const server = await new ProtocolServer().start();
  t.after(() => server.kill());
  const c = newClient(server);
  t.after(() => c.close());
  await until(c, () => c.state === 'connected', 5000, 'connected');
  const t0 = Date.now();
  server.shutdownClients(300);
  await until(c, () => c.state === 'disconnected', 5000, 'disconnected');
  assert.equal(c.lastReason, 'server_shutdown');
  await until(c, () => c.state === 'connected', 5000, 'reconnected');
  assert.ok(Date.now() - t0 >= 290, `waited ${Date.now() - t0} ms`);
});

test('terminal: scrollback, live bytes, pause holds output until resume, end closes', async (t) => {
  const server = await new ProtocolServer().start();
  t.after(() => server.kill());
  server.terminalWrite('t1', '\x1b[32mhello\x1b[0m\r\n');
  const term = new RingsideTerminal({ baseUrl: server.url, taskId: 't1', WebSocket, environment: null, fetch, backoff: FAST });
  t.after(() => term.close());
  let text = '';
  const td = new TextDecoder();
  term.on('data', (d) => { text += td.decode(d, { stream: true }); });
  const headers = [];
  term.on('header', (h) => headers.push(h));
  await until(term, () => text.includes('hello'), 5000, 'scrollback');
  assert.equal(headers[0].scrollback_bytes, Buffer.byteLength('\x1b[32mhello\x1b[0m\r\n'));
  term.pause();
  await new Promise((r) => setTimeout(r, 100)); // let the pause reach the server (no event to await)
  server.terminalWrite('t1', 'while-paused\r\n');
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(!text.includes('while-paused'), 'nothing shown while paused');
  term.resume();
  await until(term, () => text.includes('while-paused'), 5000, 'resumed output');
  const ended = [];
  term.on('task_ended', (e) => ended.push(e));
  server.terminalEnd('t1', 0);
  await until(term, () => term.state === 'disconnected' && ended.length === 1, 5000, 'ended');
  assert.equal(term.lastReason, 'ended');
});

test('terminal for an unknown task: close 4004, no retry', async (t) => {
  const server = await new ProtocolServer().start();
  t.after(() => server.kill());
  const term = new RingsideTerminal({ baseUrl: server.url, taskId: 'nope', WebSocket, environment: null, fetch, backoff: FAST });
  t.after(() => term.close());
  await until(term, () => term.lastReason === 'unknown_task', 5000, 'unknown task');
  assert.equal(server.connections.length, 1);
});

test('handshake refused but the diagnosis only says 426: reported as refused, retried with backoff', async (t) => {
  const server = await new ProtocolServer().start();
  t.after(() => server.kill());
  server.rejectNext = { status: 401, error: 'unauthorized', message: 'token expired' };
  const c = newClient(server, { token: 'old' });
  t.after(() => c.close());
  const errors = [];
  c.on('handshake_error', (e) => errors.push(e));
  await until(c, () => c.lastReason === 'refused', 5000, 'refused');
  assert.equal(errors[0].status, 426);
  server.rejectNext = null;
  await until(c, () => c.state === 'connected', 5000, 'connected once the server accepts');
});
