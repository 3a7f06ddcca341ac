"""Shared pieces of the abuse tests of issue 17 (bounds): a well-behaved dashboard that must keep
receiving on time while an attack runs, and helpers to wait for metrics and log lines."""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from conflib import RawWS, wait_until  # noqa: E402,F401

ON_TIME_S = 2.0  # a published event reaches the well-behaved dashboard within this


class Dashboard:
    """A raw WebSocket client on /ws/events that answers pings and reads everything."""

    def __init__(self, sc, query="", headers=None):
        self.sc = sc
        self.ws = RawWS.connect(sc.port, "/ws/events" + query, headers=headers)
        m = self.ws.recv_json()
        assert m["type"] == "snapshot", m
        self.n = 0

    def assert_receives(self, tc, agent="dash-probe"):
        """Publishes a status event and asserts the dashboard gets it within ON_TIME_S."""
        self.n += 1
        detail = "probe-%d-%f" % (self.n, time.monotonic())
        t0 = time.monotonic()
        self.sc.pub("status", "working", detail, agent=agent)
        deadline = t0 + ON_TIME_S + 5
        while time.monotonic() < deadline:
            m = self.ws.recv_json(max(0.01, deadline - time.monotonic()))
            if m.get("type") == "agent_status" and detail in json.dumps(m):
                took = time.monotonic() - t0
                tc.assertLess(took, ON_TIME_S, "the dashboard got its event late: %.2f s" % took)
                return took
        tc.fail("the well-behaved dashboard did not receive its event")

    def close(self):
        self.ws.close()


def metric(sc, name):
    return sc.metrics().get(name, 0)


def all_logs_json(sc):
    """Every stderr line of the sidecar so far was one JSON object."""
    with sc.cond:
        return [l.get("raw") for l in sc.logs if l.get("msg") == "<non-json>"]
