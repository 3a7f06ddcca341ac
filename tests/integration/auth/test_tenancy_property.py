"""Tenancy property test (issue 16), embedded and Redis mode.

Random users with random rights and filters, random agents whose ids collide across projects and
pods, thousands of random events, rogue rings for projects outside a pod's --projects, token
refreshes that narrow rights, reconnect-with-replay, and terminals of tasks that share one id
everywhere.  Checked: every message a client receives is one it may see (zero leaks), every event
it may see arrives exactly once (zero misses), snapshots carry only visible agents with their own
state, and a terminal is served only for a visible (project, agent), else 4004.

Real processes: sidecars, rs_agent (the SDK through a scriptable client), redis-server.
Seed: RINGSIDE_SEED (default 16).  Run one mode: test_tenancy_property.py Embedded|Cluster
"""
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
import rstest  # noqa: E402
import websockets  # noqa: E402
from rstest import Sidecar, connect, recv_json, run_async  # noqa: E402
from test_auth import mint  # noqa: E402

RS_AGENT = os.environ.get("RS_AGENT") or os.path.join(rstest.BIN, "delivery_rs_agent")
PROJECTS = ["p0", "p1", "p2", "p3"]
AGENT_IDS = ["x", "y"]
PERSISTED = ("agent_status", "task_started", "task_ended")
ARGS = ["--conn-msg-rate", "0", "--heartbeat-interval", "300", "--send-queue", "10000",
        "--agent-status-rate", "0"]  # the budget is tested in test_tenancy.py


