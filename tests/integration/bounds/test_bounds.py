"""Abuse tests of issue 17 (bounds): each attack, scaled to seconds, against the real sidecar.
Each asserts the cap holds, the metric moves, the log line names the reason, and that a
well-behaved dashboard connected alongside keeps receiving on time.  (REQUIREMENTS A3, B12, D.)"""
import base64
import json
import os
import socket
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from boundslib import Dashboard, RawWS, all_logs_json, metric, wait_until  # noqa: E402
from conflib import Sidecar, binpath, main  # noqa: E402
from wsraw import OP_CONT, OP_PING, OP_PONG, OP_TEXT, encode_frame  # noqa: E402

import rstest  # noqa: E402
import subprocess  # noqa: E402


class LogForging(unittest.TestCase):
    """Issue 17 item 6: strings from a ring (its file name, its identity) cannot forge log lines."""

    def setUp(self):
        self.sc = Sidecar()
        self.dash = Dashboard(self.sc)

    def tearDown(self):
        self.dash.close()
        self.sc.stop()
        self.sc.assert_clean()

    def test_forged_ring_file_name_is_escaped(self):
        name = 'evil","level":"error","msg":"forged"}\n{"x":"\\.ring'
        before = metric(self.sc, "ringside_rings_rejected_total")
        with open(os.path.join(self.sc.shm_dir, name), "wb") as f:
            f.write(b"\x00" * 8192)  # not a ring: rejected at validation
        entry = self.sc.wait_log(lambda l: l.get("msg") == "ring rejected" and
                                 l.get("path", "").endswith(name), timeout=10)
        self.assertIsNotNone(entry, "no 'ring rejected' line carrying the exact file name")
        self.assertEqual(all_logs_json(self.sc), [], "a log line is not JSON (forged)")
        self.assertFalse(any(l.get("msg") == "forged" for l in self.sc.logs))
        self.assertEqual(metric(self.sc, "ringside_rings_rejected_total"), before + 1)
        self.dash.assert_receives(self)


def jwt_exp(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]


class ExpiryLeeway(unittest.TestCase):
    """Issue 17 item 7: a token inside --jwt-leeway is accepted and then not closed 4001 at once;
    the connection lapses at exp + leeway, the same instant a new handshake would be refused."""

    LEEWAY = 3

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.key = os.path.join(self.tmp.name, "jwt.key")
        with open(self.key, "w") as f:
            f.write(os.urandom(48).hex() + "\n")
        self.sc = rstest.Sidecar(["--jwt-key", self.key, "--jwt-leeway", str(self.LEEWAY)],
                                 no_auth=False)

    def tearDown(self):
        self.sc.stop()
        self.tmp.cleanup()

    def mint(self, ttl):
        r = subprocess.run([binpath("ringside"), "token", "--jwt-key", self.key, "--sub", "u",
                            "--projects", "*", "--ttl", str(ttl)],
                           capture_output=True, timeout=10, check=True)
        return r.stdout.decode().strip()

    def test_token_inside_leeway_not_closed_at_once(self):
        tok = self.mint(1)
        exp = jwt_exp(tok)
        # The token's exp passes (the event this test is about), well inside the leeway.
        self.assertTrue(wait_until(lambda: time.time() >= exp + 0.2, timeout=5))
        w = RawWS.connect(self.sc.port, "/ws/events?token=" + tok)
        self.assertEqual(w.recv_json()["type"], "snapshot")
        opened = time.time()
        # Not closed right after the snapshot: the leeway still runs for about 2 s.
        m = w.recv_message(timeout=max(0.0, exp + self.LEEWAY - 1.0 - time.time()))
        self.assertFalse(m is not None and m[0] == 0x8, "closed inside the leeway: %r" % (m,))
        code, _, _ = w.expect_close(timeout=self.LEEWAY + 3)
        self.assertEqual(code, 4001)
        self.assertGreaterEqual(time.time(), exp + self.LEEWAY - 1.0,
                                "closed %.2f s after opening" % (time.time() - opened))
        entry = self.sc.wait_log(lambda l: l.get("event") == "disconnect" and
                                 l.get("reason") == "token_expired")
        self.assertIsNotNone(entry)
        w.close()


