// ringside.js — browser client for the Ringside sidecar (ES module, no dependencies).
//
// Contract (docs/dashboard.md, docs/protocol.md):
//   const c = new RingsideClient({ url, token | getToken, filters, encoding, backoff, heartbeatTimeoutMs });
//   c.on('state', ({state, nextRetryAt, attempt, reason}) => …);   // connecting | connected | disconnected
//   c.on('agent_status', ev => …);  c.on('snapshot', snap => …);  …  // typed handlers per message type
//   c.subscribe({ agent_ids, project_ids, event_types });           // kept across reconnects
//   c.setToken(t);                                                  // in-band refresh ({"type":"auth"})
//   c.close();                                                      // stop for good
//
// The client never queues messages while offline: send() returns false when there is no open socket.
// Persisted events (those with `seq`) are delivered at most once per epoch and in seq order; the last
// (epoch, seq) is sent back on reconnect so the server can replay what was missed. An epoch change or a
// `replay_truncated` message means "history is gone": the next snapshot is delivered with reload = true.

export const STATES = Object.freeze({
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
  DISCONNECTED: 'disconnected',
});

export const DEFAULT_BACKOFF = Object.freeze({
  initialMs: 500,      // first retry is drawn from [0, 500) ms: a blip heals well under 5 s
  maxMs: 30000,        // cap of the jitter window
  factor: 2,           // window growth per failed attempt
  resetAfterMs: 120000, // a connection that stays up this long resets the attempt counter
});

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 30000;
/** Three missed server heartbeats plus slack, then the socket is declared dead. */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 3 * DEFAULT_HEARTBEAT_INTERVAL_MS + 10000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10000;

/** Close codes with a meaning for the client (docs/protocol.md). */
export const CLOSE = Object.freeze({
  NORMAL: 1000, GOING_AWAY: 1001, POLICY: 1008,
  TOKEN_EXPIRED: 4001, FORBIDDEN: 4003, UNKNOWN_TASK: 4004, TOO_SLOW: 4008, OUTPUT_EXPIRED: 4010,
});

const PERSISTED_TYPES = new Set(['agent_status', 'task_started', 'task_ended']);

/**
 * Full-jitter backoff: a delay drawn uniformly from [0, min(maxMs, initialMs * factor^attempt)).
 * Pure: `rand` is a function returning a number in [0, 1) (Math.random by default).
 * `attempt` counts failed connections since the last reset, starting at 0 for the first retry.
 * Returns an integer number of milliseconds; never negative, never above maxMs.
 */
export function backoffDelay(attempt, opts = DEFAULT_BACKOFF, rand = Math.random) {
  const o = { ...DEFAULT_BACKOFF, ...(opts || {}) };
  const n = Math.max(0, Math.floor(Number(attempt) || 0));
  // Math.pow overflows to Infinity for large n; min() then yields maxMs, which is what we want.
  const windowMs = Math.min(o.maxMs, o.initialMs * Math.pow(o.factor, n));
  let r = Number(rand());
  if (!(r >= 0)) r = 0;
  if (r >= 1) r = 1 - Number.EPSILON;
  return Math.max(0, Math.min(o.maxMs, Math.floor(r * windowMs)));
}

/**
 * Resume position bookkeeping: the last (epoch, seq) delivered, and the dedupe rule.
 * Exported for unit tests and for dashboards that keep their own model.
 */
export class ResumePosition {
  constructor() { this.epoch = null; this.seq = null; }

  /** Query parameters for a resume, or {} when there is nothing to resume from. */
  params() {
    if (this.epoch === null || this.seq === null) return {};
    return { last_sequence_id: String(this.seq), epoch: String(this.epoch) };
  }

  /** Forget everything: the next connection asks for a fresh snapshot only. */
  reset() { this.epoch = null; this.seq = null; }

