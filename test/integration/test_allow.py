"""Exemptions (`allow`, policies/allow.c) through the real binary: a
partner (postmortem 002's wallet-api), recognised by its address
(X-Forwarded-For from a trusted proxy, or the peer address itself) or by a
header, passes a rate limit that refuses the crowd, a firmware ban and a
concurrency cap, over HTTP/1.1, HTTP/2 and WebSocket upgrades (both
kinds); sluice_exemptions_total counts it; explain shows the rule and what
it skipped; `sluice check` reports mistakes at FILE:LINE:COL; a reload
names the section."""
import copy
import http.client
import json
import threading

import pytest

from helpers import run_cli, to_yaml, wait_for
from admission_helpers import (admission_config, check_rejection, device_headers, h1_get, h2_get,
                               route)
from ws_helpers import H2WSClient, WSConn, ws_route

PARTNER_IP = "198.51.100.7"    # wallet-api, behind the trusted proxy
CROWD_IP = "192.0.2.10"
HUB_B5 = {"cls": "airtame-hub", "fw": "3.8.0-b5"}
BLOCK = {"firmware": [{"name": "inc-2041", "class": "airtame-hub",
                       "versions": ">=3.8.0-b3 <3.8.1", "reason": "INC-2041"}]}
ALLOW = [
    {"name": "wallet-api", "client_ip": ["198.51.100.0/24", "2001:db8::/32"],
     "skip": ["rate_limits", "blocklist", "concurrency"]},
    {"name": "by-header", "header": {"name": "x-partner", "value": "wallet-api"},
     "skip": ["rate_limits"]},
    {"name": "local-peer", "client_ip": ["127.0.0.2/32"], "skip": ["rate_limits"]},
]
ONE_PER_HOUR = [{"key": "client_ip", "rate": "1/h", "burst": 1}]


def config(**top):
    """Route "api": one request an hour per client address, one in flight;
    route "ws": WebSocket upgrades, the same; the firmware ban; the rules."""
    cfg = admission_config(
        routes=[ws_route(rate_limits=copy.deepcopy(ONE_PER_HOUR), concurrency={"max": 1}),
                route(name="api", rate_limits=copy.deepcopy(ONE_PER_HOUR),
                      concurrency={"max": 1})],
        blocklist=copy.deepcopy(BLOCK), allow=copy.deepcopy(ALLOW))
    cfg.update(top)
    return cfg


def exemptions(s, allow, route_name):
    return s.metric("sluice_exemptions_total", allow=allow, route=route_name)


# ---- rate limits -------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2"])
def test_partner_passes_the_rate_limit_that_refuses_the_crowd(start_sluice, upstream, get):
    s = start_sluice(config())
    crowd = device_headers(ip=CROWD_IP)
    assert get(s.port, "/v1/a", crowd).status == 200
    r = get(s.port, "/v1/a", crowd)
    check_rejection(r.status, r.header, r.body, 429, "rate_limited", "api/client_ip",
                    ra_min=1, ra_max=120)
    partner = device_headers(ip=PARTNER_IP)
    for _ in range(5):
        assert get(s.port, "/v1/a", partner).status == 200
    # By the header, from an address of the crowd's kind: the rule skips
    # the rate limits only.
    hdr = device_headers(ip="192.0.2.11") + [("X-Partner", "wallet-api")]
    for _ in range(3):
        assert get(s.port, "/v1/a", hdr).status == 200
    wrong = device_headers(ip="192.0.2.12") + [("X-Partner", "wallet-apix")]
    assert get(s.port, "/v1/a", wrong).status == 200
    assert get(s.port, "/v1/a", wrong).status == 429
    assert exemptions(s, "wallet-api", "api") == 5
    assert exemptions(s, "by-header", "api") == 3
    assert s.metric("sluice_rejections_total", route="api", reason="rate_limit") == 2
    assert upstream.seen("/v1/a") == 1 + 5 + 3 + 1


@pytest.mark.timeout(60)
def test_partner_by_its_peer_address(start_sluice, upstream):
    """No X-Forwarded-For: the address the connection comes from (here a
    second loopback address) is the client's."""
    s = start_sluice(config())

    def get_from(src):
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10,
                                       source_address=(src, 0))
        try:
            c.request("GET", "/v1/peer")
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()
    assert [get_from("127.0.0.2") for _ in range(4)] == [200] * 4
    assert [get_from("127.0.0.3") for _ in range(2)] == [200, 429]
    assert exemptions(s, "local-peer", "api") == 4


