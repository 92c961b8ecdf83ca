"""TLS listeners: ALPN h2 and http/1.1, ECDSA and RSA certificates, TLS 1.2+."""

import socket
import ssl
import warnings

import pytest

from helpers import MiB, H1Conn, H2Client, base_config, curl, random_bytes, run_cli, sha256_hex

KINDS = ["ecdsa", "rsa"]


@pytest.fixture(params=KINDS)
def cert(request, tls_cert):
    return tls_cert[request.param]


@pytest.fixture
def tls_sluice(start_sluice, cert):
    cfg = base_config()
    cfg["listeners"][0]["tls"] = {"certificate": cert.cert, "private_key": cert.key}
    return start_sluice(cfg)


def handshake(port, ctx, server_hostname="localhost"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        return ctx.wrap_socket(s, server_hostname=server_hostname)
    except BaseException:
        s.close()
        raise


def test_curl_alpn_h2(tls_sluice, cert):
    r = curl(tls_sluice.url("/v1/tls"), "--cacert", cert.cert, "--http2")
    assert r.status == 200
    assert r.http_version == "2"
    body = r.json()
    assert body["path"] == "/v1/tls"
    assert body["headers"]["x-forwarded-proto"] == "https"
    assert "proto=https" in body["headers"]["forwarded"].lower().replace('"', "")


def test_curl_alpn_http11(tls_sluice, cert):
    r = curl(tls_sluice.url("/v1/tls"), "--cacert", cert.cert, "--http1.1")
    assert r.status == 200
    assert r.http_version == "1.1"
    assert r.json()["headers"]["x-forwarded-proto"] == "https"


def test_curl_by_name_and_insecure(tls_sluice, cert):
    r = curl(tls_sluice.url("/v1/name", host="localhost"), "--cacert", cert.cert)
    assert r.status == 200
    r = curl(tls_sluice.url("/v1/insecure"), "-k", "--http2")
    assert (r.status, r.http_version) == (200, "2")


def test_presents_the_configured_certificate(tls_sluice, cert):
    with open(cert.cert) as f:
        want = ssl.PEM_cert_to_DER_cert(f.read())
    with handshake(tls_sluice.port, cert.client_context()) as s:
        assert s.getpeercert(binary_form=True) == want


@pytest.mark.parametrize("offer,want", [
    (["h2", "http/1.1"], "h2"),
    (["http/1.1", "h2"], "h2"),
    (["http/1.1"], "http/1.1"),
    (None, None),
])
def test_alpn_selection(tls_sluice, cert, offer, want):
    ctx = cert.client_context(alpn=offer)
    with handshake(tls_sluice.port, ctx) as s:
        assert s.selected_alpn_protocol() == want
    if want != "h2":  # no ALPN or http/1.1: HTTP/1.1 is spoken
        with H1Conn(tls_sluice.port, tls=cert.client_context(alpn=offer)) as c:
            r = c.request("GET", "/v1/alpn")
        assert r.status == 200
        assert r.json()["headers"]["x-forwarded-proto"] == "https"


def test_h2_client_over_tls(tls_sluice, cert):
    data = random_bytes(1 * MiB, seed=21)
    with H2Client(tls_sluice.port, tls=cert.client_context()) as c:
        st = c.get("/v1/h2tls")
        assert st.status == 200
        assert st.json()["headers"]["x-forwarded-proto"] == "https"
        st = c.request("POST", "/sha256", body=data, timeout=60)
        assert st.json() == {"sha256": sha256_hex(data), "length": len(data)}
        st = c.get("/bytes?n=%d" % (8 * MiB), timeout=60)
        assert len(st.body) == 8 * MiB


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_tls12_and_tls13_accepted(tls_sluice, cert, version):
    ctx = cert.client_context()
    v = getattr(ssl.TLSVersion, version)
    ctx.minimum_version = ctx.maximum_version = v
    with handshake(tls_sluice.port, ctx) as s:
        assert s.version() == version.replace("_", ".")


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_tls_refused(tls_sluice, cert, version):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer the old version at all
    try:
        s = handshake(tls_sluice.port, ctx)
    except ssl.SSLError as e:
        if "NO_PROTOCOLS_AVAILABLE" in str(e).upper() or "no protocols available" in str(e):
            pytest.skip("the local OpenSSL cannot offer %s at all" % version)
        # Refused by the server, as RFC 8446 appendix D / RFC 5246 E.1 say:
        # a protocol_version alert (70). Any other error (the client's own,
        # a reset, a certificate problem) is not that refusal.
        assert e.reason == "TLSV1_ALERT_PROTOCOL_VERSION", repr(e)
        return
    v = s.version()
    s.close()
    pytest.fail("sluice completed a %s handshake" % v)


def test_cleartext_on_tls_port_gets_no_http_answer(tls_sluice):
    with socket.create_connection(("127.0.0.1", tls_sluice.port), timeout=5) as s:
        s.sendall(b"GET /v1/plain HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
    # Not HTTP in any form (no 200, no 400 either): a TLS alert record
    # (content type 21) or nothing before the close.
    assert data == b"" or data[:1] == b"\x15", data[:100]


def test_tls_and_cleartext_listeners_side_by_side(start_sluice, tls_cert):
    cfg = base_config()
    cfg["listeners"].append({"name": "secure", "tls": {"certificate": tls_cert.ecdsa.cert,
                                                       "private_key": tls_cert.ecdsa.key}})
    s = start_sluice(cfg)
    r = curl(s.url("/v1/a", listener="public"), "--http2-prior-knowledge")
    assert (r.status, r.http_version) == (200, "2")
    assert r.json()["headers"]["x-forwarded-proto"] == "http"
    r = curl(s.url("/v1/b", listener="secure"), "--cacert", tls_cert.ecdsa.cert, "--http2")
    assert (r.status, r.http_version) == (200, "2")
    assert r.json()["headers"]["x-forwarded-proto"] == "https"


def tls13_client():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def test_tls13_suite_is_the_servers_choice(start_sluice, tls_cert):
    """sluice's order wins over the client's (Python offers AES-256-GCM-SHA384
    first, as OpenSSL does): AES-128-GCM-SHA256, whose SHA-256 key schedule is
    cheaper per handshake; tls.ciphersuites replaces the order."""
    cfg = base_config()
    cfg["listeners"][0]["tls"] = {"certificate": tls_cert.ecdsa.cert,
                                  "private_key": tls_cert.ecdsa.key}
    s = start_sluice(cfg)
    with handshake(s.port, tls13_client()) as c:
        assert c.cipher()[0] == "TLS_AES_128_GCM_SHA256"
    cfg["listeners"][0]["tls"]["ciphersuites"] = "TLS_CHACHA20_POLY1305_SHA256"
    cfg["listeners"][0]["tls"]["groups"] = "P-256:X25519"
    s2 = start_sluice(cfg)
    with handshake(s2.port, tls13_client()) as c:
        assert c.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"


@pytest.mark.parametrize("key,value,message", [
    ("ciphersuites", "TLS_NO_SUCH_SUITE", "bad tls.ciphersuites TLS_NO_SUCH_SUITE"),
    ("groups", "P-999", "bad tls.groups P-999"),
])
def test_bad_suites_and_groups_are_refused(tls_cert, tmp_path, key, value, message):
    import yaml
    cfg = base_config()
    cfg["listeners"][0].update(address="127.0.0.1:8443", tls={
        "certificate": tls_cert.ecdsa.cert, "private_key": tls_cert.ecdsa.key, key: value})
    cfg["admin"]["address"] = "127.0.0.1:9901"
    cfg["upstreams"]["identity"]["address"] = "127.0.0.1:8081"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = run_cli(["check", "-c", str(path)])
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith(str(path) + ":") and message in p.stderr, p.stderr