  /**
   * Classify a persisted event: 'deliver' (new, position advanced), 'duplicate' (seq already seen in
   * this epoch: drop it), or 'epoch_changed' (different epoch: history is gone, reload).
   */
  accept(epoch, seq) {
    if (typeof seq !== 'number' || !Number.isFinite(seq)) return 'deliver';
    if (this.epoch !== null && epoch !== undefined && epoch !== null && String(epoch) !== this.epoch) {
      return 'epoch_changed';
    }
    if (this.seq !== null && seq <= this.seq) return 'duplicate';
    if (epoch !== undefined && epoch !== null) this.epoch = String(epoch);
    this.seq = seq;
    return 'deliver';
  }

  /**
   * Apply a snapshot. Returns true when it is a reload (first snapshot, another epoch, or the
   * position was reset), false when it continues the epoch we resume from. In a continued epoch the
   * position is kept, so replayed events after the snapshot are delivered exactly once.
   */
  snapshot(epoch, seq) {
    const e = epoch === undefined || epoch === null ? null : String(epoch);
    const reload = this.epoch === null || e === null || e !== this.epoch || this.seq === null;
    if (reload) {
      this.epoch = e;
      this.seq = typeof seq === 'number' ? seq : null;
    }
    return reload;
  }
}

/** Minimal event emitter: on() returns an unsubscribe function; a throwing handler is isolated. */
class Emitter {
  constructor() { this._h = new Map(); }
  on(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('handler must be a function');
    if (!this._h.has(type)) this._h.set(type, new Set());
    this._h.get(type).add(fn);
    return () => this.off(type, fn);
  }
  once(type, fn) {
    const off = this.on(type, (...a) => { off(); fn(...a); });
    return off;
  }
  off(type, fn) { const s = this._h.get(type); if (s) s.delete(fn); }
  emit(type, ...args) {
    const s = this._h.get(type);
    if (!s) return 0;
    for (const fn of [...s]) {
      try { fn(...args); } catch (err) {
        if (typeof console !== 'undefined') console.error('ringside: handler for', type, 'threw', err);
      }
    }
    return s.size;
  }
}

function normFilters(f) {
  const out = {};
  for (const k of ['agent_ids', 'project_ids', 'event_types']) {
    const v = f && f[k];
    if (Array.isArray(v) && v.length) out[k] = v.map(String);
  }
  return out;
}

/** Default global object for environment hooks (window in browsers, undefined-safe elsewhere). */
function defaultGlobal() {
  return typeof window !== 'undefined' ? window : (typeof globalThis !== 'undefined' ? globalThis : undefined);
}

function httpUrlFromWs(url) {
  return url.replace(/^ws(s?):/i, 'http$1:');
}

/** Decode one MessagePack value (subset enough for our messages: maps, arrays, strings, numbers). */
export function decodeMessagePack(buf) {
  const b = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const td = new TextDecoder();
  let p = 0;
  const need = (n) => { if (p + n > b.length) throw new RangeError('msgpack: truncated'); };
  const str = (n) => { need(n); const s = td.decode(b.subarray(p, p + n)); p += n; return s; };
  const arr = (n) => { const a = []; for (let i = 0; i < n; i++) a.push(val()); return a; };
  const map = (n) => { const o = {}; for (let i = 0; i < n; i++) { const k = val(); o[k] = val(); } return o; };
  function val() {
    need(1);
    const t = b[p++];
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xf0) === 0x80) return map(t & 0x0f);
    if ((t & 0xf0) === 0x90) return arr(t & 0x0f);
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f);
    let v;
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: need(1); v = b[p]; p += 1; need(v); p += v; return b.slice(p - v, p);
      case 0xc5: need(2); v = dv.getUint16(p); p += 2; need(v); p += v; return b.slice(p - v, p);
      case 0xc6: need(4); v = dv.getUint32(p); p += 4; need(v); p += v; return b.slice(p - v, p);
      case 0xca: need(4); v = dv.getFloat32(p); p += 4; return v;
      case 0xcb: need(8); v = dv.getFloat64(p); p += 8; return v;
      case 0xcc: need(1); return b[p++];
      case 0xcd: need(2); v = dv.getUint16(p); p += 2; return v;
      case 0xce: need(4); v = dv.getUint32(p); p += 4; return v;
      case 0xcf: need(8); v = Number(dv.getBigUint64(p)); p += 8; return v;
      case 0xd0: need(1); v = dv.getInt8(p); p += 1; return v;
      case 0xd1: need(2); v = dv.getInt16(p); p += 2; return v;
      case 0xd2: need(4); v = dv.getInt32(p); p += 4; return v;
      case 0xd3: need(8); v = Number(dv.getBigInt64(p)); p += 8; return v;
      case 0xd9: need(1); v = b[p]; p += 1; return str(v);
      case 0xda: need(2); v = dv.getUint16(p); p += 2; return str(v);
      case 0xdb: need(4); v = dv.getUint32(p); p += 4; return str(v);
      case 0xdc: need(2); v = dv.getUint16(p); p += 2; return arr(v);
      case 0xdd: need(4); v = dv.getUint32(p); p += 4; return arr(v);
      case 0xde: need(2); v = dv.getUint16(p); p += 2; return map(v);
      case 0xdf: need(4); v = dv.getUint32(p); p += 4; return map(v);
      default: throw new RangeError('msgpack: unsupported type 0x' + t.toString(16));
    }
  }
  const out = val();
  return out;
}

