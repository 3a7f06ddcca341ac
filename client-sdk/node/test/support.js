'use strict';
// Helpers of the binding tests: the built tree's paths, a reader of ring files (ring_dump, the
// sidecar's reader) and a real sidecar on 127.0.0.1 with an ephemeral port.
// Environment (set by ctest): RINGSIDE_BIN, RINGSIDE_LIB, RINGSIDE_SRC, RING_DUMP.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');
const readline = require('node:readline');

const SRC = process.env.RINGSIDE_SRC || path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.RINGSIDE_BIN || path.join(SRC, 'build', 'bin');
const LIB = process.env.RINGSIDE_LIB || path.join(SRC, 'build', 'lib');
const RING_DUMP = process.env.RING_DUMP || path.join(BIN, 'tools_ring_dump');
process.env.RINGSIDE_LIB = LIB;

function tmpdir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rs-node-'));
  const shm = path.join(dir, 'shm');
  fs.mkdirSync(shm);
  return { dir, shm, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

function dump(shm) {
  const out = execFileSync(RING_DUMP, [shm], { timeout: 20000 }).toString('utf8');
  return out.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

function of(recs, type, match = {}) {
  return recs.filter((r) => r.type === type && Object.entries(match).every(([k, v]) => r[k] === v));
}

function termBytes(recs, task, stream) {
  return Buffer.concat(of(recs, 'term', { task }).filter((r) => !stream || r.stream === stream)
    .map((r) => Buffer.from(r.hex, 'hex')));
}

/** Starts build/bin/ringside; resolves to { port, shm, stop() } once it logged "ringside started". */
function startSidecar(shm, extra = []) {
  const proc = spawn(path.join(BIN, 'ringside'), ['--listen', '127.0.0.1:0', '--shm-dir', shm,
    '--no-auth', '--conn-rate', '0', '--user-conns', '0', ...extra],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  const logs = [];
  return new Promise((resolve, reject) => {
    let port = 0;
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`sidecar did not start: ${logs.join('\n')}`)); }, 10000);
    readline.createInterface({ input: proc.stderr }).on('line', (line) => {
      logs.push(line);
      let e;
      try { e = JSON.parse(line); } catch { return; }
      if (e.msg === 'listening') port = e.port;
      if (e.msg === 'ringside started') {
        clearTimeout(timer);
        resolve({
          port, shm, logs,
          stop: () => new Promise((done) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return done();
            proc.once('exit', () => done());
            proc.kill('SIGKILL');
          }),
        });
      }
    });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`sidecar exited ${code}: ${logs.join('\n')}`)); });
  });
}

/** Opens a WebSocket and queues its messages; next(pred, ms) resolves to the first that matches. */
function wsClient(url) {
  const WebSocket = require('ws');
  const ws = new WebSocket(url);
  const queue = [];
  let waiter = null;
  ws.on('message', (data, isBinary) => {
    queue.push(isBinary ? Buffer.from(data) : JSON.parse(data.toString()));
    if (waiter) waiter();
  });
  ws.on('close', () => { if (waiter) waiter(); });
  const opened = new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  async function next(ms = 10000) {
    const deadline = Date.now() + ms;
    while (queue.length === 0) {
      if (ws.readyState === WebSocket.CLOSED) throw new Error('closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timeout waiting for a message');
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        waiter = () => { clearTimeout(t); waiter = null; resolve(); };
      });
    }
    return queue.shift();
  }
  return { ws, opened, next, close: () => ws.close() };
}

module.exports = { SRC, BIN, LIB, tmpdir, dump, of, termBytes, startSidecar, wsClient };
