"""Policy state that on-call relies on (issue 8): what a reload does to
limiter buckets and concurrency counters when their tunables change, what a
refused request is charged, how limiter keys are compared, and whether the
breaker gauge and per-route counters tell the truth."""

import json
import os
import socket
import threading
import time

import pytest

from admission_helpers import KeepAlive, admission_config, check_h1_rejection, device_headers, route
from helpers import H1Conn, metric_sum, release_ports, wait_for


def post_reload(s):
    status, headers, body = s.admin_get("/reload", method="POST")
    assert headers.get("content-type", "").startswith("application/json"), headers
    return status, json.loads(body)


def apply(s, cfg):
    """Writes |cfg| and reloads it through POST /reload (success expected)."""
    s.write_config(cfg)
    release_ports(s)
    status, doc = post_reload(s)
    assert (status, doc["result"]) == (200, "success"), doc
    return doc


def get(s, path="/v1/connect", headers=()):
    with H1Conn(s.port) as c:
        return c.request("GET", path, headers)


# ---- reloads keep what a tunable change must not reset -------------------------


@pytest.mark.timeout(30)
def test_tightened_limit_keeps_exhausted_keys(start_sluice):
    """A key that used its burst is still refused after a reload that
    tightens the rate and the burst (it kept its consumed tokens); today's
    baseline gave every key a fresh full bucket. Rates are per hour, so no
    token comes back during the test (one every 6 minutes at least)."""
    def cfg(rate, burst):
        return admission_config(routes=[route(name="connect", rate_limits=[
            {"key": "client_ip", "rate": rate, "burst": burst}])])
    s = start_sluice(cfg("10/h", 5))
    h = device_headers(ip="203.0.113.7")
    assert [get(s, headers=h).status for _ in range(6)] == [200] * 5 + [429]

    apply(s, cfg("5/h", 3))
    r = get(s, headers=h)
    check_h1_rejection(r, 429, "rate_limited", "connect/client_ip", ra_min=1, ra_max=120)
    # The new burst applies to keys not seen before.
    fresh = device_headers(ip="203.0.113.8")
    assert [get(s, headers=fresh).status for _ in range(4)] == [200] * 3 + [429]
    # And a burst change alone (the same rate) keeps the key exhausted too.
    apply(s, cfg("5/h", 2))
    assert get(s, headers=h).status == 429
    assert get(s, headers=fresh).status == 429


@pytest.mark.timeout(40)
def test_concurrency_max_change_keeps_in_flight(start_sluice, upstream):
    """Three requests held in flight under max 3; a reload to max 4 admits
    exactly one more, not four (the counter with the three in flight is
    kept, and their releases go to it). The upstream holds each for 8 s, far
    longer than the reload and the two checks take."""
    def cfg(mx):
        c = admission_config(routes=[route(name="slowpoke", concurrency={"max": mx})])
        c["upstreams"]["identity"]["timeouts"]["response"] = "30s"
        return c
    s = start_sluice(cfg(3))
    results = []

    def slow(i, ms):
        with H1Conn(s.port, timeout=30) as c:
            results.append(c.request("GET", "/slow?ms=%d&i=%d" % (ms, i)).status)
    held = [threading.Thread(target=slow, args=(i, 8000), daemon=True) for i in range(3)]
    for t in held:
        t.start()
    wait_for(lambda: upstream.stats()["inflight"] == 3, 5, what="three slow requests upstream")
    assert get(s, "/slow?ms=1").status == 429

    apply(s, cfg(4))
    line = [l for l in s.logs() if l["msg"] == "configuration reloaded"][-1]
    assert "slowpoke/concurrency" in line.get("policies_retuned_names", ""), line
    fourth = threading.Thread(target=slow, args=(3, 8000), daemon=True)
    fourth.start()
    wait_for(lambda: upstream.stats()["inflight"] == 4, 5, what="the fourth request upstream")
    r = get(s, "/slow?ms=1")
    check_h1_rejection(r, 429, "concurrency_limited", "slowpoke/concurrency")
    for t in held + [fourth]:
        t.join(30)
    assert results == [200] * 4
    # Every release went to the kept counter (a release to another one
    # would abort): four slots are free again.
    wait_for(lambda: upstream.stats()["inflight"] == 0, 5, what="no request upstream")
    assert [get(s, "/slow?ms=1").status for _ in range(4)] == [200] * 4


# ---- accounting: whole keys ------------------------------------------------------


@pytest.mark.timeout(30)
def test_device_ids_differing_after_64_bytes_have_own_buckets(start_sluice):
    """Device ids (or bearer tokens) that share a long prefix are different
    clients: each gets its own bucket however far in they differ."""
    s = start_sluice(admission_config(routes=[route(name="connect", rate_limits=[
        {"key": "device_id", "rate": "1/h", "burst": 1}])]))
    prefix = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." * 3  # 111 bytes, as every JWT starts
    a, b = prefix + "device-a", prefix + "device-b"
    assert get(s, headers=device_headers(dev=a)).status == 200
    r = get(s, headers=device_headers(dev=a))
    check_h1_rejection(r, 429, "rate_limited", "connect/device_id", ra_max=120)
    assert get(s, headers=device_headers(dev=b)).status == 200, "shares a bucket with device a"
    assert get(s, headers=device_headers(dev=prefix)).status == 200


