#!/usr/bin/env python3
"""python-agent.py — an example agent in Python calling libringside through ctypes (stdlib only).

Usage: examples/python-agent.py [--agent A] [--project P] [--owner U] [--shm-dir D]
                                [--loop N] [--delay-ms MS]

The library is loaded from $RINGSIDE_LIB (the .so file or its directory), else by its soname
(libringside.so.0) through the normal search path (LD_LIBRARY_PATH, ld.so.cache).
The small `Ringside` class below is a complete binding: copy it into your own agent.
"""
import argparse
import ctypes
import os
import signal
import sys
import time

RS_OK, RS_EFULL, RS_EEXIST = 0, -4, -8
STATUS = {"idle": 0, "working": 1, "stuck": 2, "failed": 3, "completed": 4, "cancelled": 5}
STDOUT, STDERR = 1, 2


class RsOptions(ctypes.Structure):
    """Mirror of struct rs_options (ringside.h 0.1), every field: rs_options_init() fills the
    whole struct as the library knows it, so a shorter mirror would be overrun.  Fields added by a
    later header may be appended here; `size` tells the library which ones are present."""
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("shm_dir", ctypes.c_char_p),
        ("agent_id", ctypes.c_char_p),
        ("project_id", ctypes.c_char_p),
        ("owner", ctypes.c_char_p),
        ("term_ring_bytes", ctypes.c_uint32),
        ("max_tasks", ctypes.c_uint32),
        ("term_rings", ctypes.c_uint32),
        ("log_slots", ctypes.c_uint32),
    ]


class RingsideError(Exception):
    def __init__(self, what, code, text):
        super().__init__(f"{what}: {text} ({code})")
        self.code = code


def load_library():
    where = os.environ.get("RINGSIDE_LIB")
    names = ["libringside.so.0", "libringside.so"]
    if where:
        if os.path.isdir(where):
            names = [os.path.join(where, n) for n in names]
        else:
            names = [where]
    last = None
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            last = e
    raise OSError(f"cannot load libringside ({last}): set RINGSIDE_LIB or LD_LIBRARY_PATH")


class Ringside:
    """One agent handle. Methods raise RingsideError on failure; a full ring (RS_EFULL) is not
    an error for an agent (the sidecar is behind; the latest state is kept)."""

    def __init__(self, agent_id, project_id, owner=None, shm_dir=None, lib=None):
        self.lib = lib or load_library()
        L = self.lib
        L.rs_options_init.argtypes = [ctypes.POINTER(RsOptions)]
        L.rs_options_init.restype = None
        L.rs_open.argtypes = [ctypes.POINTER(RsOptions), ctypes.POINTER(ctypes.c_void_p)]
        L.rs_set_status.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
        L.rs_task_start.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        L.rs_progress.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32,
                                  ctypes.c_uint32, ctypes.c_char_p]
        L.rs_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                               ctypes.c_size_t]
        L.rs_task_end.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        L.rs_close.argtypes = [ctypes.c_void_p]
        L.rs_strerror.argtypes = [ctypes.c_int]
        L.rs_strerror.restype = ctypes.c_char_p
        L.rs_version.restype = ctypes.c_char_p
        for f in (L.rs_open, L.rs_set_status, L.rs_task_start, L.rs_progress, L.rs_write,
                  L.rs_task_end, L.rs_close):
            f.restype = ctypes.c_int

        opts = RsOptions()
        L.rs_options_init(ctypes.byref(opts))
        # Keep the encoded strings alive for the call (the SDK copies them).
        self._keep = [s.encode() if s is not None else None
                      for s in (shm_dir, agent_id, project_id, owner)]
        opts.shm_dir, opts.agent_id, opts.project_id, opts.owner = self._keep
        handle = ctypes.c_void_p()
        self._check(L.rs_open(ctypes.byref(opts), ctypes.byref(handle)), "rs_open")
        self.h = handle

    def _check(self, rc, what, ok=(RS_OK, RS_EFULL)):
        if rc not in ok:
            raise RingsideError(what, rc, self.lib.rs_strerror(rc).decode())
        return rc

    @staticmethod
    def _b(s):
        return s.encode() if isinstance(s, str) else s

    def status(self, status, detail=None):
        self._check(self.lib.rs_set_status(self.h, STATUS[status], self._b(detail)), "status")

    def task_start(self, task_id, title=None):
        self._check(self.lib.rs_task_start(self.h, self._b(task_id), self._b(title)), "task_start")

    def progress(self, task_id, step, total, message=None):
        self._check(self.lib.rs_progress(self.h, self._b(task_id), step, total,
                                         self._b(message)), "progress")

    def write(self, task_id, data, stream=STDOUT):
        data = self._b(data)
        self._check(self.lib.rs_write(self.h, self._b(task_id), stream, data, len(data)), "write")

    def task_end(self, task_id, outcome, exit_code=0):
        self._check(self.lib.rs_task_end(self.h, self._b(task_id), STATUS[outcome], exit_code),
                    "task_end")

    def close(self):
        if self.h:
            self.lib.rs_close(self.h)
            self.h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


STEPS = ["load dataset", "tokenize", "train epoch 1", "train epoch 2", "evaluate", "save model"]
stop = False


def on_stop(signum, frame):
    global stop
    stop = True


def pause(ms):
    end = time.monotonic() + ms / 1000.0
    while not stop and time.monotonic() < end:
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))


def cycle(rs, agent, n, delay_ms):
    task = f"{agent[:40]}-{n}"
    rs.status("working", f"training run {n}")
    rs.task_start(task, f"Training run #{n}")
    for i, what in enumerate(STEPS, 1):
        if stop:
            rs.write(task, "\x1b[33minterrupted\x1b[0m\r\n", STDERR)
            rs.task_end(task, "cancelled", 130)
            return
        rs.progress(task, i, len(STEPS), what)
        rs.write(task, f"\x1b[35m[{i}/{len(STEPS)}]\x1b[0m {what}\r\n")
        pause(delay_ms)
    rs.write(task, "\x1b[1;32maccuracy 0.93\x1b[0m\r\n")
    rs.task_end(task, "completed", 0)
    rs.status("idle", f"run {n} finished")


def main(argv=None):
    p = argparse.ArgumentParser(description="Example Ringside agent (Python, ctypes).")
    p.add_argument("--agent", default="python-agent")
    p.add_argument("--project", default="demo")
    p.add_argument("--owner")
    p.add_argument("--shm-dir")
    p.add_argument("--loop", type=int, default=1, help="cycles to run (0 = until a signal)")
    p.add_argument("--delay-ms", type=int, default=300)
    a = p.parse_args(argv)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    try:
        rs = Ringside(a.agent, a.project, a.owner, a.shm_dir)
    except (OSError, RingsideError) as e:
        print(f"python-agent: {e}", file=sys.stderr)
        return 1
    with rs:
        n = 1
        while not stop and (a.loop == 0 or n <= a.loop):
            cycle(rs, a.agent, n, a.delay_ms)
            n += 1
        if stop:
            rs.status("cancelled", "stopped by signal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
