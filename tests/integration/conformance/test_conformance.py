"""RFC 6455 conformance of the sidecar's WebSocket server, organised like Autobahn|Testsuite's case
groups (1 framing, 2 pings/pongs, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close
handling, 9 limits) plus the application message rules of docs/protocol.md (group 10).

Every case drives the real `ringside` process from the independent raw client in wsraw.py and, after
each abusive case, checks the server still serves new clients.  (REQUIREMENTS B1, B12; issue 5.)
"""
import json
import os
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conflib import RawWS, SidecarClassCase, main, proc_rss_kib, sanitized  # noqa: E402
from wsraw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                   close_payload, encode_frame)


def padded_json(length):
    """A JSON object {"type":"x","p":"aaa…"} of exactly length bytes (length >= 19)."""
    base = len('{"type":"x","p":""}')
    assert length >= base
    return '{"type":"x","p":"%s"}' % ("a" * (length - base))


class Case0Handshake(SidecarClassCase):
    """0.x: the opening handshake's MUSTs (RFC 6455 4.1, 4.2.1, 11.3; RFC 7230 5.4): each refused
    with its status, counted, logged with its reason, while a dashboard alongside keeps working."""

    def setUp(self):
        super().setUp()
        self.dash = self.ws()

    def tearDown(self):
        self.assertAlive(self.dash)  # the well-behaved dashboard was never disturbed
        super().tearDown()

    def refused(self, lines, status, error):
        before = self.sc.metrics().get('ringside_http_rejections_total{reason="bad_request"}', 0)
        mark = self.sc.n_logs()
        _, st, hdrs, body = RawWS.request(self.sc.port, lines)
        self.assertEqual(st, status, (lines, body[:200]))
        self.assertEqual(json.loads(body)["error"], error, body)
        entry = self.sc.wait_log(lambda l: l.get("msg") == "request refused" and
                                 l.get("error") == error, start=mark)
        self.assertIsNotNone(entry, "no log line naming %s" % error)
        after = self.sc.metrics()['ringside_http_rejections_total{reason="bad_request"}']
        self.assertEqual(after, before + 1)

    def lines(self, **kw):
        return RawWS.handshake_lines(self.sc.port, **kw)

    def test_0_1_http_1_0_refused(self):
        self.refused(self.lines(version="HTTP/1.0"), 400, "http_version")

    def test_0_2_missing_host_refused(self):
        lines = [l for l in self.lines() if not l.startswith("Host:")]
        self.refused(lines, 400, "bad_host")
        # RFC 7230 5.4 applies to every HTTP/1.1 request, not only handshakes.
        st, _, _ = self.sc.raw(b"GET /healthz HTTP/1.1\r\n\r\n")
        self.assertEqual(st, 400)

    def test_0_3_duplicate_host_refused(self):
        self.refused(self.lines() + ["Host: evil.example"], 400, "bad_host")
        st, _, _ = self.sc.raw(b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n")
        self.assertEqual(st, 400)

    def test_0_4_invalid_host_refused(self):
        lines = [l if not l.startswith("Host:") else "Host: a b/c" for l in self.lines()]
        self.refused(lines, 400, "bad_host")

    def test_0_5_duplicate_relied_on_fields_refused(self):
        extra = {"Upgrade": "websocket", "Connection": "Upgrade",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
                 "Origin": "http://127.0.0.1:%d" % self.sc.port, "Authorization": "Bearer x"}
        for name, value in extra.items():
            with self.subTest(field=name):
                lines = self.lines()
                if name in ("Origin", "Authorization"):
                    lines.append("%s: %s" % (name, value))
                lines.append("%s: %s" % (name.lower(), value))  # field names are case-insensitive
                self.refused(lines, 400, "duplicate_header")

    def test_0_6_method_must_be_get(self):
        for method in ("POST", "HEAD", "PUT"):
            with self.subTest(method=method):
                _, st, hdrs, _ = RawWS.request(self.sc.port, self.lines(method=method))
                self.assertEqual(st, 405)
                self.assertEqual(hdrs.get("allow"), "GET")

    def test_0_7_http_1_0_plain_get_still_served(self):
        # Not a handshake: a 1.0 probe without Host is answered (RFC 7230 5.4 is for 1.1).
        st, _, _ = self.sc.raw(b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(st, 200)


class Case1Framing(SidecarClassCase):
    """1.x: text and binary messages of the length-encoding boundaries; masking rules."""

    sidecar_args = ("--max-message", "65536", "--client-byte-rate", "0")

    LENGTHS = (0, 125, 126, 65535, 65536)

    def test_1_1_text_lengths(self):
        w = self.ws()
        for n in self.LENGTHS:
            with self.subTest(length=n):
                w.send_text(padded_json(n) if n else "")
                m, _ = w.recv_until(lambda m: m.get("type") == "error")
                # The whole payload was read: an empty one is not JSON, the others have type "x".
                self.assertEqual(m["error"], "bad_json" if n == 0 else "unknown_type")
        self.assertAlive(w)

    def test_1_2_binary_lengths(self):
        # Binary messages are refused with 1003 only once the whole frame was read correctly.
        for n in self.LENGTHS:
            with self.subTest(length=n):
                w = self.ws()
                w.send_frame(OP_BINARY, os.urandom(n))
                self.assertFails(w, 1003)
        self.assertServing()

    def test_1_3_length_encoded_in_chunks(self):
        # A 126-byte frame whose header and payload arrive in separate writes.
        w = self.ws()
        data = encode_frame(OP_TEXT, padded_json(300))
        for i in range(0, len(data), 7):
            self.assertTrue(w.send_raw(data[i:i + 7]))
        m, _ = w.recv_until(lambda m: m.get("type") == "error")
        self.assertEqual(m["error"], "unknown_type")

    def test_1_4_unmasked_client_frame_is_a_protocol_error(self):
        w = self.ws()
        w.send_frame(OP_TEXT, '{"type":"pong"}', mask=False)
        self.assertFails(w, 1002)
        self.assertServing()

    def test_1_5_unmasked_control_frame_is_a_protocol_error(self):
        w = self.ws()
        w.send_frame(OP_PING, b"x", mask=False)
        self.assertFails(w, 1002)

    def test_1_7_non_minimal_length_encoding_is_a_protocol_error(self):
        # RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length".
        w = self.ws()
        payload = b'{"type":"pong"}'
        key = b"\x01\x02\x03\x04"
        masked = encode_frame(OP_TEXT, payload, mask_key=key)[6:]
        w.send_raw(struct.pack("!BBH", 0x81, 0x80 | 126, len(payload)) + key + masked)
        self.assertFails(w, 1002)

    def test_1_6_server_frames_unmasked_and_well_formed(self):
        # A subscribed reply with 50 long ids is > 125 bytes: exercises the 16-bit length field.
        w = self.ws()
        ids = ["a%02d-%s" % (i, "x" * 58) for i in range(50)]
        w.send_json({"type": "subscribe", "agent_ids": ids})
        m, _ = w.recv_until(lambda m: m.get("type") == "subscribed")
        self.assertEqual(m["filters"]["agent_ids"], ids)
        for f in w.frames:
            self.assertFalse(f.masked, "server frames must not be masked: %r" % f)
            self.assertEqual(f.rsv, 0, f)
        self.assertTrue(any(len(f.payload) > 125 for f in w.frames))


class Case2PingPong(SidecarClassCase):
    """2.x: pings answered with identical pongs, control payload limit, unsolicited pongs."""

    def _pong(self, w):
        while True:
            f = w.recv_frame()
            self.assertIsNotNone(f, "no pong (eof=%s)" % w.eof)
            if f.opcode == OP_PONG:
                return f
            self.assertNotEqual(f.opcode, OP_CLOSE, "closed instead of pong: %r" % f)

    def test_2_1_ping_without_payload(self):
        w = self.ws()
        w.send_frame(OP_PING, b"")
        self.assertEqual(self._pong(w).payload, b"")

    def test_2_2_ping_payload_echoed(self):
        w = self.ws()
        w.send_frame(OP_PING, b"Hello, world!")
        self.assertEqual(self._pong(w).payload, b"Hello, world!")

    def test_2_3_ping_binary_payload_echoed(self):
        w = self.ws()
        p = bytes([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff])
        w.send_frame(OP_PING, p)
        self.assertEqual(self._pong(w).payload, p)

    def test_2_4_ping_125_bytes(self):
        w = self.ws()
        p = bytes(range(125))
        w.send_frame(OP_PING, p)
        self.assertEqual(self._pong(w).payload, p)

    def test_2_5_ping_126_bytes_is_a_protocol_error(self):
        w = self.ws()
        w.send_frame(OP_PING, b"\xfe" * 126)
        self.assertFails(w, 1002)
        self.assertServing()

    def test_2_6_unsolicited_pong_ignored(self):
        w = self.ws()
        w.send_frame(OP_PONG, b"unsolicited")
        w.send_frame(OP_PONG, b"")
        self.assertAlive(w)

    def test_2_7_several_pings_answered_in_order(self):
        w = self.ws()
        for i in range(10):
            w.send_frame(OP_PING, b"ping-%d" % i)
        got = [self._pong(w).payload for _ in range(10)]
        self.assertEqual(got, [b"ping-%d" % i for i in range(10)])

    def test_2_8_ping_in_chunks(self):
        w = self.ws()
        data = encode_frame(OP_PING, b"chunked ping")
        for b in data:
            w.send_raw(bytes([b]))
        self.assertEqual(self._pong(w).payload, b"chunked ping")


class Case3ReservedBits(SidecarClassCase):
    """3.x: RSV1-3 without a negotiated extension fail the connection."""

    def test_3_rsv_bits(self):
        for rsv in range(1, 8):
            for op, payload in ((OP_TEXT, '{"type":"pong"}'), (OP_BINARY, b"\x00"),
                                (OP_PING, b"p")):
                with self.subTest(rsv=rsv, opcode=op):
                    w = self.ws()
                    w.send_frame(op, payload, rsv=rsv)
                    self.assertFails(w, 1002)
        self.assertServing()

    def test_3_rsv_after_valid_message(self):
        w = self.ws()
        self.assertAlive(w)
        w.send_frame(OP_TEXT, '{"type":"pong"}', rsv=2)
        self.assertFails(w, 1002)


class Case4Opcodes(SidecarClassCase):
    """4.x: reserved opcodes fail the connection."""

    def test_4_reserved_opcodes(self):
        for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15):
            for payload in (b"", b"reserved opcode payload"):
                with self.subTest(opcode=op, length=len(payload)):
                    w = self.ws()
                    w.send_frame(op, payload)
                    self.assertFails(w, 1002)
        self.assertServing()

    def test_4_reserved_opcode_after_valid_message(self):
        w = self.ws()
        self.assertAlive(w)
        w.send_frame(5, b"")
        self.assertFails(w, 1002)


class Case5Fragmentation(SidecarClassCase):
    """5.x: fragmented messages reassembled, control frames interleaved, fragmentation errors."""

    SUB = '{"type":"subscribe","agent_ids":["frag-agent"]}'

    def _subscribed(self, w):
        m, _ = w.recv_until(lambda m: m.get("type") in ("subscribed", "error"))
        self.assertEqual(m["type"], "subscribed", m)
        self.assertEqual(m["filters"]["agent_ids"], ["frag-agent"])

    def test_5_1_two_fragments(self):
        w = self.ws()
        w.send_frame(OP_TEXT, self.SUB[:10], fin=False)
        w.send_frame(OP_CONT, self.SUB[10:])
        self._subscribed(w)

    def test_5_2_one_byte_fragments(self):
        w = self.ws()
        data = self.SUB.encode()
        w.send_frame(OP_TEXT, data[:1], fin=False)
        for i in range(1, len(data) - 1):
            w.send_frame(OP_CONT, data[i:i + 1], fin=False)
        w.send_frame(OP_CONT, data[-1:])
        self._subscribed(w)

    def test_5_3_empty_fragments(self):
        w = self.ws()
        w.send_frame(OP_TEXT, b"", fin=False)
        w.send_frame(OP_CONT, self.SUB, fin=False)
        w.send_frame(OP_CONT, b"")
        self._subscribed(w)

    def test_5_4_ping_between_fragments(self):
        w = self.ws()
        w.send_frame(OP_TEXT, self.SUB[:5], fin=False)
        w.send_frame(OP_PING, b"between")
        w.send_frame(OP_CONT, self.SUB[5:20], fin=False)
        w.send_frame(OP_PONG, b"unsolicited")
        w.send_frame(OP_CONT, self.SUB[20:])
        pong = None
        while pong is None:
            f = w.recv_frame()
            self.assertIsNotNone(f)
            if f.opcode == OP_PONG:
                pong = f
        self.assertEqual(pong.payload, b"between")
        self._subscribed(w)

    def test_5_5_fragmented_ping_is_a_protocol_error(self):
        w = self.ws()
        w.send_frame(OP_PING, b"frag", fin=False)
        w.send_frame(OP_CONT, b"ment")
        self.assertFails(w, 1002)

    def test_5_6_fragmented_pong_is_a_protocol_error(self):
        w = self.ws()
        w.send_frame(OP_PONG, b"frag", fin=False)
        w.send_frame(OP_CONT, b"ment")
        self.assertFails(w, 1002)

    def test_5_7_continuation_without_start(self):
        w = self.ws()
        w.send_frame(OP_CONT, b'{"type":"pong"}')
        self.assertFails(w, 1002)

    def test_5_8_unfinished_continuation_without_start(self):
        w = self.ws()
        w.send_frame(OP_CONT, b'{"type":', fin=False)
        w.send_frame(OP_CONT, b'"pong"}')
        self.assertFails(w, 1002)

    def test_5_9_new_message_inside_fragmented_one(self):
        w = self.ws()
        w.send_frame(OP_TEXT, b'{"type":', fin=False)
        w.send_frame(OP_TEXT, b'{"type":"pong"}')
        self.assertFails(w, 1002)

    def test_5_10_fragmented_close_is_a_protocol_error(self):
        w = self.ws()
        w.send_frame(OP_CLOSE, close_payload(1000)[:1], fin=False)
        w.send_frame(OP_CONT, close_payload(1000)[1:])
        self.assertFails(w, 1002)
        self.assertServing()


class Case6Utf8(SidecarClassCase):
    """6.x: text messages must be valid UTF-8 (1007), also when sequences span fragments."""

    INVALID = {
        "lone_continuation": b"\x80",
        "ff_byte": b"\xff",
        "fe_byte": b"\xfe",
        "overlong_slash": b"\xc0\xaf",
        "overlong_3byte": b"\xe0\x80\xaf",
        "overlong_4byte": b"\xf0\x80\x80\xaf",
        "surrogate_high": b"\xed\xa0\x80",
        "surrogate_low": b"\xed\xbf\xbf",
        "above_10ffff": b"\xf4\x90\x80\x80",
        "five_byte_form": b"\xf8\x88\x80\x80\x80",
        "truncated_2": b"\xce",
        "truncated_3": b"\xe1\xbd",
        "truncated_4_at_end": b"\xf0\x9f\x98",
        "kosme_broken": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    }

    def test_6_1_valid_multibyte(self):
        w = self.ws()
        w.send_text('{"type":"κόσμε-€-𝄞-\U0010ffff"}')
        m, _ = w.recv_until(lambda m: m.get("type") == "error")
        self.assertEqual(m["error"], "unknown_type")

    def test_6_2_invalid_sequences(self):
        for name, seq in self.INVALID.items():
            with self.subTest(sequence=name):
                w = self.ws()
                w.send_frame(OP_TEXT, b'{"type":"' + seq + b'"}')
                self.assertFails(w, 1007)
        self.assertServing()

    def test_6_3_invalid_at_end_of_message(self):
        w = self.ws()
        w.send_frame(OP_TEXT, b'{"type":"pong"}\xf0\x9f')
        self.assertFails(w, 1007)

    def test_6_4_valid_sequence_split_across_fragments(self):
        text = '{"type":"€𝄞κόσμε"}'.encode()
        for split in range(len(b'{"type":"') + 1, len(text) - 2):
            with self.subTest(split=split):
                w = self.ws()
                w.send_frame(OP_TEXT, text[:split], fin=False)
                w.send_frame(OP_CONT, text[split:])
                m, _ = w.recv_until(lambda m: m.get("type") == "error")
                self.assertEqual(m["error"], "unknown_type")
                w.send_close(1000)

    def test_6_5_valid_sequence_split_byte_by_byte(self):
        w = self.ws()
        data = '{"type":"𝄞𝄞"}'.encode()
        w.send_frame(OP_TEXT, data[:1], fin=False)
        for i in range(1, len(data) - 1):
            w.send_frame(OP_CONT, data[i:i + 1], fin=False)
        w.send_frame(OP_CONT, data[-1:])
        m, _ = w.recv_until(lambda m: m.get("type") == "error")
        self.assertEqual(m["error"], "unknown_type")

    def test_6_6_invalid_sequence_split_across_fragments(self):
        # A surrogate (ED A0 80) split as ED | A0 80, and a 4-byte sequence cut short before a
        # continuation frame that does not complete it.
        for first, second in ((b'{"type":"\xed', b'\xa0\x80"}'),
                              (b'{"type":"\xf0\x9f', b'"}'),
                              (b'{"type":"\xce', b'\xba\xff"}')):
            with self.subTest(first=first, second=second):
                w = self.ws()
                w.send_frame(OP_TEXT, first, fin=False)
                w.send_frame(OP_CONT, second)
                self.assertFails(w, 1007)
        self.assertServing()


class Case7Close(SidecarClassCase):
    """7.x: the close handshake and close-frame validation."""

    VALID = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999)
    INVALID = (0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000,
               65535)

    def test_7_1_close_echoed_then_tcp_closed(self):
        w = self.ws()
        w.send_close(1000, "bye")
        code, _, _ = w.expect_close(reply=False)
        self.assertEqual(code, 1000)
        self.assertTrue(w.wait_eof())

    def test_7_2_close_without_payload(self):
        w = self.ws()
        w.send_close()
        code, _, _ = w.expect_close(reply=False)
        self.assertIn(code, (None, 1000))
        self.assertTrue(w.wait_eof())

    def test_7_3_valid_codes_echoed(self):
        for code in self.VALID:
            with self.subTest(code=code):
                w = self.ws()
                w.send_close(code, "ok")
                got, _, _ = w.expect_close(reply=False)
                self.assertEqual(got, code)
                self.assertTrue(w.wait_eof())

    def test_7_4_invalid_codes_are_a_protocol_error(self):
        for code in self.INVALID:
            with self.subTest(code=code):
                w = self.ws()
                w.send_close(code)
                self.assertFails(w, 1002)
        self.assertServing()

    def test_7_5_one_byte_close_payload(self):
        w = self.ws()
        w.send_frame(OP_CLOSE, b"\x03")
        self.assertFails(w, 1002)

    def test_7_6_close_reason_invalid_utf8(self):
        w = self.ws()
        w.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80")
        self.assertFails(w, (1007, 1002))

    def test_7_7_close_reason_max_length(self):
        w = self.ws()
        w.send_close(1000, "r" * 123)
        got, _, _ = w.expect_close(reply=False)
        self.assertEqual(got, 1000)
        self.assertTrue(w.wait_eof())

    def test_7_8_nothing_accepted_after_close(self):
        w = self.ws()
        w.send_close(1000)
        w.send_json({"type": "after-close"})     # would earn an error if it were processed
        w.send_frame(OP_PING, b"after-close")   # would earn a pong
        frames = []
        while True:
            f = w.recv_frame()
            if f is None:
                break
            frames.append(f)
        self.assertTrue(w.eof, "connection not closed")
        ops = [f.opcode for f in frames]
        self.assertEqual(ops, [OP_CLOSE], "after the client's close only the close echo may come: %r"
                         % frames)

    def _no_frame_after_close(self, frames):
        ops = [f.opcode for f in frames]
        self.assertIn(OP_CLOSE, ops, "no close frame: %r" % frames)
        after = ops[ops.index(OP_CLOSE) + 1:]
        self.assertEqual(after, [], "frames after the server's close (RFC 6455 5.5.1): %r" %
                         frames[ops.index(OP_CLOSE):])

    def test_7_11_no_snapshot_after_close_for_pipelined_protocol_error(self):
        # A bad frame pipelined behind the handshake makes wslay close before the snapshot went
        # out: the snapshot must then never follow the close frame.
        for bad in (encode_frame(OP_TEXT, b'{"type":"pong"}', mask=False),  # unmasked: 1002
                    encode_frame(OP_CLOSE, b"\x03"),                        # 1-byte close
                    encode_frame(OP_PING, b"x" * 126)):                      # long ping: 1002
            with self.subTest(frame=bad[:4]):
                lines = RawWS.handshake_lines(self.sc.port)
                w, st, _, _ = RawWS.request(self.sc.port, lines, pre_frames=bad)
                self._socks.append(w)
                self.assertEqual(st, 101)
                self._no_frame_after_close(w.frames_until_eof())
        self.assertServing()

    def test_7_12_no_frame_after_close_on_terminal_refusal(self):
        lines = RawWS.handshake_lines(self.sc.port, path="/ws/terminal/no-such-task")
        w, st, _, _ = RawWS.request(self.sc.port, lines,
                                    pre_frames=encode_frame(OP_PING, b"p"))
        self._socks.append(w)
        self.assertEqual(st, 101)
        frames = w.frames_until_eof()
        self._no_frame_after_close(frames)
        self.assertEqual([f for f in frames if f.opcode == OP_CLOSE][0].close_code()[0], 4004)

    def test_7_9_close_after_fragment_start(self):
        # A close frame may come in the middle of a fragmented message; it is answered normally.
        w = self.ws()
        w.send_frame(OP_TEXT, b'{"type":', fin=False)
        w.send_close(1000)
        got, _, _ = w.expect_close(reply=False)
        self.assertEqual(got, 1000)
        self.assertTrue(w.wait_eof())

    def test_7_10_tcp_close_without_close_frame(self):
        w = self.ws()
        w.send_frame(OP_TEXT, b'{"type":', fin=False)
        w.close()
        self.assertServing()


