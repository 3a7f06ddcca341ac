"""Walking skeleton: one agent event reaches a WebSocket client, health endpoints answer, bad
start-up input gets one clear line and a non-zero exit (issue 2)."""
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from rstest import (SidecarCase, binpath, connect, recv_json, recv_until, run_async)  # noqa: E402

B2_FIELDS = ("type", "agent_id", "project_id", "timestamp", "ts_ns")


class EndToEnd(SidecarCase):
    def test_status_reaches_client_within_a_second(self):
        async def go():
            async with connect(self.sc) as ws:
                snap = await recv_json(ws)
                self.assertEqual(snap["type"], "snapshot")
                t0 = time.monotonic()
                self.sc.pub("status", "working", "reading the repo")
                ev, _ = await recv_until(ws, lambda m: m["type"] == "agent_status", timeout=1.0)
                self.assertLess(time.monotonic() - t0, 1.0)
                for f in B2_FIELDS:
                    self.assertIn(f, ev)
                self.assertEqual(ev["agent_id"], "a1")
                self.assertEqual(ev["project_id"], "p1")
                self.assertEqual(ev["new_status"], "working")
                self.assertIsNone(ev["old_status"])
                self.assertEqual(ev["detail"], "reading the repo")
                self.assertRegex(ev["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
                self.assertGreater(ev["ts_ns"], 1.7e18)
                self.assertIsInstance(ev["seq"], int)
                self.sc.pub("status", "completed")
                ev2, _ = await recv_until(ws, lambda m: m["type"] == "agent_status")
                self.assertEqual(ev2["old_status"], "working")
                self.assertEqual(ev2["new_status"], "completed")
                self.assertEqual(ev2["seq"], ev["seq"] + 1)
        run_async(go())

    def test_late_joiner_gets_snapshot(self):
        self.sc.pub("status", "stuck", "waiting for review", agent="a2", project="p9")
        # The event went through the hub once a first client sees it; then a late joiner connects.
        async def go():
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                async with connect(self.sc) as ws:
                    snap = await recv_json(ws)
                    agents = {a["agent_id"]: a for a in snap["agents"]}
                    if "a2" in agents and agents["a2"]["status"] == "stuck":
                        self.assertEqual(agents["a2"]["project_id"], "p9")
                        self.assertEqual(agents["a2"]["detail"], "waiting for review")
                        return
            self.fail("snapshot never showed a2 as stuck")
        run_async(go())

    def test_health_endpoints(self):
        status, _, body = self.sc.http("/healthz")
        self.assertEqual((status, body), (200, b'{"status":"ok"}\n'))
        self.assertEqual(self.sc.http("/livez")[0], 200)
        self.assertEqual(self.sc.http("/readyz")[0], 200)
        status, headers, body = self.sc.http("/no/such/path")
        self.assertEqual(status, 404)
        self.assertIn(b'"error":"not_found"', body)
        self.assertTrue(headers["Content-Type"].startswith("application/json"))
        m = self.sc.metrics()
        self.assertIn("ws_updates_clients", m)

    def test_clients_gauge_moves(self):
        async def go():
            async with connect(self.sc) as ws:
                await recv_json(ws)
                self.assertEqual(self.sc.metrics()["ws_updates_clients"], 1)
            deadline = time.monotonic() + 3
            while self.sc.metrics()["ws_updates_clients"] != 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertEqual(self.sc.metrics()["ws_updates_clients"], 0)
        run_async(go())


def run_ringside(*args):
    return subprocess.run([binpath("ringside")] + list(args), capture_output=True, timeout=15,
                          stdin=subprocess.DEVNULL)


class BadInput(unittest.TestCase):
    def assert_one_line(self, r, code, *needles):
        self.assertEqual(r.returncode, code, r.stderr)
        lines = r.stderr.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        for n in needles:
            self.assertIn(n, lines[0])

    def test_unknown_option(self):
        r = run_ringside("--no-auth", "--bogus", "1")
        self.assert_one_line(r, 2, "unknown option '--bogus'", "--help")

    def test_bad_value(self):
        r = run_ringside("--no-auth", "--heartbeat-interval", "soon")
        self.assert_one_line(r, 2, "--heartbeat-interval", "not an integer")

    def test_missing_shm_dir(self):
        r = run_ringside("--no-auth", "--listen", "127.0.0.1:0", "--shm-dir", "/nonexistent/rs")
        self.assert_one_line(r, 1, "--shm-dir /nonexistent/rs", "mkdir -p")

    def test_unwritable_shm_dir(self):
        with tempfile.TemporaryDirectory() as d:
            os.chmod(d, 0o500)
            # root bypasses permissions: drop to nobody when we are root
            pre = []
            if os.getuid() == 0:
                os.chmod(d, 0o755)
                pre = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            r = subprocess.run(pre + [binpath("ringside"), "--no-auth", "--listen",
                                      "127.0.0.1:0", "--shm-dir", d],
                               capture_output=True, timeout=15, stdin=subprocess.DEVNULL)
            self.assert_one_line(r, 1, "--shm-dir", "not readable and writable")

    def test_port_in_use(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with tempfile.TemporaryDirectory() as d:
            r = run_ringside("--no-auth", "--listen", "127.0.0.1:%d" % port, "--shm-dir", d)
        s.close()
        self.assert_one_line(r, 1, "address already in use", "another port")

    def test_auth_required_without_key(self):
        r = run_ringside("--listen", "127.0.0.1:0")
        self.assert_one_line(r, 2, "--jwt-key", "--no-auth")

    def test_help_lists_every_option(self):
        r = run_ringside("--help")
        self.assertEqual(r.returncode, 0)
        out = r.stdout.decode()
        for opt in ("--listen", "--shm-dir", "--redis", "--instance-id", "--jwt-key", "--jwt-alg",
                    "--no-auth", "--allowed-origins", "--dashboard", "--log-level",
                    "--heartbeat-interval", "--heartbeat-misses", "--drain-timeout",
                    "--replay-window", "--max-message", "--send-queue", "--conn-msg-rate",
                    "--global-msg-rate", "--conn-rate", "--max-connections", "--user-conns"):
            self.assertIn(opt, out)
        self.assertIn("RINGSIDE_SHM_DIR", out)

    def test_env_and_flag_precedence(self):
        env = dict(os.environ, RINGSIDE_HEARTBEAT_INTERVAL="bad")
        r = subprocess.run([binpath("ringside"), "--no-auth"], env=env, capture_output=True,
                           timeout=15, stdin=subprocess.DEVNULL)
        self.assert_one_line(r, 2, "RINGSIDE_HEARTBEAT_INTERVAL")


if __name__ == "__main__":
    unittest.main(verbosity=2)