class DoorbellAndRingTruncation(unittest.TestCase):
    """Issue 17 item 5: nothing another process of the pod does to the shared files kills an SDK
    user.  `truncate -s 0` of the doorbell, then of the agent's own ring, under a running
    `ringside-run`: the command runs to its end and its exit status is unchanged."""

    def setUp(self):
        self.sc = Sidecar()
        self.dash = Dashboard(self.sc)

    def tearDown(self):
        self.dash.close()
        self.sc.stop()
        self.sc.assert_clean()

    def test_doorbell_mode(self):
        mode = os.stat(os.path.join(self.sc.shm_dir, "doorbell")).st_mode & 0o777
        self.assertEqual(mode, 0o660, "the doorbell must not be writable by everyone")

    def test_truncated_doorbell_and_ring_do_not_kill_the_agent(self):
        env = dict(os.environ, RINGSIDE_SHM_DIR=self.sc.shm_dir)
        script = "read x; echo after-$x; read y; echo done-$y; exit 7"
        p = subprocess.Popen([binpath("ringside-run"), "--agent", "victim", "--project", "p1",
                              "--task", "t1", "--", "sh", "-c", script],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        try:
            attached = self.sc.wait_log(lambda l: l.get("msg") == "agent ring attached" and
                                        l.get("agent") == "victim", timeout=10)
            self.assertIsNotNone(attached)
            ring = attached["path"]
            os.truncate(os.path.join(self.sc.shm_dir, "doorbell"), 0)
            p.stdin.write(b"1\n")
            p.stdin.flush()
            # The agent's output after the truncation reaches the sidecar (its doorbell store did
            # not kill it): the task's terminal carries "after-1".
            before = metric(self.sc, "ringside_rings_quarantined_total")
            os.truncate(ring, 0)
            out, err = p.communicate(b"2\n", timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 7, "exit status changed (killed?): %r %r" % (out, err))
        self.assertIn(b"after-1", out)
        self.assertIn(b"done-2", out)
        # The sidecar drops the truncated ring with a reason, and keeps serving.
        entry = self.sc.wait_log(lambda l: l.get("msg") == "ring quarantined" and
                                 l.get("agent") == "victim", timeout=10)
        self.assertIsNotNone(entry, "no 'ring quarantined' line for the truncated ring")
        self.assertGreater(metric(self.sc, "ringside_rings_quarantined_total"), before)
        self.dash.assert_receives(self)


def raw_request(port, data, source="127.0.0.1", timeout=5.0):
    """Sends data from source, reads the response until the server closes; (status, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    try:
        s.sendall(data)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, body


def upgrade_head(port, target, headers=()):
    lines = ["GET %s HTTP/1.1" % target, "Host: 127.0.0.1:%d" % port, "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13"] + ["%s: %s" % h for h in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class PlantedDoorbell(unittest.TestCase):
    """A symlink, FIFO or directory planted under the doorbell's name in the shared volume (which
    outlives restarts) used to stop every start of the sidecar: a crash loop (outside review)."""

    def test_sidecar_starts_and_replaces_it(self):
        for kind in ("symlink", "fifo", "dir"):
            d = tempfile.mkdtemp(prefix="rs-bell-")
            bell = os.path.join(d, "doorbell")
            target = os.path.join(d, "elsewhere")
            if kind == "symlink":
                with open(target, "w") as f:
                    f.write("do not touch")
                os.symlink(target, bell)
            elif kind == "fifo":
                os.mkfifo(bell)
            else:
                os.mkdir(bell)
            sc = rstest.Sidecar(shm_dir=d)
            try:
                st = os.lstat(bell)
                self.assertTrue(os.path.isfile(bell) and not os.path.islink(bell), kind)
                self.assertEqual(st.st_mode & 0o777, 0o660, kind)
                self.assertIsNotNone(sc.wait_log(lambda l: l.get("msg", "").startswith(
                    "doorbell replaced")), kind)
                if kind == "symlink":
                    with open(target) as f:
                        self.assertEqual(f.read(), "do not touch")  # never followed
                sc.pub("status", "working", "rang", agent="a1", project="p1")
                self.assertEqual(sc.http("/healthz")[0], 200)
            finally:
                sc.stop()
                subprocess.run(["rm", "-rf", d])


class AuthSidecarCase(unittest.TestCase):
    args = ()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.key = os.path.join(self.tmp.name, "jwt.key")
        with open(self.key, "w") as f:
            f.write(os.urandom(48).hex() + "\n")
        self.sc = rstest.Sidecar(["--jwt-key", self.key] + list(self.args), no_auth=False)
        self.user_tok = self.mint("alice")
        self.dash = Dashboard(self.sc, "?token=" + self.mint("operator"))

    def tearDown(self):
        self.dash.close()
        self.sc.stop()
        self.tmp.cleanup()

    def mint(self, sub, ttl=600):
        r = subprocess.run([binpath("ringside"), "token", "--jwt-key", self.key, "--sub", sub,
                            "--projects", "*", "--ttl", str(ttl)],
                           capture_output=True, timeout=10, check=True)
        return r.stdout.decode().strip()


class PreAuthAdmission(AuthSidecarCase):
    """Issue 17 item 3: behind the ingress (a trusted proxy), anonymous and failed attempts use
    their own bucket and cannot lock authenticated users out."""

    args = ("--conn-rate", "5", "--anon-conn-rate", "5", "--user-conns", "0",
            "--trusted-proxies", "127.0.0.1/32")

    def test_anonymous_flood_through_the_ingress_does_not_lock_out_users(self):
        port = self.sc.port
        before = metric(self.sc, 'ringside_http_rejections_total{reason="anon_rate"}')
        statuses = []
        for i in range(20):
            hdrs = (("X-Forwarded-For", "203.0.113.9"),)
            tok = "?token=garbage" if i % 2 else ""
            statuses.append(raw_request(port, upgrade_head(port, "/ws/events" + tok, hdrs))[0])
        self.assertEqual(statuses[:5], [401] * 5, statuses)
        self.assertEqual(set(statuses[5:]), {429}, statuses)
        self.assertEqual(metric(self.sc, 'ringside_http_rejections_total{reason="anon_rate"}'),
                         before + 15)
        entry = self.sc.wait_log(lambda l: l.get("msg") == "request refused" and
                                 l.get("reason") == "anon_rate" and l.get("ip") == "203.0.113.9")
        self.assertIsNotNone(entry, "no log line naming anon_rate for the client address")
        # Authenticated users behind the same ingress, even from the flooding address, get in.
        for client in ("198.51.100.7", "203.0.113.9"):
            hdrs = (("X-Forwarded-For", client),)
            w, st, _, _ = RawWS.request(port, upgrade_head(port, "/ws/events?token=" +
                                                           self.user_tok, hdrs).decode()
                                        .rstrip("\r\n").split("\r\n"))
            self.assertEqual(st, 101, "an authenticated user from %s was refused" % client)
            w.close()
        self.dash.assert_receives(self)

    def test_client_address_from_trusted_proxy_only(self):
        port = self.sc.port
        hdrs = (("X-Forwarded-For", "192.0.2.1, 198.51.100.20"),)
        w, st, _, _ = RawWS.request(port, upgrade_head(port, "/ws/events?token=" + self.user_tok,
                                                       hdrs).decode().rstrip("\r\n").split("\r\n"))
        self.assertEqual(st, 101)
        entry = self.sc.wait_log(lambda l: l.get("event") == "connect" and l.get("user") == "alice")
        self.assertEqual(entry["ip"], "198.51.100.20", "right-most untrusted hop is the client")
        w.close()
        # Forwarded (RFC 7239) wins over X-Forwarded-For.
        hdrs = (("Forwarded", 'for="[2001:db8::7]:4711";proto=https'),
                ("X-Forwarded-For", "192.0.2.99"))
        mark = len(self.sc.logs)
        raw_request(port, upgrade_head(port, "/ws/events", hdrs))
        entry = self.sc.wait_log(lambda l: l.get("msg") == "request refused", start=mark)
        self.assertEqual(entry["ip"], "2001:db8::7")
        # A malformed header from the trusted proxy: 400 bad_forwarded.
        before = metric(self.sc, 'ringside_http_rejections_total{reason="bad_forwarded"}')
        st, body = raw_request(port, upgrade_head(port, "/ws/events",
                                                  (("X-Forwarded-For", "not-an-ip"),)))
        self.assertEqual(st, 400)
        self.assertEqual(json.loads(body)["error"], "bad_forwarded")
        self.assertEqual(metric(self.sc, 'ringside_http_rejections_total{reason="bad_forwarded"}'),
                         before + 1)
        self.dash.assert_receives(self)


class UntrustedForwardedIgnored(AuthSidecarCase):
    args = ("--user-conns", "0")

    def test_forwarded_headers_from_untrusted_peer_ignored(self):
        port = self.sc.port
        mark = len(self.sc.logs)
        raw_request(port, upgrade_head(port, "/ws/events", (("X-Forwarded-For", "192.0.2.5"),)))
        entry = self.sc.wait_log(lambda l: l.get("msg") == "request refused", start=mark)
        self.assertEqual(entry["ip"], "127.0.0.1")


class Slowloris(unittest.TestCase):
    """Issue 17 item 4: connections still sending their request are capped per peer and in total;
    the header timeout frees them; /healthz and a dashboard alongside are unaffected."""

    def setUp(self):
        self.sc = Sidecar(("--http-conns-per-ip", "5", "--max-http-conns", "12",
                           "--handshake-timeout", "3"))
        self.dash = Dashboard(self.sc)
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.dash.close()
        self.sc.stop()
        self.sc.assert_clean()

    def half_open(self, source):
        s = socket.create_connection(("127.0.0.1", self.sc.port), timeout=5,
                                     source_address=(source, 0))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        self.socks.append(s)
        return s

    def answer(self, s, timeout=2.0):
        """The status the server sent on s, 0 if none within timeout (held)."""
        s.settimeout(timeout)
        try:
            data = s.recv(4096)
        except socket.timeout:
            return 0
        except ConnectionResetError:
            return -1
        return int(data.split(b" ")[1]) if data.startswith(b"HTTP/1.1 ") else -1

    def test_per_ip_and_total_caps(self):
        m = lambda r: metric(self.sc, 'ringside_http_rejections_total{reason="%s"}' % r)
        per0, tot0 = m("http_conns_per_ip"), m("http_conns")
        attacker = [self.half_open("127.0.0.2") for _ in range(9)]
        got = [self.answer(s, 0.3) for s in attacker]
        self.assertEqual(got.count(0), 5, "held from one IP: %r" % got)
        self.assertEqual(got.count(429), 4, got)
        self.assertEqual(m("http_conns_per_ip"), per0 + 4)
        self.assertIsNotNone(self.sc.wait_log(lambda l: l.get("msg") == "connection shed" and
                                              l.get("reason") == "http_conns_per_ip"))
        # Other addresses still get in; past the total (12 = 5 held + 7 more) each newcomer
        # closes the oldest pending connection: the attacker's from 127.0.0.2 go first.
        held = [s for s, g in zip(attacker, got) if g == 0]
        others = [self.half_open("127.0.0.%d" % (3 + i // 4)) for i in range(9)]
        got = [self.answer(s, 0.3) for s in others]
        self.assertEqual(got.count(0), 9, got)
        self.assertEqual([self.answer(s, 2) for s in held[:2]], [-1, -1], "oldest not evicted")
        self.assertEqual(m("http_conns"), tot0 + 2)
        self.assertIsNotNone(self.sc.wait_log(lambda l: l.get("msg") == "connection shed" and
                                              l.get("reason") == "http_conns" and
                                              l.get("evicted") is True))
        # A probe at the full table is served (it evicts the oldest again).
        self.assertEqual(raw_request(self.sc.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0],
                         200)
        self.dash.assert_receives(self)
        # The header timeout frees the held slots; then /healthz is served again.
        for s in self.socks:
            if s.fileno() >= 0:
                self.answer(s, 6)
        self.assertTrue(wait_until(lambda: raw_request(self.sc.port, b"GET /healthz HTTP/1.1\r\n"
                                                       b"Host: x\r\n\r\n")[0] == 200, 5))


class FdExhaustion(unittest.TestCase):
    """Issue 17 item 4/5: a ring that fails to open for want of descriptors is retried on the next
    scan (never blacklisted); --fd-reserve keeps descriptors for rings while clients flood."""

    NOFILE = 48

    def start(self, *args):
        self.sc = Sidecar(("--http-conns-per-ip", "1000", "--max-http-conns", "1000") + args,
                          prefix=("prlimit", "--nofile=%d:%d" % (self.NOFILE, self.NOFILE), "--"))
        self.addCleanup(self.sc.stop)
        self.dash = Dashboard(self.sc)
        self.addCleanup(self.dash.close)
        self.socks = []
        self.addCleanup(lambda: [s.close() for s in self.socks])

    def flood(self, until, count=None):
        for _ in range(count or self.NOFILE + 20):
            s = socket.create_connection(("127.0.0.1", self.sc.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            self.socks.append(s)
        self.assertIsNotNone(self.sc.wait_log(until, 5), "the flood did not reach the limit")

    def wait_agent(self, agent, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.dash.ws.recv_json(max(0.01, deadline - time.monotonic()))
            if m.get("type") == "agent_status" and m.get("agent_id") == agent:
                return m
        return None

    def test_ring_opened_at_emfile_is_retried(self):
        self.start("--fd-reserve", "0")
        retried0 = metric(self.sc, "ringside_rings_open_retried_total")
        rejected0 = metric(self.sc, "ringside_rings_rejected_total")
        self.flood(lambda l: "out of file descriptors" in l.get("msg", ""))
        mark = len(self.sc.logs)
        self.sc.pub("status", "working", "born at the fd limit", agent="late")
        entry = self.sc.wait_log(lambda l: l.get("msg") == "ring open failed: retrying on the "
                                 "next scan", timeout=5, start=mark)
        self.assertIsNotNone(entry, "no log line naming the retried open")
        self.assertIn("open files", entry["error"])
        for s in self.socks:
            s.close()
        self.socks = []
        # The next scan (every 2 s) attaches it: the agent appears on the dashboard.
        self.assertIsNotNone(self.wait_agent("late", 8), "the agent never appeared")
        self.assertGreater(metric(self.sc, "ringside_rings_open_retried_total"), retried0)
        self.assertEqual(metric(self.sc, "ringside_rings_rejected_total"), rejected0)

    def test_fd_reserve_keeps_descriptors_for_rings(self):
        self.start("--fd-reserve", "16")
        before = metric(self.sc, 'ringside_http_rejections_total{reason="fd_reserve"}')
        self.flood(lambda l: l.get("msg") == "connection shed" and
                   l.get("reason") == "fd_reserve")
        self.assertIsNone(self.sc.wait_log(lambda l: "out of file descriptors" in l.get("msg", ""), 0.2),
                          "reached EMFILE despite the reserve")
        # A ring born during the flood attaches at once.
        self.sc.pub("status", "working", "born during the flood", agent="during")
        self.assertIsNotNone(self.wait_agent("during", 3), "the agent did not appear in time")
        for s in self.socks:
            s.close()
        self.socks = []
        self.assertTrue(wait_until(lambda: self.sc.http("/healthz")[0] == 200, 5))
        self.assertGreater(metric(self.sc, 'ringside_http_rejections_total{reason="fd_reserve"}'),
                           before)


class InboundBudget(unittest.TestCase):
    """Issue 17 item 2: a per-connection budget of messages and inflated bytes per second; unknown
    types and fields refused; --max-message sized to the largest legitimate message."""

    def setUp(self):
        self.sc = Sidecar()  # defaults: the budget and --max-message as shipped
        self.dash = Dashboard(self.sc)

    def tearDown(self):
        self.dash.close()
        self.sc.stop()
        self.sc.assert_clean()

    def closed_for_inbound(self, w, before):
        code, reason, _ = w.expect_close(5)
        self.assertEqual(code, 1008, reason)
        self.assertIn(b"inbound", reason)
        self.assertTrue(wait_until(lambda: metric(
            self.sc, 'ws_updates_disconnections_total{reason="inbound_rate"}') == before + 1, 5))
        self.assertIsNotNone(self.sc.wait_log(lambda l: l.get("event") == "disconnect" and
                                              l.get("reason") == "inbound_rate"))

    def test_message_flood_closed(self):
        before = metric(self.sc, 'ws_updates_disconnections_total{reason="inbound_rate"}')
        w = RawWS.connect(self.sc.port)
        self.assertEqual(w.recv_json()["type"], "snapshot")
        w.send_raw(encode_frame(OP_TEXT, b'{"type":"pong"}') * 500)
        self.closed_for_inbound(w, before)
        w.close()
        self.dash.assert_receives(self)

    def test_control_frame_and_empty_fragment_floods_closed(self):
        """Frames that are not whole messages count too: an endless fragmented message of empty
        continuation frames, and unsolicited pongs or pings, each used to keep the loop busy
        without moving any budget (found by an outside review)."""
        floods = {
            "fragments": encode_frame(OP_TEXT, b'{"type":', fin=False) +
            encode_frame(OP_CONT, b"", fin=False) * 2000,
            "pongs": encode_frame(OP_PONG, b"") * 2000,
            "pings": encode_frame(OP_PING, b"x") * 2000,
        }
        for name, data in floods.items():
            before = metric(self.sc, 'ws_updates_disconnections_total{reason="inbound_rate"}')
            w = RawWS.connect(self.sc.port)
            self.assertEqual(w.recv_json()["type"], "snapshot")
            w.send_raw(data)
            code, reason, _ = w.expect_close(5)
            self.assertEqual((code, reason), (1008, b"inbound frame budget exceeded"), name)
            self.assertTrue(wait_until(lambda: metric(
                self.sc, 'ws_updates_disconnections_total{reason="inbound_rate"}') == before + 1,
                5), name)
            w.close()
        self.dash.assert_receives(self)

    def test_line_rate_flood_does_not_stall_others(self):
        # Clients flooding at line rate (reconnecting when closed) from other processes: the
        # sidecar reads at most 64 KiB per turn from each, and stops reading an over-budget one,
        # so the dashboard and /healthz stay on time (wslay alone would read forever).
        code = ("import socket,sys\n"
                "sys.path.insert(0, %r)\n"
                "from wsraw import RawWS, encode_frame, OP_TEXT\n"
                "chunk = encode_frame(OP_TEXT, b'{\"type\":\"pong\"}') * 200\n"
                "while True:\n"
                "    try:\n"
                "        w = RawWS.connect(%d, source='127.0.0.2'); w.recv_json()\n"
                "        while w.send_raw(chunk): pass\n"
                "        w.close()\n"
                "    except Exception: pass\n" % (os.path.join(HERE, "..", "conformance"),
                                                  self.sc.port))
        floods = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
        try:
            self.assertTrue(wait_until(lambda: metric(
                self.sc, 'ws_updates_disconnections_total{reason="inbound_rate"}') >= 3, 5))
            for _ in range(3):
                self.dash.assert_receives(self)
                t0 = time.monotonic()
                self.assertEqual(self.sc.http("/healthz")[0], 200)
                self.assertLess(time.monotonic() - t0, 1.0)
        finally:
            for p in floods:
                p.kill()
                p.wait()

    def test_compressed_amplification_bounded(self):
        # Each ~50-byte compressed message inflates to 16 000 bytes of JSON: 64 KiB/s buys four.
        before = metric(self.sc, 'ws_updates_disconnections_total{reason="inbound_rate"}')
        w = RawWS.connect(self.sc.port, extensions="permessage-deflate; client_max_window_bits")
        self.assertIsNotNone(w.deflate)
        self.assertEqual(w.recv_json()["type"], "snapshot")
        body = '{"type":"x","p":"%s"}' % (" " * (16000 - 19))
        t0 = time.monotonic()
        for _ in range(40):
            if not w.send_compressed(body):
                break
        self.closed_for_inbound(w, before)
        self.assertLess(time.monotonic() - t0, 3.0)
        w.close()
        self.dash.assert_receives(self)

    def test_unknown_type_and_field_refused(self):
        w = RawWS.connect(self.sc.port)
        self.assertEqual(w.recv_json()["type"], "snapshot")
        for msg, code, needle in (('{"type":"pong","x":1}', "unknown_field", '"x"'),
                                  ('{"type":"subscribe","agent_id":["a"]}', "unknown_field",
                                   '"agent_id"'),
                                  ('{"type":"pause"}', "unknown_type", "endpoint"),
                                  ('{"type":"no-such"}', "unknown_type", "type")):
            w.send_text(msg)
            m, _ = w.recv_until(lambda m: m.get("type") == "error")
            self.assertEqual(m["error"], code, msg)
            self.assertIn(needle, m["message"])
        w.close()

    def test_largest_legitimate_messages_accepted(self):
        w = RawWS.connect(self.sc.port)
        self.assertEqual(w.recv_json()["type"], "snapshot")
        ids = ["a%062d" % i for i in range(50)]
        sub = json.dumps({"type": "subscribe", "agent_ids": ids, "project_ids": ids,
                          "event_types": ["agent_status", "task_started", "progress",
                                          "task_ended"]})
        w.send_text(sub)
        m, _ = w.recv_until(lambda m: m.get("type") == "subscribed")
        self.assertEqual(len(m["filters"]["agent_ids"]), 50)
        # An 8 KiB token fits (refused as a token, not as a message).
        w.send_text(json.dumps({"type": "auth", "token": "x" * 8192}))
        m, _ = w.recv_until(lambda m: m.get("type") == "error")
        self.assertEqual(m["error"], "unsupported")  # --no-auth here; the size was accepted
        w.close()


class RingState(unittest.TestCase):
    """Issue 17 item 1: what rings can make the sidecar hold is capped — running tasks per agent,
    rings read at once, scrollback allocated as used — and the snapshot is never a slow client."""

    def start(self, *args):
        self.sc = Sidecar(args)
        self.addCleanup(self.sc.stop)
        self.dash = Dashboard(self.sc)
        self.addCleanup(self.dash.close)

    def test_running_tasks_per_agent_capped(self):
        self.start("--max-tasks-per-agent", "5")
        before = metric(self.sc, "ringside_tasks_refused_total")
        for i in range(8):
            self.sc.pub("task-start", "t%d" % i, "task %d" % i, agent="busy")
        self.assertTrue(wait_until(lambda: metric(self.sc, "ringside_tasks_refused_total") ==
                                   before + 3, 5))
        self.assertIsNotNone(self.sc.wait_log(lambda l: l.get("msg", "").startswith(
            "task event dropped") and l.get("agent") == "busy"))
        w = RawWS.connect(self.sc.port)
        snap = w.recv_json()
        busy = [a for a in snap["agents"] if a["agent_id"] == "busy"][0]
        self.assertEqual(len(busy["tasks"]), 5)
        w.close()
        self.dash.assert_receives(self)

    def test_big_snapshot_is_not_a_slow_client(self):
        self.start("--send-queue-bytes", "4096")
        for i in range(40):
            self.sc.pub("task-start", "t%02d" % i, "x" * 200, agent="wide")
        w = None
        for _ in range(50):
            w = RawWS.connect(self.sc.port)
            m = w.recv_message(5)
            self.assertEqual(m[0], 0x1, "closed instead of a snapshot: %r" % (m,))
            snap = json.loads(m[1])
            if len(m[1]) > 2 * 4096 and len(snap["agents"][0]["tasks"]) == 40:
                break
            w.close()
        self.assertGreater(len(m[1]), 2 * 4096)
        # The connection then works normally: a status event arrives.
        self.sc.pub("status", "working", "after the snapshot", agent="wide")
        got, _ = w.recv_until(lambda m: m.get("type") == "agent_status")
        self.assertEqual(got["agent_id"], "wide")
        w.close()
        self.dash.assert_receives(self)

    def test_scrollback_allocated_as_used(self):
        from conflib import sanitized
        if sanitized():
            self.skipTest("memory figures are meaningless under ASan")

        def vm_data_kib(pid):
            # Allocated (not only touched) memory: an up-front 1 MiB buffer counts here in full.
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmData:"):
                        return int(line.split()[1])
            return 0
        self.start("--scrollback", "1048576")
        proc_rss_kib = vm_data_kib
        rss0 = proc_rss_kib(self.sc.proc.pid)
        for i in range(60):
            self.sc.pub("term", "t%02d" % i, agent="chatty%d" % (i % 3), stdin=b"hello\r\n")

        def n_tasks():
            w = RawWS.connect(self.sc.port)
            try:
                return sum(len(a["tasks"]) for a in w.recv_json()["agents"])
            finally:
                w.close()
        self.assertTrue(wait_until(lambda: n_tasks() == 60, 10))
        grown = proc_rss_kib(self.sc.proc.pid) - rss0
        # 60 tasks with a 1 MiB scrollback each were 60 MiB allocated up front.
        self.assertLess(grown, 8 * 1024, "allocated memory grew by %d KiB" % grown)
        self.dash.assert_receives(self)

    def ended_tasks(self, agent, timeout):
        """task_ended events of agent seen by the dashboard within timeout."""
        got = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m = self.dash.ws.recv_json(max(0.01, deadline - time.monotonic()))
            except AssertionError:
                break
            if m.get("type") == "task_ended" and m.get("agent_id") == agent:
                got.append(m)
        return got

    def test_tasks_of_a_cleanly_closed_agent_end_after_grace(self):
        self.start("--task-close-grace", "1")
        self.sc.pub("task-start", "left-open", "never ended", agent="tidy")  # closes cleanly
        t0 = time.monotonic()
        ended = self.ended_tasks("tidy", 4)
        self.assertEqual([m["task_id"] for m in ended], ["left-open"])
        self.assertEqual(ended[0]["outcome"], "cancelled")
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        self.assertEqual(metric(self.sc, 'ringside_tasks_expired_total{reason="closed"}'), 1)
        self.assertIsNotNone(self.sc.wait_log(lambda l: l.get("msg") == "tasks ended by the "
                                              "sidecar" and l.get("reason") == "closed"))
        self.dash.assert_receives(self)

    def test_another_process_continues_the_tasks(self):
        # A task continued by a later process of the agent within the grace is not ended.
        self.start("--task-close-grace", "2")
        env = dict(os.environ, RINGSIDE_SHM_DIR=self.sc.shm_dir)
        self.sc.pub("task-start", "t", "started by one process", agent="relay")
        p = subprocess.Popen([binpath("ringside-run"), "--agent", "relay", "--project", "p1",
                              "--task", "other", "--", "sh", "-c", "read x"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)
        try:
            self.assertEqual(self.ended_tasks("relay", 3.5), [])
        finally:
            p.communicate(b"\n", timeout=10)

    def test_idle_running_task_expires(self):
        self.start("--task-idle-timeout", "1", "--task-close-grace", "0")
        env = dict(os.environ, RINGSIDE_SHM_DIR=self.sc.shm_dir)
        p = subprocess.Popen([binpath("ringside-run"), "--agent", "sleepy", "--project", "p1",
                              "--task", "quiet", "--", "sh", "-c", "read x"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)
        try:
            ended = self.ended_tasks("sleepy", 4)
            self.assertEqual([m["task_id"] for m in ended], ["quiet"])
            self.assertEqual(metric(self.sc, 'ringside_tasks_expired_total{reason="idle"}'), 1)
        finally:
            p.communicate(b"\n", timeout=10)
        self.dash.assert_receives(self)

    def test_max_rings(self):
        self.start("--max-rings", "2")
        env = dict(os.environ, RINGSIDE_SHM_DIR=self.sc.shm_dir)
        procs = []
        try:
            for i in range(2):
                procs.append(subprocess.Popen(
                    [binpath("ringside-run"), "--agent", "held%d" % i, "--project", "p1",
                     "--task", "t", "--", "sh", "-c", "read x"], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
            self.assertTrue(wait_until(lambda: metric(self.sc, "ringside_rings_active") == 2, 5))
            before = metric(self.sc, "ringside_rings_over_limit_total")
            procs.append(subprocess.Popen(
                [binpath("ringside-run"), "--agent", "third", "--project", "p1",
                 "--task", "t", "--", "sh", "-c", "read x"], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
            self.assertIsNotNone(self.sc.wait_log(lambda l: l.get("msg") ==
                                                  "ring not read: --max-rings reached", 5))
            self.assertGreater(metric(self.sc, "ringside_rings_over_limit_total"), before)
            self.assertEqual(metric(self.sc, "ringside_rings_active"), 2)
            procs[0].communicate(b"\n", timeout=10)  # one ends: the third is read
            self.assertIsNotNone(self.sc.wait_log(lambda l: l.get("msg") == "agent ring attached"
                                                  and l.get("agent") == "third", 8))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                if p.stdin:
                    p.stdin.close()
        # The probe's own ring counts too: once the held rings are gone it is read at once.
        self.assertTrue(wait_until(lambda: metric(self.sc, "ringside_rings_active") == 0, 5))
        self.dash.assert_receives(self)


if __name__ == "__main__":
    main()
