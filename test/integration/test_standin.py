"""build/standin, the demo's stand-in identity API (test/tools/fleetsim/standin.c):
its capacity model seen by real clients over loopback. Latency grows with
queueing, 500s past --fail-queue waiting, no answer past --stall-queue,
/healthz outside the pool, WebSocket tunnels held and echoed cheaply."""

import base64
import hashlib
import json
import os
import select
import socket
import subprocess
import time

import pytest

import helpers
from helpers import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
STANDIN = helpers.Standin.BINARY


@pytest.fixture
def standin_factory(tmp_path):
    started = []

    def start(*args):
        p = helpers.Standin(str(tmp_path), ["--report-interval", "100", *args],
                            name="standin-%d" % len(started)).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def stop_and_summary(p):
    rc, killed = p.stop()
    assert rc == 0 and not killed
    lines = p.lines()
    assert lines[-1]["type"] == "summary"
    assert all(l["type"] == "tick" for l in lines[:-1])
    return lines


def request(port, path="/v1/connect"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    return s


def read_status(s, timeout):
    """Status code of the response on |s| within |timeout| s, else None."""
    s.settimeout(timeout)
    try:
        data = s.recv(4096)
    except socket.timeout:
        return None
    return int(data.split(b" ", 2)[1]) if data else None


@pytest.mark.timeout(60)
def test_queueing_then_500s_then_stalls(standin_factory):
    """One slot of S = 400 ms, fail-queue 2, stall-queue 4, and 8 requests
    at once (all sent within a few ms, well inside S, so the model's
    decisions do not depend on timing): the first is served at once, the
    next two wait (queue depth 0 and 1), two are doomed (depth 2 and 3) and
    answered 500 when they reach the slot, three find 4 waiting and are
    never answered. Latency grows by one service time per place in the
    queue, while /healthz still answers at once."""
    S = 0.4
    p = standin_factory("--workers", "1", "--service-ms", str(int(S * 1000)),
                        "--fail-queue", "2", "--stall-queue", "4")
    t0 = time.monotonic()
    socks = [request(p.port) for _ in range(8)]
    # /healthz is outside the pool: answered long before the first slot
    # frees (S); 0.5 S leaves the rest for a loaded machine.
    h = request(p.port, "/healthz")
    assert read_status(h, S * 0.5) == 200
    h.close()
    done = {}
    pending = list(socks)
    deadline = t0 + 3 * S + 5.0  # three services, plus a margin for a loaded machine
    while len(done) < 5 and time.monotonic() < deadline:
        r, _, _ = select.select(pending, [], [], max(0, deadline - time.monotonic()))
        for s in r:
            done[s] = (read_status(s, 1), time.monotonic() - t0)
            pending.remove(s)
    statuses = sorted(st for st, _ in done.values())
    assert statuses == [200, 200, 200, 500, 500], statuses
    ok_times = sorted(t for st, t in done.values() if st == 200)
    # The slot frees every S (server clock, libev timers never fire early):
    # the k-th answer comes at least k * S after the start. The client reads
    # each answer within its select loop; 10% of S covers that jitter.
    for k, t in enumerate(ok_times, 1):
        assert t >= k * S * 0.9, ok_times
    for a, b in zip(ok_times, ok_times[1:]):
        assert b - a >= S * 0.9, ok_times
    # Doomed requests are answered when they reach the slot: after the third.
    assert min(t for st, t in done.values() if st == 500) >= ok_times[-1] - S * 0.1
    # The stalled three: nothing by one more service time after the last answer.
    for s in pending:
        assert read_status(s, S) is None
    assert len(pending) == 3
    for s in socks:
        s.close()
    lines = stop_and_summary(p)
    total = lines[-1]
    assert (total["requests"], total["ok"], total["errors_500"], total["stalled"]) == (8, 3, 2, 3)
    ticks = lines[:-1]
    assert sum(t["requests"] for t in ticks) <= 8
    assert max(t["queued"] for t in ticks) <= 4
    assert max(t["inflight"] for t in ticks) <= 1
    assert max(t["latency_ms"]["p99"] for t in ticks) >= 3 * S * 1000 * 0.9


@pytest.mark.timeout(60)
def test_abandoned_request_still_takes_its_slot(standin_factory):
    """A client that gives up does not give back the slot's work: with one
    slot of S and a queued request closed by its client, the next request
    still waits for both (the database-bound handler does not know)."""
    S = 0.3
    p = standin_factory("--workers", "1", "--service-ms", str(int(S * 1000)))
    first = request(p.port)
    wait_for(lambda: any(l.get("inflight") == 1 for l in p.lines()),
             5, what="the first request in its slot")
    gone = request(p.port)
    wait_for(lambda: any(l.get("queued") == 1 for l in p.lines()),
             5, what="the second request queued")
    gone.close()
    last = request(p.port)
    assert read_status(first, 5) == 200
    t_first = time.monotonic()
    assert read_status(last, 5) == 200
    # After the first answer the slot serves the abandoned request (S), then
    # |last| (S): 2 S apart; had the abandoned one been dropped, S. The
    # client's reads add jitter; 10% of 2 S covers it.
    assert time.monotonic() - t_first >= 2 * S * 0.9, "abandoned request skipped"
    first.close()
    last.close()
    total = stop_and_summary(p)[-1]
    assert (total["requests"], total["ok"]) == (3, 3)


def ws_connect(port):
    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("GET /v1/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    return s, key


def ws_frame(op, payload):
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | op, 0x80 | len(payload)]) + mask + body


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        c = s.recv(n - len(buf))
        assert c, "connection closed"
        buf += c
    return buf


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        c = s.recv(1)
        assert c, "connection closed"
        buf += c
    return buf.decode()


