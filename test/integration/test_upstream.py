"""Upstream failures: refused, timeouts, resets, stale keep-alive connections.

sluice answers its own errors with a JSON body
{"error": ..., "policy": ..., "retry_after": N}, content-type
application/json and a retry-after header (SPEC §4); upstream errors it
merely relays (an upstream 503) are passed through untouched.
"""

import time

import pytest

from helpers import Blackhole, H1Conn, base_config, closed_port, curl, tcp_sockets, wait_for


def assert_sluice_error(status, headers, body, want):
    """|headers| is a lookup function name -> value or None."""
    import json
    assert status == want, "want %d, got %d: %r" % (want, status, body[:300])
    ctype = (headers("content-type") or "").split(";")[0].strip()
    assert ctype == "application/json"
    obj = json.loads(body)
    assert {"error", "policy", "retry_after"} <= obj.keys(), obj
    assert isinstance(obj["error"], str) and obj["error"]
    assert isinstance(obj["retry_after"], int) and obj["retry_after"] >= 0
    ra = headers("retry-after")
    assert ra is not None and ra.isdigit(), "retry-after header: %r" % ra
    return obj


def h1_get(port, path, timeout=10):
    with H1Conn(port) as c:
        r = c.request("GET", path, timeout=timeout)
        return r.status, r.header, r.body


def h2_get(port, path, timeout=10):
    from helpers import H2Client
    with H2Client(port) as c:
        st = c.get(path, timeout=timeout)
        return st.status, st.header, st.body


@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2c"])
def test_upstream_down_is_502_json(start_sluice, get):
    s = start_sluice(upstream=closed_port())
    status, hdr, body = get(s.port, "/v1/down")
    assert_sluice_error(status, hdr, body, 502)


@pytest.mark.timeout(40)
@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2c"])
def test_upstream_response_timeout_is_504_json(start_sluice, upstream, get):
    cfg = base_config()
    cfg["upstreams"]["identity"]["timeouts"] = {"connect": "1s", "response": "1s", "idle": "60s"}
    s = start_sluice(cfg)
    t0 = time.monotonic()
    status, hdr, body = get(s.port, "/slow?ms=3000")
    elapsed = time.monotonic() - t0
    assert_sluice_error(status, hdr, body, 504)
    assert 0.8 <= elapsed < 2.9, "504 after %.2fs with response: 1s" % elapsed
    status, _, _ = get(s.port, "/v1/after-timeout")
    assert status == 200


@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2c"])
def test_upstream_closing_without_answer_is_502(sluice, upstream, get):
    status, hdr, body = get(sluice.port, "/close")
    assert_sluice_error(status, hdr, body, 502)
    assert upstream.seen("/close") >= 1
    status, _, _ = get(sluice.port, "/v1/after-close")
    assert status == 200


def test_upstream_5xx_is_relayed_not_replaced(sluice):
    r = curl(sluice.url("/status/502"))
    assert r.status == 502
    assert r.json() == {"status": 502, "from": "upstream"}


@pytest.mark.timeout(60)
def test_idle_closed_upstream_connections_are_not_reused(start_sluice, upstream_factory):
    """The upstream closes keep-alive connections idle for 150 ms; every
    request after a pause must still succeed."""
    up = upstream_factory("--idle-close-ms", "150")
    s = start_sluice(upstream=up, workers=1)
    with H1Conn(s.port) as c:
        for i in range(6):
            r = c.request("GET", "/v1/stale%d" % i)
            assert r.status == 200, "request %d after an idle close: %r" % (i, r)
            # The origin closed its idle side: the pool's connection is dead.
            wait_for(lambda: not tcp_sockets(local_port=up.port), 10, interval=0.01,
                     what="the origin closing its idle connection")
    st = up.stats()
    assert st["connections"] - st["stats_connections"] >= 6, (
        "the upstream did not idle-close (test broken): %r" % st)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_stale_keepalive_race_is_retried(start_sluice, upstream_factory, method):
    """The upstream accepts a request on a connection idle >= 150 ms and
    closes it unanswered (as if its idle timer fired as the request left):
    sluice must retry an idempotent request on a fresh connection."""
    up = upstream_factory("--drop-stale-ms", "150")
    s = start_sluice(upstream=up, workers=1)
    with H1Conn(s.port) as c:
        for i in range(5):
            r = c.request(method, "/v1/race%d" % i)
            assert r.status == 200, "request %d: %r" % (i, r)
            # Not a synchronisation: the scenario is a connection idle
            # longer than the origin's 150 ms on its own clock.
            time.sleep(0.3)
    st = up.stats()
    assert st["stale_drops"] >= 1, "the race did not happen (test broken): %r" % st
    assert sum(v for k, v in st["paths"].items() if k.startswith("/v1/race")) == 5


