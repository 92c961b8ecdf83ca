"""WebSocket tunnels (SPEC section 4, "WebSocket" and "Emergency blocks"):
HTTP/1.1 Upgrade (python3-websockets and raw sockets) and HTTP/2 extended
CONNECT (RFC 8441, python3-h2), echoed by upstream.py's /ws; handshake
validation, admission of upgrades, back-pressure, idle timeout, emergency
blocks and drain, with the close frames parsed byte by byte."""

import asyncio
import json
import os
import random
import signal
import socket
import string
import threading
import time

import pytest
import websockets

from helpers import H1Conn, MiB, closed_port, metric_sum, wait_for, wait_tcp_stalled
from ws_helpers import (BLOCK_ENTRY, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                        FrameParser, H2WSClient, Sender, WSConn, accept_for, check_rejection,
                        close_payload, encode_frame, proc_status, upgrade_request, ws_config,
                        ws_open, ws_route)

SIZES = [1, 125, 126, 65535, 65536, MiB]
HUB_B3 = [("x-device-class", "airtame-hub"), ("x-firmware-version", "3.8.0-b3")]
HUB_B2 = [("x-device-class", "airtame-hub"), ("x-firmware-version", "3.8.0-b2")]


def payload_for(opcode, n, seed=0):
    """|n| bytes: random binary, or random ASCII text (valid UTF-8)."""
    rnd = random.Random(n * 7919 + seed)
    if opcode == OP_TEXT:
        return "".join(rnd.choices(string.ascii_letters + string.digits, k=n)).encode()
    return rnd.randbytes(n)


def h2ws(factory_port, **kw):
    c = H2WSClient(factory_port, **kw)
    c.wait_connect_protocol()
    return c


def ws_metrics(s, route="ws"):
    m = s.metrics()
    return {
        "active": metric_sum(m, "sluice_websocket_tunnels_active", route=route),
        "success": metric_sum(m, "sluice_websocket_upgrades_total", route=route, result="success"),
        "rejected": metric_sum(m, "sluice_websocket_upgrades_total", route=route,
                               result="rejected"),
        "failed": metric_sum(m, "sluice_websocket_upgrades_total", route=route, result="failed"),
    }


def wait_active(s, n, route="ws", timeout=5.0):
    wait_for(lambda: ws_metrics(s, route)["active"] == n, timeout,
             what="sluice_websocket_tunnels_active{route=%s} == %d" % (route, n))


@pytest.fixture
def h2ws_factory():
    clients = []

    def make(port, **kw):
        c = h2ws(port, **kw)
        clients.append(c)
        return c
    yield make
    for c in clients:
        c.close()


# ---- echo ----------------------------------------------------------------------

@pytest.mark.timeout(15)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_h1_echo_sizes_with_websockets_client(start_sluice, opcode):
    s = start_sluice(ws_config())

    async def run():
        async with websockets.connect("ws://127.0.0.1:%d/ws" % s.port, max_size=2 * MiB,
                                      compression=None, open_timeout=5, close_timeout=5,
                                      ping_interval=None) as ws:
            for n in SIZES:
                data = payload_for(opcode, n)
                msg = data.decode() if opcode == OP_TEXT else data
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), 10)
                assert type(got) is type(msg) and got == msg, "size %d: echo differs" % n
        assert ws.close_code == 1000
    asyncio.run(run())
    m = ws_metrics(s)
    assert m["success"] == 1
    wait_active(s, 0)


@pytest.mark.timeout(15)
def test_h1_fragments_and_ping_with_websockets_client(start_sluice):
    s = start_sluice(ws_config())

    async def run():
        async with websockets.connect("ws://127.0.0.1:%d/ws" % s.port, max_size=2 * MiB,
                                      compression=None, open_timeout=5, close_timeout=5,
                                      ping_interval=None) as ws:
            parts = ["hello ", "fragmented ", "x" * 70000, " world"]
            await ws.send(parts)  # an iterable: one message in continuation frames
            assert await asyncio.wait_for(ws.recv(), 10) == "".join(parts)
            bparts = [os.urandom(n) for n in (1, 126, 65536, 3)]
            await ws.send(bparts)
            assert await asyncio.wait_for(ws.recv(), 10) == b"".join(bparts)
            for i in range(3):
                pong = await ws.ping(b"ping-%d" % i)
                await asyncio.wait_for(pong, 5)
    asyncio.run(run())


@pytest.mark.timeout(15)
def test_h1_raw_frames_pass_unchanged(start_sluice):
    """Frame by frame on a raw socket: fragments, a ping between them, the
    pong and the echoed fragments come back as the origin wrote them."""
    s = start_sluice(ws_config())
    with ws_open(s.port) as c:
        c.send(encode_frame(b"hel", OP_TEXT, fin=False) + encode_frame(b"lo ", OP_CONT, fin=False)
               + encode_frame(b"p1", OP_PING) + encode_frame(b"world", OP_CONT, fin=True))
        got = [c.recv_frame(5) for _ in range(4)]
        assert [(f.fin, f.opcode, f.payload) for f in got] == [
            (False, OP_TEXT, b"hel"), (False, OP_CONT, b"lo "), (True, OP_PONG, b"p1"),
            (True, OP_CONT, b"world")]
        for n in SIZES:
            data = payload_for(OP_BINARY, n, 3)
            assert c.echo(data, fragment=40000) == data
        f = c.close_handshake(1000)
        assert f is not None and f.close_code == 1000
        assert c.wait_closed(3)


