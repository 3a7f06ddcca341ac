"""Task history (issue #19): ended tasks in the snapshot and their output on the terminal endpoint,
bounded per task (--history-tail) and in total (--history-bytes, least recently used first), under
the same authorization as live data.  Real sidecar, real ringside-pub, real WebSocket clients."""
import asyncio
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import websockets  # noqa: E402
from rstest import (Sidecar, SidecarCase, binpath, case_failed, connect, recv_json,  # noqa: E402
                    recv_until, run_async)


def term_path(task, agent=None, token=None):
    q = []
    if agent:
        q.append("agent_id=" + agent)
    if token:
        q.append("token=" + token)
    return "/ws/terminal/" + task + ("?" + "&".join(q) if q else "")


async def snapshot(sc, path="/ws/events"):
    async with connect(sc, path) as ws:
        m = await recv_json(ws)
        assert m["type"] == "snapshot", m
        return m


def agent_of(snap, agent_id):
    for a in snap["agents"]:
        if a["agent_id"] == agent_id:
            return a
    return None


async def wait_ended(sc, agent, task, path="/ws/events"):
    """Waits (bounded) until the snapshot lists task of agent in its history: task ends are
    read from the ring asynchronously, and a subscription shows them as task_ended."""
    async with connect(sc, path) as ws:
        snap = await recv_json(ws)
        a = agent_of(snap, agent)
        if a and any(h["task_id"] == task for h in a.get("history", [])):
            return
        await recv_until(ws, lambda m: m.get("type") == "task_ended" and
                         m.get("agent_id") == agent and m.get("task_id") == task, timeout=10)


async def read_ended_terminal(sc, path):
    """Opens an ended task's terminal: returns (header, bytes, end message, close code)."""
    async with connect(sc, path) as ws:
        hdr = await recv_json(ws)
        data = b""
        end = None
        try:
            while True:
                m = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(m, bytes):
                    data += m
                else:
                    end = m
        except websockets.ConnectionClosed as e:
            return hdr, data, end, e.code


async def closed_code(sc, path):
    async with connect(sc, path) as ws:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as e:
            return e.code


def run_task(sc, task, outcome, output=b"", exit_code=None, agent="a1", project="p1", title=None):
    sc.pub("task-start", task, title or ("title of " + task), agent=agent, project=project)
    if output:
        sc.pub("term", task, stdin=output, agent=agent, project=project)
    args = ["task-end", task, outcome] + ([str(exit_code)] if exit_code is not None else [])
    sc.pub(*args, agent=agent, project=project)
    run_async(wait_ended(sc, agent, task))


class SnapshotHistoryTest(SidecarCase):
    def test_ended_tasks_newest_first_with_outcome_and_duration(self):
        run_task(self.sc, "t1", "failed", b"\x1b[31merror: boom\x1b[0m\r\n", 3, title="build")
        run_task(self.sc, "t2", "completed", b"ok\r\n", 0, title="test")
        self.sc.pub("task-start", "t3", "deploy")
        snap = run_async(snapshot(self.sc))
        a = agent_of(snap, "a1")
        self.assertEqual([t["task_id"] for t in a["tasks"]], ["t3"])
        hist = a["history"]
        self.assertEqual([h["task_id"] for h in hist], ["t2", "t1"])
        h1 = hist[1]
        self.assertEqual((h1["title"], h1["state"], h1["exit_code"], h1["output_retained"]),
                         ("build", "failed", 3, True))
        self.assertEqual(h1["output_bytes"], len(b"\x1b[31merror: boom\x1b[0m\r\n"))
        self.assertGreaterEqual(h1["duration_seconds"], 0)
        self.assertLessEqual(h1["started_at"], h1["ended_at"])
        self.assertEqual(set(h1), {"task_id", "run", "title", "state", "exit_code", "started_at",
                                   "ended_at", "duration_seconds", "output_bytes",
                                   "output_retained"})

    def test_count_is_bounded_and_filters_apply(self):
        self.sc.stop()
        self.sc = Sidecar(["--history-tasks", "2"])
        for i in range(4):
            run_task(self.sc, "t%d" % i, "completed", b"x", 0)
        run_task(self.sc, "u1", "failed", b"y", 1, agent="b1", project="p2")
        snap = run_async(snapshot(self.sc))
        self.assertEqual([h["task_id"] for h in agent_of(snap, "a1")["history"]], ["t3", "t2"])
        only = run_async(snapshot(self.sc, "/ws/events?project_ids=p2"))
        self.assertEqual([a["agent_id"] for a in only["agents"]], ["b1"])
        # The record of t0 left the history: its terminal has expired, not unknown.
        self.assertEqual(run_async(closed_code(self.sc, term_path("t0"))), 4010)
        self.assertEqual(run_async(closed_code(self.sc, term_path("never"))), 4004)


    def test_history_tail_zero_keeps_no_output(self):
        self.sc.stop()
        self.sc = Sidecar(["--history-tail", "0", "--scrollback", "1000"])
        run_task(self.sc, "t1", "failed", b"gone\r\n", 1)
        h = agent_of(run_async(snapshot(self.sc)), "a1")["history"][0]
        self.assertEqual((h["task_id"], h["output_retained"]), ("t1", False))
        self.assertEqual(run_async(closed_code(self.sc, term_path("t1"))), 4010)

    def test_history_tail_above_scrollback_warns_at_start(self):
        self.sc.stop()
        self.sc = Sidecar(["--history-tail", "5000", "--scrollback", "1000"])
        self.assertIsNotNone(self.sc.wait_log(lambda l: "--history-tail above --scrollback" in str(l)))


