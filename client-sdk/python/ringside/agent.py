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
import os
import re
import subprocess
import threading
import warnings
import weakref
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _lib
from .errors import Closed, InvalidArgument, RingFullWarning, RingsideError, from_code

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


def _text(s: Text, what: str = "text") -> Optional[bytes]:
    """str (UTF-8) or bytes for a C string; a NUL would silently cut it short in C, so it is
    refused, as is any other type."""
    if s is None:
        return None
    if isinstance(s, str):
        s = s.encode("utf-8", "replace")
    elif not isinstance(s, bytes):
        raise InvalidArgument("%s must be str or bytes, not %s" % (what, type(s).__name__),
                              RS_EINVAL)
    if b"\0" in s:
        raise InvalidArgument("%s contains a NUL byte" % what, RS_EINVAL)
    return s


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


class _Ring:
    """An open handle, the lock every call on it holds, and the tasks open in it.

    The lock makes close() (and the close at interpreter exit, while daemon threads may still be
    publishing) wait for calls in flight; a call after it finds ``h`` None and publishes nothing.
    Held only around one C call (which never blocks), so it costs publishers little.  Reentrant:
    a signal handler that publishes may run while its thread holds it."""

    __slots__ = ("lock", "h", "tasks", "__weakref__")

    def __init__(self, h: Optional[ctypes.c_void_p]) -> None:
        self.lock = threading.RLock()
        self.h = h
        self.tasks: Dict[bytes, bool] = {}  # ids of tasks started and not ended


_rings: "weakref.WeakSet[_Ring]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held a lock at fork(); the child has no such thread.
    for ring in list(_rings):
        ring.lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

EXIT_OPEN_TASK_CODE = 1  # exit code of tasks still open when their agent is closed


def _close_ring(lib: ctypes.CDLL, ring: _Ring) -> None:
    """Ends the tasks still open as failed, then closes the handle (also at interpreter exit:
    a task left open would otherwise read as running forever)."""
    with ring.lock:
        h, ring.h = ring.h, None
        if h is None:
            return
        for tid in list(ring.tasks):
            lib.rs_task_end(h, tid, int(Status.FAILED), EXIT_OPEN_TASK_CODE)
        ring.tasks.clear()
        lib.rs_close(h)


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
        self._ring = _Ring(None)
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
            self._ring.h = h
            _rings.add(self._ring)
            self._finalizer = weakref.finalize(self, _close_ring, lib, self._ring)
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
        return self._ring.h is not None

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
        detail = _text(detail, "detail")
        ring = self._ring
        with ring.lock:
            h = ring.h
            rc = RS_ECLOSED if h is None else self._set_status(h, code, detail)
        if h is None:
            return self._absent("status")
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
        st = _lib.RsStats()
        st.size = ctypes.sizeof(st)
        ring = self._ring
        with ring.lock:
            if ring.h is None:
                return {}
            rc = self._lib.rs_stats_get(ring.h, ctypes.byref(st))
        if rc != RS_OK:
            self._fail(rc, "stats")
            return {}
        return {name: getattr(st, name) for name, _ in _lib.RsStats._fields_ if name != "size"}

    def close(self) -> None:
        """Ends the tasks still open as failed (exit code 1), marks the ring as ended cleanly and
        releases it.  Idempotent; safe while other threads publish (their later calls publish
        nothing).  Done at interpreter exit for agents still open.  In a fork child it only
        frees memory (the parent's ring is untouched)."""
        if self._finalizer is not None:
            self._finalizer()
        else:
            self._ring.h = None

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<ringside.Agent %s/%s %s>" % (self.project_id, self.agent_id,
                                             "connected" if self.connected else "unobserved")


