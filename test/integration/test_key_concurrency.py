"""Per-key concurrency (issue 11): `concurrency: {max: N, key: device_id |
device_class | client_ip}` admits at most N requests and tunnels in flight
per key value, counted in a bounded table shared by every worker: one
tunnel per device over HTTP/1.1 Upgrade and RFC 8441, in-flight h1/h2
requests against a slow upstream, devices and addresses independent,
`missing_key`, a full table, a reload that keeps the count, and `sluice
check`'s FILE:LINE:COL errors."""
import json
import os

import pytest

from helpers import H1Conn, H2Client, build_request, metric_sum, run_cli, wait_for
from admission_helpers import admission_config, device_headers, h1_get, h2_get, route
from ws_helpers import Tunnels, WSConn, check_rejection, ws_config, ws_open, ws_route


def dev(d):
    return [("x-device-id", d)]


def active(s):
    return metric_sum(s.metrics(), "sluice_websocket_tunnels_active", route="ws")


def wait_active(s, n):
    wait_for(lambda: active(s) == n, 5, what="sluice_websocket_tunnels_active == %d" % n)


def rejections(s, r="ws"):
    return metric_sum(s.metrics(), "sluice_rejections_total", route=r, reason="concurrency")


OK = {"h1": 101, "h2": 200}


def refused_upgrade(s, headers, status, error):
    """An h1 upgrade refused |status| |error| by ws/concurrency."""
    with WSConn(s.port, timeout=5) as c:
        r = c.upgrade("/ws", headers)
        check_rejection(r.status, r.header, r.body, status, error, "ws/concurrency")


def close_then_admitted(s, conn, headers, left):
    """Closes tunnel |conn|; once |left| tunnels are open, one with
    |headers| is admitted in its place."""
    assert conn.close_handshake().close_code == 1000
    conn.close()
    wait_active(s, left)
    with ws_open(s.port, headers=headers) as c:
        assert c.echo(b"admitted") == b"admitted"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_one_tunnel_per_device(start_sluice, upstream, proto):
    s = start_sluice(ws_config(ws=ws_route(concurrency={"max": 1, "key": "device_id"})))
    t = Tunnels(s.port, proto)
    try:
        st, _, _, a = t.open(dev("d1"))
        assert st == OK[proto]
        wait_active(s, 1)
        # The same device again while its tunnel is open: refused.
        st, hdr, body, _ = t.open(dev("d1"))
        check_rejection(st, hdr, body, 429, "concurrency_limited", "ws/concurrency")
        # Another device has its own count.
        st, _, _, b = t.open(dev("d2"))
        assert st == OK[proto] and t.echo(b, b"d2") == b"d2"
        assert t.echo(a, b"still open") == b"still open"
        t.close(a)
        wait_active(s, 1)
        # Its slot came back with the close.
        st, _, _, a2 = t.open(dev("d1"))
        assert st == OK[proto] and t.echo(a2, b"again") == b"again"
        t.close(a2)
        t.close(b)
        wait_active(s, 0)
    finally:
        t.shut()
    assert rejections(s) == 1
    assert upstream.seen("/ws") == 3


def slow_h1(port, headers):
    """An h1 connection with a GET /slow in flight (not yet answered)."""
    c = H1Conn(port, timeout=10)
    c.send(build_request("GET", "/slow?ms=2000", headers))
    return c


@pytest.mark.timeout(20)
@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2"])
@pytest.mark.parametrize("key", ["device_id", "client_ip"])
def test_in_flight_requests_per_key(start_sluice, upstream, get, key):
    s = start_sluice(admission_config(routes=[route(concurrency={"max": 1, "key": key})]))
    mine = device_headers(ip="192.0.2.1", dev="d1")
    other = device_headers(ip="192.0.2.2", dev="d2")
    if get is h1_get:
        c = slow_h1(s.port, mine)
    else:
        c = H2Client(s.port, timeout=10)
        sid = c.start("GET", "/slow?ms=2000", [(k.lower(), v) for k, v in mine])
    try:
        wait_for(lambda: upstream.seen("/slow") == 1, 5, what="the slow request upstream")
        r = get(s.port, "/v1/a", mine)
        check_rejection(r.status, r.header, r.body, 429, "concurrency_limited",
                        "default/concurrency")
        assert get(s.port, "/v1/a", other).status == 200
        if key == "device_id" and get is h1_get:
            # /explain shows the key's count against its limit.
            status, _, body = s.admin_get("/explain?ip=192.0.2.1&path=/v1/a"
                                          "&header=x-device-id:d1")
            doc = json.loads(body)
            assert status == 200 and doc["verdict"]["status"] == 429, doc
            why = [p["why"] for p in doc["policies"] if p["policy"] == "default/concurrency"]
            assert why and why[0].startswith("1 in flight for this device_id, limit 1"), doc
        first = c.read_response() if get is h1_get else c.wait(sid, 10)
        assert first.status == 200
    finally:
        c.close()
    assert get(s.port, "/v1/a", mine).status == 200
    assert upstream.seen("/v1/a") == 2
    assert rejections(s, "default") == 1


