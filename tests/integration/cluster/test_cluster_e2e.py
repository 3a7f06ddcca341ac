"""Two real sidecars sharing a real redis-server (issue 7): an agent on A is seen on B with the
right snapshot; a client resumes on the other instance with exactly the missed events; a stale
cursor gets replay_truncated; kill -9 of Redis keeps local delivery going and cross-instance
delivery resumes within 5 s of Redis returning; admission limits are cluster-wide."""
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import websockets  # noqa: E402
from rstest import Sidecar, case_failed, connect, free_port, recv_json, recv_until, run_async  # noqa: E402


def redis_ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Redis:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="rs-redis-")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not redis_ping(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port


def is_status(agent, seq_min=0):
    return lambda m: m.get("type") == "agent_status" and m.get("agent_id") == agent and \
        m.get("seq", 0) > seq_min


class ClusterCase(unittest.TestCase):
    extra = ()

    def setUp(self):
        self.redis = Redis()
        self.a = Sidecar(["--redis", self.redis.url, "--instance-id", "A", "--projects", "*"] + list(self.extra))
        self.b = Sidecar(["--redis", self.redis.url, "--instance-id", "B", "--projects", "*"] + list(self.extra))
        for sc in (self.a, self.b):
            self.wait_ready(sc)

    def wait_ready(self, sc, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sc.http("/readyz")[0] == 200 and sc.metrics().get("ringside_cluster_caught_up") == 1:
                return
            time.sleep(0.05)
        self.fail("sidecar not ready: " + sc.raw_logs()[-3000:])

    def tearDown(self):
        failed = case_failed(self)
        if failed:
            print("---- A ----\n" + self.a.raw_logs()[-4000:])
            print("---- B ----\n" + self.b.raw_logs()[-4000:])
        self.a.stop()
        self.b.stop()
        self.redis.stop()


class TestTerminalRelay(ClusterCase):
    def test_terminal_of_a_task_on_a_watched_from_b(self):
        """C3: the terminal of a task whose agent runs on A is watched from B: scrollback first,
        then live bytes, byte-exact, then the task's end and close 1000."""
        early = bytes(range(256)) * 8 + b"\x1b[31mred\x1b[0m\n"
        late = b"\x1b[32mlive\x1b[0m " + os.urandom(3000)
        self.a.pub("task-start", "tr1", "relayed", agent="ag")
        self.a.pub("term", "tr1", agent="ag", stdin=early)

        async def run():
            # B learns of the task through the cluster (task_started); then a viewer attaches
            async with connect(self.b) as ev:
                await recv_json(ev)
                deadline = time.monotonic() + 5
                while True:
                    status = self.b.upgrade("/ws/terminal/tr1")[0]
                    if status == 101:
                        break
                    self.assertLess(time.monotonic(), deadline, "B never knew task tr1")
                    await asyncio.sleep(0.05)
            async with connect(self.b, "/ws/terminal/tr1") as term:
                head = await recv_json(term)
                self.assertEqual(head["type"], "terminal")
                got = b""
                while len(got) < len(early):
                    m = await asyncio.wait_for(term.recv(), 5)
                    if isinstance(m, bytes):
                        got += m
                self.assertEqual(got, early)
                self.a.pub("term", "tr1", agent="ag", stdin=late)
                while len(got) < len(early) + len(late):
                    m = await asyncio.wait_for(term.recv(), 5)
                    if isinstance(m, bytes):
                        got += m
                self.assertEqual(got, early + late)
                self.a.pub("task-end", "tr1", "completed", "0", agent="ag")
                end = None
                while end is None:
                    m = await asyncio.wait_for(term.recv(), 5)
                    if isinstance(m, str) and '"task_ended"' in m:
                        end = m
                self.assertIn('"exit_code":0', end)
                with self.assertRaises(websockets.exceptions.ConnectionClosed) as cm:
                    await asyncio.wait_for(term.recv(), 5)
                self.assertEqual(cm.exception.rcvd.code, 1000)
        run_async(run())


class TestFanoutAndReplay(ClusterCase):
    # bursts of one agent's statuses are the point here: no per-agent budget coalescing them
    extra = ("--agent-status-rate", "0")

    def test_agent_on_a_seen_on_b_with_snapshot(self):
        async def run():
            async with connect(self.b) as wsb:
                snap = await recv_json(wsb)
                self.assertEqual(snap["type"], "snapshot")
                self.a.pub("status", "working", "reading the repo", agent="a1")
                m, _ = await recv_until(wsb, is_status("a1"))
                self.assertEqual(m["new_status"], "working")
                self.assertGreater(m["seq"], 0)
                self.assertTrue(m["epoch"])
            async with connect(self.b) as wsb2:
                snap = await recv_json(wsb2)
                agents = {a["agent_id"]: a for a in snap.get("agents", [])}
                self.assertIn("a1", agents, snap)
                self.assertEqual(agents["a1"]["status"], "working")
        run_async(run())

    def test_resume_on_other_instance_gets_exactly_the_missed_events(self):
        async def run():
            async with connect(self.a) as wsa:
                await recv_json(wsa)
                self.a.pub("status", "idle", "start", agent="a1")
                m, _ = await recv_until(wsa, is_status("a1"))
                last, epoch = m["seq"], m["epoch"]
            statuses = ["working", "idle"]
            for i in range(100):
                self.a.pub("status", statuses[i % 2], "step %d" % i, agent="a1")
            # B must have the 100 events in the stream; then resume there
            url = "/ws/events?last_sequence_id=%d&epoch=%s" % (last, epoch)
            async with connect(self.b, url) as wsb:
                got = []
                deadline = time.monotonic() + 10
                while len(got) < 100 and time.monotonic() < deadline:
                    m = await recv_json(wsb, max(0.1, deadline - time.monotonic()))
                    self.assertNotEqual(m.get("type"), "replay_truncated", m)
                    if m.get("type") == "agent_status":
                        got.append(m)
                self.assertEqual([m["seq"] for m in got], list(range(last + 1, last + 101)))
                self.assertEqual([m["detail"] for m in got], ["step %d" % i for i in range(100)])
                # then live events
                self.a.pub("status", "stuck", "live", agent="a1")
                m, _ = await recv_until(wsb, is_status("a1", last + 100))
                self.assertEqual(m["seq"], last + 101)
                self.assertEqual(m["detail"], "live")
        run_async(run())

    def test_long_resume_on_other_instance_is_paced_not_closed(self):
        """1,500 missed events (15x the default --send-queue, past the 4x critical cap, three
        replay pages): the resume on B delivers every one in order, then live events, instead
        of closing the client 4008 at once (which failed its every retry: chaos_sidecar_kill)."""
        async def run():
            async with connect(self.a) as wsa:
                await recv_json(wsa)
                self.a.pub("status", "idle", "start", agent="lr")
                m, _ = await recv_until(wsa, is_status("lr"))
                last, epoch = m["seq"], m["epoch"]
            # every event is in the stream once an observer on A sees the last one
            async with connect(self.a) as wsa:
                await recv_json(wsa)
                pub = subprocess.run(
                    [os.path.join(os.environ.get("RINGSIDE_BIN", ""), "ringside-bench-pub"),
                     "--mode", "status", "--agents", "1", "--rate", "1000", "--count", "1500",
                     "--shm-dir", self.a.shm_dir, "--project", "p1", "--agent", "lr"],
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
                self.assertEqual(pub.returncode, 0, pub.stderr)
                await recv_until(wsa, is_status("lr", last + 1499), timeout=20)
            url = "/ws/events?last_sequence_id=%d&epoch=%s" % (last, epoch)
            async with connect(self.b, url) as wsb:
                got = []
                deadline = time.monotonic() + 20
                while len(got) < 1500 and time.monotonic() < deadline:
                    m = await recv_json(wsb, max(0.1, deadline - time.monotonic()))
                    self.assertNotEqual(m.get("type"), "replay_truncated", m)
                    if m.get("type") == "agent_status":
                        got.append(m["seq"])
                self.assertEqual(got, list(range(last + 1, last + 1501)))
                self.a.pub("status", "stuck", "live", agent="lr")
                m, _ = await recv_until(wsb, is_status("lr", last + 1500))
                self.assertEqual((m["seq"], m["detail"]), (last + 1501, "live"))
        run_async(run())

    def test_stale_cursor_gets_replay_truncated(self):
        async def run():
            self.a.pub("status", "working", agent="a1")
            async with connect(self.b, "/ws/events?last_sequence_id=1&epoch=0000000000000000") as ws:
                # cluster mode: snapshot, then replay_truncated and a fresh snapshot
                m, _ = await recv_until(ws, lambda m: m.get("type") == "replay_truncated")
                m = await recv_json(ws)
                self.assertEqual(m["type"], "snapshot")
        run_async(run())

    def test_redis_kill_local_continues_cross_resumes(self):
        async def run():
            async with connect(self.a) as wsa, connect(self.b) as wsb:
                await recv_json(wsa)
                await recv_json(wsb)
                self.redis.kill()
                time.sleep(0.3)
                self.a.pub("status", "working", "during outage", agent="a1")
                m, _ = await recv_until(wsa, lambda m: m.get("type") == "agent_status" and
                                        m.get("detail") == "during outage")
                self.redis.start()
                t0 = time.monotonic()
                seen = False
                i = 0
                while not seen and time.monotonic() - t0 < 8:
                    self.a.pub("status", ["idle", "working"][i % 2], "after %d" % i, agent="a1")
                    i += 1
                    try:
                        await recv_until(wsb, lambda m: m.get("type") == "agent_status" and
                                         str(m.get("detail", "")).startswith("after"), timeout=0.5)
                        seen = True
                    except asyncio.TimeoutError:
                        pass
                elapsed = time.monotonic() - t0
                print("cross-instance delivery resumed %.2f s after Redis returned" % elapsed)
                self.assertTrue(seen)
                self.assertLess(elapsed, 5.0)
        run_async(run())


class TestClusterWideLimits(ClusterCase):
    extra = ("--conn-rate", "2")

    def test_429_counts_both_instances(self):
        self.assertEqual(self.a.upgrade("/ws/events")[0], 101)
        self.assertEqual(self.b.upgrade("/ws/events")[0], 101)
        status, headers, _ = self.a.upgrade("/ws/events")
        self.assertEqual(status, 429)
        self.assertGreaterEqual(int(headers["retry-after"]), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
