"""ringside — publish an agent's status, tasks, progress and terminal output to the Ringside
sidecar of its pod, over libringside (ctypes; no compiler needed).

    import ringside
    with ringside.Agent("trainer", "demo") as agent:
        agent.status("working", "reading the repo")
        with agent.task("t1", "build") as t:
            t.progress(3, 10, "compiling")
            t.write(b"\\x1b[32mok\\x1b[0m\\r\\n")
        agent.run("t2", ["make", "-j2"])      # output streamed under a pty

Nothing raises because the sidecar is missing or slow unless Agent(..., strict=True).
See docs/sdk.md ("Python").
"""
from .agent import Agent, Status, Stream, Task, strerror, version
from .errors import (Closed, InvalidArgument, NoSuchTask, OutOfMemory, RingFull, RingFullWarning,
                     RingsideError, ShmUnavailable, SystemCallFailed, TaskExists, TooManyTasks)
from .process import pty_available, run

__version__ = "0.1.0"

__all__ = ["Agent", "Task", "Status", "Stream", "strerror", "version", "run", "pty_available",
           "RingsideError", "InvalidArgument", "OutOfMemory", "ShmUnavailable", "RingFull", "RingFullWarning",
           "Closed", "TooManyTasks", "NoSuchTask", "TaskExists", "SystemCallFailed"]
