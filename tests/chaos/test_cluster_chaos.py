"""Chaos 1 and 2 (issue 11, REQUIREMENTS G): faults while traffic flows, checked by a delivery
tracker (chaoslib.Tracker) and against the Redis stream.

1. kill -9 of the sidecar a client is connected to (two instances, one Redis): the client resumes
   on the other instance with last_sequence_id/epoch within 5 s and, after dedup by seq, gets every
   persisted event of the stream exactly once and in order; the killed instance restarts on the
   same ring directory and its agents' events flow again.
2. kill -9 of Redis and a restart on the same port while agents publish: no sidecar crashes, the
   local client keeps receiving (stale), cross-instance delivery resumes within 5 s of Redis
   returning.

CI mode is short; RINGSIDE_CHAOS_ROUNDS=N repeats each fault N times (long mode)."""
import asyncio
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaoslib import (case_failed, Redis, ResumingClient, Sidecar, alive, bench_pub, check_against_stream,  # noqa: E402
                      dump_logs, kill9, wait_for, wait_ready)

ROUNDS = int(os.environ.get("RINGSIDE_CHAOS_ROUNDS", "2"))
ARGS = ["--conn-msg-rate", "0", "--log-level", "info"]


class ClusterChaos(unittest.TestCase):
    def setUp(self):
        self.redis = Redis()
        self.scs = {}
        for name in ("A", "B"):
            self.scs[name] = self.start_sidecar(name)
        self.pubs = []

    def start_sidecar(self, name, shm_dir=None):
        sc = Sidecar(["--redis", self.redis.url, "--instance-id", name, "--projects", "*"] + ARGS, shm_dir=shm_dir)
        self.assertTrue(wait_ready(sc), "sidecar %s not ready" % name)
        return sc

    def tearDown(self):
        failed = case_failed(self)
        for p in self.pubs:
            kill9(p)
        if failed:
            dump_logs(*self.scs.values())
        dirs = [sc.shm_dir for sc in self.scs.values()]
        for sc in self.scs.values():
            sc.stop()
        for d in dirs:
            import shutil
            shutil.rmtree(d, ignore_errors=True)
        self.redis.stop()

    def quiesce(self, clients, timeout=8.0):
        """Waits until every client has the stream's last entry; returns the last seq."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, entries = self.redis.stream()
            top = entries[-1][0] if entries else 0
            if all(c.tracker.last is not None and c.tracker.last[1] >= top for c in clients):
                return top
            time.sleep(0.05)
        return None


class TestSidecarKill(ClusterChaos):
    def test_kill9_sidecar_client_resumes_on_other_instance(self):
        rounds = ROUNDS
        dur = 2 + 3 * rounds

        async def run():
            a, b = self.scs["A"], self.scs["B"]
            c1 = ResumingClient("resumer", [a.url("/ws/events"), b.url("/ws/events")]).start()
            c2 = ResumingClient("watcher", [b.url("/ws/events"), a.url("/ws/events")]).start()
            self.assertIsNotNone(await wait_for(lambda: c1.connected.is_set() and
                                                c2.connected.is_set(), 5))
            names = {0: "A", 1: "B"}
            self.pubs.append(bench_pub(a.shm_dir, "ka{i}", agents=2, rate=40, duration=dur))
            self.pubs.append(bench_pub(b.shm_dir, "kb{i}", agents=2, rate=40, duration=dur))
            for r in range(rounds):
                await asyncio.sleep(1.5)   # traffic flows before the fault
                victim_idx = c1.idx % 2
                victim = names[victim_idx]
                sc = self.scs[victim]
                n_before = len(c1.reconnects)
                kill9(sc.proc)
                t_kill = time.monotonic()
                got = await wait_for(lambda: len(c1.reconnects) > n_before, 6)
                self.assertIsNotNone(got, "no reconnect after kill -9 of %s: %r"
                                     % (victim, c1.errors[-3:]))
                print("round %d: killed %s; client resumed on the other instance %.3f s after the "
                      "kill (close->snapshot %.3f s)" % (r, victim, got, c1.reconnects[-1]))
                self.assertLess(c1.reconnects[-1], 5.0)
                # the killed instance comes back on the same ring directory (a pod restart)
                sc.reader.join(2)
                new = self.start_sidecar(victim, shm_dir=sc.shm_dir)
                self.scs[victim] = new
                for c in (c1, c2):
                    c.urls[c.urls.index(sc.url("/ws/events"))] = new.url("/ws/events")
                print("round %d: %s restarted %.2f s after the kill" % (r, victim,
                                                                       time.monotonic() - t_kill))
            for p in self.pubs:
                try:
                    p.wait(dur + 10)
                except Exception:  # noqa: BLE001
                    pass
            top = await asyncio.get_event_loop().run_in_executor(None, self.quiesce, [c1, c2])
            await c1.stop()
            await c2.stop()
            _, entries = self.redis.stream()
            self.assertIsNotNone(top, "clients did not catch up with the stream (top %s): %s"
                                 % (entries[-1][0] if entries else None,
                                    ["%s last %s reconnects %s errors %s" %
                                     (c.tracker.name, c.tracker.last, len(c.reconnects),
                                      c.errors[-3:]) for c in (c1, c2)]))
            for c in (c1, c2):
                t = c.tracker
                print(t.summary(), "reconnects", ["%.3f" % x for x in c.reconnects])
                for n in t.notes[:5]:
                    print("  note:", n)
                self.assertEqual(t.violations, [], t.violations[:5])
                n = check_against_stream(self, t, self.redis, t.snapshots[0][3])
                print("  %s: all %d persisted events of the stream arrived exactly once, in order"
                      % (t.name, n))
            # the restarted instances' agents were heard again after their restart
            ka = [m for _, conn, m in c1.tracker.events if m.get("agent_id", "").startswith("ka")
                  and conn == c1.tracker.conn_no]
            self.assertTrue(ka, "no event of A's agents after the restarts")
        asyncio.run(run())
        for name, sc in self.scs.items():
            self.assertTrue(alive(sc), "sidecar %s died" % name)


class TestRedisKill(ClusterChaos):
    def test_redis_kill9_restart_local_stale_cross_resumes(self):
        async def run():
            a, b = self.scs["A"], self.scs["B"]
            ca = ResumingClient("local-A", [a.url("/ws/events")]).start()
            cb = ResumingClient("remote-B", [b.url("/ws/events")]).start()
            self.assertIsNotNone(await wait_for(lambda: ca.connected.is_set() and
                                                cb.connected.is_set(), 5))
            dur = 2 + 5 * ROUNDS
            self.pubs.append(bench_pub(a.shm_dir, "ra{i}", agents=2, rate=30, duration=dur))
            await asyncio.sleep(1.0)
            for r in range(ROUNDS):
                t_down = time.monotonic()
                self.redis.kill()

                def stale_after(t0):
                    return lambda: sum(
                        1 for ts, _, m in ca.tracker.events if ts > t0 and m.get("stale") and
                        str(m.get("agent_id", "")).startswith("ra")) >= 10
                got = await wait_for(stale_after(t_down), 5)
                self.assertIsNotNone(got, "local client got no stale events during the outage")
                print("round %d: Redis killed; local client got 10 stale events within %.2f s"
                      % (r, got))
                await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - t_down)))
                self.redis.start()
                t_up = time.monotonic()

                def cross():
                    return any(ts > t_up and not m.get("stale") and m.get("seq") and
                               str(m.get("agent_id", "")).startswith("ra")
                               for ts, _, m in cb.tracker.events)
                got = await wait_for(cross, 8)
                self.assertIsNotNone(got, "cross-instance delivery did not resume")
                print("round %d: cross-instance delivery resumed %.2f s after Redis returned"
                      % (r, got))
                self.assertLess(got, 5.0)
                for name, sc in self.scs.items():
                    self.assertTrue(alive(sc), "sidecar %s died" % name)
                await asyncio.sleep(1.0)
            for p in self.pubs:
                p.wait(dur + 10)
            await asyncio.sleep(0.5)
            await ca.stop()
            await cb.stop()
            for c in (ca, cb):
                t = c.tracker
                print(t.summary())
                for n in t.notes[:5]:
                    print("  note:", n)
                self.assertEqual(t.violations, [], t.violations[:5])
                self.assertEqual(c.reconnects, [], "%s was disconnected" % t.name)
        asyncio.run(run())
        for name, sc in self.scs.items():
            self.assertTrue(alive(sc), "sidecar %s died" % name)
            self.assertEqual(sc.http("/healthz")[0], 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