@pytest.mark.timeout(15)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
def test_h2_echo_sizes(start_sluice, h2ws_factory, opcode):
    s = start_sluice(ws_config())
    c = h2ws_factory(s.port)
    sid = c.open_ws("/ws")
    st = c.streams[sid]
    assert st.status == 200, st
    assert st.header("sec-websocket-accept") is None, "the accept value belongs to sluice's hop"
    for n in SIZES:
        data = payload_for(opcode, n, 1)
        assert c.echo(sid, data, opcode, timeout=10) == data, "size %d" % n
    f = c.close_ws(sid)
    assert f is not None and f.close_code == 1000
    c.wait(sid, 5)
    assert ws_metrics(s)["success"] == 1
    wait_active(s, 0)
    assert c.ping_ok(), "the h2 connection outlives its tunnel"


@pytest.mark.timeout(15)
def test_h2_fragments_and_ping(start_sluice, h2ws_factory):
    s = start_sluice(ws_config())
    c = h2ws_factory(s.port)
    sid = c.open_ws("/ws")
    c.send_body(sid, encode_frame(b"hel", OP_TEXT, fin=False) + encode_frame(b"lo ", OP_CONT, False)
                + encode_frame(b"p1", OP_PING) + encode_frame(b"world", OP_CONT, True),
                end_stream=False)
    got = [c.recv_frame(sid, 5) for _ in range(4)]
    assert [(f.fin, f.opcode, f.payload) for f in got] == [
        (False, OP_TEXT, b"hel"), (False, OP_CONT, b"lo "), (True, OP_PONG, b"p1"),
        (True, OP_CONT, b"world")]
    for n in SIZES:
        data = payload_for(OP_TEXT, n, 2)
        assert c.echo(sid, data, OP_TEXT, timeout=10, fragment=30000) == data
    for i in range(3):
        c.send_ws(sid, b"ping-%d" % i, OP_PING)
        f = c.recv_frame(sid, 5)
        assert (f.opcode, f.payload) == (OP_PONG, b"ping-%d" % i)
    assert c.close_ws(sid).close_code == 1000


@pytest.mark.timeout(15)
def test_h2_many_tunnels_on_one_connection(start_sluice, h2ws_factory):
    """20 tunnels multiplexed on one connection, each echoing its own data,
    sends interleaved across streams."""
    s = start_sluice(ws_config())
    c = h2ws_factory(s.port)
    sids = [c.open_ws("/ws", wait=False) for _ in range(20)]
    for sid in sids:
        assert c.wait_head(sid, 5).status == 200
    wait_active(s, 20)
    msgs = {sid: [b"stream %d message %d " % (sid, k) + os.urandom(k * 9000) for k in range(4)]
            for sid in sids}
    for k in range(4):
        for sid in sids:
            c.send_message(sid, msgs[sid][k], fragment=5000 if k == 3 else None)
    for sid in sids:
        for k in range(4):
            op, data = c.recv_message(sid, 10)
            assert op == OP_BINARY and data == msgs[sid][k], "stream %d message %d" % (sid, k)
    for sid in sids:
        c.send_ws(sid, close_payload(1000), OP_CLOSE)
    for sid in sids:
        f, _ = c.expect_close(sid, 5)
        assert f is not None and f.close_code == 1000
    wait_active(s, 0)
    assert ws_metrics(s)["success"] == 20


@pytest.mark.timeout(15)
def test_subprotocol_is_negotiated_end_to_end(start_sluice, h2ws_factory):
    """Sec-WebSocket-Protocol is the origin's to choose: the client's offer
    reaches it and its answer comes back, on h1 and on h2."""
    s = start_sluice(ws_config())

    async def run():
        async with websockets.connect("ws://127.0.0.1:%d/ws" % s.port, subprotocols=["chat.v2"],
                                      compression=None, open_timeout=5, close_timeout=5,
                                      ping_interval=None) as ws:
            assert ws.subprotocol == "chat.v2"
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "hi"
    asyncio.run(run())
    c = h2ws_factory(s.port)
    sid = c.open_ws(headers=[("sec-websocket-protocol", "chat.v2, chat.v1")])
    assert c.streams[sid].header("sec-websocket-protocol") == "chat.v2"
    assert c.echo(sid, b"hi") == b"hi"


@pytest.mark.timeout(15)
def test_client_vanishing_releases_tunnels(start_sluice, upstream):
    """Clients that drop their connections without a close handshake (h1
    sockets, an h2 connection carrying several tunnels): every tunnel is
    torn down, the gauge returns to 0 and the origin's connections close."""
    s = start_sluice(ws_config(ws=ws_route(concurrency={"max": 8})))
    h1 = [ws_open(s.port) for _ in range(3)]
    c = h2ws(s.port)
    sids = [c.open_ws() for _ in range(5)]
    for w in h1:
        assert w.echo(b"x") == b"x"
    for sid in sids:
        assert c.echo(sid, b"y") == b"y"
    wait_active(s, 8)
    for w in h1:
        w.close()
    c.sock.close()  # no GOAWAY, no RST_STREAM: the TCP connection just goes
    wait_active(s, 0)
    wait_for(lambda: upstream.stats()["open_connections"] <= 1, 5,
             what="the origin's tunnel connections to close")
    # The concurrency slots came back with them.
    more = [ws_open(s.port) for _ in range(8)]
    for w in more:
        w.close()


