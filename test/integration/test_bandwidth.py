"""Shaping `bandwidth: {down, up}` (issue 12, staging): an exchange that a
rule with a bandwidth matches is paced, downstream and upstream, over
HTTP/1.1, HTTP/2 and WebSocket tunnels, by back-pressure (the pacer stops
taking bytes; nothing is buffered beyond the existing pipes).

The bounds come from the bucket (proxy/core/pace.h): a direction starts
with a full bucket of BURST bytes and earns RATE bytes a second, charges
round up and refills round down, so by t seconds after the exchange began
at most BURST + RATE * t bytes have passed. A transfer of SIZE bytes thus
takes at least (SIZE - BURST) / RATE seconds however fast the machine is.
An h1 upload is charged for what sluice has read, and reading stops once
the bucket is spent: one read (READ, a 16 KiB chunk) may pass beyond it.
An h2 upload is paced by the window sluice gives back, so the client may
have sent one more initial stream window (65535 bytes) ahead of it."""
import hashlib
import json
import os
import socket
import time

import pytest

from helpers import H2Client, base_config, curl, run_cli, wait_for
from ws_helpers import H2WSClient, WSConn

RATE = 128 * 1024          # bytes/s, the rules' bandwidth
BURST = 16 * 1024          # sl_byte_bucket_burst(RATE): one 16 KiB chunk
READ = 16 * 1024           # the most sluice reads from a client at once (a chunk)
H2_WINDOW = 65535          # SETTINGS_INITIAL_WINDOW_SIZE sluice announces
SIZE = 512 * 1024
PACED_MIN = (SIZE - BURST) / RATE  # 3.875 s

RULES = [
    {"name": "slow-down", "match": {"path_prefix": "/bytes", "header": {"x-lane": "slow"}},
     "bandwidth": {"down": "128KiB/s"}},
    {"name": "slow-up", "match": {"path_prefix": "/sha256"}, "bandwidth": {"up": "128KiB/s"}},
    {"match": {"path_prefix": "/ws"}, "bandwidth": {"down": "128KiB/s", "up": "1MiB/s"}},
]


