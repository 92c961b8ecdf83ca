"""Admin listener (SPEC §5): health, readiness and Prometheus metrics."""

import pytest

from helpers import H1Conn, H2Client, metric_series, metric_sum, parse_prometheus, wait_for


def test_healthz_and_readyz(sluice):
    assert sluice.admin_get("/healthz")[0] == 200
    assert sluice.admin_get("/readyz")[0] == 200


def test_unknown_admin_path_is_404(sluice):
    assert sluice.admin_get("/no-such-thing")[0] == 404


def test_metrics_format(sluice):
    status, headers, body = sluice.admin_get("/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert text.endswith("\n")
    parse_prometheus(text, strict=True)  # every sample has a # TYPE family
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            if kind == "counter":
                assert name.endswith("_total"), "counter %s without _total" % name


def test_requests_total_by_route_protocol_code(sluice):
    with H1Conn(sluice.port) as c:
        assert c.request("GET", "/v1/m1").status == 200
        assert c.request("GET", "/status/404").status == 404
    with H2Client(sluice.port) as c:
        assert c.get("/v1/m2").status == 200
    m = sluice.metrics()
    ok = metric_series(m, "sluice_requests_total", route="default", code="200")
    assert ok, "no sluice_requests_total{route=default,code=200}: %r" % sorted(m)[:50]
    protocols = {labels["protocol"] for labels, v in ok if v >= 1}
    assert len(protocols) == 2, "h1 and h2 requests should differ in protocol: %r" % ok
    assert metric_sum(m, "sluice_requests_total", route="default", code="404") == 1
    assert metric_sum(m, "sluice_requests_total", route="default") == 3


def test_upstream_metrics(sluice):
    with H1Conn(sluice.port) as c:
        for i in range(3):
            assert c.request("GET", "/v1/u%d" % i).status == 200
    m = sluice.metrics()
    assert metric_sum(m, "sluice_upstream_requests_total", upstream="identity", code="200") == 3
    count = metric_sum(m, "sluice_upstream_request_duration_seconds_count", upstream="identity")
    assert count == 3
    buckets = sorted(((float(l["le"]), v) for l, v in
                      metric_series(m, "sluice_upstream_request_duration_seconds_bucket",
                                    upstream="identity")))
    assert buckets and buckets[-1][0] == float("inf") and buckets[-1][1] == count
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "buckets not cumulative"
    assert metric_sum(m, "sluice_circuit_breaker_state", upstream="identity") == 0


def test_connections_active(sluice):
    def active():
        return metric_sum(sluice.metrics(), "sluice_connections_active", listener="public")
    c1 = H1Conn(sluice.port)
    c2 = H2Client(sluice.port)
    try:
        assert c1.request("GET", "/v1/c1").status == 200
        assert c2.get("/v1/c2").status == 200
        m = sluice.metrics()
        assert active() == 2, metric_series(m, "sluice_connections_active")
        protos = {l["protocol"] for l, v in metric_series(m, "sluice_connections_active",
                                                           listener="public") if v > 0}
        assert len(protos) == 2, protos
    finally:
        c1.close()
        c2.close()
    wait_for(lambda: active() == 0, 3, what="sluice_connections_active back to 0")


def test_config_metrics(sluice):
    m = sluice.metrics()
    assert metric_sum(m, "sluice_config_generation") >= 1
    assert metric_sum(m, "sluice_config_last_reload_successful") == 1


@pytest.mark.timeout(30)
def test_reload_by_sighup_bumps_generation(sluice):
    gen = sluice.metric("sluice_config_generation")
    assert sluice.reload() == 1
    assert sluice.metric("sluice_config_generation") > gen
    with H1Conn(sluice.port) as c:
        assert c.request("GET", "/v1/after-reload").status == 200
