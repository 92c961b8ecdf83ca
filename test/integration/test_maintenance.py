"""Maintenance mode (policies/kinds/maintenance.c) and the Retry-After of
shaping aborts, through the real binary: every request is answered by
sluice itself (no upstream request), with the configured status, a
Retry-After that is the configured base spread by reject.retry_after, the
JSON body's extra fields and the extra headers; a route's own maintenance
wins over the top level's; a drop-in turns it on and off with a reload;
shadow mode counts and lets through; h1, h2 and WebSocket upgrades; `check`
errors at FILE:LINE:COL, explain and `check --print`."""
import json
import os
import socket

import pytest

from helpers import H2Client, base_config, h1_once, run_cli, to_yaml, wait_for
from admission_helpers import admission_config, route
from test_reload import BLOCK, BLOCKED_DEVICE, generation

# reject: min 1s, max 1h, jitter 0.5. A base of 300s is inside [min, max]:
# w = round(300 * 0.5) = 150, Retry-After uniform in [300, 450].
REJECT = {"retry_after": {"min": "1s", "max": "1h", "jitter": 0.5}}
RA_300 = (300, 450)
MAINT = {"status": 503, "retry_after": "300s",
         "body": {"message": "back at 14:00", "eta_s": 300, "planned": True},
         "headers": {"X-Maintenance": "planned"}}


def routes(**maint_of):
    out = [{"name": "api", "match": {"path_prefix": "/v1/"}, "upstream": "identity"},
           {"name": "default", "match": {"path_prefix": "/"}, "upstream": "identity"}]
    for r in out:
        if r["name"] in maint_of:
            r["maintenance"] = maint_of[r["name"]]
    return out


def check_maintenance(status, header, body, policy, want_status=503, ra=RA_300, extra=None):
    assert status == want_status, (status, body)
    assert header("content-type") == "application/json"
    doc = json.loads(body)
    want = {"error": "maintenance", "policy": policy}
    want.update(extra if extra is not None else MAINT["body"])
    got = dict(doc)
    r = got.pop("retry_after")
    assert got == want, doc
    assert header("retry-after") == str(r), (header("retry-after"), doc)
    assert ra[0] <= r <= ra[1], (r, ra)
    return r


def get(port, path, headers=()):
    status, hdrs, body, _ = h1_once(port, path, headers)
    return status, hdrs.get, body


def test_route_maintenance_answers_without_upstream(start_sluice, upstream):
    s = start_sluice(base_config(reject=REJECT, routes=routes(api=MAINT)))
    seen = set()
    for _ in range(8):
        status, h, body = get(s.port, "/v1/a")
        seen.add(check_maintenance(status, h, body, "api/maintenance"))
        assert h("x-maintenance") == "planned"
    assert len(seen) > 1, "Retry-After is not spread: %r" % seen
    assert upstream.seen("/v1/a") == 0
    assert get(s.port, "/other")[0] == 200  # the other route is not in maintenance
    assert s.metric("sluice_rejections_total", route="api", policy="api/maintenance",
                    reason="maintenance") == 8


def test_retry_after_is_clamped_to_reject_max(start_sluice, upstream):
    # Default reject: max 120s. base 300s clamps to 120, w = 60: [60, 120].
    s = start_sluice(base_config(routes=routes(api={"retry_after": "300s", "status": 599})))
    status, h, body = get(s.port, "/v1/a")
    check_maintenance(status, h, body, "api/maintenance", want_status=599, ra=(60, 120), extra={})
    assert h("x-maintenance") is None
    assert upstream.seen("/v1/a") == 0


def test_top_level_for_every_route_and_a_route_overrides_it(start_sluice, upstream):
    own = {"status": 502, "retry_after": "10s", "body": {"message": "api is moving"}}
    s = start_sluice(base_config(reject=REJECT, maintenance=MAINT, routes=routes(api=own)))
    status, h, body = get(s.port, "/anything")
    check_maintenance(status, h, body, "maintenance")
    status, h, body = get(s.port, "/v1/a")
    # 10s: w = 5, [10, 15]; the top level's body and headers do not apply.
    check_maintenance(status, h, body, "api/maintenance", want_status=502, ra=(10, 15),
                      extra={"message": "api is moving"})
    assert h("x-maintenance") is None
    assert upstream.seen("/anything") == 0 and upstream.seen("/v1/a") == 0
    assert s.metric("sluice_rejections_total", route="default", policy="maintenance",
                    reason="maintenance") == 1


