"""Routes cannot be bypassed by spelling a path differently (issue 8).

sluice normalises the request path (RFC 3986 §6.2.2: unreserved
characters percent-decoded, percent-encoding upper-cased, dot segments
removed, slashes merged), matches routes on it with segment boundaries,
and forwards that same path, so the route's limits and the origin agree on
the resource. Paths with no safe normal form (%2F, %5C, '\\', NUL and other
control characters, bad escapes, ".." above the root) are refused with 400
and never reach the origin.
"""

import json

import pytest

from admission_helpers import admission_config, route
from helpers import H1Conn, H2Client
from ws_helpers import WSConn

TRICKS = ["/v1//connect", "/v1/%63onnect", "/v1/./connect", "/v1/x/../connect",
          "/v1/%2e/connect", "//v1/connect", "/v1/connect/."]
BURST = 2


def limited_config():
    """Route "connect" on /v1/connect with a per-client burst of BURST and a
    rate too slow to refill during a test; everything else is "default",
    unlimited."""
    return admission_config(routes=[
        route("connect", "/v1/connect",
              rate_limits=[{"key": "client_ip", "rate": "1/h", "burst": BURST}]),
        route("default", "/"),
    ])


def xff(ip):
    return [("X-Forwarded-For", ip)]


@pytest.mark.parametrize("trick", TRICKS)
def test_tricked_paths_hit_the_connect_limit_h1(start_sluice, upstream, trick):
    s = start_sluice(limited_config())
    ip = "10.1.%d.1" % TRICKS.index(trick)
    with H1Conn(s.port) as c:
        for _ in range(BURST):
            assert c.request("GET", trick, xff(ip)).status == 200
        r = c.request("GET", trick, xff(ip))
        assert r.status == 429, (trick, r)
        assert r.json()["policy"] == "connect/client_ip"
        # The plain spelling shares the same bucket: it is the same route.
        assert c.request("GET", "/v1/connect", xff(ip)).status == 429
    # The origin saw the normalised path, never the trick.
    assert upstream.stats()["paths"] == {"/v1/connect" + ("/" if trick.endswith("/.") else ""):
                                         BURST}


def test_tricked_paths_hit_the_connect_limit_h2(start_sluice, upstream):
    s = start_sluice(limited_config())
    with H2Client(s.port) as c:
        for i, trick in enumerate(TRICKS[:4]):
            ip = "10.2.%d.1" % i
            for _ in range(BURST):
                st = c.get(trick, xff(ip))
                assert st.status == 200, (trick, st.status)
                assert st.json()["path"] == "/v1/connect"
            st = c.get(trick, xff(ip))
            assert st.status == 429, (trick, st.status)
    assert upstream.stats()["paths"] == {"/v1/connect": 4 * BURST}


def test_origin_receives_normalised_path_and_untouched_query(sluice, upstream):
    with H1Conn(sluice.port) as c:
        r = c.request("GET", "/a//b/./c/../%7e%41%3a?x=//./%2f&y=%zz")
        assert r.status == 200
        assert r.json()["target"] == "/a/b/~A%3A?x=//./%2f&y=%zz"
    with H2Client(sluice.port) as c:
        st = c.get("/a//b/%2E%2E/d?q=.././")
        assert st.status == 200
        assert st.json()["target"] == "/a/d?q=.././"


def test_prefix_matches_on_segment_boundary(start_sluice, upstream):
    s = start_sluice(limited_config())
    ip = "10.3.0.1"
    with H1Conn(s.port) as c:
        for _ in range(BURST):
            assert c.request("GET", "/v1/connect/sub", xff(ip)).status == 200
        assert c.request("GET", "/v1/connect?q=1", xff(ip)).status == 429
        # Not below /v1/connect: the default route, unlimited.
        for _ in range(BURST + 1):
            assert c.request("GET", "/v1/connector", xff(ip)).status == 200
    assert upstream.stats()["paths"]["/v1/connector"] == BURST + 1


REFUSED = {
    "/v1/a%2Fb": "path_encoded_slash",
    "/v1/a%2fb": "path_encoded_slash",
    "/v1/connect%2F..%2Fadmin": "path_encoded_slash",
    "/v1/a%5Cb": "path_backslash",
    "/v1/a%00b": "path_control_character",
    "/v1/a%0d%0aX-Injected:%201": "path_control_character",
    "/v1/a%zz": "path_bad_percent_encoding",
    "/v1/a%4": "path_bad_percent_encoding",
    "/../etc/passwd": "path_escapes_root",
    "/v1/../../x": "path_escapes_root",
    "/%2e%2e/x": "path_escapes_root",
}


@pytest.mark.parametrize("path", sorted(REFUSED))
def test_unsafe_paths_are_400_h1(sluice, upstream, path):
    with H1Conn(sluice.port) as c:
        r = c.request("GET", path)
        assert r.status == 400, (path, r)
        assert r.json()["error"] == REFUSED[path]
        # The connection stays usable: the framing was fine.
        assert c.request("GET", "/v1/ok").status == 200
    assert upstream.stats()["paths"] == {"/v1/ok": 1}


