// ansi.js — terminal output to styled text runs, for the dashboard's fallback renderer when the
// xterm.js bundle is absent: colours and bold/dim/italic/underline are kept, every other escape
// sequence (cursor movement, titles, modes) is removed, never shown as raw `ESC[…` text.
//
//   const st = ansiState();
//   for (const run of ansiRuns(chunk, st)) …   // run = { text, fg, bg, bold, dim, italic, underline }
//
// fg/bg are CSS colours or null. A sequence split across chunks is completed by the next call
// (st.carry holds at most ANSI_CARRY_MAX characters; a longer unterminated sequence is dropped).

export const ANSI_CARRY_MAX = 256;

const BASE = ['#000000', '#cd3131', '#0dbc79', '#e5e510', '#2472c8', '#bc3fbc', '#11a8cd', '#e5e5e5'];
const BRIGHT = ['#666666', '#f14c4c', '#23d18b', '#f5f543', '#3b8eea', '#d670d6', '#29b8db', '#ffffff'];

export function ansiState() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false, carry: '' };
}

/** The CSS colour of xterm-256 palette index n (0–255), or null when out of range. */
export function color256(n) {
  if (!Number.isInteger(n) || n < 0 || n > 255) return null;
  if (n < 8) return BASE[n];
  if (n < 16) return BRIGHT[n - 8];
  if (n < 232) {
    const v = n - 16;
    const c = (x) => (x === 0 ? 0 : 55 + x * 40);
    return rgb(c(Math.floor(v / 36)), c(Math.floor(v / 6) % 6), c(v % 6));
  }
  const g = 8 + (n - 232) * 10;
  return rgb(g, g, g);
}
function rgb(r, g, b) {
  const h = (x) => Math.max(0, Math.min(255, x | 0)).toString(16).padStart(2, '0');
  return `#${h(r)}${h(g)}${h(b)}`;
}

function applySgr(st, params) {
  const p = params.length ? params : [0];
  for (let i = 0; i < p.length; i++) {
    const n = p[i];
    if (n === 0) Object.assign(st, { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false });
    else if (n === 1) st.bold = true;
    else if (n === 2) st.dim = true;
    else if (n === 3) st.italic = true;
    else if (n === 4) st.underline = true;
    else if (n === 7) st.inverse = true;
    else if (n === 22) { st.bold = false; st.dim = false; }
    else if (n === 23) st.italic = false;
    else if (n === 24) st.underline = false;
    else if (n === 27) st.inverse = false;
    else if (n >= 30 && n <= 37) st.fg = BASE[n - 30];
    else if (n === 39) st.fg = null;
    else if (n >= 40 && n <= 47) st.bg = BASE[n - 40];
    else if (n === 49) st.bg = null;
    else if (n >= 90 && n <= 97) st.fg = BRIGHT[n - 90];
    else if (n >= 100 && n <= 107) st.bg = BRIGHT[n - 100];
    else if (n === 38 || n === 48) {
      let c = null;
      if (p[i + 1] === 5) { c = color256(p[i + 2]); i += 2; }
      else if (p[i + 1] === 2) { c = rgb(p[i + 2] || 0, p[i + 3] || 0, p[i + 4] || 0); i += 4; }
      if (n === 38) st.fg = c; else st.bg = c;
    }
  }
}

function snapshot(st, text) {
  const fg = st.inverse ? (st.bg || '#000000') : st.fg;
  const bg = st.inverse ? (st.fg || '#e5e5e5') : st.bg;
  return { text, fg, bg, bold: st.bold, dim: st.dim, italic: st.italic, underline: st.underline };
}

/**
 * Splits text (already decoded from UTF-8) into styled runs, updating st.  Carriage returns
 * before a newline are dropped; a bare carriage return is a run {text:'', cr:true}: the renderer
 * erases the current line (a progress bar redrawn in place); other control characters except \n
 * and \t are removed.
 */
export function ansiRuns(text, st) {
  let s = st.carry + text;
  st.carry = '';
  const runs = [];
  let plain = '';
  const flush = () => { if (plain) { runs.push(snapshot(st, plain)); plain = ''; } };
  let i = 0;
  while (i < s.length) {
    const ch = s.charCodeAt(i);
    if (ch === 0x1b) {
      const rest = s.length - i;
      if (rest < 2) { st.carry = s.slice(i); break; }
      const kind = s[i + 1];
      if (kind === '[') {
        let j = i + 2;
        while (j < s.length && (s.charCodeAt(j) < 0x40 || s.charCodeAt(j) > 0x7e)) j++;
        if (j >= s.length) { if (rest <= ANSI_CARRY_MAX) st.carry = s.slice(i); break; }
        if (s[j] === 'm') {
          flush();
          const body = s.slice(i + 2, j);
          applySgr(st, body === '' ? [] : body.split(/[;:]/).map((x) => (x === '' ? 0 : Number.parseInt(x, 10) || 0)));
        }
        i = j + 1;
        continue;
      }
      if (kind === ']' || kind === 'P' || kind === '_' || kind === '^') {
        // OSC / DCS / APC / PM: up to BEL or ST (ESC \).
        let j = i + 2;
        while (j < s.length && s.charCodeAt(j) !== 0x07 && !(s.charCodeAt(j) === 0x1b && s[j + 1] === '\\')) j++;
        if (j >= s.length) { if (rest <= ANSI_CARRY_MAX) st.carry = s.slice(i); break; }
        i = s.charCodeAt(j) === 0x07 ? j + 1 : j + 2;
        continue;
      }
      if (kind === '(' || kind === ')' || kind === '#') { i += 3; continue; } // charset selection
      i += 2; // two-character escapes (ESC =, ESC >, ESC 7, …)
      continue;
    }
    if (ch === 0x0d) {
      if (i + 1 === s.length) { st.carry = '\r'; break; } // a \r\n split across chunks
      if (s.charCodeAt(i + 1) !== 0x0a) { flush(); runs.push({ text: '', cr: true }); } // overwrite the line
      i++;
      continue;
    }
    if ((ch < 0x20 && ch !== 0x0a && ch !== 0x09) || ch === 0x7f) { i++; continue; }
    plain += s[i];
    i++;
  }
  flush();
  return runs;
}
