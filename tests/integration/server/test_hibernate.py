"""Idle connections hibernate (their wslay buffers are freed after 2 s without traffic) and wake
on their next byte in either direction without losing or reordering anything."""
import asyncio
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from rstest import SidecarCase, connect, recv_json, recv_until, run_async  # noqa: E402


class Hibernate(SidecarCase):
    sidecar_args = ("--heartbeat-interval", "30")

    def wait_hibernations(self, n, timeout=8.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sc.metrics().get("ringside_hibernations_total", 0) >= n:
                return
            time.sleep(0.2)
        self.fail("fewer than %d hibernations" % n)

    def test_idle_connection_wakes_for_events_and_messages(self):
        async def go():
            async with connect(self.sc, compression=None) as ws, \
                    connect(self.sc, compression="deflate") as wz:
                await recv_json(ws)
                await recv_json(wz)
                await asyncio.get_running_loop().run_in_executor(None, self.wait_hibernations, 2)
                # wake by an event from the server side
                self.sc.pub("status", "working", "one")
                a, _ = await recv_until(ws, lambda m: m["type"] == "agent_status")
                b, _ = await recv_until(wz, lambda m: m["type"] == "agent_status")
                self.assertEqual(a["detail"], "one")
                self.assertEqual(a, b)
                # sleep again, then wake from the client side
                before = self.sc.metrics()["ringside_hibernations_total"]
                await asyncio.get_running_loop().run_in_executor(
                    None, self.wait_hibernations, before + 2)
                await ws.send('{"type":"subscribe","agent_ids":["a1"]}')
                sub, _ = await recv_until(ws, lambda m: m["type"] == "subscribed")
                self.assertEqual(sub["filters"]["agent_ids"], ["a1"])
                await wz.send('{"type":"pong"}')
                pong = await wz.ping()
                await asyncio.wait_for(pong, 5)
                # ordering across a wake: a burst arrives complete and in order
                for i in range(20):
                    self.sc.pub("status", "working" if i % 2 else "stuck", "n%d" % i)
                got = []
                while len(got) < 20:
                    m, _ = await recv_until(ws, lambda m: m["type"] == "agent_status")
                    got.append(m["detail"])
                self.assertEqual(got, ["n%d" % i for i in range(20)])
        run_async(go())


if __name__ == "__main__":
    unittest.main(verbosity=2)