def test_connect_timeout_is_bounded(start_sluice):
    """An upstream whose connects hang fails within the connect timeout
    (plus slack) with a 502 or 504 JSON answer."""
    hole = Blackhole()
    try:
        cfg = base_config()
        cfg["upstreams"]["identity"]["timeouts"] = {"connect": "1s", "response": "5s", "idle": "60s"}
        s = start_sluice(cfg, upstream=hole.port)
        t0 = time.monotonic()
        status, hdr, body = h1_get(s.port, "/v1/blackhole")
        elapsed = time.monotonic() - t0
        assert status in (502, 504), status
        assert_sluice_error(status, hdr, body, status)
        assert 0.8 <= elapsed < 3.5, "connect timeout 1s, answered after %.2fs" % elapsed
    finally:
        hole.close()


def h1_get_twice(port, path):
    """Two requests on one client connection: the second shows whether the
    upstream connection was kept (x-upstream-conn)."""
    with H1Conn(port) as c:
        a = c.request("GET", path)
        b = c.request("GET", path)
    return a, b


def h2_get_twice(port, path):
    from helpers import H2Client
    with H2Client(port) as c:
        return c.get(path), c.get(path)


@pytest.mark.parametrize("get_twice", [h1_get_twice, h2_get_twice], ids=["h1", "h2c"])
def test_response_fields_named_by_connection_are_dropped(start_sluice, upstream, get_twice):
    """RFC 9110 §7.6.1: a field the origin's Connection names is for the
    hop to sluice, whether it comes before or after the Connection field
    and in whatever case it is named; Connection itself is not relayed
    either, and an end-to-end field is. The origin's keep-alive token
    keeps the upstream connection."""
    s = start_sluice(workers=1)
    first, second = get_twice(s.port, "/hop")
    for r in (first, second):
        assert r.status == 200, r
        assert r.header("x-public") == "visible", r.headers
        assert r.header("x-internal") is None, "a Connection-named field reached the client: %r" % (
            r.headers,)
        assert r.header("x-other") is None, r.headers
        assert "x-internal" not in (r.header("connection") or "").lower(), r.headers
        assert "x-other" not in (r.header("connection") or "").lower(), r.headers
    assert first.header("x-upstream-conn") is not None, first.headers
    assert first.header("x-upstream-conn") == second.header("x-upstream-conn"), (
        "the upstream connection was not kept: %r / %r" % (first.headers, second.headers))
    assert upstream.seen("/hop") == 2


def test_request_fields_named_by_any_connection_field_are_dropped(sluice):
    """Every Connection field of a request counts (RFC 9110 §5.3: repeated
    fields are one list): the fields either names stay on the client's
    hop, before or after it, whatever their case."""
    with H1Conn(sluice.port) as c:
        r = c.request("GET", "/v1/hop", [("X-Secret-A", "1"), ("Connection", "x-secret-a"),
                                         ("Connection", "X-SECRET-B, keep-alive"),
                                         ("x-secret-b", "2"), ("X-Keep", "yes")])
    h = r.json()["headers"]
    assert r.status == 200 and h.get("x-keep") == "yes", (r, h)
    leaked = [n for n in h if n.startswith("x-secret") or "x-secret" in h[n].lower()]
    assert not leaked, "Connection-named request fields reached the origin: %r" % h