/**
 * Shared reconnecting-socket machinery: state machine, backoff, watchdog, environment wake-ups.
 * Subclasses implement _buildUrl(), _onOpen(), _onText(msg), _onBinary(data) and may override
 * _onClose(ev) decisions through _closeDecision(ev).
 */
class ReconnectingSocket extends Emitter {
  constructor(opts) {
    super();
    const o = opts || {};
    if (!o.url) throw new TypeError('RingsideClient: url is required');
    this.url = String(o.url);
    this.token = o.token || null;
    this.getToken = typeof o.getToken === 'function' ? o.getToken : null;
    this.backoff = { ...DEFAULT_BACKOFF, ...(o.backoff || {}) };
    this.heartbeatTimeoutMs = o.heartbeatTimeoutMs || DEFAULT_HEARTBEAT_TIMEOUT_MS;
    this.connectTimeoutMs = o.connectTimeoutMs || DEFAULT_CONNECT_TIMEOUT_MS;
    this.WebSocket = o.WebSocket || (typeof WebSocket !== 'undefined' ? WebSocket : null);
    if (!this.WebSocket) throw new TypeError('RingsideClient: no WebSocket implementation');
    this.random = typeof o.random === 'function' ? o.random : Math.random;
    this.now = typeof o.now === 'function' ? o.now : () => Date.now();
    this.fetch = o.fetch !== undefined ? o.fetch : (typeof fetch === 'function' ? fetch.bind(globalThis) : null);
    this.env = o.environment !== undefined ? o.environment : defaultGlobal();

    this.state = STATES.DISCONNECTED;
    this.attempt = 0;            // failed connections since the last reset
    this.nextRetryAt = null;     // ms since epoch, or null when no retry is scheduled
    this.lastReason = null;
    this._ws = null;
    this._gen = 0;               // bumps with every socket so stale callbacks are ignored
    this._retryTimer = null;
    this._watchTimer = null;
    this._stableTimer = null;
    this._connectTimer = null;
    this._lastRxAt = 0;
    this._openedAt = 0;
    this._stopped = false;       // close() called: never reconnect
    this._halted = false;        // terminal condition (forbidden, expired without refresh hook)
    this._serverRetryMs = null;  // from a shutdown message or Retry-After
    this._envHandlers = [];
    this._installEnvHooks();
  }

  /** Start connecting (idempotent). Called by the constructor unless autoConnect is false. */
  connect() {
    this._stopped = false;
    this._halted = false;
    if (this._ws || this.state === STATES.CONNECTING) return;
    this._clearRetry();
    this._open();
  }

  /** Reconnect now: reset the backoff and drop the current socket if any (the "Retry now" button). */
  reconnectNow(reason = 'manual') {
    this._stopped = false;
    this._halted = false;
    this.attempt = 0;
    this._clearRetry();
    if (this._ws) this._dropSocket(reason, { immediate: true });
    else if (this.state !== STATES.CONNECTING) this._open();
  }