@pytest.mark.timeout(15)
def test_tunnels_over_tls(start_sluice, tls_cert):
    """The same tunnels behind a TLS listener: an upgrade on ALPN
    http/1.1, and RFC 8441 on ALPN h2."""
    cfg = ws_config()
    cfg["listeners"][0]["tls"] = {"certificate": tls_cert.ecdsa.cert,
                                  "private_key": tls_cert.ecdsa.key}
    s = start_sluice(cfg)
    big = payload_for(OP_BINARY, MiB, 8)
    with ws_open(s.port, tls=tls_cert.ecdsa.client_context(alpn=("http/1.1",))) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        assert c.echo(big) == big and c.echo("t\u00e9xt", OP_TEXT) == "t\u00e9xt".encode()
        assert c.close_handshake().close_code == 1000
    h = H2WSClient(s.port, tls=tls_cert.ecdsa.client_context())
    try:
        h.wait_connect_protocol()
        sid = h.open_ws()
        assert h.streams[sid].status == 200
        assert h.echo(sid, big) == big
        assert h.close_ws(sid).close_code == 1000
    finally:
        h.close()
    assert ws_metrics(s)["success"] == 2


# ---- handshake -------------------------------------------------------------------

@pytest.mark.timeout(15)
@pytest.mark.parametrize("kw,status,error", [
    ({"method": "POST"}, 400, "websocket_needs_get"),
    ({"key": None}, 400, "bad_websocket_key"),
    ({"key": "c2hvcnQ="}, 400, "bad_websocket_key"),            # base64 of 5 bytes
    ({"key": "not base64 at all, sorry!"}, 400, "bad_websocket_key"),
    ({"version": "8"}, 426, "websocket_version_unsupported"),
    ({"version": None}, 426, "websocket_version_unsupported"),
], ids=["post", "no-key", "short-key", "bad-key", "version-8", "no-version"])
def test_h1_handshake_validation(start_sluice, upstream, kw, status, error):
    """RFC 6455 §4.2.1: a bad handshake is answered by sluice, never
    forwarded; an unsupported version gets 426 naming version 13."""
    s = start_sluice(ws_config())
    with WSConn(s.port, timeout=5) as c:
        fields = {"key": "dGhlIHNhbXBsZSBub25jZQ==", **kw}
        key = fields.pop("key")
        c.send(upgrade_request("/ws", key=key, **fields))
        r = c.read_response()
        assert r.status == status, r
        assert r.json()["error"] == error, r.body
        if status == 426:
            assert r.header("sec-websocket-version") == "13", r.headers
        assert r.header("upgrade") is None
        assert c.wait_closed(3), "the connection must close after a refused upgrade"
    assert upstream.seen("/ws") == 0, "a bad handshake reached the upstream"
    m = ws_metrics(s)
    assert m["active"] == 0 and m["success"] == 0


