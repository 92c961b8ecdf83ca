"""Drain without a self-made herd (drain_spread): on SIGTERM each worker
closes its open tunnels (close 1001 with a reason) and HTTP/2 connections
(GOAWAY) one by one at evenly spaced turns over drain_spread, not all in the
same few milliseconds, and serves them until their turn.

The bounds come from the schedule: a worker with n connections takes its
turns at S*i/n (i = 0..n-1), so its closes span S*(n-1)/n, and any window of
S/10 holds at most n/10 + 1 of them. Across the 2 workers the span is at
least S/2 as soon as one worker has two, and a window of S/10 holds at most
N/10 + 2 closes. The tests assert span >= S/2 and at most a quarter of the
closes in any tenth of the spread: loose against scheduling noise on a busy
machine, and still several times tighter than a herd (all N within
milliseconds)."""

import selectors
import signal
import time

import pytest

from helpers import H2Client, base_config, run_cli, to_yaml, wait_for
from ws_helpers import OP_CLOSE, H2WSClient, close_payload, encode_frame, ws_config, ws_open

REASON = "sluice draining: reconnect in a few seconds"


@pytest.fixture
def clients():
    """Client connections of a test, closed at its end whatever happens."""
    made = []
    yield made
    for c in made:
        c.close()


def window_max(instants, width):
    """The most instants in any window [t, t + width)."""
    xs = sorted(instants)
    best, j = 0, 0
    for i, x in enumerate(xs):
        while xs[j] < x - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def check_spread(instants, n, spread):
    assert len(instants) == n, "%d of %d closes seen" % (len(instants), n)
    span = max(instants) - min(instants)
    assert span >= spread / 2, "closes span %.2fs of a %.1fs spread" % (span, spread)
    most = window_max(instants, spread / 10)
    print("closes: %d, span %.3fs of %.1fs, at most %d in %.2fs"
          % (n, span, spread, most, spread / 10))
    assert most <= n / 4, "%d of %d closes within %.2fs" % (most, n, spread / 10)


@pytest.mark.timeout(60)
def test_tunnels_close_spread_over_drain_spread(start_sluice, clients):
    n, spread, timeout = 60, 3.0, 6.0
    s = start_sluice(ws_config(drain_spread="3s", drain_timeout="6s"))
    conns = clients
    for _ in range(n):
        conns.append(ws_open(s.port))
    wait_for(lambda: s.metric("sluice_websocket_tunnels_active", route="ws") == n, 10,
             what="%d open tunnels" % n)
    for c in conns:
        c.sock.setblocking(False)
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
    closes, frames = {}, {}
    t0 = time.monotonic()
    s.send_signal(signal.SIGTERM)
    deadline = t0 + timeout + 2
    while len(closes) < n and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionResetError:
                data = b""
            now = time.monotonic()
            for f in c.parser.feed(data):
                if f.opcode == OP_CLOSE and c not in closes:
                    closes[c] = now
                    frames[c] = f
                    # A client answers the close and hangs up.
                    c.sock.setblocking(True)
                    c.sock.sendall(encode_frame(close_payload(1000), OP_CLOSE))
                    c.sock.setblocking(False)
            if not data:
                sel.unregister(c.sock)
                if c not in closes:
                    closes[c] = None  # closed without a close frame
    for c, f in frames.items():
        assert f.close_code == 1001 and f.close_reason == REASON, f
    assert None not in closes.values(), "a tunnel was cut without a close frame"
    check_spread([t - t0 for t in closes.values()], n, spread)
    for c in conns:
        c.sock.close()  # the clients hang up after their close handshake
    rc = s.wait(timeout + 2)
    elapsed = time.monotonic() - t0
    assert rc == 0
    # The last turn is at most `spread` in; then the closing handshakes.
    assert elapsed < timeout, "exit %.2fs after SIGTERM" % elapsed
    s.stop()


