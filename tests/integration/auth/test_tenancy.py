"""Tenancy on one embedded sidecar (issue 16): an agent is (project_id, agent_id), authorization
decides on the project the data carries, terminal lookup answers only among the tasks a connection
may see, a refresh that narrows rights applies at once, and --projects binds a pod's rings.
Real sidecar, real ringside-pub, tokens minted with `ringside token`."""
import asyncio
import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from rstest import Sidecar, binpath, case_failed, connect, recv_json, recv_until, run_async  # noqa: E402
from test_auth import mint  # noqa: E402

KEY = os.urandom(48).hex()


async def drain(ws, quiet=0.3, limit=2000):
    """Every message that arrives until the connection is quiet for `quiet` seconds."""
    out = []
    for _ in range(limit):
        try:
            out.append(await recv_json(ws, quiet))
        except asyncio.TimeoutError:
            return out
    return out


async def terminal_close(sc, path):
    """Opens a terminal endpoint; returns (messages, close code)."""
    got = []
    async with connect(sc, path) as ws:
        try:
            while True:
                got.append(await asyncio.wait_for(ws.recv(), 5))
        except websockets.exceptions.ConnectionClosed as e:
            return got, e.rcvd.code if e.rcvd else None


class TenancyCase(unittest.TestCase):
    extra = ()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.key = os.path.join(self.tmp.name, "jwt.key")
        with open(self.key, "w") as f:
            f.write(KEY + "\n")
        self.sc = Sidecar(["--jwt-key", self.key] + list(self.extra), no_auth=False)

    def tearDown(self):
        if case_failed(self):
            print("---- sidecar log ----\n" + self.sc.raw_logs())
        self.sc.stop()
        self.tmp.cleanup()

    def tok(self, sub, projects, **kw):
        return mint(self.key, sub, projects, **kw)

    def wait_task(self, token, task, project):
        """Waits (bounded) until the sidecar has read the task (its terminal header arrives)."""
        async def go():
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                async with connect(self.sc, "/ws/terminal/%s?token=%s" % (task, token)) as ws:
                    try:
                        head = await recv_json(ws, 2)
                    except websockets.exceptions.ConnectionClosed:
                        head = {}
                    if head.get("type") == "terminal" and head.get("project_id") == project:
                        return
                await asyncio.sleep(0.05)
            self.fail("task %s of %s never appeared" % (task, project))
        run_async(go())


