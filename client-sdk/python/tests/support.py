"""Shared helpers of the binding tests: the built tree's paths and a reader of ring files.

Environment (set by ctest; defaults fit a build in ./build): RINGSIDE_BIN, RINGSIDE_LIB,
RINGSIDE_SRC, RING_DUMP (tests/integration/tools/ring_dump.c: the sidecar's reader, one JSON
record per line).
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ.get("RINGSIDE_SRC", os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                                   "..", "..", "..")))
BIN = os.environ.get("RINGSIDE_BIN", os.path.join(SRC, "build", "bin"))
LIB = os.environ.get("RINGSIDE_LIB", os.path.join(SRC, "build", "lib"))
RING_DUMP = os.environ.get("RING_DUMP", os.path.join(BIN, "tools_ring_dump"))
T = 20  # seconds: bound of every subprocess

# The package under test (the source tree's), and the real-component harness.
sys.path.insert(0, os.path.join(SRC, "client-sdk", "python"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration", "lib"))
os.environ.setdefault("RINGSIDE_LIB", LIB)

STATUS = {"idle": 0, "working": 1, "stuck": 2, "failed": 3, "completed": 4, "cancelled": 5}


def dump(shm):
    """Every record of every ring in shm, as dicts."""
    p = subprocess.run([RING_DUMP, shm], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=T)
    recs = [json.loads(l) for l in p.stdout.decode("utf-8", "surrogateescape").splitlines()
            if l.strip()]
    if p.returncode != 0:
        raise AssertionError("ring_dump failed (%d): %r %r" % (p.returncode, p.stderr, recs))
    return recs


def of(recs, type_, **match):
    return [r for r in recs if r.get("type") == type_ and
            all(r.get(k) == v for k, v in match.items())]


def term_bytes(recs, task, stream=None):
    return b"".join(bytes.fromhex(r["hex"]) for r in of(recs, "term", task=task)
                    if stream is None or r["stream"] == stream)


def sanitizer_env():
    """With an ASan build, an uninstrumented interpreter needs the ASan runtime preloaded to
    load the library in a child process.  Returns that environment, or {}."""
    so = os.path.join(LIB, "libringside.so")
    p = subprocess.run(["ldd", so], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=T)
    for line in p.stdout.decode().splitlines():
        if "libasan" in line and "=>" in line:
            return {"LD_PRELOAD": line.split("=>")[1].split()[0], "ASAN_OPTIONS": "detect_leaks=0"}
    return {}


class ShmCase(unittest.TestCase):
    """A test with a fresh ring directory (self.shm) and no sidecar."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="rs-py-")
        self.shm = os.path.join(self.tmp.name, "shm")
        os.mkdir(self.shm)

    def tearDown(self):
        self.tmp.cleanup()