class Agent:
    """One rs_agent process (one ring): commands on stdin, "ok RC" answers on stdout."""

    def __init__(self, shm_dir, agent, project):
        self.proc = subprocess.Popen([RS_AGENT, "--shm-dir", shm_dir, "--agent", agent,
                                      "--project", project], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._answer() == 0, "rs_agent did not open its ring"

    def _answer(self):
        line = self.proc.stdout.readline().decode()
        if not line.startswith("ok "):
            raise AssertionError("rs_agent answered %r" % line)
        return int(line.split()[1])

    def cmd(self, line, data=b""):
        self.proc.stdin.write(line.encode() + b"\n" + data)
        self.proc.stdin.flush()
        rc = self._answer()
        assert rc == 0, "%s: rc %d" % (line, rc)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


class Client:
    """One dashboard connection and everything it received, with the rights it had."""

    def __init__(self, name, rights, flt, sc):
        self.name, self.rights, self.flt, self.sc = name, rights, flt, sc
        self.got = []          # (unique id, project, agent) of persisted events, all connections
        self.msgs = []         # every message with the visible set in force when it arrived
        self.max_seq = 0
        self.epoch = ""
        self.ws = None
        self.task = None
        self.authenticated = asyncio.Event()

    def visible(self):
        if self.flt is None:
            return set(self.rights)
        return set(self.rights) & set(self.flt)

    async def open(self, token, resume=False):
        q = "?token=" + token
        if self.flt:
            q += "&project_ids=" + ",".join(sorted(self.flt))
        if resume:
            q += "&last_sequence_id=%d&epoch=%s" % (self.max_seq, self.epoch)
        self.ws = await connect(self.sc, "/ws/events" + q, max_queue=None)
        self.task = asyncio.ensure_future(self.read())

    async def read(self):
        try:
            async for raw in self.ws:
                m = json.loads(raw)
                self.msgs.append((m, frozenset(self.visible())))
                if m.get("seq"):
                    self.max_seq = max(self.max_seq, m["seq"])
                    self.epoch = m.get("epoch", self.epoch)
                if m["type"] in PERSISTED:
                    uid = m.get("detail") or m.get("title") or "%s:%s" % (m["task_id"],
                                                                          m["outcome"])
                    self.got.append((uid, m["project_id"], m["agent_id"]))
                elif m["type"] == "authenticated":
                    self.authenticated.set()
        except websockets.exceptions.ConnectionClosed:
            pass

    async def close(self):
        await self.ws.close()
        await self.task


class PropertyBase(unittest.TestCase):
    n_events = 4000

    def pods(self):
        """{pod name: (sidecar, projects it may publish for)}"""
        raise NotImplementedError

    def setUp(self):
        self.rnd = random.Random(int(os.environ.get("RINGSIDE_SEED", "16")))
        self.tmp = tempfile.TemporaryDirectory()
        self.key = os.path.join(self.tmp.name, "jwt.key")
        with open(self.key, "w") as f:
            f.write(os.urandom(48).hex() + "\n")
        self.sidecars = []
        self.agents = {}

    def tearDown(self):
        for a in self.agents.values():
            a.close()
        if any(e for _, e in getattr(self._outcome, "errors", []) if e):
            for sc in self.sidecars:
                print("---- sidecar ----\n" + sc.raw_logs()[-6000:])
        for sc in self.sidecars:
            sc.stop()
        self.tmp.cleanup()

    def sidecar(self, extra, shm_dir=None):
        sc = Sidecar(["--jwt-key", self.key] + ARGS + extra, shm_dir=shm_dir, no_auth=False)
        self.sidecars.append(sc)
        return sc

    def tok(self, name, rights):
        return mint(self.key, name, ",".join(sorted(rights)))

    def test_zero_leaks_zero_misses(self):
        rnd = self.rnd
        pods = self.pods()
        legit = [(pod, p, a) for pod, (_, ps) in sorted(pods.items()) for p in ps
                 for a in AGENT_IDS]
        rogue = [(pod, p, "x") for pod, (_, ps) in sorted(pods.items())
                 for p in PROJECTS if p not in ps]
        self.assertTrue(rogue, "each pod must have a project it may not publish for")
        for key in legit + rogue:
            self.agents[key] = Agent(pods[key[0]][0].shm_dir, key[2], key[1])
        owner = {}   # unique id -> (project, agent)
        sent = []    # (phase, unique id, project, agent)
        running = {}  # (pod, project, agent) -> running task ids

        def publish(phase, n0, n):
            for i in range(n0, n0 + n):
                key = rnd.choice(legit)
                a = self.agents[key]
                r = rnd.random()
                tasks = running.setdefault(key, [])
                if r < 0.1 and tasks:
                    t = tasks.pop(rnd.randrange(len(tasks)))
                    a.cmd("end %s completed 0" % t)
                    uid = "%s:completed" % t
                elif r < 0.2:
                    t = "t%d" % i
                    tasks.append(t)
                    uid = "T%d" % i
                    a.cmd("start %s %s" % (t, uid))
                else:
                    uid = "e%d" % i
                    a.cmd("status %s %s" % (rnd.choice(["working", "idle", "stuck"]), uid))
                owner[uid] = (key[1], key[2])
                sent.append((phase, uid, key[1], key[2]))
                if i % 97 == 0:
                    rk = rnd.choice(rogue)
                    self.agents[rk].cmd("status working ROGUE%d re-enter your credentials" % i)

        async def settle(clients, phases, timeout=30):
            """Waits until every client has every event it may see of `phases`."""
            deadline = time.monotonic() + timeout
            for c in clients:
                want = {(u, p, a) for ph, u, p, a in sent if ph in phases and p in c.want[ph]}
                while not want <= set(c.got) and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                missing = want - set(c.got)
                self.assertFalse(missing, "%s (rights %s filter %s) missed %d events, e.g. %s"
                                 % (c.name, c.rights, c.flt, len(missing), sorted(missing)[:5]))
            await asyncio.sleep(0.3)  # room for anything that should not come

        async def go():
            users = []
            for i in range(10):
                rights = set(rnd.sample(PROJECTS, rnd.randint(1, 3))) if i else set(PROJECTS)
                flt = None
                if rnd.random() < 0.4:
                    flt = set(rnd.sample(sorted(rights), rnd.randint(1, len(rights))))
                c = Client("u%d" % i, rights, flt, rnd.choice(self.sidecars))
                c.want = {}
                await c.open(self.tok(c.name, rights))
                users.append(c)
            while not all(c.msgs for c in users):
                await asyncio.sleep(0.02)
            # phase 1
            for c in users:
                c.want[1] = c.visible()
            half = self.n_events // 2
            await asyncio.to_thread(publish, 1, 0, half)
            await settle(users, {1})
            # refreshes that narrow rights; disconnections
            for c in users[1:]:
                if rnd.random() < 0.5:
                    c.rights = set(rnd.sample(sorted(c.rights), rnd.randint(1, len(c.rights))))
                    if c.flt is not None:
                        c.flt = c.flt & c.rights or set()
                    c.authenticated.clear()
                    await c.ws.send(json.dumps({"type": "auth",
                                                "token": self.tok(c.name, c.rights)}))
                    await asyncio.wait_for(c.authenticated.wait(), 5)
            gone = [c for c in users if rnd.random() < 0.4]
            for c in gone:
                await c.close()
            for c in users:
                c.want[2] = c.visible() if c.flt != set() else set()
            quarter = self.n_events // 4
            await asyncio.to_thread(publish, 2, half, quarter)
            for c in gone:  # reconnect with replay (the filter keeps what the rights allow)
                if c.flt == set():
                    c.flt = None
                    c.want[2] = set(c.rights)
                c.sc = rnd.choice(self.sidecars)
                await c.open(self.tok(c.name, c.rights), resume=True)
            await asyncio.to_thread(publish, 2, half + quarter, self.n_events - half - quarter)
            await settle(users, {2})
            # zero leaks, exactly once, snapshots only of visible agents with their own state
            for c in users:
                self.assertEqual(len(c.got), len(set(c.got)), "%s got duplicates" % c.name)
                for m, vis in c.msgs:
                    text = json.dumps(m)
                    self.assertNotIn("ROGUE", text, c.name)
                    if m["type"] in PERSISTED or m["type"] == "progress":
                        self.assertIn(m["project_id"], vis, "%s leak: %s" % (c.name, text))
                    if m["type"] == "snapshot":
                        for ag in m["agents"]:
                            self.assertIn(ag["project_id"], vis, "%s leak: %s" % (c.name, text))
                            if ag["detail"]:
                                self.assertEqual(owner[ag["detail"]],
                                                 (ag["project_id"], ag["agent_id"]), text)
                            for t in ag["tasks"]:
                                self.assertEqual(owner[t["title"]],
                                                 (ag["project_id"], ag["agent_id"]), text)
            # terminals: task "T" in every legit (project, agent) of every pod
            for key in legit:
                a = self.agents[key]
                a.cmd("start T term")
                data = ("TERM[%s/%s]\n" % (key[1], key[2])).encode()
                a.cmd("write T %d" % len(data), data)
            want_term = {(p, a) for _, p, a in legit}
            deadline = time.monotonic() + 10
            for c in users[:1]:  # the admin sees every terminal once they are all known
                for p, a in sorted(want_term):
                    while True:
                        got, code = await self.terminal(c, p, a)
                        if b"TERM[%s/%s]" % (p.encode(), a.encode()) in got:
                            break
                        self.assertLess(time.monotonic(), deadline, "terminal %s/%s" % (p, a))
                        await asyncio.sleep(0.05)
            for c in users:
                for _ in range(4):
                    p, a = rnd.choice(PROJECTS), rnd.choice(AGENT_IDS)
                    got, code = await self.terminal(c, p, a)
                    mine = b"TERM[%s/%s]" % (p.encode(), a.encode())
                    if p in c.rights and (p, a) in want_term:
                        self.assertIn(mine, got, "%s terminal %s/%s" % (c.name, p, a))
                    else:
                        self.assertEqual(code, 4004, "%s terminal %s/%s" % (c.name, p, a))
                    self.assertNotIn(b"TERM[", got.replace(mine, b""),
                                     "%s terminal %s/%s" % (c.name, p, a))
                got, code = await self.terminal(c, "", "")
                for p in PROJECTS:
                    if p not in c.rights:
                        self.assertNotIn(("TERM[%s/" % p).encode(), got, c.name)
            for c in users:
                if not c.task.done():
                    await c.close()
            return sum(len(c.got) for c in users)

        deliveries = run_async(go())
        print("%s: %d events, %d checked deliveries" % (type(self).__name__, len(sent),
                                                          deliveries))
        refused = sum(sc.metrics().get(
            'ringside_tenancy_refusals_total{reason="ring_foreign_project"}', 0)
            for sc in self.sidecars)
        self.assertGreaterEqual(refused, 1)  # each rogue ring is refused once, when it opens

    async def terminal(self, c, project, agent):
        """Opens /ws/terminal/T for (project, agent) ("" for any); returns (bytes, close code or
        None if still open after the first bytes)."""
        q = "?token=" + self.tok(c.name, c.rights)
        if project:
            q += "&project_id=%s&agent_id=%s" % (project, agent)
        got = b""
        try:
            async with connect(rstest_pick(self.sidecars, self.rnd), "/ws/terminal/T" + q) as ws:
                while True:
                    m = await asyncio.wait_for(ws.recv(), 2)
                    got += m if isinstance(m, bytes) else m.encode()
                    if isinstance(m, bytes) and b"TERM[" in m:
                        return got, None
        except websockets.exceptions.ConnectionClosed as e:
            return got, e.rcvd.code if e.rcvd else None
        except asyncio.TimeoutError:
            return got, None


def rstest_pick(sidecars, rnd):
    return rnd.choice(sidecars)


class Embedded(PropertyBase):
    def pods(self):
        sc = self.sidecar(["--projects", "p0,p1,p2"])
        return {"E": (sc, ["p0", "p1", "p2"])}


class Cluster(PropertyBase):
    n_events = 3000

    def pods(self):
        from test_cluster_e2e import Redis
        self.redis = Redis()
        self.addCleanup(self.redis.stop)
        fpkey = os.path.join(self.tmp.name, "fingerprint.key")
        with open(fpkey, "w") as f:
            f.write(os.urandom(48).hex())
        common = ["--redis", self.redis.url, "--fingerprint-key", fpkey]
        a = self.sidecar(common + ["--instance-id", "A", "--projects", "p0,p1"])
        b = self.sidecar(common + ["--instance-id", "B", "--projects", "p2,p3"])
        for sc in (a, b):
            deadline = time.monotonic() + 10
            while not (sc.http("/readyz")[0] == 200 and
                       sc.metrics().get("ringside_cluster_caught_up") == 1):
                self.assertLess(time.monotonic(), deadline, "sidecar not ready")
                time.sleep(0.05)
        return {"A": (a, ["p0", "p1"]), "B": (b, ["p2", "p3"])}


if __name__ == "__main__":
    unittest.main(verbosity=2)
