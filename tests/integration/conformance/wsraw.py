"""A raw RFC 6455 client for conformance tests: stdlib only (socket + struct), independent of the
server's code and of any WebSocket library, so it can send what a well-behaved library never would
(unmasked frames, reserved bits and opcodes, fragmented control frames, bad close codes...).

Every read is bounded by a timeout; nothing here sleeps to synchronise.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import time
import zlib

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


class HandshakeError(Exception):
    def __init__(self, status, headers, body):
        super().__init__("handshake refused: %d %r %r" % (status, headers, body[:200]))
        self.status, self.headers, self.body = status, headers, body


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload", "at")

    def __init__(self, fin, rsv, opcode, masked, payload, at):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.masked, self.payload, self.at = masked, payload, at

    def json(self):
        return json.loads(self.payload.decode("utf-8"))

    def close_code(self):
        """(code, reason bytes) of a close frame; (None, b"") when it has no payload."""
        if len(self.payload) < 2:
            return None, b""
        return struct.unpack("!H", self.payload[:2])[0], self.payload[2:]

    def __repr__(self):
        p = self.payload if len(self.payload) <= 80 else self.payload[:80] + b"..."
        return "Frame(fin=%d rsv=%d op=%d len=%d %r)" % (self.fin, self.rsv, self.opcode,
                                                         len(self.payload), p)


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None, length=None):
    """Builds one frame.  length overrides the encoded payload length (to lie about it)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + _mask(payload, key)


