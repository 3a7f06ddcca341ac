'use strict';
// The ringside npm package against the real libringside: every call, error mapping, withTask
// outcomes, child-process streaming (into the ring, and byte-exact through a real sidecar to a
// real WebSocket client), no-sidecar behaviour.
const assert = require('node:assert/strict');
const { test, describe, beforeEach, afterEach } = require('node:test');
const path = require('node:path');
const fs = require('node:fs');
const crypto = require('node:crypto');
const s = require('./support.js');
const ringside = require('..');

const NODE = process.execPath;

describe('library', () => {
  test('version, strerror and the library path', () => {
    assert.equal(ringside.version(), '0.1.0');
    assert.equal(ringside.strerror(-4), 'ring full: event dropped and counted');
    assert.equal(ringside.libraryPath(), path.join(s.LIB, 'libringside.so.0'));
  });

  test('every RS_E* code maps to a typed error', () => {
    for (let code = -1; code >= -9; code--) {
      const Cls = ringside.ERRORS[code];
      assert.ok(Cls.prototype instanceof ringside.RingsideError, String(code));
    }
  });
});

test('index.d.ts declares every export', () => {
  const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  for (const name of Object.keys(ringside)) {
    assert.match(dts, new RegExp(`export (declare )?(class|function|const) ${name}\\b`), name);
  }
});

