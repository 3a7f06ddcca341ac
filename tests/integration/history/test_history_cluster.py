"""Task history in Redis mode (issue #19): two real sidecars and a real redis-server.  A task that
ran on A is listed in B's snapshot and its output is served by B from Redis (ws:output:{PROJECT/AGENT}:
TASK, TTL --history-window, at most --history-tail bytes); a gone key closes 4010, Redis down
1011 on B while A still serves its own from memory."""
import asyncio
import os
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
import websockets  # noqa: E402
from rstest import Sidecar, case_failed, connect, recv_json, recv_until, run_async  # noqa: E402
from test_cluster_e2e import Redis  # noqa: E402


def redis_cli(r, *args):
    return subprocess.run(["/usr/bin/redis-cli", "-p", str(r.port), "--raw"] + list(args),
                          capture_output=True, timeout=10, check=True).stdout


async def read_terminal(sc, path):
    """(header, bytes, text messages, close code) of a terminal that ends by itself."""
    async with connect(sc, path) as ws:
        hdr = None
        data, texts = b"", []
        try:
            while True:
                m = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(m, bytes):
                    data += m
                elif hdr is None:
                    import json
                    hdr = json.loads(m)
                else:
                    texts.append(m)
        except websockets.ConnectionClosed as e:
            return hdr, data, texts, e.code


class HistoryClusterTest(unittest.TestCase):
    def setUp(self):
        self.redis = Redis()
        args = ["--redis", self.redis.url, "--projects", "*", "--history-tail", "1000", "--history-window", "600"]
        self.a = Sidecar(args + ["--instance-id", "A"])
        self.b = Sidecar(args + ["--instance-id", "B"])
        for sc in (self.a, self.b):
            deadline = time.monotonic() + 5
            while not (sc.http("/readyz")[0] == 200 and
                       sc.metrics().get("ringside_cluster_caught_up") == 1):
                self.assertLess(time.monotonic(), deadline, "not ready: " + sc.raw_logs()[-2000:])
                time.sleep(0.05)

    def tearDown(self):
        if case_failed(self):
            print("---- A ----\n" + self.a.raw_logs()[-4000:])
            print("---- B ----\n" + self.b.raw_logs()[-4000:])
        self.a.stop()
        self.b.stop()
        self.redis.stop()

    def fail_on_a(self, task, output):
        """Runs a failing task on A; returns once B has seen it end."""
        async def run():
            async with connect(self.b) as ev:
                await recv_json(ev)
                self.a.pub("task-start", task, "build", agent="ag")
                self.a.pub("term", task, agent="ag", stdin=output)
                self.a.pub("task-end", task, "failed", "3", agent="ag")
                await recv_until(ev, lambda m: m.get("type") == "task_ended" and
                                 m.get("task_id") == task, timeout=10)
        run_async(run())

    def snapshot(self, sc):
        async def run():
            async with connect(sc) as ws:
                return await recv_json(ws)
        return run_async(run())

    def test_output_of_a_task_on_a_served_by_b(self):
        out = b"\x1b[31merror: boom\x1b[0m\r\n" + os.urandom(2000)
        self.fail_on_a("t1", out)
        ag = next(a for a in self.snapshot(self.b)["agents"] if a["agent_id"] == "ag")
        h = ag["history"][0]
        self.assertEqual((h["task_id"], h["state"], h["exit_code"], h["output_retained"]),
                         ("t1", "failed", 3, True))
        # Stored at task end with the window as TTL and the tail cap as size cap.
        ttl = int(redis_cli(self.redis, "TTL", "ws:output:{p1/ag}:t1"))
        self.assertTrue(0 < ttl <= 600, ttl)
        self.assertLessEqual(int(redis_cli(self.redis, "STRLEN", "ws:output:{p1/ag}:t1")), 1000 + 64)
        for sc in (self.b, self.a):
            hdr, data, texts, code = run_async(read_terminal(sc, "/ws/terminal/t1"))
            self.assertEqual((hdr["ended"], hdr["scrollback_bytes"], hdr["output_bytes"]),
                             (True, 1000, len(out)))
            self.assertEqual(data, out[-1000:])
            self.assertEqual(len(texts), 1)
            self.assertIn('"outcome":"failed"', texts[0])
            self.assertEqual(code, 1000)
        self.assertEqual(self.b.metrics()['ringside_history_redis_total{op="fetch",result="ok"}'], 1)
        self.assertEqual(self.a.metrics()['ringside_history_redis_total{op="store",result="ok"}'], 1)

    def test_gone_key_is_expired_and_redis_down_is_retryable(self):
        self.fail_on_a("t2", b"some output\r\n")
        redis_cli(self.redis, "DEL", "ws:output:{p1/ag}:t2")
        self.assertEqual(run_async(read_terminal(self.b, "/ws/terminal/t2"))[3], 4010)
        self.fail_on_a("t3", b"more output\r\n")
        self.redis.kill()
        deadline = time.monotonic() + 10
        while self.b.metrics().get("ringside_cluster_caught_up") == 1:
            self.assertLess(time.monotonic(), deadline, "B never noticed Redis was gone")
            time.sleep(0.05)
        self.assertEqual(run_async(read_terminal(self.b, "/ws/terminal/t3"))[3], 1011)
        # The owner serves its own from memory, Redis or not.
        hdr, data, _, code = run_async(read_terminal(self.a, "/ws/terminal/t3"))
        self.assertEqual((data, code), (b"more output\r\n", 1000))


if __name__ == "__main__":
    unittest.main()
