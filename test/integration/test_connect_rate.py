"""Connection-rate limit at accept (SPEC section 3 listeners[].connect_rate,
section 4 admission order): per client address, checked before any TLS or
HTTP work; a refused connection is closed without a byte."""
import socket

from admission_helpers import advance_clock
from helpers import base_config


def _connect_and_get(port):
    """Returns the status code, or None when the connection was closed
    before any answer (refused at accept)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"GET /v1/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                break
            data += chunk
        if not data:
            return None
        return int(data.split(b" ", 2)[1])
    finally:
        s.close()


def test_connect_rate_refuses_beyond_burst_then_recovers(start_sluice, upstream):
    cfg = base_config()
    cfg["listeners"][0]["connect_rate"] = {"per_ip": "2/s", "burst": 3}
    s = start_sluice(cfg)
    results = [_connect_and_get(s.port) for _ in range(8)]
    assert results[:3] == [200, 200, 200], results
    assert None in results[3:], results
    refused = results.count(None)
    assert s.metric("sluice_rejections_total", policy="public/connect_rate",
                    reason="connect_rate") == refused
    # The refused connections never reached the upstream.
    assert upstream.seen("/v1/x") == results.count(200)
    # 2/s: a second later (policy time, moved rather than slept) the bucket
    # admits again.
    advance_clock(s, 1000)
    assert _connect_and_get(s.port) == 200


def test_connect_rate_shadow_counts_but_admits(start_sluice):
    cfg = base_config()
    cfg["listeners"][0]["connect_rate"] = {"per_ip": "1/s", "burst": 1, "mode": "shadow"}
    s = start_sluice(cfg)
    results = [_connect_and_get(s.port) for _ in range(4)]
    assert results == [200] * 4, results
    assert s.metric("sluice_shadow_rejections_total", policy="public/connect_rate",
                    reason="connect_rate") >= 2
