// Ringside dashboard: agents grouped by project, task progress with ETA, terminals, and a connection
// indicator/banner that always says whether what you see is live. Built on ringside.js.
//
// Page query parameters: token (JWT; none in --no-auth mode), banner_delay_ms (default 5000: the
// outage banner appears only after this long, the indicator changes at once), agent_ids, project_ids
// (comma-separated filters), terminal (a task id whose terminal opens on load).
import { RingsideClient, RingsideTerminal, STATES } from './ringside.js';
import { ansiRuns, ansiState } from './ansi.js';

const params = new URLSearchParams(location.search);
const TOKEN = params.get('token') || null;
const BANNER_DELAY_MS = clampInt(params.get('banner_delay_ms'), 0, 600000, 5000);
const MAX_ACTIVITY = 200;
const PRE_MAX_CHARS = 512 * 1024;
const TERM_HIGH_WATER = 512 * 1024; // bytes queued in xterm before we ask the server to pause
const TERM_LOW_WATER = 64 * 1024;

function clampInt(v, lo, hi, dflt) {
  const n = Number.parseInt(v, 10);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : dflt;
}
function listParam(name) {
  const v = params.get(name);
  return v ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
}
const $ = (id) => document.getElementById(id);
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
  return e;
}
function fmtTime(ts) {
  const d = ts ? new Date(ts) : new Date();
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour12: false });
}
export function formatEta(sec) {
  if (sec === null || sec === undefined || !Number.isFinite(Number(sec)) || Number(sec) < 0) return '';
  const s = Math.round(Number(sec));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
const STATUS_WORDS = { idle: 'idle', working: 'working', stuck: 'stuck', failed: 'failed', completed: 'completed', cancelled: 'cancelled' };

// ---- model --------------------------------------------------------------------------------------

const model = { agents: new Map(), epoch: null, everConnected: false, haveSnapshot: false };

function agentOf(id, project) {
  let a = model.agents.get(id);
  if (!a) {
    a = { agent_id: id, project_id: project || 'default', status: 'idle', detail: '', alive: true, tasks: new Map(), timestamp: null };
    model.agents.set(id, a);
  }
  if (project && a.project_id !== project) { removeAgentCard(a); a.project_id = project; }
  return a;
}
function taskOf(a, id) {
  let t = a.tasks.get(id);
  if (!t) {
    t = { task_id: id, title: id, state: 'running', current_step: 0, total_steps: null, progress_percent: null, eta_seconds: null, message: '' };
    a.tasks.set(id, t);
  }
  return t;
}

function applySnapshot(snap) {
  const seen = new Set();
  for (const s of snap.agents || []) {
    const a = agentOf(s.agent_id, s.project_id);
    seen.add(a.agent_id);
    Object.assign(a, { status: s.status, detail: s.detail || '', alive: s.alive !== false, owner: s.owner, timestamp: s.timestamp });
    a.tasks = new Map();
    for (const t of s.tasks || []) a.tasks.set(t.task_id, { ...t, title: t.title || t.task_id });
  }
  for (const [id, a] of model.agents) if (!seen.has(id)) { removeAgentCard(a); model.agents.delete(id); }
  model.epoch = snap.epoch;
  $('footer-epoch').textContent = snap.epoch ? `epoch ${snap.epoch} · seq ${snap.seq ?? '—'}` : '';
  renderAll();
}

// ---- rendering ----------------------------------------------------------------------------------

const cards = new Map(); // agent_id -> {root, pill, detail, meta, stale, tasks: Map(task_id -> {...})}

function projectBox(project) {
  const id = 'project-' + project.replace(/[^A-Za-z0-9_-]/g, '_');
  let box = document.getElementById(id);
  if (!box) {
    const list = el('div', { class: 'project__agents', role: 'list' });
    box = el('section', { class: 'project', id, 'data-project': project, 'aria-label': `Project ${project}` },
      el('h3', { class: 'project__title', text: project }), list);
    const projects = $('projects');
    const after = [...projects.children].find((c) => c.dataset.project > project);
    projects.insertBefore(box, after || null);
  }
  return box.querySelector('.project__agents');
}

function removeAgentCard(a) {
  const c = cards.get(a.agent_id);
  if (!c) return;
  const list = c.root.parentElement;
  c.root.remove();
  cards.delete(a.agent_id);
  if (list && !list.children.length) list.parentElement.remove();
}

function renderAgent(a) {
  let c = cards.get(a.agent_id);
  if (!c) {
    c = { tasks: new Map() };
    c.pill = el('span', { class: 'pill' });
    c.stale = el('span', { class: 'badge-stale', hidden: true, title: 'Not live: the connection to the server is down' });
    c.alive = el('span', { class: 'pill pill--dead', hidden: true, text: 'not responding' });
    c.detail = el('p', { class: 'agent__detail' });
    c.meta = el('div', { class: 'agent__meta' });
    c.list = el('ul', { class: 'tasks', 'aria-label': `Tasks of ${a.agent_id}` });
    c.root = el('article', { class: 'agent', role: 'listitem', 'data-agent': a.agent_id, 'aria-label': `Agent ${a.agent_id}` },
      el('div', { class: 'agent__head' }, el('h4', { class: 'agent__name', text: a.agent_id }), c.pill, c.alive, c.stale),
      c.detail, c.list, c.meta);
    const list = projectBox(a.project_id);
    const after = [...list.children].find((x) => x.dataset.agent > a.agent_id);
    list.insertBefore(c.root, after || null);
    cards.set(a.agent_id, c);
  }
  const word = STATUS_WORDS[a.status] || String(a.status || 'unknown');
  c.root.dataset.status = word;
  c.pill.className = `pill pill--${word}`;
  c.pill.textContent = word;
  c.pill.setAttribute('aria-label', `status ${word}`);
  c.alive.hidden = a.alive !== false;
  c.detail.textContent = a.detail || '';
  c.detail.hidden = !a.detail;
  c.meta.textContent = a.timestamp ? `updated ${fmtTime(a.timestamp)}` : '';
  for (const t of a.tasks.values()) renderTask(a, c, t);
  for (const [id, tc] of c.tasks) if (!a.tasks.has(id)) { tc.root.remove(); c.tasks.delete(id); }
  updateStale(c);
}

function renderTask(a, c, t) {
  let tc = c.tasks.get(t.task_id);
  if (!tc) {
    tc = {};
    tc.title = el('span', { class: 'task__title' });
    tc.state = el('span', { class: 'task__state' });
    tc.fill = el('div', { class: 'bar__fill' });
    tc.bar = el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 }, tc.fill);
    tc.msg = el('span', { class: 'task__msg' });
    tc.eta = el('span', { class: 'task__eta' });
    tc.btn = el('button', { type: 'button', class: 'btn btn--small', text: 'Show terminal',
      onclick: () => openTerminal(a.agent_id, t.task_id) });
    tc.root = el('li', { class: 'task', 'data-task': t.task_id },
      el('div', { class: 'task__head' }, tc.title, tc.state), tc.bar,
      el('div', { class: 'task__line' }, tc.msg, tc.eta), el('div', { class: 'task__actions' }, tc.btn));
    c.list.append(tc.root);
    c.tasks.set(t.task_id, tc);
  }
  tc.root.dataset.state = t.state;
  tc.title.textContent = t.title || t.task_id;
  const pct = t.progress_percent === null || t.progress_percent === undefined ? null : Math.max(0, Math.min(100, Number(t.progress_percent)));
  const steps = t.total_steps ? `step ${t.current_step}/${t.total_steps}` : (t.current_step ? `step ${t.current_step}` : '');
  tc.state.textContent = [t.state === 'running' ? (pct === null ? 'running' : `${Math.round(pct)}%`) : t.state, steps].filter(Boolean).join(' · ');
  tc.bar.setAttribute('aria-label', `Progress of ${t.title || t.task_id}`);
  if (pct === null && t.state === 'running') {
    tc.bar.classList.add('bar--indeterminate');
    tc.bar.removeAttribute('aria-valuenow');
    tc.bar.setAttribute('aria-valuetext', 'in progress, total unknown');
  } else {
    const shown = t.state === 'completed' ? 100 : (pct ?? 0);
    tc.bar.classList.remove('bar--indeterminate');
    tc.fill.style.width = `${shown}%`;
    tc.bar.setAttribute('aria-valuenow', String(Math.round(shown)));
    tc.bar.setAttribute('aria-valuetext', `${Math.round(shown)} percent${t.eta_seconds != null ? ', ' + formatEta(t.eta_seconds) + ' left' : ''}`);
  }
  tc.msg.textContent = t.message || '';
  const eta = t.state === 'running' ? formatEta(t.eta_seconds) : '';
  tc.eta.textContent = eta ? `ETA ${eta}` : '';
}