def test_maintenance_comes_before_the_blocklist_and_charges_no_quota(start_sluice, upstream):
    cfg = admission_config(
        reject=REJECT, maintenance=MAINT, blocklist=BLOCK,
        routes=[route(rate_limits=[{"key": "route", "rate": "1/h", "burst": 1}])])
    s = start_sluice(cfg)
    for _ in range(3):
        status, h, body = get(s.port, "/x", BLOCKED_DEVICE)  # blocked, and over the limit
        check_maintenance(status, h, body, "maintenance")
        status, h, body = get(s.port, "/x")
        check_maintenance(status, h, body, "maintenance")
    assert s.metric("sluice_rejections_total", reason="maintenance") == 6
    assert s.metric("sluice_rejections_total", reason="blocklist") == 0
    assert s.metric("sluice_rejections_total", reason="rate_limit") == 0
    assert upstream.seen("/x") == 0


def _reload_to(s, how, before):
    if how == "sighup":
        s.reload()
    else:
        status, _, body = s.admin_get("/reload", method="POST")
        assert status == 200, body
    wait_for(lambda: generation(s) > before, 5.0, what="the reload")


@pytest.mark.parametrize("how", ["sighup", "post"])
def test_dropin_turns_it_on_and_off(start_sluice, upstream, tmp_path, how):
    confd = tmp_path / "conf.d"
    confd.mkdir()
    s = start_sluice(base_config(reject=REJECT, include=str(confd)))
    assert get(s.port, "/v1/a")[0] == 200
    drop = confd / "90-maintenance.yaml"
    tmp = confd / ".90-maintenance.yaml.tmp"
    tmp.write_text(to_yaml({"maintenance": MAINT}))
    g0 = generation(s)
    os.replace(str(tmp), str(drop))
    _reload_to(s, how, g0)
    n = upstream.seen("/v1/a")
    status, h, body = get(s.port, "/v1/a")
    check_maintenance(status, h, body, "maintenance")
    assert upstream.seen("/v1/a") == n
    g1 = generation(s)
    drop.unlink()
    _reload_to(s, how, g1)
    assert get(s.port, "/v1/a")[0] == 200
    assert upstream.seen("/v1/a") == n + 1


def test_shadow_counts_and_lets_through(start_sluice, upstream):
    m = dict(MAINT, mode="shadow")
    s = start_sluice(base_config(reject=REJECT, maintenance=m))
    for _ in range(3):
        assert get(s.port, "/v1/a")[0] == 200
    assert upstream.seen("/v1/a") == 3
    assert s.metric("sluice_shadow_rejections_total", policy="maintenance",
                    reason="maintenance") == 3
    assert s.metric("sluice_rejections_total", reason="maintenance") == 0


def test_h2(start_sluice, upstream):
    s = start_sluice(base_config(reject=REJECT, maintenance=MAINT))
    with H2Client(s.port) as c:
        sid = c.start("GET", "/v1/h2", [])
        st = c.wait_all([sid], 10)[0]
    check_maintenance(st.status, st.header, st.body, "maintenance")
    assert st.header("x-maintenance") == "planned"
    assert upstream.seen("/v1/h2") == 0


def test_websocket_upgrade_is_answered_with_the_refusal(start_sluice, upstream):
    s = start_sluice(base_config(reject=REJECT, maintenance=MAINT))
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    try:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        hdrs = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        n = int(hdrs["content-length"])
        while len(body) < n:
            chunk = sock.recv(65536)
            assert chunk
            body += chunk
    finally:
        sock.close()
    assert "upgrade" not in hdrs
    check_maintenance(int(lines[0].split(" ")[1]), hdrs.get, body, "maintenance")
    assert upstream.seen("/ws") == 0


