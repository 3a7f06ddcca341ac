"""Abuse tests of issue 17 (bounds): each attack, scaled to seconds, against the real sidecar.
Each asserts the cap holds, the metric moves, the log line names the reason, and that a
well-behaved dashboard connected alongside keeps receiving on time.  (REQUIREMENTS A3, B12, D.)"""
import base64
import json
import os
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from boundslib import Dashboard, RawWS, all_logs_json, metric, wait_until  # noqa: E402
from conflib import Sidecar, binpath, main  # noqa: E402

import rstest  # noqa: E402
import subprocess  # noqa: E402


class LogForging(unittest.TestCase):
    """Issue 17 item 6: strings from a ring (its file name, its identity) cannot forge log lines."""

    def setUp(self):
        self.sc = Sidecar()
        self.dash = Dashboard(self.sc)

    def tearDown(self):
        self.dash.close()
        self.sc.stop()
        self.sc.assert_clean()

    def test_forged_ring_file_name_is_escaped(self):
        name = 'evil","level":"error","msg":"forged"}\n{"x":"\\.ring'
        before = metric(self.sc, "ringside_rings_rejected_total")
        with open(os.path.join(self.sc.shm_dir, name), "wb") as f:
            f.write(b"\x00" * 8192)  # not a ring: rejected at validation
        entry = self.sc.wait_log(lambda l: l.get("msg") == "ring rejected" and
                                 l.get("path", "").endswith(name), timeout=10)
        self.assertIsNotNone(entry, "no 'ring rejected' line carrying the exact file name")
        self.assertEqual(all_logs_json(self.sc), [], "a log line is not JSON (forged)")
        self.assertFalse(any(l.get("msg") == "forged" for l in self.sc.logs))
        self.assertEqual(metric(self.sc, "ringside_rings_rejected_total"), before + 1)
        self.dash.assert_receives(self)


def jwt_exp(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]


class ExpiryLeeway(unittest.TestCase):
    """Issue 17 item 7: a token inside --jwt-leeway is accepted and then not closed 4001 at once;
    the connection lapses at exp + leeway, the same instant a new handshake would be refused."""

    LEEWAY = 3

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.key = os.path.join(self.tmp.name, "jwt.key")
        with open(self.key, "w") as f:
            f.write(os.urandom(48).hex() + "\n")
        self.sc = rstest.Sidecar(["--jwt-key", self.key, "--jwt-leeway", str(self.LEEWAY)],
                                 no_auth=False)

    def tearDown(self):
        self.sc.stop()
        self.tmp.cleanup()

    def mint(self, ttl):
        r = subprocess.run([binpath("ringside"), "token", "--jwt-key", self.key, "--sub", "u",
                            "--projects", "*", "--ttl", str(ttl)],
                           capture_output=True, timeout=10, check=True)
        return r.stdout.decode().strip()

    def test_token_inside_leeway_not_closed_at_once(self):
        tok = self.mint(1)
        exp = jwt_exp(tok)
        # The token's exp passes (the event this test is about), well inside the leeway.
        self.assertTrue(wait_until(lambda: time.time() >= exp + 0.2, timeout=5))
        w = RawWS.connect(self.sc.port, "/ws/events?token=" + tok)
        self.assertEqual(w.recv_json()["type"], "snapshot")
        opened = time.time()
        # Not closed right after the snapshot: the leeway still runs for about 2 s.
        m = w.recv_message(timeout=max(0.0, exp + self.LEEWAY - 1.0 - time.time()))
        self.assertFalse(m is not None and m[0] == 0x8, "closed inside the leeway: %r" % (m,))
        code, _, _ = w.expect_close(timeout=self.LEEWAY + 3)
        self.assertEqual(code, 4001)
        self.assertGreaterEqual(time.time(), exp + self.LEEWAY - 1.0,
                                "closed %.2f s after opening" % (time.time() - opened))
        entry = self.sc.wait_log(lambda l: l.get("event") == "disconnect" and
                                 l.get("reason") == "token_expired")
        self.assertIsNotNone(entry)
        w.close()


class DoorbellAndRingTruncation(unittest.TestCase):
    """Issue 17 item 5: nothing another process of the pod does to the shared files kills an SDK
    user.  `truncate -s 0` of the doorbell, then of the agent's own ring, under a running
    `ringside-run`: the command runs to its end and its exit status is unchanged."""

    def setUp(self):
        self.sc = Sidecar()
        self.dash = Dashboard(self.sc)

    def tearDown(self):
        self.dash.close()
        self.sc.stop()
        self.sc.assert_clean()

    def test_doorbell_mode(self):
        mode = os.stat(os.path.join(self.sc.shm_dir, "doorbell")).st_mode & 0o777
        self.assertEqual(mode, 0o660, "the doorbell must not be writable by everyone")

    def test_truncated_doorbell_and_ring_do_not_kill_the_agent(self):
        env = dict(os.environ, RINGSIDE_SHM_DIR=self.sc.shm_dir)
        script = "read x; echo after-$x; read y; echo done-$y; exit 7"
        p = subprocess.Popen([binpath("ringside-run"), "--agent", "victim", "--project", "p1",
                              "--task", "t1", "--", "sh", "-c", script],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        try:
            attached = self.sc.wait_log(lambda l: l.get("msg") == "agent ring attached" and
                                        l.get("agent") == "victim", timeout=10)
            self.assertIsNotNone(attached)
            ring = attached["path"]
            os.truncate(os.path.join(self.sc.shm_dir, "doorbell"), 0)
            p.stdin.write(b"1\n")
            p.stdin.flush()
            # The agent's output after the truncation reaches the sidecar (its doorbell store did
            # not kill it): the task's terminal carries "after-1".
            before = metric(self.sc, "ringside_rings_quarantined_total")
            os.truncate(ring, 0)
            out, err = p.communicate(b"2\n", timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 7, "exit status changed (killed?): %r %r" % (out, err))
        self.assertIn(b"after-1", out)
        self.assertIn(b"done-2", out)
        # The sidecar drops the truncated ring with a reason, and keeps serving.
        entry = self.sc.wait_log(lambda l: l.get("msg") == "ring quarantined" and
                                 l.get("agent") == "victim", timeout=10)
        self.assertIsNotNone(entry, "no 'ring quarantined' line for the truncated ring")
        self.assertGreater(metric(self.sc, "ringside_rings_quarantined_total"), before)
        self.dash.assert_receives(self)


if __name__ == "__main__":
    main()