class EndedTerminalTest(SidecarCase):
    sidecar_args = ("--history-tail", "1000")

    def test_failed_task_output_after_the_end(self):
        out = b"\x1b[01;34mdir\x1b[0m\r\nerror: exit 3\r\n"
        run_task(self.sc, "t1", "failed", out, 3)
        hdr, data, end, code = run_async(read_ended_terminal(self.sc, term_path("t1")))
        self.assertEqual((hdr["type"], hdr["ended"], hdr["scrollback_bytes"], hdr["output_bytes"]),
                         ("terminal", True, len(out), len(out)))
        self.assertEqual(data, out)
        self.assertIn('"outcome":"failed"', end)
        self.assertIn('"exit_code":3', end)
        self.assertEqual(code, 1000)

    def test_tail_is_bounded_per_task(self):
        out = os.urandom(5000)
        run_task(self.sc, "t1", "completed", out, 0)
        hdr, data, _, code = run_async(read_ended_terminal(self.sc, term_path("t1", "a1")))
        self.assertEqual((hdr["scrollback_bytes"], hdr["output_bytes"]), (1000, 5000))
        self.assertEqual(data, out[-1000:])
        self.assertEqual(code, 1000)


async def read_live_until(sc, path, needle, timeout=10):
    """Opens a live terminal and reads (bounded) until needle arrives: (header, bytes)."""
    async with connect(sc, path) as ws:
        hdr = await recv_json(ws)
        data = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while needle not in data:
            m = await asyncio.wait_for(ws.recv(), max(0.1, deadline - loop.time()))
            if isinstance(m, bytes):
                data += m
        return hdr, data


async def http_status(sc, path):
    try:
        async with connect(sc, path):
            return 101
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code


class RunTest(SidecarCase):
    """A task id started again after it ended is a new run: its own scrollback, and each ended
    run stays addressable by its "run" (the tester's repro in issue 19)."""
    sidecar_args = ("--history-tail", "1000")

    def test_restarted_task_id_is_a_new_run(self):
        one = b"RUN ONE: FATAL disk full\r\n"
        run_task(self.sc, "build", "failed", one, 1, title="build #1")
        self.sc.pub("task-start", "build", "build #2")
        self.sc.pub("term", "build", stdin=b"RUN TWO: compiling\r\n")
        hdr, live = run_async(read_live_until(self.sc, term_path("build", "a1"), b"RUN TWO"))
        self.assertNotIn(b"RUN ONE", live)
        self.assertFalse(hdr["ended"])
        snap = run_async(snapshot(self.sc))
        a = agent_of(snap, "a1")
        run1 = a["history"][0]["run"]
        run2 = a["tasks"][0]["run"]
        self.assertNotEqual(run1, run2)
        self.assertEqual(hdr["run"], run2)
        # Run 1's output during run 2, by its run.
        path1 = term_path("build", "a1") + "&run=" + run1
        h1, data, end, code = run_async(read_ended_terminal(self.sc, path1))
        self.assertEqual((h1["run"], data, code), (run1, one, 1000))
        self.assertIn('"outcome":"failed"', end)
        # ... and after run 2 ended; without a run the newest ended run answers.
        self.sc.pub("task-end", "build", "completed", "0")
        run_async(wait_ended_run(self.sc, "a1", run2))
        self.assertEqual(run_async(read_ended_terminal(self.sc, path1))[1], one)
        h2, data2, end2, _ = run_async(read_ended_terminal(self.sc, term_path("build", "a1")))
        self.assertEqual((h2["run"], data2), (run2, b"RUN TWO: compiling\r\n"))
        self.assertIn('"run":"%s"' % run2, end2)
        hist = agent_of(run_async(snapshot(self.sc)), "a1")["history"]
        self.assertEqual([(h["run"], h["output_bytes"]) for h in hist],
                         [(run2, len(b"RUN TWO: compiling\r\n")), (run1, len(one))])
        # A run that never was: unknown; a malformed one: 400.
        self.assertEqual(run_async(closed_code(self.sc, term_path("build", "a1") + "&run=7")),
                         4004)
        self.assertEqual(run_async(http_status(self.sc, term_path("build") + "?run=x")), 400)