@pytest.mark.timeout(60)
def test_websocket_upgrade_echo_ping_close(standin_factory):
    p = standin_factory()
    s, key = ws_connect(p.port)
    head = read_head(s)
    assert head.startswith("HTTP/1.1 101 ")
    accept = base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    assert ("sec-websocket-accept: %s\r\n" % accept) in head
    s.sendall(ws_frame(0x1, b"hello"))
    assert recv_exact(s, 7) == b"\x81\x05hello"  # echoed, unmasked
    s.sendall(ws_frame(0x9, b"p"))
    assert recv_exact(s, 3) == b"\x8a\x01p"  # pong
    s.sendall(ws_frame(0x8, b"\x03\xe8"))
    assert recv_exact(s, 4) == b"\x88\x02\x03\xe8"
    s.settimeout(5)
    assert s.recv(10) == b""  # closed after the close frame
    s.close()


def rss_kib(pid):
    return helpers.proc_status(pid)["VmRSS"]


@pytest.mark.timeout(90)
def test_idle_tunnels_are_cheap(standin_factory):
    """N idle tunnels cost standin little resident memory: an idle tunnel
    holds its connection struct and no buffer. The bound, 2 KiB a tunnel,
    is ten times the struct and allocator overhead (about 200 bytes);
    a 16 KiB read buffer kept per tunnel would break it eight times over."""
    N = 1500
    p = standin_factory("--workers", "64", "--service-ms", "0")
    before = rss_kib(p.pid)
    socks = []
    for _ in range(N):
        s, _ = ws_connect(p.port)
        socks.append(s)
    for s in socks:
        assert read_head(s).startswith("HTTP/1.1 101 ")
    wait_for(lambda: any(l.get("tunnels") == N for l in p.lines()),
             10, what="%d tunnels in standin's stats" % N)
    grown = rss_kib(p.pid) - before
    assert grown < 2 * N, "%d KiB for %d tunnels" % (grown, N)
    # Still live: every tunnel echoes.
    for s in socks[:: N // 10]:
        s.sendall(ws_frame(0x1, b"x"))
        assert recv_exact(s, 3) == b"\x81\x01x"
    for s in socks:
        s.close()
    wait_for(lambda: p.lines()[-1]["tunnels"] == 0,
             10, what="tunnels closed")
    total = stop_and_summary(p)[-1]
    assert total["ok"] == N


@pytest.mark.timeout(30)
def test_bad_flags_exit_2(tmp_path):
    for args in (["--workers", "0", "--listen", "127.0.0.1:1"], ["--bogus", "1"],
                 ["--listen", "nohost"], ["--listen", "127.0.0.1:1", "--fail-queue", "9",
                                          "--stall-queue", "3"]):
        r = subprocess.run([STANDIN, *args], capture_output=True, timeout=10)
        assert r.returncode == 2, args
        assert r.stderr.decode().startswith("standin: "), r.stderr
        assert r.stderr.decode().count("\n") == 1
