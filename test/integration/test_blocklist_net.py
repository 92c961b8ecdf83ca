"""Blocklists by client address and by device id (issue 12; postmortem 002):
`blocklist.client_ip` (CIDRs, IPv4 and IPv6, the identified address: the
peer, or X-Forwarded-For from a trusted proxy) and `blocklist.device_id`
beside `blocklist.firmware`, over HTTP/1.1, HTTP/2 and WebSocket upgrades
(RFC 6455 and RFC 8441); the entry's `body` and `headers` in the answer and
its name in the body, metrics and log line; emergency close on reload of
idle connections and open tunnels of a newly banned source or device;
thousands of entries; `sluice check` errors at FILE:LINE:COL; explain."""

import copy
import datetime
import json
import socket
import time

import pytest

from admission_helpers import IDENTIFY, REJECT, admission_config, device_headers, route
from helpers import H1Conn, H2Client, base_config, metric_sum, reserve_port, run_cli, to_yaml
from ws_helpers import H2WSClient, WSConn, ws_config, ws_open

SPAM = {
    "name": "spam-source-002",
    "cidrs": ["203.0.113.0/24", "2001:db8:bad::/48"],
    "reason": "crash-looping app build 7.1.0",
    "body": {"help_url": "https://status.example.com", "incident": 2},
    "headers": {"x-ban": "spam"},
}
STOLEN = {"name": "stolen-units", "ids": ["dev-0001", "dev-0002"], "status": 410,
          "reason": "reported stolen"}
BANNED = device_headers(ip="203.0.113.9", cls="android", fw="7.1.0")
BANNED_V6 = device_headers(ip="2001:db8:bad:7::1")
OTHER = device_headers(ip="198.51.100.1", cls="android", fw="7.2.0")


def blocklist(client_ip=(), device_id=(), **rest):
    bl = dict(rest)
    if client_ip:
        bl["client_ip"] = [copy.deepcopy(e) for e in client_ip]
    if device_id:
        bl["device_id"] = [copy.deepcopy(e) for e in device_id]
    return bl


def check_block(status, header, body, want_status, policy, extra=None, extra_headers=None):
    """A blocklist refusal: |want_status|, JSON {"error":"blocked","policy":
    |policy|,"retry_after":N} plus the entry's |extra| body fields exactly,
    retry-after equal to the body's, and the entry's |extra_headers|."""
    assert status == want_status, (status, body)
    assert header("content-type") == "application/json", header("content-type")
    doc = json.loads(body)
    want = dict({"error": "blocked", "policy": policy}, **(extra or {}))
    ra = doc.pop("retry_after")
    assert doc == want, doc
    assert header("retry-after") == str(ra) and ra >= 1, (header("retry-after"), ra)
    for k, v in (extra_headers or {}).items():
        assert header(k) == v, (k, header(k))
    return ra


def h1_get(port, headers, path="/v1/connect", host="127.0.0.1"):
    with H1Conn(port, host=host, timeout=5) as c:
        return c.request("GET", path, headers)


def h2_get(port, headers, path="/v1/connect"):
    with H2Client(port, timeout=5) as c:
        return c.wait_all([c.start("GET", path, [(k.lower(), v) for k, v in headers])], 5)[0]


def h2_wait_closed(c, timeout):
    """True once the peer closes |c| (after its GOAWAY), within |timeout| s."""
    deadline = time.monotonic() + timeout
    while not c.closed and time.monotonic() < deadline:
        c.pump(min(0.2, max(0.001, deadline - time.monotonic())))
    return c.closed


def rejected(s, **labels):
    return metric_sum(s.metrics(), "sluice_rejections_total", **labels)


# ---- client_ip -----------------------------------------------------------------


