#!/usr/bin/python3
"""Issue 17 benchmark: a well-behaved dashboard's publish→receipt latency and /healthz latency,
with no attack and under each attack of the bounds suite (the sidecar's shipped caps in force).
Attackers connect from 127.0.0.2+ (other addresses than the probes on 127.0.0.1).  Prints one
RESULT line per scenario; the figures go to docs/benchmarks.md.

usage: bounds_attack.py [--seconds 5] [--only SCENARIO]
scenarios: none inflate msgflood slowloris anonflood
"""
import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "conformance"))
os.environ.setdefault("RINGSIDE_BIN", os.path.join(ROOT, "build", "bin"))
from rstest import Sidecar, binpath  # noqa: E402
from wsraw import OP_TEXT, RawWS, encode_frame  # noqa: E402

# The shipped defaults of the caps under test (rstest turns admission limits off for tests).
SHIPPED = ("--http-conns-per-ip", "16", "--max-http-conns", "512", "--anon-conn-rate", "30",
           "--conn-rate", "0")


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def healthz_probe(port, stop, out):
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = s.recv(256)
            s.close()
            ok = data.startswith(b"HTTP/1.1 200")
        except OSError:
            ok = False
        out.append((time.monotonic() - t0, ok))
        stop.wait(0.02)


def attacker_inflate(port, stop, n):
    body = '{"type":"x","p":"%s"}' % (" " * (16000 - 19))
    while not stop.is_set():
        try:
            w = RawWS.connect(port, extensions="permessage-deflate; client_max_window_bits",
                              source="127.0.0.%d" % (2 + n % 50))
            w.recv_json()
            while not stop.is_set() and w.send_compressed(body):
                pass
            w.close()
        except (OSError, AssertionError, Exception):  # refused or closed: reconnect
            stop.wait(0.01)


def attacker_msgflood(port, stop, n):
    chunk = encode_frame(OP_TEXT, b'{"type":"pong"}') * 200
    while not stop.is_set():
        try:
            w = RawWS.connect(port, source="127.0.0.%d" % (2 + n % 50))
            w.recv_json()
            while not stop.is_set() and w.send_raw(chunk):
                pass
            w.close()
        except Exception:
            stop.wait(0.01)


def attacker_slowloris(port, stop, n):
    socks = []
    while not stop.is_set():
        while len(socks) < 40 and not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2,
                                             source_address=("127.0.0.%d" % (2 + n), 0))
                s.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
                socks.append(s)
            except OSError:
                break
        stop.wait(0.5)
        alive = []
        for s in socks:
            s.setblocking(False)
            try:
                gone = s.recv(1) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                s.close()
            else:
                alive.append(s)
        socks = alive
    for s in socks:
        s.close()


def attacker_anonflood(port, stop, n):
    head = ("GET /ws/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2,
                                         source_address=("127.0.0.%d" % (2 + n % 50), 0))
            s.sendall(head.encode())
            s.recv(256)
            s.close()
        except OSError:
            stop.wait(0.01)


ATTACKS = {"none": (None, 0), "inflate": (attacker_inflate, 4), "msgflood": (attacker_msgflood, 4),
           "slowloris": (attacker_slowloris, 40), "anonflood": (attacker_anonflood, 4)}


def run(scenario, seconds, key):
    fn, nthreads = ATTACKS[scenario]
    args = SHIPPED
    if scenario == "anonflood":
        args = args + ("--jwt-key", key)
    sc = Sidecar(args, no_auth=(scenario != "anonflood"))
    agent = None
    stop = threading.Event()
    threads = []
    try:
        query = ""
        if scenario == "anonflood":
            tok = subprocess.run([binpath("ringside"), "token", "--jwt-key", key, "--sub", "dash",
                                  "--projects", "*"], capture_output=True, check=True,
                                 timeout=10).stdout.decode().strip()
            query = "?token=" + tok
        dash = RawWS.connect(sc.port, "/ws/events" + query)
        dash.recv_json()
        agent = subprocess.Popen([binpath("delivery_rs_agent"), "--shm-dir", sc.shm_dir,
                                  "--agent", "probe", "--project", "p1"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
        agent.stdout.readline()
        # Attackers in their own processes: in threads they would take the GIL from the probes.
        mstop = multiprocessing.Event()
        procs = []
        for i in range(nthreads):
            p = multiprocessing.Process(target=fn, args=(sc.port, mstop, i), daemon=True)
            p.start()
            procs.append(p)
        hz = []
        hzt = threading.Thread(target=healthz_probe, args=(sc.port, stop, hz), daemon=True)
        hzt.start()
        lat, sent = [], 0
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            sent += 1
            agent.stdin.write(b"status working p%d\n" % sent)
            agent.stdin.flush()
            agent.stdout.readline()
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                try:
                    m = dash.recv_json(max(0.01, deadline - time.monotonic()))
                except AssertionError:
                    break
                if m.get("type") == "agent_status" and m.get("detail") == "p%d" % sent:
                    lat.append((time.time_ns() - m["ts_ns"]) / 1e6)
                    break
            time.sleep(0.02)  # the publisher's pace (10-50 events/s), not synchronisation
        stop.set()
        mstop.set()
        for t in threads + [hzt]:
            t.join(5)
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        hz_ok = [d * 1000 for d, ok in hz if ok]
        rss = 0
        with open("/proc/%d/status" % sc.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        res = {"scenario": scenario, "events": sent, "received": len(lat),
               "p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
               "healthz": len(hz), "healthz_ok": len(hz_ok),
               "healthz_p50_ms": round(pct(hz_ok, 50), 2),
               "healthz_p99_ms": round(pct(hz_ok, 99), 2), "rss_kib": rss}
        print("RESULT " + json.dumps(res), flush=True)
        return res
    finally:
        stop.set()
        if agent is not None:
            agent.stdin.close()
            agent.wait(5)
        sc.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--only", choices=sorted(ATTACKS))
    a = ap.parse_args()
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "jwt.key")
        with open(key, "w") as f:
            f.write(os.urandom(48).hex() + "\n")
        ok = True
        for sc in ([a.only] if a.only else ["none", "inflate", "msgflood", "slowloris",
                                            "anonflood"]):
            r = run(sc, a.seconds, key)
            ok = ok and r["received"] > 0 and r["healthz_ok"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
