"""Chaos 4 (issue 11, REQUIREMENTS G): a network partition between one sidecar and Redis.

The test creates two network namespaces of its own, "S" (the sidecars, the clients, the test
itself) and "R" (redis-server), joined by two veth pairs in private /30s that exist only inside
this namespace pair:  S:va 10.213.0.1/30 <-> R:ra 10.213.0.2  (instance A's path) and
S:vb 10.213.0.5/30 <-> R:rb 10.213.0.6  (instance B's path).  Nothing is routed to or from the host
namespace.  Setting R's end of A's pair down black-holes A's traffic (A's side keeps its route,
so packets vanish as in a real partition; TCP sees no reset), while B keeps its Redis.

Checked: A's circuit breaker opens, A's local client keeps receiving A's agents (stale), B and its
client are unaffected; when the link returns A's breaker closes, A catches up, and B's client sees
A's agents again within 5 s.  Delivery is checked by the tracker throughout.

Needs root and `ip netns`; exits 77 (ctest SKIP) when network namespaces are not permitted.
RINGSIDE_CHAOS_ROUNDS=N repeats cut/restore N times (default 1 in CI)."""
import asyncio
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaoslib import (case_failed, Redis, ResumingClient, Sidecar, alive, bench_pub, dump_logs,  # noqa: E402
                      kill9, metric, wait_for, wait_ready)

ROUNDS = int(os.environ.get("RINGSIDE_CHAOS_ROUNDS", "1"))
CIRCUIT = 'ringside_redis_circuit_state{conn="cmd"}'


def sh(*cmd, check=True):
    r = subprocess.run(list(cmd), capture_output=True, timeout=10)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.decode(errors="replace")))
    return r


def outer():
    if os.geteuid() != 0:
        print("SKIP: network namespaces need root")
        return 77
    tag = "rsc%d" % os.getpid()
    ns_s, ns_r = tag + "-s", tag + "-r"
    if sh("ip", "netns", "add", ns_s, check=False).returncode != 0:
        print("SKIP: `ip netns add` is not permitted in this sandbox")
        return 77
    try:
        sh("ip", "netns", "add", ns_r)
        for i, (a, b) in enumerate((("va", "ra"), ("vb", "rb"))):
            sh("ip", "-n", ns_s, "link", "add", a, "type", "veth", "peer", "name", b, "netns", ns_r)
            sh("ip", "-n", ns_s, "addr", "add", "10.213.0.%d/30" % (4 * i + 1), "dev", a)
            sh("ip", "-n", ns_r, "addr", "add", "10.213.0.%d/30" % (4 * i + 2), "dev", b)
            sh("ip", "-n", ns_s, "link", "set", a, "up")
            sh("ip", "-n", ns_r, "link", "set", b, "up")
        for ns in (ns_s, ns_r):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        r = subprocess.run(["ip", "netns", "exec", ns_s, sys.executable, os.path.abspath(__file__),
                            "--inner", ns_s, ns_r], timeout=600)
        return r.returncode
    except (RuntimeError, OSError) as e:
        print("SKIP: cannot build the namespace pair: %s" % e)
        return 77
    finally:
        for ns in (ns_s, ns_r):
            sh("ip", "netns", "del", ns, check=False)


NS_S = NS_R = None