def test_text_body_keeps_working(start_sluice):
    rj = dict(REJECT, body="text")
    s = start_sluice(base_config(reject=rj, maintenance=MAINT))
    status, h, body = get(s.port, "/v1/a")
    assert status == 503
    assert h("content-type").startswith("text/plain")
    assert body.startswith(b"maintenance (policy maintenance); retry after ")
    assert 300 <= int(h("retry-after")) <= 450
    assert h("x-maintenance") == "planned"


def test_explain_and_print_round_trip(start_sluice, tmp_path):
    own = {"status": 502, "retry_after": "10s", "mode": "shadow",
           "body": {"message": "a \"quoted\" text", "n": 1.5}, "headers": {"x-a": "b c"}}
    s = start_sluice(base_config(reject=REJECT, maintenance=MAINT, routes=routes(api=own)))
    status, _, body = s.admin_get("/explain?path=/x")
    assert status == 200, body
    doc = json.loads(body)
    assert {"policy": "maintenance", "kind": "maintenance", "verdict": "reject",
            "why": "in maintenance (top level): 503, retry after 300 s"} in doc["policies"], doc
    assert doc["verdict"]["status"] == 503 and doc["verdict"]["error"] == "maintenance"
    p = run_cli(["check", "-c", s.config_path, "--print"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("maintenance:\n") == 2, p.stdout  # top level and route api only
    assert ('maintenance:\n  status: 503\n  retry_after: 5m\n  body:\n'
            '    "message": "back at 14:00"\n    "eta_s": 300\n    "planned": true\n'
            '  headers:\n    "x-maintenance": "planned"\n') in p.stdout, p.stdout
    printed = tmp_path / "printed.yaml"
    printed.write_text(p.stdout)
    q = run_cli(["check", "-c", str(printed), "--print"])
    assert q.returncode == 0, q.stderr
    assert q.stdout == p.stdout


BAD = """listeners:
  - name: public
    address: "127.0.0.1:1"
upstreams:
  identity: { address: "127.0.0.1:2" }
maintenance:
  status: 302
  retry_after: 5
  body: { error: nope, fine: 1, list: [1] }
  headers: { Connection: close, "bad name": x, x-ok: "a\\nb" }
routes:
  - name: r
    upstream: identity
    maintenance: { statu: 503 }
"""


def test_bad_config_is_refused_at_its_position(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    p = run_cli(["check", "-c", str(path)])
    assert p.returncode != 0
    err = p.stderr
    assert "%s:7:11: status:" % path in err, err
    assert "%s:8:16: retry_after:" % path in err, err
    assert ("%s:9:11: body: 'error' is a built-in field of the rejection body "
            "(error, policy, retry_after)" % path) in err, err
    assert "%s:9:39: body: 'list' must be a string, a number or a boolean" % path in err, err
    assert ("%s:10:14: headers: 'connection' is a hop-by-hop, framing or refusal header"
            % path) in err, err
    assert "%s:10:33: headers: 'bad name' is not a header name" % path in err, err
    assert "%s:10:54: headers: 'x-ok' must be a string without control" % path in err, err
    assert "%s:14:20: unknown key 'statu' in maintenance (did you mean 'status'?)" % path \
        in err, err


# ---- shaping aborts -----------------------------------------------------------------

def test_shaping_abort_has_a_spread_retry_after(start_sluice, upstream):
    # reject min 4s, jitter 0.5: base 4 (the minimum), w = 2: [4, 6].
    rj = {"retry_after": {"min": "4s", "max": "1h", "jitter": 0.5}}
    cfg = base_config(reject=rj, shaping=[{"match": {"path_prefix": "/v1/"},
                                           "abort": {"percent": 100, "status": 503}}])
    s = start_sluice(cfg)
    seen = set()
    for _ in range(10):
        status, h, body = get(s.port, "/v1/x")
        assert status == 503
        doc = json.loads(body)
        assert doc["error"] == "shaped_abort"
        assert h("retry-after") is not None, "no Retry-After on a shaping abort"
        ra = int(h("retry-after"))
        assert ra == doc["retry_after"] and 4 <= ra <= 6, (ra, doc)
        seen.add(ra)
    assert len(seen) > 1, seen
    assert upstream.seen("/v1/x") == 0
