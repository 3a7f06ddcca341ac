"""Agent and Task: the Pythonic face of libringside (see docs/sdk.md, "Python").

Never-fail default: unless ``strict=True``, nothing here raises because the sidecar is missing
(no ring directory: the agent runs unobserved, one warning is logged), slow (``RS_EFULL``: the
event is dropped and counted, the latest status/progress kept) or because this process is a fork
child of the one that opened the agent (``RS_ECLOSED``).  Calls then return ``False``.  Mistakes
of the caller (a bad id, an unknown status, progress of a task that was never started) always
raise, strict or not.
"""
from __future__ import annotations

import ctypes
import enum
import logging
import re
import subprocess
import weakref
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _lib
from .errors import Closed, InvalidArgument, RingsideError, from_code

log = logging.getLogger("ringside")

RS_OK, RS_EINVAL, RS_ENOMEM, RS_ESHM, RS_EFULL, RS_ECLOSED = 0, -1, -2, -3, -4, -5
RS_ETASKS, RS_ENOTASK, RS_EEXIST, RS_ESYS = -6, -7, -8, -9
RS_WRITE_CHUNK = 65536  # writes are split into pieces of this size (below half a ring)
RS_TERM_RINGS_NONE = 0xFFFFFFFF

# Codes that mean "the sidecar is absent, slow or unreachable from here": swallowed unless strict.
_RUNTIME = frozenset((RS_ESHM, RS_EFULL, RS_ECLOSED, RS_ESYS, RS_ENOMEM, RS_ETASKS))

_ID = re.compile(r"[A-Za-z0-9._:@-]{1,63}\Z")


class Status(enum.IntEnum):
    """Agent status; values are the ring ABI's (rs_status)."""
    IDLE = 0
    WORKING = 1
    STUCK = 2
    FAILED = 3
    COMPLETED = 4
    CANCELLED = 5


class Stream(enum.IntEnum):
    STDOUT = 1
    STDERR = 2


StatusLike = Union[str, int, Status]
Text = Union[str, bytes, None]

_STATUS: Dict[Any, int] = {s.name.lower(): int(s) for s in Status}
_STATUS.update({int(s): int(s) for s in Status})
_OUTCOMES = frozenset((Status.COMPLETED, Status.FAILED, Status.CANCELLED))
_STREAM: Dict[Any, int] = {"stdout": 1, "stderr": 2, 1: 1, 2: 2}


def _text(s: Text) -> Optional[bytes]:
    if s is None or isinstance(s, bytes):
        return s
    return s.encode("utf-8", "replace")


def _check_id(what: str, value: Optional[str], optional: bool = False) -> Optional[bytes]:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidArgument("%s %r is invalid: use 1-63 characters from [A-Za-z0-9._:@-]"
                              % (what, value), RS_EINVAL)
    return value.encode()


def strerror(code: int) -> str:
    """rs_strerror(): the library's description of an RS_E* code."""
    return _lib.load().rs_strerror(code).decode()


def version() -> str:
    """rs_version(): the loaded library's version."""
    return _lib.load().rs_version().decode()


def _close_handle(lib: ctypes.CDLL, handle: ctypes.c_void_p) -> None:
    lib.rs_close(handle)


