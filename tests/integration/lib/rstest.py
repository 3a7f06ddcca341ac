"""Test harness for Ringside integration tests: real processes, real sockets, loopback only.

Runs under /usr/bin/python3 (Debian's python3-websockets).  Environment from ctest:
RINGSIDE_BIN (build/bin), RINGSIDE_LIB (build/lib), RINGSIDE_SRC (source root).
"""
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import websockets

# Sanitizer builds hold freed memory in quarantine: RSS bounds do not apply to them.
SANITIZED = bool(os.environ.get("RINGSIDE_SANITIZE"))

BIN = os.environ.get("RINGSIDE_BIN", os.path.join(os.getcwd(), "build", "bin"))
LIB = os.environ.get("RINGSIDE_LIB", os.path.join(os.getcwd(), "build", "lib"))


def binpath(name):
    return os.path.join(BIN, name)


class Sidecar:
    """A real `ringside` process on 127.0.0.1 with an ephemeral port read from its log."""

    def __init__(self, args=(), shm_dir=None, env=None, no_auth=True, prefix=()):
        """prefix: a wrapper command the sidecar runs under (e.g. prlimit …)."""
        self.own_dir = shm_dir is None
        self.shm_dir = shm_dir or tempfile.mkdtemp(prefix="rs-shm-")
        cmd = list(prefix) + [binpath("ringside"), "--listen", "127.0.0.1:0", "--shm-dir",
                              self.shm_dir]
        if no_auth:
            cmd.append("--no-auth")
        # Tests connect many times from 127.0.0.1: admission limits are off unless a test sets
        # them (later flags win).
        cmd += ["--conn-rate", "0", "--user-conns", "0", "--anon-conn-rate", "0",
                "--http-conns-per-ip", "1000000", "--max-http-conns", "1000000"]
        cmd += list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.logs = []
        self.logs_eof = False  # the reader has read the sidecar's stderr to its end
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=full_env)
        self.reader = threading.Thread(target=self._read_logs, daemon=True)
        self.reader.start()
        line = self.wait_log(lambda l: l.get("msg") == "listening", timeout=10)
        if line is None:
            self.stop()
            raise RuntimeError("sidecar did not start: %s" % self.raw_logs())
        self.port = line["port"]
        self.wait_log(lambda l: l.get("msg") == "ringside started", timeout=10)

    def _read_logs(self):
        for raw in self.proc.stderr:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                entry = json.loads(text)
            except ValueError:
                entry = {"msg": "<non-json>", "raw": text}
            with self.cond:
                self.logs.append(entry)
                self.cond.notify_all()
        with self.cond:
            self.logs_eof = True
            self.cond.notify_all()

    def raw_logs(self):
        with self.cond:
            return "\n".join(json.dumps(l) for l in self.logs)

    def wait_log(self, pred, timeout=5.0, start=0):
        """Waits for a log entry (index >= start) matching pred; returns it or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.logs):
                    if pred(self.logs[i]):
                        return self.logs[i]
                    i += 1
                left = deadline - time.monotonic()
                # Not "the process exited": its last lines may still be in the pipe.
                if left <= 0 or self.logs_eof and i >= len(self.logs):
                    return None
                self.cond.wait(min(left, 0.1))

    @property
    def base(self):
        return "127.0.0.1:%d" % self.port

    def url(self, path):
        return "ws://%s%s" % (self.base, path)

    def http(self, path, method="GET", headers=None):
        """Returns (status, headers, body bytes)."""
        req = urllib.request.Request("http://%s%s" % (self.base, path), method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def raw(self, data, timeout=5.0):
        """Sends raw bytes, reads until the server closes or the head+body is in; returns
        (status, headers dict lower-case, body bytes)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            chunks = []
            while True:
                try:
                    b = s.recv(65536)
                except socket.timeout:
                    break
                if not b:
                    break
                chunks.append(b)
                got = b"".join(chunks)
                if b"\r\n\r\n" in got:
                    head, _, body = got.partition(b"\r\n\r\n")
                    if head.startswith(b"HTTP/1.1 101"):
                        break
        finally:
            s.close()
        got = b"".join(chunks)
        head, _, body = got.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else 0
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers, body

    def upgrade(self, target, extra=""):
        """Sends a WebSocket upgrade request for target; returns what raw() returns."""
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
               % (target, self.base, extra))
        return self.raw(req.encode())

    def metrics(self):
        status, _, body = self.http("/metrics")
        assert status == 200
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def pub(self, *args, agent="a1", project="p1", stdin=None, check=True):
        cmd = [binpath("ringside-pub"), "--shm-dir", self.shm_dir, "--agent", agent,
               "--project", project] + list(args)
        r = subprocess.run(cmd, input=stdin, capture_output=True, timeout=10)
        if check and r.returncode != 0:
            raise AssertionError("ringside-pub %s failed (%d): %s" % (args, r.returncode, r.stderr))
        return r

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=40):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.reader.join(5)
        if self.own_dir:
            shutil.rmtree(self.shm_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


async def recv_json(ws, timeout=5.0):
    """Receives one text message and decodes it; raises TimeoutError."""
    msg = await asyncio.wait_for(ws.recv(), timeout)
    if isinstance(msg, bytes):
        return {"type": "<binary>", "data": msg}
    return json.loads(msg)


async def recv_until(ws, pred, timeout=5.0):
    """Receives messages until pred(msg) is true; returns (msg, skipped list)."""
    deadline = time.monotonic() + timeout
    skipped = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise asyncio.TimeoutError("no matching message; got %r" % skipped[-10:])
        m = await recv_json(ws, left)
        if pred(m):
            return m, skipped
        skipped.append(m)


def connect(sc, path="/ws/events", **kw):
    kw.setdefault("open_timeout", 5)
    kw.setdefault("max_size", 4 * 1024 * 1024)
    return websockets.connect(sc.url(path), **kw)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_async(coro):
    return asyncio.run(coro)


def case_failed(tc):
    """True when the running test case has failed or errored (for tearDown to dump logs).
    Python 3.11 keeps the outcome in _outcome.result; 3.10 and older in _outcome.errors."""
    outcome = getattr(tc, "_outcome", None)
    if outcome is None:
        return False
    result = getattr(outcome, "result", None)
    if result is not None and hasattr(result, "failures"):
        return any(t is tc for t, _ in result.failures + result.errors)
    return any(e for _, e in getattr(outcome, "errors", []) if e)


class SidecarCase(unittest.TestCase):
    """A test case with one sidecar per test (self.sc)."""

    sidecar_args = ()

    def setUp(self):
        self.sc = Sidecar(self.sidecar_args)

    def tearDown(self):
        if case_failed(self):
            print("---- sidecar log ----\n" + self.sc.raw_logs())
        self.sc.stop()