describe('agent', () => {
  let t;
  beforeEach(() => { t = s.tmpdir(); });
  afterEach(() => t.cleanup());
  const open = (o = {}) => new ringside.Agent({ agentId: 'node-1', projectId: 'proj', shmDir: t.shm, ...o });

  test('every call reaches the ring', () => {
    const a = open({ owner: 'bob' });
    assert.equal(a.connected, true);
    for (const name of Object.keys(ringside.STATUS)) assert.equal(a.status(name, `d ${name}`), true);
    const task = a.task('t-1', 'Build the thing');
    assert.equal(task.progress(3, 10, 'compiling'), true);
    assert.equal(task.write('\x1b[32mok ✓\x1b[0m\r\n'), true);
    const big = crypto.randomBytes(300000); // split into pieces below half a ring
    assert.equal(task.write(big), true);
    assert.equal(task.write(''), true);
    assert.equal(task.write(new Uint8Array(0)), true);
    assert.equal(task.write(Buffer.from('warn\r\n'), 'stderr'), true);
    assert.equal(task.end('failed', 7), true);
    assert.equal(a.stats().term_bytes_written, Buffer.byteLength('\x1b[32mok ✓\x1b[0m\r\n') + big.length + 6);
    a.close();
    a.close();
    assert.equal(a.connected, false);
    const recs = s.dump(t.shm);
    const ring = s.of(recs, 'ring')[0];
    assert.deepEqual([ring.agent, ring.project, ring.owner, ring.closed_cleanly], ['node-1', 'proj', 'bob', 1]);
    assert.deepEqual(s.of(recs, 'status').map((x) => x.status), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(s.of(recs, 'progress').map((p) => [p.step, p.total, p.message]), [[3, 10, 'compiling']]);
    assert.deepEqual(s.termBytes(recs, 't-1', 1), Buffer.concat([Buffer.from('\x1b[32mok ✓\x1b[0m\r\n'), big]));
    assert.deepEqual(s.termBytes(recs, 't-1', 2), Buffer.from('warn\r\n'));
    assert.deepEqual(s.of(recs, 'task_end').map((e) => [e.outcome, e.exit_code]), [[3, 7]]);
  });

  test('caller mistakes throw even when not strict', () => {
    const a = open();
    assert.throws(() => open({ agentId: 'bad id' }), ringside.InvalidArgument);
    assert.throws(() => a.status('busy'), ringside.InvalidArgument);
    assert.throws(() => a.task('x'.repeat(64)), ringside.InvalidArgument);
    const task = a.task('t1');
    assert.throws(() => a.task('t1'), ringside.TaskExists);
    assert.throws(() => task.progress(11, 10), (e) => e instanceof ringside.InvalidArgument && e.code === -1);
    assert.throws(() => task.progress(1.5, 10), ringside.InvalidArgument);
    assert.throws(() => task.write('x', 'stdin'), ringside.InvalidArgument);
    assert.throws(() => task.end('idle'), ringside.InvalidArgument);
    task.end();
    assert.throws(() => task.progress(1, 2), ringside.NoSuchTask);
    a.close();
  });

  test('too many tasks and a full ring: false unless strict', () => {
    const a = open({ maxTasks: 1, logSlots: 8 });
    a.task('t1');
    const t2 = a.task('t2');
    assert.equal(t2.live, false);
    assert.equal(t2.progress(1, 2), false);
    const results = [];
    for (let i = 0; i < 40; i++) results.push(a.status(i % 2 ? 'working' : 'idle'));
    assert.ok(results.includes(false));
    assert.ok(a.stats().events_dropped > 0);
    a.close();
    const b = open({ maxTasks: 1, logSlots: 8, strict: true });
    b.task('t1');
    assert.throws(() => b.task('t2'), (e) => e instanceof ringside.TooManyTasks && e.code === -6);
    assert.throws(() => { for (let i = 0; i < 40; i++) b.status(i % 2 ? 'working' : 'idle'); }, ringside.RingFull);
    b.close();
    assert.throws(() => b.status('idle'), ringside.Closed);
  });

  test('withTask ends with the right outcome', async () => {
    const a = open();
    assert.equal(await a.withTask('ok', 'fine', (task) => { task.progress(1, 1); return 42; }), 42);
    await assert.rejects(a.withTask('boom', null, async () => { throw new Error('disk on fire'); }), /disk on fire/);
    const abort = new Error('stop'); abort.name = 'AbortError';
    await assert.rejects(a.withTask('aborted', null, () => { throw abort; }));
    await a.withTask('explicit', null, (task) => task.end('cancelled', 9));
    await a.withTask('ran', null, (task) => task.run(NODE, ['-e', 'process.exit(5)']));
    a.close();
    const recs = s.dump(t.shm);
    const ends = Object.fromEntries(s.of(recs, 'task_end').map((e) => [e.task, [e.outcome, e.exit_code]]));
    assert.deepEqual(ends, { ok: [4, 0], boom: [3, 1], aborted: [5, 0], explicit: [5, 9], ran: [3, 5] });
    assert.deepEqual(s.termBytes(recs, 'boom', 2), Buffer.from('\r\nError: disk on fire\r\n'));
  });

  test('run streams stdout and stderr byte-exact and maps exits', async () => {
    const a = open();
    const out = crypto.randomBytes(200000);
    const file = path.join(t.dir, 'out.bin');
    fs.writeFileSync(file, out);
    const code = `process.stdout.write(require('fs').readFileSync(${JSON.stringify(file)}));` +
      'process.stderr.write("\\x1b[31merr\\x1b[0m\\n")';
    const r = await a.run('pipes', NODE, ['-e', code], { capture: true });
    assert.equal(r.exitCode, 0);
    assert.deepEqual(r.stdout, out);
    assert.equal((await a.run('term', 'sh', ['-c', 'kill -TERM $$'])).signal, 'SIGTERM');
    assert.equal((await a.run('kill', 'sh', ['-c', 'kill -KILL $$'])).signal, 'SIGKILL');
    assert.equal((await a.run('exit6', 'sh', ['-c', 'exit 6'])).exitCode, 6);
    await assert.rejects(a.run('missing', '/nonexistent/cmd'), /ENOENT/);
    await assert.rejects(a.run('slow', 'sleep', ['30'], { timeout: 200 }), (e) =>
      e instanceof ringside.TimeoutExpired && e.result.signal === 'SIGTERM');
    a.close();
    const recs = s.dump(t.shm);
    assert.deepEqual(s.termBytes(recs, 'pipes', 1), out);
    assert.deepEqual(s.termBytes(recs, 'pipes', 2), Buffer.from('\x1b[31merr\x1b[0m\n'));
    const ends = Object.fromEntries(s.of(recs, 'task_end').map((e) => [e.task, [e.outcome, e.exit_code]]));
    assert.deepEqual(ends, { pipes: [4, 0], term: [5, 143], kill: [3, 137], exit6: [3, 6], missing: [3, 1], slow: [3, 1] });
    assert.equal(s.of(recs, 'task_start', { task: 'exit6' })[0].title, 'sh -c exit 6');
  });

  test('timeout kills the whole process group, SIGKILL after the grace; no waiting for pipes', async () => {
    const a = open();
    const t0 = Date.now();
    // Ignores SIGTERM: was resolved {exitCode: 0} only when it ended by itself.
    await assert.rejects(a.run('stubborn', 'sh', ['-c', 'trap "" TERM; echo up; sleep 30; exit 0'],
      { timeout: 300, killGrace: 300 }), (e) => e instanceof ringside.TimeoutExpired &&
      e.result.signal === 'SIGKILL');
    // A background grandchild holding the pipes: was waited for (30 s).
    await assert.rejects(a.run('bg', 'sh', ['-c', 'sleep 30 & echo started'],
      { timeout: 300, capture: true }), (e) => e instanceof ringside.TimeoutExpired &&
      e.result.stdout.toString() === 'started\n');
    assert.ok(Date.now() - t0 < 10000, `took ${Date.now() - t0} ms`);
    a.close();
    const ends = s.of(s.dump(t.shm), 'task_end').map((e) => [e.task, e.outcome, e.exit_code]);
    assert.deepEqual(ends, [['stubborn', 3, 1], ['bg', 3, 1]]);
  });

  test('every argument handed to C is checked (a number as a string was a crash)', () => {
    const a = open();
    assert.throws(() => a.status('working', 42), TypeError);
    assert.throws(() => a.status('working', {}), TypeError);
    assert.throws(() => a.status('working', 'cut\0here'), ringside.InvalidArgument);
    assert.throws(() => a.status('toString'), ringside.InvalidArgument);
    assert.throws(() => a.task('t0', 42), TypeError);
    const task = a.task('t1', 'ok');
    assert.throws(() => task.progress(1, 2, 42), TypeError);
    assert.throws(() => task.progress(1.5, 2), ringside.InvalidArgument);
    assert.throws(() => task.write(5), TypeError);
    assert.throws(() => task.write([65, 66]), TypeError);
    assert.throws(() => task.write(null), TypeError);
    assert.throws(() => task.write('x', 'constructor'), ringside.InvalidArgument);
    assert.equal(task.write(new Uint16Array([0x4241])), true);
    assert.throws(() => task.end('failed', NaN), ringside.InvalidArgument);
    assert.throws(() => task.end('failed', 2 ** 40), ringside.InvalidArgument);
    assert.throws(() => task.end('failed', '3'), ringside.InvalidArgument);
    assert.throws(() => task.end({}), ringside.InvalidArgument);
    assert.equal(task.end('failed', 3), true);
    for (const bad of [2 ** 40, -1, 1.5, NaN, 10n, '8']) {
      assert.throws(() => open({ agentId: 'node-x', maxTasks: bad }), ringside.InvalidArgument);
    }
    assert.throws(() => open({ agentId: 'node-y', shmDir: 5 }), TypeError);
    a.close();
    assert.deepEqual(s.termBytes(s.dump(t.shm), 't1', 1), Buffer.from('AB'));
  });

  test('strict: a task whose start event was dropped is returned, with a warning', () => {
    const a = open({ strict: true, logSlots: 8, terminal: false });
    assert.throws(() => { for (let i = 0; i < 40; i++) a.status('working', String(i)); },
      ringside.RingFull);
    const warnings = [];
    const onWarn = (w) => warnings.push(w.code);
    process.on('warning', onWarn);
    const task = a.task('x0');
    assert.equal(task.startDropped, true);
    assert.throws(() => a.task('x0'), ringside.TaskExists);
    a.close();
    return new Promise((resolve) => setImmediate(() => {
      process.off('warning', onWarn);
      assert.deepEqual(warnings, ['RINGSIDE_EVENT_DROPPED']);
      resolve();
    }));
  });

  test('exiting with a task open ends it failed with the exit code', () => {
    const code = `const r = require(${JSON.stringify(path.resolve(__dirname, '..'))});` +
      `const a = new r.Agent({ agentId: 'node-o', projectId: 'proj', shmDir: ${JSON.stringify(t.shm)} });` +
      `a.status('working'); a.task('left-open', 'never ended'); process.exit(3);`;
    const p = require('node:child_process').spawnSync(NODE, ['-e', code], { timeout: 20000 });
    assert.equal(p.status, 3, p.stderr.toString());
    const recs = s.dump(t.shm);
    assert.deepEqual(s.of(recs, 'task_end').map((e) => [e.task, e.outcome, e.exit_code]),
      [['left-open', 3, 3]]);
    assert.ok(s.of(recs, 'ring').every((r) => r.closed_cleanly === 1));
  });

  test('an error while copying output kills the child and rejects', async () => {
    const a = open();
    const task = a.task('ended');
    task.end();
    const t0 = Date.now();
    await assert.rejects(task.run(NODE, ['-e', 'console.log("x"); setTimeout(() => {}, 30000)']),
      ringside.NoSuchTask);
    assert.ok(Date.now() - t0 < 15000);
    a.close();
  });

  test('no sidecar directory: a warning, calls return false, commands still run', async () => {
    const missing = path.join(t.dir, 'nope');
    const warnings = [];
    const onWarn = (w) => warnings.push(w);
    process.on('warning', onWarn);
    const a = new ringside.Agent({ agentId: 'node-1', projectId: 'proj', shmDir: missing });
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on next tick
    process.off('warning', onWarn);
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0].code, 'RINGSIDE_UNOBSERVED');
    assert.equal(a.connected, false);
    assert.equal(a.status('working'), false);
    const r = await a.run('t1', NODE, ['-e', 'console.log("still runs")'], { capture: true });
    assert.equal(r.stdout.toString(), 'still runs\n');
    assert.deepEqual(a.stats(), {});
    a.close();
    assert.throws(() => new ringside.Agent({ agentId: 'n', projectId: 'p', shmDir: missing, strict: true }),
      (e) => e instanceof ringside.ShmUnavailable && e.code === -3);
    assert.equal(fs.existsSync(missing), false);
  });
});