  /** Close for good: no more reconnects, environment hooks removed. */
  close() {
    this._stopped = true;
    this._clearRetry();
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    this._gen++;
    if (ws) { try { ws.close(CLOSE.NORMAL, 'client closed'); } catch (_) { /* already closed */ } }
    for (const [target, type, fn] of this._envHandlers) {
      try { target.removeEventListener(type, fn); } catch (_) { /* ignore */ }
    }
    this._envHandlers = [];
    this._setState(STATES.DISCONNECTED, { reason: 'closed' });
  }

  /**
   * Send a JSON message on the open socket. Returns false (and queues nothing) when not connected:
   * callers decide what to do with commands attempted offline.
   */
  send(msg) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try { ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg)); return true; } catch (_) { return false; }
  }

  /**
   * Replace the token: used for every later (re)connect, and sent now as {"type":"auth"} when
   * connected so the live connection outlives the old token's expiry. Returns whether it was sent.
   */
  setToken(token) {
    this.token = token || null;
    return this.token ? this.send({ type: 'auth', token: this.token }) : false;
  }

  /** Milliseconds since the last frame from the server (Infinity when none yet). */
  silenceMs() { return this._lastRxAt ? this.now() - this._lastRxAt : Infinity; }

  // ---- internals ---------------------------------------------------------------------------------

  _setState(state, extra = {}) {
    this.state = state;
    if (extra.reason !== undefined) this.lastReason = extra.reason;
    const info = {
      state,
      nextRetryAt: state === STATES.DISCONNECTED ? this.nextRetryAt : null,
      attempt: this.attempt,
      reason: this.lastReason,
      ...extra,
    };
    this.emit('state', info);
  }

  async _resolveToken() {
    if (this.getToken) {
      const t = await this.getToken();
      this.token = t || null;
    }
    return this.token;
  }

  async _open() {
    if (this._stopped || this._halted) return;
    const gen = ++this._gen;
    this._setState(STATES.CONNECTING, { reason: this.lastReason });
    let url;
    try {
      await this._resolveToken();
      if (gen !== this._gen || this._stopped) return;
      url = this._buildUrl();
    } catch (err) {
      if (gen !== this._gen) return;
      this.emit('token_error', err);
      this._scheduleRetry('token_error');
      return;
    }
    let ws;
    try {
      ws = new this.WebSocket(url);
    } catch (err) {
      this.emit('socket_error', err);
      this._scheduleRetry('socket_error');
      return;
    }
    try { ws.binaryType = 'arraybuffer'; } catch (_) { /* fake sockets may not care */ }
    this._ws = ws;
    this._opened = false;
    this._sawShutdown = false;
    this._connectTimer = setTimeout(() => {
      if (gen === this._gen && !this._opened) this._dropSocket('connect_timeout');
    }, this.connectTimeoutMs);
    ws.onopen = () => {
      if (gen !== this._gen) return;
      clearTimeout(this._connectTimer);
      this._opened = true;
      this._openedAt = this.now();
      this._lastRxAt = this.now();
      this._serverRetryMs = null;
      this._stableTimer = setTimeout(() => { if (gen === this._gen) this.attempt = 0; }, this.backoff.resetAfterMs);
      this._startWatchdog(gen);
      this._setState(STATES.CONNECTED, { reason: null });
      this.lastReason = null;
      this._onOpen();
    };
    ws.onmessage = (ev) => {
      if (gen !== this._gen) return;
      this._lastRxAt = this.now();
      const d = ev.data;
      if (typeof d === 'string') {
        let msg;
        try { msg = JSON.parse(d); } catch (_) { this.emit('protocol_error', { reason: 'bad_json', data: d }); return; }
        if (msg && typeof msg === 'object') this._onText(msg);
      } else {
        this._onBinary(d);
      }
    };
    ws.onerror = () => { /* the close event that follows carries the information */ };
    ws.onclose = (ev) => {
      if (gen !== this._gen) return;
      this._handleClose(ev || {});
    };
  }

  _handleClose(ev) {
    const code = ev.code || 1006;
    const reason = ev.reason || '';
    const wasOpen = this._opened;
    this._ws = null;
    this._clearTimers();
    this.emit('close', { code, reason, wasOpen });
    if (this._stopped) { this._setState(STATES.DISCONNECTED, { reason: 'closed', code }); return; }
    const d = this._closeDecision(code, reason, wasOpen);
    if (d.halt) {
      this._halted = true;
      this.nextRetryAt = null;
      this._setState(STATES.DISCONNECTED, { reason: d.reason, code });
      return;
    }
    if (!wasOpen && this.fetch && d.diagnose !== false && ((this.attempt + 1) & this.attempt) === 0) {
      // The browser hides the HTTP status of a refused handshake; ask the same URL over plain HTTP.
      // Only on failed attempts 0, 1, 3, 7, 15, …: a refusal that starts mid-outage is still seen.
      this._diagnose(code);
      return;
    }
    this._scheduleRetry(d.reason, code, d.delayMs);
  }

  /** Decide what a close means. Subclasses extend; returns {reason, halt?, delayMs?}. */
  _closeDecision(code, reason, wasOpen) {
    if (this._sawShutdown && this._serverRetryMs !== null) {
      return { reason: 'server_shutdown', delayMs: this._serverRetryMs + Math.floor(this.random() * 250), diagnose: false };
    }
    if (code === CLOSE.FORBIDDEN) {
      this.emit('forbidden', { code, reason });
      return { reason: 'forbidden', halt: true };
    }
    if (code === CLOSE.TOKEN_EXPIRED) {
      this.emit('auth_expired', { code, reason, willRetry: !!this.getToken });
      if (!this.getToken) return { reason: 'auth_expired', halt: true };
      return { reason: 'auth_expired', diagnose: false };
    }
    if (code === CLOSE.TOO_SLOW) return { reason: 'too_slow', diagnose: false };
    if (code === CLOSE.GOING_AWAY) return { reason: 'server_going_away', diagnose: false };
    return { reason: wasOpen ? 'connection_lost' : 'connect_failed' };
  }

  async _diagnose(code) {
    const gen = this._gen;
    let info = null;
    try {
      const resp = await this.fetch(httpUrlFromWs(this._lastUrl || this.url), {
        headers: { accept: 'application/json' }, cache: 'no-store',
      });
      // 426 means the server is up and only refused because this was not an upgrade: it tells us
      // the WebSocket handshake itself was refused (auth, origin, limits) rather than unreachable.
      if (resp && [400, 401, 403, 426, 429, 503].includes(resp.status)) {
        let body = {};
        try { body = await resp.json(); } catch (_) { /* not JSON */ }
        const ra = resp.headers && resp.headers.get ? resp.headers.get('retry-after') : null;
        info = {
          status: resp.status,
          error: body.error || null,
          message: body.message || null,
          retryAfterMs: ra && /^\d+$/.test(ra) ? Number(ra) * 1000 : null,
        };
      }
    } catch (_) { /* server down or cross-origin: nothing to learn */ }
    if (gen !== this._gen || this._stopped || this._halted) return;
    if (!info) { this._scheduleRetry('connect_failed', code); return; }
    this.emit('handshake_error', info);
    if (info.status === 400) {
      // A bad filter or parameter: the same request would be refused again, so never retried.
      this.emit('bad_request', info);
      this._halted = true;
      this.nextRetryAt = null;
      this._setState(STATES.DISCONNECTED, { reason: 'bad_request', code: 400, status: 400 });
      return;
    }
    if (info.status === 403) {
      this.emit('forbidden', { code: 403, reason: info.message || info.error || '' });
      this._halted = true;
      this.nextRetryAt = null;
      this._setState(STATES.DISCONNECTED, { reason: 'forbidden', code: 403, status: 403 });
      return;
    }
    if (info.status === 401) {
      const expired = /expired/i.test(String(info.error || '')) || /expired/i.test(String(info.message || ''));
      if (expired) this.emit('auth_expired', { code: 401, reason: info.message || '', willRetry: !!this.getToken });
      if (!this.getToken) {
        this._halted = true;
        this.nextRetryAt = null;
        this._setState(STATES.DISCONNECTED, { reason: expired ? 'auth_expired' : 'unauthorized', code: 401, status: 401 });
        return;
      }
      this._scheduleRetry(expired ? 'auth_expired' : 'unauthorized', 401);
      return;
    }
    if (info.status === 426) { this._scheduleRetry('refused', code); return; }
    const reason = info.status === 429 ? 'rate_limited' : 'unavailable';
    this._scheduleRetry(reason, info.status, info.retryAfterMs);
  }

  _scheduleRetry(reason, code, minDelayMs) {
    if (this._stopped || this._halted) return;
    this._clearRetry();
    let delay = backoffDelay(this.attempt, this.backoff, this.random);
    if (typeof minDelayMs === 'number' && minDelayMs > delay) delay = minDelayMs;
    this.attempt++;
    this.nextRetryAt = this.now() + delay;
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this.nextRetryAt = null;
      this._open();
    }, delay);
    this._setState(STATES.DISCONNECTED, { reason, code });
  }

  _clearRetry() {
    if (this._retryTimer) clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this.nextRetryAt = null;
  }

  _clearTimers() {
    clearTimeout(this._connectTimer);
    clearTimeout(this._stableTimer);
    clearInterval(this._watchTimer);
    this._connectTimer = this._stableTimer = this._watchTimer = null;
  }

  /** Close the current socket and reconnect, by the backoff unless immediate. */
  _dropSocket(reason, { immediate = false } = {}) {
    const ws = this._ws;
    this._ws = null;
    this._gen++;
    this._clearTimers();
    if (ws) { try { ws.close(4000, reason); } catch (_) { try { ws.close(); } catch (_e) { /* ignore */ } } }
    this.emit('close', { code: 4000, reason, wasOpen: this._opened });
    if (this._stopped || this._halted) { this._setState(STATES.DISCONNECTED, { reason }); return; }
    if (immediate) { this.lastReason = reason; this._open(); return; }
    this._scheduleRetry(reason);
  }

  /** Wall-clock watchdog: timers may be throttled or frozen, so compare Date.now() on every tick. */
  _startWatchdog(gen) {
    const tick = Math.max(250, Math.min(5000, Math.floor(this.heartbeatTimeoutMs / 4)));
    this._watchTimer = setInterval(() => { if (gen === this._gen) this._checkAlive('heartbeat_timeout'); }, tick);
  }

  /** Returns true when the socket was declared dead and dropped. */
  _checkAlive(reason, thresholdMs = this.heartbeatTimeoutMs) {
    if (this.state !== STATES.CONNECTED || !this._ws) return false;
    if (this.now() - this._lastRxAt > thresholdMs) {
      this.emit('dead_connection', { silenceMs: this.now() - this._lastRxAt, reason });
      this._dropSocket(reason, { immediate: reason !== 'heartbeat_timeout' });
      return true;
    }
    return false;
  }

  /** Wake-up from sleep, network change, or back/forward cache: never trust an old "open" socket. */
  _wake(source) {
    if (this._stopped || this._halted) return;
    if (this.state === STATES.CONNECTED) {
      // A healthy socket has heard from the server within one heartbeat interval (+ slack).
      const fresh = Math.floor(this.heartbeatTimeoutMs / 3) + 5000;
      this._checkAlive('wake_' + source, fresh);
      return;
    }
    if (this.state === STATES.DISCONNECTED) {
      this.attempt = Math.min(this.attempt, 1);
      this._clearRetry();
      this.lastReason = 'wake_' + source;
      this._open();
    }
  }

  _installEnvHooks() {
    const w = this.env;
    if (!w || typeof w.addEventListener !== 'function') return;
    const add = (target, type, fn) => { target.addEventListener(type, fn); this._envHandlers.push([target, type, fn]); };
    add(w, 'online', () => this._wake('online'));
    add(w, 'offline', () => { if (this._ws) this._dropSocket('offline'); });
    add(w, 'pageshow', (e) => { if (e && e.persisted) this._wake('pageshow'); else this._wake('pageshow'); });
    add(w, 'pagehide', (e) => {
      // A page entering the back/forward cache must not keep a socket the server thinks is alive.
      if (e && e.persisted && this._ws) {
        const ws = this._ws; this._ws = null; this._gen++; this._clearTimers();
        try { ws.close(CLOSE.GOING_AWAY, 'pagehide'); } catch (_) { /* ignore */ }
        this._clearRetry();
        this._setState(STATES.DISCONNECTED, { reason: 'pagehide' });
      }
    });
    add(w, 'focus', () => this._wake('focus'));
    const doc = w.document;
    if (doc && typeof doc.addEventListener === 'function') {
      add(doc, 'visibilitychange', () => { if (doc.visibilityState === 'visible') this._wake('visible'); });
      add(doc, 'resume', () => this._wake('resume'));
    }
  }
}

