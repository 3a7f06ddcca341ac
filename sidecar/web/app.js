// Ringside dashboard: a summary bar, a filter reflected in the URL, agents grouped by project with
// each agent's current tasks on top and its ended tasks (outcome, duration) collapsed below, a
// terminal drawer (live with pause/resume, or an ended task's kept output), deep links to a task's
// terminal, and a connection indicator/banner that always says whether what you see is live.
// Built on ringside.js; the DOM stays bounded however long the tab is open (docs/dashboard.md).
//
// Page query parameters: token (JWT; none in --no-auth mode), banner_delay_ms (default 5000),
// agent_ids, project_ids (comma-separated server-side filters), q (the filter box), forget_s
// (default 3600: an agent with nothing running and no update for this long leaves the page),
// renderer=plain (use the ANSI fallback instead of xterm.js), terminal (a task id to open; the
// hash form #task=ID[&agent=ID] is the deep link the page itself writes).
import { RingsideClient, RingsideTerminal, STATES } from './ringside.js';
import { ansiRuns, ansiState } from './ansi.js';

const params = new URLSearchParams(location.search);
const TOKEN = params.get('token') || null;
const BANNER_DELAY_MS = clampInt(params.get('banner_delay_ms'), 0, 600000, 5000);
const FORGET_MS = clampInt(params.get('forget_s'), 1, 30 * 86400, 3600) * 1000;
const FORCE_PLAIN = params.get('renderer') === 'plain';
const MAX_ACTIVITY = 200;
const MAX_HISTORY = 20;        // ended tasks kept per agent in the page (the server's default too)
const MAX_RUNNING = 50;        // running tasks shown per agent (the rest are counted)
const PRE_MAX_CHARS = 512 * 1024;
const PRE_MAX_NODES = 4000;
const RAW_MAX_BYTES = 4 * 1024 * 1024; // raw output kept for "Download" (the newest bytes)
const TERM_HIGH_WATER = 512 * 1024;    // bytes queued in xterm before we ask the server to pause
const TERM_LOW_WATER = 64 * 1024;
const ENDED = new Set(['completed', 'failed', 'cancelled']);

function clampInt(v, lo, hi, dflt) {
  const n = Number.parseInt(v, 10);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : dflt;
}
function listParam(name) {
  const v = params.get(name);
  return v ? v.split(',').map((s) => s.trim()) : undefined;
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
function fmtDuration(sec) {
  const n = Number(sec);
  if (!Number.isFinite(n) || n < 0) return '';
  return n < 10 ? `${n.toFixed(1)}s` : formatEta(n);
}
function fmtBytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}
const STATUS_WORDS = ['working', 'stuck', 'failed', 'idle', 'completed', 'cancelled'];

// ---- model --------------------------------------------------------------------------------------

const model = { agents: new Map(), epoch: null, everConnected: false, haveSnapshot: false };

