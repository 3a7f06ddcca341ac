#!/usr/bin/python3
"""Cross-instance delivery cost (issue 7): two sidecars sharing a redis-server; an agent publishes
on A at RATE status events/s; one client on A (local) and one on B (remote) measure
publish→receipt latency from ts_ns with ringside-loadgen.  Prints one RESULT line.

usage: cluster_latency.py [--rate 1000] [--seconds 5] [--subs 10]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "cluster"))
os.environ.setdefault("RINGSIDE_BIN", os.path.join(ROOT, "build", "bin"))
from rstest import Sidecar, binpath  # noqa: E402
from test_cluster_e2e import Redis  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--subs", type=int, default=10)
    a = ap.parse_args()
    opts = ["--conn-msg-rate", "0", "--global-msg-rate", "0"]
    redis = Redis()
    sa = sb = None
    try:
        sa = Sidecar(["--redis", redis.url, "--instance-id", "A", "--projects", "*"] + opts)
        sb = Sidecar(["--redis", redis.url, "--instance-id", "B", "--projects", "*"] + opts)
        time.sleep(0.5)  # both subscribed (readiness is checked by the e2e tests)
        n = int(a.rate * a.seconds)
        lgs = []
        for sc in (sa, sb):
            lgs.append(subprocess.Popen(
                [binpath("ringside-loadgen"), "--url", sc.url("/ws/events"), "--conns",
                 str(a.subs), "--duration", str(a.seconds + 5), "--expect", str(n), "--quiet"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        time.sleep(1.0)
        pub = subprocess.run(
            [binpath("ringside-bench-pub"), "--shm-dir", sa.shm_dir, "--mode", "status",
             "--rate", str(a.rate), "--count", str(n)], capture_output=True, timeout=120)
        res = []
        for lg in lgs:
            out, err = lg.communicate(timeout=120)
            lines = out.decode().strip().splitlines()
            if not lines:
                raise RuntimeError("loadgen printed nothing: " + err.decode()[-2000:])
            res.append(json.loads(out.decode()))
        def pick(r):
            lat = r.get("latency_us", r.get("latency", {}))
            return {k: lat.get(k) for k in ("p50", "p99", "p99_9", "max")}, r.get("delivered_ratio")
        (la, da), (lb, db) = pick(res[0]), pick(res[1])
        out = {"bench": "cluster_latency", "rate": a.rate, "seconds": a.seconds, "subs": a.subs,
               "local": la, "local_delivered": da, "remote": lb, "remote_delivered": db,
               "publisher": pub.stdout.decode().strip()[-200:]}
        if la.get("p99") is not None and lb.get("p99") is not None:
            out["p99_added_us"] = round(lb["p99"] - la["p99"], 1)
        print("RESULT " + json.dumps(out))
    finally:
        for sc in (sa, sb):
            if sc is not None:
                sc.stop()
        redis.stop()


if __name__ == "__main__":
    main()
