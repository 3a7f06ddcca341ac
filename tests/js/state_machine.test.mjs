// The connection state machine of RingsideClient, driven with a scripted WebSocket and fake timers.
import { test, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import { RingsideClient, RingsideTerminal, DEFAULT_HEARTBEAT_TIMEOUT_MS } from '../../sidecar/web/ringside.js';
import { FakeWebSocket, fakeEnvironment } from './support/fake_ws.mjs';

const flush = async () => { for (let i = 0; i < 5; i++) await Promise.resolve(); };

let env;
beforeEach(() => {
  FakeWebSocket.reset();
  env = fakeEnvironment();
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 });
});
afterEach(() => mock.timers.reset());

function client(extra = {}) {
  const c = new RingsideClient({ url: 'ws://sidecar.test/ws/events', WebSocket: FakeWebSocket,
    environment: env, fetch: null, random: () => 0.5, ...extra });
  const states = [];
  c.on('state', (s) => states.push(s));
  return { c, states };
}

async function connected(c) {
  await flush();
  const ws = FakeWebSocket.last();
  ws.serverOpen();
  ws.serverSend({ type: 'snapshot', epoch: 'e1', seq: 5, agents: [] });
  return ws;
}

test('connecting → connected → disconnected with the next retry time, then reconnects', async () => {
  const { c, states } = client();
  assert.equal(c.state, 'connecting');
  const ws = await connected(c);
  assert.equal(c.state, 'connected');
  ws.serverClose(1006);
  const s = states.at(-1);
  assert.equal(s.state, 'disconnected');
  assert.equal(s.reason, 'connection_lost');
  assert.equal(s.attempt, 1);
  assert.equal(s.nextRetryAt, Date.now() + 250, 'first retry: half of the 500 ms window with rand 0.5');
  mock.timers.tick(249);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
  mock.timers.tick(1);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(c.state, 'connecting');
  assert.deepEqual(states.map((x) => x.state), ['connected', 'disconnected', 'connecting'],
    'the first "connecting" is emitted by the constructor, before any handler exists');
  c.close();
});

test('backoff grows while the server stays down and resets after a stable period', async () => {
  const { c, states } = client();
  await flush();
  const delays = [];
  for (let i = 0; i < 5; i++) {
    FakeWebSocket.last().serverClose(1006);
    const s = states.at(-1);
    delays.push(s.nextRetryAt - Date.now());
    mock.timers.tick(s.nextRetryAt - Date.now());
    await flush();
  }
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000]);
  const ws = FakeWebSocket.last();
  ws.serverOpen();
  assert.equal(c.attempt, 5);
  for (let i = 0; i < 4; i++) { mock.timers.tick(30000); ws.serverSend({ type: 'heartbeat' }); }
  assert.equal(c.attempt, 0, 'stable for resetAfterMs');
  c.close();
});

test('heartbeats are answered with pong and keep the connection alive', async () => {
  const { c } = client();
  const ws = await connected(c);
  for (let i = 0; i < 10; i++) {
    mock.timers.tick(30000);
    ws.serverSend({ type: 'heartbeat', timestamp: new Date().toISOString() });
  }
  assert.equal(c.state, 'connected');
  assert.equal(ws.sent.filter((m) => m.type === 'pong').length, 10);
  c.close();
});

test('missed heartbeats: the socket is declared dead and replaced', async () => {
  const { c, states } = client();
  const ws = await connected(c);
  const dead = [];
  c.on('dead_connection', (d) => dead.push(d));
  mock.timers.tick(DEFAULT_HEARTBEAT_TIMEOUT_MS + 5000);
  await flush();
  assert.equal(dead.length, 1);
  assert.ok(ws.closedWith, 'old socket closed');
  assert.ok(states.some((s) => s.reason === 'heartbeat_timeout'));
  mock.timers.tick(1000);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2, 'reconnected');
  c.close();
});

test('sleep/wake: a silent "open" socket is not trusted after visibilitychange', async () => {
  const { c } = client();
  const ws = await connected(c);
  // The machine slept: the clock jumped, no timer ran.
  mock.timers.setTime(Date.now() + 10 * 60 * 1000);
  env.document.dispatchEvent(new Event('visibilitychange'));
  await flush();
  assert.ok(ws.closedWith, 'zombie socket closed');
  assert.equal(FakeWebSocket.instances.length, 2, 'reconnected at once');
  c.close();
});

test('online and pageshow reconnect at once while waiting for a retry', async () => {
  const { c, states } = client();
  const ws = await connected(c);
  ws.serverClose(1006);
  for (let i = 0; i < 4; i++) { // push the backoff up
    await flush(); mock.timers.tick(states.at(-1).nextRetryAt - Date.now()); await flush();
    FakeWebSocket.last().serverClose(1006);
  }
  assert.ok(states.at(-1).nextRetryAt - Date.now() >= 1000);
  const n = FakeWebSocket.instances.length;
  env.dispatchEvent(new Event('online'));
  await flush();
  assert.equal(FakeWebSocket.instances.length, n + 1);
  FakeWebSocket.last().serverClose(1006);
  env.dispatchEvent(new Event('pageshow'));
  await flush();
  assert.equal(FakeWebSocket.instances.length, n + 2);
  c.close();
});

