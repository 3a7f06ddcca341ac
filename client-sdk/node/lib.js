'use strict';
// Locating and loading libringside with koffi, and declaring its C prototypes.
//
// Search order (the first that loads wins):
//   1. $RINGSIDE_LIB: the library file itself, or the directory that holds it;
//   2. the source tree's build/lib (the package used in, or linked from, a Ringside checkout);
//   3. native/libringside.so.0 inside this package (copied there by the `prepare` script,
//      scripts/bundle-lib.js, when npm packs or copies the package: `--install-links`);
//   4. lib/ under node's prefix, /usr/local/lib;
//   5. the dynamic loader's own search by soname (LD_LIBRARY_PATH, ld.so.cache).
const fs = require('node:fs');
const path = require('node:path');
let koffi;
try {
  koffi = require('koffi');
} catch (e) {
  throw new Error('ringside: cannot load koffi (' + e.message + '); it is installed with the ' +
                  'package by `npm install --install-links /path/to/client-sdk/node` (a plain ' +
                  '`npm install <dir>` only links the directory and installs none of its ' +
                  'dependencies)');
}

const SONAME = 'libringside.so.0';

function candidates() {
  const out = [];
  const env = process.env.RINGSIDE_LIB;
  if (env) {
    let isDir = false;
    try { isDir = fs.statSync(env).isDirectory(); } catch { /* a missing path is tried as is */ }
    out.push(isDir ? path.join(env, SONAME) : env);
  }
  out.push(path.join(__dirname, '..', '..', 'build', 'lib', SONAME));
  out.push(path.join(__dirname, 'native', SONAME));
  const prefix = path.dirname(path.dirname(process.execPath));
  for (const dir of new Set([path.join(prefix, 'lib'), '/usr/local/lib'])) {
    out.push(path.join(dir, SONAME));
  }
  out.push(SONAME);
  return out;
}

let loaded = null;

function declare(lib, file) {
  koffi.opaque('rs_agent');
  const RsOptions = koffi.struct('rs_options', {
    size: 'size_t',
    shm_dir: 'const char *',
    agent_id: 'const char *',
    project_id: 'const char *',
    owner: 'const char *',
    term_ring_bytes: 'uint32_t',
    max_tasks: 'uint32_t',
    term_rings: 'uint32_t',
    log_slots: 'uint32_t',
  });
  const RsStats = koffi.struct('rs_stats', {
    size: 'size_t',
    events_published: 'uint64_t',
    events_dropped: 'uint64_t',
    progress_updates: 'uint64_t',
    term_bytes_written: 'uint64_t',
    term_bytes_dropped: 'uint64_t',
    wakeups: 'uint64_t',
  });
  return {
    path: file,
    statsSize: koffi.sizeof(RsStats),
    RsOptions,
    RsStats,
    rs_options_init: lib.func('void rs_options_init(_Out_ rs_options *opts)'),
    rs_open: lib.func('int rs_open(const rs_options *opts, _Out_ rs_agent **out)'),
    rs_set_status: lib.func('int rs_set_status(rs_agent *agent, int status, const char *detail)'),
    rs_task_start: lib.func('int rs_task_start(rs_agent *agent, const char *task, const char *title)'),
    rs_progress: lib.func('int rs_progress(rs_agent *agent, const char *task, uint32_t step, ' +
                          'uint32_t total, const char *message)'),
    rs_write: lib.func('int rs_write(rs_agent *agent, const char *task, int stream, ' +
                       'const void *buf, size_t len)'),
    rs_task_end: lib.func('int rs_task_end(rs_agent *agent, const char *task, int outcome, ' +
                          'int exit_code)'),
    rs_stats_get: lib.func('int rs_stats_get(rs_agent *agent, _Inout_ rs_stats *stats)'),
    rs_close: lib.func('int rs_close(rs_agent *agent)'),
    rs_strerror: lib.func('const char *rs_strerror(int err)'),
    rs_version: lib.func('const char *rs_version(void)'),
  };
}

/** Returns the loaded library (once per process); throws naming every path tried. */
function load() {
  if (loaded) return loaded;
  const errors = [];
  for (const file of candidates()) {
    if (file.includes('/') && !fs.existsSync(file)) continue;
    let lib;
    try {
      lib = koffi.load(file);
    } catch (e) {
      errors.push(`${file}: ${e.message}`);
      continue;
    }
    loaded = declare(lib, file);
    return loaded;
  }
  throw new Error(`libringside not found (tried: ${candidates().join(', ')}); set RINGSIDE_LIB ` +
                  'to the library file or its directory' +
                  (errors.length ? `; ${errors.join('; ')}` : ''));
}

module.exports = { load, candidates, SONAME };
