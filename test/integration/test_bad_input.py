"""Malformed and ambiguous input never reaches the upstream.

HTTP/1.1 (raw sockets): ambiguous framing and malformed heads are answered
400 (oversized heads 431, slow heads 408) and the connection is closed
(SPEC §4, RFC 9112 §6.3, §5.2, §11.2). HTTP/2: a malformed request is a
stream error (RST_STREAM PROTOCOL_ERROR, RFC 9113 §8.2, §8.2.2) and the
connection stays usable.
"""

import time

import pytest

from helpers import H1Conn, H2Client

PROTOCOL_ERROR = 1

BAD_H1 = {
    "cl_and_te": b"POST /bad/clte HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": b"POST /bad/tecl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "duplicate_cl": b"POST /bad/dupcl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                    b"Content-Length: 6\r\n\r\nhello!",
    "cl_list": b"POST /bad/cllist HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "cl_not_a_number": b"POST /bad/clnan HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
    "te_not_chunked_last": b"POST /bad/tegzip HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "bare_lf_everywhere": b"GET /bad/lf HTTP/1.1\nHost: x\n\n",
    "bare_lf_in_header": b"GET /bad/lfh HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
    "obs_fold": b"GET /bad/fold HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  continued\r\n\r\n",
    "two_hosts": b"GET /bad/hosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    "no_host": b"GET /bad/nohost HTTP/1.1\r\nX-A: b\r\n\r\n",
    "space_before_colon": b"GET /bad/space HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n",
    "nul_in_value": b"GET /bad/nul HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bad_chunk_size": b"POST /bad/chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\nhello\r\n0\r\n\r\n",
    "bad_request_line": b"GET /bad/line HTTP/1.1 extra\r\nHost: x\r\n\r\n",
}


def assert_rejected(port, raw, status, upstream, wait=5.0):
    with H1Conn(port, timeout=wait) as c:
        c.send(raw)
        r = c.read_response(timeout=wait)
        assert r.status == status, "want %d, got %r" % (status, r)
        assert c.wait_closed(3), "connection left open after %d" % status
    st = upstream.stats()
    assert st["total"] == 0, "the upstream saw it: %r" % st["paths"]
    return r


@pytest.mark.parametrize("name", sorted(BAD_H1))
def test_bad_h1_request_is_400_and_closed(sluice, upstream, name):
    assert_rejected(sluice.port, BAD_H1[name], 400, upstream)


def test_bad_request_after_a_good_one_on_the_same_connection(sluice, upstream):
    with H1Conn(sluice.port) as c:
        assert c.request("GET", "/v1/good").status == 200
        c.send(BAD_H1["cl_and_te"])
        assert c.read_response().status == 400
        assert c.wait_closed(3)
    assert upstream.stats()["paths"] == {"/v1/good": 1}


def test_smuggled_request_in_body_is_not_forwarded(sluice, upstream):
    """CL.TE: the bytes after the first message must never become a request."""
    raw = (b"POST /bad/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /bad/smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    with H1Conn(sluice.port) as c:
        c.send(raw)
        assert c.read_response().status == 400
        c.wait_closed(3)
    assert upstream.stats()["total"] == 0


def test_oversized_header_is_431(sluice, upstream):
    raw = b"GET /bad/big HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert_rejected(sluice.port, raw, 431, upstream)


def test_oversized_header_section_is_431(sluice, upstream):
    lines = b"".join(b"X-H%03d: %s\r\n" % (i, b"v" * 200) for i in range(90))  # ~19 KiB
    raw = b"GET /bad/bigsection HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n"
    assert_rejected(sluice.port, raw, 431, upstream)


def test_too_many_headers_is_431(sluice, upstream):
    lines = b"".join(b"X-H%03d: v\r\n" % i for i in range(150))  # limits.headers: 100
    raw = b"GET /bad/many HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n"
    assert_rejected(sluice.port, raw, 431, upstream)


@pytest.mark.timeout(30)
def test_slow_header_is_408_then_closed(sluice, upstream):
    """request_header: 1s in the test configuration."""
    with H1Conn(sluice.port, timeout=6) as c:
        c.send(b"GET /bad/slow HTTP/1.1\r\nHost: x\r\n")  # no blank line: the head never ends
        t0 = time.monotonic()
        r = c.read_response(timeout=6)
        elapsed = time.monotonic() - t0
        assert r.status == 408
        assert 0.8 <= elapsed <= 4.0, "408 after %.2fs with request_header: 1s" % elapsed
        assert c.wait_closed(3)
    assert upstream.stats()["total"] == 0


@pytest.mark.timeout(30)
def test_header_trickle_does_not_extend_the_timeout(sluice, upstream):
    """A byte every 200 ms (slowloris) still hits request_header: 1s."""
    with H1Conn(sluice.port, timeout=6) as c:
        c.send(b"GET /bad/trickle HTTP/1.1\r\n")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 5:
            try:
                c.send(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if c.pending(0.2):
                break
        elapsed = time.monotonic() - t0
        assert closed or c.buf.startswith(b"HTTP/1.1 408"), c.buf[:100]
        assert elapsed <= 4.0, "trickled head still open after %.2fs" % elapsed
    assert upstream.stats()["total"] == 0


# ---- HTTP/2 ------------------------------------------------------------------

def _base(port, path):
    return [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:%d" % port),
            (b":path", path.encode())]


BAD_H2 = {
    "cr_lf_in_value": lambda b: b + [(b"x-bad", b"a\r\nx-injected: 1")],
    "lf_in_value": lambda b: b + [(b"x-bad", b"a\nb")],
    "nul_in_value": lambda b: b + [(b"x-bad", b"a\x00b")],
    "uppercase_name": lambda b: b + [(b"X-Upper", b"v")],
    "connection": lambda b: b + [(b"connection", b"keep-alive")],
    "keep_alive": lambda b: b + [(b"keep-alive", b"timeout=5")],
    "transfer_encoding": lambda b: b + [(b"transfer-encoding", b"chunked")],
    "upgrade": lambda b: b + [(b"upgrade", b"websocket")],
    "te_not_trailers": lambda b: b + [(b"te", b"gzip")],
    "space_in_name": lambda b: b + [(b"x bad", b"v")],
    "pseudo_after_regular": lambda b: b[:3] + [(b"x-a", b"b"), b[3]],
    "missing_path": lambda b: b[:3],
    "duplicate_path": lambda b: b + [(b":path", b"/bad/dup2")],
    "unknown_pseudo": lambda b: b + [(b":bogus", b"x")],
}


@pytest.mark.parametrize("name", sorted(BAD_H2))
def test_bad_h2_request_is_stream_reset(sluice, upstream, name):
    c = H2Client(sluice.port, validate=False)
    try:
        sid = c.start(None, None, raw_headers=BAD_H2[name](_base(sluice.port, "/bad/h2-" + name)))
        st = c.wait(sid, timeout=5)
        assert st.reset_code == PROTOCOL_ERROR, "want RST_STREAM PROTOCOL_ERROR, got %r" % st
        assert c.goaway is None, "a stream error must not end the connection: %r" % c.goaway
        good = c.get("/v1/after-bad")
        assert good.status == 200
    finally:
        c.close()
    assert upstream.stats()["paths"] == {"/v1/after-bad": 1}