@pytest.mark.timeout(30)
def test_ban_by_forwarded_address_over_h1_and_h2(start_sluice, upstream):
    """A source behind the trusted proxy is refused by its X-Forwarded-For
    address, IPv4 and IPv6, with the entry's body fields and headers and
    its name as the policy; its neighbours are served."""
    s = start_sluice(admission_config(blocklist=blocklist([SPAM])))
    extra = {"help_url": "https://status.example.com", "incident": 2}
    for hdrs in (BANNED, BANNED_V6):
        r = h1_get(s.port, hdrs)
        check_block(r.status, r.header, r.body, 403, "blocklist/client_ip/spam-source-002",
                    extra, {"x-ban": "spam"})
        st = h2_get(s.port, hdrs)
        check_block(st.status, st.header, st.body, 403, "blocklist/client_ip/spam-source-002",
                    extra, {"x-ban": "spam"})
    assert h1_get(s.port, OTHER).status == 200
    assert h2_get(s.port, device_headers(ip="2001:db8:bae::1")).status == 200
    assert upstream.seen("/v1/connect") == 2
    assert rejected(s, route="default", policy="blocklist/client_ip/spam-source-002",
                    reason="blocklist") == 4
    # The log line names the entry and says which firmware and class it was.
    line = s.wait_log(lambda l: l["msg"] == "rejected" and l["client_ip"] == "203.0.113.9",
                      what="rejection log line")
    assert (line["policy"], line["reason"], line["firmware"], line["device_class"]) == (
        "blocklist/client_ip/spam-source-002", "blocklist", "7.1.0", "android"), line
    line = s.wait_log(lambda l: l["msg"] == "rejected" and l["client_ip"] == "2001:db8:bad:7::1",
                      what="IPv6 rejection log line")
    assert (line["firmware"], line["device_class"]) == ("", ""), line


def v6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as t:
            t.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.timeout(30)
def test_ban_by_peer_address_v4_and_v6(start_sluice, upstream):
    """Without a trusted proxy the peer address is the client's: a ban of
    ::1 refuses the IPv6 loopback listener's clients only, and a ban of
    127.0.0.1 for one device class only that class."""
    if not v6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this host")
    ident = {k: v for k, v in IDENTIFY.items() if k != "client_ip"}
    cfg = base_config(identify=ident, reject=copy.deepcopy(REJECT), blocklist=blocklist([
        {"name": "v6-loopback", "cidrs": ["::1/128"]},
        {"name": "v4-cams", "cidrs": ["127.0.0.1"], "class": "cam", "status": 451},
    ]))
    r6 = reserve_port()
    port6 = r6.port
    r6.release()
    cfg["listeners"].append({"name": "v6", "address": "[::1]:%d" % port6})
    s = start_sluice(cfg)
    r = h1_get(port6, [("X-Forwarded-For", "198.51.100.1")], host="::1")  # not trusted: ignored
    check_block(r.status, r.header, r.body, 403, "blocklist/client_ip/v6-loopback")
    assert h1_get(s.port, []).status == 200
    r = h1_get(s.port, [("X-Device-Class", "cam")])
    check_block(r.status, r.header, r.body, 451, "blocklist/client_ip/v4-cams")
    st = h2_get(s.port, [("x-device-class", "cam")])
    check_block(st.status, st.header, st.body, 451, "blocklist/client_ip/v4-cams")
    assert h2_get(s.port, [("x-device-class", "hub")]).status == 200
    assert upstream.seen("/v1/connect") == 2


@pytest.mark.timeout(30)
def test_text_body_names_the_entry(start_sluice):
    cfg = admission_config(blocklist=blocklist([SPAM]), reject=dict(REJECT, body="text"))
    s = start_sluice(cfg)
    r = h1_get(s.port, BANNED)
    assert r.status == 403 and r.header("content-type").startswith("text/plain"), r.headers
    assert r.body.startswith(b"blocked (policy blocklist/client_ip/spam-source-002); retry after ")
    assert r.header("x-ban") == "spam"


# ---- device_id -----------------------------------------------------------------


