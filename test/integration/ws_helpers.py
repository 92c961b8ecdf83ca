"""WebSocket helpers for test_websocket.py and test/bench/ws_idle_bench.py.

Built on helpers.py (which another engineer owns; nothing here changes it):

  Frames       encode_frame(), FrameParser (strict, server-to-client),
               Assembler (continuation frames into messages), close_payload()
  HTTP/1.1     WSConn: a raw-socket client that upgrades (RFC 6455 §4) and
               then speaks frames; every byte is the test's to check
  HTTP/2       H2WSClient: RFC 8441 extended CONNECT streams on one
               python3-h2 connection, frames in DATA within flow control
  Config       ws_config(), ws_route(), IDENTIFY, BLOCK_ENTRY
  Process      proc_status() (VmRSS/RssAnon of a PID), Sender (a thread)

Every wait is bounded: a call takes a timeout or uses the connection's.
"""

import base64
import collections
import copy
import hashlib
import json
import os
import socket
import threading
import time

from helpers import H1Conn, H2Client, H2Stream, base_config, proc_status  # noqa: F401 (re-exported)

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = {OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG}

# Clients connect from 127.0.0.1; device facts come from these headers.
IDENTIFY = {
    "client_ip": {"trusted_proxies": ["127.0.0.0/8"]},
    "device_class": {"header": "x-device-class"},
    "firmware": {"header": "x-firmware-version"},
    "device_id": {"header": "x-device-id"},
}

# The emergency block of the postmortem (SPEC section 3, blocklist).
BLOCK_ENTRY = {"class": "airtame-hub", "versions": ">=3.8.0-b3 <3.8.1", "reason": "INC-2041"}


# ---- frames ------------------------------------------------------------------

