"""Shared helpers of the conformance and server suites: a Sidecar that can run under a wrapper
(prlimit), a test base class with one sidecar per class, and /proc readers."""
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)

import rstest  # noqa: E402
from rstest import binpath  # noqa: E402
from wsraw import RawWS, HandshakeError  # noqa: E402,F401

# Connection-rate and per-user limits are off: these suites open many connections from 127.0.0.1.
BASE_ARGS = ("--conn-rate", "0", "--user-conns", "0")


class Sidecar(rstest.Sidecar):
    """rstest.Sidecar, optionally started under a wrapper command (e.g. prlimit --nofile=N:N --)."""

    def __init__(self, args=(), env=None, prefix=(), base_args=BASE_ARGS):
        super().__init__(tuple(base_args) + tuple(args), env=env, prefix=prefix)

    def stop(self):
        super().stop()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def sanitizer_reports(self):
        """Non-JSON stderr lines that look like ASan/UBSan/LSan reports (sanitizer builds)."""
        self.reader.join(5)
        with self.cond:
            raw = [l.get("raw", "") for l in self.logs if l.get("msg") == "<non-json>"]
        marks = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehavior")
        return [r for r in raw if any(m in r for m in marks)]

    def assert_clean(self):
        """Raises AssertionError with the report when a sanitizer complained (after stop())."""
        bad = self.sanitizer_reports()
        if bad:
            with self.cond:
                raw = [l.get("raw", "") for l in self.logs if l.get("msg") == "<non-json>"]
            raise AssertionError("sanitizer report:\n" + "\n".join(raw[:80]))

    def log_tail(self, n=12):
        with self.cond:
            return "\n".join(str(l) for l in self.logs[-n:])

    def n_logs(self):
        with self.cond:
            return len(self.logs)


_SANITIZED = None


def sanitized():
    """True when the ringside binary is built with AddressSanitizer (RSS figures then mean
    nothing: freed memory sits in ASan's quarantine)."""
    global _SANITIZED
    if _SANITIZED is None:
        with open(binpath("ringside"), "rb") as f:
            _SANITIZED = b"__asan_init" in f.read()
    return _SANITIZED


def proc_cpu_seconds(pid):
    """utime + stime of a process from /proc/PID/stat, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # fields 14, 15 of stat(5)


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_until(pred, timeout=5.0, interval=0.02):
    """Polls pred (a cheap state query, not a sleep as synchronisation) until true; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


class SidecarClassCase(unittest.TestCase):
    """One sidecar per test class (cls.sc); every test opens its own connections."""

    sidecar_args = ()
    sidecar_env = None

    @classmethod
    def setUpClass(cls):
        cls.sc = Sidecar(cls.sidecar_args, env=cls.sidecar_env)

    @classmethod
    def tearDownClass(cls):
        cls.sc.stop()
        cls.sc.assert_clean()

    def setUp(self):
        self._socks = []

    def tearDown(self):
        for s in self._socks:
            s.close()

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result is not None else 0
        out = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            sc = getattr(self, "sc", None)
            if sc is not None and not os.environ.get("RS_NO_LOG_TAIL"):
                print("---- sidecar log tail (%s) ----\n%s" % (self.id(), sc.log_tail()),
                      file=sys.stderr)
        return out

    def ws(self, path="/ws/events", headers=None, snapshot=True, sc=None, **kw):
        """A connected raw client (closed at tearDown); on /ws/events the snapshot is consumed."""
        sc = sc or self.sc
        w = RawWS.connect(sc.port, path, headers=headers, **kw)
        self._socks.append(w)
        if snapshot and path.startswith("/ws/events"):
            m = w.recv_json()
            self.assertEqual(m["type"], "snapshot")
        return w

    def assertFails(self, w, code, timeout=5.0):
        """The server closes w with code (optionally a tuple of acceptable codes) and then ends the
        TCP connection."""
        got, reason, skipped = w.expect_close(timeout)
        codes = code if isinstance(code, tuple) else (code,)
        self.assertIn(got, codes, "close code %r (reason %r), want %r; before it: %r" %
                      (got, reason, codes, skipped))
        self.assertTrue(w.wait_eof(), "server did not close the TCP connection after close")
        return reason

    def assertAlive(self, w, timeout=5.0):
        """w still works: an unknown message type is answered with an error."""
        w.send_json({"type": "conformance-probe"})
        m, _ = w.recv_until(lambda m: m.get("type") == "error", timeout)
        self.assertEqual(m["error"], "unknown_type")

    def assertServing(self, sc=None):
        """The server answers /healthz and accepts a new WebSocket client."""
        sc = sc or self.sc
        status, _, body = sc.http("/healthz")
        self.assertEqual(status, 200, body)
        w = self.ws(sc=sc)
        self.assertAlive(w)
        w.send_close(1000)
        w.close()


def main():
    """unittest.main, except that RS_SHOW_XFAIL=1 runs the tests marked as expected failures (server
    bugs) as ordinary tests, to see their assertion messages."""
    if os.environ.get("RS_SHOW_XFAIL"):
        mod = sys.modules["__main__"]
        for obj in list(vars(mod).values()):
            if isinstance(obj, type) and issubclass(obj, unittest.TestCase):
                for name, fn in list(vars(obj).items()):
                    if name.startswith("test") and getattr(fn, "__unittest_expecting_failure__",
                                                           False):
                        fn.__unittest_expecting_failure__ = False
    unittest.main(verbosity=2)