@pytest.mark.timeout(15)
def test_h1_upgrade_h2c_is_never_forwarded(start_sluice, upstream):
    """Upgrade: h2c (RFC 7540 §3.2, gone in RFC 9113) is hop-by-hop: the
    origin sees a plain request without Upgrade or HTTP2-Settings, and the
    client gets a plain answer, never a 101."""
    s = start_sluice(ws_config())
    with H1Conn(s.port, timeout=5) as c:
        r = c.request("GET", "/anything", [("Connection", "Upgrade, HTTP2-Settings"),
                                           ("Upgrade", "h2c"),
                                           ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")])
        assert r.status == 200, r
        seen = r.json()["headers"]
        for h in ("upgrade", "http2-settings", "connection"):
            assert h not in seen, "%s forwarded: %r" % (h, seen)
        assert r.header("upgrade") is None
    # Same with websocket as the path: a non-websocket Upgrade is not a tunnel.
    with H1Conn(s.port, timeout=5) as c:
        r = c.request("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "h2c")])
        assert r.status == 200 and "upgrade" not in r.json()["headers"], r
    assert ws_metrics(s)["success"] == 0


@pytest.mark.timeout(15)
def test_h1_upstream_refusing_the_upgrade_is_passed_through(start_sluice, upstream):
    """A non-101 answer to an upgrade goes back as it is, and the connection
    does not become a tunnel (it closes after the answer)."""
    s = start_sluice(ws_config(ws=ws_route(prefix="/")))
    with WSConn(s.port, timeout=5) as c:
        r = c.upgrade("/status/403")
        assert r.status == 403, r
        assert r.json() == {"status": 403, "from": "upstream"}
        assert r.header("sec-websocket-accept") is None and r.header("upgrade") is None
        # Whatever the client sends now is not tunnelled to anyone.
        try:
            c.send(encode_frame(b"anyone there?"))
        except OSError:
            pass
        assert c.wait_closed(3)
        assert c.buf == b"", "bytes after a refused upgrade: %r" % c.buf[:200]
    m = ws_metrics(s)
    assert (m["active"], m["success"], m["failed"]) == (0, 0, 1), m
    assert upstream.stats()["ws_messages"] == 0


@pytest.mark.timeout(15)
def test_h2_upstream_refusing_the_upgrade_is_passed_through(start_sluice, upstream,
                                                            h2ws_factory):
    s = start_sluice(ws_config(ws=ws_route(prefix="/")))
    c = h2ws_factory(s.port)
    sid = c.open_ws("/status/403")
    st = c.wait(sid, 5)
    assert st.status == 403 and st.json() == {"status": 403, "from": "upstream"}, st
    m = ws_metrics(s)
    assert (m["active"], m["success"], m["failed"]) == (0, 0, 1), m
    assert c.ping_ok()


@pytest.mark.timeout(15)
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_upgrade_to_an_unreachable_upstream(start_sluice, h2ws_factory, proto):
    """A route whose upstream refuses connections: 502 with sluice's JSON
    body, no tunnel."""
    cfg = ws_config(ws=ws_route(name="down", prefix="/ws"))
    cfg["routes"][0]["upstream"] = "down"
    cfg["upstreams"]["down"] = {"address": "127.0.0.1:%d" % closed_port(),
                                "timeouts": {"connect": "1s"}}
    s = start_sluice(cfg)
    if proto == "h1":
        with WSConn(s.port, timeout=5) as c:
            r = c.upgrade("/ws")
            status, body, ctype = r.status, r.body, r.header("content-type")
            assert c.wait_closed(3)
    else:
        c = h2ws_factory(s.port)
        st = c.wait(c.open_ws("/ws"), 5)
        status, body, ctype = st.status, st.body, st.header("content-type")
    assert status == 502, (status, body)
    assert ctype == "application/json"
    assert json.loads(body)["error"] == "upstream_connect_failed"
    m = ws_metrics(s, "down")
    assert m["active"] == 0 and m["success"] == 0


@pytest.mark.timeout(15)
def test_h2_extended_connect_validation(start_sluice, upstream, h2ws_factory):
    """RFC 8441 on sluice's side: another :protocol is not tunnelled (501),
    a WebSocket version other than 13 gets 426 naming 13; none of it
    reaches the upstream, and the connection serves a good one after."""
    s = start_sluice(ws_config())
    c = h2ws_factory(s.port)
    st = c.wait(c.open_ws("/ws", protocol="connect-udp"), 5)
    assert st.status == 501, st
    st = c.wait(c.open_ws("/ws", version="8"), 5)
    assert st.status == 426 and st.header("sec-websocket-version") == "13", st.headers
    assert st.json()["error"] == "websocket_version_unsupported"
    assert upstream.seen("/ws") == 0
    sid = c.open_ws("/ws", version=None)  # optional on h2: sluice speaks 13 upstream
    assert c.streams[sid].status == 200
    assert c.echo(sid, b"ok") == b"ok"
    assert upstream.seen("/ws") == 1


# ---- admission ---------------------------------------------------------------------

@pytest.mark.timeout(15)
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_concurrency_caps_open_tunnels(start_sluice, upstream, h2ws_factory, proto):
    """Open tunnels count against the route's concurrency while they are
    open: with max 2, the third upgrade is refused 429 (the answer to the
    upgrade, or the stream's answer), and once one closes a new one is let
    in."""
    s = start_sluice(ws_config(ws=ws_route(concurrency={"max": 2})))
    if proto == "h1":
        a, b = ws_open(s.port), ws_open(s.port)
        wait_active(s, 2)
        with WSConn(s.port, timeout=5) as c:
            r = c.upgrade("/ws")
            check_rejection(r.status, r.header, r.body, 429, "concurrency_limited",
                            "ws/concurrency")
            assert c.wait_closed(3)
        assert a.echo(b"still open") == b"still open"
        assert a.close_handshake().close_code == 1000
        a.close()
        wait_active(s, 1)
        d = ws_open(s.port)
        assert d.echo(b"admitted") == b"admitted" and b.echo(b"b") == b"b"
        d.close()
        b.close()
    else:
        c = h2ws_factory(s.port)
        sa, sb = c.open_ws(), c.open_ws()
        assert c.streams[sa].status == 200 and c.streams[sb].status == 200
        wait_active(s, 2)
        st = c.wait(c.open_ws(), 5)
        check_rejection(st.status, st.header, st.body, 429, "concurrency_limited",
                        "ws/concurrency")
        assert c.echo(sa, b"still open") == b"still open"
        assert c.close_ws(sa).close_code == 1000
        c.wait(sa, 5)
        wait_active(s, 1)
        sd = c.open_ws()
        assert c.streams[sd].status == 200
        assert c.echo(sd, b"admitted") == b"admitted" and c.echo(sb, b"b") == b"b"
    m = ws_metrics(s)
    assert (m["success"], m["rejected"]) == (3, 1), m
    assert metric_sum(s.metrics(), "sluice_rejections_total", route="ws",
                      reason="concurrency") == 1
    wait_active(s, 0 if proto == "h1" else 2)
    assert upstream.stats()["paths"].get("/ws") == 3


@pytest.mark.timeout(15)
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_rate_limit_applies_to_upgrades(start_sluice, upstream, h2ws_factory, proto):
    """Upgrades spend the route's rate-limit quota like requests: burst 2,
    then 429 with the limit's policy; another client address still gets in,
    and a refused upgrade does not reach the upstream."""
    limit = {"key": "client_ip", "rate": "1/m", "burst": 2}
    s = start_sluice(ws_config(ws=ws_route(rate_limits=[limit])))
    ip_a, ip_b = [("x-forwarded-for", "198.51.100.7")], [("x-forwarded-for", "198.51.100.8")]
    results = []
    if proto == "h1":
        for ip in (ip_a, ip_a, ip_a, ip_b):
            with WSConn(s.port, timeout=5) as c:
                r = c.upgrade("/ws", ip)
                results.append(r.status)
                if r.status == 101:
                    assert c.echo(b"x") == b"x"
                else:
                    check_rejection(r.status, r.header, r.body, 429, "rate_limited",
                                    "ws/client_ip")
    else:
        c = h2ws_factory(s.port)
        for ip in (ip_a, ip_a, ip_a, ip_b):
            sid = c.open_ws("/ws", ip)
            st = c.streams[sid]
            results.append(st.status)
            if st.status == 200:
                assert c.echo(sid, b"x") == b"x"
            else:
                c.wait(sid, 5)
                check_rejection(st.status, st.header, st.body, 429, "rate_limited",
                                "ws/client_ip")
    ok = 101 if proto == "h1" else 200
    assert results == [ok, ok, 429, ok], results
    m = ws_metrics(s)
    assert (m["success"], m["rejected"]) == (3, 1), m
    assert metric_sum(s.metrics(), "sluice_rejections_total", route="ws",
                      policy="ws/client_ip", reason="rate_limit") == 1
    assert upstream.seen("/ws") == 3


# ---- back-pressure -------------------------------------------------------------------

SLOW_MSG = 64 * 1024
SLOW_COUNT = 320  # 20 MiB


def slow_msg(i):
    return i.to_bytes(4, "big") * (SLOW_MSG // 4)


def watch_rss_until_stalled(pid, progress, stall_s=1.0, limit_s=8.0):
    """Samples VmRSS of |pid| every 50 ms until progress() stops growing
    for |stall_s| (or |limit_s| passes). Returns (peak KiB, last progress)."""
    peak = 0
    last, last_change = progress(), time.monotonic()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        peak = max(peak, proc_status(pid)["VmRSS"])
        p = progress()
        if p != last:
            last, last_change = p, time.monotonic()
        elif time.monotonic() - last_change >= stall_s:
            break
        time.sleep(0.05)
    return peak, last


@pytest.mark.timeout(15)
def test_h1_slow_reader_does_not_grow_memory(start_sluice, upstream):
    """A client that sends 20 MiB to the echo without reading: sluice stops
    reading the origin (and so, through the origin, the client) instead of
    buffering; its RSS stays flat, and every byte arrives intact once the
    client reads again."""
    s = start_sluice(ws_config())
    c = ws_open(s.port, rcvbuf=64 * 1024, sndbuf=64 * 1024)
    for i in range(4):  # warm the chunk caches and the upstream connection
        assert c.echo(slow_msg(i)) == slow_msg(i)
    before = proc_status(s.pid)["VmRSS"]
    out = c.sock.dup()
    out.settimeout(30)
    sender = Sender(out, (encode_frame(slow_msg(i)) for i in range(SLOW_COUNT)))
    sender.start()
    peak, sent = watch_rss_until_stalled(s.pid, lambda: sender.sent)
    total = SLOW_COUNT * (SLOW_MSG + 14)
    echoed = upstream.stats()["ws_messages"] - 4
    print("slow reader: sent %d of %d bytes before stalling, %d messages echoed; "
          "RSS %d -> peak %d KiB" % (sent, total, echoed, before, peak))
    # Megabytes of echo are in flight towards the client (the upstream's
    # count above); a sluice that buffered them would grow by as much.
    assert peak - before < 8 * 1024, "RSS grew by %d KiB with a slow reader" % (peak - before)
    for i in range(SLOW_COUNT):
        msg = c.recv_message(10)
        assert msg == (OP_BINARY, slow_msg(i)), "message %d" % i
    assert sender.finish(10) == total
    assert c.close_handshake().close_code == 1000
    out.close()
    c.close()


@pytest.mark.timeout(15)
def test_h2_slow_reader_does_not_grow_memory(start_sluice, upstream):
    """The HTTP/2 form of a slow reader: the client keeps reading the socket
    but acknowledges no DATA, so sluice's flow-control window towards it
    closes after 64 KiB. sluice must then stop reading the origin and stop
    acknowledging the client's DATA, so the client's sending stalls too;
    RSS stays flat and everything arrives once the client acknowledges."""
    s = start_sluice(ws_config())
    c = H2WSClient(s.port, auto_ack=False)
    try:
        c.wait_connect_protocol()
        sid = c.open_ws()
        c.auto_ack = True
        for i in range(4):
            assert c.echo(sid, slow_msg(i)) == slow_msg(i)
        c.auto_ack = False
        before = proc_status(s.pid)["VmRSS"]
        data = b"".join(encode_frame(slow_msg(i)) for i in range(SLOW_COUNT))
        st = c.streams[sid]
        off, peak = 0, before
        acking = False
        last_progress = time.monotonic()
        got = []
        deadline = time.monotonic() + 12
        while len(got) < SLOW_COUNT:
            assert time.monotonic() < deadline, "h2 slow reader: %d sent, %d echoed" % (
                off, len(got))
            window = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size,
                         len(data) - off)
            if window > 0:
                c.conn.send_data(sid, data[off:off + window])
                c.flush()
                off += window
                last_progress = time.monotonic()
                continue
            c.pump(0.05)
            if acking:
                c.ack()
            else:
                peak = max(peak, proc_status(s.pid)["VmRSS"])
                if time.monotonic() - last_progress > 1.0:
                    stalled_at = off
                    acking = True  # the reader wakes up
                    c.ack()
            while st.frames:
                f = st.frames.popleft()
                assert (f.fin, f.opcode) == (True, OP_BINARY), f
                assert f.payload == slow_msg(len(got)), "message %d" % len(got)
                got.append(len(f.payload))
        print("h2 slow reader: stalled after %d of %d bytes sent; RSS %d -> peak %d KiB"
              % (stalled_at, len(data), before, peak))
        assert stalled_at < len(data), "the client's sending never stalled"
        assert peak - before < 8 * 1024, "RSS grew by %d KiB" % (peak - before)
        assert c.close_ws(sid).close_code == 1000
    finally:
        c.close()


# ---- idle timeout ------------------------------------------------------------------------

@pytest.mark.timeout(15)
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_idle_tunnel_is_closed_active_one_is_not(start_sluice, h2ws_factory, proto):
    """Route idle_timeout 1s: a tunnel with no traffic gets a close frame
    1001 and is closed within about a second; a tunnel with a message every
    250 ms stays open."""
    s = start_sluice(ws_config(ws=ws_route(idle_timeout="1s")))
    if proto == "h1":
        idle, active = ws_open(s.port), ws_open(s.port)
        echo = lambda i: active.echo(b"keepalive %d" % i, timeout=2)
        expect_close = lambda: idle.expect_close(4)
    else:
        c = h2ws_factory(s.port)
        sid_idle, sid_active = c.open_ws(), c.open_ws()
        echo = lambda i: c.echo(sid_active, b"keepalive %d" % i, timeout=2)
        expect_close = lambda: c.expect_close(sid_idle, 4)
    t0 = time.monotonic()
    closed_at = None
    result = None

    def watch_idle():
        nonlocal closed_at, result
        result = expect_close()
        closed_at = time.monotonic() - t0

    if proto == "h1":  # h1 tunnels are separate sockets: watch the idle one in a thread
        th = threading.Thread(target=watch_idle, daemon=True)
        th.start()
    i = 0
    while time.monotonic() - t0 < 3.0:
        assert echo(i) == b"keepalive %d" % i, "the active tunnel stopped echoing"
        i += 1
        if proto == "h2" and closed_at is None and c.streams[sid_idle].frames:
            watch_idle()
        time.sleep(0.25)  # paces the active tunnel while the idle one's real timeout runs
    if proto == "h1":
        th.join(5)
    elif closed_at is None:
        watch_idle()
    f, before = result
    assert before == [], before
    assert closed_at is not None and 0.8 <= closed_at <= 3.0, closed_at
    # Idle means between frames, so sluice can always say why it closes.
    assert f is not None and f.close_code == 1001, f
    if proto == "h1":
        assert idle.wait_closed(2)
        idle.close()
    else:
        c.wait(sid_idle, 2)
    assert echo(999) == b"keepalive 999"
    wait_active(s, 1)


# ---- emergency blocks ----------------------------------------------------------------------

def apply_block(s, cfg):
    cfg = dict(cfg, blocklist={"firmware": [dict(BLOCK_ENTRY)]})
    s.write_config(cfg)
    assert s.reload() == 1.0, "reload with the block failed"


@pytest.mark.timeout(15)
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_emergency_block_closes_only_matching_tunnels(start_sluice, h2ws_factory, proto):
    """SPEC section 4: a reload that adds a blocklist entry reaches open
    tunnels: the matching device's tunnel gets a close frame 1008 with the
    entry's reason and is closed; another firmware's tunnel keeps echoing;
    the blocked firmware's next upgrade is refused 403."""
    cfg = ws_config()
    s = start_sluice(cfg)
    if proto == "h1":
        blocked, other = ws_open(s.port, headers=HUB_B3), ws_open(s.port, headers=HUB_B2)
        echo_blocked = lambda: blocked.echo(b"b3")
        echo_other = lambda m: other.echo(m)
        expect_close = lambda: blocked.expect_close(5)
    else:
        c = h2ws_factory(s.port)
        sid_b, sid_o = c.open_ws(headers=HUB_B3), c.open_ws(headers=HUB_B2)
        echo_blocked = lambda: c.echo(sid_b, b"b3")
        echo_other = lambda m: c.echo(sid_o, m)
        expect_close = lambda: c.expect_close(sid_b, 5)
    assert echo_blocked() == b"b3" and echo_other(b"b2") == b"b2"
    wait_active(s, 2)

    apply_block(s, cfg)
    f, before = expect_close()
    assert before == [], before
    assert f is not None, "no close frame for the blocked device's tunnel"
    assert f.close_code == 1008 and "INC-2041" in f.close_reason, f
    if proto == "h1":
        assert blocked.wait_closed(3), "the blocked tunnel's connection stays open"
        blocked.close()
    else:
        st = c.wait(sid_b, 3)
        assert st.done
    for i in range(5):
        assert echo_other(b"still here %d" % i) == b"still here %d" % i
    wait_active(s, 1)

    # The blocked firmware cannot come back; the other still can.
    if proto == "h1":
        with WSConn(s.port, timeout=5) as n:
            r = n.upgrade("/ws", HUB_B3)
            check_rejection(r.status, r.header, r.body, 403, "blocked", "blocklist/firmware/0")
        ws_open(s.port, headers=HUB_B2).close()
        other.close()
    else:
        st = c.wait(c.open_ws(headers=HUB_B3), 5)
        check_rejection(st.status, st.header, st.body, 403, "blocked", "blocklist/firmware/0")
        assert c.streams[c.open_ws(headers=HUB_B2)].status == 200
    m = ws_metrics(s)
    assert m["rejected"] == 1, m
    assert metric_sum(s.metrics(), "sluice_rejections_total", policy="blocklist/firmware/0",
                      reason="blocklist") == 1


def tcp_wmem_max():
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * MiB


@pytest.mark.timeout(15)
def test_h1_block_close_frame_waits_for_the_frame_boundary(start_sluice, upstream):
    """The block lands while the origin is in the middle of streaming one
    big frame to a slow client: the client gets that frame complete, then a
    well-formed close frame 1008, then the end of the connection, and
    nothing else. The frame is larger than the most the kernel can buffer
    between sluice and the client (tcp_wmem max + 2 MiB), so sluice has
    surely not seen its end when the block lands."""
    cfg = ws_config()
    s = start_sluice(cfg)
    n = tcp_wmem_max() + 2 * MiB
    big = payload_for(OP_BINARY, n, 5)
    c = ws_open(s.port, headers=HUB_B3, rcvbuf=16384)
    try:
        out = c.sock.dup()
        out.settimeout(30)
        sender = Sender(out, [encode_frame(big)])
        sender.start()
        # Read the first 64 KiB of the echo, then stop reading.
        raw = bytearray()
        deadline = time.monotonic() + 10
        while len(raw) < 65536:
            c.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = c.sock.recv(65536 - len(raw))
            assert data, "closed before the echo"
            raw += data
        sender.finish(10)
        # every buffer on the way fills up: the client's receive queue holds
        # bytes sluice sent and stops moving
        wait_tcp_stalled(5.0, local_port=c.sock.getsockname()[1],
                         what="the echo to stall at the client")
        apply_block(s, cfg)
        deadline = time.monotonic() + 10
        while True:
            c.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = c.sock.recv(1 << 20)
            except ConnectionResetError:
                pytest.fail("connection reset after %d bytes, not closed" % len(raw))
            if not data:
                break
            raw += data
        out.close()
    finally:
        c.close()
    parser = FrameParser()
    frames = parser.feed(bytes(raw))
    assert not parser.buf, "%d bytes of a partial frame at the end" % len(parser.buf)
    assert len(frames) == 2, "frames: %r (%d bytes)" % (frames, len(raw))
    assert (frames[0].fin, frames[0].opcode) == (True, OP_BINARY)
    assert frames[0].payload == big, "the in-progress frame was cut or changed"
    assert frames[1].opcode == OP_CLOSE and frames[1].close_code == 1008, frames[1]
    assert "INC-2041" in frames[1].close_reason


@pytest.mark.timeout(15)
def test_h2_block_close_frame_waits_for_the_frame_boundary(start_sluice, upstream):
    """The same on an RFC 8441 stream, where the client's flow-control
    window (64 KiB, not acknowledged) holds the 1 MiB frame back: the block
    lands mid-frame for sure."""
    cfg = ws_config()
    s = start_sluice(cfg)
    big = payload_for(OP_BINARY, MiB, 6)
    c = H2WSClient(s.port, auto_ack=False)
    try:
        c.wait_connect_protocol()
        sid = c.open_ws(headers=HUB_B3)
        st = c.streams[sid]
        c.send_ws(sid, big)  # the client's window is sluice's to open: it does, upstream reads
        deadline = time.monotonic() + 10
        while st.parser.bytes_seen < 65535 - 9:
            assert time.monotonic() < deadline, "echo did not start"
            c.pump(0.1)
        # the echo held by the client's window backs up to the origin: sluice
        # stops reading it
        wait_tcp_stalled(5.0, remote_port=s.upstream_port, what="sluice to stop reading the echo")
        apply_block(s, cfg)
        c.auto_ack = True
        c.ack()
        f = c.recv_frame(sid, 10)
        assert f is not None and (f.fin, f.opcode) == (True, OP_BINARY), f
        assert f.payload == big, "the in-progress frame was cut or changed"
        f = c.recv_frame(sid, 5)
        assert f is not None and f.opcode == OP_CLOSE and f.close_code == 1008, f
        assert "INC-2041" in f.close_reason
        assert c.recv_frame(sid, 5) is None, "bytes after the close frame"
        assert c.ping_ok(), "the connection outlives the blocked stream"
    finally:
        c.close()


# ---- drain ----------------------------------------------------------------------------------

@pytest.mark.timeout(15)
def test_sigterm_closes_tunnels_with_1001(start_sluice):
    """SIGTERM: every open tunnel (h1 and h2) gets a close frame 1001 (going
    away) and sluice exits 0 well within drain_timeout (5 s here)."""
    s = start_sluice(ws_config())
    a = ws_open(s.port)
    c = h2ws(s.port)
    try:
        sid = c.open_ws()
        assert a.echo(b"a") == b"a" and c.echo(sid, b"c") == b"c"
        wait_active(s, 2)
        t0 = time.monotonic()
        s.send_signal(signal.SIGTERM)
        f, before = a.expect_close(5)
        assert before == [] and f is not None and f.close_code == 1001, (f, before)
        assert a.wait_closed(3)
        f, before = c.expect_close(sid, 5)
        assert before == [] and f is not None and f.close_code == 1001, (f, before)
        c.wait(sid, 3)
        rc = s.wait(5)
        elapsed = time.monotonic() - t0
        assert rc == 0, rc
        assert elapsed < 5.0, "drain took %.1fs with only tunnels open" % elapsed
        s.stop()  # checks stderr
    finally:
        a.close()
        c.close()


@pytest.mark.timeout(15)
def test_pending_block_close_survives_another_reload(start_sluice, upstream):
    """The close frame waits for a frame boundary; meanwhile on-call may
    reload again (here: the block is lifted, as a wrong one would be). The
    tunnel still closes as decided, and the close frame that finally goes
    out carries the block's reason, not the bytes of a configuration freed
    in between."""
    cfg = ws_config()
    s = start_sluice(cfg)
    big = payload_for(OP_BINARY, MiB, 7)
    c = H2WSClient(s.port, auto_ack=False)
    try:
        c.wait_connect_protocol()
        sid = c.open_ws(headers=HUB_B3)
        st = c.streams[sid]
        c.send_ws(sid, big)
        deadline = time.monotonic() + 10
        while st.parser.bytes_seen < 65535 - 9:
            assert time.monotonic() < deadline, "echo did not start"
            c.pump(0.1)
        wait_tcp_stalled(5.0, remote_port=s.upstream_port, what="sluice to stop reading the echo")
        apply_block(s, cfg)  # the close is now pending, mid-frame
        for _ in range(3):  # generations come and go while the client is slow
            s.write_config(cfg)
            assert s.reload() == 1.0
        # Gives the workers time to move to the newest generation and the
        # main thread to free the ones in between (then ASan would see a
        # read of the freed reason); nothing observable says when that is
        # done, so this sleep stays: it widens the window, no assertion
        # depends on its length.
        time.sleep(0.3)
        c.auto_ack = True
        c.ack()
        f = c.recv_frame(sid, 10)
        assert f is not None and f.payload == big, f
        f = c.recv_frame(sid, 5)
        assert f is not None and f.opcode == OP_CLOSE and f.close_code == 1008, f
        assert f.close_reason == "INC-2041", f
        assert c.recv_frame(sid, 5) is None
    finally:
        c.close()


@pytest.mark.timeout(15)
def test_long_block_reason_makes_a_valid_close_frame(start_sluice):
    """A close frame carries at most 123 bytes of reason, and the reason
    must be valid UTF-8 (RFC 6455 §5.5, §5.5.1): a long reason with
    non-ASCII characters is cut at a character boundary."""
    cfg = ws_config()
    s = start_sluice(cfg)
    reason = "INC-2041: " + "\u00e9" * 100  # 10 + 200 bytes: byte 123 is mid-character
    c = ws_open(s.port, headers=HUB_B3)
    try:
        assert c.echo(b"x") == b"x"
        s.write_config(dict(cfg, blocklist={"firmware": [dict(BLOCK_ENTRY, reason=reason)]}))
        assert s.reload() == 1.0
        f, _ = c.expect_close(5)  # FrameParser checks the length and the UTF-8
        assert f is not None and f.close_code == 1008, f
        assert len(f.payload) <= 125
        assert reason.startswith(f.close_reason) and len(f.close_reason) >= 60, f.close_reason
    finally:
        c.close()


class _SilentOrigin:
    """A WebSocket origin that answers one upgrade (101), records what the
    tunnel brings until EOF, and then keeps its socket open: it never
    closes on its own, so whoever ends the tunnel, it is not the origin."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.got = b""
        self.eof = threading.Event()
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        c, _ = self.lsock.accept()
        self.conns.append(c)
        head = b""
        while b"\r\n\r\n" not in head:
            head += c.recv(4096)
        head, _, rest = head.partition(b"\r\n\r\n")
        key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
               if ln.lower().startswith(b"sec-websocket-key:")][0].decode()
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                  % accept_for(key).encode())
        self.got = rest
        while True:
            d = c.recv(65536)
            if not d:
                break
            self.got += d
        self.eof.set()

    def close(self):
        for c in self.conns + [self.lsock]:
            c.close()


def test_h1_client_fin_ends_its_tunnel_without_waiting_for_the_origin(start_sluice):
    """An HTTP/1.1 client that closes its tunnel's TCP connection is done
    with it (RFC 6455 section 7.1.1): sluice delivers the client's last
    frame to the origin, then closes both sides at once, as at the origin's
    EOF. It does not pass the half-close on and wait for an origin that
    may never close (this one never does): the client reads its end of
    stream within 5 s, not when the 30 s idle timeout runs out."""
    origin = _SilentOrigin()
    cfg = ws_config()
    cfg["upstreams"]["identity"]["address"] = "127.0.0.1:%d" % origin.port
    cfg["listeners"][0]["timeouts"]["idle"] = "30s"
    s = start_sluice(cfg)
    c = ws_open(s.port)
    try:
        last = encode_frame(b"bye", OP_BINARY)
        c.sock.sendall(last)
        c.sock.shutdown(socket.SHUT_WR)
        c.sock.settimeout(5)
        assert c.sock.recv(65536) == b"", "sluice sent bytes after the client's FIN"
        assert origin.eof.wait(5), "the origin never saw the tunnel end"
        assert origin.got == last, origin.got
    finally:
        c.close()
        origin.close()


@pytest.mark.timeout(15)
def test_h2_end_stream_half_closes_the_tunnel_and_the_origin_still_answers(start_sluice,
                                                                           h2ws_factory):
    """Over HTTP/2 a client's END_STREAM ends its side of that stream only,
    and it still reads the stream (RFC 9113 section 5.1): sluice passes
    the half-close on to the origin and the origin's close frame still
    reaches the client. (An HTTP/1.1 client's FIN ends the whole tunnel:
    test_h1_client_fin_ends_its_tunnel_without_waiting_for_the_origin.)"""
    s = start_sluice(ws_config())
    c = h2ws_factory(s.port)
    sid = c.open_ws("/ws")
    c.send_ws(sid, close_payload(1000), OP_CLOSE)
    c.conn.end_stream(sid)  # with the close frame, before the origin's answer
    c.flush()
    f, _ = c.expect_close(sid, 5)
    assert f is not None, "the origin's close frame never came"
    assert f.close_code == 1000
    assert c.ping_ok(), "the h2 connection outlives its tunnel"
