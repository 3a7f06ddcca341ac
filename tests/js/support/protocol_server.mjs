// A small server speaking the Ringside wire protocol (PROTOCOL_DRAFT / docs/protocol.md) over the
// npm `ws` package, for the ringside.js unit tests. It is a test peer, not a model of the sidecar:
// it keeps an in-memory event log with (epoch, seq), answers resume requests from it, and lets a test
// drive every protocol situation (heartbeats, shutdown, close codes, handshake errors, terminals).
//
// Optionally (staticDir, vendorDir = an @xterm/xterm package) it serves the dashboard files, so the
// browser tests can run before the real sidecar exists (they say which backend they used).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { loadWs } from './deps.mjs';

const { WebSocketServer } = loadWs();

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
};

export class ProtocolServer {
  constructor({ port = 0, epoch = 'e1', staticDir = null, vendorDir = null, replayLimit = 1000 } = {}) {
    this.port = port;
    this.epoch = epoch;
    this.seq = 0;
    this.log = [];                 // persisted events of this epoch, in seq order
    this.agents = new Map();       // agent_id -> snapshot entry
    this.clients = new Set();
    this.terminals = new Map();    // task_id -> {chunks: Buffer[], sockets: Set}
    this.connections = [];         // every accepted upgrade: {url, params}
    this.rejectNext = null;        // {status, error, message, retryAfter} for the next upgrade(s)
    this.httpRejections = null;    // same, for plain GET diagnosis
    this.staticDir = staticDir;
    this.vendorDir = vendorDir;
    this.replayLimit = replayLimit;
  }

  async start() {
    this.http = http.createServer((req, res) => this._http(req, res));
    this.wss = new WebSocketServer({ noServer: true });
    this.http.on('upgrade', (req, sock, head) => this._upgrade(req, sock, head));
    await new Promise((resolve) => this.http.listen(this.port, '127.0.0.1', resolve));
    this.port = this.http.address().port;
    this.url = `ws://127.0.0.1:${this.port}`;
    return this;
  }

  /** Stop abruptly (like a killed process): sockets are destroyed, no close frame. */
  async kill() {
    for (const c of this.clients) c.ws._socket && c.ws._socket.destroy();
    for (const t of this.terminals.values()) for (const ws of t.sockets) ws._socket && ws._socket.destroy();
    this.clients.clear();
    await new Promise((resolve) => { this.wss.close(); this.http.close(() => resolve()); this.http.closeAllConnections?.(); });
  }

  /** Restart on the same port; keepHistory=false simulates a new process (new epoch). */
  async restart({ keepHistory = true, epoch } = {}) {
    if (!keepHistory) { this.log = []; this.seq = 0; this.epoch = epoch || this.epoch + 'x'; }
    await this.start();
  }

