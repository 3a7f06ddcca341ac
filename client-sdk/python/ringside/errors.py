"""Typed errors mapped from libringside's RS_E* codes."""
from __future__ import annotations

from typing import Dict, Type


class RingsideError(Exception):
    """Base of every error raised by this package.  ``code`` is the RS_E* value (negative)."""

    code = 0

    def __init__(self, message: str, code: int = 0):
        super().__init__(message)
        if code:
            self.code = code


class InvalidArgument(RingsideError, ValueError):
    """RS_EINVAL: a bad id, unknown status, write too large, progress step beyond total."""
    code = -1


class OutOfMemory(RingsideError, MemoryError):
    """RS_ENOMEM (opening only)."""
    code = -2


class ShmUnavailable(RingsideError, OSError):
    """RS_ESHM: the ring directory is missing, not writable or full (usually: no sidecar)."""
    code = -3


class RingFull(RingsideError):
    """RS_EFULL: the sidecar is behind; the event was dropped and counted (never raised unless
    strict=True; the latest status and progress are still kept)."""
    code = -4


class RingFullWarning(RuntimeWarning):
    """Warned (strict agents only) when a task started but its start event was dropped
    (RS_EFULL): the task exists and its handle is returned, so it can still be ended."""


class Closed(RingsideError):
    """RS_ECLOSED: the agent was closed, or this is a forked child of the process that opened it."""
    code = -5


class TooManyTasks(RingsideError):
    """RS_ETASKS: more tasks open at once than max_tasks."""
    code = -6


class NoSuchTask(RingsideError, LookupError):
    """RS_ENOTASK: the task was not started in this agent, or has already ended."""
    code = -7


class TaskExists(RingsideError):
    """RS_EEXIST: the task is already started and not ended."""
    code = -8


class SystemCallFailed(RingsideError, OSError):
    """RS_ESYS: a system call failed."""
    code = -9


ERRORS: Dict[int, Type[RingsideError]] = {
    cls.code: cls for cls in (InvalidArgument, OutOfMemory, ShmUnavailable, RingFull, Closed,
                              TooManyTasks, NoSuchTask, TaskExists, SystemCallFailed)
}


def from_code(code: int, what: str, detail: str) -> RingsideError:
    """The exception for RS_E* ``code`` raised by operation ``what``."""
    cls = ERRORS.get(code, RingsideError)
    return cls("%s: %s" % (what, detail), code)