# ---- blocklist ---------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2"])
def test_partner_passes_the_firmware_ban(start_sluice, upstream, get):
    s = start_sluice(config())
    r = get(s.port, "/v1/b", device_headers(ip=CROWD_IP, **HUB_B5))
    check_rejection(r.status, r.header, r.body, 403, "blocked", "blocklist/firmware/inc-2041",
                    ra_min=1, ra_max=120)
    for _ in range(3):
        assert get(s.port, "/v1/b", device_headers(ip=PARTNER_IP, **HUB_B5)).status == 200
    # by-header skips only the rate limits: the ban still holds.
    r = get(s.port, "/v1/b", device_headers(ip="192.0.2.13", **HUB_B5) +
            [("X-Partner", "wallet-api")])
    assert r.status == 403
    assert s.metric("sluice_rejections_total", reason="blocklist") == 2
    assert upstream.seen("/v1/b") == 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2"])
def test_partner_passes_a_ban_of_its_whole_range(start_sluice, upstream, get):
    """Postmortem 002: a ban of the spamming range that also covers the
    partner's addresses sheds the crowd, not wallet-api."""
    block = copy.deepcopy(BLOCK)
    block["client_ip"] = [{"name": "spam-002", "cidrs": ["192.0.2.0/24", "198.51.100.0/24"],
                           "body": {"help": "https://status.example.com"}}]
    s = start_sluice(config(blocklist=block))
    r = get(s.port, "/v1/c", device_headers(ip=CROWD_IP))
    assert r.status == 403
    assert json.loads(r.body)["policy"] == "blocklist/client_ip/spam-002"
    assert [get(s.port, "/v1/c", device_headers(ip=PARTNER_IP)).status
            for _ in range(3)] == [200] * 3
    assert exemptions(s, "wallet-api", "api") == 3
    assert s.metric("sluice_rejections_total", policy="blocklist/client_ip/spam-002") == 1


# ---- concurrency -------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("get", [h1_get, h2_get], ids=["h1", "h2"])
def test_partner_passes_the_concurrency_cap_and_frees_nothing(start_sluice, upstream, get):
    s = start_sluice(config(routes=[route(name="api", concurrency={"max": 1})]))
    held = []
    t = threading.Thread(target=lambda: held.append(
        h1_get(s.port, "/slow?ms=3000", device_headers(ip=CROWD_IP)).status), daemon=True)
    t.start()
    wait_for(lambda: upstream.stats()["inflight"] == 1, 5, what="the crowd's slow request")
    r = get(s.port, "/v1/c", device_headers(ip="192.0.2.14"))
    check_rejection(r.status, r.header, r.body, 429, "concurrency_limited", "api/concurrency",
                    ra_min=1, ra_max=120)
    for _ in range(3):
        assert get(s.port, "/v1/c", device_headers(ip=PARTNER_IP)).status == 200
    # The partner's exchanges ended and gave back nothing they never took:
    # the crowd's slot is still taken.
    assert upstream.stats()["inflight"] == 1
    r = get(s.port, "/v1/c", device_headers(ip="192.0.2.15"))
    assert r.status == 429, r.body
    t.join(10)
    assert held == [200]
    assert get(s.port, "/v1/c", device_headers(ip="192.0.2.16")).status == 200


# ---- WebSocket upgrades --------------------------------------------------------------


@pytest.mark.timeout(60)
def test_websocket_upgrades_h1(start_sluice, upstream):
    """The crowd's tunnel holds the ws route's one slot and its address's
    one upgrade an hour; the partner opens two more, blocked firmware and
    all."""
    s = start_sluice(config())
    crowd = WSConn(s.port, timeout=10)
    try:
        assert crowd.upgrade("/ws", device_headers(ip=CROWD_IP)).status == 101
        with WSConn(s.port, timeout=10) as c:
            r = c.upgrade("/ws", device_headers(ip="192.0.2.17"))
            check_rejection(r.status, r.header, r.body, 429, "concurrency_limited",
                            "ws/concurrency", ra_min=1, ra_max=120)
        partners = []
        try:
            for _ in range(2):
                c = WSConn(s.port, timeout=10)
                partners.append(c)
                assert c.upgrade("/ws", device_headers(ip=PARTNER_IP, **HUB_B5)).status == 101
            for i, c in enumerate(partners):
                assert c.echo(b"partner %d" % i) == b"partner %d" % i
        finally:
            for c in partners:
                c.close()
        assert crowd.echo(b"crowd") == b"crowd"
    finally:
        crowd.close()
    assert exemptions(s, "wallet-api", "ws") == 2


