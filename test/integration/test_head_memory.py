"""Heads that arrive in pieces cost memory linear in their size, and an
origin's head is bounded like a client's (limits.header_bytes of the
listener the request came in on; over it: 502, an upstream failure).

Each piece is made a separate read of sluice's: after sending it the test
waits, on the kernel's socket state (/proc/net/tcp), until the piece left
the sender and sluice's receive queue is empty again. Re-copying
everything received so far per piece (the bug) costs about N^2 / (2 P)
bytes for N bytes in pieces of P: 18 MB for the 60 KB used here, where a
buffer grown geometrically needs under 4 N.
"""

import socket
import threading
import time

import pytest

from helpers import H1Conn, base_config, proc_status, reserve_port, tcp_sockets

HEAD_LIMIT = 65536
VALUE = 60000   # bytes of the one big header value
PIECE = 100     # bytes per read
QUADRATIC = VALUE * VALUE // (2 * PIECE)   # what re-copying costs, bytes
# Linear cost, generously: the scratch (< 2 N), the arena's copy (N), and
# allocator and sanitizer slack (2 MiB). The quadratic cost is 4x this.
RSS_BOUND = 4 * VALUE + 2 * 1024 * 1024


def rss_bytes(pid):
    return proc_status(pid)["VmRSS"] * 1024


def _queues(local_port, remote_port):
    """(tx_queue, rx_queue) of the socket local_port -> remote_port, or
    None if there is none."""
    socks = tcp_sockets(local_port, remote_port)
    return (socks[0][2], socks[0][3]) if socks else None


def send_as_reads(sock, data, piece, timeout=80.0):
    """Sends |data| in |piece|-byte writes, each one read by the peer before
    the next is sent: the sender's queue drains (the peer's kernel has
    it), then the peer's receive queue (the peer's process read it)."""
    lport = sock.getsockname()[1]
    rport = sock.getpeername()[1]
    deadline = time.monotonic() + timeout
    for off in range(0, len(data), piece):
        sock.sendall(data[off:off + piece])
        while True:
            mine = _queues(lport, rport)
            theirs = _queues(rport, lport)
            if mine and theirs and mine[0] == 0 and theirs[1] == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError("peer stopped reading after %d bytes" % off)
            time.sleep(0.0002)


def head_config(**upstream_timeouts):
    cfg = base_config()
    cfg["listeners"][0]["limits"] = {"header_bytes": HEAD_LIMIT}
    cfg["listeners"][0]["timeouts"] = {"request_header": "30s", "idle": "60s"}
    if upstream_timeouts:
        cfg["upstreams"]["identity"]["timeouts"] = upstream_timeouts
    return cfg


def warm_up(port):
    with H1Conn(port) as c:
        for _ in range(3):
            assert c.request("GET", "/v1/warm", headers=[("x-w", "w" * 2000)]).status == 200


@pytest.mark.timeout(120)
def test_client_head_in_pieces_costs_linear_memory(start_sluice, upstream):
    s = start_sluice(head_config(), workers=1)
    warm_up(s.port)
    value = bytes(b"abcdefghij"[i % 10] for i in range(VALUE))
    name = b"x-" + b"n" * 300
    target = b"/v1/" + b"t" * 1000
    head = (b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n" + name + b": " + value +
            b"\r\nx-after: 1\r\n\r\n")
    before = rss_bytes(s.pid)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        send_as_reads(sock, head, PIECE)
        grown = rss_bytes(s.pid) - before
        sock.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "closed before an answer"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    finally:
        sock.close()
    print("client head: RSS grew %d bytes" % grown)
    assert grown < RSS_BOUND, (
        "RSS grew %d bytes for a %d-byte head in %d-byte reads (bound %d, re-copying costs ~%d)"
        % (grown, len(head), PIECE, RSS_BOUND, QUADRATIC))
    # The pieces were put together exactly.
    echoed = upstream_echo(upstream, s.port, name, value)
    assert echoed


def upstream_echo(upstream, port, name, value):
    """The same request sent whole: the origin saw the pieced one equal."""
    with H1Conn(port) as c:
        r = c.request("GET", "/v1/whole", headers=[(name.decode(), value.decode())])
        assert r.status == 200
        whole = r.json()["headers"][name.decode()]
    assert whole == value.decode()
    return True


class RawOrigin:
    """An origin speaking raw bytes: for each request head it reads, it
    calls answer(sock) from its own thread."""

    def __init__(self, answer):
        self.res = reserve_port()
        self.port = self.res.port
        self.res.release()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.answer = answer
        self.requests = 0
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(30)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while not self.stop.is_set():
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                _, _, buf = buf.partition(b"\r\n\r\n")
                self.requests += 1
                if not self.answer(conn):
                    return
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.lsock.close()
        self.thread.join(5)


