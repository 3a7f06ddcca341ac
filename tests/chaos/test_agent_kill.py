"""Chaos 3 (issue 11, REQUIREMENTS G): agents killed mid-write.  Many times, an agent — a
ringside-run wrapping a shell loop that floods its terminal, a status publisher, or a terminal
publisher (ringside-bench-pub) — is killed with SIGKILL at a random point after it started
publishing.  The sidecar must never crash, must report each death (agent_status failed, with
the documented detail) within ~1.5 s, must remove the dead rings, and must keep delivering a
steady agent's events to a connected client without a gap.

CI mode: 12 kills; RINGSIDE_CHAOS_KILLS=N for the long mode."""
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaoslib import (case_failed, ResumingClient, Sidecar, alive, bench_pub, binpath, dump_logs,  # noqa: E402
                      kill9, wait_for)

KILLS = int(os.environ.get("RINGSIDE_CHAOS_KILLS", "12"))
LIMIT = 1.5


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class TestAgentKill(unittest.TestCase):
    def setUp(self):
        self.sc = Sidecar(["--conn-msg-rate", "0"])
        self.procs = []
        self.orphans = []

    def tearDown(self):
        for p in self.procs:
            kill9(p)
        for pid in self.orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        failed = case_failed(self)
        if failed:
            dump_logs(self.sc)
        self.sc.stop()

    def start_victim(self, i, agent):
        kind = i % 3
        if kind == 0:
            cmd = [binpath("ringside-run"), "--shm-dir", self.sc.shm_dir, "--agent", agent,
                   "--project", "chaos", "--task", "t%d" % i, "--", "/bin/sh", "-c",
                   "i=0; while :; do echo \"line $i \\033[1mbold\\033[0m\"; i=$((i+1)); done"]
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            return "ringside-run", p
        if kind == 1:
            return "status publisher", bench_pub(self.sc.shm_dir, agent, rate=400, duration=60)
        return "terminal publisher", bench_pub(self.sc.shm_dir, agent, mode="terminal",
                                               duration=60, extra=["--bytes-per-s", "2000000",
                                                                   "--total-bytes", "200000000"])

    def test_agents_killed_mid_write(self):
        first = {}
        failed = {}

        def hook(m):
            a = m.get("agent_id")
            if a is None:
                return
            first.setdefault(a, time.monotonic())
            if m.get("type") == "agent_status" and m.get("new_status") == "failed":
                failed.setdefault(a, (time.monotonic(), m))

        async def run():
            c = ResumingClient("watch", [self.sc.url("/ws/events")])
            c.tracker.hook = hook
            c.start()
            self.assertIsNotNone(await wait_for(lambda: c.connected.is_set(), 5))
            steady = bench_pub(self.sc.shm_dir, "steady{i}", rate=20, duration=KILLS * 2 + 30)
            self.procs.append(steady)
            lat = []
            kinds = {}
            for i in range(KILLS):
                agent = "victim%d" % i
                kind, p = self.start_victim(i, agent)
                self.procs.append(p)
                got = await wait_for(lambda: agent in first, 5)
                self.assertIsNotNone(got, "%s %s never published" % (kind, agent))
                await asyncio.sleep(random.uniform(0.0, 0.25))   # a random point mid-write
                kids = children(p.pid)
                kill9(p)
                t_kill = time.monotonic()
                got = await wait_for(lambda: agent in failed, 5)
                self.assertIsNotNone(got, "death of %s (%s) not reported" % (agent, kind))
                lat.append(failed[agent][0] - t_kill)
                kinds.setdefault(kind, []).append(lat[-1])
                self.assertEqual(failed[agent][1].get("detail"),
                                 "agent process ended without closing")
                self.assertTrue(alive(self.sc), "sidecar died after killing %s" % agent)
                self.orphans += kids
            # the dead rings are gone: only the doorbell and the steady agent's ring remain
            def clean():
                names = os.listdir(self.sc.shm_dir)
                return all(n == "doorbell" or n.startswith("steady") for n in names)
            self.assertIsNotNone(await wait_for(clean, 3), os.listdir(self.sc.shm_dir))
            n_steady = c.tracker.count(lambda m: m.get("agent_id") == "steady0")
            t_end = time.monotonic()
            await asyncio.sleep(0.5)
            late = sum(1 for ts, _, m in c.tracker.events
                       if ts > t_end and m.get("agent_id") == "steady0")
            await c.stop()
            lat.sort()
            print("%d agents killed mid-write; death reported after: min %.3f s, median %.3f s, "
                  "max %.3f s" % (len(lat), lat[0], lat[len(lat) // 2], lat[-1]))
            for k, v in sorted(kinds.items()):
                print("  %-18s n=%d max %.3f s" % (k, len(v), max(v)))
            print(c.tracker.summary(), "; steady agent events:", n_steady)
            self.assertEqual(c.tracker.violations, [], c.tracker.violations[:5])
            self.assertEqual(c.reconnects, [], "the client was disconnected")
            self.assertGreater(late, 0, "the steady agent's events stopped")
            self.assertLessEqual(lat[-1], LIMIT, "a death was reported after %.3f s" % lat[-1])
            for pid in self.orphans:
                if os.path.exists("/proc/%d" % pid):
                    print("note: child %d of a killed ringside-run survived" % pid)
        asyncio.run(run())
        self.assertTrue(alive(self.sc))
        self.assertEqual(self.sc.http("/healthz")[0], 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