/**
 * Client for /ws/events: snapshot + live events, resume, dedupe, filters.
 * Options: url (ws://host/ws/events), token | getToken, filters {agent_ids, project_ids, event_types},
 * encoding ('json' | 'messagepack'), backoff, heartbeatTimeoutMs, connectTimeoutMs, WebSocket,
 * autoConnect (default true), random/now/fetch/environment (test hooks).
 */
export class RingsideClient extends ReconnectingSocket {
  constructor(opts = {}) {
    super(opts);
    this.filters = normFilters(opts.filters);
    this.encoding = opts.encoding === 'messagepack' ? 'messagepack' : 'json';
    this.position = new ResumePosition();
    this._reloadNext = false;
    this._awaitSnapshot = false;
    this._snapshotSeq = null;
    if (opts.autoConnect !== false) this.connect();
  }

  /** Replace the filters; applied now if connected and on every reconnect (in the URL). */
  subscribe(filters) {
    this.filters = normFilters(filters);
    return this.send({ type: 'subscribe', agent_ids: this.filters.agent_ids || [],
      project_ids: this.filters.project_ids || [], event_types: this.filters.event_types || [] });
  }

  _buildUrl() {
    const u = new URL(this.url, typeof location !== 'undefined' ? location.href : undefined);
    const p = u.searchParams;
    for (const k of ['token', 'agent_ids', 'project_ids', 'event_types', 'encoding', 'last_sequence_id', 'epoch']) p.delete(k);
    if (this.token) p.set('token', this.token);
    for (const [k, v] of Object.entries(this.filters)) p.set(k, v.join(','));
    if (this.encoding !== 'json') p.set('encoding', this.encoding);
    if (!this._reloadNext) for (const [k, v] of Object.entries(this.position.params())) p.set(k, v);
    this._lastUrl = u.toString();
    return this._lastUrl;
  }