describe('through a real sidecar', () => {
  test('a child\'s output reaches a WebSocket client byte for byte', async () => {
    const t = s.tmpdir();
    const sc = await s.startSidecar(t.shm, ['--scrollback', '1048576']);
    try {
      const a = new ringside.Agent({ agentId: 'node-e2e', projectId: 'proj', shmDir: t.shm });
      const obs = s.wsClient(`ws://127.0.0.1:${sc.port}/ws/events`);
      await obs.opened;
      const task = a.task('e2e-1', 'streamed');
      for (let m = await obs.next(); !(m.type === 'task_started' && m.task_id === 'e2e-1'); m = await obs.next());
      obs.close();
      const term = s.wsClient(`ws://127.0.0.1:${sc.port}/ws/terminal/e2e-1`);
      await term.opened;
      const hdr = await term.next();
      assert.deepEqual([hdr.type, hdr.agent_id], ['terminal', 'node-e2e']);
      const payload = Buffer.concat([crypto.randomBytes(150000),
        Buffer.from('\x1b[31mred\x1b[0m\r\n\x1b[2J\x1b[H\x00\xff\x1b]0;title\x07', 'latin1')]);
      const file = path.join(t.dir, 'payload.bin');
      fs.writeFileSync(file, payload);
      const r = await task.run(NODE, ['-e', `process.stdout.write(require('fs').readFileSync(${JSON.stringify(file)}))`]);
      assert.equal(r.exitCode, 0);
      task.end('completed', 0);
      const chunks = [];
      let end;
      for (;;) {
        const m = await term.next(15000);
        if (Buffer.isBuffer(m)) chunks.push(m);
        else if (m.type === 'task_ended') { end = m; break; }
      }
      const got = Buffer.concat(chunks);
      assert.equal(got.length, payload.length);
      assert.ok(got.equals(payload), 'bytes differ');
      assert.deepEqual([end.outcome, end.exit_code], ['completed', 0]);
      term.close();
      a.close();
    } finally {
      await sc.stop();
      t.cleanup();
    }
  });
});
