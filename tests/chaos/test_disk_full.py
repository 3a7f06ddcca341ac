"""Chaos 5 (issue 11, REQUIREMENTS G): the shm volume is full.  The test mounts a small tmpfs as the
ring directory (as a Kubernetes emptyDir with medium Memory and a sizeLimit would be), starts the
sidecar on it, fills it to ENOSPC, and checks: rs_open fails cleanly with RS_ESHM (ringside-pub
exits 1 with one clear line on stderr, leaves no partial ring behind), ringside-run still runs its
command, the sidecar keeps serving (health, an existing agent, a connected client), and once space
is freed a new agent publishes normally.

Needs root (mount); exits 77 (ctest SKIP) when mounting a tmpfs is not permitted.
RINGSIDE_CHAOS_ROUNDS=N repeats fill/free N times (default 2)."""
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaoslib import (case_failed, ResumingClient, Sidecar, alive, bench_pub, binpath, dump_logs,  # noqa: E402
                      kill9, wait_for)

ROUNDS = int(os.environ.get("RINGSIDE_CHAOS_ROUNDS", "2"))
SIZE = "16m"


def try_mount():
    d = tempfile.mkdtemp(prefix="rs-chaos-shm-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % SIZE, "tmpfs", d],
                       capture_output=True)
    if r.returncode != 0:
        os.rmdir(d)
        return None, r.stderr.decode(errors="replace").strip()
    return d, None


def fill(path):
    """Writes a filler file until ENOSPC (bounded); returns bytes written."""
    n = 0
    with open(os.path.join(path, "filler"), "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            for _ in range(64 << 20 // size if size > 1 else 4096):
                try:
                    n += f.write(chunk)
                except OSError:
                    break
    return n


class TestDiskFull(unittest.TestCase):
    def setUp(self):
        self.mnt, err = try_mount()
        if self.mnt is None:
            print("SKIP: cannot mount a tmpfs here (%s)" % err)
            sys.exit(77)
        self.sc = Sidecar(["--conn-msg-rate", "0"], shm_dir=self.mnt)

    def tearDown(self):
        failed = case_failed(self)
        if failed:
            dump_logs(self.sc)
        self.sc.stop()
        subprocess.run(["umount", self.mnt], capture_output=True)
        os.rmdir(self.mnt)

    def pub(self, agent, *args):
        return subprocess.run([binpath("ringside-pub"), "--shm-dir", self.mnt, "--agent", agent,
                               "--project", "chaos"] + list(args), capture_output=True, timeout=10)

    def test_shm_volume_full(self):
        got_detail = set()

        seen_at = {}

        def hook(m):
            if m.get("agent_id"):
                seen_at[m["agent_id"]] = time.monotonic()
            if m.get("type") == "agent_status":
                got_detail.add((m.get("agent_id"), m.get("detail")))

        async def run():
            c = ResumingClient("watch", [self.sc.url("/ws/events")])
            c.tracker.hook = hook
            c.start()
            self.assertIsNotNone(await wait_for(lambda: c.connected.is_set(), 5))
            # an agent that opened its ring before the volume filled up keeps publishing
            holder = bench_pub(self.mnt, "holder{i}", rate=50, duration=30)
            self.assertIsNotNone(await wait_for(lambda: "holder0" in seen_at, 5))
            try:
                for r in range(ROUNDS):
                    r0 = self.pub("before%d" % r, "status", "working", "before")
                    self.assertEqual(r0.returncode, 0, r0.stderr)
                    self.assertIsNotNone(await wait_for(
                        lambda: ("before%d" % r, "before") in got_detail, 5))
                    before = set(os.listdir(self.mnt))
                    n = fill(self.mnt)
                    st = os.statvfs(self.mnt)
                    print("round %d: filled the %s tmpfs with %d bytes (%d blocks free)"
                          % (r, SIZE, n, st.f_bavail))
                    res = self.pub("full%d" % r, "status", "working", "while full")
                    err = res.stderr.decode(errors="replace").strip()
                    print("  ringside-pub on a full volume: exit %d, stderr: %s"
                          % (res.returncode, err))
                    self.assertEqual(res.returncode, 1)
                    self.assertEqual(len(err.splitlines()), 1, err)
                    self.assertTrue("shm" in err.lower() or "ring" in err.lower() or
                                    "space" in err.lower(), err)
                    # nothing new but the filler (the sidecar may meanwhile have removed the
                    # ring of the ringside-pub that ended above: fewer files is fine)
                    self.assertEqual(set(os.listdir(self.mnt)) - before - {"filler"}, set(),
                                     "a partial ring was left behind")
                    run_r = subprocess.run([binpath("ringside-run"), "--shm-dir", self.mnt,
                                            "--agent", "runner%d" % r, "--project", "chaos",
                                            "--task", "t", "--", "/bin/sh", "-c", "echo hi; exit 3"],
                                           capture_output=True, timeout=10)
                    print("  ringside-run on a full volume: exit %d, stderr: %s"
                          % (run_r.returncode, run_r.stderr.decode(errors="replace").strip()))
                    self.assertEqual(run_r.returncode, 3, "the command did not run")
                    self.assertTrue(alive(self.sc))
                    self.assertEqual(self.sc.http("/healthz")[0], 200)
                    # the agent that already has its ring keeps publishing through the sidecar
                    t_full = time.monotonic()
                    self.assertIsNotNone(await wait_for(lambda: seen_at["holder0"] > t_full, 2),
                                         "an existing agent's events stopped on a full volume")
                    os.unlink(os.path.join(self.mnt, "filler"))
                    r2 = self.pub("after%d" % r, "status", "working", "after")
                    self.assertEqual(r2.returncode, 0, r2.stderr)
                    self.assertIsNotNone(await wait_for(
                        lambda: ("after%d" % r, "after") in got_detail, 5),
                        "no event after space was freed")
                    self.assertNotIn(("full%d" % r, "while full"), got_detail)
            finally:
                kill9(holder)
            await c.stop()
            print(c.tracker.summary())
            self.assertEqual(c.tracker.violations, [])
            self.assertEqual(c.reconnects, [], "the client was disconnected")
        asyncio.run(run())
        self.assertTrue(alive(self.sc))


if __name__ == "__main__":
    unittest.main(verbosity=2)