class Agent:
    """One agent handle (one ring file) of this process.

    ``Agent("builder", "demo")`` opens the ring; use it as a context manager, or call
    :meth:`close` (an agent that is never closed is closed at interpreter exit; a process that
    dies without closing is reported as failed by the sidecar).
    """

    def __init__(self, agent_id: str, project_id: str, *, owner: Optional[str] = None,
                 shm_dir: Optional[str] = None, strict: bool = False, max_tasks: int = 0,
                 term_rings: int = 0, term_ring_bytes: int = 0, log_slots: int = 0,
                 terminal: bool = True) -> None:
        """Opens the agent's ring in ``shm_dir`` (default: $RINGSIDE_SHM_DIR, else
        /dev/shm/ringside).  ``terminal=False`` reserves no terminal rings (status and progress
        only: a small ring).  Sizes of 0 take the SDK's defaults."""
        self.agent_id = agent_id
        self.project_id = project_id
        self.strict = strict
        self._h: Optional[ctypes.c_void_p] = None
        self._finalizer: Optional[weakref.finalize] = None
        ids = (_check_id("agent id", agent_id), _check_id("project id", project_id),
               _check_id("owner", owner, optional=True))
        lib = self._lib = _lib.load()
        opts = _lib.RsOptions()
        lib.rs_options_init(ctypes.byref(opts))
        opts.agent_id, opts.project_id, opts.owner = ids
        opts.shm_dir = shm_dir.encode() if shm_dir is not None else None
        opts.max_tasks, opts.term_ring_bytes, opts.log_slots = max_tasks, term_ring_bytes, log_slots
        opts.term_rings = term_rings if terminal else RS_TERM_RINGS_NONE
        h = ctypes.c_void_p()
        rc = lib.rs_open(ctypes.byref(opts), ctypes.byref(h))
        if rc == RS_OK:
            self._h = h
            self._finalizer = weakref.finalize(self, _close_handle, lib, h)
        elif rc in _RUNTIME and not strict:
            log.warning("ringside: agent %s runs unobserved: cannot open a ring in %s: %s",
                        agent_id, shm_dir or "the default shm dir", strerror(rc))
        else:
            raise from_code(rc, "opening agent %s" % agent_id, strerror(rc))
        # Bound methods of the hot path, looked up once.
        self._set_status = lib.rs_set_status
        self._progress = lib.rs_progress
        self._write = lib.rs_write

    # -- state -------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True when a ring is open (False: no sidecar directory, or closed)."""
        return self._h is not None

    def _fail(self, rc: int, what: str) -> bool:
        """Handles a non-zero code: False for runtime conditions (unless strict), else raises."""
        if rc in _RUNTIME and not self.strict:
            return False
        raise from_code(rc, what, strerror(rc))

    def _absent(self, what: str) -> bool:
        if self.strict:
            raise Closed("%s: agent %s is closed" % (what, self.agent_id), RS_ECLOSED)
        return False

    # -- events ------------------------------------------------------------------------------
    def status(self, status: StatusLike, detail: Text = None) -> bool:
        """Sets the agent's status ("idle", "working", "stuck", "failed", "completed",
        "cancelled" or a :class:`Status`), with optional detail text (up to 255 bytes)."""
        code = _STATUS.get(status)
        if code is None:
            raise InvalidArgument("unknown status %r: use %s" % (status, ", ".join(
                s.name.lower() for s in Status)), RS_EINVAL)
        h = self._h
        if h is None:
            return self._absent("status")
        rc = self._set_status(h, code, detail if detail is None or isinstance(detail, bytes)
                              else detail.encode("utf-8", "replace"))
        return True if rc == RS_OK else self._fail(rc, "status")

    def task(self, task_id: str, title: Text = None) -> "Task":
        """Starts a task and returns it; use it as a context manager to end it with the right
        outcome (completed; failed on an exception; cancelled on KeyboardInterrupt)."""
        return Task(self, task_id, title)

    def run(self, task_id: str, args: Sequence[str], *, title: Text = None, check: bool = False,
            **kw: Any) -> "subprocess.CompletedProcess[bytes]":
        """Runs a command as task ``task_id`` (title: the command line), streaming its output
        to the task's terminal (under a pty where available), and ends the task with the
        command's outcome.  Keyword arguments as :func:`ringside.process.run`."""
        if title is None:
            title = " ".join(args)[:255]
        with self.task(task_id, title) as t:
            r = t.run(args, **kw)
        if check and r.returncode != 0:
            raise subprocess.CalledProcessError(r.returncode, list(args), r.stdout)
        return r

    def stats(self) -> Dict[str, int]:
        """The handle's counters (rs_stats_get), or {} when no ring is open."""
        if self._h is None:
            return {}
        st = _lib.RsStats()
        st.size = ctypes.sizeof(st)
        rc = self._lib.rs_stats_get(self._h, ctypes.byref(st))
        if rc != RS_OK:
            self._fail(rc, "stats")
            return {}
        return {name: getattr(st, name) for name, _ in _lib.RsStats._fields_ if name != "size"}

    def close(self) -> None:
        """Marks the ring as ended cleanly and releases it.  Idempotent.  Must not race with other
        calls on this agent.  In a fork child it only frees memory (the parent's ring is
        untouched)."""
        if self._finalizer is not None:
            self._finalizer()
        self._h = None

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<ringside.Agent %s/%s %s>" % (self.project_id, self.agent_id,
                                             "connected" if self._h else "unobserved")