@pytest.mark.timeout(30)
def test_ban_by_device_id_with_class_and_shadow(start_sluice, upstream):
    """Device ids are matched whole; a class-restricted entry applies to its
    class; a shadow entry is counted under its name and lets the request
    on; an unnamed entry is named by its index."""
    s = start_sluice(admission_config(blocklist=blocklist(device_id=[
        {"name": "watch", "ids": ["dev-0009"], "mode": "shadow"},
        STOLEN,
        {"ids": ["th-1"], "class": "thermostat",
         "body": {"update_url": "https://fw.example.com/3.8.2", "min_version": "3.8.2"}},
    ])))
    r = h1_get(s.port, device_headers(ip="198.51.100.2", dev="dev-0002"))
    check_block(r.status, r.header, r.body, 410, "blocklist/device_id/stolen-units")
    st = h2_get(s.port, device_headers(ip="198.51.100.2", dev="dev-0001"))
    check_block(st.status, st.header, st.body, 410, "blocklist/device_id/stolen-units")
    st = h2_get(s.port, device_headers(cls="thermostat", dev="th-1"))
    check_block(st.status, st.header, st.body, 403, "blocklist/device_id/2",
                {"update_url": "https://fw.example.com/3.8.2", "min_version": "3.8.2"})
    for hdrs in (device_headers(cls="hub", dev="th-1"), device_headers(dev="dev-000"),
                 device_headers(dev="dev-0009")):
        assert h1_get(s.port, hdrs).status == 200
    assert upstream.seen("/v1/connect") == 3
    m = s.metrics()
    assert metric_sum(m, "sluice_rejections_total", policy="blocklist/device_id/stolen-units") == 2
    assert metric_sum(m, "sluice_shadow_rejections_total", policy="blocklist/device_id/watch",
                      reason="blocklist") == 1
    assert metric_sum(m, "sluice_rejections_total", policy="blocklist/device_id/watch") == 0


# ---- WebSocket upgrades --------------------------------------------------------


@pytest.mark.timeout(30)
def test_websocket_upgrades_are_refused(start_sluice):
    s = start_sluice(ws_config(blocklist=blocklist([SPAM], [STOLEN])))
    with WSConn(s.port, timeout=5) as c:
        r = c.upgrade("/ws", BANNED)
        check_block(r.status, r.header, r.body, 403, "blocklist/client_ip/spam-source-002",
                    {"help_url": "https://status.example.com", "incident": 2}, {"x-ban": "spam"})
    with WSConn(s.port, timeout=5) as c:
        r = c.upgrade("/ws", device_headers(ip="198.51.100.3", dev="dev-0001"))
        check_block(r.status, r.header, r.body, 410, "blocklist/device_id/stolen-units")
    c = H2WSClient(s.port, timeout=5)
    try:
        c.wait_connect_protocol()
        st = c.wait(c.open_ws(headers=[(k.lower(), v) for k, v in BANNED_V6]), 5)
        check_block(st.status, st.header, st.body, 403, "blocklist/client_ip/spam-source-002",
                    {"help_url": "https://status.example.com", "incident": 2}, {"x-ban": "spam"})
        st = c.wait(c.open_ws(headers=[("x-device-id", "dev-0002")]), 5)
        check_block(st.status, st.header, st.body, 410, "blocklist/device_id/stolen-units")
        sid = c.open_ws(headers=[(k.lower(), v) for k, v in OTHER])
        assert c.streams[sid].status == 200
        assert c.echo(sid, b"fine") == b"fine"
    finally:
        c.close()
    m = s.metrics()
    assert metric_sum(m, "sluice_websocket_upgrades_total", route="ws", result="rejected") == 4


# ---- emergency close on reload -------------------------------------------------


