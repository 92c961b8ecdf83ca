"""PROXY protocol v1/v2 on a listener (listeners[].proxy_protocol): behind
a load balancer (an AWS NLB, HAProxy) every connection from a trusted peer
starts with a PROXY header, read before TLS and HTTP; its source address is
the client that connect_rate, rate limits, logs and X-Forwarded-For see. An
untrusted peer, a malformed header or one that never arrives closes the
connection, counted in sluice_proxy_protocol_errors_total{listener,reason}.

The test is the load balancer, on 127.0.0.1 (trusted): either it writes the
header itself on a raw socket, or ProxyLB relays a real client (H1Conn,
H2Client, WSConn, TLS) to sluice behind a header, as a balancer does."""

import ipaddress
import socket
import struct
import threading
import time

import pytest

from admission_helpers import advance_clock, check_h1_rejection
from helpers import H1Conn, H2Client, base_config, reserve_port
from ws_helpers import H2WSClient, ws_config, ws_open

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, sport=40000, dst=None, dport=443):
    fam = "TCP6" if ":" in src else "TCP4"
    dst = dst or ("2001:db8::1" if fam == "TCP6" else "192.0.2.1")
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src, sport=40000, dst=None, dport=443, tlvs=b"", command=0x21):
    ip = ipaddress.ip_address(src)
    dst = ipaddress.ip_address(dst or ("2001:db8::1" if ip.version == 6 else "192.0.2.1"))
    fam = 0x21 if ip.version == 6 else 0x11
    addrs = ip.packed + dst.packed + struct.pack("!HH", sport, dport)
    body = addrs + tlvs
    return V2_SIG + bytes([command, fam]) + struct.pack("!H", len(body)) + body


V2_LOCAL = V2_SIG + b"\x20\x00\x00\x00"
V1_UNKNOWN = b"PROXY UNKNOWN\r\n"
# An AWS NLB's TLV: type 0xEA, the VPC endpoint id (skipped by sluice).
AWS_TLV = b"\xea" + struct.pack("!H", 22) + b"\x01" + b"vpce-0123456789abcdef"


class ProxyLB:
    """A TCP load balancer on 127.0.0.1: each accepted client is relayed to
    sluice behind |header| (bytes, or a function of the connection number
    returning them), like an NLB with proxy protocol on. Bounded: threads
    are daemons, every socket has a timeout, close() ends them."""

    def __init__(self, target_port, header):
        self.target = target_port
        self.header = header
        r = reserve_port()
        r.release()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", r.port))
        self.ls.listen(64)
        self.port = r.port
        self.n = 0
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            hdr = self.header(self.n) if callable(self.header) else self.header
            self.n += 1
            u = socket.create_connection(("127.0.0.1", self.target), timeout=30)
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(30)
            self.socks += [c, u]
            u.sendall(hdr)
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    b.shutdown(socket.SHUT_WR)
                    return
                b.sendall(data)
        except OSError:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.closed = True
        for s in [self.ls] + self.socks:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def lb_factory():
    made = []

    def make(port, header):
        lb = ProxyLB(port, header)
        made.append(lb)
        return lb
    yield make
    for lb in made:
        lb.close()


def pp_config(trusted=("127.0.0.0/8",), timeout="3s", **listener):
    cfg = base_config()
    cfg["listeners"][0]["proxy_protocol"] = {"trusted": list(trusted), "timeout": timeout}
    cfg["listeners"][0].update(listener)
    return cfg