function renderAll() {
  for (const a of model.agents.values()) renderAgent(a);
  $('empty').hidden = model.agents.size > 0;
  $('empty').textContent = model.agents.size ? '' : (model.everConnected ? 'No agents are publishing yet.' : 'Waiting for the first snapshot…');
}

// ---- staleness, indicator, banner, alerts --------------------------------------------------------

let connState = STATES.CONNECTING;
let lastInfo = { state: STATES.CONNECTING, nextRetryAt: null };
let outageSince = null; // ms; set when the connection is lost (or the first connect is slow)
let staleSince = null;

function updateStale(c) {
  const stale = connState !== STATES.CONNECTED;
  c.stale.hidden = !stale;
  c.stale.textContent = stale ? `stale${staleSince ? ' since ' + fmtTime(staleSince) : ''}` : '';
}

function setIndicator(info) {
  const conn = $('conn');
  conn.className = `conn conn--${info.state}`;
  conn.dataset.state = info.state;
  let text;
  if (info.state === STATES.CONNECTED) text = 'Live';
  else if (info.state === STATES.CONNECTING) text = model.everConnected ? 'Reconnecting…' : 'Connecting…';
  else text = info.nextRetryAt ? 'Disconnected — retrying' : 'Disconnected';
  $('conn-text').textContent = text;
}