class SameAgentIdTwoProjects(TenancyCase):
    """The issue's first scenario: `a1` in p1 and `a1` in p2 are two agents."""

    def test_same_agent_id_in_two_projects_is_two_agents(self):
        u1, u2 = self.tok("u1", "p1"), self.tok("u2", "p2")
        self.sc.pub("status", "working", "p1 public", agent="a1", project="p1")
        self.sc.pub("task-start", "T", "p1 build", agent="a1", project="p1")
        self.sc.pub("term", "T", agent="a1", project="p1", stdin=b"p1 output\n")
        self.sc.pub("status", "working", "P2-SECRET", agent="a1", project="p2")
        self.sc.pub("task-start", "T2", "P2-SECRET-TITLE", agent="a1", project="p2")
        self.sc.pub("term", "T2", agent="a1", project="p2", stdin=b"P2-SECRET-BYTES\n")
        # a p2 task with the same id as the p1 task: it must not shadow u1's own
        self.sc.pub("task-start", "T", "P2-SHADOW", agent="a1", project="p2")
        self.sc.pub("term", "T", agent="a1", project="p2", stdin=b"P2-SHADOW-BYTES\n")
        self.wait_task(u2, "T2", "p2")
        self.wait_task(u2, "T", "p2")

        async def go():
            # attacker's view (u1, p1): its own a1, its own detail, nothing of p2
            async with connect(self.sc, "/ws/events?token=" + u1) as ws:
                snap = await recv_json(ws)
                self.assertEqual(snap["type"], "snapshot")
                self.assertEqual([(a["agent_id"], a["project_id"], a["detail"])
                                  for a in snap["agents"]], [("a1", "p1", "p1 public")])
                self.assertEqual([t["title"] for t in snap["agents"][0]["tasks"]], ["p1 build"])
                self.assertNotIn("P2-", str(snap))
            # victim's view (u2, p2): its a1 with its own detail and tasks
            async with connect(self.sc, "/ws/events?token=" + u2) as ws:
                snap = await recv_json(ws)
                self.assertEqual([(a["agent_id"], a["project_id"], a["detail"])
                                  for a in snap["agents"]], [("a1", "p2", "P2-SECRET")])
                self.assertEqual(sorted(t["title"] for t in snap["agents"][0]["tasks"]),
                                 ["P2-SECRET-TITLE", "P2-SHADOW"])
        run_async(go())
        # terminals: u1 gets its own T (not the newer p2 T), and T2 does not exist for u1
        run_async(self._terminal_checks(u1, u2))

    def test_ended_tasks_history_and_output_stay_in_their_project(self):
        """The same scenario after the tasks ended: the snapshot's history and the retained
        output of ended tasks are per (project, agent) too."""
        u1, u2 = self.tok("u1", "p1"), self.tok("u2", "p2")
        for project, title, out in (("p1", "p1 build", b"p1 output\n"),
                                    ("p2", "P2-SECRET-TITLE", b"P2-SECRET-BYTES\n")):
            self.sc.pub("task-start", "T", title, agent="a1", project=project)
            self.sc.pub("term", "T", agent="a1", project=project, stdin=out)
            self.sc.pub("task-end", "T", "failed", "1", agent="a1", project=project)
        self.sc.pub("task-start", "T2", "P2-OTHER", agent="a1", project="p2")
        self.sc.pub("task-end", "T2", "failed", "1", agent="a1", project="p2")

        async def go():
            deadline = time.monotonic() + 5
            while True:  # until the sidecar has read all of it (u2 sees both ended tasks)
                async with connect(self.sc, "/ws/events?token=" + u2) as ws:
                    snap = await recv_json(ws)
                hist = [t["task_id"] for a in snap["agents"] for t in a.get("history", [])]
                if sorted(hist) == ["T", "T2"]:
                    break
                self.assertLess(time.monotonic(), deadline, snap)
                await asyncio.sleep(0.05)
            async with connect(self.sc, "/ws/events?token=" + u1) as ws:
                snap = await recv_json(ws)
            self.assertEqual([(a["project_id"], [t["title"] for t in a.get("history", [])])
                              for a in snap["agents"]], [("p1", ["p1 build"])])
            self.assertNotIn("P2-", str(snap))
            got, code = await terminal_close(self.sc, "/ws/terminal/T?token=" + u1)
            data = b"".join(m for m in got if isinstance(m, bytes))
            self.assertIn(b"p1 output", data)
            self.assertNotIn(b"P2-", data)
            self.assertEqual(code, 1000)
            for path in ("/ws/terminal/T2?token=" + u1, "/ws/terminal/T?project_id=p2&token=" + u1):
                got, code = await terminal_close(self.sc, path)
                self.assertEqual(code, 4004, path)
            got, code = await terminal_close(self.sc, "/ws/terminal/T?token=" + u2)
            self.assertIn(b"P2-SECRET-BYTES", b"".join(m for m in got if isinstance(m, bytes)))
        run_async(go())

    async def _terminal_checks(self, u1, u2):
        async with connect(self.sc, "/ws/terminal/T?token=" + u1) as ws:
            head = await recv_json(ws)
            self.assertEqual((head["type"], head["project_id"]), ("terminal", "p1"))
            data, _ = await recv_until(ws, lambda m: m["type"] == "<binary>")
            self.assertIn(b"p1 output", data["data"])
            rest = await drain(ws, 0.3)
            self.assertNotIn(b"P2-", b"".join(m.get("data", b"") for m in rest))
        async with connect(self.sc, "/ws/terminal/T?token=" + u2) as ws:
            head = await recv_json(ws)
            self.assertEqual(head["project_id"], "p2")
            data, _ = await recv_until(ws, lambda m: m["type"] == "<binary>")
            self.assertIn(b"P2-SHADOW-BYTES", data["data"])
        # no existence oracle: another project's task and an unknown task look the same
        for path in ("/ws/terminal/T2?token=" + u1, "/ws/terminal/NOPE?token=" + u1,
                     "/ws/terminal/T2?project_id=p2&token=" + u1):
            got, code = await terminal_close(self.sc, path)
            self.assertEqual(code, 4004, path)
            self.assertFalse(any(b"P2-" in (m if isinstance(m, bytes) else m.encode())
                                 for m in got))


