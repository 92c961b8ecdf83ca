"""Answer, then close gently (lingering close).

When sluice answers and closes a connection while the client is still
sending (an oversized head, a malformed request followed by more bytes, a
refused upload), closing a socket with unread input makes the kernel send
an RST, and the client's kernel may throw away the answer before the client
reads it. sluice shuts its write side after the last byte, drains and
discards the client's input for a bounded time and size, then closes (nginx
lingering_close). Over TLS it sends close_notify first.

Every test sends far more than the answer provokes without reading, then
reads: the whole answer must be there, followed by a clean end of stream.
"""

import socket
import ssl
import threading
import time


from admission_helpers import admission_config, route
from helpers import H2Client, base_config

GARBAGE = b"x" * (256 * 1024)
LINGER_BOUND_S = 2.0  # sluice's linger time bound (proxy/conn.c)


def _sender(sock, data, errors):
    """Writes |data| in a thread so the test can read while it is sent."""
    try:
        sock.sendall(data)
    except OSError as e:  # ECONNRESET/EPIPE: what the baseline does
        errors.append(e)


def _read_until_eof(sock, timeout):
    """All bytes until a clean EOF; raises ConnectionResetError (or
    ssl.SSLError) if the stream ends in a reset."""
    sock.settimeout(timeout)
    out = b""
    while True:
        d = sock.recv(65536)
        if not d:
            return out
        out += d


def _parse(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def _refused_and_drained(sock, request, extra, shut_wr=True, timeout=10.0):
    """Sends |request| then |extra| (without reading until everything is
    sent), optionally half-closes, and reads the answer to EOF."""
    errors = []
    t = threading.Thread(target=_sender, args=(sock, request + extra, errors))
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "sluice stopped reading: %d bytes could not be sent" % len(extra)
    assert not errors, "the connection was reset while the client was sending: %r" % errors
    if shut_wr:
        sock.shutdown(socket.SHUT_WR)
    raw = _read_until_eof(sock, timeout)
    return _parse(raw)


def test_431_survives_pipelined_garbage(sluice, upstream):
    """A head over the limit, then 256 KiB more: the 431 arrives whole."""
    req = b"GET /v1/big HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", sluice.port), timeout=10) as s:
        status, headers, body = _refused_and_drained(s, req, GARBAGE)
    assert status == 431
    assert headers.get("connection") == "close"
    assert int(headers["content-length"]) == len(body) and b"header_too_large" in body
    assert upstream.stats()["total"] == 0


def test_400_survives_pipelined_garbage_and_close_is_bounded(sluice, upstream):
    """A malformed request and more bytes, client never half-closes: the 400
    arrives, then a clean FIN within the linger bound."""
    req = b"GET /v1/bad HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n"
    with socket.create_connection(("127.0.0.1", sluice.port), timeout=10) as s:
        t0 = time.monotonic()
        status, headers, body = _refused_and_drained(s, req, GARBAGE, shut_wr=False)
        elapsed = time.monotonic() - t0
    assert status == 400 and int(headers["content-length"]) == len(body)
    # The linger ends at its bound (plus scheduling slack), not at the
    # idle timeout (60 s in base_config).
    assert elapsed < LINGER_BOUND_S + 3.0, elapsed
    assert upstream.stats()["total"] == 0


def test_refused_upload_429_keeps_retry_after(start_sluice, upstream):
    """A POST refused by a rate limit with its body unread: the 429 and its
    Retry-After reach the client although the body keeps coming."""
    s = start_sluice(admission_config(routes=[route(rate_limits=[
        {"key": "client_ip", "rate": "1/m", "burst": 1}])]))
    body = b"b" * (512 * 1024)
    req = (b"POST /v1/upload HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.9.9.9\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body))
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"GET /v1/first HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.9.9.9\r\n"
                  b"Connection: close\r\n\r\n")
        status, _, _ = _parse(_read_until_eof(c, 10))
        assert status == 200
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        status, headers, rbody = _refused_and_drained(c, req, body)
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert b"rate_limit" in rbody
    assert upstream.stats()["paths"] == {"/v1/first": 1}


def _strict_tls_client(tls_cert):
    """A client context that reports an EOF without close_notify as an error
    (Python sets OP_IGNORE_UNEXPECTED_EOF by default)."""
    ctx = tls_cert.ecdsa.client_context(alpn=("http/1.1",))
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    return ctx


