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

function text(s) {
  return s === undefined || s === null ? null : String(s);
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
    process.on('exit', () => { for (const a of [...open]) a.close(); });
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
    opts.shm_dir = o.shmDir === undefined ? null : o.shmDir;
    opts.max_tasks = o.maxTasks || 0;
    opts.term_ring_bytes = o.termRingBytes || 0;
    opts.log_slots = o.logSlots || 0;
    opts.term_rings = o.terminal === false ? RS_TERM_RINGS_NONE : (o.termRings || 0);
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
    const code = STATUS[status];
    if (code === undefined) {
      throw new InvalidArgument(`unknown status ${JSON.stringify(status)}: use ` +
                                Object.keys(STATUS).join(', '), RS_EINVAL);
    }
    const h = this._h;
    if (h === null) return this._absent('status');
    const rc = this._lib.rs_set_status(h, code, detail === undefined ? null : detail);
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

  /** Marks the ring as ended cleanly and releases it.  Idempotent. */
  close() {
    if (this._h !== null) {
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
    const h = agent._h;
    if (h === null) {
      agent._absent('task start');
      return;
    }
    const rc = agent._lib.rs_task_start(h, taskId, text(title));
    if (rc === RS_OK || rc === RS_EFULL) {
      this.live = true;
      if (rc === RS_EFULL && agent.strict) agent._fail(rc, 'task start');
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
    const h = this._handle('progress');
    if (h === null) return false;
    if (!Number.isInteger(step) || !Number.isInteger(total) || step < 0 || total < 0 ||
        step > 0xffffffff || total > 0xffffffff) {
      throw new InvalidArgument(`progress ${step}/${total}: steps are 32-bit unsigned integers`,
                                RS_EINVAL);
    }
    const rc = this.agent._lib.rs_progress(h, this.taskId, step, total, text(message));
    return rc === RS_OK ? true : this.agent._fail(rc, `progress of ${this.taskId}`);
  }

  /** Appends terminal output (Buffer/Uint8Array as is; strings as UTF-8) to stdout or stderr. */
  write(data, stream = 'stdout') {
    const s = STREAM[stream];
    if (s === undefined) {
      throw new InvalidArgument(`unknown stream ${JSON.stringify(stream)}: use stdout or stderr`,
                                RS_EINVAL);
    }
    const h = this._handle('write');
    if (h === null) return false;
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
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
    if (!OUTCOMES.has(outcome)) {
      throw new InvalidArgument(`outcome ${JSON.stringify(outcome)}: use completed, failed or ` +
                                'cancelled', RS_EINVAL);
    }
    const h = this._handle('end');
    this.ended = true;
    if (h === null) return false;
    const rc = this.agent._lib.rs_task_end(h, this.taskId, STATUS[outcome], exitCode | 0);
    return rc === RS_OK ? true : this.agent._fail(rc, `end of ${this.taskId}`);
  }

  /**
   * Runs command with args, copying its stdout and stderr (pipes: Node has no pty) to this task's
   * terminal as they arrive.  options: cwd, env, stdin ('ignore' default, 'inherit', 'pipe'),
   * timeout (ms), killSignal, signal (AbortSignal), capture (also return the bytes).
   * Resolves to { exitCode, signal, stdout?, stderr? }; rejects if the command cannot start.
   */
  run(command, args = [], options = {}) {
    return new Promise((resolve, reject) => {
      const child = spawn(command, args, {
        cwd: options.cwd, env: options.env, timeout: options.timeout, signal: options.signal,
        killSignal: options.killSignal, stdio: [options.stdin || 'ignore', 'pipe', 'pipe'],
      });
      const out = [], err = [];
      let failure = null; // a strict agent's error while copying: the child is killed, we reject
      const copy = (stream, keep) => (b) => {
        try {
          this.write(b, stream);
        } catch (e) {
          if (failure === null) {
            failure = e;
            child.kill('SIGKILL');
          }
        }
        if (options.capture) keep.push(b);
      };
      child.stdout.on('data', copy('stdout', out));
      child.stderr.on('data', copy('stderr', err));
      child.on('error', (e) => {
        if (e.name === 'AbortError') return; // 'close' follows with the signal
        reject(e);
      });
      child.on('close', (exitCode, signal) => {
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
        resolve(r);
      });
    });
  }
}

module.exports = {
  Agent, Task, STATUS, strerror, version, outcomeOf,
  RingsideError, InvalidArgument, OutOfMemory, ShmUnavailable, RingFull, Closed, TooManyTasks,
  NoSuchTask, TaskExists, SystemCallFailed, ERRORS,
  libraryPath: () => native.load().path,
};