class Task:
    """A started task of an :class:`Agent`.  Created by :meth:`Agent.task`."""

    def __init__(self, agent: Agent, task_id: str, title: Text = None) -> None:
        self.agent = agent
        self.task_id = task_id
        self._tid = _check_id("task id", task_id)
        self.ended = False
        self.returncode: Optional[int] = None  # of the last run(), if any
        self.live = False  # started in the ring (False when unobserved)
        h = agent._h
        if h is None:
            agent._absent("task start")
            return
        rc = agent._lib.rs_task_start(h, self._tid, _text(title))
        if rc in (RS_OK, RS_EFULL):  # EFULL: dropped and counted, but open locally
            self.live = True
            if rc == RS_EFULL and agent.strict:
                agent._fail(rc, "task start")
        else:
            agent._fail(rc, "task start %s" % task_id)

    def _call(self, what: str) -> Optional[ctypes.c_void_p]:
        if self.ended:
            raise from_code(RS_ENOTASK, "%s of task %s" % (what, self.task_id), "already ended")
        h = self.agent._h
        if h is None or not self.live:
            self.agent._absent(what)
            return None
        return h

    def progress(self, step: int, total: int = 0, message: Text = None) -> bool:
        """Reports progress (only the latest value is kept; total 0 = unknown)."""
        h = self._call("progress")
        if h is None:
            return False
        if step < 0 or total < 0 or step > 0xFFFFFFFF or total > 0xFFFFFFFF:
            raise InvalidArgument("progress %d/%d: steps are 32-bit unsigned" % (step, total),
                                  RS_EINVAL)
        rc = self.agent._progress(h, self._tid, step, total, _text(message))
        return True if rc == RS_OK else self.agent._fail(rc, "progress of %s" % self.task_id)

    def write(self, data: Union[bytes, bytearray, memoryview, str],
              stream: Union[str, int] = "stdout") -> bool:
        """Appends terminal output (raw bytes as a terminal would receive them; str is encoded
        as UTF-8) on "stdout" or "stderr".  Any length: split into 64 KiB pieces."""
        s = _STREAM.get(stream)
        if s is None:
            raise InvalidArgument("unknown stream %r: use stdout or stderr" % (stream,), RS_EINVAL)
        h = self._call("write")
        if h is None:
            return False
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        elif not isinstance(data, bytes):
            data = bytes(data)
        n = len(data)
        w = self.agent._write
        if n <= RS_WRITE_CHUNK:
            rc = w(h, self._tid, s, data, n)
            return True if rc == RS_OK else self.agent._fail(rc, "write to %s" % self.task_id)
        for off in range(0, n, RS_WRITE_CHUNK):
            piece = data[off:off + RS_WRITE_CHUNK]
            rc = w(h, self._tid, s, piece, len(piece))
            if rc != RS_OK:
                return self.agent._fail(rc, "write to %s" % self.task_id)
        return True

    def end(self, outcome: StatusLike = "completed", exit_code: int = 0) -> bool:
        """Ends the task: outcome "completed", "failed" or "cancelled", and the exit status of
        what it ran.  A task used as a context manager is ended on leaving the block."""
        code = _STATUS.get(outcome)
        if code not in _OUTCOMES:
            raise InvalidArgument("outcome %r: use completed, failed or cancelled" % (outcome,),
                                  RS_EINVAL)
        h = self._call("end")
        self.ended = True
        if h is None:
            return False
        rc = self.agent._lib.rs_task_end(h, self._tid, code, int(exit_code))
        return True if rc == RS_OK else self.agent._fail(rc, "end of %s" % self.task_id)

    def run(self, args: Sequence[str], **kw: Any) -> "subprocess.CompletedProcess[bytes]":
        """Runs a command with its output streamed to this task's terminal; see
        :func:`ringside.process.run`.  Records the exit status: leaving the task's ``with``
        block then ends it as completed (0), cancelled (SIGINT/SIGTERM) or failed."""
        from .process import run
        r = run(self, args, **kw)
        self.returncode = r.returncode
        return r

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, typ: Any, exc: Any, tb: Any) -> None:
        if self.ended:
            return
        if typ is None:
            outcome, code = _outcome_of(self.returncode)
        else:
            outcome, code = _outcome_of_exception(exc)
            try:
                self.write("\r\n%s: %s\r\n" % (typ.__name__, exc), "stderr")
            except RingsideError:
                pass
        self.end(outcome, code)

    def __repr__(self) -> str:
        return "<ringside.Task %s%s>" % (self.task_id, " ended" if self.ended else "")


def _outcome_of(returncode: Optional[int]) -> "tuple[str, int]":
    """(outcome, exit code) of a command's returncode (negative: killed by signal -N)."""
    if not returncode:
        return "completed", 0
    if returncode < 0:
        sig = -returncode
        return ("cancelled" if sig in (2, 15) else "failed"), 128 + sig
    return "failed", returncode


def _outcome_of_exception(exc: BaseException) -> "tuple[str, int]":
    if isinstance(exc, KeyboardInterrupt):
        return "cancelled", 130
    if type(exc).__name__ == "CancelledError":  # asyncio.CancelledError, without importing it
        return "cancelled", 0
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return ("completed" if code == 0 else "failed"), code
    code = getattr(exc, "returncode", None)  # subprocess.CalledProcessError and the like
    return "failed", code if isinstance(code, int) and code > 0 else 1


__all__: List[str] = ["Agent", "Task", "Status", "Stream", "strerror", "version"]
