"""Chaos and soak helpers: real redis-server processes (optionally inside a network namespace), a
minimal RESP client, publishers, and a resuming /ws/events client whose tracker checks delivery.

The delivery contract checked here (docs/protocol.md, "Replay and resume"):
  * after a snapshot (epoch E, seq T) the persisted events of epoch E arrive with seq T+1, T+2, ...
    in order; a resumed connection (last_sequence_id=S, same epoch, no replay_truncated) first gets
    the history S+1.. and may repeat seqs the client already has (dropped by seq);
  * a gap is allowed only where the protocol announces one: a replay_truncated message, or a new
    snapshot (the server's "new truth", e.g. when the cluster view goes stale or comes back);
  * a seq seen twice carries the same event (same JSON apart from transport);
  * ground truth for "no persisted event lost": the Redis stream ws:replay:{events}: every entry
    after the client's first snapshot must reach the client exactly once after dedup, in order.

Runs under /usr/bin/python3 (Debian's python3-websockets).
"""
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration", "lib"))
import websockets  # noqa: E402
from rstest import BIN, Sidecar, binpath, case_failed, free_port  # noqa: E402,F401

PERSISTED = ("agent_status", "task_started", "task_ended")


# ---------------------------------------------------------------------------------------------
# Redis

def resp_cmd(host, port, *args, timeout=1.0):
    """Sends one command, returns the decoded reply (bytes, int, list, None); raises OSError or
    RuntimeError (error reply)."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(out)
        f = s.makefile("rb")
        return _resp_read(f)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("connection closed")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest
    if t == b"-":
        raise RuntimeError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if t == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_resp_read(f) for _ in range(n)]
    raise OSError("bad RESP reply %r" % line)


class Redis:
    """A real redis-server on host:port (loopback by default); netns: run it inside that network
    namespace (ip netns exec); binds: addresses to bind; aof: keep data across kill -9."""

    def __init__(self, port=None, host="127.0.0.1", netns=None, binds=None, aof=False):
        self.port = port or free_port()
        self.host = host
        self.netns = netns
        self.binds = binds or [host]
        self.aof = aof
        self.dir = tempfile.mkdtemp(prefix="rs-chaos-redis-")
        self.proc = None
        self.start()

    def start(self, timeout=5.0):
        cmd = ["/usr/bin/redis-server", "--port", str(self.port), "--bind", " ".join(self.binds),
               "--save", "", "--dir", self.dir, "--protected-mode", "no"]
        cmd += ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else \
            ["--appendonly", "no"]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def ping(self):
        try:
            return self.cmd("PING") == b"PONG"
        except (OSError, RuntimeError):
            return False

    def cmd(self, *args):
        return resp_cmd(self.host, self.port, *args)

    def used_memory(self):
        info = self.cmd("INFO", "memory").decode()
        for line in info.splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":")[1])
        return None

    def stream(self):
        """Returns (epoch, [(seq, json dict)]) of the whole replay stream."""
        epoch = self.cmd("GET", "ws:replay:{events}:epoch")
        out = []
        start = "-"
        while True:
            page = self.cmd("XRANGE", "ws:replay:{events}", start, "+", "COUNT", "1000")
            for eid, fields in page:
                d = dict(zip(fields[0::2], fields[1::2]))
                out.append((int(eid.split(b"-")[0]), json.loads(d[b"e"])))
            if len(page) < 1000:
                break
            start = "(" + page[-1][0].decode()
        return (epoch.decode() if epoch else None), out

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self):
        return "redis://%s:%d" % (self.host, self.port)


def wait_ready(sc, timeout=8.0):
    """Waits until /readyz is 200 and the cluster is caught up (cluster mode); returns bool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sc.http("/readyz")[0] == 200 and \
                    sc.metrics().get("ringside_cluster_caught_up", 1) == 1:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def metric(sc, name, default=None):
    try:
        return sc.metrics().get(name, default)
    except (OSError, AssertionError):
        return default


# ---------------------------------------------------------------------------------------------
# Publishers

def bench_pub(shm_dir, agent_fmt, agents=1, rate=50, duration=5, mode="status", extra=()):
    """Starts ringside-bench-pub (fixed-rate SDK publisher); returns the Popen."""
    cmd = [binpath("ringside-bench-pub"), "--mode", mode, "--agents", str(agents), "--rate",
           str(rate), "--duration", str(duration), "--shm-dir", shm_dir, "--project", "chaos",
           "--agent", agent_fmt] + list(extra)
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def alive(sc):
    return sc.proc.poll() is None