function agentOf(id, project) {
  let a = model.agents.get(id);
  if (!a) {
    a = { agent_id: id, project_id: project || 'default', status: 'idle', detail: '', alive: true,
      tasks: new Map(), history: [], timestamp: null, seenAt: Date.now(), historyRev: 0 };
    model.agents.set(id, a);
  }
  if (project && a.project_id !== project) { removeAgentCard(a); a.project_id = project; }
  a.seenAt = Date.now();
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

/** Moves a task that ended live into the agent's history (newest first, bounded). */
function endTask(a, ev) {
  const t = a.tasks.get(ev.task_id);
  a.tasks.delete(ev.task_id);
  const started = t?.started_at || null;
  const dur = started ? (Date.parse(ev.timestamp) - Date.parse(started)) / 1000 : null;
  const h = { task_id: ev.task_id, run: ev.run || t?.run, title: t?.title || ev.task_id, state: ev.outcome || 'completed',
    exit_code: ev.exit_code, started_at: started, ended_at: ev.timestamp,
    duration_seconds: Number.isFinite(dur) ? Math.max(0, dur) : null, output_retained: true };
  a.history = [h, ...a.history.filter((x) => !(x.task_id === h.task_id && (h.run ? x.run === h.run : x.ended_at === h.ended_at)))].slice(0, MAX_HISTORY);
  a.historyRev++;
  return h;
}

function applySnapshot(snap) {
  const seen = new Set();
  for (const s of snap.agents || []) {
    const a = agentOf(s.agent_id, s.project_id);
    seen.add(a.agent_id);
    Object.assign(a, { status: s.status, detail: s.detail || '', alive: s.alive !== false, owner: s.owner, timestamp: s.timestamp });
    a.tasks = new Map();
    // All running tasks are kept in the model (the sidecar bounds them, --max-tasks-per-agent) so
    // the counts are right; only MAX_RUNNING of them are rendered.
    for (const t of s.tasks || []) a.tasks.set(t.task_id, { ...t, title: t.title || t.task_id });
    a.history = (s.history || []).slice(0, MAX_HISTORY);
    a.historyRev++;
  }
  for (const [id, a] of model.agents) if (!seen.has(id)) { removeAgentCard(a); model.agents.delete(id); }
  model.epoch = snap.epoch;
  $('footer-epoch').textContent = snap.epoch ? `epoch ${snap.epoch} · seq ${snap.seq ?? '—'}` : '';
  renderAll();
  // For the benchmark (docs/benchmarks.md): when the first snapshot was on the page.
  if (model.firstRenderMs === undefined) model.firstRenderMs = performance.now();
}

/** Agents that are done (dead, or ended with completed/failed/cancelled, or never said) with nothing
 * running and no update for FORGET_MS leave the page (the server forgets them after its window). */
function forgetIdleAgents() {
  const now = Date.now();
  let changed = false;
  for (const [id, a] of model.agents) {
    const done = a.alive === false || !a.status || ENDED.has(a.status);
    if (done && a.tasks.size === 0 && now - a.seenAt > FORGET_MS) { removeAgentCard(a); model.agents.delete(id); changed = true; }
  }
  if (changed) renderAll();
}
setInterval(forgetIdleAgents, Math.min(60000, FORGET_MS / 2));

// ---- filter -------------------------------------------------------------------------------------
// The filter box: words separated by spaces, all of which must match. `agent:`, `project:`,
// `status:` and `task:` match that field (substring, case-insensitive); a bare word matches any of
// them, the detail text, or a task id/title (running or ended).

let filterText = params.get('q') || '';
function parseFilter(text) {
  return text.trim().toLowerCase().split(/\s+/).filter(Boolean).map((w) => {
    const m = /^(agent|project|status|task):(.*)$/.exec(w);
    return m ? { key: m[1], value: m[2] } : { key: null, value: w };
  });
}
function taskWords(a) {
  const out = [];
  for (const t of a.tasks.values()) out.push(t.task_id, t.title || '', 'running');
  for (const h of a.history) out.push(h.task_id, h.title || '', h.state);
  return out.map((s) => String(s).toLowerCase());
}
function agentMatches(a, terms) {
  for (const { key, value } of terms) {
    const has = (s) => String(s || '').toLowerCase().includes(value);
    let ok;
    if (key === 'agent') ok = has(a.agent_id);
    else if (key === 'project') ok = has(a.project_id);
    else if (key === 'status') ok = has(a.status);
    else if (key === 'task') ok = taskWords(a).some((w) => w.includes(value));
    else ok = has(a.agent_id) || has(a.project_id) || has(a.status) || has(a.detail) || taskWords(a).some((w) => w.includes(value));
    if (!ok) return false;
  }
  return true;
}
let filterTimer = null;
function setFilter(text, { fromInput = false } = {}) {
  filterText = text;
  if (!fromInput) $('filter').value = text;
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    const u = new URL(location.href);
    if (filterText.trim()) u.searchParams.set('q', filterText.trim()); else u.searchParams.delete('q');
    history.replaceState(null, '', u);
  }, fromInput ? 250 : 0);
  applyFilter();
}
function applyFilter() {
  const terms = parseFilter(filterText);
  let shown = 0;
  for (const a of model.agents.values()) {
    const c = cards.get(a.agent_id);
    if (!c) continue;
    const ok = agentMatches(a, terms);
    c.root.hidden = !ok;
    shown += ok ? 1 : 0;
  }
  for (const box of $('projects').children) box.hidden = ![...box.querySelectorAll('.agent')].some((x) => !x.hidden);
  const active = $('filter-active');
  const server = [['agent_ids', params.get('agent_ids')], ['project_ids', params.get('project_ids')]].filter(([, v]) => v);
  const parts = [];
  if (terms.length) parts.push(`“${filterText.trim()}” — ${shown} of ${model.agents.size} agents`);
  if (server.length) parts.push(`server filter ${server.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  active.hidden = parts.length === 0;
  $('filter-active-text').textContent = parts.length ? `Showing ${parts.join(' · ')}` : '';
  $('filter-clear').hidden = !terms.length && !server.length;
  $('empty-filter').hidden = !(terms.length && model.agents.size && shown === 0);
}

// ---- rendering ----------------------------------------------------------------------------------

const cards = new Map(); // agent_id -> {root, pill, detail, meta, stale, list, tasks: Map, hist…}

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
    c = { tasks: new Map(), historyRev: -1 };
    c.pill = el('span', { class: 'pill' });
    c.stale = el('span', { class: 'badge-stale', hidden: true, title: 'Not live: the connection to the server is down' });
    c.alive = el('span', { class: 'pill pill--dead', hidden: true, text: 'not responding' });
    c.detail = el('p', { class: 'agent__detail' });
    c.meta = el('div', { class: 'agent__meta' });
    c.list = el('ul', { class: 'tasks', 'aria-label': `Current tasks of ${a.agent_id}` });
    c.more = el('p', { class: 'tasks__more', hidden: true });
    c.failure = el('div', { class: 'failure', hidden: true });
    c.histList = el('ol', { class: 'history__list' });
    c.histSummary = el('summary', { class: 'history__summary' });
    c.hist = el('details', { class: 'history', hidden: true }, c.histSummary, c.histList);
    // The rows are built only while the list is open: a page of collapsed agents stays light.
    c.hist.addEventListener('toggle', () => { c.historyRev = -1; renderHistory(a, c); c.historyRev = a.historyRev; });
    c.root = el('article', { class: 'agent', role: 'listitem', 'data-agent': a.agent_id, 'aria-label': `Agent ${a.agent_id}` },
      el('div', { class: 'agent__head' }, el('h4', { class: 'agent__name', text: a.agent_id }), c.pill, c.alive, c.stale),
      c.detail, c.list, c.more, c.failure, c.hist, c.meta);
    const list = projectBox(a.project_id);
    const after = [...list.children].find((x) => x.dataset.agent > a.agent_id);
    list.insertBefore(c.root, after || null);
    cards.set(a.agent_id, c);
  }
  const word = a.status ? String(a.status) : 'no status';
  c.root.dataset.status = a.status ? word : 'unknown';
  c.pill.className = `pill pill--${a.status ? word : 'unknown'}`;
  c.pill.textContent = word;
  c.pill.setAttribute('aria-label', `status ${word}`);
  c.alive.hidden = a.alive !== false;
  c.detail.textContent = a.detail || '';
  c.detail.hidden = !a.detail;
  c.meta.textContent = a.timestamp ? `updated ${fmtTime(a.timestamp)}` : '';
  const shown = new Set([...a.tasks.keys()].slice(0, MAX_RUNNING));
  for (const [id, tc] of c.tasks) if (!shown.has(id)) { tc.root.remove(); c.tasks.delete(id); }
  for (const id of shown) renderTask(a, c, a.tasks.get(id));
  const more = a.tasks.size - shown.size;
  c.more.hidden = more <= 0;
  c.more.textContent = `and ${more} more running task${more === 1 ? '' : 's'}`;
  c.more.dataset.count = String(Math.max(0, more));
  if (c.historyRev !== a.historyRev) { renderHistory(a, c); c.historyRev = a.historyRev; }
  updateStale(c);
}

function outputButton(a, h, label) {
  const gone = h.output_retained === false;
  return el('button', { type: 'button', class: `btn btn--small${h.state === 'failed' ? ' btn--bad' : ''}`,
    text: gone ? 'output expired' : label, disabled: gone,
    title: gone ? 'The sidecar no longer keeps this task\'s output (--history-window / --history-bytes)' : null,
    'aria-label': `${gone ? 'Output expired' : label}: ${h.title || h.task_id}`,
    onclick: () => openTerminal(a.agent_id, h.task_id, { run: h.run }) });
}

/** The ended tasks: the last failure stays visible, the list is collapsed (bounded: MAX_HISTORY). */
function renderHistory(a, c) {
  const hist = a.history;
  c.hist.hidden = hist.length === 0;
  const failed = hist.filter((h) => h.state === 'failed').length;
  c.histSummary.textContent = `History · ${hist.length} ended${failed ? ` · ${failed} failed` : ''}`;
  c.histList.replaceChildren(...(c.hist.open ? hist : []).map((h) => el('li', { class: 'hist', 'data-task': h.task_id, 'data-state': h.state },
    el('span', { class: `pill pill--${h.state}`, text: h.state }),
    el('span', { class: 'hist__title', text: h.title || h.task_id, title: h.title && h.title !== h.task_id ? `${h.title} (${h.task_id})` : h.task_id }),
    el('span', { class: 'hist__meta', text: [h.exit_code !== undefined && h.exit_code !== null ? `exit ${h.exit_code}` : '',
      fmtDuration(h.duration_seconds), h.ended_at ? `ended ${fmtTime(h.ended_at)}` : ''].filter(Boolean).join(' · ') }),
    outputButton(a, h, 'Output'))));
  // "Why did it fail?": the newest ended task, if it failed, one click from its output.
  const last = hist[0];
  c.failure.hidden = !(last && last.state === 'failed');
  if (!c.failure.hidden) {
    c.failure.dataset.task = last.task_id;
    c.failure.replaceChildren(
      el('span', { class: 'failure__text', text: `Last task failed: ${last.title || last.task_id}${last.exit_code !== undefined ? ` (exit ${last.exit_code})` : ''}` }),
      outputButton(a, last, 'Show output'));
  }
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
  tc.state.textContent = [pct === null ? 'running' : `${Math.round(pct)}%`, steps].filter(Boolean).join(' · ');
  tc.bar.setAttribute('aria-label', `Progress of ${t.title || t.task_id}`);
  if (pct === null) {
    tc.bar.classList.add('bar--indeterminate');
    tc.bar.removeAttribute('aria-valuenow');
    tc.bar.setAttribute('aria-valuetext', 'in progress, total unknown');
  } else {
    tc.bar.classList.remove('bar--indeterminate');
    tc.fill.style.width = `${pct}%`;
    tc.bar.setAttribute('aria-valuenow', String(Math.round(pct)));
    tc.bar.setAttribute('aria-valuetext', `${Math.round(pct)} percent${t.eta_seconds != null ? ', ' + formatEta(t.eta_seconds) + ' left' : ''}`);
  }
  tc.msg.textContent = t.message || '';
  const eta = formatEta(t.eta_seconds);
  tc.eta.textContent = eta ? `ETA ${eta}` : '';
}

function renderSummary() {
  const counts = new Map();
  let running = 0;
  let failedTasks = 0;
  for (const a of model.agents.values()) {
    counts.set(a.status, (counts.get(a.status) || 0) + 1);
    running += a.tasks.size;
    failedTasks += a.history.filter((h) => h.state === 'failed').length;
  }
  const chip = (label, n, q, cls) => el('button', { type: 'button', class: `chip ${cls || ''}`, 'data-count': n,
    'aria-label': `${n} ${label}: show only these`, onclick: () => setFilter(q) },
  el('strong', { text: String(n) }), ` ${label}`);
  const kids = [chip(model.agents.size === 1 ? 'agent' : 'agents', model.agents.size, '', 'chip--all')];
  for (const s of STATUS_WORDS) if (counts.get(s)) kids.push(chip(s, counts.get(s), `status:${s}`, `chip--${s}`));
  kids.push(el('span', { class: 'summary__sep', 'aria-hidden': 'true', text: '|' }));
  kids.push(chip(running === 1 ? 'running task' : 'running tasks', running, 'running', 'chip--running'));
  kids.push(chip(failedTasks === 1 ? 'failed task' : 'failed tasks', failedTasks, 'failed', 'chip--failed-tasks'));
  $('summary').replaceChildren(...kids);
  $('summary').dataset.agents = model.agents.size;
  $('summary').dataset.running = running;
  $('summary').dataset.failedTasks = failedTasks;
}

let renderQueued = false;
/** Coalesces full renders (30 ms): a burst of events costs one pass over the cards. */
function renderAllSoon() {
  if (renderQueued) return;
  renderQueued = true;
  setTimeout(() => { renderQueued = false; renderAll(); }, 30);
}
function renderAll() {
  for (const a of model.agents.values()) renderAgent(a);
  $('empty').hidden = model.agents.size > 0;
  $('empty').textContent = model.agents.size ? '' : (model.everConnected ? 'No agents are publishing yet.' : 'Waiting for the first snapshot…');
  renderSummary();
  applyFilter();
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

/** kind 'terminal' marks a permanent error: it stays until the page is reloaded. */
function showAlert(title, text, action) {
  $('alert-title').textContent = title;
  $('alert-text').textContent = text;
  const a = $('alert-action');
  if (action) { a.textContent = action.label; a.href = action.href; a.hidden = false; } else a.hidden = true;
  $('alert').hidden = false;
  $('alert').dataset.kind = action?.kind || title;
  $('alert').dataset.error = action?.error || '';
  if (action?.kind === 'terminal') halted();
}
/** A permanent error: nothing will arrive until the user acts, so the page says so. */
function halted() {
  if (!model.haveSnapshot) $('empty').textContent = 'Not connected — see the message above.';
}
function clearAlert() { $('alert').hidden = true; $('alert').dataset.kind = ''; $('alert').dataset.error = ''; }
function signInHref() { const u = new URL(location.href); u.searchParams.delete('token'); return u.toString(); }
function withoutServerFilters() {
  const u = new URL(location.href);
  for (const k of ['agent_ids', 'project_ids', 'event_types']) u.searchParams.delete(k);
  return u.toString();
}

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

// ---- terminal drawer -------------------------------------------------------------------------------
// One terminal at a time, in a drawer fixed to the viewport (always in view). Its deep link is
// #task=ID&agent=ID; closing the drawer clears the hash.

let xtermPromise = null;
function loadXterm() {
  if (FORCE_PLAIN) return Promise.resolve(null);
  if (!xtermPromise) {
    xtermPromise = import('./vendor/xterm.js').then((mod) => {
      document.head.append(el('link', { rel: 'stylesheet', href: './vendor/xterm.css' }));
      return mod.Terminal || null;
    }).catch(() => null);
  }
  return xtermPromise;
}

const terminals = new Map(); // task_id -> panel (at most one)

function wsBase() { return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`; }

function taskHash(agentId, taskId, run) {
  const p = new URLSearchParams();
  p.set('task', taskId);
  if (agentId) p.set('agent', agentId);
  if (run) p.set('run', run);
  return `#${p.toString()}`;
}

/** run (a task's "run") picks one run of a task id the agent started again; without it the live run, else the newest. */
function findTaskInfo(agentId, taskId, run) {
  const agents = agentId ? [model.agents.get(agentId)].filter(Boolean) : [...model.agents.values()];
  for (const a of agents) {
    const t = a.tasks.get(taskId);
    if (t && (!run || !t.run || t.run === run)) return { agent: a, live: true, task: t };
    const h = a.history.find((x) => x.task_id === taskId && (!run || x.run === run));
    if (h) return { agent: a, live: false, task: h };
  }
  return null;
}

async function openTerminal(agentId, taskId, { fromHash = false, run = null } = {}) {
  const existing = terminals.get(taskId);
  if (existing && (!agentId || existing.agentId === agentId) && (existing.run || null) === (run || null)) { existing.closeBtn.focus(); return; }
  for (const id of [...terminals.keys()]) closeTerminal(id, { keepHash: true });
  const hash = taskHash(agentId, taskId, run);
  if (!fromHash && location.hash !== hash) history.replaceState(null, '', hash);
  const info = findTaskInfo(agentId, taskId, run);
  const panel = { taskId, agentId, run, pending: 0, autoPaused: false, raw: [], rawBytes: 0, ended: info ? !info.live : false };
  terminals.set(taskId, panel);
  panel.status = el('span', { class: 'term__status', role: 'status', text: 'connecting…' });
  panel.pauseBtn = el('button', { type: 'button', class: 'btn btn--small', 'aria-pressed': 'false', text: 'Pause',
    hidden: panel.ended, title: 'Stop the live output here (the sidecar keeps it); Resume shows what came meanwhile',
    onclick: () => togglePause(panel) });
  panel.downloadBtn = el('button', { type: 'button', class: 'btn btn--small', text: 'Download raw',
    title: 'The exact bytes received (ANSI sequences included), up to 4 MiB', onclick: () => download(panel) });
  panel.linkBtn = el('a', { class: 'btn btn--small', href: hash, text: 'Link',
    title: 'A link that opens this terminal' });
  panel.closeBtn = el('button', { type: 'button', class: 'btn btn--small', text: 'Close', 'aria-label': `Close terminal of ${taskId}`,
    onclick: () => closeTerminal(taskId) });
  panel.body = el('div', { class: 'term__body' });
  const title = info ? `${info.agent.agent_id} · ${info.task.title || taskId}` : `${agentId || ''}${agentId ? ' · ' : ''}${taskId}`;
  panel.outcome = el('span', { class: 'pill', hidden: true });
  panel.root = el('section', { class: 'term', 'data-task': taskId, 'aria-label': `Terminal of task ${taskId}` },
    el('div', { class: 'term__head' }, el('h3', { class: 'term__title', text: title, title: taskId }), panel.outcome,
      panel.status, panel.pauseBtn, panel.downloadBtn, panel.linkBtn, panel.closeBtn), panel.body);
  $('terminals').replaceChildren(panel.root);
  $('drawer').hidden = false;
  document.body.classList.add('has-drawer');
  panel.closeBtn.focus({ preventScroll: true });

  const Terminal = await loadXterm();
  if (terminals.get(taskId) !== panel) return;
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
  panel.client = new RingsideTerminal({ baseUrl: wsBase(), taskId, agentId: agentId || null, run, token: TOKEN });
  panel.client.on('state', (s) => {
    panel.root.dataset.state = s.reason || s.state;
    if (s.state === STATES.CONNECTED) panel.status.textContent = panel.ended ? 'ended' : (panel.client.paused ? 'paused' : 'live');
    else if (s.reason === 'ended') panel.status.textContent = panel.endText || 'ended';
    else if (s.reason === 'unknown_task') panel.status.textContent = 'no output: the sidecar does not know this task';
    else if (s.reason === 'expired') {
      panel.status.textContent = 'output expired: the sidecar no longer keeps it';
      panel.downloadBtn.hidden = true; // nothing was received: no empty download
    }
    else if (s.reason === 'forbidden') panel.status.textContent = 'access denied: your token does not cover this task';
    else if (s.reason === 'bad_request') panel.status.textContent = 'refused: bad task id';
    else if (s.reason === 'rate_limited') {
      // 429 (--conn-rate: new connections per minute from this address): say so, and when.
      const secs = s.nextRetryAt ? Math.max(1, Math.ceil((s.nextRetryAt - Date.now()) / 1000)) : null;
      panel.status.textContent = `too many connections from this address — retrying${secs ? ` in ${secs} s` : ''}`;
      panel.root.dataset.retryIn = secs ?? '';
    } else panel.status.textContent = s.state === STATES.CONNECTING ? 'connecting…' : 'disconnected — retrying';
    if (['ended', 'unknown_task', 'expired', 'forbidden', 'bad_request'].includes(s.reason)) endLive(panel);
  });
  panel.client.on('header', (h) => {
    resetView(panel);
    if (h.ended) endLive(panel);
    if (h.ended && h.output_bytes > h.scrollback_bytes) {
      writeText(panel, `\x1b[2m[… first ${fmtBytes(h.output_bytes - h.scrollback_bytes)} not kept; the last ${fmtBytes(h.scrollback_bytes)} follow …]\x1b[0m\r\n`);
    }
  });
  panel.client.on('data', (bytes) => { keepRaw(panel, bytes); writeBytes(panel, bytes); });
  panel.client.on('gap', (g) => writeText(panel, `\r\n\x1b[2m[… ${g.bytes ?? g.count ?? 'some'} bytes of output lost …]\x1b[0m\r\n`));
  panel.client.on('task_ended', (e) => {
    panel.endText = `${e.outcome || 'ended'} · exit ${e.exit_code ?? '?'}`;
    panel.status.textContent = panel.endText;
    panel.outcome.hidden = false;
    panel.outcome.className = `pill pill--${e.outcome}`;
    panel.outcome.textContent = e.outcome || 'ended';
    endLive(panel);
  });
  panel.client.on('paused', (p) => {
    panel.pauseBtn.textContent = p ? 'Resume' : 'Pause';
    panel.pauseBtn.setAttribute('aria-pressed', String(p));
    if (panel.client.state === STATES.CONNECTED && !panel.ended) panel.status.textContent = p ? 'paused' : 'live';
  });
}

/** The output is not live any more: pause/resume makes no sense. */
function endLive(panel) {
  panel.ended = true;
  panel.pauseBtn.hidden = true;
}

function togglePause(panel) {
  if (!panel.client || panel.ended) return;
  panel.userPaused = !panel.client.paused;
  if (panel.client.paused) panel.client.resume(); else panel.client.pause();
}

function resetView(panel) {
  if (panel.term) panel.term.reset();
  if (panel.pre) { panel.pre.textContent = ''; panel.preChars = 0; panel.decoder = new TextDecoder(); panel.ansi = ansiState(); }
  panel.raw = [];
  panel.rawBytes = 0;
}

function keepRaw(panel, bytes) {
  panel.raw.push(bytes.slice());
  panel.rawBytes += bytes.length;
  while (panel.rawBytes > RAW_MAX_BYTES && panel.raw.length > 1) panel.rawBytes -= panel.raw.shift().length;
}

function download(panel) {
  const blob = new Blob(panel.raw, { type: 'application/octet-stream' });
  const a = el('a', { href: URL.createObjectURL(blob), download: `${panel.agentId || 'task'}-${panel.taskId}.log` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function writeBytes(panel, bytes) {
  if (panel.term) {
    // Flow control from xterm's write callbacks: ask the server to pause while xterm is far behind.
    panel.pending += bytes.length;
    panel.term.write(bytes, () => {
      panel.pending -= bytes.length;
      if (panel.autoPaused && panel.pending < TERM_LOW_WATER) { panel.autoPaused = false; if (!panel.userPaused) panel.client.resume(); }
    });
    if (!panel.ended && !panel.autoPaused && panel.pending > TERM_HIGH_WATER && !panel.client.paused) { panel.autoPaused = true; panel.client.pause(); }
    return;
  }
  appendPre(panel, panel.decoder.decode(bytes, { stream: true }));
}
function writeText(panel, s) { if (panel.term) panel.term.write(s); else if (panel.pre) appendPre(panel, s); }

/** A bare carriage return: the text after the last newline goes (bounded by the node limit). */
function eraseLine(panel) {
  const pre = panel.pre;
  for (let n = 0; n <= PRE_MAX_NODES && pre.lastChild; n++) {
    const node = pre.lastChild;
    const text = node.textContent;
    const nl = text.lastIndexOf('\n');
    if (nl >= 0) {
      panel.preChars = (panel.preChars || 0) - (text.length - nl - 1);
      node.textContent = text.slice(0, nl + 1);
      return;
    }
    panel.preChars = (panel.preChars || 0) - text.length;
    node.remove();
  }
}

function appendPre(panel, s) {
  // Without xterm.js: colours and styles rendered as spans, other escape sequences removed.
  const pre = panel.pre;
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  const frag = document.createDocumentFragment();
  for (const r of ansiRuns(s, panel.ansi)) {
    if (r.cr) { pre.append(frag); eraseLine(panel); continue; }
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
  // Bounded: the oldest nodes go when the text or the node count is over its limit.
  while ((panel.preChars > PRE_MAX_CHARS || pre.childNodes.length > PRE_MAX_NODES) && pre.firstChild) {
    panel.preChars -= pre.firstChild.textContent.length;
    pre.firstChild.remove();
  }
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function closeTerminal(taskId, { keepHash = false } = {}) {
  const p = terminals.get(taskId);
  if (!p) return;
  terminals.delete(taskId);
  if (p.client) p.client.close();
  if (p.term) p.term.dispose();
  p.root.remove();
  if (!terminals.size) { $('drawer').hidden = true; document.body.classList.remove('has-drawer'); }
  if (!keepHash && location.hash.startsWith('#task=')) history.replaceState(null, '', location.pathname + location.search);
  const btn = document.querySelector(`[data-agent="${CSS.escape(p.agentId || '')}"] [data-task="${CSS.escape(taskId)}"] button`) ||
    document.querySelector(`[data-task="${CSS.escape(taskId)}"] button`);
  if (btn && !keepHash) btn.focus();
}

function openFromHash() {
  if (!location.hash.startsWith('#task=')) return false;
  const h = new URLSearchParams(location.hash.slice(1));
  const taskId = h.get('task');
  if (!taskId) return false;
  openTerminal(h.get('agent') || '', taskId, { fromHash: true, run: h.get('run') });
  return true;
}
window.addEventListener('hashchange', openFromHash);
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && terminals.size && !e.defaultPrevented) closeTerminal([...terminals.keys()][0]);
});

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
  const first = !model.haveSnapshot;
  model.haveSnapshot = true;
  applySnapshot(snap);
  if (first) seedActivity(snap);
});

/** After a page load the Activity list starts with the ended tasks the snapshot carries. */
function seedActivity(snap) {
  const ended = [];
  for (const a of snap.agents || []) for (const h of a.history || []) ended.push({ a, h });
  ended.sort((x, y) => String(x.h.ended_at).localeCompare(String(y.h.ended_at)));
  for (const { a, h } of ended.slice(-MAX_ACTIVITY / 2)) {
    logItem(`${fmtTime(h.ended_at)} ${a.agent_id} ended ${h.title || h.task_id}: ${h.state}${h.exit_code !== undefined ? ' (exit ' + h.exit_code + ')' : ''}`,
      { class: 'past', 'data-type': 'history' });
  }
}
client.on('agent_status', (ev) => {
  logEvent(ev, `status ${ev.old_status || '?'} → ${ev.new_status}${ev.detail ? ': ' + ev.detail : ''}`);
  if (ev.replayed) return;
  const a = agentOf(ev.agent_id, ev.project_id);
  a.status = ev.new_status;
  a.detail = ev.detail || '';
  a.timestamp = ev.timestamp;
  a.alive = true;
  renderAllSoon();
});
client.on('task_started', (ev) => {
  logEvent(ev, `started ${ev.title || ev.task_id}`);
  if (ev.replayed) return;
  const a = agentOf(ev.agent_id, ev.project_id);
  const t = taskOf(a, ev.task_id);
  Object.assign(t, { title: ev.title || ev.task_id, state: 'running', started_at: ev.timestamp, run: ev.run });
  a.timestamp = ev.timestamp;
  renderAllSoon();
});
client.on('task_ended', (ev) => {
  if (ev.replayed) { logEvent(ev, `ended ${ev.task_id}: ${ev.outcome}`); return; }
  const a = agentOf(ev.agent_id, ev.project_id);
  const h = endTask(a, ev);
  a.timestamp = ev.timestamp;
  renderAllSoon();
  logEvent(ev, `ended ${h.title}: ${h.state}${ev.exit_code !== undefined ? ' (exit ' + ev.exit_code + ')' : ''}`);
});
client.on('progress', (ev) => {
  const a = agentOf(ev.agent_id, ev.project_id);
  if (!a.tasks.has(ev.task_id) && a.history.some((h) => h.task_id === ev.task_id)) return; // late, already ended
  const t = taskOf(a, ev.task_id);
  Object.assign(t, { current_step: ev.current_step, total_steps: ev.total_steps, progress_percent: ev.progress_percent,
    eta_seconds: ev.eta_seconds, message: ev.message || '' });
  a.timestamp = ev.timestamp;
  const c = cards.get(a.agent_id);
  if (c && c.tasks.has(t.task_id)) renderTask(a, c, t); else renderAllSoon();
});
client.on('dropped', (m) => note(`${m.count} updates dropped by the server (this connection was too slow)`));
client.on('gap', (m) => note(`Gap in updates (${m.reason}${m.count ? ', ' + m.count : ''}${m.agent_id ? ', agent ' + m.agent_id : ''})`));
client.on('replay_truncated', () => note('The server no longer has the missed events — reloading the full state'));
client.on('error', (m) => showAlert('Server error', m.message || m.error || 'unknown error'));
client.on('auth_expired', () => {
  showAlert('Your session expired — sign in again.', 'Live updates stopped because your access token expired. Open the dashboard with a fresh link or token.',
    { label: 'Sign in again', href: signInHref(), kind: 'terminal', error: 'expired' });
});
client.on('forbidden', () => {
  showAlert('Access denied.', 'Your token does not allow these agents or projects. Ask an administrator for access, or open the dashboard with another token.',
    { label: 'Reload', href: signInHref(), kind: 'terminal', error: 'forbidden' });
});
client.on('bad_request', (e) => {
  // Permanent: the same address would be refused again, so it is not retried.
  const msg = String(e.message || e.error || 'The server refused the request').replace(/[.!]?$/, '.');
  showAlert('Bad filter — not retried.', `${msg} Fix agent_ids / project_ids in the address, or remove them.`,
    { label: 'Remove the filter', href: withoutServerFilters(), kind: 'terminal', error: e.error || 'bad_request' });
});
client.on('handshake_error', (e) => {
  if (e.status === 401 && !/expired/i.test(`${e.error} ${e.message}`)) {
    showAlert('Sign-in required.', e.message || 'The server needs a valid access token: open the dashboard link that includes ?token=…',
      { label: 'Sign in again', href: signInHref(), kind: 'terminal', error: 'unauthorized' });
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
$('filter').value = filterText;
$('filter').addEventListener('input', (e) => setFilter(e.target.value, { fromInput: true }));
$('filter-clear').addEventListener('click', () => {
  if (params.get('agent_ids') || params.get('project_ids')) { location.href = withoutServerFilters().replace(/([?&])q=[^&#]*&?/, '$1'); return; }
  setFilter('');
});
document.addEventListener('keydown', (e) => {
  if (e.key === '/' && document.activeElement?.tagName !== 'INPUT') { e.preventDefault(); $('filter').focus(); }
});

window.ringside = { client, model, terminals, openTerminal, bannerDelayMs: BANNER_DELAY_MS };
applyFilter();
client.connect();
if (!openFromHash() && params.get('terminal')) openTerminal('', params.get('terminal'));