@pytest.mark.timeout(20)
def test_missing_key(start_sluice, upstream):
    s = start_sluice(admission_config(routes=[
        route("deny", "/deny", concurrency={"max": 1, "key": "device_id", "missing_key": "deny"}),
        route("shared", "/slow",
              concurrency={"max": 1, "key": "device_id", "missing_key": "shared"}),
        route("skip", "/", concurrency={"max": 1, "key": "device_id"})]))
    r = h1_get(s.port, "/deny", [])
    assert r.status == 400 and r.header("retry-after") is None
    assert json.loads(r.body)["error"] == "missing_key"
    assert h1_get(s.port, "/deny", dev("d1")).status == 200
    # shared: every keyless request in one count, whatever its address.
    c = slow_h1(s.port, device_headers(ip="192.0.2.1"))
    try:
        wait_for(lambda: upstream.seen("/slow") == 1, 5, what="the slow request upstream")
        assert h1_get(s.port, "/slow?ms=1", device_headers(ip="192.0.2.9")).status == 429
        assert h1_get(s.port, "/slow?ms=1", dev("d1")).status == 200
        # skip (the default): keyless requests are not counted.
        assert [h1_get(s.port, "/", []).status for _ in range(2)] == [200, 200]
        assert c.read_response().status == 200
    finally:
        c.close()


@pytest.mark.timeout(20)
def test_full_table_refuses_new_keys(start_sluice):
    s = start_sluice(ws_config(ws=ws_route(
        concurrency={"max": 1, "key": "device_id", "max_keys": 2})))
    a, b = ws_open(s.port, headers=dev("a")), ws_open(s.port, headers=dev("b"))
    try:
        refused_upgrade(s, dev("c"), 503, "concurrency_table_full")
        close_then_admitted(s, a, dev("c"), 1)
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(20)
def test_reload_keeps_the_count(start_sluice):
    """A reload that changes `max` keeps the table: a tunnel admitted
    before it still counts, and its close releases into the same table."""
    cfg = ws_config(ws=ws_route(concurrency={"max": 1, "key": "device_id"}))
    s = start_sluice(cfg)
    a1 = ws_open(s.port, headers=dev("d1"))
    try:
        cfg["routes"][0]["concurrency"]["max"] = 2
        s.write_config(cfg)
        assert s.reload() == 1.0
        a2 = ws_open(s.port, headers=dev("d1"))
        refused_upgrade(s, dev("d1"), 429, "concurrency_limited")
        close_then_admitted(s, a1, dev("d1"), 1)
        a2.close()
    finally:
        a1.close()


def test_check_and_print(sluice_bin, tmp_path):
    path = os.path.join(str(tmp_path), "c.yaml")
    head = ('listeners:\n  - name: p\n    address: "127.0.0.1:1"\n'
            'upstreams:\n  u: { address: "127.0.0.1:2" }\n'
            'routes:\n  - name: d\n    upstream: u\n')
    with open(path, "w") as f:
        f.write(head + '    concurrency: { max: 1, key: devid }\n'
                '  - name: e\n    upstream: u\n'
                '    concurrency: { max: 1, key: client_ip, missing_key: deny }\n'
                '  - name: f\n    upstream: u\n    concurrency: { max: 1, max_keys: 5 }\n')
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    # Each mistake at its value's FILE:LINE:COL (columns counted in the text above).
    for want in ("9:33: key: expected one of client_ip",
                 "12:57: missing_key: every request has a client_ip key",
                 "15:38: max_keys: a limit keyed by route has one counter"):
        assert "%s:%s" % (path, want) in p.stderr, p.stderr
    assert p.returncode == 1
    with open(path, "w") as f:
        f.write(head + '    concurrency: { max: 1, key: device_id, missing_key: shared,'
                ' max_keys: 50 }\n')
    p = run_cli(["check", "-c", path, "--print"], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    assert ("concurrency:\n      max: 1\n      key: device_id\n      missing_key: shared\n"
            "      max_keys: 50\n") in p.stdout, p.stdout
