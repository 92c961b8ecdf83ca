"""A slow client is the client's problem, never the origin's.

The response timeout (upstreams.*.timeouts.response) runs from the end of
the request, once its body is all sent, and so does the latency a breaker
judges (slow_call). A request body is timed by progress: no byte for the
listener's idle timeout is 408, which is no upstream failure; a steady
trickle, however slow, completes. Here response is 500 ms and idle 1.5 s,
and uploads pace one byte every 100 ms (the scenario, not a
synchronisation): a 3 s upload outlasts both.
"""

import hashlib
import socket
import threading
import time

import pytest

from helpers import H2Client, H2Stream, base_config, metric_sum

IDLE_S = 1.5
RESPONSE = "500ms"
PACE_S = 0.1


def slow_config(response=RESPONSE, breaker=None, idle_s=IDLE_S):
    cfg = base_config()
    cfg["listeners"][0]["timeouts"] = {"request_header": "5s", "idle": "%dms" % (idle_s * 1000)}
    cfg["upstreams"]["identity"]["timeouts"] = {"connect": "1s", "response": response,
                                                "idle": "60s"}
    if breaker:
        cfg["upstreams"]["identity"]["circuit_breaker"] = breaker
    return cfg


def read_response(sock, timeout):
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return None, b""
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def h1_upload(port, n, stall_after=None):
    """POST /sha256 with an n-byte body sent a byte per PACE_S; with
    |stall_after| the client stops sending after that many bytes. Returns
    (status, body, seconds from the last byte sent to the answer)."""
    body = bytes(b"0123456789"[i % 10] for i in range(n))
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.sendall(b"POST /sha256 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % n)
        sent = n if stall_after is None else stall_after
        for i in range(sent):
            time.sleep(PACE_S)
            sock.sendall(body[i:i + 1])
        last = time.monotonic()
        status, rbody = read_response(sock, 30)
        return status, rbody, time.monotonic() - last, body
    finally:
        sock.close()


def h2_upload(port, n, stall_after=None):
    body = bytes(b"0123456789"[i % 10] for i in range(n))
    with H2Client(port, timeout=30) as c:
        sid = c.conn.get_next_available_stream_id()
        c.streams[sid] = H2Stream(sid)
        c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                  (":authority", c.authority), (":path", "/sha256"),
                                  ("content-length", str(n))], end_stream=False)
        c.flush()
        sent = n if stall_after is None else stall_after
        for i in range(sent):
            time.sleep(PACE_S)
            c.send_body(sid, body[i:i + 1], end_stream=i == n - 1)
        last = time.monotonic()
        st = c.wait(sid, timeout=30)
        return st.status, bytes(st.data), time.monotonic() - last, body


UPLOADS = {"h1": h1_upload, "h2c": h2_upload}


def assert_sha(status, rbody, body):
    import json
    assert status == 200, (status, rbody[:200])
    obj = json.loads(rbody)
    assert obj == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}, obj


@pytest.mark.timeout(60)
@pytest.mark.parametrize("proto", sorted(UPLOADS))
def test_slow_but_steady_upload_completes(start_sluice, proto):
    """3 s of upload at a byte per 100 ms: past the 500 ms response timeout
    and twice the 1.5 s idle timeout, and still a 200 with the whole body."""
    s = start_sluice(slow_config(), workers=1)
    status, rbody, _, body = UPLOADS[proto](s.port, 30)
    assert_sha(status, rbody, body)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("proto", sorted(UPLOADS))
def test_stalled_upload_is_408_after_idle(start_sluice, proto):
    s = start_sluice(slow_config(), workers=1)
    status, rbody, waited, _ = UPLOADS[proto](s.port, 100, stall_after=3)
    assert status == 408, (status, rbody[:200])
    # The timeout counts from the last byte: idle, plus the timer slack of
    # one response period (500 ms) and scheduling.
    assert IDLE_S - 0.2 <= waited <= IDLE_S + 1.5, "408 after %.2fs of silence" % waited


def run_all(fns):
    out = [None] * len(fns)
    errs = []

    def run(i):
        try:
            out[i] = fns[i]()
        except Exception as e:  # noqa: BLE001 - re-raised below
            errs.append(e)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    if errs:
        raise errs[0]
    assert all(o is not None for o in out), "a client did not finish"
    return out


@pytest.mark.timeout(90)
def test_slow_and_stalled_clients_do_not_open_the_breaker(start_sluice):
    """Five slow uploads (2 s each) and three stalled ones (408), at once,
    with a breaker that opens on three consecutive failures: it stays
    closed and later requests pass."""
    s = start_sluice(slow_config(breaker={"consecutive_failures": 3, "open_for": "30s",
                                          "half_open_probes": 1}), workers=1)
    slow = [lambda i=i: UPLOADS["h1" if i % 2 else "h2c"](s.port, 20) for i in range(5)]
    stalled = [lambda i=i: UPLOADS["h1" if i % 2 else "h2c"](s.port, 50, stall_after=2)
               for i in range(3)]
    results = run_all(slow + stalled)
    for status, rbody, _, body in results[:5]:
        assert_sha(status, rbody, body)
    assert [r[0] for r in results[5:]] == [408] * 3
    assert metric_sum(s.metrics(), "sluice_circuit_breaker_state", upstream="identity") == 0
    for i in range(3):
        r = UPLOADS["h1"](s.port, 0)
        assert r[0] == 200, r[:2]


@pytest.mark.timeout(90)
def test_slow_upload_is_not_a_slow_call(start_sluice):
    """slow_call 1 s judges the origin's answer time, not the upload's:
    four 1.5 s uploads to a fast origin leave the breaker closed (idle
    10 s here: the uploads are within every timeout)."""
    s = start_sluice(slow_config(response="5s", idle_s=10, breaker={
        "consecutive_failures": 3, "slow_call": "1s", "open_for": "30s",
        "half_open_probes": 1}), workers=1)
    results = run_all([lambda: UPLOADS["h1"](s.port, 15) for _ in range(4)])
    for status, rbody, _, body in results:
        assert_sha(status, rbody, body)
    r = UPLOADS["h1"](s.port, 0)
    assert r[0] == 200, r[:2]
    assert metric_sum(s.metrics(), "sluice_circuit_breaker_state", upstream="identity") == 0