def pattern(n):
    """The upstream's /bytes body: byte i is i % 251."""
    block = bytes(i % 251 for i in range(251 * 256))
    return (block * (n // len(block) + 1))[:n]


@pytest.fixture
def paced(start_sluice):
    return start_sluice(base_config(shaping=RULES))


def paced_bytes(s, policy, direction):
    return s.metric("sluice_shaping_paced_bytes_total", route="default", policy=policy,
                    direction=direction)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_download_is_paced_and_whole(paced, proto):
    args = ["--http2-prior-knowledge"] if proto == "h2" else ["--http1.1"]
    t0 = time.monotonic()
    r = curl(paced.url("/bytes?n=%d" % SIZE), *args, "-H", "x-lane: slow")
    took = time.monotonic() - t0
    assert r.status == 200
    assert r.http_version == ("2" if proto == "h2" else "1.1")
    assert r.body == pattern(SIZE), "the paced body is not byte for byte the origin's"
    assert took >= PACED_MIN, "%d bytes at %d B/s took %.3f s < %.3f s" % (SIZE, RATE, took,
                                                                          PACED_MIN)
    # Counted when the exchange ends (before sluice writes the last bytes, in fact).
    wait_for(lambda: paced_bytes(paced, "shaping/slow-down", "down") == SIZE, 5,
             what="%d paced bytes counted down" % SIZE)
    assert paced.metric("sluice_shaping_paced_waits_total", route="default",
                        policy="shaping/slow-down", direction="down") > 0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_upload_is_paced_and_whole(paced, proto, tmp_path):
    body = os.urandom(SIZE)
    path = tmp_path / "body"
    path.write_bytes(body)
    args = ["--http2-prior-knowledge"] if proto == "h2" else ["--http1.1"]
    t0 = time.monotonic()
    r = curl(paced.url("/sha256"), *args, "--data-binary", "@%s" % path,
             "-H", "content-type: application/octet-stream")
    took = time.monotonic() - t0
    assert r.status == 200, r
    got = json.loads(r.body)
    assert got == {"sha256": hashlib.sha256(body).hexdigest(), "length": SIZE}
    ahead = BURST + (H2_WINDOW if proto == "h2" else READ)
    bound = (SIZE - ahead) / RATE
    assert took >= bound, "%d bytes up at %d B/s took %.3f s < %.3f s" % (SIZE, RATE, took, bound)
    wait_for(lambda: paced_bytes(paced, "shaping/slow-up", "up") == SIZE, 5,
             what="%d paced bytes counted up" % SIZE)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_tls_upload_and_download_are_paced(start_sluice, tls_cert, proto, tmp_path):
    """Over TLS, where a paused read may leave the rest of a record inside
    the TLS library rather than in the socket: nothing may stall there."""
    cfg = base_config(shaping=RULES)
    cfg["listeners"][0]["tls"] = {"certificate": tls_cert.ecdsa.cert,
                                  "private_key": tls_cert.ecdsa.key}
    s = start_sluice(cfg)
    n = 256 * 1024
    body = os.urandom(n)
    path = tmp_path / "body"
    path.write_bytes(body)
    args = ["--cacert", tls_cert.ecdsa.cert, "--http2" if proto == "h2" else "--http1.1"]
    r = curl(s.url("/sha256"), *args, "--data-binary", "@%s" % path, timeout=20)
    assert r.status == 200
    assert json.loads(r.body) == {"sha256": hashlib.sha256(body).hexdigest(), "length": n}
    t0 = time.monotonic()
    r = curl(s.url("/bytes?n=%d" % n), *args, "-H", "x-lane: slow", timeout=20)
    assert r.status == 200 and r.body == pattern(n)
    assert time.monotonic() - t0 >= (n - BURST) / RATE


@pytest.mark.timeout(30)
def test_h1_upload_then_half_close_arrives_whole(paced):
    """The client sends the whole paced body and shuts its write side at
    once: sluice reads the FIN only after the bytes before it, so the
    request still completes (paced reading must not strand bytes behind a
    later EOF)."""
    n = 128 * 1024
    body = os.urandom(n)
    c = socket.create_connection(("127.0.0.1", paced.port), timeout=20)
    try:
        c.sendall(b"POST /sha256 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % n + body)
        c.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        c.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:200]
    assert json.loads(rest) == {"sha256": hashlib.sha256(body).hexdigest(), "length": n}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_websocket_echo_is_paced_down(paced, proto):
    """The tunnel is paced for its whole life: an upgrade (h1) or an
    extended CONNECT (h2, RFC 8441) through the /ws rule."""
    n, msg = 16, 16 * 1024  # 256 KiB echoed; the down half (128 KiB/s) is the slower
    payloads = [os.urandom(msg) for _ in range(n)]
    if proto == "h1":
        with WSConn(paced.port) as ws:
            assert ws.upgrade("/ws").status == 101
            t0 = time.monotonic()
            for p in payloads:
                assert ws.echo(p, timeout=20) == p
            took = time.monotonic() - t0
            ws.close_handshake()
    else:
        with H2WSClient(paced.port) as c:
            c.wait_connect_protocol()
            sid = c.open_ws("/ws")
            assert c.streams[sid].status == 200
            t0 = time.monotonic()
            for p in payloads:
                assert c.echo(sid, p, timeout=20) == p
            took = time.monotonic() - t0
            c.close_ws(sid)
    bound = (n * msg - BURST) / RATE  # frame headers only add to what was paced
    assert took >= bound, "tunnel echo of %d bytes took %.3f s < %.3f s" % (n * msg, took, bound)
    wait_for(lambda: paced_bytes(paced, "shaping/2", "down") >= n * msg, 5,
             what="the tunnel's paced bytes counted once it closed")


@pytest.mark.timeout(30)
def test_h2_paced_stream_does_not_starve_its_connection(paced):
    """Pacing is per stream: an unpaced stream on the same connection runs at
    full speed while the paced one trickles."""
    with H2Client(paced.port, timeout=20) as c:
        t0 = time.monotonic()
        slow = c.start("GET", "/bytes?n=%d" % SIZE, [("x-lane", "slow")])
        fast = c.start("GET", "/bytes?n=%d" % SIZE)
        st = c.wait(fast)
        took = time.monotonic() - t0
        assert st.status == 200 and bytes(st.data) == pattern(SIZE)
        assert took < PACED_MIN / 4, "the unpaced stream took %.3f s" % took
        # Bound from the bucket: the paced one cannot have finished yet.
        assert len(c.streams[slow].data) <= BURST + RATE * (time.monotonic() - t0) + 1
        st = c.wait(slow)
        assert st.status == 200 and bytes(st.data) == pattern(SIZE)
        assert time.monotonic() - t0 >= PACED_MIN


@pytest.mark.timeout(30)
def test_unmatched_request_is_not_paced(paced, upstream):
    # Without x-lane no rule matches: the same 512 KiB at loopback speed. An upper
    # bound of a fast path, so generous: a quarter of the paced minimum.
    for args in (["--http1.1"], ["--http2-prior-knowledge"]):
        t0 = time.monotonic()
        r = curl(paced.url("/bytes?n=%d" % SIZE), *args)
        took = time.monotonic() - t0
        assert r.status == 200
        assert took < PACED_MIN / 4, "unpaced request took %.3f s" % took
    assert "sluice_shaping_paced_bytes_total{" not in paced.metrics_text()


@pytest.mark.timeout(30)
def test_shadow_bandwidth_is_counted_not_paced(start_sluice):
    s = start_sluice(base_config(shaping=[
        {"name": "trial", "mode": "shadow", "match": {"path_prefix": "/bytes"},
         "bandwidth": {"down": "1KiB/s"}}]))
    t0 = time.monotonic()
    r = curl(s.url("/bytes?n=%d" % SIZE), "--http1.1")
    took = time.monotonic() - t0
    assert r.status == 200 and r.body == pattern(SIZE)
    assert took < (SIZE - 1024) / 1024 / 4  # paced would be 511 s
    assert s.metric("sluice_shadow_rejections_total", route="default", policy="shaping/trial",
                    reason="shaping") == 1


def test_named_rule_labels_its_refusals(start_sluice, upstream):
    s = start_sluice(base_config(shaping=[
        {"match": {"path_prefix": "/v1/a"}, "abort": {"percent": 100, "status": 503}},
        {"name": "chaos", "match": {"path_prefix": "/v1/b"}, "abort": {"percent": 100}},
        {"match": {"path_prefix": "/v1/c"}, "rate": "1/h"}]))
    assert json.loads(curl(s.url("/v1/a")).body)["policy"] == "shaping/0"
    assert json.loads(curl(s.url("/v1/b")).body)["policy"] == "shaping/chaos"
    assert curl(s.url("/v1/c")).status == 200
    assert json.loads(curl(s.url("/v1/c")).body)["policy"] == "shaping/2"
    for policy in ("shaping/0", "shaping/chaos", "shaping/2"):
        assert s.metric("sluice_rejections_total", route="default", policy=policy,
                        reason="shaping") == 1, policy
    assert upstream.seen("/v1/a") == 0 and upstream.seen("/v1/b") == 0


CHECK = """\
listeners:
  - name: public
    address: "127.0.0.1:1"
upstreams:
  identity: { address: "127.0.0.1:2" }
routes:
  - name: default
    match: { path_prefix: "/" }
    upstream: identity
shaping:
  - match: { path_prefix: "/v1/" }
    bandwidth: %s
"""


@pytest.mark.parametrize("value,col,message", [
    ("{ down: 0/s }", 24, "down: bandwidth '0/s' must be positive"),
    ("{ up: -16KiB/s }", 22, "up: bandwidth '-16KiB/s' must be positive"),
    ("{ down: 64KB/s }", 24, "unknown size unit 'KB'"),
    ("{ down: 64KiB }", 24, "needs a '/s'"),
    ("{ down: 1MiB/m }", 24, "must be per second"),
    ("{ sideways: 1KiB/s }", 18, "unknown key 'sideways' in bandwidth"),
    ("{}", 16, "bandwidth: give 'down', 'up' or both"),
    ("64KiB/s", 16, "bandwidth: expected a mapping"),
])
def test_check_reports_bad_bandwidth(sluice_bin, tmp_path, value, col, message):
    path = tmp_path / "sluice.yaml"
    path.write_text(CHECK % value)
    p = run_cli(["check", "-c", str(path)], binary=sluice_bin)
    assert p.returncode == 1, p.stderr
    where = "%s:12:%d: " % (path, col)
    assert where in p.stderr and message in p.stderr, p.stderr


def test_check_print_round_trips_bandwidth(sluice_bin, tmp_path):
    path = tmp_path / "sluice.yaml"
    path.write_text(CHECK % "{ down: 64KiB/s, up: 16384/s }")
    p = run_cli(["check", "-c", str(path), "--print"], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    assert 'down: "64KiB/s"' in p.stdout and 'up: "16384/s"' in p.stdout, p.stdout
    again = tmp_path / "printed.yaml"
    again.write_text(p.stdout)
    p2 = run_cli(["check", "-c", str(again), "--print"], binary=sluice_bin)
    assert p2.returncode == 0 and p2.stdout == p.stdout


def test_explain_shows_the_bandwidth(sluice_bin, tmp_path):
    path = tmp_path / "sluice.yaml"
    path.write_text(CHECK.replace("  - match:", "  - name: staging\n    match:")
                    % "{ down: 64KiB/s, up: 16KiB/s }")
    p = run_cli(["explain", "-c", str(path), "/v1/connect"], binary=sluice_bin)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    shaping = [x for x in out["policies"] if x["kind"] == "shaping"]
    assert shaping and shaping[0]["policy"] == "shaping/staging", out
    assert "bandwidth down 64KiB/s, up 16KiB/s" in shaping[0]["why"], shaping
    assert out["verdict"]["bandwidth"] == {"policy": "shaping/staging",
                                           "down_bytes_per_s": 65536, "up_bytes_per_s": 16384}
    p = run_cli(["explain", "-c", str(path), "/other"], binary=sluice_bin)
    assert "bandwidth" not in json.loads(p.stdout)["verdict"]