class Task:
    """A started task of an :class:`Agent`.  Created by :meth:`Agent.task`."""

    def __init__(self, agent: Agent, task_id: str, title: Text = None) -> None:
        self.agent = agent
        self.task_id = task_id
        self._tid = _check_id("task id", task_id)
        self.ended = False
        self.returncode: Optional[int] = None  # of the last run(), if any
        self.live = False  # started in the ring (False when unobserved)
        self.start_dropped = False  # started, but its start event was dropped (ring full)
        title_b = _text(title, "title")
        ring = agent._ring
        with ring.lock:
            h = ring.h
            rc = RS_ECLOSED if h is None else agent._lib.rs_task_start(h, self._tid, title_b)
            if rc in (RS_OK, RS_EFULL):  # EFULL: the task is open; its start event was dropped
                ring.tasks[self._tid] = True
        if h is None:
            agent._absent("task start")
            return
        if rc in (RS_OK, RS_EFULL):
            self.live = True
            if rc == RS_EFULL and agent.strict:
                # Raising would lose the handle of a task that exists (a retry: TaskExists).
                self.start_dropped = True
                warnings.warn("ringside: task %s started, but its start event was dropped: %s"
                              % (task_id, strerror(rc)), RingFullWarning, stacklevel=3)
        else:
            agent._fail(rc, "task start %s" % task_id)

    def _call(self, what: str, fn: Any, *args: Any) -> Optional[int]:
        """fn(handle, task id, *args) under the agent's lock: its code, or None when nothing
        could be published (unobserved or closed agent; raises instead when strict)."""
        if self.ended:
            raise from_code(RS_ENOTASK, "%s of task %s" % (what, self.task_id), "already ended")
        ring = self.agent._ring
        if self.live:
            with ring.lock:
                h = ring.h
                if h is not None:
                    return fn(h, self._tid, *args)
        self.agent._absent(what)
        return None

    def progress(self, step: int, total: int = 0, message: Text = None) -> bool:
        """Reports progress (only the latest value is kept; total 0 = unknown)."""
        if self.ended:
            raise from_code(RS_ENOTASK, "progress of task %s" % self.task_id, "already ended")
        if (not isinstance(step, int) or not isinstance(total, int) or isinstance(step, bool)
                or isinstance(total, bool)):
            raise InvalidArgument("progress %r/%r: steps are integers" % (step, total), RS_EINVAL)
        if step < 0 or total < 0 or step > 0xFFFFFFFF or total > 0xFFFFFFFF:
            raise InvalidArgument("progress %d/%d: steps are 32-bit unsigned" % (step, total),
                                  RS_EINVAL)
        rc = self._call("progress", self.agent._progress, step, total, _text(message, "message"))
        if rc is None:
            return False
        return True if rc == RS_OK else self.agent._fail(rc, "progress of %s" % self.task_id)

    def write(self, data: Union[bytes, bytearray, memoryview, str],
              stream: Union[str, int] = "stdout") -> bool:
        """Appends terminal output (raw bytes as a terminal would receive them; str is encoded
        as UTF-8) on "stdout" or "stderr".  Any length: split into 64 KiB pieces."""
        s = _STREAM.get(stream)
        if s is None:
            raise InvalidArgument("unknown stream %r: use stdout or stderr" % (stream,), RS_EINVAL)
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        elif isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        elif not isinstance(data, bytes):
            raise TypeError("write() takes bytes, bytearray, memoryview or str, not %s"
                            % type(data).__name__)
        n = len(data)
        w = self.agent._write
        for off in range(0, max(n, 1), RS_WRITE_CHUNK):
            piece = data if n <= RS_WRITE_CHUNK else data[off:off + RS_WRITE_CHUNK]
            rc = self._call("write", w, s, piece, len(piece))
            if rc is None:
                return False
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
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            raise InvalidArgument("exit code %r: use an int" % (exit_code,), RS_EINVAL)
        if not -0x80000000 <= exit_code <= 0x7FFFFFFF:
            raise InvalidArgument("exit code %d: out of the int range" % exit_code, RS_EINVAL)
        ring = self.agent._ring
        end = self.agent._lib.rs_task_end

        def _end(h: Any, tid: bytes) -> int:
            ring.tasks.pop(tid, None)
            return end(h, tid, code, exit_code)
        rc = self._call("end", _end)
        self.ended = True
        if rc is None:
            return False
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
        elif issubclass(typ, GeneratorExit):  # a generator closed early: stopped, not failed
            outcome, code = "cancelled", 0
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
        return "cancelled", 130
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return ("completed" if code == 0 else "failed"), code
    code = getattr(exc, "returncode", None)  # subprocess.CalledProcessError and the like
    return "failed", code if isinstance(code, int) and code > 0 else 1


__all__: List[str] = ["Agent", "Task", "Status", "Stream", "strerror", "version"]