class TerminalLookup(TenancyCase):
    def test_agent_and_project_select_among_visible_tasks(self):
        both = self.tok("both", "p1,p2")
        self.sc.pub("task-start", "T", "one", agent="a1", project="p1")
        self.sc.pub("term", "T", agent="a1", project="p1", stdin=b"from-p1\n")
        self.sc.pub("task-start", "T", "two", agent="a1", project="p2")
        self.sc.pub("term", "T", agent="a1", project="p2", stdin=b"from-p2\n")
        self.wait_task(both, "T", "p2")

        async def go():
            for project in ("p1", "p2"):
                async with connect(self.sc, "/ws/terminal/T?agent_id=a1&project_id=%s&token=%s"
                                   % (project, both)) as ws:
                    head = await recv_json(ws)
                    self.assertEqual(head["project_id"], project)
                    data, _ = await recv_until(ws, lambda m: m["type"] == "<binary>")
                    self.assertIn(("from-" + project).encode(), data["data"])
        run_async(go())


class RefreshNarrows(TenancyCase):
    def test_refresh_closes_terminals_and_shrinks_filters(self):
        wide, narrow = self.tok("u1", "p1,p2"), self.tok("u1", "p1")
        self.sc.pub("task-start", "T", "build", agent="a1", project="p2")
        self.sc.pub("term", "T", agent="a1", project="p2", stdin=b"before\n")
        self.wait_task(wide, "T", "p2")

        async def go():
            term = await connect(self.sc, "/ws/terminal/T?token=" + wide)
            self.assertEqual((await recv_json(term))["type"], "terminal")
            ev = await connect(self.sc, "/ws/events?project_ids=p1,p2&token=" + wide)
            self.assertEqual((await recv_json(ev))["type"], "snapshot")
            await term.send('{"type":"auth","token":"%s"}' % narrow)
            with self.assertRaises(websockets.exceptions.ConnectionClosed) as cm:
                while True:
                    await asyncio.wait_for(term.recv(), 5)
            self.assertEqual(cm.exception.rcvd.code, 4003)
            await ev.send('{"type":"auth","token":"%s"}' % narrow)
            sub, _ = await recv_until(ev, lambda m: m["type"] == "subscribed")
            self.assertEqual(sub["filters"]["project_ids"], ["p1"])
            await recv_until(ev, lambda m: m["type"] == "authenticated")
            self.sc.pub("status", "working", "P2-AFTER", agent="a1", project="p2")
            self.sc.pub("status", "working", "p1-after", agent="a1", project="p1")
            m, skipped = await recv_until(ev, lambda m: m["type"] == "agent_status")
            self.assertEqual(m["detail"], "p1-after")
            self.assertNotIn("P2-AFTER", str(skipped) + str(await drain(ev, 0.3)))
            await ev.close()
        run_async(go())
        self.assertEqual(self.sc.metrics()[
            'ringside_tenancy_refusals_total{reason="rights_revoked"}'], 1)