def raw_request(port, data, timeout=5, writes=None):
    """Sends |data| in one write (or the byte strings of |writes| one
    write each); returns everything read until EOF, or None when the
    connection was reset (closed with our bytes unread)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for w in writes or [data]:
            s.sendall(w)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return None if not out else out
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def forwarded_for(resp_bytes):
    head, _, body = resp_bytes.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), resp_bytes[:300]
    import json
    return json.loads(body)["headers"]["x-forwarded-for"]


GET = b"GET /v1/pp HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def pp_errors(s, reason):
    return s.metric("sluice_proxy_protocol_errors_total", listener="public", reason=reason)


# ---- the header names the client ------------------------------------------------

@pytest.mark.parametrize("header,client", [
    (v1("203.0.113.7"), "203.0.113.7"),
    (v1("2001:db8::7"), "2001:db8::7"),
    (v2("203.0.113.8", tlvs=AWS_TLV), "203.0.113.8"),
    (v2("2001:db8::8"), "2001:db8::8"),
    (V2_LOCAL, "127.0.0.1"),      # the balancer's own health check: the TCP peer
    (V1_UNKNOWN, "127.0.0.1"),
], ids=["v1-tcp4", "v1-tcp6", "v2-inet-tlv", "v2-inet6", "v2-local", "v1-unknown"])
def test_header_and_request_in_one_write(start_sluice, header, client):
    """The request follows the header in the same segment: the bytes after
    the header are the start of the HTTP stream (none lost), and the
    origin's X-Forwarded-For is the header's source."""
    s = start_sluice(pp_config())
    assert forwarded_for(raw_request(s.port, header + GET)) == client


def test_header_one_byte_per_write(start_sluice):
    s = start_sluice(pp_config())
    writes = [bytes([b]) for b in v2("198.51.100.3")] + [GET]
    assert forwarded_for(raw_request(s.port, None, writes=writes)) == "198.51.100.3"


def test_keepalive_requests_all_carry_the_header_client(start_sluice, upstream, lb_factory):
    s = start_sluice(pp_config())
    lb = lb_factory(s.port, v1("203.0.113.20"))
    with H1Conn(lb.port) as c:
        for i in range(3):
            r = c.request("GET", "/v1/ka%d" % i)
            assert r.status == 200
            assert r.json()["headers"]["x-forwarded-for"] == "203.0.113.20"
    assert upstream.stats()["connections"] >= 1


# ---- admission sees the device ----------------------------------------------------

def test_client_ip_rate_limit_keyed_by_proxy_source(start_sluice, lb_factory):
    """Two devices behind the same balancer (one TCP peer, 127.0.0.1) have
    their own buckets, and the rejection log names the device."""
    cfg = pp_config()
    cfg["routes"][0]["rate_limits"] = [{"key": "client_ip", "rate": "1/h", "burst": 2}]
    cfg["reject"] = {"retry_after": {"min": "1s", "max": "7200s", "jitter": 0}}
    s = start_sluice(cfg)
    a = lb_factory(s.port, v2("203.0.113.1"))
    b = lb_factory(s.port, v2("203.0.113.2"))
    statuses = []
    for lb in (a, a, a, b, b):
        with H1Conn(lb.port) as c:
            r = c.request("GET", "/v1/rl")
            statuses.append(r.status)
            if r.status == 429:
                check_h1_rejection(r, 429, "rate_limited", "default/client_ip", 1, 7200)
    assert statuses == [200, 200, 429, 200, 200], statuses
    line = s.wait_log(lambda l: l.get("policy") == "default/client_ip", what="the rejection log")
    assert line["client_ip"] == "203.0.113.1", line


def test_connect_rate_keyed_by_proxy_source(start_sluice, lb_factory):
    """connect_rate runs on the header's source, right after the header: a
    device over its burst is closed, another one behind the same balancer
    is not."""
    s = start_sluice(pp_config(connect_rate={"per_ip": "1/s", "burst": 2}))
    results = [raw_request(s.port, v1("203.0.113.5") + GET) for _ in range(3)]
    assert [forwarded_for(r) for r in results[:2]] == ["203.0.113.5"] * 2
    assert not results[2], results[2]  # closed without an answer
    assert forwarded_for(raw_request(s.port, v1("203.0.113.6") + GET)) == "203.0.113.6"
    assert s.metric("sluice_rejections_total", policy="public/connect_rate",
                    reason="connect_rate") == 1
    line = s.wait_log(lambda l: l.get("policy") == "public/connect_rate", what="the rejection log")
    assert line["client_ip"] == "203.0.113.5", line
    advance_clock(s, 1000)  # 1/s: a second later (policy time) it connects again
    assert forwarded_for(raw_request(s.port, v1("203.0.113.5") + GET)) == "203.0.113.5"


# ---- what closes the connection ---------------------------------------------------

def test_untrusted_peer_is_closed(start_sluice):
    s = start_sluice(pp_config(trusted=("192.0.2.0/24", "2001:db8::/32")))
    for _ in range(3):
        assert not raw_request(s.port, v1("203.0.113.7") + GET)
    assert pp_errors(s, "untrusted") == 3
    line = s.wait_log(lambda l: l.get("msg") == "PROXY protocol: connection closed",
                      what="the untrusted peer's log line")
    assert line["reason"] == "untrusted" and line["peer"] == "127.0.0.1", line
    # At most one line a second per worker (2 workers), with a count of the
    # lines left out.
    lines = [l for l in s.logs() if l.get("msg") == "PROXY protocol: connection closed"]
    assert 1 <= len(lines) <= 2, lines


@pytest.mark.parametrize("data,reason", [
    (GET, "malformed"),                                       # no header: HTTP straight away
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", "malformed"),  # a TLS ClientHello
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "malformed"),      # h2c preface
    (b"PROXY TCP4 203.0.113.7 192.0.2.1 040000 443\r\n" + GET, "malformed"),
    (b"PROXY TCP4 203.0.113.7 192.0.2.1 4000 443\n" + GET, "malformed"),
    (V2_SIG + b"\x11\x11\x00\x0c" + bytes(12) + GET, "malformed"),  # version 1 in a v2 header
    (V2_SIG + b"\x21\x11\x00\x08" + bytes(8) + GET, "malformed"),   # shorter than its addresses
    (b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n" + GET, "too_long"),
    (V2_SIG + b"\x21\x11\xff\xff" + bytes(64), "too_long"),
], ids=["http", "tls", "h2c", "leading-zero", "bare-lf", "v2-version", "v2-short", "v1-long",
        "v2-long"])
def test_malformed_header_is_closed(start_sluice, upstream, data, reason):
    s = start_sluice(pp_config())
    assert not raw_request(s.port, data)
    assert pp_errors(s, reason) == 1
    assert upstream.stats()["total"] == 0


def test_header_timeout_closes(start_sluice):
    """Half a header, then nothing: closed once proxy_protocol.timeout
    (300 ms) has passed; the test waits for the close, not a time."""
    s = start_sluice(pp_config(timeout="300ms"))
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    try:
        t0 = time.monotonic()
        c.sendall(b"PROXY TCP4 203.0.113.7 ")
        try:
            assert c.recv(100) == b""
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    assert 0.29 <= elapsed < 3.0, elapsed
    assert pp_errors(s, "timeout") == 1


def test_peer_hanging_up_is_counted_not_logged(start_sluice):
    """A balancer's TCP health check connects and closes without a byte."""
    s = start_sluice(pp_config())
    socket.create_connection(("127.0.0.1", s.port), timeout=5).close()
    from helpers import wait_for
    wait_for(lambda: pp_errors(s, "closed") == 1, 5, what="the closed count")
    assert not [l for l in s.logs() if l.get("msg") == "PROXY protocol: connection closed"]


