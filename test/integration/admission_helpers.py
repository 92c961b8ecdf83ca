"""Helpers for test_admission.py: configurations with admission policies,
rejection checks and bounded request loops. Built on helpers.py (which
another engineer owns; nothing here changes it)."""

import copy
import json
import threading
import time

from helpers import H1Conn, H2Client, base_config, build_request

# Clients of the tests connect from 127.0.0.1, a trusted proxy: each test
# picks the client address it wants with X-Forwarded-For.
IDENTIFY = {
    "client_ip": {"trusted_proxies": ["127.0.0.0/8"]},
    "device_class": {"header": "x-device-class"},
    "firmware": {"header": "x-firmware-version"},
    "device_id": {"header": "x-device-id"},
}

REJECT = {"retry_after": {"min": "1s", "max": "120s", "jitter": 0.5}}


def admission_config(routes=None, breaker=None, **top):
    """base_config() with the identity headers above, |routes| (default: the
    catch-all route "default" without policies), an optional circuit
    breaker on upstream "identity", the reject settings above and any other
    top-level keys (blocklist, shaping, mode, rejection_log_per_sec...)."""
    cfg = base_config(identify=copy.deepcopy(IDENTIFY), reject=copy.deepcopy(REJECT))
    if routes is not None:
        cfg["routes"] = routes
    if breaker is not None:
        cfg["upstreams"]["identity"]["circuit_breaker"] = breaker
    cfg.update(top)
    return cfg


def route(name="default", prefix="/", **policies):
    """A route on upstream "identity"; |policies| are rate_limits,
    concurrency, priority..."""
    r = {"name": name, "match": {"path_prefix": prefix}, "upstream": "identity"}
    r.update(policies)
    return r


def h1_get(port, path, headers):
    """One GET on a fresh HTTP/1.1 connection: the response (H1Conn's)."""
    with H1Conn(port, timeout=10) as c:
        return c.request("GET", path, headers)


def h2_get(port, path, headers):
    """One GET on a fresh h2c connection; |headers| as for h1_get."""
    with H2Client(port, timeout=10) as c:
        return c.get(path, [(k.lower(), v) for k, v in headers])


def device_headers(ip=None, cls=None, fw=None, dev=None):
    """[(name, value)] for a device behind the trusted proxy."""
    h = []
    if ip:
        h.append(("X-Forwarded-For", ip))
    if cls:
        h.append(("X-Device-Class", cls))
    if fw:
        h.append(("X-Firmware-Version", fw))
    if dev:
        h.append(("X-Device-Id", dev))
    return h


def check_rejection(status, header, body, want_status, error, policy, ra_min=1, ra_max=120):
    """Checks one refusal (SPEC section 4): the status, a JSON body
    {"error","policy","retry_after"} with content-type application/json, and
    a retry-after header in whole seconds within [ra_min, ra_max] equal to
    the body's. |header| is a function name -> value. Returns retry_after."""
    assert status == want_status, "status %r, expected %d; body %r" % (status, want_status, body)
    ctype = header("content-type")
    assert ctype == "application/json", "content-type %r" % ctype
    doc = json.loads(body)
    assert set(doc) == {"error", "policy", "retry_after"}, doc
    assert doc["error"] == error, doc
    assert doc["policy"] == policy, doc
    ra = header("retry-after")
    assert ra is not None and ra.isdigit(), "retry-after %r is not whole seconds" % ra
    assert int(ra) == doc["retry_after"], (ra, doc)
    assert ra_min <= int(ra) <= ra_max, "retry-after %s outside [%d, %d]" % (ra, ra_min, ra_max)
    return int(ra)


def check_h1_rejection(resp, *args, **kw):
    return check_rejection(resp.status, resp.header, resp.body, *args, **kw)


class KeepAlive:
    """Sequential HTTP/1.1 requests on one keep-alive connection, opening a
    new one only if sluice closes it (so a test can count reconnects)."""

    def __init__(self, port, timeout=5.0):
        self.port = port
        self.timeout = timeout
        self.conn = None
        self.connects = 0

    def request(self, path, headers=(), method="GET"):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = H1Conn(self.port, timeout=self.timeout)
                self.connects += 1
            try:
                r = self.conn.request(method, path, headers)
            except ConnectionError:
                self.close()
                if attempt:
                    raise
                continue
            if "close" in (r.header("connection") or "").lower():
                self.close()
            return r

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def pipelined(port, path, headers, n, timeout=10.0):
    """Sends |n| identical requests pipelined on one connection, reads the
    |n| responses; returns them. Fast: no round trip per request. (Only for
    requests that are all proxied: see test_h1_pipelined_refusal_answered.)"""
    with H1Conn(port, timeout=timeout) as c:
        c.send(build_request("GET", path, headers) * n)
        return [c.read_response() for _ in range(n)]


def h2_requests(port, path, headers, n, batch=50, timeout=10.0):
    """|n| GET requests on one HTTP/2 connection, up to |batch| streams in
    flight at a time; returns the finished H2Streams in order."""
    headers = [(k.lower(), v) for k, v in headers]
    out = []
    with H2Client(port, timeout=timeout) as c:
        while len(out) < n:
            sids = [c.start("GET", path, headers) for _ in range(min(batch, n - len(out)))]
            out += c.wait_all(sids, timeout)
    return out


def check_h2_rejection(st, *args, **kw):
    return check_rejection(st.status, st.header, st.body, *args, **kw)


class Paced(threading.Thread):
    """Background client: one request every |interval| s on a keep-alive
    connection until stop(); records statuses."""

    def __init__(self, port, path, headers, interval):
        super().__init__(daemon=True)
        self.port, self.path, self.headers, self.interval = port, path, headers, interval
        self.statuses = []
        self.error = None
        self._halt = threading.Event()

    def run(self):
        try:
            with KeepAlive(self.port) as ka:
                nxt = time.monotonic()
                while not self._halt.is_set():
                    self.statuses.append(ka.request(self.path, self.headers).status)
                    nxt += self.interval
                    self._halt.wait(max(0.0, nxt - time.monotonic()))
        except Exception as e:  # reported by the test
            self.error = e

    def stop(self, timeout=10.0):
        self._halt.set()
        self.join(timeout)
        assert not self.is_alive(), "paced client did not stop"
        if self.error:
            raise self.error
        return self.statuses


def advance_clock(s, ms):
    """Moves sluice's policy clock (limiters, breakers, connect rate) |ms|
    forward, through the SLUICE_TESTING admin endpoint; the test then needs
    no sleep to wait out an open_for or a bucket's refill. Release builds
    have no such endpoint (404): there, the same time really passes."""
    status, _, body = s.admin_get("/testing/clock?advance_ms=%d" % ms, method="POST")
    if status == 404:
        time.sleep(ms / 1000.0)  # a release build: real time is the only clock
        return None
    assert status == 200, (status, body)
    return json.loads(body)["offset_ms"]