test('offline drops the socket at once; nothing is queued while offline', async () => {
  const { c } = client();
  const ws = await connected(c);
  env.dispatchEvent(new Event('offline'));
  assert.equal(c.state, 'disconnected');
  assert.ok(ws.closedWith);
  assert.equal(c.send({ type: 'pong' }), false);
  assert.equal(c.subscribe({ project_ids: ['p2'] }), false, 'subscribe while offline is not queued…');
  mock.timers.tick(1000);
  await flush();
  const ws2 = FakeWebSocket.last();
  assert.equal(ws2.params.project_ids, 'p2', '…but the filters apply on reconnect');
  ws2.serverOpen();
  assert.deepEqual(ws2.sent, [], 'no stale messages flushed after reconnect');
  c.close();
});

test('filters survive reconnects and subscribe() sends when connected', async () => {
  const { c } = client({ filters: { agent_ids: ['a1', 'a2'], event_types: ['agent_status'] } });
  const ws = await connected(c);
  assert.equal(ws.params.agent_ids, 'a1,a2');
  assert.equal(ws.params.event_types, 'agent_status');
  assert.equal(c.subscribe({ project_ids: ['p1'] }), true);
  assert.deepEqual(ws.sent.at(-1), { type: 'subscribe', agent_ids: [], project_ids: ['p1'], event_types: [] });
  ws.serverClose(1006);
  mock.timers.tick(1000);
  await flush();
  const ws2 = FakeWebSocket.last();
  assert.equal(ws2.params.project_ids, 'p1');
  assert.equal(ws2.params.agent_ids, undefined);
  c.close();
});

test('resume: last (epoch, seq) in the URL, duplicates dropped, order kept', async () => {
  const { c } = client();
  const got = [];
  c.on('agent_status', (e) => got.push(e.seq));
  const ws = await connected(c);
  assert.equal(ws.params.last_sequence_id, undefined);
  for (const s of [6, 7, 8]) ws.serverSend({ type: 'agent_status', seq: s, epoch: 'e1', agent_id: 'a1' });
  ws.serverClose(1006);
  mock.timers.tick(1000);
  await flush();
  const ws2 = FakeWebSocket.last();
  assert.equal(ws2.params.last_sequence_id, '8');
  assert.equal(ws2.params.epoch, 'e1');
  ws2.serverOpen();
  const snaps = [];
  c.on('snapshot', (s) => snaps.push(s.reload));
  ws2.serverSend({ type: 'snapshot', epoch: 'e1', seq: 10, agents: [] });
  for (const s of [7, 8, 9, 10]) ws2.serverSend({ type: 'agent_status', seq: s, epoch: 'e1', agent_id: 'a1' });
  assert.deepEqual(got, [6, 7, 8, 9, 10]);
  assert.deepEqual(snaps, [false], 'same epoch: not a reload');
  c.close();
});

test('epoch change in an event: reconnect without resume and take the snapshot as a reload', async () => {
  const { c } = client();
  const ws = await connected(c);
  const snaps = [];
  c.on('snapshot', (s) => snaps.push(s.reload));
  ws.serverSend({ type: 'agent_status', seq: 6, epoch: 'e1' });
  ws.serverSend({ type: 'agent_status', seq: 1, epoch: 'e2' });
  await flush();
  const ws2 = FakeWebSocket.last();
  assert.notEqual(ws2, ws);
  assert.equal(ws2.params.last_sequence_id, undefined);
  ws2.serverOpen();
  ws2.serverSend({ type: 'snapshot', epoch: 'e2', seq: 1, agents: [] });
  assert.deepEqual(snaps, [true]);
  c.close();
});

test('new epoch on reconnect (server restarted) is a reload', async () => {
  const { c } = client();
  const ws = await connected(c);
  ws.serverClose(1006);
  mock.timers.tick(1000);
  await flush();
  const ws2 = FakeWebSocket.last();
  ws2.serverOpen();
  const snaps = [];
  c.on('snapshot', (s) => snaps.push(s.reload));
  ws2.serverSend({ type: 'snapshot', epoch: 'e9', seq: 2, agents: [] });
  assert.deepEqual(snaps, [true]);
  assert.deepEqual(c.position.params(), { last_sequence_id: '2', epoch: 'e9' });
  c.close();
});

test('replay_truncated: the following snapshot is a reload', async () => {
  const { c } = client();
  const ws = await connected(c);
  const snaps = [];
  c.on('snapshot', (s) => snaps.push(s.reload));
  ws.serverSend({ type: 'replay_truncated', epoch: 'e1', from_seq: 6, to_seq: 900 });
  ws.serverSend({ type: 'snapshot', epoch: 'e1', seq: 900, agents: [] });
  assert.deepEqual(snaps, [true]);
  assert.deepEqual(c.position.params(), { last_sequence_id: '900', epoch: 'e1' });
  c.close();
});

