#!/usr/bin/python3
"""publish_cost.py — the cost of publishing one status event from C, Python and Node, side by side.

C: rs_set_status() (bench_status.c).  Python: Agent.status() of client-sdk/python (ctypes), and
json.dumps() of the same event as a dict (the goal: Python within 3x of json.dumps).  Node:
agent.status() of client-sdk/node (koffi), and JSON.stringify.  Each repeat opens a ring with room
for every event (no reader, nothing dropped), publishes COUNT alternating working/idle statuses
with a short detail, and closes it.  Reports the median over repeats of ns per event, and ratios.

Usage: publish_cost.py [--count N] [--repeat R] [--smoke]
Environment: RINGSIDE_BIN (build/bin), RINGSIDE_LIB (build/lib), RINGSIDE_SRC.
Prints a table and one line `RESULT {json}`; exits non-zero unless every language produced figures.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("RINGSIDE_SRC", os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                                   "..", "..", "..")))
BIN = os.environ.get("RINGSIDE_BIN", os.path.join(SRC, "build", "bin"))
os.environ.setdefault("RINGSIDE_LIB", os.path.join(SRC, "build", "lib"))
sys.path.insert(0, os.path.join(SRC, "client-sdk", "python"))


def python_cost(shm, count, repeat):
    import ringside
    pub, js = [], []
    for _ in range(repeat):
        with ringside.Agent("bench-py", "bench", shm_dir=shm, strict=True, terminal=False,
                            log_slots=65536) as a:
            status = a.status
            t0 = time.perf_counter_ns()
            for i in range(count):
                status("working" if i & 1 else "idle", "step detail")
            pub.append((time.perf_counter_ns() - t0) / count)
        dumps = json.dumps
        t0 = time.perf_counter_ns()
        for i in range(count):
            dumps({"type": "agent_status", "agent_id": "bench-py", "project_id": "bench",
                   "status": "working" if i & 1 else "idle", "detail": "step detail"})
        js.append((time.perf_counter_ns() - t0) / count)
    return {"lang": "python", "ns_per_event": pub, "json_ns": js}


def run_json(cmd, timeout):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit("publish_cost: %s failed (%d): %s" % (cmd[0], p.returncode,
                                                              p.stderr.decode()))
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50000, help="events per repeat (<= 60000)")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--smoke", action="store_true", help="2000 events x 3: proves it runs")
    a = ap.parse_args()
    if a.smoke:
        a.count, a.repeat = 2000, 3
    tmp = tempfile.mkdtemp(prefix="rs-bench-pub-")
    try:
        res = {"c": run_json([os.path.join(BIN, "bench_status"), tmp, str(a.count),
                              str(a.repeat)], 300),
               "python": python_cost(tmp, a.count, a.repeat)}
        node = shutil.which("node")
        if node is None:
            raise SystemExit("publish_cost: node not found")
        res["node"] = run_json([node, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "publish_cost.js"), tmp, str(a.count),
                                str(a.repeat)], 300)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v["ns_per_event"]) for k, v in res.items()}
    out = {"count": a.count, "repeat": a.repeat,
           "median_ns": {k: round(v, 1) for k, v in med.items()},
           "json_median_ns": {k: round(statistics.median(res[k]["json_ns"]), 1)
                              for k in ("python", "node")}}
    out["ratio_to_c"] = {k: round(med[k] / med["c"], 1) for k in ("python", "node")}
    out["ratio_to_json"] = {k: round(med[k] / out["json_median_ns"][k], 2)
                            for k in ("python", "node")}
    print("%-8s %14s %18s %12s %14s" % ("lang", "ns/status", "ns/JSON encode", "x C", "x JSON"))
    for k in ("c", "python", "node"):
        print("%-8s %14.1f %18s %12s %14s" % (
            k, med[k], out["json_median_ns"].get(k, "-"), out["ratio_to_c"].get(k, "1.0"),
            out["ratio_to_json"].get(k, "-")))
    print("RESULT " + json.dumps(out))
    ok = all(v > 0 for v in med.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