def _mask(data, key):
    if not data:
        return b""
    # XOR with the key repeated; int arithmetic keeps it fast for 64 KiB payloads.
    k = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(len(data), "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class RawWS:
    """One client connection.  Use connect() to get one through the opening handshake."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False
        self.frames = []  # every frame received, in order (for assertions on server framing)
        self.response_headers = {}
        self.deflate = None  # negotiated permessage-deflate parameters (dict) or None
        self._comp = self._decomp = None

    # ---- permessage-deflate (RFC 7692) ------------------------------------------------------

    def _setup_deflate(self, ext):
        for offer in ext.split(","):
            parts = [p.strip() for p in offer.split(";")]
            if parts[0] == "permessage-deflate":
                params = {}
                for p in parts[1:]:
                    k, _, v = p.partition("=")
                    params[k.strip()] = v.strip().strip('"') or None
                self.deflate = params
                return

    def compress(self, data, wbits=None):
        """Compresses one message as RFC 7692 7.2.1 says, keeping the context across messages
        unless client_no_context_takeover was negotiated, with the negotiated
        client_max_window_bits (wbits overrides it, to misbehave on purpose)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        params = self.deflate or {}
        if wbits is None:
            wbits = int(params.get("client_max_window_bits") or 15)
        if (self._comp is None or "client_no_context_takeover" in params or
                wbits != getattr(self, "_comp_bits", wbits)):
            self._comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -wbits)
            self._comp_bits = wbits
        out = self._comp.compress(data) + self._comp.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]

    def decompress(self, data):
        if self._decomp is None or "server_no_context_takeover" in (self.deflate or {}):
            self._decomp = zlib.decompressobj(-int((self.deflate or {}).get(
                "server_max_window_bits") or 15))
        return self._decomp.decompress(data + b"\x00\x00\xff\xff")

    def send_compressed(self, text, opcode=None):
        return self.send_frame(OP_TEXT if opcode is None else opcode, self.compress(text), rsv=4)

    # ---- opening handshake ------------------------------------------------------------------

    @classmethod
    def connect(cls, port, path="/ws/events", headers=None, timeout=5.0, pre_frames=b"",
                extensions=None, source=None):
        """Opens a TCP connection and performs the handshake; raises HandshakeError on a refusal.
        pre_frames are sent in the same write as the request (pipelined behind the head).
        source: the local address to connect from (e.g. "127.0.0.2"), default any."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port, "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key,
                 "Sec-WebSocket-Version: 13"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        if extensions:
            lines.append("Sec-WebSocket-Extensions: %s" % extensions)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + pre_frames)
        ws = cls(sock)
        status, hdrs, body = ws._read_head(timeout)
        if status != 101:
            sock.close()
            raise HandshakeError(status, hdrs, body)
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if hdrs.get("sec-websocket-accept") != want:
            sock.close()
            raise AssertionError("bad Sec-WebSocket-Accept %r (want %r)" %
                                 (hdrs.get("sec-websocket-accept"), want))
        ws.response_headers = hdrs
        ws._setup_deflate(hdrs.get("sec-websocket-extensions", ""))
        return ws

    @staticmethod
    def handshake_lines(port, path="/ws/events", version="HTTP/1.1", method="GET"):
        """The request line and header lines of a valid handshake (to be altered by a test)."""
        key = base64.b64encode(os.urandom(16)).decode()
        return ["%s %s %s" % (method, path, version), "Host: 127.0.0.1:%d" % port,
                "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key,
                "Sec-WebSocket-Version: 13"]

    @classmethod
    def request(cls, port, lines, timeout=5.0, pre_frames=b""):
        """Sends the request head made of lines (exactly as given: repeated fields stay repeated)
        and reads the response head.  Returns (ws, status, headers, body); ws is connected when
        status is 101 (no Sec-WebSocket-Accept check), closed otherwise."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + pre_frames)
        ws = cls(sock)
        status, hdrs, body = ws._read_head(timeout)
        if status != 101:
            sock.close()
        ws.response_headers = hdrs
        return ws, status, hdrs, body

    def frames_until_eof(self, timeout=5.0):
        """Every frame the server sends until it closes the TCP connection (or timeout)."""
        deadline = time.monotonic() + timeout
        out = []
        while not self.eof:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                break
            out.append(f)
            if f.opcode == OP_CLOSE:
                self.send_frame(OP_CLOSE, f.payload[:2])
        return out

    def _read_head(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                break
        head, sep, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/") else 0
        hdrs = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        self.buf = rest
        body = rest
        if status != 101:
            while self._fill(deadline):
                pass
            body = self.buf
        return status, hdrs, body

    def _fill(self, deadline):
        """Reads more bytes into buf; False on EOF or when the deadline passed."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            b = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            b = b""
        if not b:
            self.eof = True
            return False
        self.buf += b
        return True

    # ---- sending ----------------------------------------------------------------------------

    def send_raw(self, data):
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def send_frame(self, opcode, payload=b"", **kw):
        return self.send_raw(encode_frame(opcode, payload, **kw))

    def send_text(self, text, **kw):
        return self.send_frame(OP_TEXT, text, **kw)

    def send_json(self, obj):
        return self.send_text(json.dumps(obj))

    def send_close(self, code=None, reason=b""):
        return self.send_frame(OP_CLOSE, close_payload(code, reason))

    # ---- receiving --------------------------------------------------------------------------

    def recv_frame(self, timeout=5.0):
        """Returns the next frame, or None on EOF/timeout (self.eof tells which)."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._parse()
            if f is not None:
                self.frames.append(f)
                return f
            if not self._fill(deadline):
                return None

    def _parse(self):
        b = self.buf
        if len(b) < 2:
            return None
        b0, b1 = b[0], b[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack("!H", b[2:4])[0]
            off = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack("!Q", b[2:10])[0]
            off = 10
        masked = bool(b1 & 0x80)
        key = None
        if masked:
            if len(b) < off + 4:
                return None
            key = b[off:off + 4]
            off += 4
        if len(b) < off + n:
            return None
        payload = b[off:off + n]
        if masked:
            payload = _mask(payload, key)
        self.buf = b[off + n:]
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked, payload, time.monotonic())

    def recv_message(self, timeout=5.0, answer_pings=True):
        """Next data message as (opcode, payload) with fragments joined; control frames other than
        close are handled (pings answered unless answer_pings is False).  A close frame is returned
        as (OP_CLOSE, payload).  None on EOF/timeout."""
        deadline = time.monotonic() + timeout
        parts, op, rsv1 = [], None, False
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                return None
            if f.opcode == OP_CLOSE:
                return OP_CLOSE, f.payload
            if f.opcode == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode != OP_CONT:
                op, parts, rsv1 = f.opcode, [], bool(f.rsv & 4)
            parts.append(f.payload)
            if f.fin:
                data = b"".join(parts)
                return op, self.decompress(data) if rsv1 else data

    def recv_json(self, timeout=5.0):
        """Next text message decoded; raises AssertionError on close/EOF/timeout."""
        m = self.recv_message(timeout)
        if m is None:
            raise AssertionError("no message (eof=%s)" % self.eof)
        op, payload = m
        if op == OP_CLOSE:
            raise AssertionError("connection closed: %r" % (Frame(1, 0, op, 0, payload, 0)
                                                            .close_code(),))
        if op != OP_TEXT:
            raise AssertionError("expected a text message, got opcode %d" % op)
        return json.loads(payload.decode("utf-8"))

    def recv_until(self, pred, timeout=5.0):
        """Text messages until pred(msg); returns (msg, skipped)."""
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching message; skipped %r" % skipped[-10:])
            m = self.recv_json(left)
            if pred(m):
                return m, skipped
            skipped.append(m)

    def expect_close(self, timeout=5.0, reply=True):
        """Reads until the server's close frame; returns (code, reason bytes, messages skipped).
        Raises AssertionError when the connection ends without one.  With reply, answers the close
        (echoing the code) as RFC 6455 5.5.1 asks."""
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            m = self.recv_message(max(0.0, deadline - time.monotonic()))
            if m is None:
                raise AssertionError("no close frame (eof=%s); got %r" % (self.eof, skipped[-5:]))
            op, payload = m
            if op == OP_CLOSE:
                f = Frame(1, 0, op, 0, payload, 0)
                code, reason = f.close_code()
                if reply:
                    self.send_close(code if code is not None else None)
                return code, reason, skipped
            skipped.append((op, payload[:200]))

    def wait_eof(self, timeout=5.0):
        """True once the server closed the TCP connection (frames received meanwhile are kept)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if self.recv_frame(max(0.0, deadline - time.monotonic())) is None and not self.eof:
                return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
