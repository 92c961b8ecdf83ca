"""HTTP/1.1 data plane: curl and raw sockets through sluice to upstream.py."""

import time

import pytest

from helpers import (MiB, H1Conn, base_config, build_request, chunked, curl, pattern_bytes,
                     random_bytes, sha256_hex)

SIZES = [0, 1, 8 * MiB]


def test_get_small_json_with_curl(sluice, upstream):
    r = curl(sluice.url("/v1/hello?x=1"))
    assert r.status == 200
    assert r.http_version == "1.1"
    assert r.header("content-type") == "application/json"
    body = r.json()
    assert body["ok"] is True
    assert body["method"] == "GET"
    assert body["path"] == "/v1/hello"
    assert body["target"] == "/v1/hello?x=1"
    assert upstream.seen("/v1/hello") == 1
    assert upstream.stats()["errors"] == 0


def test_request_target_forwarded_verbatim(sluice):
    # A path already in normal form (test_paths.py: %2F in a path is now
    # refused, other escapes are kept) and its query go out byte for byte.
    target = "/v1/a%20b/%E2%82%AC/..x?q=%2F&empty=&x=%e2%82%ac&y=/./"
    with H1Conn(sluice.port) as c:
        r = c.request("GET", target)
    assert r.status == 200
    assert r.json()["target"] == target


def test_keepalive_two_requests_one_connection(sluice):
    with H1Conn(sluice.port) as c:
        r1 = c.request("GET", "/v1/one")
        r2 = c.request("GET", "/v1/two")
        assert not c.wait_closed(0.3), "sluice closed a keep-alive connection"
    assert (r1.status, r2.status) == (200, 200)
    assert r1.json()["path"] == "/v1/one"
    assert r2.json()["path"] == "/v1/two"
    for r in (r1, r2):
        assert "close" not in (r.header("connection") or "").lower()


def test_upstream_connection_reused(sluice, upstream):
    """Sequential requests share a pooled upstream connection."""
    with H1Conn(sluice.port) as c:
        conns = {c.request("GET", "/v1/seq%d" % i).json()["conn"] for i in range(10)}
    assert len(conns) == 1, "upstream connections used: %r" % conns
    for i in range(10):  # new client connections, any worker
        with H1Conn(sluice.port) as c:
            assert c.request("GET", "/v1/fresh%d" % i).status == 200
    assert upstream.stats()["connections"] <= sluice.workers + 1


def test_pipelined_requests_answered_in_order(sluice, upstream):
    reqs = (build_request("GET", "/slow?ms=300") + build_request("GET", "/v1/p2")
            + build_request("POST", "/v1/p3", body=b"three"))
    with H1Conn(sluice.port) as c:
        c.send(reqs)
        rs = [c.read_response(method=m) for m in ("GET", "GET", "POST")]
    assert [r.status for r in rs] == [200, 200, 200]
    assert [r.json()["path"] for r in rs] == ["/slow", "/v1/p2", "/v1/p3"]
    assert rs[2].json()["body_length"] == 5


def test_chunked_request_body(sluice):
    data = random_bytes(100003)
    with H1Conn(sluice.port) as c:
        c.send(build_request("POST", "/sha256", [("Transfer-Encoding", "chunked")]) + chunked(data, 7000))
        r = c.read_response()
    assert r.status == 200
    assert r.json() == {"sha256": sha256_hex(data), "length": len(data)}


def test_chunked_with_extensions_and_trailer_split_across_writes(sluice):
    body = (b"5;name=value\r\nhello\r\n"
            b"6\r\n world\r\n"
            b"0\r\nX-Trailer: t\r\n\r\n")
    msg = build_request("POST", "/sha256", [("Transfer-Encoding", "chunked")]) + body
    with H1Conn(sluice.port) as c:
        for i in range(0, len(msg), 7):  # a few bytes at a time
            c.send(msg[i:i + 7])
            time.sleep(0.005)
        r = c.read_response()
    assert r.status == 200
    assert r.json() == {"sha256": sha256_hex(b"hello world"), "length": 11}


