// ansi.js: the fallback terminal renderer keeps colours and never shows raw escape codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ansiRuns, ansiState, color256 } from '../../sidecar/web/ansi.js';

const text = (runs) => runs.map((r) => r.text).join('');

test('ls --color output: colours kept, escape codes gone', () => {
  const st = ansiState();
  const runs = ansiRuns('\x1b[0m\x1b[01;34mdir\x1b[0m  file\r\n', st);
  assert.equal(text(runs), 'dir  file\n');
  assert.equal(runs[0].text, 'dir');
  assert.equal(runs[0].bold, true);
  assert.equal(runs[0].fg, '#2472c8');
  assert.equal(runs[1].fg, null);
  assert.ok(!text(runs).includes('\x1b'));
});

test('a sequence split across chunks is completed by the next chunk', () => {
  const st = ansiState();
  const a = ansiRuns('ok \x1b[3', st);
  const b = ansiRuns('1mred\x1b[0m\r', st);
  const c = ansiRuns('\nnext', st);
  assert.equal(text(a), 'ok ');
  assert.deepEqual(b.map((r) => [r.text, r.fg]), [['red', '#cd3131']]);
  assert.equal(text(c), '\nnext');
});

test('a bare carriage return overwrites the line (a cr run); CR LF is a newline', () => {
  const st = ansiState();
  const runs = ansiRuns('10%\r50%\r\n', st);
  assert.deepEqual(runs.map((r) => (r.cr ? 'CR' : r.text)), ['10%', 'CR', '50%\n']);
  // split across chunks: the \r waits for the next byte
  const a = ansiRuns('90%\r', st);
  const b = ansiRuns('done\n', st);
  assert.deepEqual([...a, ...b].map((r) => (r.cr ? 'CR' : r.text)), ['90%', 'CR', 'done\n']);
});

test('256 colours, truecolor, cursor movement and OSC titles', () => {
  const st = ansiState();
  const runs = ansiRuns('\x1b]0;title\x07\x1b[2K\x1b[38;5;196mA\x1b[48;2;1;2;3mB\x1b[39;49mC\x1b(B', st);
  assert.equal(text(runs), 'ABC');
  assert.equal(runs[0].fg, color256(196));
  assert.equal(runs[1].bg, '#010203');
  assert.equal(runs[2].fg, null);
  assert.equal(runs[2].bg, null);
});

test('an unterminated sequence longer than the carry limit is dropped, not shown', () => {
  const st = ansiState();
  const runs = ansiRuns('\x1b[' + '1;'.repeat(300), st);
  assert.equal(text(runs), '');
  assert.equal(st.carry, '');
  assert.equal(text(ansiRuns('after', st)), 'after');
});

test('control characters other than newline and tab are removed', () => {
  assert.equal(text(ansiRuns('a\x07b\tc\x08d', ansiState())), 'ab\tcd');
});
