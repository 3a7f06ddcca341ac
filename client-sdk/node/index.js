'use strict';
// ringside — publish an agent's status, tasks, progress and terminal output to the Ringside
// sidecar of its pod, over libringside (koffi).  Types: index.d.ts.  Guide: docs/sdk.md ("Node").
//
// Never-fail default: unless `strict: true`, nothing throws because the sidecar is missing (no ring
// directory: the agent runs unobserved, one process warning is emitted) or slow (RS_EFULL: the
// event is dropped and counted, the latest status/progress kept).  Calls then return false.
// Mistakes of the caller (a bad id, an unknown status, progress of an ended task) always throw.
const { spawn } = require('node:child_process');
const { constants: { signals } } = require('node:os');
const native = require('./lib.js');

const RS_OK = 0, RS_EINVAL = -1, RS_ENOMEM = -2, RS_ESHM = -3, RS_EFULL = -4, RS_ECLOSED = -5;
const RS_ETASKS = -6, RS_ENOTASK = -7, RS_ESYS = -9;
const RS_TERM_RINGS_NONE = 0xffffffff;
const WRITE_CHUNK = 65536;
const RUNTIME = new Set([RS_ESHM, RS_EFULL, RS_ECLOSED, RS_ESYS, RS_ENOMEM, RS_ETASKS]);
const ID = /^[A-Za-z0-9._:@-]{1,63}$/;

const STATUS = Object.freeze({ idle: 0, working: 1, stuck: 2, failed: 3, completed: 4, cancelled: 5 });
const OUTCOMES = new Set(['completed', 'failed', 'cancelled']);
const STREAM = Object.freeze({ stdout: 1, stderr: 2 });

class RingsideError extends Error {
  constructor(message, code) {
    super(message);
    this.name = this.constructor.name;
    this.code = code;
  }
}
class InvalidArgument extends RingsideError {}
class OutOfMemory extends RingsideError {}
class ShmUnavailable extends RingsideError {}
class RingFull extends RingsideError {}
class Closed extends RingsideError {}
class TooManyTasks extends RingsideError {}
class NoSuchTask extends RingsideError {}
class TaskExists extends RingsideError {}
class SystemCallFailed extends RingsideError {}
/** task.run()'s command outlived options.timeout: its process group was killed. */
class TimeoutExpired extends Error {
  constructor(message, timeout) {
    super(message);
    this.name = 'TimeoutExpired';
    this.code = 'ETIMEDOUT';
    this.timeout = timeout;
  }
}

const ERRORS = {
  [-1]: InvalidArgument, [-2]: OutOfMemory, [-3]: ShmUnavailable, [-4]: RingFull, [-5]: Closed,
  [-6]: TooManyTasks, [-7]: NoSuchTask, [-8]: TaskExists, [-9]: SystemCallFailed,
};

function strerror(code) {
  return native.load().rs_strerror(code);
}

function version() {
  return native.load().rs_version();
}

function errorFor(code, what) {
  const Cls = ERRORS[code] || RingsideError;
  return new Cls(`${what}: ${strerror(code)}`, code);
}

function checkId(what, value, optional) {
  if (optional && (value === undefined || value === null)) return null;
  if (typeof value !== 'string' || !ID.test(value)) {
    throw new InvalidArgument(`${what} ${JSON.stringify(value)} is invalid: use 1-63 characters ` +
                              'from [A-Za-z0-9._:@-]', RS_EINVAL);
  }
  return value;
}

// Every value handed to koffi is checked here first: a number where the C side wants a
// `const char *` is taken as an address (a crash), a BigInt or NaN does not fit an int.
function text(what, s) {
  if (s === undefined || s === null) return null;
  if (typeof s !== 'string') {
    throw new TypeError(`${what} must be a string, not ${typeof s}`);
  }
  if (s.includes('\0')) throw new InvalidArgument(`${what} contains a NUL character`, RS_EINVAL);
  return s;
}

function uint32(what, v) {
  if (v === undefined || v === null) return 0;
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new InvalidArgument(`${what} ${String(v)}: use an integer from 0 to 4294967295`,
                              RS_EINVAL);
  }
  return v;
}

function int32(what, v) {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
    throw new InvalidArgument(`${what} ${String(v)}: use a 32-bit integer`, RS_EINVAL);
  }
  return v;
}

function own(table, key) {
  return typeof key === 'string' && Object.hasOwn(table, key) ? table[key] : undefined;
}