# ---------------------------------------------------------------------------------------------
# The resuming client and its delivery tracker

class Tracker:
    """Checks one logical client's view across connections (see the module comment)."""

    def __init__(self, name):
        self.name = name
        self.seen = {}          # (epoch, seq) -> event dict (first copy)
        self.order = []         # deduplicated (epoch, seq) in arrival order
        self.violations = []
        self.notes = []
        self.truncations = []
        self.snapshots = []     # (time, conn no, epoch, seq, stale)
        self.events = []        # (time, conn no, msg) of every non-control message
        self.last = None        # (epoch, seq) of the newest persisted event accepted
        self.conn_no = 0
        self._epoch = None
        self._next = None
        self._resumed_from = None
        self._truncated = False
        self._epoch_next = {}
        self.switches = 0
        self.idents = {}        # (agent, type, ts_ns) -> (epoch, seq) of its first delivery
        self.redelivered = []   # one published event delivered again under another (epoch, seq)
        self.hook = None        # called with every message (tests index what they wait for)

    # connection boundaries
    def new_connection(self, resume):
        self.conn_no += 1
        self._epoch = None
        self._next = None
        self._resumed_from = resume  # (epoch, seq) sent, or None
        self._truncated = False
        self._epoch_next = {}

    def on_message(self, m):
        if self.hook is not None:
            self.hook(m)
        t = m.get("type")
        now = time.monotonic()
        if t == "snapshot":
            self.snapshots.append((now, self.conn_no, m.get("epoch"), m.get("seq"),
                                   m.get("stale")))
            ep, sq = m.get("epoch"), m.get("seq", 0)
            rf = self._resumed_from
            if self._epoch is not None:
                self._epoch_next[self._epoch] = self._next
            if self._epoch is None and rf is not None and not self._truncated and rf[0] == ep:
                self._epoch, self._next = ep, rf[1] + 1   # history S+1..T follows
            else:
                self._epoch, self._next = ep, sq + 1       # a new truth
            self._resumed_from = None
            self._truncated = False
            return
        if t == "replay_truncated":
            self.truncations.append((now, self.conn_no, m))
            self._truncated = True
            return
        if t in ("heartbeat", "dropped", "subscribed", "shutdown", "error", "authenticated"):
            return
        self.events.append((now, self.conn_no, m))
        if t not in PERSISTED:
            return
        ep, sq = m.get("epoch"), m.get("seq")
        if ep is None or sq is None:
            self.violations.append("persisted event without seq/epoch: %r" % m)
            return
        if self._epoch is None:
            self.violations.append("event before the snapshot: %r" % m)
            self._epoch, self._next = ep, sq
        if ep != self._epoch and self._epoch == "" and sq == self._next:
            self._epoch = ep   # the snapshot predates the stream's first epoch
        if ep != self._epoch:
            # An epoch switch on a live connection without a snapshot (seen when the cluster view
            # goes stale or comes back): checkable when the epoch is known to this connection
            # (continue it) or new and starting at 1; otherwise only noted.
            self._epoch_next[self._epoch] = self._next
            if ep in self._epoch_next:
                self._next = self._epoch_next[ep]
            elif sq == 1:
                self._next = 1
            else:
                self.notes.append("conn %d: epoch %s -> %s without a snapshot at seq %d "
                                  "(unverifiable)" % (self.conn_no, self._epoch, ep, sq))
                self._next = sq
            self.switches += 1
            self._epoch = ep
        key = (ep, sq)
        if sq < self._next:
            prev = self.seen.get(key)
            if prev is None:
                self.violations.append("conn %d: seq %d arrived after %d, never seen before"
                                       % (self.conn_no, sq, self._next - 1))
            elif _strip(prev) != _strip(m):
                self.violations.append("conn %d: seq %d repeated with other content: %r vs %r"
                                       % (self.conn_no, sq, prev, m))
            return
        if sq > self._next:
            self.violations.append("conn %d epoch %s: gap, expected seq %d, got %d"
                                   % (self.conn_no, ep, self._next, sq))
        if key in self.seen:
            if _strip(self.seen[key]) != _strip(m):
                self.violations.append("seq %d repeated with other content" % sq)
        else:
            self.seen[key] = m
            self.order.append(key)
            ident = (m.get("agent_id"), t, m.get("ts_ns"))
            if ident in self.idents:
                self.redelivered.append((self.idents[ident], key, m))
            else:
                self.idents[ident] = key
        self._next = sq + 1
        self.last = key

    def persisted_in(self, epoch):
        return [s for (e, s) in self.order if e == epoch]

    def count(self, pred):
        return sum(1 for _, _, m in self.events if pred(m))

    def summary(self):
        return ("%s: %d connections, %d persisted events, %d snapshots, %d truncations, "
                "%d epoch switches without a snapshot, %d events redelivered under another seq, "
                "%d violations, %d notes"
                % (self.name, self.conn_no, len(self.order), len(self.snapshots),
                   len(self.truncations), self.switches, len(self.redelivered),
                   len(self.violations), len(self.notes)))