# ---- state visible to on-call ------------------------------------------------------


def breaker_gauge(s):
    return s.metric("sluice_circuit_breaker_state", upstream="identity")


@pytest.mark.timeout(30)
def test_breaker_gauge_true_at_scrape_time(start_sluice, upstream):
    """sluice_circuit_breaker_state is the breaker's state when scraped: 1
    as soon as requests are refused with circuit_open (no second of lag), 2
    (half-open) once open_for has passed, 0 once a probe closed it."""
    open_for = 1.5
    s = start_sluice(admission_config(breaker={
        "consecutive_failures": 3, "open_for": "1500ms", "half_open_probes": 1,
        "recovery_ramp": "0s"}))
    assert breaker_gauge(s) == 0
    with KeepAlive(s.port) as ka:
        assert ka.request("/status/500").status == 500
        assert ka.request("/status/500").status == 500
        before_trip = time.monotonic()  # the third failure opens it after this
        assert ka.request("/status/500").status == 500
        r = ka.request("/v1/x")
        check_h1_rejection(r, 503, "circuit_open", "upstream/identity", 1, 3)
        assert breaker_gauge(s) == 1, "refusing with circuit_open but the gauge says otherwise"
        # Half-open after open_for, without any request making it so.
        wait_for(lambda: breaker_gauge(s) != 1, open_for + 3, interval=0.02,
                 what="the gauge to leave 1")
        seen = time.monotonic()
        assert breaker_gauge(s) == 2
        assert seen - before_trip >= open_for, "half-open %.3f s after the trip" % (seen - before_trip)
        # The probe succeeds: closed, at once.
        assert ka.request("/v1/probe").status == 200
        assert breaker_gauge(s) == 0
    assert upstream.seen("/v1/x") == 0


@pytest.mark.timeout(60)
def test_renamed_routes_counted_under_their_own_label(start_sluice):
    """Reload after reload renames the route (same layout, so a new snapshot
    tends to reuse the memory of a retired one): every request is counted
    under the name of the route that answered it, never under a name a
    previous snapshot had at the same address. One worker, so every request
    meets the same per-thread caches; ASan's quarantine is off so that an
    ASan build reuses freed memory as the release build does."""
    def cfg(i):
        return admission_config(routes=[route(name="route%02d" % i, prefix="/")])
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:halt_on_error=1:quarantine_size_mb=0"
    s = start_sluice(cfg(0), workers=1, env=env)
    rounds = 12
    for i in range(rounds):
        if i:
            apply(s, cfg(i))
        for _ in range(3):
            assert get(s, "/v1/x").status == 200
        m = s.metrics()
        got = {n: metric_sum(m, "sluice_requests_total", route="route%02d" % n, code="200")
               for n in range(i + 1)}
        assert got == {n: 3 for n in range(i + 1)}, "round %d: %r" % (i, got)


@pytest.mark.timeout(30)
def test_retuned_breaker_stays_open(start_sluice, upstream):
    """On-call changes the breaker's settings while it is open (a longer
    open_for, another threshold): the breaker stays open, it does not come
    back closed and let traffic through to the broken origin."""
    def cfg(failures, open_for):
        return admission_config(breaker={"consecutive_failures": failures, "open_for": open_for,
                                         "half_open_probes": 1, "recovery_ramp": "0s"})
    s = start_sluice(cfg(3, "20s"))
    with KeepAlive(s.port) as ka:
        assert [ka.request("/status/500").status for _ in range(3)] == [500] * 3
        check_h1_rejection(ka.request("/v1/x"), 503, "circuit_open", "upstream/identity", 1, 30)
    apply(s, cfg(5, "30s"))
    line = [l for l in s.logs() if l["msg"] == "configuration reloaded"][-1]
    assert "identity/breaker" in line.get("policies_retuned_names", ""), line
    r = get(s, "/v1/x")
    check_h1_rejection(r, 503, "circuit_open", "upstream/identity", 1, 30)
    assert breaker_gauge(s) == 1
    assert upstream.seen("/v1/x") == 0


def connect_and_get(port):
    """The status code, or None when the connection was closed before any
    answer (refused at accept by the connection-rate limit)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        c.sendall(b"GET /v1/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1]) if data else None
    finally:
        c.close()


@pytest.mark.timeout(30)
def test_tightened_connect_rate_keeps_exhausted_address(start_sluice):
    """The listener's connection-rate limit (sibling of the route limits):
    an address that used its burst is still refused at accept after a
    reload that tightens per_ip and burst."""
    def cfg(rate, burst):
        c = admission_config()
        c["listeners"][0]["connect_rate"] = {"per_ip": rate, "burst": burst}
        return c
    s = start_sluice(cfg("10/h", 3))
    assert [connect_and_get(s.port) for _ in range(4)] == [200, 200, 200, None]
    apply(s, cfg("5/h", 2))
    assert connect_and_get(s.port) is None
    assert s.metric("sluice_rejections_total", policy="public/connect_rate",
                    reason="connect_rate") == 2