  _http(req, res) {
    const u = new URL(req.url, 'http://x');
    if (u.pathname.startsWith('/ws/') && this.httpRejections) {
      const r = this.httpRejections;
      const headers = { 'content-type': 'application/json' };
      if (r.retryAfter) headers['retry-after'] = String(r.retryAfter);
      res.writeHead(r.status, headers);
      res.end(JSON.stringify({ error: r.error, message: r.message }));
      return;
    }
    if (u.pathname.startsWith('/ws/')) { // like the sidecar: plain HTTP on a WebSocket endpoint
      res.writeHead(426, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'upgrade_required', message: 'this endpoint speaks WebSocket only' }));
      return;
    }
    if (u.pathname === '/readyz' || u.pathname === '/livez') { res.writeHead(200); res.end('ok'); return; }
    if (this.staticDir) {
      let p = u.pathname === '/' ? '/index.html' : u.pathname;
      let file = null;
      const vendor = { '/vendor/xterm.js': 'lib/xterm.mjs', '/vendor/xterm.css': 'css/xterm.css' };
      if (vendor[p] && this.vendorDir) file = path.join(this.vendorDir, vendor[p]);
      else if (/^\/[a-z_]+\.(html|js|css)$/.test(p)) file = path.join(this.staticDir, p.slice(1));
      if (file && fs.existsSync(file)) {
        res.writeHead(200, { 'content-type': CONTENT_TYPES[path.extname(file)] || 'application/octet-stream' });
        res.end(fs.readFileSync(file));
        return;
      }
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'not_found', message: 'no such path' }));
  }

  _upgrade(req, sock, head) {
    const u = new URL(req.url, 'http://x');
    if (this.rejectNext) {
      const r = this.rejectNext;
      const body = JSON.stringify({ error: r.error, message: r.message });
      sock.end(`HTTP/1.1 ${r.status} Rejected\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n`
        + (r.retryAfter ? `retry-after: ${r.retryAfter}\r\n` : '') + `\r\n${body}`);
      return;
    }
    this.wss.handleUpgrade(req, sock, head, (ws) => {
      const params = Object.fromEntries(u.searchParams.entries());
      this.connections.push({ path: u.pathname, params });
      if (u.pathname === '/ws/events') this._events(ws, params);
      else if (u.pathname.startsWith('/ws/terminal/')) this._terminal(ws, decodeURIComponent(u.pathname.slice(13)));
      else ws.close(1008, 'unknown path');
    });
  }

  _events(ws, params) {
    const c = { ws, params, received: [] };
    this.clients.add(c);
    ws.on('message', (data) => { try { c.received.push(JSON.parse(String(data))); } catch { c.received.push(String(data)); } });
    ws.on('close', () => this.clients.delete(c));
    const now = new Date();
    const last = params.last_sequence_id !== undefined ? Number(params.last_sequence_id) : null;
    let replay = [];
    if (last !== null && params.epoch === this.epoch) {
      const from = this.log.findIndex((e) => e.seq > last);
      if (from >= 0) replay = this.log.slice(from);
      if (replay.length > this.replayLimit) {
        this._send(c, { type: 'replay_truncated', epoch: this.epoch, from_seq: last + 1, to_seq: this.seq });
        replay = [];
      }
    }
    // Snapshot first (state as of now), then the replayed events the client missed.
    this._send(c, { type: 'snapshot', epoch: this.epoch, seq: this.seq, stale: false,
      timestamp: now.toISOString(), agents: [...this.agents.values()] });
    for (const ev of replay) this._send(c, ev);
  }

  _send(c, msg) { if (c.ws.readyState === 1) c.ws.send(JSON.stringify(msg)); }

  broadcast(msg) { for (const c of this.clients) this._send(c, msg); }

  /** Publish a persisted event: it gets the next seq, enters the log and goes to every client. */
  publish(ev) {
    const now = new Date();
    const full = { timestamp: now.toISOString(), ts_ns: now.getTime() * 1e6, ...ev, seq: ++this.seq, epoch: this.epoch };
    this.log.push(full);
    this._applyToState(full);
    this.broadcast(full);
    return full;
  }

  /** Publish a non-persisted event (progress). */
  progress(ev) {
    const now = new Date();
    const full = { type: 'progress', timestamp: now.toISOString(), ts_ns: now.getTime() * 1e6, ...ev };
    this._applyToState(full);
    this.broadcast(full);
    return full;
  }

  _agent(id, project) {
    if (!this.agents.has(id)) {
      this.agents.set(id, { agent_id: id, project_id: project, owner: 'test', status: 'idle', detail: '',
        timestamp: new Date().toISOString(), ts_ns: Date.now() * 1e6, alive: true, tasks: [] });
    }
    return this.agents.get(id);
  }

  _applyToState(ev) {
    const a = this._agent(ev.agent_id, ev.project_id);
    if (ev.type === 'agent_status') { a.status = ev.new_status; a.detail = ev.detail || ''; }
    if (ev.type === 'task_started') {
      a.tasks.push({ task_id: ev.task_id, title: ev.title || ev.task_id, state: 'running', current_step: 0,
        total_steps: null, progress_percent: null, eta_seconds: null, message: '', started_at: ev.timestamp });
    }
    const t = a.tasks.find((x) => x.task_id === ev.task_id);
    if (t && ev.type === 'progress') Object.assign(t, { current_step: ev.current_step, total_steps: ev.total_steps,
      progress_percent: ev.progress_percent, eta_seconds: ev.eta_seconds, message: ev.message || '' });
    if (t && ev.type === 'task_ended') t.state = ev.outcome;
  }

  heartbeat() { this.broadcast({ type: 'heartbeat', timestamp: new Date().toISOString() }); }

  /** Graceful drain: shutdown message, then close 1001. */
  shutdownClients(reconnectAfterMs) {
    for (const c of this.clients) { this._send(c, { type: 'shutdown', reconnect_after_ms: reconnectAfterMs }); c.ws.close(1001, 'draining'); }
  }

  closeClients(code, reason = '') { for (const c of this.clients) c.ws.close(code, reason); }

  // ---- terminals ----
  terminalWrite(taskId, bytes) {
    const t = this._term(taskId);
    const buf = Buffer.from(bytes);
    t.chunks.push(buf);
    for (const ws of t.sockets) if (!ws.paused && ws.readyState === 1) ws.send(buf);
      else if (ws.paused) ws.pending.push(buf);
  }

  terminalEnd(taskId, exitCode = 0) {
    const t = this._term(taskId);
    for (const ws of t.sockets) {
      ws.send(JSON.stringify({ type: 'task_ended', task_id: taskId, outcome: exitCode ? 'failed' : 'completed', exit_code: exitCode }));
      ws.close(1000, 'task ended');
    }
  }

  _term(id) {
    if (!this.terminals.has(id)) this.terminals.set(id, { chunks: [], sockets: new Set() });
    return this.terminals.get(id);
  }

  _terminal(ws, taskId) {
    if (!this.terminals.has(taskId)) {
      ws.send(JSON.stringify({ type: 'error', error: 'unknown_task', message: 'no such task' }));
      ws.close(4004, 'unknown task');
      return;
    }
    const t = this._term(taskId);
    ws.paused = false;
    ws.pending = [];
    t.sockets.add(ws);
    ws.on('close', () => t.sockets.delete(ws));
    ws.on('message', (d) => {
      let m; try { m = JSON.parse(String(d)); } catch { return; }
      if (m.type === 'pause') ws.paused = true;
      if (m.type === 'resume') { ws.paused = false; for (const b of ws.pending.splice(0)) ws.send(b); }
    });
    const scroll = Buffer.concat(t.chunks);
    ws.send(JSON.stringify({ type: 'terminal', task_id: taskId, agent_id: 'a1', project_id: 'p1', scrollback_bytes: scroll.length }));
    for (let off = 0; off < scroll.length; off += 4096) ws.send(scroll.subarray(off, off + 4096));
  }
}
