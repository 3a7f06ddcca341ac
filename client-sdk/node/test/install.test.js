'use strict';
// `npm install --install-links /path/to/client-sdk/node` from a fresh checkout, as docs/sdk.md
// says: npm copies the package, installs koffi with it, and the `prepare` script bundles the
// checkout's libringside in native/, so the installed package works without RINGSIDE_LIB even
// after the checkout is gone.  A plain `npm install <dir>` (a symlink, no dependencies) fails
// with an error that names the flag.  npm uses its cache first (koffi is there after the
// npm_bindings_deps fixture).
const assert = require('node:assert/strict');
const { test } = require('node:test');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const s = require('./support.js');

const NPM_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];

function checkout(dir) {
  // A fresh checkout: the package's files without node_modules/ or native/, and build/lib.
  const pkg = path.join(dir, 'co', 'client-sdk', 'node');
  fs.mkdirSync(path.join(pkg, 'scripts'), { recursive: true });
  for (const f of ['package.json', 'package-lock.json', 'index.js', 'index.d.ts', 'lib.js',
    'scripts/bundle-lib.js']) {
    fs.copyFileSync(path.join(__dirname, '..', f), path.join(pkg, f));
  }
  const lib = path.join(dir, 'co', 'build', 'lib');
  fs.mkdirSync(lib, { recursive: true });
  fs.copyFileSync(fs.realpathSync(path.join(s.LIB, 'libringside.so.0')),
    path.join(lib, 'libringside.so.0'));
  return pkg;
}

function app(dir, name) {
  const d = path.join(dir, name);
  fs.mkdirSync(d);
  fs.writeFileSync(path.join(d, 'package.json'), JSON.stringify({ name, version: '1.0.0' }));
  return d;
}

const env = { ...process.env };
delete env.RINGSIDE_LIB;

const USE = 'const r = require("ringside"); const a = new r.Agent({ agentId: "inst", ' +
  'projectId: "p", shmDir: process.argv[1] }); a.status("working", "installed"); a.close(); ' +
  'console.log(r.libraryPath());';

test('npm install --install-links from a checkout works without RINGSIDE_LIB', () => {
  const t = s.tmpdir();
  try {
    const pkg = checkout(t.dir);
    const dir = app(t.dir, 'app');
    execFileSync('npm', ['install', '--install-links', ...NPM_FLAGS, pkg],
      { cwd: dir, env, timeout: 240000, stdio: ['ignore', 'pipe', 'pipe'] });
    fs.rmSync(path.join(t.dir, 'co'), { recursive: true });  // the checkout is gone
    const out = execFileSync(process.execPath, ['-e', USE, t.shm], { cwd: dir, env, timeout: 20000 });
    assert.equal(out.toString().trim(),
      path.join(fs.realpathSync(dir), 'node_modules', 'ringside', 'native', 'libringside.so.0'));
    assert.equal(s.of(s.dump(t.shm), 'status', { detail: 'installed' }).length, 1);
  } finally {
    t.cleanup();
  }
});

test('a plain npm install <dir> (a link, no koffi) fails naming --install-links', () => {
  const t = s.tmpdir();
  try {
    const pkg = checkout(t.dir);
    const dir = app(t.dir, 'app');
    execFileSync('npm', ['install', ...NPM_FLAGS, pkg],
      { cwd: dir, env, timeout: 240000, stdio: ['ignore', 'pipe', 'pipe'] });
    const p = spawnSync(process.execPath, ['-e', USE, t.shm], { cwd: dir, env, timeout: 20000 });
    assert.notEqual(p.status, 0);
    assert.match(p.stderr.toString(), /--install-links/);
  } finally {
    t.cleanup();
  }
});