  _onOpen() { this._awaitSnapshot = true; }

  _onBinary(data) {
    if (this.encoding !== 'messagepack') return;
    let msg;
    try { msg = decodeMessagePack(data instanceof ArrayBuffer ? new Uint8Array(data) : data); } catch (err) {
      this.emit('protocol_error', { reason: 'bad_messagepack', error: err });
      return;
    }
    if (msg && typeof msg === 'object') this._onText(msg);
  }

  _onText(msg) {
    const type = msg.type;
    switch (type) {
      case 'heartbeat':
        this.send({ type: 'pong' });
        this.emit('heartbeat', msg);
        return;
      case 'snapshot': {
        if (this._reloadNext) this.position.reset();
        this._reloadNext = false;
        this._awaitSnapshot = false;
        this._snapshotSeq = typeof msg.seq === 'number' ? msg.seq : null;
        const reload = this.position.snapshot(msg.epoch, msg.seq);
        msg.reload = reload;
        this.emit('snapshot', msg);
        this.emit('message', msg);
        return;
      }
      case 'replay_truncated':
        // History between from_seq and to_seq is gone; the fresh snapshot that follows replaces state.
        this._reloadNext = true;
        this.emit('replay_truncated', msg);
        this.emit('message', msg);
        return;
      case 'shutdown':
        this._sawShutdown = true;
        this._serverRetryMs = Math.max(0, Number(msg.reconnect_after_ms) || 0);
        this.emit('shutdown', msg);
        this.emit('message', msg);
        return;
      default:
        break;
    }
    if (PERSISTED_TYPES.has(type) && typeof msg.seq === 'number') {
      // Replayed history (seq ≤ the snapshot's seq) is already reflected in the snapshot: handlers
      // should add it to a timeline, not apply it to current state (docs/protocol.md, Replay).
      msg.replayed = this._snapshotSeq !== null && msg.seq <= this._snapshotSeq;
      const verdict = this.position.accept(msg.epoch, msg.seq);
      if (verdict === 'duplicate') { this.emit('duplicate', msg); return; }
      if (verdict === 'epoch_changed') {
        // The server restarted its history: reload state from a fresh snapshot.
        this.emit('epoch_changed', { from: this.position.epoch, to: msg.epoch });
        this.position.reset();
        this._reloadNext = true;
        this._dropSocket('epoch_changed', { immediate: true });
        return;
      }
    }
    this.emit(type, msg);
    this.emit('message', msg);
  }
}