function tickBanner() {
  const banner = $('banner');
  const now = Date.now();
  const retrying = lastInfo.state === STATES.CONNECTING || (lastInfo.state === STATES.DISCONNECTED && lastInfo.nextRetryAt);
  const show = outageSince !== null && retrying && now - outageSince >= BANNER_DELAY_MS;
  if (!show) { if (!banner.hidden) banner.hidden = true; return; }
  let cd;
  if (lastInfo.state === STATES.CONNECTING) cd = 'reconnecting now…';
  else {
    const s = Math.max(0, Math.ceil((lastInfo.nextRetryAt - now) / 1000));
    cd = `reconnecting in ${s}s`;
  }
  const node = $('banner-countdown');
  if (node.textContent !== cd) node.textContent = cd;
  if (banner.hidden) banner.hidden = false;
}
setInterval(tickBanner, 250);

function showAlert(title, text, action) {
  $('alert-title').textContent = title;
  $('alert-text').textContent = text;
  const a = $('alert-action');
  if (action) { a.textContent = action.label; a.href = action.href; a.hidden = false; } else a.hidden = true;
  $('alert').hidden = false;
  $('alert').dataset.kind = action?.kind || title;
}
function clearAlert() { $('alert').hidden = true; $('alert').dataset.kind = ''; }
function signInHref() { const u = new URL(location.href); u.searchParams.delete('token'); return u.toString(); }

function onState(info) {
  const prev = connState;
  connState = info.state;
  lastInfo = info;
  setIndicator(info);
  if (info.state === STATES.CONNECTED) {
    outageSince = null;
    staleSince = null;
    document.body.classList.remove('is-stale');
    if (prev !== STATES.CONNECTED && model.everConnected) note('Reconnected — live again');
    model.everConnected = true;
    if ($('alert').dataset.kind !== 'terminal') clearAlert();
  } else {
    if (outageSince === null) outageSince = Date.now();
    if (staleSince === null && model.everConnected) staleSince = Date.now();
    document.body.classList.toggle('is-stale', model.everConnected);
    if (prev === STATES.CONNECTED) note(`Connection lost (${info.reason || 'unknown'})`);
  }
  for (const c of cards.values()) updateStale(c);
  tickBanner();
}

// ---- activity log ----------------------------------------------------------------------------------

