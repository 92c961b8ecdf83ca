"""The last observability items of issue 14: the client-side request
duration histogram, the upstream pool and queue gauges, and the body bytes
of each exchange in the access log.

Every wait is on a metric or a log line (wait_for); the only time spent on
purpose is the origin's /slow, which keeps an exchange in flight while the
gauges are read."""
import json

from admission_helpers import check_rejection
from helpers import (H1Conn, H2Client, H2Stream, base_config, build_request, metric_series,
                     random_bytes, wait_for)
from test_access_log import access_lines
from ws_helpers import ws_config, ws_open

HIST = "sluice_request_duration_seconds"
LE_ORDER = ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
            "2.5", "5", "10", "+Inf"]


def limited_config(**top):
    """The catch-all route plus "limited" on /lim: one request an hour per
    client, after a burst of 2."""
    cfg = base_config(**top)
    cfg["routes"] = [
        {"name": "limited", "match": {"path_prefix": "/lim"}, "upstream": "identity",
         "rate_limits": [{"key": "client_ip", "rate": "1/h", "burst": 2}]},
    ] + cfg["routes"]
    return cfg


def hist_count(m, route, protocol):
    return sum(v for _, v in metric_series(m, HIST + "_count", route=route, protocol=protocol))


def requests(m, route, protocol):
    return sum(v for _, v in metric_series(m, "sluice_requests_total", route=route,
                                           protocol=protocol))


def check_buckets(m, route, protocol):
    """The series' buckets are cumulative, every bound is there, and +Inf is
    its _count. Returns {le: count}."""
    b = {ls["le"]: v for ls, v in metric_series(m, HIST + "_bucket", route=route,
                                                 protocol=protocol)}
    assert sorted(b, key=LE_ORDER.index) == LE_ORDER, b
    counts = [b[le] for le in LE_ORDER]
    assert counts == sorted(counts), b  # cumulative: never decreasing
    assert b["+Inf"] == hist_count(m, route, protocol)
    return b


def test_duration_counts_every_exchange_over_h1_and_h2(start_sluice):
    s = start_sluice(limited_config())
    n1, n2 = 7, 9
    with H1Conn(s.port) as c:
        for i in range(n1):
            assert c.request("GET", "/a%d" % i).status == 200
        # Two admitted, the third refused by the rate limit: all three counted.
        for i in range(3):
            r = c.request("GET", "/lim/%d" % i)
            if i < 2:
                assert r.status == 200
            else:
                check_rejection(r.status, r.header, r.body, 429, "rate_limited",
                                "limited/client_ip")
        # One the origin takes at least 300 ms over.
        assert c.request("GET", "/slow?ms=300").status == 200
    with H2Client(s.port) as c:
        for st in c.wait_all([c.start("GET", "/b%d" % i) for i in range(n2)]):
            assert st.status == 200

    def settled():
        m = s.metrics()
        return m if (hist_count(m, "default", "h1") == n1 + 1 and
                     hist_count(m, "default", "h2") == n2 and
                     hist_count(m, "limited", "h1") == 3) else None
    m = wait_for(settled, 5, what="every exchange in the histogram")
    for route, proto in (("default", "h1"), ("default", "h2"), ("limited", "h1")):
        assert hist_count(m, route, proto) == requests(m, route, proto), (route, proto)
        check_buckets(m, route, proto)
    assert m['sluice_requests_total{code="429",protocol="h1",route="limited"}'] == 1
    b = check_buckets(m, "default", "h1")
    # The /slow exchange took 300 ms or more: above every bound up to 0.25.
    assert b["0.25"] <= n1 and b["+Inf"] == n1 + 1, b
    assert m['%s_sum{protocol="h1",route="default"}' % HIST] >= 0.3


def test_websocket_upgrade_observed_when_the_tunnel_opens(start_sluice):
    # The tunnel's life is sluice_websocket_tunnel_duration_seconds; the
    # request histogram has its upgrade as soon as the 101 went out, while
    # sluice_requests_total counts the exchange when it ends.
    s = start_sluice(ws_config())
    c = ws_open(s.port)
    try:
        m = wait_for(lambda: (lambda m: m if hist_count(m, "ws", "h1") == 1 else None)(s.metrics()),
                     5, what="the upgrade observed")
        assert requests(m, "ws", "h1") == 0
        assert m['%s_bucket{le="+Inf",protocol="h1",route="ws"}' % HIST] == 1
        assert c.echo(b"x" * 100) == b"x" * 100
    finally:
        c.close()
    m = wait_for(lambda: (lambda m: m if requests(m, "ws", "h1") == 1 else None)(s.metrics()),
                 5, what="the tunnel's exchange counted")
    assert hist_count(m, "ws", "h1") == 1  # not observed a second time


