"""HTTP/2 cleartext with prior knowledge: curl, python3-h2, nghttp, h2load."""

import subprocess
import time

import pytest

from helpers import MiB, curl, pattern_bytes, random_bytes, run_h2load, sha256_hex

SIZES = [0, 1, 8 * MiB]


def test_get_with_curl(sluice, upstream):
    r = curl(sluice.url("/v1/hello?x=1"), "--http2-prior-knowledge")
    assert r.status == 200
    assert r.http_version == "2"
    assert r.header("content-type") == "application/json"
    body = r.json()
    assert (body["ok"], body["method"], body["path"], body["target"]) == (True, "GET", "/v1/hello",
                                                                          "/v1/hello?x=1")
    assert body["version"] == "HTTP/1.1"  # the upstream side is HTTP/1.1
    assert upstream.stats()["errors"] == 0


def test_get_with_h2_client(sluice, h2_client_factory):
    c = h2_client_factory(sluice.port)
    st = c.get("/v1/hello", [("x-device-class", "airtame-hub")])
    assert st.status == 200
    assert st.header("content-type") == "application/json"
    body = st.json()
    assert body["path"] == "/v1/hello"
    assert body["headers"]["x-device-class"] == "airtame-hub"
    assert body["headers"]["host"] == "127.0.0.1:%d" % sluice.port  # from :authority
    assert c.get("/v1/again").status == 200  # same connection


