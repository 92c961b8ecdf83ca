"""HTTP/2 flood guards (SPEC section 4: rapid reset and CONTINUATION floods
refused, libnghttp2's own guards switched on): raw frames from a hostile
client end its connection with GOAWAY, and sluice keeps serving others."""
import socket
import struct
import time

import hpack
import pytest
from hyperframe.frame import (ContinuationFrame, GoAwayFrame, HeadersFrame, RstStreamFrame,
                              SettingsFrame, WindowUpdateFrame)

from helpers import base_config, h1_once, wait_for

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(PREFACE + SettingsFrame(0).serialize())
    return s


def request_block(enc, path):
    return enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                       (":path", path)])


def read_until_goaway(s, deadline):
    """Reads frames until GOAWAY or EOF; returns the GOAWAY error code, or
    None if the connection simply closed."""
    buf = b""
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return None
        except socket.timeout:
            continue
        if not chunk:
            return None
        buf += chunk
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            ftype = buf[3]
            if len(buf) < 9 + length:
                break
            payload = buf[9:9 + length]
            buf = buf[9 + length:]
            if ftype == 0x7:  # GOAWAY
                return struct.unpack(">I", payload[4:8])[0]
    raise AssertionError("no GOAWAY and no close within the deadline")


def test_rapid_reset_flood_gets_goaway(start_sluice, upstream):
    s_ = start_sluice(base_config())
    s = connect(s_.port)
    enc = hpack.Encoder()
    out = b""
    # HEADERS then RST_STREAM, thousands of times: CVE-2023-44487.
    for i in range(3000):
        sid = 1 + 2 * i
        h = HeadersFrame(sid, request_block(enc, "/v1/x"), flags=["END_HEADERS", "END_STREAM"])
        out += h.serialize() + RstStreamFrame(sid, error_code=8).serialize()
    try:
        s.sendall(out)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed on us mid-flood: also a refusal
    code = read_until_goaway(s, time.monotonic() + 10)
    s.close()
    # nghttp2's reset limiter ends the session with GOAWAY(INTERNAL_ERROR).
    assert code is None or code != 0, code
    # The flood did not reach the upstream one-for-one, and sluice serves on.
    assert upstream.seen("/v1/x") < 3000
    assert h1_once(s_.port, "/v1/after")[0] == 200


def test_continuation_flood_is_refused(start_sluice):
    s_ = start_sluice(base_config())
    s = connect(s_.port)
    enc = hpack.Encoder()
    block = request_block(enc, "/v1/x")
    out = HeadersFrame(1, block, flags=["END_STREAM"]).serialize()  # no END_HEADERS
    # An endless header block in tiny CONTINUATION frames: CVE-2024-27316 class.
    filler = hpack.Encoder().encode([("x-pad", "a" * 20)])
    for _ in range(200):
        out += ContinuationFrame(1, filler).serialize()
    try:
        s.sendall(out)
    except (BrokenPipeError, ConnectionResetError):
        pass
    code = read_until_goaway(s, time.monotonic() + 10)
    s.close()
    # A valid block that never ends: nghttp2 stops after 8 CONTINUATION
    # frames (its max_continuations) with an error GOAWAY.
    assert code is None or code != 0, code
    assert h1_once(s_.port, "/v1/after")[0] == 200


def test_window_update_overflow_is_a_connection_error(start_sluice):
    s_ = start_sluice(base_config())
    s = connect(s_.port)
    # Two increments that overflow the 2^31-1 window (RFC 9113 §6.9.1).
    s.sendall(WindowUpdateFrame(0, window_increment=0x7FFFFFFF).serialize() * 2)
    code = read_until_goaway(s, time.monotonic() + 10)
    s.close()
    assert code in (None, 0x3), code  # FLOW_CONTROL_ERROR
    assert h1_once(s_.port, "/v1/after")[0] == 200


@pytest.mark.parametrize("sid", [2147483645, 2147483647])
def test_teardown_with_a_stream_at_a_huge_id_is_prompt(start_sluice, upstream, sid):
    """Closing a connection frees its live streams from its own list: a
    stream id near 2^31 must not make the worker walk (or, at 2^31-1,
    overflow) a range of ids. One worker, so a stuck worker is the one
    the next client meets."""
    s_ = start_sluice(base_config(), workers=1)
    s = connect(s_.port)
    enc = hpack.Encoder()
    # /slow holds the upstream answer, so the stream is live at close.
    s.sendall(HeadersFrame(sid, request_block(enc, "/slow?ms=3000"),
                           flags=["END_HEADERS", "END_STREAM"]).serialize())
    wait_for(lambda: upstream.seen("/slow") == 1, 5, what="the stream reaching the upstream")
    s.close()
    status, _, _, secs = h1_once(s_.port, "/v1/after", timeout=5)
    assert status == 200
    assert secs < 1.0, secs
    # Deaf-to-SIGTERM was the failure at 2^31-1: the drain must end in time.
    assert s_.stop(timeout=5) == 0