class ProjectBinding(TenancyCase):
    extra = ("--projects", "p1")

    def test_ring_outside_projects_is_refused_and_counted(self):
        admin = self.tok("admin", "*")

        async def go():
            async with connect(self.sc, "/ws/events?token=" + admin) as ws:
                self.assertEqual((await recv_json(ws))["type"], "snapshot")
                self.sc.pub("status", "working", "INJECTED: re-enter your credentials",
                            agent="evil", project="p2")
                self.sc.pub("task-start", "X", "INJECTED", agent="evil", project="p2")
                self.sc.pub("status", "working", "legit", agent="a1", project="p1")
                m, skipped = await recv_until(ws, lambda m: m["type"] == "agent_status")
                self.assertEqual((m["project_id"], m["detail"]), ("p1", "legit"))
                rest = await drain(ws, 0.3)
                self.assertNotIn("INJECTED", str(skipped) + str(rest))
            async with connect(self.sc, "/ws/events?token=" + admin) as ws:
                snap = await recv_json(ws)
                self.assertEqual([a["project_id"] for a in snap["agents"]], ["p1"])
            _, code = await terminal_close(self.sc, "/ws/terminal/X?token=" + admin)
            self.assertEqual(code, 4004)
        run_async(go())
        line = self.sc.wait_log(lambda l: l.get("msg") == "ring refused")
        self.assertIsNotNone(line)
        self.assertEqual((line["project"], line["reason"]), ("p2", "project not in --projects"))
        self.assertEqual(self.sc.metrics()[
            'ringside_tenancy_refusals_total{reason="ring_foreign_project"}'], 2)

    def test_bad_projects_value_is_one_clear_line(self):
        import subprocess
        r = subprocess.run([binpath("ringside"), "--no-auth", "--projects", "p1,,p2"],
                           capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--projects", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        r = subprocess.run([binpath("ringside"), "--no-auth", "--redis", "redis://127.0.0.1:1"],
                           capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--projects is required with --redis", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)


class AgentStatusBudget(TenancyCase):
    """--agent-status-rate: one agent's flood is bounded, its latest status still arrives, and
    other agents are not slowed."""
    extra = ("--agent-status-rate", "5", "--conn-msg-rate", "0")

    def test_flood_is_bounded_and_the_latest_status_arrives(self):
        from test_tenancy_property import Agent
        admin = self.tok("admin", "*")
        flood = Agent(self.sc.shm_dir, "noisy", "p1")
        self.addCleanup(flood.close)

        async def go():
            async with connect(self.sc, "/ws/events?token=" + admin) as ws:
                self.assertEqual((await recv_json(ws))["type"], "snapshot")
                flood.cmd("statusburst 100")
                self.sc.pub("status", "working", "quiet agent", agent="calm", project="p1")
                got = []
                deadline = time.monotonic() + 10
                while "b99" not in got:
                    m = await recv_json(ws, deadline - time.monotonic())
                    if m["type"] == "agent_status":
                        if m["agent_id"] == "calm":
                            calm_at = len(got)
                        else:
                            got.append(m["detail"])
                self.assertLess(len(got), 20, got)    # bounded: burst 5, then ~5/s
                self.assertEqual(got[:5], ["b0", "b1", "b2", "b3", "b4"])
                self.assertLessEqual(calm_at, 6)      # the other agent did not wait
                # a final status takes the critical lane while the bucket is empty
                flood.cmd("statusburst 20")
                flood.cmd("status completed done")
                m, _ = await recv_until(ws, lambda m: m.get("detail") == "done", timeout=3)
                self.assertEqual(m["new_status"], "completed")
            async with connect(self.sc, "/ws/events?token=" + admin) as ws:
                snap = await recv_json(ws)
                self.assertIn(("noisy", "done"), [(a["agent_id"], a["detail"])
                                                  for a in snap["agents"]])
        run_async(go())
        m = self.sc.metrics()
        self.assertGreaterEqual(m["ringside_agent_status_over_budget_total"], 1)
        self.assertGreater(m["ringside_agent_status_coalesced_total"], 50)
        line = self.sc.wait_log(lambda l: l.get("msg", "").startswith("agent over its status"))
        self.assertEqual((line["agent"], line["reason"]), ("noisy", "--agent-status-rate 5"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