@pytest.mark.timeout(60)
def test_h2_connections_goaway_spread_and_served_until_their_turn(start_sluice, clients):
    n, spread = 12, 4.0
    s = start_sluice(base_config(drain_spread="4s", drain_timeout="8s"))
    conns = clients
    conns += [H2Client(s.port, timeout=10) for _ in range(n)]
    for c in conns:
        assert c.wait(c.start("GET", "/v1/before"), timeout=10).status == 200
    goaways = {}

    def pump_all(t):
        for c in conns:
            if c not in goaways and not c.closed:
                c.pump(t)
                if c.goaway is not None:
                    goaways[c] = time.monotonic()

    t0 = time.monotonic()
    s.send_signal(signal.SIGTERM)
    wait_for(lambda: pump_all(0.005) or goaways, 5, interval=0, what="the first GOAWAY")
    # Connections still waiting for their turn serve requests as usual.
    waiting = [c for c in conns if c not in goaways]
    assert waiting, "every connection had its GOAWAY at once"
    asked = [(c, c.start("GET", "/v1/during")) for c in waiting]
    served = 0
    for c, sid in asked:
        st = c.wait(sid, timeout=10)
        if c not in goaways and c.goaway is not None:
            goaways[c] = time.monotonic()
        if st.status == 200:
            served += 1
        else:  # its turn came first: a GOAWAY that did not take the stream
            assert c.goaway is not None and c.goaway.last_stream_id < sid, (st, c.goaway)
    assert served >= 1, "no request served on a connection waiting for its turn"
    deadline = t0 + spread + 3
    while len(goaways) < n and time.monotonic() < deadline:
        pump_all(0.005)
    check_spread([t - t0 for t in goaways.values()], n, spread)
    for c in conns:
        assert c.goaway.error_code == 0
    assert s.wait(10) == 0
    s.stop()


@pytest.mark.timeout(30)
def test_drain_spread_zero_closes_at_once(start_sluice, clients):
    """drain_spread: 0s is the old behaviour: every tunnel gets its close at
    the signal."""
    s = start_sluice(ws_config(drain_spread="0s"))
    clients += [ws_open(s.port) for _ in range(6)]
    wait_for(lambda: s.metric("sluice_websocket_tunnels_active", route="ws") == 6, 10,
             what="6 open tunnels")
    t0 = time.monotonic()
    s.send_signal(signal.SIGTERM)
    for c in clients:
        f, before = c.expect_close(5)
        assert f is not None and f.close_code == 1001 and f.close_reason == REASON, f
    assert time.monotonic() - t0 < 1.0
    assert s.wait(10) == 0
    s.stop()


@pytest.mark.timeout(30)
def test_h1_and_h2_tunnels_get_the_reason(start_sluice, clients):
    """Over HTTP/1.1 and over HTTP/2 (RFC 8441, closed at its connection's
    turn together with the GOAWAY) a tunnel's close frame is 1001 with the
    reason."""
    s = start_sluice(ws_config(drain_spread="1s"))
    a = ws_open(s.port)
    h = H2WSClient(s.port)
    clients += [a, h]
    h.wait_connect_protocol()
    sid = h.open_ws()
    assert a.echo(b"a") == b"a" and h.echo(sid, b"h") == b"h"
    wait_for(lambda: s.metric("sluice_websocket_tunnels_active", route="ws") == 2, 10,
             what="2 open tunnels")
    s.send_signal(signal.SIGTERM)
    f, before = a.expect_close(5)
    assert before == [] and f.close_code == 1001 and f.close_reason == REASON, f
    f, before = h.expect_close(sid, 5)
    assert before == [] and f.close_code == 1001 and f.close_reason == REASON, f
    assert s.wait(10) == 0
    s.stop()


def test_drain_spread_longer_than_drain_timeout_is_refused(tmp_path):
    cfg = base_config(drain_timeout="5s", drain_spread="6s")
    cfg["listeners"][0]["address"] = "127.0.0.1:1"
    cfg["upstreams"]["identity"]["address"] = "127.0.0.1:2"
    del cfg["admin"]
    text = to_yaml(cfg)
    line = text.splitlines().index('drain_spread: "6s"') + 1
    p = tmp_path / "s.yaml"
    p.write_text(text)
    r = run_cli(["check", "-c", str(p)])
    assert r.returncode != 0
    assert "%s:%d:15: drain_spread: 6000ms is longer than drain_timeout (5000ms)" % (p, line) \
        in r.stderr, r.stderr