def test_get_with_nghttp(sluice):
    p = subprocess.run(["nghttp", "-v", sluice.url("/v1/nghttp")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, out + p.stderr.decode(errors="replace")
    assert ":status: 200" in out
    assert '"path": "/v1/nghttp"' in out


def test_upload_with_nghttp(sluice, tmp_path):
    data = random_bytes(3 * MiB, seed=11)
    f = tmp_path / "body"
    f.write_bytes(data)
    p = subprocess.run(["nghttp", "-d", str(f), sluice.url("/sha256")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr
    assert sha256_hex(data) in p.stdout.decode()


def test_forwarding_headers_and_authority(sluice, h2_client_factory):
    c = h2_client_factory(sluice.port)
    st = c.request("GET", "/v1/fwd", authority="api.example.test")
    h = st.json()["headers"]
    assert h["host"] == "api.example.test"
    assert h["x-forwarded-for"].split(",")[-1].strip() == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    fwd = h["forwarded"].lower().replace('"', "")
    assert "for=127.0.0.1" in fwd and "proto=http" in fwd


def test_cookie_crumbs_are_joined(sluice, h2_client_factory):
    """RFC 9113 §8.2.3: split cookie fields become one for HTTP/1.1."""
    c = h2_client_factory(sluice.port)
    st = c.get("/v1/cookie", [("cookie", "a=1"), ("cookie", "b=2")])
    assert st.json()["headers"]["cookie"] == "a=1; b=2"
    assert [n for n, _ in st.json()["header_list"]].count("cookie") == 1


def test_te_trailers_not_forwarded(sluice, h2_client_factory):
    c = h2_client_factory(sluice.port)
    st = c.get("/v1/te", [("te", "trailers")])
    assert st.status == 200
    assert "te" not in st.json()["headers"]


@pytest.mark.parametrize("n", SIZES)
def test_upload_with_curl(sluice, tmp_path, n):
    data = random_bytes(n, seed=n + 5)
    f = tmp_path / "body"
    f.write_bytes(data)
    r = curl(sluice.url("/sha256"), "--http2-prior-knowledge", "--data-binary", "@%s" % f)
    assert r.http_version == "2"
    assert r.json() == {"sha256": sha256_hex(data), "length": n}


@pytest.mark.parametrize("n", SIZES)
def test_upload_with_h2_client(sluice, h2_client_factory, n):
    data = random_bytes(n, seed=n + 6)
    c = h2_client_factory(sluice.port)
    st = c.request("POST", "/sha256", body=data, timeout=60)
    assert st.status == 200
    assert st.json() == {"sha256": sha256_hex(data), "length": n}


@pytest.mark.parametrize("chunked_resp", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("n", SIZES)
def test_download_with_curl(sluice, n, chunked_resp):
    r = curl(sluice.url("/bytes?n=%d%s" % (n, "&chunked=1" if chunked_resp else "")),
             "--http2-prior-knowledge")
    assert r.http_version == "2"
    assert r.status == 200
    assert len(r.body) == n
    assert sha256_hex(r.body) == sha256_hex(pattern_bytes(0, n))
    if not chunked_resp:
        assert r.header("content-length") == str(n)


@pytest.mark.parametrize("n", SIZES)
def test_download_with_h2_client(sluice, h2_client_factory, n):
    c = h2_client_factory(sluice.port)
    st = c.get("/bytes?n=%d" % n, timeout=60)
    assert st.status == 200
    assert len(st.body) == n
    assert sha256_hex(st.body) == sha256_hex(pattern_bytes(0, n))


def test_echo_8mib_both_ways_at_once(sluice, h2_client_factory):
    data = random_bytes(8 * MiB, seed=12)
    c = h2_client_factory(sluice.port)
    for q in ("", "?chunked=1"):
        st = c.request("POST", "/echo" + q, body=data, timeout=60)
        assert st.status == 200
        assert len(st.body) == len(data)
        assert sha256_hex(st.body) == sha256_hex(data)


@pytest.mark.parametrize("method,path,status", [
    ("HEAD", "/bytes?n=1000", 200),
    ("HEAD", "/v1/head", 200),
    ("GET", "/204", 204),
    ("GET", "/304", 304),
])
def test_bodyless_responses(sluice, h2_client_factory, method, path, status):
    c = h2_client_factory(sluice.port)
    st = c.request(method, path)
    assert st.status == status
    assert st.body == b""
    assert st.ended
    if path == "/bytes?n=1000":
        assert st.header("content-length") == "1000"
    assert c.get("/v1/after").status == 200


def test_streams_are_multiplexed(sluice, h2_client_factory):
    """A slow stream does not hold up the others on the same connection."""
    c = h2_client_factory(sluice.port)
    slow = c.start("GET", "/slow?ms=1500")
    t0 = time.monotonic()
    fast = [c.start("GET", "/v1/fast%d" % i) for i in range(30)]
    done = c.wait_all(fast, timeout=10)
    fast_elapsed = time.monotonic() - t0
    assert [s.status for s in done] == [200] * 30
    assert [s.json()["path"] for s in done] == ["/v1/fast%d" % i for i in range(30)]
    assert not c.streams[slow].done
    assert fast_elapsed < 1.4, "fast streams waited for the slow one (%.2fs)" % fast_elapsed
    assert c.wait(slow, timeout=10).status == 200


def test_concurrent_uploads_on_one_connection(sluice, h2_client_factory):
    c = h2_client_factory(sluice.port)
    bodies = [random_bytes(300000 + i, seed=i) for i in range(8)]
    # Each body is sent in full before the next stream opens, while earlier
    # streams' answers arrive on the same connection.
    sids = [c.start("POST", "/sha256", body=b, timeout=60) for b in bodies]
    for sid, b in zip(sids, bodies):
        assert c.wait(sid, 60).json() == {"sha256": sha256_hex(b), "length": len(b)}


@pytest.mark.timeout(300)
def test_h2load_20000_requests(sluice, upstream):
    res = run_h2load(sluice.url("/v1/load"), "-n", "20000", "-c", "10", "-m", "10", timeout=240)
    assert res["rc"] == 0, res["output"]
    assert res["succeeded"] == 20000, res["output"]
    assert (res["failed"], res["errored"], res["timeout"]) == (0, 0, 0), res["output"]
    assert res.get("2xx") == 20000, res["output"]
    assert upstream.seen("/v1/load") == 20000
    assert upstream.stats()["errors"] == 0


@pytest.mark.parametrize("method", ["HEAo", "FOO", "get"])
def test_unknown_method_is_501_and_not_forwarded(sluice, upstream, h2_client_factory, method):
    """:method only has to be a token for nghttp2; one that HTTP/1.1 origins
    (and sluice's own h1 frontend) do not know is answered 501 (RFC 9110
    §15.6.2) instead of reaching the origin (found by fuzz_h2)."""
    c = h2_client_factory(sluice.port)
    st = c.request(method, "/v1/method")
    assert st.status == 501
    assert st.json()["error"] == "method_not_implemented"
    assert upstream.seen("/v1/method") == 0
    assert c.request("PATCH", "/v1/method").status == 200  # known ones pass