# ---- protocols behind the header --------------------------------------------------

def test_tls_behind_proxy_header(start_sluice, tls_cert, lb_factory):
    cert = tls_cert["ecdsa"]
    s = start_sluice(pp_config(tls={"certificate": cert.cert, "private_key": cert.key}))
    lb = lb_factory(s.port, v2("203.0.113.30"))
    with H1Conn(lb.port, tls=cert.client_context(alpn=["http/1.1"])) as c:
        r = c.request("GET", "/v1/tls")
    assert r.status == 200
    assert r.json()["headers"]["x-forwarded-for"] == "203.0.113.30"
    assert r.json()["headers"]["x-forwarded-proto"] == "https"
    c = H2Client(lb.port, tls=cert.client_context())
    try:
        st = c.wait(c.start("GET", "/v1/tls-h2"), timeout=10)
    finally:
        c.close()
    assert st.status == 200 and st.json()["headers"]["x-forwarded-for"] == "203.0.113.30"


def test_h2c_behind_proxy_header(start_sluice, lb_factory):
    s = start_sluice(pp_config())
    lb = lb_factory(s.port, v1("203.0.113.31"))
    c = H2Client(lb.port)
    try:
        sids = [c.start("GET", "/v1/h2c%d" % i) for i in range(3)]
        for sid in sids:
            st = c.wait(sid, timeout=10)
            assert st.status == 200
            assert st.json()["headers"]["x-forwarded-for"] == "203.0.113.31"
    finally:
        c.close()


def test_websocket_behind_proxy_header(start_sluice, lb_factory):
    cfg = ws_config()
    cfg["identify"]["client_ip"]["trusted_proxies"] = []  # the header, not XFF, names the client
    cfg["listeners"][0]["proxy_protocol"] = {"trusted": ["127.0.0.0/8"]}
    s = start_sluice(cfg)
    lb = lb_factory(s.port, v2("203.0.113.32"))
    c = ws_open(lb.port)
    try:
        assert c.echo(b"through the balancer") == b"through the balancer"
    finally:
        c.close()


def test_h2_websocket_behind_proxy_header(start_sluice, lb_factory):
    """RFC 8441 tunnels on an h2c connection behind the header."""
    cfg = ws_config()
    cfg["identify"]["client_ip"]["trusted_proxies"] = []
    cfg["listeners"][0]["proxy_protocol"] = {"trusted": ["127.0.0.0/8"]}
    s = start_sluice(cfg)
    lb = lb_factory(s.port, v1("2001:db8::33"))
    c = H2WSClient(lb.port)
    try:
        c.wait_connect_protocol()
        sids = [c.open_ws() for _ in range(2)]
        for i, sid in enumerate(sids):
            assert c.echo(sid, b"tunnel %d" % i) == b"tunnel %d" % i
    finally:
        c.close()


def test_reload_turns_proxy_protocol_on(start_sluice):
    """A listener kept across a reload takes the new setting for new
    connections, and the reload summary names it as changed."""
    cfg = base_config()
    s = start_sluice(cfg)
    assert forwarded_for(raw_request(s.port, GET)) == "127.0.0.1"
    s.write_config(pp_config())
    assert s.reload() == 1.0
    line = s.wait_log(lambda l: "listeners_changed" in l, what="the reload summary")
    assert "public" in line["listeners_changed"], line
    assert forwarded_for(raw_request(s.port, v1("203.0.113.40") + GET)) == "203.0.113.40"
    assert not raw_request(s.port, GET)
