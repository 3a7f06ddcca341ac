"""Tenancy in Redis mode (issue 16), the issue's second scenario: an agent in pod A takes the id of
an agent in pod B under its own project.  Two real sidecars with their own shm dirs (two pods),
one real redis-server, tokens minted with `ringside token`.  The attacker's and the victim's views
are asserted on both instances, and so is ws:agents:{state}."""
import asyncio
import os
import socket
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "auth"))
import websockets  # noqa: E402
from rstest import Sidecar, connect, recv_json, recv_until, run_async  # noqa: E402
from test_auth import mint  # noqa: E402
from test_cluster_e2e import Redis  # noqa: E402


def redis_cmd(port, *args):
    """One command over RESP; returns the decoded reply (bulk strings as str)."""
    req = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(req)
        f = s.makefile("rb")

        def parse():
            line = f.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind in (b"+", b"-"):
                return rest.decode()
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                if n < 0:
                    return None
                data = f.read(n + 2)[:-2]
                return data.decode()
            if kind == b"*":
                return [parse() for _ in range(int(rest))]
            raise AssertionError("bad reply %r" % line)
        return parse()


async def drain(ws, quiet=0.3):
    out = []
    for _ in range(1000):
        try:
            out.append(await recv_json(ws, quiet))
        except asyncio.TimeoutError:
            break
    return out


class Pods(unittest.TestCase):
    """Pod A (project p1) and pod B (project p2): two sidecars, two shm dirs, one Redis."""
    extra = ()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.key = os.path.join(self.tmp.name, "jwt.key")
        with open(self.key, "w") as f:
            f.write(os.urandom(48).hex() + "\n")
        self.fpkey = os.path.join(self.tmp.name, "fingerprint.key")
        with open(self.fpkey, "w") as f:
            f.write(os.urandom(48).hex() + "\n")
        self.redis = Redis()
        common = ["--redis", self.redis.url, "--jwt-key", self.key, "--conn-msg-rate", "0",
                  "--fingerprint-key", self.fpkey] + list(self.extra)
        # pod A runs the attacker's agent (project p1), pod B the victim's (project p2)
        self.a = Sidecar(common + ["--instance-id", "A", "--projects", "p1"], no_auth=False)
        self.b = Sidecar(common + ["--instance-id", "B", "--projects", "p2"], no_auth=False)
        for sc in (self.a, self.b):
            deadline = time.monotonic() + 10
            while not (sc.http("/readyz")[0] == 200 and
                       sc.metrics().get("ringside_cluster_caught_up") == 1):
                self.assertLess(time.monotonic(), deadline, "not ready: " + sc.raw_logs())
                time.sleep(0.05)

    def tearDown(self):
        if any(e for _, e in getattr(self._outcome, "errors", []) if e):
            print("---- A ----\n" + self.a.raw_logs()[-5000:])
            print("---- B ----\n" + self.b.raw_logs()[-5000:])
        self.a.stop()
        self.b.stop()
        self.redis.stop()
        self.tmp.cleanup()

    def tok(self, sub, projects):
        return mint(self.key, sub, projects)