def new_key():
    """A fresh Sec-WebSocket-Key: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key):
    """Sec-WebSocket-Accept for |key| (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def mask_payload(data, key):
    """|data| XOR the 4-byte |key| repeated (RFC 6455 §5.3), in one bigint
    operation rather than a Python loop per byte."""
    n = len(data)
    if n == 0:
        return b""
    k = (bytes(key) * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def encode_frame(payload, opcode=OP_BINARY, fin=True, mask=True, mask_key=None, rsv=0):
    """One frame; client frames are masked (RFC 6455 §5.1)."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        hdr = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return hdr + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return hdr + key + mask_payload(payload, key)


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return code.to_bytes(2, "big") + reason


class Frame:
    __slots__ = ("fin", "opcode", "payload")

    def __init__(self, fin, opcode, payload):
        self.fin = fin
        self.opcode = opcode
        self.payload = payload

    @property
    def close_code(self):
        assert self.opcode == OP_CLOSE, self
        return int.from_bytes(self.payload[:2], "big") if len(self.payload) >= 2 else None

    @property
    def close_reason(self):
        assert self.opcode == OP_CLOSE, self
        return self.payload[2:].decode("utf-8")  # must be valid UTF-8 (§5.5.1)

    def __repr__(self):
        close = ""
        if self.opcode == OP_CLOSE:
            close = ", close %s %r" % (self.close_code, self.payload[2:])
        return "Frame(fin=%s, op=%d, %d bytes%s)" % (self.fin, self.opcode, len(self.payload),
                                                     close)


class FrameParser:
    """Parses server-to-client frames from a byte stream, strictly (RFC 6455
    §5.2): no RSV bits (no extension was negotiated), no mask, a known
    opcode, control frames final and at most 125 bytes, a 64-bit length
    with its top bit clear, a close payload of 0 or >= 2 bytes with a valid
    code. A violation raises AssertionError: a frame sluice broke or
    injected badly must fail the test."""

    def __init__(self):
        self.buf = bytearray()
        self.bytes_seen = 0

    def feed(self, data):
        self.buf += data
        self.bytes_seen += len(data)
        out = []
        while True:
            f = self._one()
            if f is None:
                return out
            out.append(f)

    def _one(self):
        b = self.buf
        if len(b) < 2:
            return None
        b0, b1 = b[0], b[1]
        fin, rsv, op = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F
        assert rsv == 0, "RSV bits set in a frame header %02x%02x" % (b0, b1)
        assert op in _OPCODES, "unknown opcode %d" % op
        assert not (b1 & 0x80), "a server-to-client frame is masked"
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = int.from_bytes(b[2:4], "big")
            pos = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = int.from_bytes(b[2:10], "big")
            assert n < (1 << 63), "64-bit length with the top bit set"
            pos = 10
        if op >= 0x8:
            assert fin and n <= 125, "bad control frame: fin=%s len=%d" % (fin, n)
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        del b[:pos + n]
        if op == OP_CLOSE:
            assert n != 1, "close frame with a 1-byte payload"
            if n >= 2:
                code = int.from_bytes(payload[:2], "big")
                assert 1000 <= code < 5000 and code not in (1004, 1005, 1006, 1015), \
                    "invalid close code %d" % code
                payload[2:].decode("utf-8")
        return Frame(fin, op, payload)


class Assembler:
    """Joins data frames into messages (RFC 6455 §5.4); control frames may
    come between fragments and are returned as they are."""

    def __init__(self):
        self.op = None
        self.parts = []

    def add(self, f):
        """Returns (opcode, payload) for a control frame or a finished
        message, else None."""
        if f.opcode >= 0x8:
            return f.opcode, f.payload
        if f.opcode == OP_CONT:
            assert self.op is not None, "continuation frame outside a message"
        else:
            assert self.op is None, "new data frame inside a fragmented message"
            self.op = f.opcode
        self.parts.append(f.payload)
        if not f.fin:
            return None
        msg = (self.op, b"".join(self.parts))
        self.op, self.parts = None, []
        return msg


# ---- HTTP/1.1 ------------------------------------------------------------------

def upgrade_request(path="/ws", headers=(), key=None, version="13", method="GET",
                    upgrade="websocket", connection="Upgrade", host="127.0.0.1"):
    """An HTTP/1.1 upgrade request; None for a field leaves it out."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    if upgrade is not None:
        lines.append("Upgrade: %s" % upgrade)
    if connection is not None:
        lines.append("Connection: %s" % connection)
    if key is not None:
        lines.append("Sec-WebSocket-Key: %s" % key)
    if version is not None:
        lines.append("Sec-WebSocket-Version: %s" % version)
    lines += ["%s: %s" % kv for kv in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class WSConn(H1Conn):
    """A raw TCP connection that upgrades to WebSocket and then exchanges
    frames. |rcvbuf|/|sndbuf| (bytes) are set before connecting, so a test
    can make a slow reader whose kernel buffers are small."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, rcvbuf=None, sndbuf=None, tls=None,
                 server_hostname="localhost"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.settimeout(timeout)
        s.connect((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:  # an SSLContext (ALPN http/1.1 for an upgrade)
            s = tls.wrap_socket(s, server_hostname=server_hostname)
        self.sock = s
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.parser = FrameParser()
        self.frames = collections.deque()
        self.asm = Assembler()
        self.pongs = []
        self.key = None

    def upgrade(self, path="/ws", headers=(), key=None, timeout=None, **kw):
        """Sends an upgrade request and reads the answer (H1Response). On a
        101 the accept value is checked and the tunnel starts; bytes that
        came with the head are frames already."""
        self.key = key or new_key()
        self.send(upgrade_request(path, headers, key=self.key, **kw))
        r = self.read_response(timeout=timeout or self.timeout)
        if r.status == 101:
            assert r.header("sec-websocket-accept") == accept_for(self.key), r.headers
            assert (r.header("upgrade") or "").lower() == "websocket", r.headers
            assert "upgrade" in (r.header("connection") or "").lower(), r.headers
            rest, self.buf = self.buf, b""
            self.frames.extend(self.parser.feed(rest))
        return r

    def send_frame(self, payload, opcode=OP_BINARY, fin=True):
        self.send(encode_frame(payload, opcode, fin))

    def send_message(self, payload, opcode=OP_BINARY, fragment=None):
        """One message, in frames of |fragment| bytes (continuation frames)
        when given."""
        if isinstance(payload, str):
            payload = payload.encode()
        if not fragment or len(payload) <= fragment:
            self.send_frame(payload, opcode)
            return
        out = []
        for off in range(0, len(payload), fragment):
            last = off + fragment >= len(payload)
            out.append(encode_frame(payload[off:off + fragment], opcode if off == 0 else OP_CONT,
                                    last))
        self.send(b"".join(out))

    def _recv_some(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no WebSocket frame within the time limit")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise TimeoutError("no WebSocket frame within the time limit")
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return
        self.frames.extend(self.parser.feed(data))

    def recv_frame(self, timeout=None):
        """The next frame, or None once the peer closed the connection
        (with no partial frame left over: that fails)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not self.frames:
            if self.eof:
                assert not self.parser.buf, "connection closed inside a frame (%d bytes left)" \
                    % len(self.parser.buf)
                return None
            self._recv_some(deadline)
        return self.frames.popleft()

    def recv_message(self, timeout=None):
        """(opcode, payload) of the next message or control frame other
        than a pong (pongs are kept in .pongs); pings are answered. None on
        close of the connection."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if f is None:
                return None
            if f.opcode == OP_PONG:
                self.pongs.append(f.payload)
                continue
            if f.opcode == OP_PING:
                self.send_frame(f.payload, OP_PONG)
                continue
            msg = self.asm.add(f)
            if msg is not None:
                return msg

    def echo(self, payload, opcode=OP_BINARY, timeout=None, fragment=None):
        """Sends a message and returns the echoed payload (checked opcode)."""
        self.send_message(payload, opcode, fragment)
        msg = self.recv_message(timeout)
        assert msg is not None, "connection closed instead of an echo"
        assert msg[0] == opcode, "echo opcode %d, sent %d" % (msg[0], opcode)
        return msg[1]

    def expect_close(self, timeout=None):
        """Reads frames until a close frame (data frames before it are
        returned too): (close Frame or None, [data frames before it])."""
        before = []
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if f is None or f.opcode == OP_CLOSE:
                return f, before
            before.append(f)

    def close_handshake(self, code=1000, timeout=5.0):
        """Sends a close frame; returns the peer's close frame (or None)."""
        self.send_frame(close_payload(code), OP_CLOSE)
        f, _ = self.expect_close(timeout)
        return f


def ws_open(port, path="/ws", headers=(), timeout=10.0, **kw):
    """A WSConn upgraded to a tunnel (101 asserted)."""
    c = WSConn(port, timeout=timeout,
               **{k: kw.pop(k) for k in ("rcvbuf", "sndbuf", "tls") if k in kw})
    r = c.upgrade(path, headers, **kw)
    if r.status != 101:
        c.close()
        raise AssertionError("upgrade answered %d: %r" % (r.status, r.body[:300]))
    return c


# ---- HTTP/2 (RFC 8441) ---------------------------------------------------------

class H2WSClient(H2Client):
    """WebSocket streams over one HTTP/2 connection (RFC 8441): sluice must
    announce SETTINGS_ENABLE_CONNECT_PROTOCOL = 1, then a CONNECT with
    :protocol websocket opens a stream answered 200 whose DATA carries the
    frames. With |auto_ack| False, received DATA is not acknowledged until
    ack() (a slow reader in flow-control terms)."""

    def __init__(self, port, auto_ack=True, **kw):
        super().__init__(port, **kw)
        self.auto_ack = auto_ack
        self.unacked = {}  # sid -> flow-controlled bytes received, not acknowledged

    def connect_protocol_enabled(self):
        from h2.settings import SettingCodes
        return self.conn.remote_settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1

    def wait_connect_protocol(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.connect_protocol_enabled():
            if self.closed or time.monotonic() > deadline:
                raise AssertionError("no SETTINGS_ENABLE_CONNECT_PROTOCOL=1 from sluice")
            self.pump(max(0.001, deadline - time.monotonic()))

    recv_size = 262144

    def _on_data(self, st, e):
        """Acknowledges at once or, for a slow reader, later in ack(); and
        feeds a WebSocket stream's bytes to its frame parser."""
        sid = e.stream_id
        if self.auto_ack or st is None:
            self.conn.acknowledge_received_data(e.flow_controlled_length, sid)
        else:
            self.unacked[sid] = self.unacked.get(sid, 0) + e.flow_controlled_length
        if st is not None:
            st.data += e.data
            if getattr(st, "ws", False) and st.status == 200:
                st.frames.extend(st.parser.feed(e.data))

    def ack(self):
        """Acknowledges every DATA byte received so far."""
        for sid, n in self.unacked.items():
            if n:  # a closed stream still hands back the connection window
                self.conn.acknowledge_received_data(n, sid)
        self.unacked = {}
        self.flush()

    def open_ws(self, path="/ws", headers=(), wait=True, timeout=None, protocol="websocket",
                version="13"):
        """Sends an extended CONNECT (|version|: Sec-WebSocket-Version, None
        to leave it out); with |wait|, waits for the response head. Returns
        the stream id (its H2Stream is self.streams[sid])."""
        sid = self.conn.get_next_available_stream_id()
        st = H2Stream(sid)
        st.ws = True
        st.parser = FrameParser()
        st.frames = collections.deque()
        st.asm = Assembler()
        st.pongs = []
        self.streams[sid] = st
        hdrs = [(":method", "CONNECT"), (":protocol", protocol), (":scheme", self.scheme),
                (":path", path), (":authority", self.authority)]
        if version is not None:
            hdrs.append(("sec-websocket-version", version))
        hdrs += list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=False)
        self.flush()
        if wait:
            self.wait_head(sid, timeout)
        return sid

    def wait_head(self, sid, timeout=None):
        deadline = self._deadline(timeout)
        st = self.streams[sid]
        while st.status is None and not st.done:
            if self.closed:
                raise ConnectionError("connection closed before stream %d answered" % sid)
            if time.monotonic() > deadline:
                raise TimeoutError("no response head on stream %d" % sid)
            self.pump(max(0.001, deadline - time.monotonic()))
        return st

    def send_ws(self, sid, payload, opcode=OP_BINARY, fin=True, timeout=None):
        """One frame on stream |sid|, in DATA frames within the flow-control
        windows and the peer's max frame size (H2Client.send_body)."""
        self.send_body(sid, encode_frame(payload, opcode, fin), timeout, end_stream=False)

    def send_message(self, sid, payload, opcode=OP_BINARY, fragment=None, timeout=None):
        if isinstance(payload, str):
            payload = payload.encode()
        if not fragment or len(payload) <= fragment:
            self.send_ws(sid, payload, opcode, timeout=timeout)
            return
        data = b"".join(
            encode_frame(payload[off:off + fragment], opcode if off == 0 else OP_CONT,
                         off + fragment >= len(payload))
            for off in range(0, len(payload), fragment))
        self.send_body(sid, data, timeout, end_stream=False)

    def recv_frame(self, sid, timeout=None):
        """The next frame on |sid|, or None once the stream ended or was
        reset (with no partial frame left over: that fails)."""
        deadline = self._deadline(timeout)
        st = self.streams[sid]
        while not st.frames:
            if st.done:
                assert not st.parser.buf, "stream %d ended inside a frame (%d bytes left)" % (
                    sid, len(st.parser.buf))
                return None
            if self.closed:
                return None
            if time.monotonic() > deadline:
                raise TimeoutError("no WebSocket frame on stream %d" % sid)
            self.pump(max(0.001, deadline - time.monotonic()))
        return st.frames.popleft()

    def recv_message(self, sid, timeout=None):
        deadline = self._deadline(timeout)
        st = self.streams[sid]
        while True:
            f = self.recv_frame(sid, max(0.001, deadline - time.monotonic()))
            if f is None:
                return None
            if f.opcode == OP_PONG:
                st.pongs.append(f.payload)
                continue
            if f.opcode == OP_PING:
                self.send_ws(sid, f.payload, OP_PONG)
                continue
            msg = st.asm.add(f)
            if msg is not None:
                return msg

    def echo(self, sid, payload, opcode=OP_BINARY, timeout=None, fragment=None):
        self.send_message(sid, payload, opcode, fragment, timeout)
        msg = self.recv_message(sid, timeout)
        assert msg is not None, "stream %d closed instead of an echo" % sid
        assert msg[0] == opcode, "echo opcode %d, sent %d" % (msg[0], opcode)
        return msg[1]

    def expect_close(self, sid, timeout=None):
        before = []
        deadline = self._deadline(timeout)
        while True:
            f = self.recv_frame(sid, max(0.001, deadline - time.monotonic()))
            if f is None or f.opcode == OP_CLOSE:
                return f, before
            before.append(f)

    def close_ws(self, sid, code=1000, timeout=5.0):
        """Close handshake on |sid|, then END_STREAM; returns the peer's
        close frame (or None)."""
        self.send_ws(sid, close_payload(code), OP_CLOSE)
        f, _ = self.expect_close(sid, timeout)
        try:
            self.conn.end_stream(sid)
            self.flush()
        except self._exc.StreamClosedError:
            pass
        return f


# ---- configuration ---------------------------------------------------------------

def ws_route(name="ws", prefix="/ws", **policies):
    """A WebSocket-only route on upstream "identity"; |policies| are
    rate_limits, concurrency, idle_timeout..."""
    r = {"name": name, "match": {"path_prefix": prefix, "websocket": True}, "upstream": "identity"}
    r.update(policies)
    return r


def ws_config(ws=None, extra_routes=(), **top):
    """base_config() with the identity headers above, the WebSocket route
    |ws| (default ws_route()) and any |extra_routes| ahead of the catch-all
    "default", plus top-level keys (blocklist, upstreams...)."""
    cfg = base_config(identify=copy.deepcopy(IDENTIFY),
                      reject={"retry_after": {"min": "1s", "max": "120s", "jitter": 0.5}})
    cfg["routes"] = [ws or ws_route()] + list(extra_routes) + cfg["routes"]
    cfg.update(top)
    return cfg


def check_rejection(status, header, body, want_status, error, policy):
    """A refusal as SPEC section 4 says: status, JSON body with error,
    policy and retry_after, content-type application/json, retry-after in
    whole seconds equal to the body's. Returns the body."""
    assert status == want_status, "status %r, expected %d; body %r" % (status, want_status, body)
    assert header("content-type") == "application/json", header("content-type")
    doc = json.loads(body)
    assert set(doc) == {"error", "policy", "retry_after"}, doc
    assert doc["error"] == error and doc["policy"] == policy, doc
    ra = header("retry-after")
    assert ra is not None and ra.isdigit() and int(ra) == doc["retry_after"] >= 1, (ra, doc)
    return doc


class Tunnels:
    """Opens and closes tunnels over h1 (one connection each) or h2 (one
    connection, a stream each), the same way for the tests below."""

    def __init__(self, port, proto):
        self.port, self.proto = port, proto
        self.h2 = None
        if proto == "h2":
            self.h2 = H2WSClient(port)
            self.h2.wait_connect_protocol()

    def open(self, headers):
        """(status, header(), body, handle); handle is None unless admitted."""
        if self.proto == "h1":
            c = WSConn(self.port, timeout=5)
            r = c.upgrade("/ws", headers)
            if r.status == 101:
                return r.status, r.header, r.body, c
            c.close()
            return r.status, r.header, r.body, None
        sid = self.h2.open_ws(headers=headers)
        st = self.h2.streams[sid]
        if st.status == 200:
            return 200, st.header, b"", sid
        st = self.h2.wait(sid, 5)
        return st.status, st.header, st.body, None

    def echo(self, h, data):
        return h.echo(data) if self.proto == "h1" else self.h2.echo(h, data)

    def close(self, h):
        if self.proto == "h1":
            assert h.close_handshake().close_code == 1000
            h.close()
        else:
            assert self.h2.close_ws(h).close_code == 1000
            self.h2.wait(h, 5)

    def shut(self):
        if self.h2:
            self.h2.close()


# ---- processes -------------------------------------------------------------------

class Sender(threading.Thread):
    """Sends |chunks| (an iterable of bytes) on a socket in the background,
    so that the test can stop reading while the sender blocks. .sent counts
    the bytes handed to the kernel."""

    def __init__(self, sock, chunks):
        super().__init__(daemon=True)
        self.sock, self.chunks = sock, chunks
        self.sent = 0
        self.error = None

    def run(self):
        try:
            for c in self.chunks:
                view = memoryview(c)
                while view:
                    n = self.sock.send(view)
                    self.sent += n
                    view = view[n:]
        except Exception as e:  # reported by finish()
            self.error = e

    def finish(self, timeout):
        self.join(timeout)
        assert not self.is_alive(), "sender still blocked after %.0fs (%d bytes sent)" % (
            timeout, self.sent)
        if self.error:
            raise self.error
        return self.sent
