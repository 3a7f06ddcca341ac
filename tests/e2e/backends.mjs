// Backends for the dashboard browser tests.
//
// RealBackend: the real `ringside` sidecar (RINGSIDE_BIN/ringside, --no-auth --dashboard) and the
// `ringside-pub` CLI writing into a private --shm-dir. This is what CI runs once both binaries exist.
// FakeBackend: the protocol test server of tests/js serving sidecar/web — used only when the real
// binaries are not built yet; every test prints which backend it used.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { ProtocolServer } from '../js/support/protocol_server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** Poll an HTTP URL until it answers 200, bounded in time (a process start has no event to await). */
async function waitHttpOk(url, ms, child) {
  const end = Date.now() + ms;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`sidecar exited early with ${child.exitCode}`);
    try { const r = await fetch(url); if (r.status === 200) return; } catch { /* not up yet */ }
    if (Date.now() > end) throw new Error(`timed out waiting for ${url}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function realBinaries() {
  const bin = process.env.RINGSIDE_BIN || path.join(repoRoot, 'build', 'bin');
  const sidecar = path.join(bin, 'ringside');
  const pub = path.join(bin, 'ringside-pub');
  return fs.existsSync(sidecar) && fs.existsSync(pub) ? { sidecar, pub, bin } : null;
}

export class RealBackend {
  constructor({ sidecar, pub }, { extraArgs = [] } = {}) {
    this.kind = 'real';
    this.sidecarBin = sidecar;
    this.pubBin = pub;
    this.extraArgs = extraArgs;
    this.shmDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringside-e2e-'));
    this.log = [];
  }

  async start() {
    if (!this.port) this.port = await freePort();
    const args = ['--dashboard', '--listen', `127.0.0.1:${this.port}`, '--shm-dir', this.shmDir,
      '--log-level', 'debug', ...(this.extraArgs.length ? this.extraArgs : ['--no-auth'])];
    this.child = spawn(this.sidecarBin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d) => { this.log.push(String(d)); if (this.log.length > 400) this.log.shift(); };
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
    await waitHttpOk(`http://127.0.0.1:${this.port}/readyz`, 15000, this.child);
    this.httpUrl = `http://127.0.0.1:${this.port}`;
  }

  /** SIGKILL: a crash, not a drain. */
  async kill() {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  async stop() {
    if (this.child && this.child.exitCode === null) { this.child.kill('SIGTERM'); await Promise.race([this.exited, new Promise((r) => setTimeout(r, 5000))]); }
    await this.kill();
  }

  pub(args, input) { return this.pubAs('a1', 'p1', args, input); }

  /** ringside-pub as agent (in project): resolves with its stdout. */
  pubAs(agent, project, args, input) {
    return new Promise((resolve, reject) => {
      const p = execFile(this.pubBin, ['--shm-dir', this.shmDir, '--agent', agent, '--project', project, ...args],
        { timeout: 10000 }, (err, stdout, stderr) => (err ? reject(new Error(`ringside-pub ${args.join(' ')}: ${err.message} ${stderr}`)) : resolve(stdout)));
      if (input !== undefined) p.stdin.end(input); else p.stdin.end();
    });
  }

  status(s, detail) { return this.pub(['status', s, ...(detail ? [detail] : [])]); }
  taskStart(t) { return this.pub(['task-start', t]); }
  progress(t, step, total, msg) { return this.pub(['progress', t, String(step), String(total), ...(msg ? [msg] : [])]); }
  term(t, text) { return this.pub(['term', t], text); }
  taskEnd(t, outcome) { return this.pub(['task-end', t, outcome]); }

  cleanup() { fs.rmSync(this.shmDir, { recursive: true, force: true }); }
  tail() { return this.log.join('').split('\n').slice(-40).join('\n'); }
}

export class FakeBackend {
  constructor({ vendorDir } = {}) {
    this.kind = 'fake';
    this.vendorDir = vendorDir;
    this.server = null;
    this.runs = 0;
  }
  async start() {
    const prev = this.server;
    this.server = new ProtocolServer({ port: prev ? prev.port : 0, epoch: `run${++this.runs}`,
      staticDir: path.join(repoRoot, 'sidecar', 'web'), vendorDir: this.vendorDir });
    if (prev) { // a new process: same rings (agent state), new epoch, empty replay history
      this.server.agents = prev.agents;
      this.server.terminals = new Map([...prev.terminals].map(([k, v]) => [k, { chunks: v.chunks, sockets: new Set() }]));
    }
    await this.server.start();
    this.down = false;
    this.port = this.server.port;
    this.httpUrl = `http://127.0.0.1:${this.port}`;
  }
  async kill() { await this.server.kill(); this.down = true; }
  async stop() { if (!this.down) await this.server.kill(); this.down = true; }
  _ev(type, extra) { return { type, agent_id: 'a1', project_id: 'p1', ...extra }; }
  async status(s, detail) {
    const a = this.server.agents.get('a1');
    this.server.publish(this._ev('agent_status', { old_status: a ? a.status : 'idle', new_status: s, detail: detail || '' }));
  }
  async taskStart(t) { this.server.publish(this._ev('task_started', { task_id: t, title: t })); }
  async progress(t, step, total, msg) {
    this.server.progress(this._ev('progress', { task_id: t, current_step: step, total_steps: total,
      progress_percent: (100 * step) / total, eta_seconds: (total - step) * 3, message: msg || '' }));
  }
  async term(t, text) { this.server.terminalWrite(t, text); }
  async taskEnd(t, outcome) { this.server.publish(this._ev('task_ended', { task_id: t, outcome, exit_code: outcome === 'completed' ? 0 : 1 })); }
  cleanup() {}
  tail() { return '(fake backend)'; }
}

/** Find an @xterm/xterm package for the fake backend (the build installs one). */
export function findXterm() {
  if (process.env.RINGSIDE_XTERM_DIR === '') return null; // the build bundled none: test the fallback
  const cands = [process.env.RINGSIDE_XTERM_DIR,
    path.join(repoRoot, 'build', 'sidecar', 'web', 'npm', 'node_modules', '@xterm', 'xterm'),
    path.join(repoRoot, 'build', 'sidecar-web-standalone', 'npm', 'node_modules', '@xterm', 'xterm'),
    path.join(repoRoot, 'sidecar', 'web', 'node_modules', '@xterm', 'xterm')];
  return cands.find((d) => d && fs.existsSync(path.join(d, 'lib', 'xterm.mjs'))) || null;
}