class TestPartition(unittest.TestCase):
    def setUp(self):
        self.redis = Redis(port=6390, host="10.213.0.2", netns=NS_R,
                           binds=["10.213.0.2", "10.213.0.6"])
        args = ["--conn-msg-rate", "0"]
        self.a = Sidecar(["--redis", "redis://10.213.0.2:6390", "--instance-id", "A", "--projects", "*"] + args)
        self.b = Sidecar(["--redis", "redis://10.213.0.6:6390", "--instance-id", "B", "--projects", "*"] + args)
        for sc in (self.a, self.b):
            self.assertTrue(wait_ready(sc), sc.raw_logs()[-2000:])
        self.pubs = []

    def tearDown(self):
        for p in self.pubs:
            kill9(p)
        sh("ip", "-n", NS_R, "link", "set", "ra", "up", check=False)
        failed = case_failed(self)
        if failed:
            dump_logs(self.a, self.b)
        self.a.stop()
        self.b.stop()
        self.redis.stop()

    def test_partition_sidecar_from_redis(self):
        async def run():
            ca = ResumingClient("local-A", [self.a.url("/ws/events")]).start()
            cb = ResumingClient("remote-B", [self.b.url("/ws/events")]).start()
            self.assertIsNotNone(await wait_for(lambda: ca.connected.is_set() and
                                                cb.connected.is_set(), 5))
            dur = 4 + 25 * ROUNDS
            self.pubs.append(bench_pub(self.a.shm_dir, "pa{i}", rate=20, duration=dur))
            self.pubs.append(bench_pub(self.b.shm_dir, "pb{i}", rate=20, duration=dur))
            await asyncio.sleep(1.0)
            loop = asyncio.get_event_loop()

            def circuit(sc):
                return metric(sc, CIRCUIT)

            def since(c, t0, prefix, stale=None):
                return sum(1 for ts, _, m in c.tracker.events if ts > t0 and
                           str(m.get("agent_id", "")).startswith(prefix) and
                           (stale is None or bool(m.get("stale")) == stale))

            for r in range(ROUNDS):
                t_cut = time.monotonic()
                sh("ip", "-n", NS_R, "link", "set", "ra", "down")
                opened = None
                while time.monotonic() - t_cut < 20:
                    if await loop.run_in_executor(None, circuit, self.a) == 1:
                        opened = time.monotonic() - t_cut
                        break
                    await asyncio.sleep(0.1)
                self.assertIsNotNone(opened, "A's breaker did not open")
                print("round %d: link cut; A's circuit open after %.2f s" % (r, opened))
                t1 = time.monotonic()
                got = await wait_for(lambda: since(ca, t1, "pa", True) >= 10 and
                                     since(cb, t1, "pb", False) >= 10, 5)
                self.assertIsNotNone(got, "local delivery stopped during the partition")
                print("  during the partition: A's client got %d stale local events, B's client "
                      "%d of B's (B unaffected: circuit %s)" % (
                          since(ca, t_cut, "pa", True), since(cb, t_cut, "pb", False),
                          await loop.run_in_executor(None, circuit, self.b)))
                self.assertEqual(await loop.run_in_executor(None, circuit, self.b), 0)
                sh("ip", "-n", NS_R, "link", "set", "ra", "up")
                t_up = time.monotonic()
                got = await wait_for(lambda: any(ts > t_up and not m.get("stale") and m.get("seq")
                                                 and str(m.get("agent_id", "")).startswith("pa")
                                                 for ts, _, m in cb.tracker.events), 10)
                closed = None
                while time.monotonic() - t_up < 10:
                    if await loop.run_in_executor(None, circuit, self.a) == 0:
                        closed = time.monotonic() - t_up
                        break
                    await asyncio.sleep(0.1)
                print("  link restored: A's circuit closed after %s s; B's client got A's agents "
                      "again after %s s" % (closed and "%.2f" % closed, got and "%.2f" % got))
                self.assertIsNotNone(closed, "A's breaker did not close")
                self.assertIsNotNone(got, "cross-instance delivery did not resume")
                self.assertLess(got, 5.0)
                self.assertTrue(alive(self.a) and alive(self.b))
                await asyncio.sleep(1.0)
            await ca.stop()
            await cb.stop()
            if os.environ.get("RS_CHAOS_TRACE"):
                t0 = ca.tracker.events[0][0]
                for ts, _, m in ca.tracker.events:
                    if m.get("seq"):
                        print("%.3f %s %s %s %s %s" % (ts - t0, m.get("epoch", "")[:4], m.get("seq"),
                              m.get("stale"), m.get("agent_id"), m.get("detail")))
            for c in (ca, cb):
                print(c.tracker.summary())
                for n in c.tracker.notes[:5]:
                    print("  note:", n)
                self.assertEqual(c.tracker.violations, [], c.tracker.violations[:5])
                self.assertEqual(c.reconnects, [], "%s was disconnected" % c.tracker.name)
            TestPartition.redelivered = [(ep, m.get("agent_id"), m.get("detail"), first)
                                         for first, (ep, _), m in ca.tracker.redelivered]
        asyncio.run(run())

    redelivered = None

    # A persist whose deadline passed must not reach Redis when the partition heals (rc_drop
    # resets the connection so its unsent commands are discarded).
    def test_zz_no_event_delivered_twice_after_partition(self):
        self.assertIsNotNone(TestPartition.redelivered, "the partition test did not run")
        self.assertEqual(TestPartition.redelivered, [],
                         "%d events published during the partition were delivered again after it "
                         "healed, e.g. %r" % (len(TestPartition.redelivered),
                                              TestPartition.redelivered[:3]))


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--inner":
        NS_S, NS_R = sys.argv[2], sys.argv[3]
        del sys.argv[1:4]
        unittest.main(verbosity=2)
    else:
        sys.exit(outer())