class Case9Limits(SidecarClassCase):
    """9.x: --max-message (1009) and bounded memory under floods."""

    MAX = 1024
    # The floods here test memory bounds, not the inbound budget (integration_bounds does).
    sidecar_args = ("--max-message", str(MAX), "--client-msg-rate", "0", "--client-byte-rate", "0")

    def test_9_1_message_at_limit_accepted(self):
        w = self.ws()
        w.send_text(padded_json(self.MAX))
        m, _ = w.recv_until(lambda m: m.get("type") == "error")
        self.assertEqual(m["error"], "unknown_type")

    def test_9_2_message_just_over_limit(self):
        w = self.ws()
        w.send_text(padded_json(self.MAX + 1))
        self.assertFails(w, 1009)
        self.assertServing()

    def test_9_3_fragmented_message_over_limit(self):
        w = self.ws()
        data = padded_json(self.MAX + 1).encode()
        w.send_frame(OP_TEXT, data[:600], fin=False)
        w.send_frame(OP_CONT, data[600:])
        self.assertFails(w, 1009)

    def test_9_4_announced_huge_length_refused(self):
        # A header announcing 1 TiB followed by a little payload: refused at once (1009), nothing
        # allocated for it, the rest never awaited.
        w = self.ws()
        w.send_raw(encode_frame(OP_TEXT, b"", length=1 << 40) + b"x" * 64)
        self.assertFails(w, 1009)
        self.assertServing()

    def test_9_5_length_with_msb_set_is_a_protocol_error(self):
        w = self.ws()
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, 1 << 63) + b"\x00\x00\x00\x00"
        w.send_raw(head)
        self.assertFails(w, (1002, 1009))

    def test_9_6_binary_over_limit(self):
        w = self.ws()
        w.send_frame(OP_BINARY, b"\x00" * (self.MAX + 1))
        self.assertFails(w, (1009, 1003))

    def _flood(self, w, frame, count):
        chunk = frame * 500
        for _ in range(count // 500):
            self.assertTrue(w.send_raw(chunk))

    def test_9_7_message_flood_does_not_grow_rss(self):
        if sanitized():
            self.skipTest("RSS is meaningless under ASan")
        pid = self.sc.proc.pid
        w = self.ws()
        pong = encode_frame(OP_TEXT, '{"type":"pong"}')
        self._flood(w, pong, 20000)
        self.assertAlive(w, timeout=20)
        rss1 = proc_rss_kib(pid)
        self._flood(w, pong, 60000)
        self.assertAlive(w, timeout=30)
        rss2 = proc_rss_kib(pid)
        self.assertLess(rss2 - rss1, 2048, "RSS grew from %d to %d KiB" % (rss1, rss2))

    def test_9_8_ping_flood_without_reading_pongs_is_bounded(self):
        if sanitized():
            self.skipTest("RSS is meaningless under ASan")
        # A client that sends pings but never reads the pongs must not make the server queue
        # pongs without bound: it stops reading (TCP backpressure) or drops the client.
        pid = self.sc.proc.pid
        w = self.ws()
        ping = encode_frame(OP_PING, b"p" * 125)
        rss0 = proc_rss_kib(pid)
        w.sock.settimeout(10)
        sent = 0
        deadline = time.monotonic() + 15
        try:
            while sent < 200000 and time.monotonic() < deadline:
                w.sock.sendall(ping * 200)
                sent += 200
        except (OSError, TimeoutError):
            pass  # blocked (backpressure) or reset (dropped): both bound the server's memory
        rss1 = proc_rss_kib(pid)
        self.assertLess(rss1 - rss0, 16 * 1024, "RSS grew from %d to %d KiB after %d pings (%d "
                        "bytes of pongs unread)" % (rss0, rss1, sent, sent * 129))
        w.close()
        self.assertServing()


class Case12Compression(SidecarClassCase):
    """12.x/13.x: permessage-deflate (RFC 7692) when the client offers it, with a bound on the
    inflated size.  Cases needing the extension skip while the server does not negotiate it."""

    MAX = 65536
    sidecar_args = ("--max-message", str(MAX))
    OFFER = "permessage-deflate; client_max_window_bits"

    def deflate_ws(self, offer=OFFER):
        w = self.ws(extensions=offer, snapshot=False)
        if w.deflate is None:
            self.skipTest("permessage-deflate not negotiated by this build")
        m = w.recv_json()
        self.assertEqual(m["type"], "snapshot")
        return w

    def test_12_0_unknown_extension_not_accepted(self):
        w = self.ws(extensions="x-webkit-unknown; foo=1")
        self.assertNotIn("x-webkit-unknown", w.response_headers.get("sec-websocket-extensions", ""))

    def test_12_0_invalid_parameters_declined(self):
        # RFC 7692 7.1: an offer with invalid parameters is declined, the handshake still succeeds.
        for offer in ("permessage-deflate; server_max_window_bits=7",
                      "permessage-deflate; server_max_window_bits=16",
                      "permessage-deflate; no_such_param",
                      "permessage-deflate; client_max_window_bits=abc",
                      "permessage-deflate; server_no_context_takeover=1"):
            with self.subTest(offer=offer):
                w = self.ws(extensions=offer)
                self.assertIsNone(w.deflate, "accepted %r: %r" % (offer, w.response_headers))

    def test_12_0_duplicate_parameter_declined(self):
        offer = "permessage-deflate; server_no_context_takeover; server_no_context_takeover"
        w = self.ws(extensions=offer)
        self.assertIsNone(w.deflate, "accepted %r: %r" % (offer, w.response_headers))

    def test_12_1_response_parameters_valid(self):
        w = self.deflate_ws()
        allowed = {"server_no_context_takeover", "client_no_context_takeover",
                   "server_max_window_bits", "client_max_window_bits"}
        self.assertLessEqual(set(w.deflate), allowed, w.deflate)
        for k in ("server_max_window_bits", "client_max_window_bits"):
            if w.deflate.get(k) is not None:
                self.assertIn(int(w.deflate[k]), range(8, 16))

    def test_12_2_compressed_messages_with_context_takeover(self):
        w = self.deflate_ws()
        for i in range(5):
            w.send_compressed('{"type":"compressed-%d","pad":"%s"}' % (i, "z" * 200))
            m, _ = w.recv_until(lambda m: m.get("type") == "error")
            self.assertEqual(m["error"], "unknown_type")

    def test_12_3_client_no_context_takeover(self):
        w = self.deflate_ws(self.OFFER + "; client_no_context_takeover")
        for i in range(3):
            w.send_compressed('{"type":"nct-%d"}' % i)
            m, _ = w.recv_until(lambda m: m.get("type") == "error")
            self.assertEqual(m["error"], "unknown_type")

    def test_12_4_fragmented_compressed_message(self):
        w = self.deflate_ws()
        data = w.compress('{"type":"fragmented-compressed","pad":"%s"}' % ("q" * 3000))
        w.send_frame(OP_TEXT, data[:5], fin=False, rsv=4)
        w.send_frame(OP_CONT, data[5:])
        m, _ = w.recv_until(lambda m: m.get("type") == "error")
        self.assertEqual(m["error"], "unknown_type")

    def test_13_1_decompression_bomb_1009(self):
        w = self.deflate_ws()
        pid = self.sc.proc.pid
        rss0 = proc_rss_kib(pid)
        bomb = '{"type":"x","p":"%s"}' % (" " * (64 * 1024 * 1024))  # 64 MiB inflates from ~64 KiB
        w.send_compressed(bomb)
        self.assertFails(w, 1009)
        if not sanitized():
            self.assertLess(proc_rss_kib(pid) - rss0, 16 * 1024, "inflated the bomb into memory")
        self.assertServing()

    def test_13_2_invalid_deflate_data(self):
        w = self.deflate_ws()
        w.send_frame(OP_TEXT, b"\xff\xff\xff\xff garbage", rsv=4)
        self.assertFails(w, (1007, 1002))

    def test_13_5_window_larger_than_negotiated(self):
        # The server asked for a small client window; a client that back-references further than
        # that either fails the connection cleanly or is understood (zlib may resolve the distance
        # from its output buffer) -- never a crash or a hang.
        w = self.deflate_ws()
        bits = int(w.deflate.get("client_max_window_bits") or 15)
        if bits == 15:
            self.skipTest("server accepts the full window")
        block = os.urandom(1500).hex()  # 3000 chars, repeated: matches 3000 bytes back
        w.send_frame(OP_TEXT, w.compress('{"type":"x","p":"%s%s"}' % (block, block), wbits=15),
                     rsv=4)
        m = w.recv_message(5)
        self.assertIsNotNone(m, "no answer and no close (eof=%s)" % w.eof)
        if m[0] == OP_CLOSE:
            self.assertIn(struct.unpack("!H", m[1][:2])[0], (1007, 1002))
        else:
            self.assertEqual(json.loads(m[1])["error"], "unknown_type")
        self.assertServing()

    def test_13_3_rsv1_on_control_frame(self):
        w = self.deflate_ws()
        w.send_frame(OP_PING, b"p", rsv=4)
        self.assertFails(w, 1002)

    def test_13_4_rsv1_on_continuation(self):
        w = self.deflate_ws()
        w.send_frame(OP_TEXT, b'{"type":', fin=False)
        w.send_frame(OP_CONT, w.compress('"x"}'), rsv=4)
        self.assertFails(w, 1002)


class Case10Messages(SidecarClassCase):
    """Application rules (docs/protocol.md): error replies, 1008 after repeated abuse, binary 1003."""

    # 25 messages in a burst would trip the inbound budget first (integration_bounds tests it).
    sidecar_args = ("--client-msg-rate", "0")

    def test_10_1_unknown_type(self):
        w = self.ws()
        w.send_json({"type": "no-such-type"})
        m, _ = w.recv_until(lambda m: m.get("type") == "error")
        self.assertEqual(m["error"], "unknown_type")
        self.assertTrue(m.get("message"))

    def test_10_2_invalid_json(self):
        for text in ('{"type":', "not json", "[1,2,3]", '"str"', "{}", '{"type":1}',
                     '{"type":"pong","type":"pong"}'):
            with self.subTest(text=text):
                w = self.ws()
                w.send_text(text)
                m, _ = w.recv_until(lambda m: m.get("type") == "error")
                self.assertIn(m["error"], ("bad_json", "bad_message"))
                self.assertAlive(w)

    def test_10_3_many_invalid_messages_close_1008(self):
        w = self.ws()
        errors = 0
        for i in range(25):
            w.send_text("garbage %d" % i)
        code, _, skipped = w.expect_close()
        self.assertEqual(code, 1008)
        errors = sum(1 for op, p in skipped if op == OP_TEXT and b'"error"' in p)
        self.assertIn(errors, (19, 20), "errors before the 1008 close: %d" % errors)
        self.assertTrue(w.wait_eof())
        self.assertServing()

    def test_10_4_binary_message_refused(self):
        w = self.ws()
        w.send_frame(OP_BINARY, b'{"type":"pong"}')
        self.assertFails(w, 1003)

    def test_10_5_pong_message_not_answered(self):
        w = self.ws()
        w.send_json({"type": "pong"})
        w.send_json({"type": "conformance-probe"})
        m = w.recv_json()
        self.assertEqual(m["type"], "error", "a pong message must not be answered: %r" % m)


if __name__ == "__main__":
    main()