def test_expect_100_continue(sluice):
    data = random_bytes(50000)
    with H1Conn(sluice.port) as c:
        c.send(build_request("POST", "/sha256", [("Expect", "100-continue"),
                                                  ("Content-Length", str(len(data)))]))
        version, status, _, _ = c.read_head(timeout=3)  # the client waits for it
        assert status == 100
        c.send(data)
        r = c.read_response()
    assert r.status == 200
    assert r.json() == {"sha256": sha256_hex(data), "length": len(data)}


def test_expect_100_continue_with_curl(sluice, tmp_path):
    data = random_bytes(2 * MiB, seed=7)
    f = tmp_path / "body"
    f.write_bytes(data)
    # curl would send the body after 1 s without an answer: insist on 100.
    r = curl(sluice.url("/sha256"), "--data-binary", "@%s" % f, "-H", "Expect: 100-continue",
             "--expect100-timeout", "10")
    assert r.status == 200
    assert r.json()["sha256"] == sha256_hex(data)
    assert r.time_total < 5


@pytest.mark.parametrize("n", SIZES)
def test_upload_content_length(sluice, tmp_path, n):
    data = random_bytes(n, seed=n)
    f = tmp_path / "body"
    f.write_bytes(data)
    r = curl(sluice.url("/sha256"), "--data-binary", "@%s" % f)
    assert r.status == 200
    assert r.json() == {"sha256": sha256_hex(data), "length": n}


@pytest.mark.parametrize("n", SIZES)
def test_upload_chunked(sluice, tmp_path, n):
    data = random_bytes(n, seed=n + 1)
    f = tmp_path / "body"
    f.write_bytes(data)
    r = curl(sluice.url("/sha256"), "--data-binary", "@%s" % f, "-H", "Transfer-Encoding: chunked")
    assert r.status == 200
    assert r.json() == {"sha256": sha256_hex(data), "length": n}


