'use strict';
// npm `prepare` script: copies the libringside this package is installed with into native/, so
// a copy of the package (`npm install --install-links /path/to/client-sdk/node`, `npm pack`)
// finds it without LD_LIBRARY_PATH.  Source, first found: $RINGSIDE_LIB (the file or its
// directory), the checkout's build/lib, `pkg-config --variable=libdir ringside`.  When none is
// found it says so and leaves native/ empty: lib.js then searches at run time (see its header).
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const SONAME = 'libringside.so.0';
const root = path.join(__dirname, '..');

function sources() {
  const out = [];
  const env = process.env.RINGSIDE_LIB;
  if (env) {
    let isDir = false;
    try { isDir = fs.statSync(env).isDirectory(); } catch { /* tried as is */ }
    out.push(isDir ? path.join(env, SONAME) : env);
  }
  out.push(path.join(root, '..', '..', 'build', 'lib', SONAME));
  try {
    const dir = execFileSync('pkg-config', ['--variable=libdir', 'ringside'],
      { stdio: ['ignore', 'pipe', 'ignore'], timeout: 10000 }).toString().trim();
    if (dir) out.push(path.join(dir, SONAME));
  } catch { /* no pkg-config, or ringside.pc not installed */ }
  return out;
}

const from = sources().find((f) => fs.existsSync(f));
if (from === undefined) {
  console.error(`ringside: no libringside to bundle (looked in: ${sources().join(', ')}); ` +
                'the package will search for it at run time (RINGSIDE_LIB, ld.so cache)');
} else {
  fs.mkdirSync(path.join(root, 'native'), { recursive: true });
  const to = path.join(root, 'native', SONAME);
  fs.copyFileSync(fs.realpathSync(from), to);
  console.error(`ringside: bundled ${from} as ${path.relative(root, to)}`);
}