@pytest.mark.timeout(60)
def test_websocket_upgrades_h2(start_sluice, upstream):
    s = start_sluice(config())
    h = H2WSClient(s.port)
    try:
        h.wait_connect_protocol()
        lower = lambda hs: [(k.lower(), v) for k, v in hs]  # noqa: E731
        crowd = h.open_ws("/ws", lower(device_headers(ip=CROWD_IP)))
        assert h.streams[crowd].status == 200
        refused = h.open_ws("/ws", lower(device_headers(ip="192.0.2.18")))
        st = h.streams[refused]
        h.wait_all([refused], 10)
        check_rejection(st.status, st.header, st.body, 429, "concurrency_limited",
                        "ws/concurrency", ra_min=1, ra_max=120)
        sids = [h.open_ws("/ws", lower(device_headers(ip=PARTNER_IP, **HUB_B5)))
                for _ in range(2)]
        assert [h.streams[sid].status for sid in sids] == [200, 200]
        for sid in sids:
            assert h.echo(sid, b"over h2") == b"over h2"
        assert h.echo(crowd, b"crowd") == b"crowd"
    finally:
        h.close()
    assert exemptions(s, "wallet-api", "ws") == 2


# ---- explain, check, reload ----------------------------------------------------------


def test_explain_shows_the_rule_and_what_it_skipped(start_sluice):
    s = start_sluice(config())
    p = run_cli(["explain", "-c", s.config_path, "--ip", "127.0.0.1",
                 "--header", "X-Forwarded-For: " + PARTNER_IP,
                 "--header", "X-Device-Class: airtame-hub",
                 "--header", "X-Firmware-Version: 3.8.0-b5", "/v1/x"])
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    pol = {e["policy"]: (e["verdict"], e["why"]) for e in doc["policies"]}
    assert pol["allow/wallet-api"][0] == "exempt"
    assert "skips blocklist, rate_limits, concurrency" in pol["allow/wallet-api"][1]
    for name in ("blocklist", "api/client_ip", "api/concurrency"):
        assert pol[name] == ("skip", "skip (allow/wallet-api)"), (name, pol)
    assert doc["verdict"]["admit"] is True
    assert doc["verdict"]["allow"] == {"rule": "wallet-api",
                                       "skip": "blocklist, rate_limits, concurrency"}
    # The crowd: no rule, and the ban.
    status, _, body = s.admin_get("/explain?ip=127.0.0.1&path=/v1/x&header=X-Forwarded-For:"
                                  + CROWD_IP + "&header=X-Device-Class:airtame-hub"
                                  "&header=X-Firmware-Version:3.8.0-b5")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["policies"][0] == {"policy": "allow", "kind": "allow", "verdict": "none",
                                  "why": "no allow rule matches (3 rules)"}
    assert doc["verdict"]["admit"] is False and doc["verdict"]["status"] == 403
    assert "allow" not in doc["verdict"]


def test_check_reports_mistakes_at_file_line_col(tmp_path):
    cfg = config()
    del cfg["allow"]
    text = to_yaml(cfg).rstrip("\n") + "\n"
    text += ("allow:\n"
             "  - name: wallet-api\n"
             "    client_ip: [198.51.100.0/24]\n"
             "    skip: [rate_limit, breaker]\n"
             "  - name: nobody\n"
             "    routes: [apj]\n"
             "    skip: [shaping]\n")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    p = run_cli(["check", "-c", str(path)])
    assert p.returncode == 1, p.stdout
    lines = text.split("\n")
    at = lines.index("    skip: [rate_limit, breaker]") + 1
    assert "%s:%d:12: skip: unknown policy 'rate_limit' (did you mean 'rate_limits'?)" % (
        path, at) in p.stderr, p.stderr
    assert "%s:%d:24: skip: 'breaker' cannot be skipped" % (path, at) in p.stderr, p.stderr
    assert "%s:%d:14: routes: 'apj' is not a defined route (did you mean 'api'?)" % (
        path, at + 2) in p.stderr, p.stderr
    assert "%s:%d:5: allow rule 'nobody': give at least one of client_ip, header, class, " \
           "device_id" % (path, at + 1) in p.stderr, p.stderr


def test_check_print_round_trips(start_sluice, tmp_path):
    s = start_sluice(config())
    p = run_cli(["check", "-c", s.config_path, "--print"])
    assert p.returncode == 0, p.stderr
    assert "allow:\n  - name: \"wallet-api\"\n" in p.stdout
    again = tmp_path / "printed.yaml"
    again.write_text(p.stdout)
    q = run_cli(["check", "-c", str(again), "--print"])
    assert q.returncode == 0, q.stderr
    assert q.stdout == p.stdout


def test_reload_adds_an_exemption(start_sluice, upstream):
    s = start_sluice(config(allow=[]))
    partner = device_headers(ip=PARTNER_IP)
    assert h1_get(s.port, "/v1/r", partner).status == 200
    assert h1_get(s.port, "/v1/r", partner).status == 429
    s.write_config(config())
    status, _, body = s.admin_get("/reload", method="POST")
    assert status == 200, body
    assert b"other: allow" in body, body
    for _ in range(3):
        assert h1_get(s.port, "/v1/r", partner).status == 200
    assert exemptions(s, "wallet-api", "api") == 3