function logItem(text, attrs = {}) {
  const list = $('activity');
  list.append(el('li', attrs, text));
  while (list.children.length > MAX_ACTIVITY) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}
function note(text) { logItem(`${fmtTime()} ${text}`, { class: 'note' }); }
function logEvent(ev, text) {
  logItem(`${fmtTime(ev.timestamp)} ${ev.agent_id} ${text}`, { 'data-seq': ev.seq, 'data-epoch': ev.epoch, 'data-type': ev.type });
}

// ---- terminals ------------------------------------------------------------------------------------

let xtermPromise = null;
function loadXterm() {
  if (!xtermPromise) {
    xtermPromise = import('./vendor/xterm.js').then((mod) => {
      document.head.append(el('link', { rel: 'stylesheet', href: './vendor/xterm.css' }));
      return mod.Terminal || null;
    }).catch(() => null);
  }
  return xtermPromise;
}

const terminals = new Map(); // task_id -> panel

function wsBase() { return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`; }

async function openTerminal(agentId, taskId) {
  if (terminals.has(taskId)) { terminals.get(taskId).root.querySelector('button').focus(); return; }
  const panel = { taskId, pending: 0, autoPaused: false };
  terminals.set(taskId, panel);
  panel.status = el('span', { class: 'term__status', role: 'status', text: 'connecting…' });
  panel.pauseBtn = el('button', { type: 'button', class: 'btn btn--small', 'aria-pressed': 'false', text: 'Pause',
    onclick: () => togglePause(panel) });
  const closeBtn = el('button', { type: 'button', class: 'btn btn--small', text: 'Close', 'aria-label': `Close terminal of ${taskId}`,
    onclick: () => closeTerminal(taskId) });
  panel.body = el('div', { class: 'term__body' });
  panel.root = el('section', { class: 'term', 'data-task': taskId, 'aria-label': `Terminal of task ${taskId}` },
    el('div', { class: 'term__head' }, el('h3', { class: 'term__title', text: `${agentId} · ${taskId}` }),
      panel.status, panel.pauseBtn, closeBtn), panel.body);
  $('terminals').append(panel.root);

  const Terminal = await loadXterm();
  if (!terminals.has(taskId)) return;
  if (Terminal) {
    panel.term = new Terminal({ convertEol: false, scrollback: 5000, disableStdin: true, fontSize: 13,
      theme: { background: '#000000' }, screenReaderMode: false });
    panel.term.open(panel.body);
    panel.root.dataset.renderer = 'xterm';
  } else {
    panel.pre = el('pre', { class: 'term__pre', tabindex: 0, 'aria-label': `Output of ${taskId}` });
    panel.decoder = new TextDecoder();
    panel.ansi = ansiState();
    panel.body.append(panel.pre);
    panel.root.dataset.renderer = 'pre';
  }
  panel.client = new RingsideTerminal({ baseUrl: wsBase(), taskId, agentId: agentId || null, token: TOKEN });
  panel.client.on('state', (s) => {
    if (s.state === STATES.CONNECTED) panel.status.textContent = panel.client.paused ? 'paused' : 'live';
    else if (s.reason === 'ended') panel.status.textContent = panel.endText || 'ended';
    else if (s.reason === 'unknown_task') panel.status.textContent = 'no terminal output for this task';
    else panel.status.textContent = s.state === STATES.CONNECTING ? 'connecting…' : 'disconnected — retrying';
  });
  panel.client.on('header', () => { resetView(panel); });
  panel.client.on('data', (bytes) => writeBytes(panel, bytes));
  panel.client.on('gap', (g) => writeText(panel, `\r\n\x1b[2m[… ${g.bytes ?? g.count ?? 'some'} bytes of output lost …]\x1b[0m\r\n`));
  panel.client.on('task_ended', (e) => { panel.endText = `ended · exit ${e.exit_code ?? '?'}`; panel.status.textContent = panel.endText; });
  panel.client.on('paused', (p) => {
    panel.pauseBtn.textContent = p ? 'Resume' : 'Pause';
    panel.pauseBtn.setAttribute('aria-pressed', String(p));
    if (panel.client.state === STATES.CONNECTED) panel.status.textContent = p ? 'paused' : 'live';
  });
}

function togglePause(panel) {
  if (!panel.client) return;
  panel.userPaused = !panel.client.paused;
  if (panel.client.paused) panel.client.resume(); else panel.client.pause();
}

function resetView(panel) {
  if (panel.term) panel.term.reset();
  if (panel.pre) { panel.pre.textContent = ''; panel.preChars = 0; panel.decoder = new TextDecoder(); panel.ansi = ansiState(); }
}

function writeBytes(panel, bytes) {
  if (panel.term) {
    // Flow control from xterm's write callbacks: ask the server to pause while xterm is far behind.
    panel.pending += bytes.length;
    panel.term.write(bytes, () => {
      panel.pending -= bytes.length;
      if (panel.autoPaused && panel.pending < TERM_LOW_WATER) { panel.autoPaused = false; if (!panel.userPaused) panel.client.resume(); }
    });
    if (!panel.autoPaused && panel.pending > TERM_HIGH_WATER && !panel.client.paused) { panel.autoPaused = true; panel.client.pause(); }
    return;
  }
  appendPre(panel, panel.decoder.decode(bytes, { stream: true }));
}
function writeText(panel, s) { if (panel.term) panel.term.write(s); else appendPre(panel, s); }
const PRE_MAX_NODES = 4000;
function appendPre(panel, s) {
  // Without xterm.js: colours and styles rendered as spans, other escape sequences removed.
  const pre = panel.pre;
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  const frag = document.createDocumentFragment();
  for (const r of ansiRuns(s, panel.ansi)) {
    if (!r.fg && !r.bg && !r.bold && !r.dim && !r.italic && !r.underline) { frag.append(r.text); continue; }
    const span = document.createElement('span');
    span.textContent = r.text;
    if (r.fg) span.style.color = r.fg;
    if (r.bg) span.style.backgroundColor = r.bg;
    if (r.bold) span.style.fontWeight = 'bold';
    if (r.dim) span.style.opacity = '0.7';
    if (r.italic) span.style.fontStyle = 'italic';
    if (r.underline) span.style.textDecoration = 'underline';
    frag.append(span);
  }
  pre.append(frag);
  panel.preChars = (panel.preChars || 0) + s.length;
  // Bounded: the oldest half goes when the text or the node count is over its limit.
  while ((panel.preChars > PRE_MAX_CHARS || pre.childNodes.length > PRE_MAX_NODES) && pre.firstChild) {
    panel.preChars -= pre.firstChild.textContent.length;
    pre.firstChild.remove();
  }
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function closeTerminal(taskId) {
  const p = terminals.get(taskId);
  if (!p) return;
  terminals.delete(taskId);
  if (p.client) p.client.close();
  if (p.term) p.term.dispose();
  p.root.remove();
  const btn = document.querySelector(`.task[data-task="${CSS.escape(taskId)}"] button`);
  if (btn) btn.focus();
}

// ---- wiring -----------------------------------------------------------------------------------------

const client = new RingsideClient({
  url: `${wsBase()}/ws/events`,
  token: TOKEN,
  filters: { agent_ids: listParam('agent_ids'), project_ids: listParam('project_ids') },
  autoConnect: false,
});

client.on('state', onState);
client.on('snapshot', (snap) => {
  if (snap.reload && model.haveSnapshot) note(`Snapshot reloaded (epoch ${snap.epoch}) — state replaced`);
  else if (!snap.reload) note(`Resumed at seq ${client.position.seq ?? '—'} (epoch ${snap.epoch}) — missed events follow`);
  model.haveSnapshot = true;
  applySnapshot(snap);
});
client.on('agent_status', (ev) => {
  if (ev.replayed) { logEvent(ev, `status ${ev.old_status || '?'} → ${ev.new_status}${ev.detail ? ': ' + ev.detail : ''}`); return; }
  const a = agentOf(ev.agent_id, ev.project_id);
  a.status = ev.new_status;
  a.detail = ev.detail || '';
  a.timestamp = ev.timestamp;
  a.alive = true;
  renderAgent(a);
  renderAll();
  logEvent(ev, `status ${ev.old_status || '?'} → ${ev.new_status}${ev.detail ? ': ' + ev.detail : ''}`);
});
client.on('task_started', (ev) => {
  if (ev.replayed) { logEvent(ev, `started ${ev.title || ev.task_id}`); return; }
  const a = agentOf(ev.agent_id, ev.project_id);
  const t = taskOf(a, ev.task_id);
  Object.assign(t, { title: ev.title || ev.task_id, state: 'running', started_at: ev.timestamp });
  a.timestamp = ev.timestamp;
  renderAgent(a);
  renderAll();
  logEvent(ev, `started ${t.title}`);
});
client.on('task_ended', (ev) => {
  if (ev.replayed) { logEvent(ev, `ended ${ev.task_id}: ${ev.outcome}`); return; }
  const a = agentOf(ev.agent_id, ev.project_id);
  const t = taskOf(a, ev.task_id);
  t.state = ev.outcome || 'completed';
  if (t.state === 'completed') t.progress_percent = 100;
  a.timestamp = ev.timestamp;
  renderAgent(a);
  logEvent(ev, `ended ${t.title}: ${t.state}${ev.exit_code !== undefined ? ' (exit ' + ev.exit_code + ')' : ''}`);
});
client.on('progress', (ev) => {
  const a = agentOf(ev.agent_id, ev.project_id);
  const t = taskOf(a, ev.task_id);
  Object.assign(t, { current_step: ev.current_step, total_steps: ev.total_steps, progress_percent: ev.progress_percent,
    eta_seconds: ev.eta_seconds, message: ev.message || '' });
  if (t.state !== 'running' && t.state !== 'completed' && t.state !== 'failed' && t.state !== 'cancelled') t.state = 'running';
  a.timestamp = ev.timestamp;
  if (cards.has(a.agent_id)) renderTask(a, cards.get(a.agent_id), t); else renderAll();
});
client.on('dropped', (m) => note(`${m.count} updates dropped by the server (this connection was too slow)`));
client.on('gap', (m) => note(`Gap in updates (${m.reason}${m.count ? ', ' + m.count : ''}${m.agent_id ? ', agent ' + m.agent_id : ''})`));
client.on('replay_truncated', () => note('The server no longer has the missed events — reloading the full state'));
client.on('error', (m) => showAlert('Server error', m.message || m.error || 'unknown error'));
client.on('auth_expired', () => {
  showAlert('Your session expired — sign in again.', 'Live updates stopped because your access token expired. Open the dashboard with a fresh link or token.',
    { label: 'Sign in again', href: signInHref(), kind: 'terminal' });
});
client.on('forbidden', () => {
  showAlert('Access denied.', 'Your token does not allow these agents or projects. Ask an administrator for access, or open the dashboard with another token.',
    { label: 'Reload', href: signInHref(), kind: 'terminal' });
});
client.on('handshake_error', (e) => {
  if (e.status === 401 && !/expired/i.test(`${e.error} ${e.message}`)) {
    showAlert('Sign-in required.', e.message || 'The server needs a valid access token: open the dashboard link that includes ?token=…',
      { label: 'Sign in again', href: signInHref(), kind: 'terminal' });
  } else if (e.status === 426) {
    // The server is reachable but refused the WebSocket handshake (the browser hides why).
    if (TOKEN) showAlert('Sign-in needed.', 'The server refused the live connection — your session may have expired. Sign in again, or open the dashboard with a fresh link. Retrying meanwhile.',
      { label: 'Sign in again', href: signInHref() });
    else showAlert('Connection refused.', 'The server is reachable but refused the live connection. Check the address, or whether a token (?token=…) is required. Retrying meanwhile.');
  } else if (e.status === 429) {
    showAlert('Too many connections.', (e.message ? e.message + ' ' : '') + 'Close other Ringside tabs or wait — retrying automatically.');
  } else if (e.status === 503) {
    showAlert('Server busy or restarting.', (e.message ? e.message + ' ' : '') + 'Retrying automatically.');
  }
});
$('retry-now').addEventListener('click', () => client.reconnectNow('retry_now'));

window.ringside = { client, model, terminals, openTerminal, bannerDelayMs: BANNER_DELAY_MS };
client.connect();
if (params.get('terminal')) openTerminal('', params.get('terminal'));