/**
 * Client for /ws/terminal/{task_id}: header, binary terminal bytes, gaps, end of task; pause/resume.
 * Events: 'header' (a new stream starts: clear the view, scrollback follows), 'data' (Uint8Array),
 * 'gap', 'task_ended', 'error', 'state', 'paused' (boolean).
 * 'expired' (the task ended and its output is no longer kept: close 4010).
 * Reconnects like RingsideClient until the task ends (close 1000), is unknown (4004) or its
 * output expired (4010). An ended task's terminal is served from the history: the header has
 * ended = true and output_bytes (all the task wrote), the kept tail follows, then task_ended.
 */
export class RingsideTerminal extends ReconnectingSocket {
  constructor(opts = {}) {
    if (!opts.url && opts.baseUrl && opts.taskId) {
      opts = { ...opts, url: String(opts.baseUrl).replace(/\/+$/, '') + '/ws/terminal/' + encodeURIComponent(opts.taskId) };
    }
    super(opts);
    this.taskId = opts.taskId || null;
    this.agentId = opts.agentId || null; // disambiguates a task id used by several agents
    this.run = opts.run ? String(opts.run) : null; // one run of a task id started again (its "run")
    this.paused = false;
    this.ended = false;
    if (opts.autoConnect !== false) this.connect();
  }