@pytest.mark.timeout(30)
def test_reload_ban_closes_idle_connections_and_tunnels(start_sluice, upstream):
    """Postmortem 002: the ban has to reach what is already open. A reload
    that adds a client_ip and a device_id entry closes the idle keep-alive
    connections of that source and device (h1 and h2) and sends their open
    tunnels (RFC 6455 and RFC 8441) a close frame 1008 with the entry's
    reason; everybody else keeps theirs."""
    s = start_sluice(ws_config())
    dev = device_headers(ip="198.51.100.4", dev="dev-0001")
    idle_src, idle_dev, idle_other = H1Conn(s.port, timeout=5), H1Conn(s.port, timeout=5), \
        H1Conn(s.port, timeout=5)
    h2_src = H2Client(s.port, timeout=5)
    tun_src, tun_dev = ws_open(s.port, headers=BANNED), ws_open(s.port, headers=dev)
    tun_other = ws_open(s.port, headers=OTHER)
    h2ws = H2WSClient(s.port, timeout=5)  # RFC 8441: an HTTP/2 stream is the tunnel
    try:
        h2ws.wait_connect_protocol()
        sid_dev = h2ws.open_ws(headers=[("x-device-id", "dev-0002")])
        sid_other = h2ws.open_ws(headers=[("x-device-id", "dev-0003")])
        assert h2ws.echo(sid_dev, b"h2") == b"h2" and h2ws.echo(sid_other, b"h2") == b"h2"
        assert idle_src.request("GET", "/a", BANNED).status == 200
        assert idle_dev.request("GET", "/a", dev).status == 200
        assert idle_other.request("GET", "/a", OTHER).status == 200
        assert h2_src.wait_all([h2_src.start("GET", "/a", [(k.lower(), v) for k, v in BANNED_V6])],
                               5)[0].status == 200
        for t in (tun_src, tun_dev, tun_other):
            assert t.echo(b"hi") == b"hi"

        s.write_config(ws_config(blocklist=blocklist([SPAM], [STOLEN])))
        assert s.reload() == 1.0, "reload with the bans failed"
        for t, reason in ((tun_src, "crash-looping app build 7.1.0"),
                          (tun_dev, "reported stolen")):
            f, _ = t.expect_close(5)
            assert f is not None and f.close_code == 1008 and f.close_reason == reason, f
        f, _ = h2ws.expect_close(sid_dev, 5)
        assert f is not None and f.close_code == 1008 and f.close_reason == "reported stolen", f
        assert h2ws.echo(sid_other, b"still") == b"still"
        s.wait_log(lambda l: l["msg"] == "closed idle connections of newly blocked devices",
                   what="the emergency close")
        assert idle_src.wait_closed(3) and idle_dev.wait_closed(3)
        assert h2_wait_closed(h2_src, 3), "the banned source's idle HTTP/2 connection stays open"
        assert idle_other.request("GET", "/b", OTHER).status == 200
        assert tun_other.echo(b"still") == b"still"
        # They cannot come back.
        r = h1_get(s.port, BANNED)
        check_block(r.status, r.header, r.body, 403, "blocklist/client_ip/spam-source-002",
                    {"help_url": "https://status.example.com", "incident": 2})
    finally:
        for c in (idle_src, idle_dev, idle_other, tun_src, tun_dev, tun_other):
            c.close()
        h2_src.close()
        h2ws.close()
    line = [l for l in s.logs() if l["msg"] == "configuration reloaded"][-1]
    assert line["blocklist_entries"] == "0->2"
    assert (line["blocklist_active"], line["blocklist_expired"]) == (2, 0), line