def gauges(s):
    m = s.metrics()
    return (m.get('sluice_upstream_connections{state="active",upstream="identity"}'),
            m.get('sluice_upstream_connections{state="idle",upstream="identity"}'),
            m.get('sluice_upstream_pending{upstream="identity"}'))


def test_pool_gauges_active_idle_and_pending(start_sluice):
    cfg = base_config()
    cfg["upstreams"]["identity"].update({"max_connections": 1, "max_pending": 8})
    s = start_sluice(cfg, workers=1)
    # h1: one request in flight holds the one connection (active), then
    # leaves it idle.
    with H1Conn(s.port) as c:
        c.send(build_request("GET", "/slow?ms=2000"))
        wait_for(lambda: gauges(s) == (1, 0, 0), 5, what="1 active connection")
        assert c.read_response().status == 200
        wait_for(lambda: gauges(s) == (0, 1, 0), 5, what="1 idle connection")
    # h2: the hold takes the idle connection; three more wait behind it.
    n = 3
    with H2Client(s.port) as c:
        sids = []
        for path in ["/slow?ms=2000"] + ["/q%d" % i for i in range(n)]:
            sid = c.conn.get_next_available_stream_id()
            c.streams[sid] = H2Stream(sid)
            c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                      (":authority", "a"), (":path", path)], end_stream=True)
            sids.append(sid)
        c.flush()  # one write: they arrive together, in order
        wait_for(lambda: gauges(s) == (1, 0, n), 5, what="%d pending behind 1 active" % n)
        for st in c.wait_all(sids, timeout=15):
            assert st.status == 200
    wait_for(lambda: gauges(s) == (0, 1, 0), 5, what="idle again, nothing pending")
    text = s.metrics_text()
    assert "# TYPE sluice_upstream_connections gauge" in text
    assert "# TYPE sluice_upstream_pending gauge" in text


def test_access_log_bytes_in_and_out(start_sluice):
    cfg = limited_config(access_log="on")
    cfg["routes"] = [r for r in cfg["routes"] if r["name"] != "default"] + [
        {"name": "echo", "match": {"path_prefix": "/echo"}, "upstream": "identity"}]
    s = start_sluice(cfg)
    body1, body2 = random_bytes(10000, seed=3), random_bytes(100000, seed=4)
    with H1Conn(s.port) as c:
        r = c.request("POST", "/echo", [("Content-Type", "application/octet-stream")], body1)
        assert r.status == 200 and r.body == body1
        nf = c.request("GET", "/nope")
        assert nf.status == 404
        lim = [c.request("GET", "/lim/%d" % i) for i in range(2)]
        # Refused with a body: the body is discarded, not counted in.
        refused = c.request("POST", "/lim/2", [("Content-Type", "text/plain")], b"z" * 500)
        assert refused.status == 429
    with H2Client(s.port) as c:
        st = c.request("POST", "/echo", [("content-type", "application/octet-stream")], body2)
        assert st.status == 200 and st.body == body2
        st404 = c.get("/nope")
        assert st404.status == 404
    lines = access_lines(s, 7)
    by = {}
    for l in lines:
        by.setdefault((l["path"], l["protocol"]), []).append(l)
    for l in lines:
        assert isinstance(l["bytes_in"], int) and isinstance(l["bytes_out"], int), l
    h1_echo, = by[("/echo", "h1")]
    assert (h1_echo["bytes_in"], h1_echo["bytes_out"]) == (10000, 10000)
    h2_echo, = by[("/echo", "h2")]
    assert (h2_echo["bytes_in"], h2_echo["bytes_out"]) == (100000, 100000)
    h1_404, = by[("/nope", "h1")]
    assert h1_404["local"] is True and h1_404["status"] == 404
    assert (h1_404["bytes_in"], h1_404["bytes_out"]) == (0, len(nf.body))
    h2_404, = by[("/nope", "h2")]
    assert (h2_404["bytes_in"], h2_404["bytes_out"]) == (0, len(st404.body))
    proxied, = by[("/lim/0", "h1")]
    assert proxied["bytes_in"] == 0 and proxied["bytes_out"] == len(lim[0].body)
    r429, = by[("/lim/2", "h1")]
    assert r429["status"] == 429 and json.loads(refused.body)["error"] == "rate_limited"
    assert (r429["bytes_in"], r429["bytes_out"]) == (0, len(refused.body))