  pause() { this.paused = true; this.emit('paused', true); return this.send({ type: 'pause' }); }
  resume() { this.paused = false; this.emit('paused', false); return this.send({ type: 'resume' }); }

  _buildUrl() {
    const u = new URL(this.url, typeof location !== 'undefined' ? location.href : undefined);
    u.searchParams.delete('token');
    if (this.token) u.searchParams.set('token', this.token);
    if (this.agentId && !u.searchParams.has('agent_id')) u.searchParams.set('agent_id', this.agentId);
    if (this.run && !u.searchParams.has('run')) u.searchParams.set('run', this.run);
    this._lastUrl = u.toString();
    return this._lastUrl;
  }

  _onOpen() { if (this.paused) this.send({ type: 'pause' }); }

  _onBinary(data) {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data)
      : (ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null);
    if (bytes) this.emit('data', bytes);
  }

  _onText(msg) {
    switch (msg.type) {
      case 'terminal': this.emit('header', msg); return;
      case 'heartbeat': this.send({ type: 'pong' }); return;
      case 'task_ended': this.ended = true; this.emit('task_ended', msg); return;
      case 'shutdown':
        this._sawShutdown = true;
        this._serverRetryMs = Math.max(0, Number(msg.reconnect_after_ms) || 0);
        return;
      default: this.emit(msg.type, msg);
    }
  }

  _closeDecision(code, reason, wasOpen) {
    if (code === CLOSE.NORMAL && (this.ended || wasOpen)) return { reason: 'ended', halt: true };
    if (code === CLOSE.UNKNOWN_TASK) return { reason: 'unknown_task', halt: true };
    if (code === CLOSE.OUTPUT_EXPIRED) {
      this.emit('expired', { code, reason });
      return { reason: 'expired', halt: true };
    }
    return super._closeDecision(code, reason, wasOpen);
  }
}

export default RingsideClient;