@pytest.mark.timeout(120)
def test_origin_head_in_pieces_costs_linear_memory(start_sluice):
    value = bytes(b"abcdefghij"[i % 10] for i in range(VALUE))

    def answer(conn):
        body = b"ok\n"
        head = (b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nx-big: " % len(body) + value +
                b"\r\n\r\n" + body)
        send_as_reads(conn, head, PIECE)
        return True

    origin = RawOrigin(answer)
    try:
        s = start_sluice(head_config(connect="1s", response="30s", idle="60s"),
                         upstream=origin.port, workers=1)
        with H1Conn(s.port, timeout=30) as c:
            r = c.request("GET", "/warm", timeout=30)
            assert r.status == 200
            before = rss_bytes(s.pid)
            r = c.request("GET", "/big", timeout=30)
            grown = rss_bytes(s.pid) - before
        assert r.status == 200, r
        assert r.header("x-big") == value.decode()
        print("origin head: RSS grew %d bytes" % grown)
        assert grown < RSS_BOUND, (
            "RSS grew %d bytes for a %d-byte origin head in %d-byte reads (bound %d, "
            "re-copying costs ~%d)" % (grown, VALUE, PIECE, RSS_BOUND, QUADRATIC))
        assert not origin.errors, origin.errors
    finally:
        origin.close()


@pytest.mark.timeout(60)
def test_origin_head_over_the_limit_is_502_and_an_upstream_failure(start_sluice):
    """512 KiB of head in 2 KiB pieces, past a 64 KiB limit: 502, counted
    as a failure by the breaker (it opens after the threshold)."""
    big = 512 * 1024

    def answer(conn):
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-big: ")
            for off in range(0, big, 2048):
                conn.sendall(b"a" * 2048)
            conn.sendall(b"\r\n\r\nok\n")
        except OSError:
            return False  # sluice gave up on it: what we want
        return True

    origin = RawOrigin(answer)
    try:
        cfg = head_config(connect="1s", response="10s", idle="60s")
        cfg["upstreams"]["identity"]["circuit_breaker"] = {
            "consecutive_failures": 3, "open_for": "30s", "half_open_probes": 1}
        s = start_sluice(cfg, upstream=origin.port, workers=1)
        for i in range(3):
            with H1Conn(s.port, timeout=20) as c:
                r = c.request("GET", "/huge%d" % i, timeout=20)
            assert r.status == 502, r
            assert r.json()["error"] == "upstream_header_too_large", r.body
        # Three failures out of three: the breaker is open, the origin is
        # no longer asked.
        asked = origin.requests
        with H1Conn(s.port, timeout=20) as c:
            r = c.request("GET", "/after", timeout=20)
        assert r.status == 503 and r.json()["error"] == "circuit_open", r
        assert origin.requests == asked
    finally:
        origin.close()


@pytest.mark.timeout(60)
def test_endless_interim_answers_are_502(start_sluice):
    """Interim 1xx answers are not forwarded, so their fields are not kept;
    an origin sending more than 16 of them before a final answer is broken:
    502. (Before: each one's fields stayed in the request's arena, 100 of
    10 KB here.)"""
    pad = b"p" * 10000

    def answer(conn):
        try:
            for _ in range(100):
                conn.sendall(b"HTTP/1.1 103 Early Hints\r\nlink: " + pad + b"\r\n\r\n")
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
        except OSError:
            return False
        return True

    origin = RawOrigin(answer)
    try:
        s = start_sluice(head_config(connect="1s", response="10s", idle="60s"),
                         upstream=origin.port, workers=1)
        with H1Conn(s.port, timeout=20) as c:
            r = c.request("GET", "/hints", timeout=20)
        assert r.status == 502, r
    finally:
        origin.close()


@pytest.mark.timeout(60)
def test_a_few_interim_answers_pass(start_sluice):
    def answer(conn):
        for _ in range(3):
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n")
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-final: 1\r\n\r\nok\n")
        return True

    origin = RawOrigin(answer)
    try:
        s = start_sluice(head_config(connect="1s", response="10s", idle="60s"),
                         upstream=origin.port, workers=1)
        with H1Conn(s.port, timeout=20) as c:
            r = c.request("GET", "/hints", timeout=20)
        assert r.status == 200, r
        assert r.header("x-final") == "1"
        assert r.header("link") is None  # interim fields are not forwarded
        assert r.body == b"ok\n"
    finally:
        origin.close()