test('4003 forbidden: no retry loop', async () => {
  const { c, states } = client();
  const forbidden = [];
  c.on('forbidden', (f) => forbidden.push(f));
  const ws = await connected(c);
  ws.serverClose(4003, 'forbidden');
  assert.equal(forbidden.length, 1);
  assert.equal(states.at(-1).reason, 'forbidden');
  assert.equal(states.at(-1).nextRetryAt, null);
  mock.timers.tick(600000);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1, 'never retried');
  c.reconnectNow();
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2, 'the user may retry by hand');
  c.close();
});

test('4001 token expired: getToken is called before every (re)connect', async () => {
  let n = 0;
  const { c } = client({ getToken: async () => `tok${++n}` });
  const expired = [];
  c.on('auth_expired', (e) => expired.push(e));
  const ws = await connected(c);
  assert.equal(ws.params.token, 'tok1');
  ws.serverClose(4001, 'token expired');
  assert.equal(expired.length, 1);
  assert.equal(expired[0].willRetry, true);
  mock.timers.tick(1000);
  await flush();
  assert.equal(FakeWebSocket.last().params.token, 'tok2');
  c.close();
});

test('setToken refreshes in band when connected and is used on the next connect', async () => {
  const { c } = client({ token: 'one' });
  const ws = await connected(c);
  assert.equal(c.setToken('two'), true);
  assert.deepEqual(ws.sent.at(-1), { type: 'auth', token: 'two' });
  ws.serverClose(1006);
  mock.timers.tick(1000);
  await flush();
  assert.equal(FakeWebSocket.last().params.token, 'two');
  c.close();
});

test('4001 without a refresh hook: stop and tell the user', async () => {
  const { c, states } = client({ token: 'static' });
  const ws = await connected(c);
  assert.equal(ws.params.token, 'static');
  ws.serverClose(4001, 'token expired');
  assert.equal(states.at(-1).reason, 'auth_expired');
  mock.timers.tick(600000);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
  c.close();
});

test('shutdown message: reconnect after reconnect_after_ms, not by the backoff', async () => {
  const { c, states } = client({ random: () => 0 });
  const ws = await connected(c);
  ws.serverSend({ type: 'shutdown', reconnect_after_ms: 3000 });
  ws.serverClose(1001, 'draining');
  assert.equal(states.at(-1).reason, 'server_shutdown');
  assert.equal(states.at(-1).nextRetryAt - Date.now(), 3000);
  mock.timers.tick(2999);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
  mock.timers.tick(1);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 2);
  c.close();
});

test('connect timeout: a handshake that never completes is abandoned', async () => {
  const { c, states } = client({ connectTimeoutMs: 2000 });
  await flush();
  mock.timers.tick(2000);
  await flush();
  assert.ok(states.some((s) => s.reason === 'connect_timeout'));
  c.close();
});

test('close() stops everything; stale socket callbacks are ignored', async () => {
  const { c, states } = client();
  const ws = await connected(c);
  c.close();
  ws.serverSend({ type: 'agent_status', seq: 99, epoch: 'e1' });
  ws.serverClose(1006);
  mock.timers.tick(600000);
  await flush();
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(states.at(-1).state, 'disconnected');
});

test('terminal: header, bytes, pause/resume, end of task', async () => {
  const t = new RingsideTerminal({ baseUrl: 'ws://sidecar.test', taskId: 'build 1', WebSocket: FakeWebSocket,
    environment: env, fetch: null, random: () => 0.5 });
  await flush();
  const ws = FakeWebSocket.last();
  assert.equal(new URL(ws.url).pathname, '/ws/terminal/build%201');
  const seen = [];
  t.on('header', (h) => seen.push(['header', h.scrollback_bytes]));
  t.on('data', (d) => seen.push(['data', Buffer.from(d).toString()]));
  t.on('task_ended', (e) => seen.push(['end', e.exit_code]));
  ws.serverOpen();
  ws.serverSend({ type: 'terminal', task_id: 'build 1', scrollback_bytes: 3 });
  ws.serverBinary(new TextEncoder().encode('\x1b[31mred').buffer);
  assert.equal(t.pause(), true);
  assert.equal(t.resume(), true);
  assert.deepEqual(ws.sent, [{ type: 'pause' }, { type: 'resume' }]);
  ws.serverSend({ type: 'task_ended', exit_code: 0 });
  ws.serverClose(1000);
  mock.timers.tick(600000);
  await flush();
  assert.deepEqual(seen, [['header', 3], ['data', '\x1b[31mred'], ['end', 0]]);
  assert.equal(FakeWebSocket.instances.length, 1, 'no reconnect after the task ended');
  t.close();
});