class TenancyCluster(Pods):
    def test_agent_id_taken_in_another_pod_and_project(self):
        attacker, victim = self.tok("u1", "p1"), self.tok("u2", "p2")

        async def go():
            # watchers on both instances first, so the live path is checked too
            wa = await connect(self.a, "/ws/events?token=" + attacker)
            wv_a = await connect(self.a, "/ws/events?token=" + victim)
            wv_b = await connect(self.b, "/ws/events?token=" + victim)
            for ws in (wa, wv_a, wv_b):
                self.assertEqual((await recv_json(ws))["type"], "snapshot")
            # the victim's agent on pod B, then the attacker's agent with the same id on pod A
            self.b.pub("status", "working", "B-SECRET", agent="a1", project="p2")
            self.b.pub("task-start", "T", "B-SECRET-TITLE", agent="a1", project="p2")
            self.b.pub("term", "T", agent="a1", project="p2", stdin=b"B-TERM-SECRET\n")
            self.a.pub("status", "working", "attacker here", agent="a1", project="p1")
            # the attacker also tries to publish for the victim's project from pod A
            self.a.pub("status", "working", "INJECT re-enter your credentials", agent="a1",
                       project="p2")
            for ws in (wv_a, wv_b):
                m, _ = await recv_until(ws, lambda m: m.get("type") == "task_started")
                self.assertEqual((m["project_id"], m["title"]), ("p2", "B-SECRET-TITLE"))
            m, skipped = await recv_until(wa, lambda m: m.get("type") == "agent_status")
            self.assertEqual((m["project_id"], m["detail"]), ("p1", "attacker here"))
            rest = await drain(wa)
            self.assertNotIn("SECRET", str(skipped + rest))
            for ws in (wv_a, wv_b):
                self.assertNotIn("INJECT", str(await drain(ws)))
                self.assertNotIn("attacker", str(await drain(ws, 0.05)))
            for ws in (wa, wv_a, wv_b):
                await ws.close()

            # snapshots on both instances: each user sees exactly its own a1
            for sc in (self.a, self.b):
                async with connect(sc, "/ws/events?token=" + attacker) as ws:
                    snap = await recv_json(ws)
                    self.assertEqual([(x["project_id"], x["agent_id"], x["detail"])
                                      for x in snap["agents"]], [("p1", "a1", "attacker here")])
                async with connect(sc, "/ws/events?token=" + victim) as ws:
                    snap = await recv_json(ws)
                    self.assertEqual([(x["project_id"], x["agent_id"], x["detail"])
                                      for x in snap["agents"]], [("p2", "a1", "B-SECRET")])
                    self.assertEqual([t["title"] for t in snap["agents"][0]["tasks"]],
                                     ["B-SECRET-TITLE"])

            # terminals: the victim reads T on B and relayed through A; the attacker gets 4004
            for sc in (self.b, self.a):
                async with connect(sc, "/ws/terminal/T?token=" + victim) as ws:
                    head = await recv_json(ws)
                    self.assertEqual((head["type"], head["project_id"]), ("terminal", "p2"))
                    data, _ = await recv_until(ws, lambda m: m["type"] == "<binary>")
                    self.assertIn(b"B-TERM-SECRET", data["data"])
                for q in ("", "&agent_id=a1", "&project_id=p2&agent_id=a1"):
                    got = []
                    async with connect(sc, "/ws/terminal/T?token=" + attacker + q) as ws:
                        with self.assertRaises(websockets.exceptions.ConnectionClosed) as cm:
                            while True:
                                got.append(await asyncio.wait_for(ws.recv(), 5))
                    self.assertEqual(cm.exception.rcvd.code, 4004, q)
                    self.assertNotIn("SECRET", str(got))
        run_async(go())

        # ws:agents:{state} holds two agents, each in its own project
        flat = redis_cmd(self.redis.port, "HGETALL", "ws:agents:{state}")
        agents = dict(zip(flat[::2], flat[1::2]))
        self.assertEqual(sorted(agents), ["p1/a1", "p2/a1"])
        self.assertIn('"project_id":"p2"', agents["p2/a1"])
        self.assertIn("B-SECRET", agents["p2/a1"])
        self.assertNotIn("SECRET", agents["p1/a1"])
        # announcements live with the heartbeat
        self.assertEqual(redis_cmd(self.redis.port, "HGET", "ws:instances:{A}:state", "projects"),
                         ",p1,")
        self.assertEqual(redis_cmd(self.redis.port, "HGET", "ws:replay:{events}:projects", "B"),
                         ",p2,")
        # the injection was refused at pod A, counted and logged with its reason
        self.assertEqual(self.a.metrics()[
            'ringside_tenancy_refusals_total{reason="ring_foreign_project"}'], 1)
        line = self.a.wait_log(lambda l: l.get("msg") == "ring refused")
        self.assertEqual((line["project"], line["reason"]), ("p2", "project not in --projects"))
        stream = redis_cmd(self.redis.port, "XRANGE", "ws:replay:{events}", "-", "+")
        self.assertNotIn("INJECT", str(stream))

    def test_redis_refuses_events_for_projects_not_announced(self):
        """An instance whose announced set does not hold the project (here: rewritten in Redis
        behind its back) gets its events refused by the scripts: counted, logged, not delivered."""
        admin = self.tok("admin", "*")
        redis_cmd(self.redis.port, "HSET", "ws:replay:{events}:projects", "A", ",other,")

        async def go():
            async with connect(self.b, "/ws/events?token=" + admin) as ws:
                self.assertEqual((await recv_json(ws))["type"], "snapshot")
                self.a.pub("status", "working", "NOT-ANNOUNCED", agent="a1", project="p1")
                line = self.a.wait_log(lambda l: l.get("msg") == "event refused by the cluster")
                self.assertIsNotNone(line)
                self.assertEqual(line["reason"], "project not announced by this instance")
                self.assertNotIn("NOT-ANNOUNCED", str(await drain(ws)))
        run_async(go())
        self.assertGreaterEqual(self.a.metrics()[
            'ringside_tenancy_refusals_total{reason="origin_project_not_announced"}'], 1)
        # the refusal re-announced the real set
        deadline = time.monotonic() + 5
        while redis_cmd(self.redis.port, "HGET", "ws:replay:{events}:projects", "A") != ",p1,":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)

    def test_fingerprint_key_required_with_auth_in_redis_mode(self):
        import subprocess
        from rstest import binpath
        base = [binpath("ringside"), "--jwt-key", self.key, "--redis", self.redis.url,
                "--projects", "p1"]
        r = subprocess.run(base, capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        self.assertIn(b"--fingerprint-key is required with --redis", r.stderr)
        short = os.path.join(self.tmp.name, "short.key")
        with open(short, "w") as f:
            f.write("too short\n")
        r = subprocess.run(base + ["--fingerprint-key", short], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        self.assertIn(b"--fingerprint-key", r.stderr)

    def test_projects_required_in_redis_mode(self):
        import subprocess
        from rstest import binpath
        r = subprocess.run([binpath("ringside"), "--no-auth", "--redis", self.redis.url],
                           capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        self.assertIn(b"--projects is required with --redis", r.stderr)
        with Sidecar(["--redis", self.redis.url, "--projects", "*", "--instance-id", "C"]) as c:
            line = c.wait_log(lambda l: l.get("msg", "").startswith("--projects '*'"))
            self.assertEqual(line["level"], "warn")


class UserLimitsAcrossInstances(Pods):
    """With one fingerprint key for the cluster, --user-conns counts a user's connections on every
    instance together."""
    extra = ("--user-conns", "2")

    def test_user_conns_hold_across_instances(self):
        tok = self.tok("u1", "p1")

        async def go():
            held = [await connect(self.a, "/ws/events?token=" + tok),
                    await connect(self.b, "/ws/events?token=" + tok)]
            for ws in held:
                self.assertEqual((await recv_json(ws))["type"], "snapshot")
            for sc in (self.a, self.b):
                with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
                    async with connect(sc, "/ws/events?token=" + tok):
                        pass
                self.assertEqual(cm.exception.status_code, 429)
            # another user is not affected
            async with connect(self.b, "/ws/events?token=" + self.tok("u2", "p2")) as ws:
                self.assertEqual((await recv_json(ws))["type"], "snapshot")
            await held[0].close()
            # the freed slot is usable from the other instance (the close releases the lease)
            deadline = time.monotonic() + 5
            while True:
                try:
                    async with connect(self.b, "/ws/events?token=" + tok) as ws:
                        self.assertEqual((await recv_json(ws))["type"], "snapshot")
                        break
                except websockets.exceptions.InvalidStatusCode as e:
                    self.assertEqual(e.status_code, 429)
                    self.assertLess(time.monotonic(), deadline, "slot never freed")
                    await asyncio.sleep(0.05)
            await held[1].close()
        run_async(go())


class AgentsTrimmed(Pods):
    """ws:agents:{state} forgets agents gone longer than the longer of the replay and history
    windows (twice); a live agent's entry stays, refreshed by its owner."""
    extra = ("--replay-window", "4", "--history-window", "4")

    def test_gone_agents_leave_ws_agents(self):
        from test_tenancy_property import Agent
        alive = Agent(self.b.shm_dir, "alive", "p2")
        self.addCleanup(alive.close)
        alive.cmd("status working still here")
        self.a.pub("status", "completed", "done", agent="gone", project="p1")

        def fields():
            flat = redis_cmd(self.redis.port, "HGETALL", "ws:agents:{state}")
            return set(flat[::2])
        deadline = time.monotonic() + 5
        while fields() != {"p1/gone", "p2/alive"}:
            self.assertLess(time.monotonic(), deadline, fields())
            time.sleep(0.05)
        deadline = time.monotonic() + 20
        while "p1/gone" in fields():
            self.assertLess(time.monotonic(), deadline, "gone agent never trimmed")
            time.sleep(0.1)
        self.assertIn("p2/alive", fields())


if __name__ == "__main__":
    unittest.main(verbosity=2)
