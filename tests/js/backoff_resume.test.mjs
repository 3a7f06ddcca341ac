// Pure parts of ringside.js: the backoff schedule, resume positions and dedupe, MessagePack decoding.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, DEFAULT_BACKOFF, ResumePosition, decodeMessagePack } from '../../sidecar/web/ringside.js';

test('first retry is within 1 s for any random draw', () => {
  for (const r of [0, 0.25, 0.5, 0.999999]) {
    const d = backoffDelay(0, DEFAULT_BACKOFF, () => r);
    assert.ok(d >= 0 && d <= 1000, `delay ${d}`);
  }
  assert.equal(backoffDelay(0, DEFAULT_BACKOFF, () => 0.999999), 499);
});

test('full jitter: the window doubles per attempt up to the cap', () => {
  const top = (n) => backoffDelay(n, DEFAULT_BACKOFF, () => 1 - 1e-12);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map(top), [499, 999, 1999, 3999, 7999, 15999, 29999, 29999]);
  assert.equal(backoffDelay(3, DEFAULT_BACKOFF, () => 0), 0);
  assert.equal(backoffDelay(3, DEFAULT_BACKOFF, () => 0.5), 2000);
});

test('delays are bounded for huge attempts and bad input', () => {
  for (const n of [50, 1000, 1e9, Infinity, -5, NaN, '3']) {
    const d = backoffDelay(n, DEFAULT_BACKOFF, Math.random);
    assert.ok(Number.isInteger(d) && d >= 0 && d <= DEFAULT_BACKOFF.maxMs, `attempt ${n} → ${d}`);
  }
  assert.equal(backoffDelay(2, DEFAULT_BACKOFF, () => 1.5), 1999, 'rand ≥ 1 is clamped');
  assert.equal(backoffDelay(2, DEFAULT_BACKOFF, () => NaN), 0, 'NaN rand is treated as 0');
});

test('custom options: factor, cap and initial window', () => {
  const o = { initialMs: 1000, maxMs: 5000, factor: 3 };
  assert.equal(backoffDelay(0, o, () => 0.5), 500);
  assert.equal(backoffDelay(1, o, () => 0.5), 1500);
  assert.equal(backoffDelay(2, o, () => 0.5), 2500); // window min(5000, 9000)
});

test('jitter spreads clients: many draws cover the window', () => {
  let seed = 7;
  const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  const draws = Array.from({ length: 2000 }, () => backoffDelay(4, DEFAULT_BACKOFF, rand));
  const min = Math.min(...draws), max = Math.max(...draws);
  assert.ok(min < 500 && max > 7500, `spread ${min}..${max}`);
});

test('resume position: nothing to resume before the first snapshot', () => {
  const p = new ResumePosition();
  assert.deepEqual(p.params(), {});
  assert.equal(p.snapshot('e1', 41), true, 'first snapshot is a reload');
  assert.deepEqual(p.params(), { last_sequence_id: '41', epoch: 'e1' });
});

test('resume position: dedupe by seq within an epoch', () => {
  const p = new ResumePosition();
  p.snapshot('e1', 10);
  assert.equal(p.accept('e1', 11), 'deliver');
  assert.equal(p.accept('e1', 12), 'deliver');
  assert.equal(p.accept('e1', 12), 'duplicate');
  assert.equal(p.accept('e1', 5), 'duplicate');
  assert.equal(p.accept('e1', 15), 'deliver', 'gaps (filtered events) are fine');
  assert.deepEqual(p.params(), { last_sequence_id: '15', epoch: 'e1' });
});

test('resume position: another epoch means reload', () => {
  const p = new ResumePosition();
  p.snapshot('e1', 10);
  p.accept('e1', 11);
  assert.equal(p.accept('e2', 1), 'epoch_changed');
  assert.deepEqual(p.params(), { last_sequence_id: '11', epoch: 'e1' }, 'position untouched by a rejected event');
  // A snapshot in the same epoch continues (replay follows); another epoch resets to the snapshot.
  assert.equal(p.snapshot('e1', 20), false);
  assert.deepEqual(p.params(), { last_sequence_id: '11', epoch: 'e1' });
  assert.equal(p.snapshot('e2', 3), true);
  assert.deepEqual(p.params(), { last_sequence_id: '3', epoch: 'e2' });
  p.reset();
  assert.deepEqual(p.params(), {});
});

test('events without seq are always delivered', () => {
  const p = new ResumePosition();
  assert.equal(p.accept(undefined, undefined), 'deliver');
  assert.deepEqual(p.params(), {});
});

test('MessagePack decoder reads the shapes the server sends', () => {
  // {"type":"agent_status","seq":300,"ok":true,"x":null,"p":-3,"f":1.5,"a":[1,"b"]}
  const bytes = Uint8Array.from([
    0x87,
    0xa4, ...Buffer.from('type'), 0xac, ...Buffer.from('agent_status'),
    0xa3, ...Buffer.from('seq'), 0xcd, 0x01, 0x2c,
    0xa2, ...Buffer.from('ok'), 0xc3,
    0xa1, ...Buffer.from('x'), 0xc0,
    0xa1, ...Buffer.from('p'), 0xfd,
    0xa1, ...Buffer.from('f'), 0xcb, ...new Uint8Array(new Float64Array([1.5]).buffer).reverse(),
    0xa1, ...Buffer.from('a'), 0x92, 0x01, 0xa1, ...Buffer.from('b'),
  ]);
  assert.deepEqual(decodeMessagePack(bytes), { type: 'agent_status', seq: 300, ok: true, x: null, p: -3, f: 1.5, a: [1, 'b'] });
  assert.throws(() => decodeMessagePack(Uint8Array.from([0xa5, 0x61])), /truncated/);
});