/** (outcome, exit code) of a child's exit: 128+N for signal N; SIGINT/SIGTERM cancel. */
function outcomeOf(exitCode, signal) {
  if (signal) {
    const n = signals[signal] || 0;
    return [signal === 'SIGINT' || signal === 'SIGTERM' ? 'cancelled' : 'failed', 128 + n];
  }
  return exitCode === 0 ? ['completed', 0] : ['failed', exitCode];
}

// Agents still open at process exit are closed cleanly (an unclosed ring reads as a crash).
const open = new Set();
function trackOpen(agent) {
  if (open.size === 0 && !trackOpen.hooked) {
    trackOpen.hooked = true;
    // Tasks still open are ended failed with the exit code (1 when the process exits with 0).
    process.on('exit', (code) => { for (const a of [...open]) a._close(code || 1); });
  }
  open.add(agent);
}

class Agent {
  /**
   * Opens the agent's ring.  options: agentId, projectId (required), owner, shmDir (default
   * $RINGSIDE_SHM_DIR, else /dev/shm/ringside), strict, terminal (false: no terminal rings),
   * maxTasks, termRings, termRingBytes, logSlots (0: the SDK's defaults).
   */
  constructor(options) {
    const o = options || {};
    this.agentId = checkId('agent id', o.agentId);
    this.projectId = checkId('project id', o.projectId);
    const owner = checkId('owner', o.owner, true);
    this.strict = Boolean(o.strict);
    this._h = null;
    const lib = this._lib = native.load();
    const opts = {};
    lib.rs_options_init(opts);
    opts.agent_id = this.agentId;
    opts.project_id = this.projectId;
    opts.owner = owner;
    opts.shm_dir = text('shmDir', o.shmDir);
    opts.max_tasks = uint32('maxTasks', o.maxTasks);
    opts.term_ring_bytes = uint32('termRingBytes', o.termRingBytes);
    opts.log_slots = uint32('logSlots', o.logSlots);
    opts.term_rings = o.terminal === false ? RS_TERM_RINGS_NONE : uint32('termRings', o.termRings);
    this._tasks = new Set(); // ids of the tasks started and not ended
    const out = [null];
    const rc = lib.rs_open(opts, out);
    if (rc === RS_OK) {
      this._h = out[0];
      trackOpen(this);
    } else if (RUNTIME.has(rc) && !this.strict) {
      process.emitWarning(`ringside: agent ${this.agentId} runs unobserved: cannot open a ring ` +
                          `in ${o.shmDir || 'the default shm dir'}: ${strerror(rc)}`,
                          { code: 'RINGSIDE_UNOBSERVED' });
    } else {
      throw errorFor(rc, `opening agent ${this.agentId}`);
    }
  }

  /** True while a ring is open (false: no sidecar directory, or closed). */
  get connected() {
    return this._h !== null;
  }

  _fail(rc, what) {
    if (RUNTIME.has(rc) && !this.strict) return false;
    throw errorFor(rc, what);
  }

  _absent(what) {
    if (this.strict) throw new Closed(`${what}: agent ${this.agentId} is closed`, RS_ECLOSED);
    return false;
  }

  /** Sets the agent's status (idle, working, stuck, failed, completed, cancelled). */
  status(status, detail) {
    const code = own(STATUS, status);
    if (code === undefined) {
      throw new InvalidArgument(`unknown status ${JSON.stringify(status)}: use ` +
                                Object.keys(STATUS).join(', '), RS_EINVAL);
    }
    const d = text('detail', detail);
    const h = this._h;
    if (h === null) return this._absent('status');
    const rc = this._lib.rs_set_status(h, code, d);
    return rc === RS_OK ? true : this._fail(rc, 'status');
  }

  /** Starts a task and returns it. */
  task(taskId, title) {
    return new Task(this, taskId, title);
  }

  /**
   * Starts a task, awaits fn(task), and ends the task: completed when fn resolves, failed when it
   * throws (cancelled for an AbortError), unless fn ended it itself.  Returns fn's result.
   */
  async withTask(taskId, title, fn) {
    const t = this.task(taskId, title);
    let result;
    try {
      result = await fn(t);
    } catch (e) {
      if (!t.ended) {
        try { t.write(`\r\n${e && e.name}: ${e && e.message}\r\n`, 'stderr'); } catch { /* ignore */ }
        const aborted = e && e.name === 'AbortError';
        t.end(aborted ? 'cancelled' : 'failed', aborted ? 0 : 1);
      }
      throw e;
    }
    if (!t.ended) {
      const [outcome, code] = t.lastExit ? outcomeOf(t.lastExit.exitCode, t.lastExit.signal)
        : ['completed', 0];
      t.end(outcome, code);
    }
    return result;
  }