def test_tls_431_with_close_notify(start_sluice, upstream, tls_cert):
    """Over TLS: the 431 arrives whole and the stream ends with close_notify
    (recv returns b'' instead of raising SSLEOFError or a reset)."""
    cfg = base_config()
    cfg["listeners"][0]["tls"] = {"certificate": tls_cert.ecdsa.cert,
                                  "private_key": tls_cert.ecdsa.key}
    s = start_sluice(cfg)
    ctx = _strict_tls_client(tls_cert)
    req = b"GET /v1/big HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as c:
        errors = []
        t = threading.Thread(target=_sender, args=(c, req + GARBAGE, errors))
        t.start()
        t.join(10)
        assert not t.is_alive() and not errors, errors
        # recv raises SSLEOFError (ragged EOF) or ConnectionResetError
        # unless close_notify ended the stream.
        status, headers, body = _parse(_read_until_eof(c, 10))
    assert status == 431 and int(headers["content-length"]) == len(body)
    assert upstream.stats()["total"] == 0


def test_tls_connection_close_sends_close_notify(start_sluice, upstream, tls_cert):
    """A response with connection: close over TLS ends with close_notify."""
    cfg = base_config()
    cfg["listeners"][0]["tls"] = {"certificate": tls_cert.ecdsa.cert,
                                  "private_key": tls_cert.ecdsa.key}
    s = start_sluice(cfg)
    ctx = _strict_tls_client(tls_cert)
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as c:
        c.sendall(b"GET /v1/tls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, body = _parse(_read_until_eof(c, 10))
        assert status == 200 and headers.get("connection") == "close"
        # The server sent close_notify: unwrap() completes the TLS shutdown.
        plain = c.unwrap()
        plain.close()


def test_http10_with_transfer_encoding_closes(sluice, upstream):
    """RFC 9112 §6.1: a server that receives an HTTP/1.0 message with
    Transfer-Encoding must close the connection after responding, even when
    the client asked for keep-alive."""
    req = (b"POST /v1/te10 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    with socket.create_connection(("127.0.0.1", sluice.port), timeout=10) as s:
        s.sendall(req)
        raw = _read_until_eof(s, 10)  # returns only when sluice closes
    status, headers, _ = _parse(raw)
    assert status == 200
    assert headers.get("connection") == "close"
    assert upstream.stats()["paths"] == {"/v1/te10": 1}


def test_h2_goaway_then_close_survives_unread_frames(sluice, upstream):
    """An h2c client sends a protocol error followed by lots of frames: the
    GOAWAY reaches it before the connection ends, without a reset."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    # PING on stream 1: a connection error PROTOCOL_ERROR (RFC 9113 §6.7).
    bad_ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"\x00" * 8
    filler = (b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"\x00" * 8) * (256 * 1024 // 17)
    with socket.create_connection(("127.0.0.1", sluice.port), timeout=10) as s:
        errors = []
        t = threading.Thread(target=_sender, args=(s, preface + settings + bad_ping + filler,
                                                  errors))
        t.start()
        t.join(10)
        assert not t.is_alive() and not errors, errors
        s.shutdown(socket.SHUT_WR)
        raw = _read_until_eof(s, 10)
    # Walk the frames: a GOAWAY (type 7) must be among them.
    types, i = [], 0
    while i + 9 <= len(raw):
        n = int.from_bytes(raw[i:i + 3], "big")
        types.append(raw[i + 3])
        i += 9 + n
    assert 7 in types, "no GOAWAY in %r" % types


def test_drain_does_not_wait_on_lingering_client_beyond_the_bound(start_sluice, upstream):
    """SIGTERM while a refused client lingers (it never closes its side):
    sluice exits once the linger bound is over, not at drain_timeout.
    (A guard: the baseline closes at once, so it passes there too.)"""
    s = start_sluice(base_config(drain_timeout="30s"))
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    try:
        c.sendall(b"GET /v1/bad HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n")
        raw = _read_until_eof(c, 10)  # sluice shut its write side: lingering now
        assert _parse(raw)[0] == 400
        t0 = time.monotonic()
        s.stop(timeout=20)
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    assert elapsed < LINGER_BOUND_S + 3.0, elapsed


def test_lingering_connection_gives_its_slot_to_a_new_client(start_sluice, upstream):
    """max_connections 1: a refused client that lingers (never closes) does
    not lock out the next client; the lingering connection is closed to make
    room (as nginx reuses lingering connections)."""
    cfg = base_config()
    cfg["listeners"][0]["max_connections"] = 1
    s = start_sluice(cfg, workers=1)
    a = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    try:
        a.sendall(b"GET /v1/bad HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n")
        assert _parse(_read_until_eof(a, 10))[0] == 400  # sluice is lingering on |a| now
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as b:
            b.sendall(b"GET /v1/next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status = _parse(_read_until_eof(b, 10))[0]
        # Served at once, not after the linger bound ran out.
        assert status == 200 and time.monotonic() - t0 < LINGER_BOUND_S / 2
    finally:
        a.close()
    assert upstream.stats()["paths"] == {"/v1/next": 1}


def _server_closed(sock, timeout):
    """True when sluice has closed its socket (not merely shut its write
    side to linger). A byte sent to a closed socket is answered with a
    reset, after which the next send fails (EPIPE: the FIN came first, so
    recv would only ever say EOF); bytes sent to a lingering socket are read
    and discarded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sock.send(b"x")
        except (ConnectionResetError, BrokenPipeError):
            return True
        time.sleep(0.01)
    return False


def _close_request(sock, extra=b""):
    sock.sendall(b"GET /v1/bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + extra)


def test_client_close_after_a_complete_request_closes_at_once(start_sluice, upstream, tls_cert):
    """The client asked to close and sent nothing after its request: no
    lingering, the socket is closed right after the answer (nginx does the
    same), so the connection is gone while the client still holds its end.
    Lingering would keep it until the client's FIN or LINGER_BOUND_S."""
    for tls in (False, True):
        cfg = base_config()
        if tls:
            cfg["listeners"][0]["tls"] = {"certificate": tls_cert.ecdsa.cert,
                                          "private_key": tls_cert.ecdsa.key}
        s = start_sluice(cfg)
        raw = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock = _strict_tls_client(tls_cert).wrap_socket(
            raw, server_hostname="localhost", suppress_ragged_eofs=False) if tls else raw
        try:
            _close_request(sock)
            status, headers, _ = _parse(_read_until_eof(sock, 10))
            assert status == 200 and headers.get("connection") == "close"
            if tls:
                sock = sock.unwrap()  # close_notify came before the FIN
            # Within half the linger bound: a lingering socket would still
            # be open then, reading and discarding what the client sends.
            assert _server_closed(sock, LINGER_BOUND_S / 2), "sluice lingered (tls=%s)" % tls
        finally:
            sock.close()


def test_client_close_with_bytes_after_it_still_lingers(sluice, upstream):
    """Bytes after a Connection: close request (in the same write, so they
    are there when the answer is done): sluice lingers, and the answer is
    read in full, ended by a clean EOF, not lost to a reset."""
    sock = socket.create_connection(("127.0.0.1", sluice.port), timeout=10)
    try:
        status, headers, body = _refused_and_drained(
            sock, b"GET /v1/bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", GARBAGE)
        assert status == 200 and headers.get("connection") == "close"
        assert len(body) == int(headers["content-length"])
    finally:
        sock.close()


def test_h2_client_goaway_after_its_answer_closes_at_once(start_sluice, upstream):
    """An h2c client that got its answers and sent GOAWAY opens no stream
    again (RFC 9113 section 6.8): with its socket empty, sluice closes at
    once, as a storm's refused device does after its 429, instead of
    shutting its write side and lingering until the client's FIN or
    LINGER_BOUND_S. The answer still arrives whole, ended by a clean EOF."""
    cfg = base_config()
    cfg["routes"].insert(0, route("limited", prefix="/limited",
                                  rate_limits=[{"key": "client_ip", "rate": "1/h", "burst": 1}]))
    s = start_sluice(cfg)
    for path, want in (("/v1/ok", 200), ("/limited", 200), ("/limited", 429)):
        with H2Client(s.port) as c:
            sid = c.start("GET", path)
            st = c.wait(sid)
            assert st.status == want, (path, st)
            c.conn.close_connection()  # GOAWAY, and the client keeps its end
            c.flush()
            _read_until_eof(c.sock, 10)  # a clean end, not a reset
            assert _server_closed(c.sock, LINGER_BOUND_S / 2), "sluice lingered on %s" % path
            c.closed = True
