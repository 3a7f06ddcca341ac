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
        stdin: Any = subprocess.DEVNULL, input: Optional[bytes] = None, cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
        capture: bool = False, echo: bool = False) -> "subprocess.CompletedProcess[bytes]":
    """Runs ``args`` and copies everything it writes to ``task``'s terminal until it exits.

    pty: None (default) runs the child on a pseudo-terminal where one is available, so programs
    keep colours and line buffering (stdout and stderr then merge into the task's stdout, and
    the terminal turns "\\n" into "\\r\\n"); False uses two pipes (stdout and stderr streams).
    stdin: as for subprocess (default: no input); subprocess.PIPE only with ``input``.  input:
    bytes written to the child's stdin, which is then closed.  capture: also return the bytes
    in ``.stdout`` and ``.stderr`` (under a pty both streams arrive merged in ``.stdout`` and
    ``.stderr`` is None).  echo: also copy them to this process's stdout.  timeout: seconds, after which
    the child's process group is killed and subprocess.TimeoutExpired raised.
    Returns a CompletedProcess (returncode negative: killed by that signal).
    """
    use_pty = pty_available() if pty is None else pty
    argv = list(args)
    if input is not None:
        if not isinstance(input, (bytes, bytearray, memoryview)):
            raise TypeError("input must be bytes-like, not %s" % type(input).__name__)
        if stdin not in (subprocess.DEVNULL, subprocess.PIPE):
            raise ValueError("stdin and input cannot both be given")
        stdin = subprocess.PIPE
    elif stdin == subprocess.PIPE:
        raise ValueError("stdin=subprocess.PIPE: nothing would write to it and the child could "
                         "wait for input forever; pass input=b'...' instead")
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
    out: Dict[int, List[bytes]] = {1: [], 2: []}
    feed = None
    if input is not None:
        feed = (proc.stdin, memoryview(bytes(input)))
        os.set_blocking(proc.stdin.fileno(), False)  # type: ignore[union-attr]
    try:
        if not _pump(task, fds, deadline, out if capture else None, echo, feed):
            raise subprocess.TimeoutExpired(argv, timeout or 0)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        rc = proc.wait(left)
    except BaseException:
        _kill(proc)
        raise
    finally:
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:  # EPIPE: the child exited without reading everything
                pass
        if use_pty:
            os.close(master)
        else:
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
    if not capture:
        return subprocess.CompletedProcess(argv, rc)
    return subprocess.CompletedProcess(argv, rc, b"".join(out[1]),
                                       None if use_pty else b"".join(out[2]))


def _pump(task: "Task", fds: Dict[int, int], deadline: Optional[float],
          out: Optional[Dict[int, List[bytes]]], echo: bool,
          feed: "Optional[tuple[Any, memoryview]]" = None) -> bool:
    """Copies every fd to its stream until EOF on all of them (True) or the deadline (False),
    writing ``feed`` (fd, bytes) to the child's stdin and closing it when all is written."""
    with selectors.DefaultSelector() as sel:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)
        in_fd = -1
        if feed is not None:
            if feed[1]:
                in_fd = feed[0].fileno()
                sel.register(in_fd, selectors.EVENT_WRITE)
            else:
                feed[0].close()
        pending = feed[1] if feed is not None else memoryview(b"")
        while sel.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            for key, _ in sel.select(left):
                fd = key.fd
                if fd == in_fd:
                    try:  # non-blocking: each write consumes at least one byte or fails
                        pending = pending[os.write(fd, pending[:READ_CHUNK]):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the child closed its stdin: the rest is dropped
                        pending = memoryview(b"")
                    if not pending:
                        sel.unregister(fd)
                        feed[0].close()  # type: ignore[index]
                    continue
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
                    out[fds[fd]].append(data)
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