async def wait_ended_run(sc, agent, run, path="/ws/events"):
    async with connect(sc, path) as ws:
        snap = await recv_json(ws)
        a = agent_of(snap, agent)
        if a and any(h.get("run") == run for h in a.get("history", [])):
            return
        await recv_until(ws, lambda m: m.get("type") == "task_ended" and
                         m.get("agent_id") == agent and m.get("run") == run, timeout=10)


class BudgetTest(SidecarCase):
    sidecar_args = ("--history-tail", "1500", "--history-bytes", "3000")

    def test_least_recently_used_tail_goes_first(self):
        a, b, c = os.urandom(1500), os.urandom(1500), os.urandom(1500)
        run_task(self.sc, "t1", "failed", a, 1)
        run_task(self.sc, "t2", "failed", b, 1)
        # Viewing t1 makes t2 the least recently used.
        self.assertEqual(run_async(read_ended_terminal(self.sc, term_path("t1")))[1], a)
        run_task(self.sc, "t3", "failed", c, 1)
        self.assertEqual(run_async(closed_code(self.sc, term_path("t2"))), 4010)
        self.assertEqual(run_async(read_ended_terminal(self.sc, term_path("t1")))[1], a)
        self.assertEqual(run_async(read_ended_terminal(self.sc, term_path("t3")))[1], c)
        snap = run_async(snapshot(self.sc))
        kept = {h["task_id"]: h["output_retained"] for h in agent_of(snap, "a1")["history"]}
        self.assertEqual(kept, {"t1": True, "t2": False, "t3": True})
        m = self.sc.metrics()
        self.assertEqual(m['ringside_history_output_dropped_total{reason="budget"}'], 1)
        self.assertEqual(m["ringside_history_output_bytes"], 3000)
        self.assertEqual(m["ringside_history_tasks"], 3)
        self.assertEqual(m['ws_updates_disconnections_total{reason="output_expired"}'], 1)


KEY = os.urandom(48).hex()


class AuthHistoryTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.key = os.path.join(self.tmp.name, "jwt.key")
        with open(self.key, "w") as f:
            f.write(KEY + "\n")
        self.sc = Sidecar(["--jwt-key", self.key], no_auth=False)

    def tearDown(self):
        if case_failed(self):
            print("---- sidecar log ----\n" + self.sc.raw_logs())
        self.sc.stop()
        self.tmp.cleanup()

    def tok(self, projects):
        r = subprocess.run([binpath("ringside"), "token", "--jwt-key", self.key, "--sub", "u",
                            "--projects", projects, "--ttl", "600"],
                           capture_output=True, timeout=10, check=True)
        return r.stdout.decode().strip()

    def test_history_and_ended_output_follow_the_rights(self):
        admin = self.tok("*")
        self.sc.pub("task-start", "t1", agent="a1", project="p1")
        self.sc.pub("term", "t1", stdin=b"secret\r\n", agent="a1", project="p1")
        self.sc.pub("task-end", "t1", "failed", "2", agent="a1", project="p1")
        run_async(wait_ended(self.sc, "a1", "t1", "/ws/events?token=" + admin))
        other = self.tok("p2")
        snap = run_async(snapshot(self.sc, "/ws/events?token=" + other))
        self.assertIsNone(agent_of(snap, "a1"))
        # another project's ended task: unknown, like a live one (no existence oracle, D2)
        self.assertEqual(run_async(closed_code(self.sc, term_path("t1", token=other))), 4004)
        hdr, data, _, code = run_async(read_ended_terminal(self.sc, term_path("t1", token=admin)))
        self.assertEqual((data, code), (b"secret\r\n", 1000))


if __name__ == "__main__":
    unittest.main()