  /**
   * Runs command (with args) as task taskId, streaming its stdout and stderr to the task's
   * terminal, and ends the task with the command's outcome.  See Task.run for options; also
   * title (default: the command line).
   */
  async run(taskId, command, args = [], options = {}) {
    const title = options.title !== undefined ? options.title
      : [command, ...args].join(' ').slice(0, 255);
    return this.withTask(taskId, title, (t) => t.run(command, args, options));
  }

  /** The handle's counters, or {} when no ring is open. */
  stats() {
    if (this._h === null) return {};
    const st = { size: this._lib.statsSize };
    const rc = this._lib.rs_stats_get(this._h, st);
    if (rc !== RS_OK) return this._fail(rc, 'stats') || {};
    delete st.size;
    for (const k of Object.keys(st)) st[k] = Number(st[k]);
    return st;
  }

  /** Ends the tasks still open as failed (exit 1), marks the ring as ended cleanly and
   *  releases it.  Idempotent. */
  close() {
    this._close(1);
  }

  _close(exitCode) {
    if (this._h !== null) {
      for (const id of this._tasks) this._lib.rs_task_end(this._h, id, STATUS.failed, exitCode);
      this._tasks.clear();
      this._lib.rs_close(this._h);
      this._h = null;
      open.delete(this);
    }
  }
}
if (typeof Symbol.dispose === 'symbol') {
  Agent.prototype[Symbol.dispose] = Agent.prototype.close;
}

class Task {
  constructor(agent, taskId, title) {
    this.agent = agent;
    this.taskId = checkId('task id', taskId);
    this.ended = false;
    this.live = false;
    this.lastExit = null;
    this.startDropped = false;
    const h = agent._h;
    if (h === null) {
      agent._absent('task start');
      return;
    }
    const rc = agent._lib.rs_task_start(h, taskId, text('title', title));
    if (rc === RS_OK || rc === RS_EFULL) {
      this.live = true;
      agent._tasks.add(taskId);
      if (rc === RS_EFULL && agent.strict) {
        // The task exists: throwing would lose its handle (and a retry gets TaskExists).
        this.startDropped = true;
        process.emitWarning(`ringside: task ${taskId} started, but its start event was dropped: ` +
                            strerror(rc), { code: 'RINGSIDE_EVENT_DROPPED' });
      }
    } else {
      agent._fail(rc, `task start ${taskId}`);
    }
  }

  _handle(what) {
    if (this.ended) throw new NoSuchTask(`${what} of task ${this.taskId}: already ended`, RS_ENOTASK);
    const h = this.agent._h;
    if (h === null || !this.live) {
      this.agent._absent(what);
      return null;
    }
    return h;
  }

  /** Reports progress (only the latest value is kept; total 0 = unknown). */
  progress(step, total = 0, message) {
    if (this.ended) this._handle('progress');
    const msg = text('message', message);
    if (!Number.isInteger(step) || !Number.isInteger(total) || step < 0 || total < 0 ||
        step > 0xffffffff || total > 0xffffffff) {
      throw new InvalidArgument(`progress ${step}/${total}: steps are 32-bit unsigned integers`,
                                RS_EINVAL);
    }
    const h = this._handle('progress');
    if (h === null) return false;
    const rc = this.agent._lib.rs_progress(h, this.taskId, step, total, msg);
    return rc === RS_OK ? true : this.agent._fail(rc, `progress of ${this.taskId}`);
  }

  /** Appends terminal output (Buffer/Uint8Array as is; strings as UTF-8) to stdout or stderr. */
  write(data, stream = 'stdout') {
    const s = own(STREAM, stream);
    if (s === undefined) {
      throw new InvalidArgument(`unknown stream ${JSON.stringify(stream)}: use stdout or stderr`,
                                RS_EINVAL);
    }
    if (typeof data !== 'string' && !ArrayBuffer.isView(data)) {
      throw new TypeError(`write() takes a string, Buffer or typed array, not ${typeof data}`);
    }
    const h = this._handle('write');
    if (h === null) return false;
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8')
      : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const w = this.agent._lib.rs_write;
    for (let off = 0; off < buf.length || off === 0; off += WRITE_CHUNK) {
      const piece = buf.length <= WRITE_CHUNK ? buf : buf.subarray(off, off + WRITE_CHUNK);
      const rc = w(h, this.taskId, s, piece, piece.length);
      if (rc !== RS_OK) return this.agent._fail(rc, `write to ${this.taskId}`);
      if (buf.length <= WRITE_CHUNK) break;
    }
    return true;
  }

