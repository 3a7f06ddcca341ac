"""Running a child process with its output streamed, byte for byte, to a task's terminal."""
from __future__ import annotations

import errno
import os
import selectors
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

if TYPE_CHECKING:
    from .agent import Task

READ_CHUNK = 65536


def pty_available() -> bool:
    """True where os.openpty() works (Linux, macOS; not Windows)."""
    return hasattr(os, "openpty")


def run(task: "Task", args: Sequence[str], *, pty: Optional[bool] = None,
        stdin: Any = subprocess.DEVNULL, cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
        capture: bool = False, echo: bool = False) -> "subprocess.CompletedProcess[bytes]":
    """Runs ``args`` and copies everything it writes to ``task``'s terminal until it exits.

    pty: None (default) runs the child on a pseudo-terminal where one is available, so programs
    keep colours and line buffering (stdout and stderr then merge into the task's stdout, and
    the terminal turns "\\n" into "\\r\\n"); False uses two pipes (stdout and stderr streams).
    stdin: as for subprocess (default: no input).  capture: also return the bytes in
    ``.stdout``.  echo: also copy them to this process's stdout.  timeout: seconds, after which
    the child's process group is killed and subprocess.TimeoutExpired raised.
    Returns a CompletedProcess (returncode negative: killed by that signal).
    """
    use_pty = pty_available() if pty is None else pty
    argv = list(args)
    popen_kw: Dict[str, Any] = dict(stdin=stdin, cwd=cwd, env=env, start_new_session=True)
    if use_pty:
        master, slave = os.openpty()
        try:
            proc = subprocess.Popen(argv, stdout=slave, stderr=slave, **popen_kw)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        fds = {master: 1}
    else:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen_kw)
        fds = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}  # type: ignore[union-attr]
    deadline = None if timeout is None else time.monotonic() + timeout
    out: List[bytes] = []
    try:
        if not _pump(task, fds, deadline, out if capture else None, echo):
            raise subprocess.TimeoutExpired(argv, timeout or 0)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        rc = proc.wait(left)
    except BaseException:
        _kill(proc)
        raise
    finally:
        if use_pty:
            os.close(master)
        else:
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
    return subprocess.CompletedProcess(argv, rc, b"".join(out) if capture else None)


def _pump(task: "Task", fds: Dict[int, int], deadline: Optional[float],
          out: Optional[List[bytes]], echo: bool) -> bool:
    """Copies every fd to its stream until EOF on all of them (True) or the deadline (False)."""
    with selectors.DefaultSelector() as sel:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            for key, _ in sel.select(left):
                fd = key.fd
                try:
                    data = os.read(fd, READ_CHUNK)
                except OSError as e:
                    if e.errno != errno.EIO:  # EIO: the pty's last writer closed it
                        raise
                    data = b""
                if not data:
                    sel.unregister(fd)
                    continue
                task.write(data, fds[fd])
                if out is not None:
                    out.append(data)
                if echo:
                    view = memoryview(data)
                    while view:  # bounded: each write consumes at least one byte
                        view = view[os.write(1, view):]
    return True


def _kill(proc: "subprocess.Popen[bytes]") -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
    proc.wait()