@pytest.mark.parametrize("chunked_resp", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("n", SIZES)
def test_download(sluice, n, chunked_resp):
    r = curl(sluice.url("/bytes?n=%d%s" % (n, "&chunked=1" if chunked_resp else "")))
    assert r.status == 200
    assert len(r.body) == n
    assert sha256_hex(r.body) == sha256_hex(pattern_bytes(0, n))
    if not chunked_resp:
        assert r.header("content-length") == str(n)


def test_echo_8mib_both_ways_at_once(sluice, tmp_path):
    """The upstream streams the body back while it still arrives."""
    data = random_bytes(8 * MiB, seed=3)
    f = tmp_path / "body"
    f.write_bytes(data)
    for q in ("", "?chunked=1"):
        r = curl(sluice.url("/echo" + q), "--data-binary", "@%s" % f)
        assert r.status == 200
        assert len(r.body) == len(data)
        assert sha256_hex(r.body) == sha256_hex(data)


@pytest.mark.parametrize("method,path,status", [
    ("HEAD", "/bytes?n=1000", 200),
    ("HEAD", "/bytes?n=1000&chunked=1", 200),
    ("HEAD", "/v1/head", 200),
    ("GET", "/204", 204),
    ("GET", "/304", 304),
    ("GET", "/status/204", 204),
])
def test_bodyless_responses(sluice, method, path, status):
    with H1Conn(sluice.port) as c:
        r = c.request(method, path)
        assert r.status == status
        assert r.body == b""
        assert c.pending(0.3) == b"", "bytes after a body-less response"
        if path == "/bytes?n=1000":
            assert r.header("content-length") == "1000"
        if status == 204:
            assert r.header("content-length") is None
            assert r.header("transfer-encoding") is None
        if status == 304:
            assert r.header("etag") == '"v1"'
        r2 = c.request("GET", "/v1/after")  # the connection is still in sync
    assert r2.status == 200
    assert r2.json()["path"] == "/v1/after"


def test_forwarding_headers(sluice):
    with H1Conn(sluice.port) as c:
        r = c.request("GET", "/v1/fwd")
    h = r.json()["headers"]
    assert h["x-forwarded-for"].split(",")[-1].strip() == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    fwd = h["forwarded"].lower().replace('"', "")
    assert "for=127.0.0.1" in fwd
    assert "proto=http" in fwd


def test_client_x_forwarded_for_does_not_hide_the_peer(sluice):
    """An untrusted client's X-Forwarded-For may be kept or dropped, but the
    address sluice saw is the last hop the upstream reads."""
    with H1Conn(sluice.port) as c:
        r = c.request("GET", "/v1/xff", [("X-Forwarded-For", "203.0.113.9")])
    assert r.json()["headers"]["x-forwarded-for"].split(",")[-1].strip() == "127.0.0.1"


def test_hop_by_hop_headers_removed(sluice):
    headers = [
        ("Connection", "foo, keep-alive"),
        ("Foo", "bar"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Upgrade", "foo/1"),
        ("Proxy-Connection", "keep-alive"),
        ("X-Keep", "yes"),
    ]
    with H1Conn(sluice.port) as c:
        r = c.request("GET", "/v1/hop", headers)
    assert r.status == 200
    h = r.json()["headers"]
    for name in ("foo", "keep-alive", "te", "upgrade", "proxy-connection"):
        assert name not in h, "%s reached the upstream: %r" % (name, h)
    assert "foo" not in h.get("connection", "").lower()
    assert h["x-keep"] == "yes"


def test_transfer_encoding_not_passed_through(sluice):
    """The client's framing is replaced by sluice's own."""
    with H1Conn(sluice.port) as c:
        c.send(build_request("POST", "/v1/te", [("Transfer-Encoding", "chunked")]) + chunked(b"hello", 2))
        r = c.read_response()
    body = r.json()
    assert body["body_length"] == 5
    te = body["headers"].get("transfer-encoding")
    assert te in (None, "chunked")
    assert not (te and "content-length" in body["headers"])


@pytest.mark.parametrize("host", [None, "api.example.test", "api.example.test:8443"])
def test_host_forwarded(sluice, host):
    args = [] if host is None else ["-H", "Host: %s" % host]
    r = curl(sluice.url("/v1/host"), *args)
    assert r.json()["headers"]["host"] == (host or "127.0.0.1:%d" % sluice.port)


def test_response_headers_passed_back(sluice):
    with H1Conn(sluice.port) as c:
        r = c.request("GET", "/304")
        r2 = c.request("GET", "/v1/x")
    assert r.header("etag") == '"v1"'
    assert r2.header("x-upstream-conn") is not None


def test_upstream_error_status_passed_through(sluice):
    r = curl(sluice.url("/status/503"))
    assert r.status == 503
    assert r.json() == {"status": 503, "from": "upstream"}


def test_http10_request(sluice):
    with H1Conn(sluice.port) as c:
        c.send(b"GET /v1/old HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["path"] == "/v1/old"
        assert c.wait_closed(3), "HTTP/1.0 without keep-alive: the connection must close"


def test_many_headers_below_the_limits(sluice):
    headers = [("X-H%02d" % i, "v%d" % i) for i in range(80)] + [("X-Big", "b" * 10000)]
    with H1Conn(sluice.port) as c:
        r = c.request("GET", "/v1/many", headers)
    assert r.status == 200
    h = r.json()["headers"]
    assert h["x-h79"] == "v79"
    assert h["x-big"] == "b" * 10000


@pytest.mark.timeout(30)
def test_idle_keepalive_connection_closed(start_sluice):
    cfg = base_config()
    cfg["listeners"][0]["timeouts"] = {"request_header": "5s", "idle": "1s"}
    s = start_sluice(cfg)
    with H1Conn(s.port) as c:
        assert c.request("GET", "/v1/idle").status == 200
        t0 = time.monotonic()
        assert c.wait_closed(5), "idle connection still open after 5 s (idle: 1s)"
        assert 0.5 <= time.monotonic() - t0 <= 4
        assert c.buf == b"", "unexpected bytes before close: %r" % c.buf[:200]


def test_connection_close_from_client(sluice):
    with H1Conn(sluice.port) as c:
        r = c.request("GET", "/v1/bye", [("Connection", "close")])
        assert r.status == 200
        assert c.wait_closed(3)