  /** Ends the task: outcome completed, failed or cancelled, and the exit status of what it ran. */
  end(outcome = 'completed', exitCode = 0) {
    if (typeof outcome !== 'string' || !OUTCOMES.has(outcome)) {
      throw new InvalidArgument(`outcome ${JSON.stringify(outcome)}: use completed, failed or ` +
                                'cancelled', RS_EINVAL);
    }
    const code = int32('exit code', exitCode);
    const h = this._handle('end');
    this.ended = true;
    this.agent._tasks.delete(this.taskId);
    if (h === null) return false;
    const rc = this.agent._lib.rs_task_end(h, this.taskId, STATUS[outcome], code);
    return rc === RS_OK ? true : this.agent._fail(rc, `end of ${this.taskId}`);
  }

  /**
   * Runs command with args, copying its stdout and stderr (pipes: Node has no pty) to this task's
   * terminal as they arrive.  options: cwd, env, stdin ('ignore' default, 'inherit', 'pipe'),
   * timeout (ms), killSignal (default SIGTERM), killGrace (ms before SIGKILL, default 2000),
   * signal (AbortSignal), capture (also return the bytes).  The command runs in its own process
   * group; on timeout or abort the whole group gets killSignal, then SIGKILL after killGrace.
   * Resolves to { exitCode, signal, stdout?, stderr? }; rejects if the command cannot start, and
   * with TimeoutExpired once a timed-out group is gone (not waiting for leftover pipe holders).
   */
  run(command, args = [], options = {}) {
    return new Promise((resolve, reject) => {
      const timeout = options.timeout === undefined ? 0 : uint32('timeout', options.timeout);
      const grace = options.killGrace === undefined ? 2000 : uint32('killGrace', options.killGrace);
      const killSignal = options.killSignal || 'SIGTERM';
      if (options.signal && options.signal.aborted) {
        const e = new Error('The operation was aborted');
        e.name = 'AbortError';
        reject(e);
        return;
      }
      const child = spawn(command, args, {
        cwd: options.cwd, env: options.env, detached: true,
        stdio: [options.stdin || 'ignore', 'pipe', 'pipe'],
      });
      const out = [], err = [];
      let failure = null; // a strict agent's error while copying: the child is killed, we reject
      let timedOut = false, graceTimer = null, timer = null, exited = false;
      const killGroup = (sig) => {
        try {
          process.kill(-child.pid, sig);
        } catch {
          try { child.kill(sig); } catch { /* already gone */ }
        }
      };
      const stop = (sig) => {
        if (graceTimer !== null || child.pid === undefined) return;
        killGroup(sig);
        graceTimer = setTimeout(() => killGroup('SIGKILL'), grace);
      };
      const onAbort = () => stop(killSignal);
      if (timeout > 0) {
        timer = setTimeout(() => {
          timedOut = true;
          stop(killSignal);
          if (exited) dropPipes(); // the command is gone; only leftover holders remain
        }, timeout);
      }
      if (options.signal) options.signal.addEventListener('abort', onAbort, { once: true });
      const dropPipes = () => {
        child.stdout.destroy();
        child.stderr.destroy();
      };
      const copy = (stream, keep) => (b) => {
        try {
          this.write(b, stream);
        } catch (e) {
          if (failure === null) {
            failure = e;
            killGroup('SIGKILL');
          }
        }
        if (options.capture) keep.push(b);
      };
      child.stdout.on('data', copy('stdout', out));
      child.stderr.on('data', copy('stderr', err));
      child.on('error', (e) => {
        if (timer !== null) clearTimeout(timer);
        if (options.signal) options.signal.removeEventListener('abort', onAbort);
        reject(e);
      });
      child.on('exit', () => {
        exited = true;
        if (timedOut) dropPipes();
      });
      child.on('close', (exitCode, signal) => {
        if (timer !== null) clearTimeout(timer);
        if (graceTimer !== null) clearTimeout(graceTimer);
        if (options.signal) options.signal.removeEventListener('abort', onAbort);
        if (failure !== null) {
          reject(failure);
          return;
        }
        const r = { exitCode, signal };
        if (options.capture) {
          r.stdout = Buffer.concat(out);
          r.stderr = Buffer.concat(err);
        }
        this.lastExit = r;
        if (timedOut) {
          const e = new TimeoutExpired(`${command} timed out after ${timeout} ms`, timeout);
          e.result = r;
          reject(e);
          return;
        }
        resolve(r);
      });
    });
  }
}

module.exports = {
  Agent, Task, STATUS, strerror, version, outcomeOf,
  RingsideError, InvalidArgument, OutOfMemory, ShmUnavailable, RingFull, Closed, TooManyTasks,
  NoSuchTask, TaskExists, SystemCallFailed, TimeoutExpired, ERRORS,
  libraryPath: () => native.load().path,
};