def _strip(m):
    return {k: v for k, v in m.items() if k not in ("stale",)}


class ResumingClient:
    """A /ws/events client that reconnects (to urls in turn, starting with the next one after a
    failure) with last_sequence_id/epoch, feeding every message to a Tracker.  Reconnect times
    (close noticed -> snapshot received) are kept in self.reconnects."""

    def __init__(self, name, urls, query=""):
        self.tracker = Tracker(name)
        self.urls = list(urls)
        self.query = query
        self.reconnects = []
        self.closed_at = None
        self.connected = asyncio.Event()
        self.stopping = False
        self.idx = 0
        self.task = None
        self.errors = []

    def start(self):
        self.task = asyncio.ensure_future(self._run())
        return self

    async def stop(self):
        self.stopping = True
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    def _url(self):
        base = self.urls[self.idx % len(self.urls)]
        q = []
        if self.tracker.last is not None:
            q.append("last_sequence_id=%d&epoch=%s" % (self.tracker.last[1], self.tracker.last[0]))
        if self.query:
            q.append(self.query)
        return base + ("?" + "&".join(q) if q else ""), self.tracker.last

    async def _run(self):
        backoff = 0.05
        attempts = 0
        while not self.stopping and attempts < 400:
            attempts += 1
            url, resume = self._url()
            try:
                async with websockets.connect(url, open_timeout=3, max_size=16 << 20,
                                              ping_interval=None, close_timeout=1) as ws:
                    self.tracker.new_connection(resume)
                    first = True
                    async for raw in ws:
                        if isinstance(raw, bytes):
                            continue
                        m = json.loads(raw)
                        self.tracker.on_message(m)
                        if first:
                            first = False
                            if self.closed_at is not None:
                                self.reconnects.append(time.monotonic() - self.closed_at)
                                self.closed_at = None
                            backoff = 0.05
                            self.connected.set()
                        if m.get("type") == "heartbeat":
                            await ws.send('{"type":"pong"}')
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 — any failure means: reconnect elsewhere
                self.errors.append(repr(e)[:200])
            if self.stopping:
                return
            if self.closed_at is None:
                self.closed_at = time.monotonic()
            self.connected.clear()
            self.idx += 1
            await asyncio.sleep(backoff * (0.8 + 0.4 * random.random()))
            backoff = min(backoff * 2, 1.0)


async def wait_for(pred, timeout, step=0.02):
    """Polls pred() until true or timeout; returns the elapsed time or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        await asyncio.sleep(step)
    return None


def check_against_stream(testcase, tracker, redis, from_seq):
    """Every stream entry with seq > from_seq arrived exactly once (after dedup), in order, with
    the same content.  Returns the number of entries checked."""
    epoch, entries = redis.stream()
    want = [(s, e) for s, e in entries if s > from_seq]
    got = tracker.persisted_in(epoch)
    got = [s for s in got if s > from_seq]
    testcase.assertEqual(got, sorted(got), "%s: out of order" % tracker.name)
    missing = sorted(set(s for s, _ in want) - set(got))
    extra = sorted(set(got) - set(s for s, _ in want))
    testcase.assertEqual(missing, [], "%s lost persisted events (%d of %d), first %r"
                         % (tracker.name, len(missing), len(want), missing[:10]))
    testcase.assertEqual(extra, [], "%s got seqs that are not in the stream: %r"
                         % (tracker.name, extra[:10]))
    for s, e in want:
        g = _strip(tracker.seen[(epoch, s)])
        testcase.assertEqual(g, _strip(e), "%s: seq %d differs from the stream" % (tracker.name, s))
    return len(want)


def dump_logs(*scs):
    for sc in scs:
        if sc is not None:
            print("---- sidecar log (tail) ----\n" + sc.raw_logs()[-3000:])


def kill9(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