def test_raw_backslash_is_400_h1(sluice, upstream):
    with H1Conn(sluice.port) as c:
        c.send(b"GET /v1/a\\b HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 400
    assert upstream.stats()["total"] == 0


def test_unsafe_paths_are_400_h2(sluice, upstream):
    with H2Client(sluice.port) as c:
        for path, err in sorted(REFUSED.items()):
            st = c.get(path)
            assert st.status == 400, (path, st.status)
            assert st.json()["error"] == err
        st = c.get("/v1/a\\b")
        assert st.status == 400 and st.json()["error"] == "path_backslash"
    assert upstream.stats()["total"] == 0


def test_websocket_upgrade_path_is_normalised(start_sluice, upstream):
    cfg = admission_config(routes=[
        {"name": "ws", "match": {"path_prefix": "/ws", "websocket": True}, "upstream": "identity",
         "rate_limits": [{"key": "client_ip", "rate": "1/h", "burst": 1}]},
        route("default", "/"),
    ])
    s = start_sluice(cfg)
    c = WSConn(s.port)
    try:
        r = c.upgrade("/x/..//ws", headers=xff("10.4.0.1"))
        assert r.status == 101, r
    finally:
        c.close()
    c = WSConn(s.port)
    try:
        r = c.upgrade("/%77s", headers=xff("10.4.0.1"))
        assert r.status == 429, r  # the ws route's burst of 1 is spent
    finally:
        c.close()
    assert upstream.stats()["paths"] == {"/ws": 1}


def test_explain_shows_normalised_path(start_sluice, upstream):
    import json
    import urllib.parse
    import urllib.request
    s = start_sluice(limited_config())
    q = urllib.parse.urlencode({"path": "/v1//connect"})
    with urllib.request.urlopen(s.admin_url("/explain?" + q), timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["request"]["path"] == "/v1/connect"
    assert doc["request"]["raw_path"] == "/v1//connect"
    assert doc["route"] == "connect"


def test_raw_control_characters_in_h2_path_never_reach_the_origin(sluice, upstream):
    """A raw NUL or CR in :path: refused (by nghttp2 as a malformed request,
    RST_STREAM, or by sluice with 400), never forwarded truncated."""
    with H2Client(sluice.port) as c:
        for path in ("/v1/a\x00/../../x", "/v1/a\rb", "/v1/a b"):
            hdrs = [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                    (":path", path)]
            try:
                c.conn.config.validate_outbound_headers = False
                c.conn.config.normalize_outbound_headers = False
            except AttributeError:
                pass
            sid = c.start("GET", path, raw_headers=hdrs)
            st = c.wait(sid)
            assert st.status in (None, 400), (path, st.status)
        assert c.get("/v1/ok").status == 200
    assert upstream.stats()["paths"] == {"/v1/ok": 1}


def test_raw_non_ascii_and_query_controls_in_h2_path_are_400(sluice, upstream):
    """Bytes an HTTP/1.1 request line cannot carry raw, which an h2 :path
    can: a byte beyond ASCII in the path (found by fuzz_h2), a space or a
    control character in the query. 400 with the reason; the origin sees
    nothing of them."""
    with H2Client(sluice.port, validate=False) as c:
        for path, error in ((b"/up/\x92", "path_invalid_character"),
                            (b"/v1/a?x=\xc3\xa9", "path_invalid_character"),
                            (b"/v1/a?x y", "path_invalid_character"),
                            (b"/v1/a?x\x01", "path_control_character")):
            hdrs = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"),
                    (b":path", path)]
            sid = c.start("GET", "/", raw_headers=hdrs)
            st = c.wait(sid)
            if st.status is not None:  # nghttp2 may reset it first: also never forwarded
                assert st.status == 400, (path, st.status)
                assert json.loads(st.body)["error"] == error, (path, st.body)
        assert c.get("/v1/ok").status == 200
    assert upstream.stats()["paths"] == {"/v1/ok": 1}


def test_cli_explain_shows_normalised_path_and_refusal():
    import json
    import os
    from helpers import run_cli
    example = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "examples",
                           "sluice.yaml")
    p = run_cli(["explain", "-c", example, "/v1/%63onnect"])
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["request"]["path"] == "/v1/connect" and doc["route"] == "connect"
    p = run_cli(["explain", "-c", example, "/v1/a%5Cb"])
    doc = json.loads(p.stdout)
    assert doc["verdict"]["status"] == 400 and doc["verdict"]["error"] == "path_backslash"


def test_config_with_unnormalised_prefix_is_refused(tmp_path):
    from helpers import run_cli
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("listeners: [ { name: public, address: \"127.0.0.1:1\" } ]\n"
                   "upstreams: { identity: { address: \"127.0.0.1:2\" } }\n"
                   "routes:\n"
                   "  - name: connect\n"
                   "    match: { path_prefix: \"/v1//connect\" }\n"
                   "    upstream: identity\n")
    p = run_cli(["check", "-c", str(cfg)])
    assert p.returncode != 0
    assert "bad.yaml:5:27: path_prefix: '/v1//connect' is not a normalised path" in p.stderr, \
        p.stderr
