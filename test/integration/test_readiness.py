"""Readiness that waits for the app (issue 14): with `admin.readiness:
upstreams`, /readyz is 503 until every upstream accepts connections, and
again once one stops, so a pod is not Ready before its app nor after it."""
from helpers import Upstream, base_config, closed_port, h1_once, wait_for


def readyz(s):
    return s.admin_get("/readyz", timeout=2)[0]


def test_readyz_follows_the_upstream(start_sluice, tmp_path):
    port = closed_port()
    cfg = base_config(admin={"readiness": "upstreams"})
    cfg["upstreams"]["identity"]["address"] = "127.0.0.1:%d" % port
    s = start_sluice(cfg, upstream=False, wait_ready=False)
    s.wait_log(lambda l: l.get("msg") == "upstream unreachable: /readyz answers 503"
               and l.get("upstream") == "identity", what="unreachable line")
    assert readyz(s) == 503
    up = Upstream(str(tmp_path), args=["--port", str(port)]).start()
    try:
        # Checked once a second, each check allowed 1 s: within 3 s.
        wait_for(lambda: readyz(s) == 200, 3, what="/readyz 200 once the app listens")
        assert any(l.get("msg") == "upstream reachable" for l in s.logs())
        assert h1_once(s.port, "/v1/x")[0] == 200
    finally:
        up.stop()
    wait_for(lambda: readyz(s) == 503, 3, what="/readyz 503 once the app stopped")
    assert s.admin_get("/healthz")[0] == 200  # alive, just not ready


def test_default_readiness_ignores_the_upstream(start_sluice):
    cfg = base_config()
    cfg["upstreams"]["identity"]["address"] = "127.0.0.1:%d" % closed_port()
    s = start_sluice(cfg, upstream=False)
    assert readyz(s) == 200
    assert h1_once(s.port, "/v1/x")[0] == 502


def test_reload_keeps_readyz_while_upstreams_are_up(start_sluice, tmp_path):
    """A routine reload must not flip /readyz: an upstream that moves to
    another listening address keeps its verdict until checked there, and a
    new one is checked as the reload is applied, not a tick later."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Upstream(str(tmp_path / "a")).start()
    b = Upstream(str(tmp_path / "b")).start()
    try:
        cfg = base_config(admin={"readiness": "upstreams"})
        cfg["upstreams"]["identity"]["address"] = a.address
        s = start_sluice(cfg, upstream=False)
        wait_for(lambda: readyz(s) == 200, 3, what="/readyz 200")
        cfg["upstreams"]["identity"]["address"] = b.address       # moved
        cfg["upstreams"]["other"] = {"address": a.address}         # new
        s.write_config(cfg)
        assert s.reload() == 1.0
        assert readyz(s) == 200
        assert h1_once(s.port, "/v1/x")[0] == 200
    finally:
        a.stop()
        b.stop()
