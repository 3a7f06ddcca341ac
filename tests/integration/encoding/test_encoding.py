"""Encodings (B10): MessagePack carries the same fields as JSON; permessage-deflate is negotiated
per RFC 7692, shared compressed bytes decode to the same events, and a decompression bomb is
refused with 1009."""
import base64
import os
import socket
import struct
import sys
import time
import unittest
import zlib

import msgpack

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from rstest import SidecarCase, connect, recv_json, recv_until, run_async  # noqa: E402


async def recv_msgpack(ws, timeout=5.0):
    import asyncio
    data = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(data, bytes), "MessagePack arrives in binary frames"
    return msgpack.unpackb(data, raw=False)


class Encodings(SidecarCase):
    def test_messagepack_has_the_same_fields_as_json(self):
        async def go():
            async with connect(self.sc) as js, \
                    connect(self.sc, "/ws/events?encoding=messagepack") as mp:
                self.assertEqual((await recv_json(js))["type"], "snapshot")
                snap = await recv_msgpack(mp)
                self.assertEqual(snap["type"], "snapshot")
                self.sc.pub("status", "working", "héllo ✓")
                a, _ = await recv_until(js, lambda m: m["type"] == "agent_status")
                b = await recv_msgpack(mp)
                while b["type"] != "agent_status":
                    b = await recv_msgpack(mp)
                self.assertEqual(a, b)
                self.assertIsInstance(b["ts_ns"], int)
                self.assertGreater(b["ts_ns"], 2 ** 53)  # 64-bit integers survive
        run_async(go())

    def test_deflate_negotiated_and_equivalent(self):
        async def go():
            async with connect(self.sc, compression="deflate") as z, \
                    connect(self.sc, compression=None) as plain:
                ext = z.response_headers.get("Sec-WebSocket-Extensions", "")
                self.assertIn("permessage-deflate", ext)
                self.assertIn("server_no_context_takeover", ext)
                self.assertNotIn("Sec-WebSocket-Extensions", plain.response_headers)
                await recv_json(z)
                await recv_json(plain)
                self.sc.pub("status", "stuck", "x" * 500)
                a, _ = await recv_until(z, lambda m: m["type"] == "agent_status")
                b, _ = await recv_until(plain, lambda m: m["type"] == "agent_status")
                self.assertEqual(a, b)
                # the compressed client side works too (pong is compressed by the client)
                await z.send('{"type":"pong"}')
                await z.send('{"type":"subscribe","agent_ids":["a1"]}')
                sub, _ = await recv_until(z, lambda m: m["type"] == "subscribed")
                self.assertEqual(sub["filters"]["agent_ids"], ["a1"])
        run_async(go())


def ws_frame(opcode, payload, rsv1=False):
    head = bytes([0x80 | (0x40 if rsv1 else 0) | opcode])
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class Bomb(SidecarCase):
    sidecar_args = ("--max-message", "65536")

    def test_decompression_bomb_closes_1009(self):
        s = socket.create_connection(("127.0.0.1", self.sc.port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /ws/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n" % key).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        self.assertIn(b"permessage-deflate", buf)
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = c.compress(b"{" + b" " * (8 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
        bomb = bomb[:-4]
        self.assertLess(len(bomb), 65536)  # small on the wire
        s.sendall(ws_frame(1, bomb, rsv1=True))
        code = None
        data = buf.partition(b"\r\n\r\n")[2]
        deadline = time.monotonic() + 5
        while code is None and time.monotonic() < deadline:
            # parse server frames until a close frame
            while len(data) >= 2:
                n = data[1] & 0x7f
                off = 2
                if n == 126:
                    n = struct.unpack("!H", data[2:4])[0]
                    off = 4
                elif n == 127:
                    n = struct.unpack("!Q", data[2:10])[0]
                    off = 10
                if len(data) < off + n:
                    break
                if data[0] & 0x0f == 8:
                    code = struct.unpack("!H", data[off:off + 2])[0]
                    break
                data = data[off + n:]
            if code is None:
                more = s.recv(65536)
                if not more:
                    break
                data += more
        s.close()
        self.assertEqual(code, 1009)
        m = self.sc.metrics()
        self.assertEqual(m['ws_updates_disconnections_total{reason="message_too_big"}'], 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
