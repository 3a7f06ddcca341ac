"""The sidecar's server core under hostile HTTP input, heartbeat (B7), drain (B11), capacity and
EMFILE, connection logs (F3) and configuration (F1): REQUIREMENTS B1, B7, B11, B12, F1, F3; issue 5.

Drives the real `ringside` process with raw sockets and the stdlib WebSocket client of
../conformance/wsraw.py.  After every abusive case the server must still answer /healthz and accept
a new WebSocket client.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conformance"))
from conflib import (HandshakeError, RawWS, Sidecar, SidecarClassCase, binpath, main,  # noqa: E402
                     proc_cpu_seconds, proc_nfds, wait_until)
from wsraw import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT  # noqa: E402


def http_exchange(port, data, pace=0.0, timeout=5.0):
    """Sends data (one byte per send, `pace` s apart, when pace > 0), reads until the server closes.
    Returns (status, headers, body, raw response bytes, seconds until EOF or None on timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.monotonic()
    try:
        if pace > 0:
            for b in data:
                s.sendall(bytes([b]))
                time.sleep(pace)  # pacing the bytes out, not waiting for anything
        else:
            s.sendall(data)
        chunks, closed_at = [], None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                b = b""
            if not b:
                closed_at = time.monotonic() - t0
                break
            chunks.append(b)
    finally:
        s.close()
    raw = b"".join(chunks)
    return parse_response(raw) + (raw, closed_at)


def parse_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/1.1 ") else 0
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def upgrade_request(port, path="/ws/events", method="GET", drop=(), extra=None):
    h = {"Host": "127.0.0.1:%d" % port, "Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    for k in drop:
        h.pop(k, None)
    h.update(extra or {})
    lines = ["%s %s HTTP/1.1" % (method, path)] + ["%s: %s" % kv for kv in h.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def get_request(path, method="GET", extra=""):
    return ("%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, path, extra)).encode()


class HttpHostile(SidecarClassCase):
    """Hostile HTTP input: every case is followed by a check that the server still serves."""

    sidecar_args = ("--handshake-timeout", "1", "--max-header", "1024")

    def tearDown(self):
        super().tearDown()
        self.assertServing()

    def refused(self, data, status, error=None, pace=0.0):
        st, hdrs, body, raw, closed = http_exchange(self.sc.port, data, pace=pace)
        self.assertEqual(st, status, raw[:300])
        self.assertIsNotNone(closed, "connection not closed after the refusal")
        if error is not None:
            self.assertEqual(hdrs.get("content-type"), "application/json")
            doc = json.loads(body)
            self.assertEqual(doc["error"], error, doc)
            self.assertTrue(doc.get("message"))
        return hdrs

    def test_upgrade_header_variants_accepted(self):
        # Firefox sends "Connection: keep-alive, Upgrade"; tokens are case-insensitive.
        for extra in ({"Connection": "keep-alive, Upgrade"}, {"Upgrade": "WebSocket"},
                      {"Connection": "upgrade"}, {"Connection": "Upgrade , keep-alive"}):
            with self.subTest(headers=extra):
                data = upgrade_request(self.sc.port, extra=extra)
                s = socket.create_connection(("127.0.0.1", self.sc.port), timeout=5)
                s.sendall(data)
                w = RawWS(s)
                self._socks.append(w)
                status, hdrs, _ = w._read_head(5)
                self.assertEqual(status, 101, hdrs)

    def test_pipelined_requests(self):
        # Plain responses close the connection (docs/protocol.md): the first is answered, the
        # connection then ends instead of hanging.
        data = get_request("/healthz") + get_request("/readyz") + get_request("/metrics")
        st, hdrs, body, raw, closed = http_exchange(self.sc.port, data)
        self.assertEqual(st, 200)
        self.assertTrue(raw.startswith(b"HTTP/1.1 200"), raw[:100])
        self.assertIn(b'{"status":"ok"}', raw)
        self.assertIsNotNone(closed)

    def test_frames_pipelined_behind_the_upgrade(self):
        from wsraw import encode_frame
        w = RawWS.connect(self.sc.port, pre_frames=encode_frame(OP_TEXT, '{"type":"piped"}'))
        self._socks.append(w)
        m, _ = w.recv_until(lambda m: m.get("type") == "error")
        self.assertEqual(m["error"], "unknown_type")

    def test_partial_request_then_silence(self):
        before = self.sc.metrics().get('ringside_http_rejections_total{reason="handshake_timeout"}', 0)
        st, _, _, raw, closed = http_exchange(self.sc.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                                              timeout=6)
        self.assertIsNotNone(closed, "not closed within 6 s with --handshake-timeout 1")
        self.assertGreater(closed, 0.7)
        self.assertLess(closed, 3.0)
        self.assertEqual(raw, b"")
        after = self.sc.metrics()['ringside_http_rejections_total{reason="handshake_timeout"}']
        self.assertGreaterEqual(after, before + 1)

    def test_connect_and_send_nothing(self):
        _, _, _, raw, closed = http_exchange(self.sc.port, b"", timeout=6)
        self.assertIsNotNone(closed)
        self.assertLess(closed, 3.0)

    def test_slowloris_trickle_does_not_extend_the_timeout(self):
        # One byte every 0.2 s forever: the timeout counts from the connection, not the last byte.
        s = socket.create_connection(("127.0.0.1", self.sc.port), timeout=5)
        t0 = time.monotonic()
        closed = None
        try:
            for b in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                try:
                    s.sendall(bytes([b]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = time.monotonic() - t0
                    break
                s.settimeout(0.2)
                try:
                    if s.recv(1) == b"":
                        closed = time.monotonic() - t0
                        break
                except socket.timeout:
                    pass
                except ConnectionResetError:  # closed with our bytes unread: a reset
                    closed = time.monotonic() - t0
                    break
                if time.monotonic() - t0 > 6:
                    break
        finally:
            s.close()
        self.assertIsNotNone(closed, "a trickling client kept the connection open for 6 s")
        self.assertLess(closed, 3.0)

    def test_oversized_head_431(self):
        self.refused(get_request("/healthz", extra="X-Big: %s\r\n" % ("b" * 2000)), 431,
                     "header_too_large")

    def test_oversized_head_without_end_431(self):
        self.refused(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"b" * 5000, 431, "header_too_large")

    def test_too_many_header_fields_431(self):
        extra = "".join("X-%d: v\r\n" % i for i in range(80))
        self.refused(get_request("/healthz", extra=extra), 431, "too_many_headers")

    def test_non_get_on_ws_events_405(self):
        for method in ("POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"):
            with self.subTest(method=method):
                hdrs = self.refused(upgrade_request(self.sc.port, method=method), 405)
                self.assertIn("GET", hdrs.get("allow", ""))

    def test_post_healthz_405(self):
        self.refused(get_request("/healthz", method="POST", extra="Content-Length: 0\r\n"), 405,
                     "method_not_allowed")

    def test_bad_websocket_key_400(self):
        for key in ("", "short", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ===",
                    "dGhlIHNhbXBsZSBub25j!!==", "dGhlIHNhbXBsZSBub25jZXg=",
                    "dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ=="):
            with self.subTest(key=key):
                self.refused(upgrade_request(self.sc.port, extra={"Sec-WebSocket-Key": key}), 400,
                             "bad_key")
        self.refused(upgrade_request(self.sc.port, drop=("Sec-WebSocket-Key",)), 400, "bad_key")

    def test_websocket_version_8_426(self):
        for v in ("8", "12", "14", "13, 8", ""):
            with self.subTest(version=v):
                hdrs = self.refused(upgrade_request(
                    self.sc.port, extra={"Sec-WebSocket-Version": v}), 426, "bad_version")
                self.assertEqual(hdrs.get("sec-websocket-version"), "13")
        hdrs = self.refused(upgrade_request(self.sc.port, drop=("Sec-WebSocket-Version",)), 426)
        self.assertEqual(hdrs.get("sec-websocket-version"), "13")

    def test_missing_upgrade_426(self):
        self.refused(upgrade_request(self.sc.port, drop=("Upgrade",)), 426, "upgrade_required")
        self.refused(upgrade_request(self.sc.port, extra={"Upgrade": "h2c"}), 426,
                     "upgrade_required")
        self.refused(upgrade_request(self.sc.port, drop=("Connection",)), 426, "upgrade_required")
        self.refused(get_request("/ws/events"), 426, "upgrade_required")

    def test_unknown_path_404_json(self):
        for path in ("/nope", "/ws", "/ws/events/x", "/healthz/", "/%00", "/" + "a" * 600):
            with self.subTest(path=path[:20]):
                self.refused(get_request(path), 404, "not_found")

    def test_malformed_requests_400(self):
        for data in (b"\x00\x01\x02\x03\r\n\r\n", b"GET\r\n\r\n", b"GET /healthz\r\n\r\n",
                     b"GET  /healthz HTTP/1.1\r\n\r\n", b"GET /healthz HTTP/1.1\r\nNoColon\r\n\r\n",
                     b"GET /healthz HTTP/1.1\r\n folded: x\r\n\r\n",
                     b"GET /healthz HTTP/1.1\r\nX: a\x01b\r\n\r\n", b"\x16\x03\x01\x02\x00\x01"
                     b"\x00\x01\xfc\x03\x03" + os.urandom(64) + b"\r\n\r\n"):
            with self.subTest(data=data[:24]):
                st, _, _, raw, closed = http_exchange(self.sc.port, data)
                self.assertIn(st, (400, 505), raw[:200])
                self.assertIsNotNone(closed)

    def test_http2_version_505(self):
        st, _, _, raw, _ = http_exchange(self.sc.port, b"GET /healthz HTTP/2.0\r\n\r\n")
        self.assertIn(st, (505, 400), raw[:200])

    def test_many_abusive_connections_at_once(self):
        socks = []
        # From another address than the checks below: one address may hold only
        # --http-conns-per-ip connections in the HTTP phase (issue 17).
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", self.sc.port), timeout=5,
                                         source_address=("127.0.0.2", 0))
            s.sendall(b"GET /healthz HTTP/1.1\r\n" if i % 2 else b"\xff" * 64 + b"\r\n\r\n")
            socks.append(s)
        self.assertServing()
        for s in socks:
            s.close()


class HttpByteByByte(SidecarClassCase):
    """Requests sent one byte per TCP segment (default --handshake-timeout, so that a slow
    sanitizer build is not cut off)."""

    def tearDown(self):
        super().tearDown()
        self.assertServing()

    def test_request_one_byte_at_a_time(self):
        st, _, body, _, closed = http_exchange(self.sc.port, get_request("/healthz"), pace=0.002)
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body), {"status": "ok"})

    def test_upgrade_one_byte_at_a_time(self):
        s = socket.create_connection(("127.0.0.1", self.sc.port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in upgrade_request(self.sc.port):
            s.sendall(bytes([b]))
            time.sleep(0.001)
        w = RawWS(s)
        self._socks.append(w)
        status, hdrs, _ = w._read_head(5)
        self.assertEqual(status, 101)
        self.assertEqual(hdrs["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        self.assertEqual(w.recv_json()["type"], "snapshot")


class Heartbeat(SidecarClassCase):
    """B7 with --heartbeat-interval 1 --heartbeat-misses 2."""

    sidecar_args = ("--heartbeat-interval", "1", "--heartbeat-misses", "2")

    def run_client(self, w, seconds, pong_frames, pong_messages):
        """Reads for `seconds`, answering as told; returns (pings, heartbeats, close frame)."""
        pings, beats = [], []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            f = w.recv_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                if w.eof:
                    return pings, beats, None
                continue
            if f.opcode == OP_PING:
                pings.append(f.at)
                if pong_frames:
                    w.send_frame(OP_PONG, f.payload)
            elif f.opcode == OP_TEXT:
                m = f.json()
                if m.get("type") == "heartbeat":
                    beats.append(f.at)
                    self.assertRegex(m.get("timestamp", ""), r"^\d{4}-\d\d-\d\dT")
                    if pong_messages:
                        w.send_json({"type": "pong"})
            elif f.opcode == OP_CLOSE:
                return pings, beats, f
        return pings, beats, None

    def test_ping_and_heartbeat_each_interval(self):
        w = self.ws()
        pings, beats, close = self.run_client(w, 3.6, True, True)
        self.assertIsNone(close)
        self.assertGreaterEqual(len(pings), 3, pings)
        self.assertGreaterEqual(len(beats), 3, beats)
        for series in (pings, beats):
            gaps = [b - a for a, b in zip(series, series[1:])]
            for g in gaps:
                self.assertGreater(g, 0.5, gaps)
                self.assertLess(g, 2.0, gaps)

    def test_pong_messages_keep_the_client(self):
        w = self.ws()
        _, beats, close = self.run_client(w, 4.5, False, True)
        self.assertIsNone(close, "closed although it answered every heartbeat with a pong message")
        self.assertGreaterEqual(len(beats), 3)
        self.assertAlive(w)

    def test_pong_frames_keep_the_client(self):
        w = self.ws()
        pings, _, close = self.run_client(w, 4.5, True, False)
        self.assertIsNone(close, "closed although it answered every ping with a pong frame")
        self.assertGreaterEqual(len(pings), 3)
        self.assertAlive(w)

    def silent_client(self):
        w = self.ws()
        t0 = time.monotonic()
        _, _, close = self.run_client(w, 6, False, False)
        self.assertIsNotNone(close, "a client that answers nothing was not closed in 6 s")
        code, reason = close.close_code()
        self.assertEqual(code, 1008, reason)
        elapsed = close.at - t0
        self.assertGreater(elapsed, 1.5)
        self.assertLess(elapsed, 5.5)
        w.send_close(code)
        self.assertTrue(w.wait_eof())

    def test_silent_client_closed(self):
        self.silent_client()

    def test_silent_client_counted_as_heartbeat_timeout(self):
        key = 'ws_updates_disconnections_total{reason="heartbeat_timeout"}'
        before = self.sc.metrics().get(key, 0)
        self.silent_client()
        self.assertTrue(wait_until(lambda: self.sc.metrics().get(key, 0) >= before + 1, 3),
                        "heartbeat_timeout not counted in /metrics")


class ClientThread(threading.Thread):
    """A raw client reading until the connection ends; records shutdown messages and the close."""

    def __init__(self, w, answer_close=True):
        super().__init__(daemon=True)
        self.w, self.answer_close = w, answer_close
        self.shutdown = None
        self.shutdown_at = None
        self.close = None
        self.close_at = None
        self.eof_at = None
        self.after_close = []

    def run(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            f = self.w.recv_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                if self.w.eof:
                    self.eof_at = time.monotonic()
                    return
                continue
            if self.close is not None:
                self.after_close.append(f)
            if f.opcode == OP_TEXT:
                m = f.json()
                if m.get("type") == "shutdown":
                    self.shutdown, self.shutdown_at = m, f.at
            elif f.opcode == OP_PING:
                self.w.send_frame(OP_PONG, f.payload)
            elif f.opcode == OP_CLOSE:
                self.close, self.close_at = f.close_code(), f.at
                if self.answer_close:
                    self.w.send_close(self.close[0])


class Drain(unittest.TestCase):
    """B11: SIGTERM drains with /readyz 503, jittered shutdown messages, staggered 1001 closes."""

    def start(self, *args):
        sc = Sidecar(args)
        self.addCleanup(sc.assert_clean)
        self.addCleanup(sc.stop)
        return sc

    def clients(self, sc, n, answer_close=True):
        out = []
        for _ in range(n):
            w = RawWS.connect(sc.port)
            self.addCleanup(w.close)
            self.assertEqual(w.recv_json()["type"], "snapshot")
            t = ClientThread(w, answer_close)
            t.start()
            out.append(t)
        return out

    def test_drain(self):
        self.drain(check_shutdown=False)

    def test_drain_shutdown_message_jittered(self):
        self.drain(check_shutdown=True)

    def drain(self, check_shutdown):
        sc = self.start("--drain-timeout", "6")
        threads = self.clients(sc, 8)
        t0 = time.monotonic()
        sc.signal(signal.SIGTERM)
        self.assertIsNotNone(sc.wait_log(lambda l: l.get("msg") == "draining", 5))
        st, hdrs, body = sc.http("/readyz")
        self.assertEqual(st, 503)
        self.assertIn("Retry-After", hdrs)
        self.assertEqual(json.loads(body)["status"], "draining")
        st, hdrs, body = sc.upgrade("/ws/events")
        self.assertEqual(st, 503)
        self.assertIn("retry-after", hdrs)
        self.assertEqual(json.loads(body)["error"], "draining")
        self.assertEqual(sc.http("/healthz")[0], 200, "liveness must stay up while draining")
        for t in threads:
            t.join(15)
        rc = sc.wait_exit(10)
        exited = time.monotonic() - t0
        self.assertEqual(rc, 0)
        self.assertLess(exited, 6 + 1.5, "exit %.2f s after SIGTERM with --drain-timeout 6" % exited)
        delays = []
        for t in threads:
            self.assertIsNotNone(t.close, "a client got no close frame")
            self.assertEqual(t.close[0], 1001)
            if not check_shutdown:
                continue
            self.assertIsNotNone(t.shutdown, "a client got no shutdown message before its close")
            self.assertLessEqual(t.shutdown_at, t.close_at)
            self.assertIsInstance(t.shutdown.get("reconnect_after_ms"), int)
            self.assertGreater(t.shutdown["reconnect_after_ms"], 0)
            delays.append(t.shutdown["reconnect_after_ms"])
        if check_shutdown:
            self.assertGreater(len(set(delays)), 1, "reconnect_after_ms not jittered: %r" % delays)
        closes = sorted(t.close_at - t0 for t in threads)
        self.assertGreater(closes[-1] - closes[0], 0.2, "closes not spread: %r" % closes)

    def test_drain_force_closes_a_client_that_ignores_the_close(self):
        sc = self.start("--drain-timeout", "2")
        good = self.clients(sc, 2)
        bad = self.clients(sc, 1, answer_close=False)[0]
        t0 = time.monotonic()
        sc.signal(signal.SIGTERM)
        rc = sc.wait_exit(10)
        exited = time.monotonic() - t0
        self.assertEqual(rc, 0)
        self.assertGreater(exited, 1.5, "exited before the drain timeout despite a stuck client")
        self.assertLess(exited, 2 + 1.5)
        bad.join(5)
        self.assertIsNotNone(bad.eof_at, "the stuck client's connection was not closed")
        for t in good:
            t.join(5)
            self.assertEqual(t.close[0], 1001)

    def test_drain_without_clients_exits_at_once(self):
        sc = self.start("--drain-timeout", "10")
        t0 = time.monotonic()
        sc.signal(signal.SIGTERM)
        self.assertEqual(sc.wait_exit(10), 0)
        self.assertLess(time.monotonic() - t0, 2.0)

    def test_sigint_drains_too(self):
        sc = self.start("--drain-timeout", "3")
        t = self.clients(sc, 1)[0]
        sc.signal(signal.SIGINT)
        self.assertEqual(sc.wait_exit(10), 0)
        t.join(5)
        self.assertEqual(t.close[0], 1001)


class Capacity(unittest.TestCase):
    def test_max_connections(self):
        sc = Sidecar(("--max-connections", "3"))
        self.addCleanup(sc.stop)
        ws = []
        for _ in range(3):
            w = RawWS.connect(sc.port)
            self.addCleanup(w.close)
            self.assertEqual(w.recv_json()["type"], "snapshot")
            ws.append(w)
        with self.assertRaises(HandshakeError) as cm:
            RawWS.connect(sc.port)
        self.assertEqual(cm.exception.status, 503)
        self.assertIn("retry-after", cm.exception.headers)
        self.assertEqual(json.loads(cm.exception.body)["error"], "capacity")
        self.assertEqual(sc.http("/healthz")[0], 200, "plain HTTP must work at capacity")
        ws[0].send_close(1000)
        ws[0].expect_close(reply=False)
        self.assertTrue(ws[0].wait_eof())

        def try_connect():
            try:
                w = RawWS.connect(sc.port)
            except HandshakeError:
                return None
            self.addCleanup(w.close)
            return w
        w = wait_until(try_connect, 5, 0.05)
        self.assertIsNotNone(w, "a slot freed by a close was not reusable")
        self.assertEqual(w.recv_json()["type"], "snapshot")


class Emfile(unittest.TestCase):
    """Out of file descriptors: degrade with 503 / closed sockets, never spin, recover."""

    NOFILE = 48

    def test_emfile(self):
        # Many connections from one address: --http-conns-per-ip would shed them before EMFILE.
        sc = Sidecar(("--http-conns-per-ip", "1000", "--fd-reserve", "0"),
                     prefix=("prlimit", "--nofile=%d:%d" % (self.NOFILE, self.NOFILE), "--"))
        self.addCleanup(sc.stop)
        pid = sc.proc.pid
        base = proc_nfds(pid)
        self.assertLess(base, self.NOFILE - 8, "too few spare descriptors for the test")
        socks = []
        try:
            for _ in range(self.NOFILE + 30):
                s = socket.create_connection(("127.0.0.1", sc.port), timeout=5)
                socks.append(s)
            self.assertIsNotNone(sc.wait_log(lambda l: "file descriptor" in l.get("msg", "") and
                                             l.get("level") == "warn" and "retry_in_ms" in l, 5),
                                 "no EMFILE warning logged")
            cpu0 = proc_cpu_seconds(pid)
            t0 = time.monotonic()
            time.sleep(2.0)  # measuring CPU use over an interval, not waiting for an event
            cpu = proc_cpu_seconds(pid) - cpu0
            wall = time.monotonic() - t0
            self.assertLess(cpu / wall, 0.15, "sidecar used %.2f s CPU in %.2f s while out of fds"
                            % (cpu, wall))
            self.assertLessEqual(proc_nfds(pid), self.NOFILE)
            # Some of the connections beyond the limit were answered 503 (the spare-fd trick).
            answered = 0
            for s in socks[-30:]:
                s.settimeout(0.05)
                try:
                    if s.recv(64).startswith(b"HTTP/1.1 503"):
                        answered += 1
                except (socket.timeout, ConnectionResetError):
                    pass
            self.assertGreater(answered, 0, "no connection shed with 503")
        finally:
            for s in socks:
                s.close()

        def serving():
            try:
                return sc.http("/healthz")[0] == 200
            except OSError:
                return False
        self.assertTrue(wait_until(serving, 15, 0.1), "not serving after the sockets closed")
        w = RawWS.connect(sc.port)
        self.addCleanup(w.close)
        self.assertEqual(w.recv_json()["type"], "snapshot")


class Logs(SidecarClassCase):
    """F3: at debug level every connection's open and close, with code, reason, closed_by,
    duration, bytes."""

    sidecar_args = ("--log-level", "debug")

    def closed_line(self, conn_id):
        return self.sc.wait_log(lambda l: l.get("msg") == "client disconnected" and
                                l.get("conn") == conn_id, 5)

    def open_conn(self):
        start = self.sc.n_logs()
        w = self.ws()
        opened = self.sc.wait_log(lambda l: l.get("msg") == "client connected", 5, start)
        self.assertIsNotNone(opened)
        for k in ("conn", "ip", "endpoint", "level", "ts"):
            self.assertIn(k, opened)
        return w, opened["conn"]

    def test_client_close_logged(self):
        w, cid = self.open_conn()
        t0 = time.monotonic()
        time.sleep(0.3)  # the duration being measured
        w.send_close(1000, "bye")
        w.expect_close(reply=False)
        elapsed = time.monotonic() - t0
        line = self.closed_line(cid)
        self.assertIsNotNone(line, "no close line for conn %s" % cid)
        self.assertEqual(line["code"], 1000)
        self.assertEqual(line["closed_by"], "client")
        self.assertTrue(line.get("reason"))
        self.assertGreaterEqual(line["duration_s"], 0.25)
        self.assertLess(line["duration_s"], elapsed + 1.0)
        self.assertGreater(line["bytes_in"], 0)
        self.assertGreater(line["bytes_out"], 0)

    def test_server_close_logged(self):
        from wsraw import OP_BINARY
        w, cid = self.open_conn()
        w.send_frame(OP_BINARY, b"\x01")
        w.expect_close()
        line = self.closed_line(cid)
        self.assertIsNotNone(line)
        self.assertEqual(line["code"], 1003)
        self.assertEqual(line["closed_by"], "server")
        self.assertTrue(line.get("reason"))
        self.assertIn("duration_s", line)

    def test_protocol_error_logged(self):
        w, cid = self.open_conn()
        w.send_frame(OP_TEXT, b"x", mask=False)
        w.expect_close()
        line = self.closed_line(cid)
        self.assertIsNotNone(line)
        self.assertEqual(line["code"], 1002)
        self.assertEqual(line["closed_by"], "server")
        self.assertEqual(line["reason"], "protocol_error")

    def test_abrupt_disconnect_logged(self):
        w, cid = self.open_conn()
        w.close()
        line = self.closed_line(cid)
        self.assertIsNotNone(line)
        self.assertEqual(line["closed_by"], "client")
        self.assertIn("code", line)
        self.assertIn("duration_s", line)

    def test_refused_request_logged(self):
        start = self.sc.n_logs()
        http_exchange(self.sc.port, get_request("/nope"))
        self.assertIsNotNone(self.sc.wait_log(
            lambda l: l.get("msg") == "request refused" and l.get("status") == 404, 5, start))

    def test_every_line_is_json(self):
        bad = [l for l in list(self.sc.logs) if l.get("msg") == "<non-json>"]
        self.assertEqual(bad, [])


# ---- configuration ----------------------------------------------------------------------------

HELP_OPT = re.compile(r"^  --([a-z0-9-]+)(?: (N|VALUE))?\s+(.*)$")
HELP_ENV = re.compile(r"^\s+\[env (RINGSIDE_[A-Z0-9_]+)(?:, default (.*))?\]$")

# Invalid values of string options that are validated at start.
STR_INVALID = {"listen": ["nonsense", "127.0.0.1:99999", "127.0.0.1:"],
               "log-level": ["loud"], "jwt-alg": ["none", "HS512"], "redis": ["http://x:1"],
               "shm-dir": [""]}
INT_INVALID = ["abc", "-1", "1.5", "", "99999999999999999999999"]


def help_options():
    """[(name, kind, env, default)] parsed from `ringside --help`; kind is INT, STR or BOOL."""
    out = subprocess.run([binpath("ringside"), "--help"], capture_output=True, timeout=10,
                         text=True)
    assert out.returncode == 0, out
    lines = out.stdout.splitlines()
    opts = []
    for i, line in enumerate(lines):
        m = HELP_OPT.match(line)
        if not m or m.group(1) in ("help", "version", "env-example"):
            continue
        e = HELP_ENV.match(lines[i + 1]) if i + 1 < len(lines) else None
        assert e, "option --%s has no [env ...] line" % m.group(1)
        kind = {"N": "INT", "VALUE": "STR", None: "BOOL"}[m.group(2)]
        opts.append((m.group(1), kind, e.group(1), e.group(2)))
    return opts


class Config(unittest.TestCase):
    """F1: every option as flag and RINGSIDE_* env (flag wins); invalid values rejected at start
    with one line naming the option.  Table-driven over `ringside --help`."""

    @classmethod
    def setUpClass(cls):
        cls.opts = help_options()
        cls.shm = tempfile.mkdtemp(prefix="rs-shm-")

    def base(self, skip=()):
        b = {"listen": "127.0.0.1:0", "shm-dir": self.shm, "no-auth": None}
        args = []
        for k, v in b.items():
            if k in skip:
                continue
            args += ["--" + k] + ([] if v is None else [v])
        return args

    def run_rejected(self, args, env=None, name=None):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("RINGSIDE_") or
                    k in ("RINGSIDE_BIN", "RINGSIDE_LIB", "RINGSIDE_SRC")}
        full_env.update(env or {})
        p = subprocess.Popen([binpath("ringside")] + args, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=full_env,
                             text=True)
        try:
            out, err = p.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            self.fail("started instead of rejecting %r %r" % (args, env))
        self.assertNotEqual(p.returncode, 0, (args, env, err))
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, "want one error line, got %r" % err)
        if name:
            self.assertIn("--" + name, lines[0])
        return lines[0]

    def test_help_covers_the_design_options(self):
        names = {o[0] for o in self.opts}
        for n in ("listen", "shm-dir", "redis", "instance-id", "jwt-key", "jwt-alg", "no-auth",
                  "allowed-origins", "dashboard", "log-level", "heartbeat-interval",
                  "heartbeat-misses", "drain-timeout", "replay-window", "max-message",
                  "send-queue", "conn-msg-rate", "global-msg-rate", "conn-rate",
                  "max-connections", "user-conns", "handshake-timeout", "max-header"):
            self.assertIn(n, names)
        for name, _, env, _ in self.opts:
            self.assertEqual(env, "RINGSIDE_" + name.upper().replace("-", "_"))

    def test_invalid_values_rejected_as_flag(self):
        for name, kind, env, _ in self.opts:
            vals = INT_INVALID if kind == "INT" else (["maybe"] if kind == "BOOL" else
                                                      STR_INVALID.get(name, []))
            for v in vals:
                with self.subTest(option=name, value=v):
                    arg = ["--%s=%s" % (name, v)] if kind == "BOOL" else ["--" + name, v]
                    self.run_rejected(self.base(skip=(name,)) + arg, name=name)

    def test_invalid_values_rejected_from_env(self):
        for name, kind, env, _ in self.opts:
            vals = INT_INVALID[:3] if kind == "INT" else (["maybe"] if kind == "BOOL" else
                                                          STR_INVALID.get(name, []))
            for v in vals:
                with self.subTest(option=name, env=env, value=v):
                    line = self.run_rejected(self.base(skip=(name,)), env={env: v}, name=name)
                    self.assertIn(env, line) if "environment" in line else None

    def test_missing_value_and_unknown_option(self):
        self.run_rejected(self.base() + ["--max-message"], name="max-message")
        line = self.run_rejected(self.base() + ["--no-such-option", "1"])
        self.assertIn("--no-such-option", line)
        self.run_rejected(["--listen", "127.0.0.1:0", "--shm-dir", self.shm], name="jwt-key")
        self.run_rejected(["--listen", "127.0.0.1:0", "--shm-dir", self.shm, "--jwt-key",
                           "/nonexistent/key"], name="jwt-key")

    def test_every_option_accepted_from_env_with_its_default(self):
        env = {e: d for _, kind, e, d in self.opts if d is not None and kind != "BOOL"}
        env.pop("RINGSIDE_LISTEN", None)
        env.pop("RINGSIDE_SHM_DIR", None)
        sc = Sidecar((), env=env)
        self.addCleanup(sc.stop)
        self.assertEqual(sc.http("/healthz")[0], 200)

    def test_env_value_takes_effect_and_flag_wins(self):
        big = get_request("/healthz", extra="X-Pad: %s\r\n" % ("p" * 1500))
        sc = Sidecar((), env={"RINGSIDE_MAX_HEADER": "1024"})
        self.addCleanup(sc.stop)
        self.assertEqual(http_exchange(sc.port, big)[0], 431, "env RINGSIDE_MAX_HEADER ignored")
        sc2 = Sidecar(("--max-header", "4096"), env={"RINGSIDE_MAX_HEADER": "1024"})
        self.addCleanup(sc2.stop)
        self.assertEqual(http_exchange(sc2.port, big)[0], 200, "the flag must win over the env")

    def test_env_bool(self):
        sc = Sidecar((), env={"RINGSIDE_LOG_LEVEL": "debug", "RINGSIDE_DASHBOARD": "true"})
        self.addCleanup(sc.stop)
        self.assertEqual(sc.http("/")[0], 200, "RINGSIDE_DASHBOARD=true did not enable /")

    def test_env_example_lists_every_variable(self):
        out = subprocess.run([binpath("ringside"), "--env-example"], capture_output=True,
                             text=True, timeout=10)
        self.assertEqual(out.returncode, 0)
        for _, _, env, _ in self.opts:
            self.assertIn(env + "=", out.stdout)


if __name__ == "__main__":
    main()