# ---- scale ---------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_five_thousand_cidr_entries_load_and_answer(start_sluice, upstream):
    entries = [{"name": "b%d" % i, "cidrs": ["10.%d.%d.0/24" % (i // 256, i % 256)]}
               for i in range(5000)]
    entries.append({"name": "v6-wide", "cidrs": ["2001:db8::/32"]})
    s = start_sluice(admission_config(blocklist={"client_ip": entries}))
    for i in (0, 1234, 4999):
        r = h1_get(s.port, device_headers(ip="10.%d.%d.77" % (i // 256, i % 256)))
        check_block(r.status, r.header, r.body, 403, "blocklist/client_ip/b%d" % i)
    r = h1_get(s.port, device_headers(ip="2001:db8:1::1"))
    check_block(r.status, r.header, r.body, 403, "blocklist/client_ip/v6-wide")
    assert h1_get(s.port, device_headers(ip="10.200.0.1")).status == 200
    assert upstream.seen("/v1/connect") == 1


# ---- sluice check, explain -----------------------------------------------------


def write_config(tmp_path, blocklist_yaml):
    """A configuration whose blocklist is the last section; returns (path,
    the number of lines before it)."""
    cfg = admission_config()
    cfg["listeners"][0]["address"] = "127.0.0.1:18972"
    cfg["upstreams"]["identity"]["address"] = "127.0.0.1:18973"
    del cfg["admin"]
    head = to_yaml(cfg)
    path = tmp_path / "sluice.yaml"
    path.write_text(head + blocklist_yaml)
    return str(path), head.count("\n")


def test_check_reports_each_mistake_at_its_place(tmp_path, sluice_bin):
    path, n = write_config(tmp_path, """\
blocklist:
  client_ip:
    - name: spam
      cidrs: [203.0.113.0/24, 203.0.113.300/24]
    - name: spam
      cidrs: []
      body: {error: nope}
  device_id:
    - name: stolen
      ids: [dev-1]
      clas: thermostat
""")
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 1, p.stderr
    got = p.stderr.splitlines()
    want = [
        "%s:%d:31: cidrs: '203.0.113.300' is not an IPv4 address" % (path, n + 4),
        "%s:%d:7: client_ip entry: 'cidrs' needs at least one block" % (path, n + 6),
        "%s:%d:14: body: 'error' is a built-in field of the rejection body" % (path, n + 7),
        "%s:%d:7: unknown key 'clas' in device_id entry (did you mean 'class'?)" % (path, n + 11),
        "%s:%d:7: duplicate client_ip entry name 'spam'" % (path, n + 5),
    ]
    for w in want:
        assert any(l.startswith(w) for l in got), (w, p.stderr)


def test_check_warns_about_expired_address_and_device_entries(tmp_path, sluice_bin):
    past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    path, n = write_config(tmp_path, """\
blocklist:
  client_ip:
    - cidrs: [203.0.113.0/24]
      expires: "%s"
  device_id:
    - name: stolen
      ids: [dev-1]
      expires: "%s"
""" % (past, past))
    p = run_cli(["check", "-c", path], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    warn = [l for l in p.stderr.splitlines() if "warning:" in l]
    assert warn == [
        "%s:%d:7: warning: blocklist entry for addresses '203.0.113.0/24' expired at %s (3 days "
        "ago): it no longer blocks anything" % (path, n + 3, past),
        "%s:%d:7: warning: blocklist entry 'stolen' expired at %s (3 days ago): it no longer "
        "blocks anything" % (path, n + 6, past)], p.stderr
    p = run_cli(["check", "--strict", "-c", path], binary=sluice_bin)
    assert p.returncode == 1 and p.stderr.count(": error: blocklist entry") == 2, p.stderr
    # explain says "expired" rather than a silent allow.
    p = run_cli(["explain", "-c", path, "--header", "X-Forwarded-For: 203.0.113.5",
                 "--header", "x-device-id: dev-1", "/v1/connect"], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    pol = {x["policy"]: x for x in doc["policies"]}
    assert pol["blocklist/client_ip"]["verdict"] == "allow"
    assert "expired at %s" % past in pol["blocklist/client_ip"]["why"], doc
    assert "'stolen' expired at %s" % past in pol["blocklist/device_id"]["why"], doc
    assert doc["verdict"]["admit"] is True


def test_explain_shows_the_firing_entry(tmp_path, sluice_bin):
    path, _ = write_config(tmp_path, to_yaml({"blocklist": blocklist(
        [SPAM, {"name": "watch", "cidrs": ["198.51.100.0/24"], "mode": "shadow"}], [STOLEN])}))
    base = ["explain", "-c", path]
    p = run_cli(base + ["--ip", "203.0.113.7", "/v1/connect"], binary=sluice_bin)
    doc = json.loads(p.stdout)
    assert doc["identity"]["client_ip"] == "203.0.113.7"
    assert doc["policies"][0] == {"policy": "blocklist/client_ip/spam-source-002",
                                  "kind": "blocklist", "verdict": "deny",
                                  "why": "crash-looping app build 7.1.0"}, doc
    assert doc["verdict"]["policy"] == "blocklist/client_ip/spam-source-002"
    p = run_cli(base + ["--header", "X-Forwarded-For: 198.51.100.9", "--header",
                        "x-device-id: dev-0002", "/v1/connect"], binary=sluice_bin)
    doc = json.loads(p.stdout)
    assert [(x["policy"], x["verdict"]) for x in doc["policies"]][:2] == [
        ("blocklist/client_ip/watch", "shadow_deny"), ("blocklist/device_id/stolen-units", "deny")]
    assert (doc["verdict"]["status"], doc["verdict"]["policy"]) == (
        410, "blocklist/device_id/stolen-units")
