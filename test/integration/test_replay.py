"""A request is sent again after a pooled connection fails under it only
when that cannot change what the origin did: an idempotent method (RFC 9110
§9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE), nothing of the response
received, and a body that can be sent again exactly (none). Anything else
gets 502, and the origin saw it once.

The origin (upstream.py --close-reused) reads a request arriving on a
reused keep-alive connection in full, counts it, and closes the connection
without answering: it may well have acted on it.
"""

import pytest

from helpers import H1Conn, H2Client, base_config

CLOSE_ON = "GET,HEAD,OPTIONS,PUT,DELETE,POST,PATCH"


def pooled(start_sluice, upstream_factory):
    up = upstream_factory("--close-reused", CLOSE_ON)
    s = start_sluice(base_config(), upstream=up, workers=1)
    return s, up


def prime(s, up):
    """One answered request leaves one idle connection in the pool."""
    with H1Conn(s.port) as c:
        assert c.request("GET", "/v1/prime").status == 200
    up.reset_stats()


def h1_send(port, method, path):
    with H1Conn(port) as c:
        headers = [("content-length", "0")] if method in ("POST", "PUT", "PATCH") else []
        r = c.request(method, path, headers=headers)
        return r.status, r.body


def h2_send(port, method, path):
    with H2Client(port) as c:
        st = c.request(method, path, timeout=10)
        return st.status, bytes(st.data)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("send", [h1_send, h2_send], ids=["h1", "h2c"])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_request_is_not_replayed(start_sluice, upstream_factory, send, method):
    s, up = pooled(start_sluice, upstream_factory)
    prime(s, up)
    status, body = send(s.port, method, "/v1/charge")
    assert status == 502, (status, body)
    st = up.stats()
    assert st["reused_closes"] == 1, st
    assert st["methods"].get(method) == 1, "the origin got %s /v1/charge %r times" % (
        method, st["methods"].get(method))
    assert st["paths"].get("/v1/charge") == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("send", [h1_send, h2_send], ids=["h1", "h2c"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
def test_idempotent_request_is_retried_once(start_sluice, upstream_factory, send, method):
    s, up = pooled(start_sluice, upstream_factory)
    prime(s, up)
    status, _ = send(s.port, method, "/v1/item")
    assert status == 200
    st = up.stats()
    # Dropped on the reused connection, answered on a fresh one.
    assert st["reused_closes"] == 1, st
    assert st["methods"].get(method) == 2, st["methods"]
