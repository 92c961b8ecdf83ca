"""Idle WebSocket tunnels (issue 16, second round): once a tunnel's head went
out its heads shrink to what its access line needs and the arena chunk is
given back (core/stream.h sl_stream_tunnel_compact); an idle tunnel holds no
pipe buffer; an h2 tunnel's awake session gives its frame buffer's pages
back while quiet. Checked here: the resident memory of a few thousand idle
h1 and h2 tunnels, the access line of a compacted tunnel (h1 and h2), and byte-exact
large messages through a tunnel whose buffers were given back."""

import os
import sys

import pytest

from helpers import MiB, base_config, metric_sum, wait_for
from ws_helpers import H2WSClient, ws_open, ws_route

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "test", "bench"))


def tunnel_config(idle="300s"):
    cfg = base_config(access_log="on", access_log_query="full")
    cfg["routes"] = [ws_route(idle_timeout=idle)] + cfg["routes"]
    cfg["listeners"][0]["timeouts"] = {"request_header": idle, "idle": idle}
    return cfg


def chunks_in_use(s):
    """Pipe chunks (16 KiB each) held by pipes, not cached for reuse."""
    return metric_sum(s.metrics(), "sluice_pool_objects", pool="pipe_chunk", state="in_use")


def access_lines(s, n):
    def lines():
        return [l for l in s.logs() if l.get("msg") == "access"]
    wait_for(lambda: len(lines()) >= n, 5, what="%d access lines" % n)
    return lines()


# ---- the access line of a compacted tunnel ----------------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TUNNEL_HEADERS = (("user-agent", "idle-tunnel-agent/1.0"),
                  ("traceparent", "00-%s-00f067aa0ba902b7-01" % TRACE),
                  ("x-request-id", "client-chosen-id-1234"))


def check_tunnel_line(line, proto, method):
    assert line["path"] == "/ws?room=7", line
    assert line["method"] == method, line
    assert line["protocol"] == proto, line
    assert line["route"] == "ws", line
    assert line["user_agent"] == "idle-tunnel-agent/1.0", line
    assert line["trace_id"] == TRACE, line
    assert line["request_id"] == "client-chosen-id-1234", line
    assert line["bytes_in"] > 0 and line["bytes_out"] > 0, line


@pytest.mark.timeout(20)
def test_h1_tunnel_access_line_after_compaction(start_sluice):
    """The heads were shrunk at the 101: the access line written when the
    tunnel ends still has its path, method, user agent, trace and request
    id (they were copied; a dangling one would be garbage or an ASan
    report)."""
    s = start_sluice(tunnel_config())
    w = ws_open(s.port, path="/ws?room=7", headers=TUNNEL_HEADERS)
    assert w.echo(b"hello") == b"hello"
    w.close_handshake()
    w.close()
    (line,) = [l for l in access_lines(s, 1) if l["route"] == "ws"]
    check_tunnel_line(line, "h1", "GET")


@pytest.mark.timeout(20)
def test_h2_tunnel_access_line_after_compaction(start_sluice):
    """Over h2 the heads shrink once the 200's HEADERS frame was sent
    (nghttp2 holds its strings uncopied until then); the stream's h2 state
    moves with them and the connection's other streams keep working."""
    s = start_sluice(tunnel_config())
    c = H2WSClient(s.port)
    try:
        c.wait_connect_protocol()
        sids = [c.open_ws("/ws?room=7", headers=TUNNEL_HEADERS) for _ in range(3)]
        for sid in sids:
            assert c.streams[sid].status == 200
            assert c.echo(sid, b"x" * 1000) == b"x" * 1000
        # The middle stream's state was relinked on the connection's live
        # list: closing it first must leave the others intact.
        for sid in (sids[1], sids[0], sids[2]):
            f = c.close_ws(sid)
            assert f is not None and f.close_code == 1000
            c.wait(sid, 5)
        lines = [l for l in access_lines(s, 3) if l["route"] == "ws"]
        assert len(lines) == 3
        for line in lines:
            check_tunnel_line(line, "h2", "CONNECT")
        assert c.ping_ok(), "the h2 connection outlives its tunnels"
    finally:
        c.close()


# ---- data after the buffers were given back ---------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_large_message_after_tunnel_went_idle(start_sluice, proto):
    """A tunnel carries a 1 MiB message, goes idle (no pipe chunk held:
    the worker's in-use count falls back to 0 with the tunnel still open),
    then carries another 1 MiB message byte for byte: buffers are taken
    again on demand."""
    s = start_sluice(tunnel_config())
    payloads = [bytes((i * 7 + k) % 251 for i in range(MiB)) for k in (1, 2)]
    if proto == "h1":
        w = ws_open(s.port)
        echo = lambda p: w.echo(p, timeout=20)  # noqa: E731
    else:
        c = H2WSClient(s.port)
        c.wait_connect_protocol()
        sid = c.open_ws("/ws")
        echo = lambda p: c.echo(sid, p, timeout=20)  # noqa: E731
    try:
        assert echo(payloads[0]) == payloads[0]
        wait_for(lambda: chunks_in_use(s) == 0, 10, interval=0.1,
                 what="the idle tunnel's pipe chunks to be given back")
        assert echo(payloads[1]) == payloads[1]
        wait_for(lambda: chunks_in_use(s) == 0, 10, interval=0.1,
                 what="the pipe chunks to be given back again")
    finally:
        if proto == "h1":
            w.close()
        else:
            c.close()


# ---- an h2 tunnel's session asleep --------------------------------------------
#
# A connection whose streams are all idle tunnels sleeps like one without
# streams (front/h2.c h2_sleep): its nghttp2 session is freed and rebuilt
# on the next byte either way by replaying the client's header blocks and
# the tunnels' windows (front/h2sleep.h). The client must not be able to
# tell: its next header blocks refer to entries its encoder indexed before
# the sleep, flow control carries on where it was, and either side may
# speak first.

SLEEP_WAIT_S = 10.0  # the sleep comes 2 s after the last byte; margin for a loaded machine
DEVICE_HEADERS = (("user-agent", "idle-tunnel-agent/1.0"), ("x-device-id", "dev-7731"),
                  ("x-firmware-version", "4.2.0"))


def asleep(s):
    return metric_sum(s.metrics(), "sluice_h2_sessions_asleep", listener="public")


@pytest.mark.timeout(90)
def test_h2_tunnel_session_sleeps_and_wakes_unnoticed(start_sluice):
    s = start_sluice(tunnel_config(), workers=1)
    c = H2WSClient(s.port)
    try:
        c.wait_connect_protocol()
        sid = c.open_ws("/ws", headers=DEVICE_HEADERS)
        assert c.echo(sid, b"a" * 1000) == b"a" * 1000  # windows now short of their start
        wait_for(lambda: asleep(s) == 1, SLEEP_WAIT_S, what="the tunnel's session to sleep")
        # The client speaks first; then 1 MiB each way, byte for byte,
        # through windows rebuilt from where they were.
        big = bytes((i * 31 + 7) % 251 for i in range(MiB))
        assert c.echo(sid, big, timeout=30) == big
        assert asleep(s) == 0
        wait_for(lambda: asleep(s) == 1, SLEEP_WAIT_S, what="the session to sleep again")
        # A second tunnel: its CONNECT's header block refers to entries the
        # first one indexed, which only the replay put back.
        sid2 = c.open_ws("/ws", headers=DEVICE_HEADERS)
        assert c.streams[sid2].status == 200
        assert c.echo(sid2, b"second") == b"second" and c.echo(sid, b"first") == b"first"
        # A plain request: its response head comes from a fresh encoder.
        st = c.get("/v1/after-wake", headers=DEVICE_HEADERS)
        assert st.status == 200 and st.header("content-type") is not None
        wait_for(lambda: asleep(s) == 1, SLEEP_WAIT_S, what="two tunnels' session to sleep")
        # The GET's stream is gone: the replay resets it and goes on.
        assert c.get("/v1/again", headers=DEVICE_HEADERS).status == 200
        assert c.echo(sid2, b"z") == b"z"
        assert c.goaway is None and not c.closed
        f = c.close_ws(sid)
        assert f is not None and f.close_code == 1000
    finally:
        c.close()


@pytest.mark.timeout(60)
def test_asleep_h2_tunnel_keeps_the_window_its_client_gave(start_sluice):
    """A client that gives sluice more send window than SETTINGS say (a
    WINDOW_UPDATE on the connection and on the tunnel's stream) and never
    acknowledges what it reads: after a sleep, the echo of a message larger
    than the initial window still arrives whole, so the rebuilt session
    took the extra window back (replayed WINDOW_UPDATE); with only the
    initial window it would stop at 65,535 bytes and wait for an update
    this client never sends."""
    s = start_sluice(tunnel_config(), workers=1)
    c = H2WSClient(s.port, auto_ack=False)
    try:
        c.wait_connect_protocol()
        sid = c.open_ws("/ws", headers=DEVICE_HEADERS)
        extra = 300000
        c.conn.increment_flow_control_window(extra)
        c.conn.increment_flow_control_window(extra, stream_id=sid)
        c.flush()
        assert c.ping_ok()  # the updates are in
        wait_for(lambda: asleep(s) == 1, SLEEP_WAIT_S, what="the tunnel's session to sleep")
        big = bytes((i * 13 + 5) % 251 for i in range(150000))
        assert c.echo(sid, big, timeout=20) == big
        assert c.goaway is None and not c.closed
    finally:
        c.close()


@pytest.mark.timeout(60)
def test_asleep_h2_tunnel_wakes_for_its_upstream_side(start_sluice):
    """The first byte may come from sluice's side: an emergency block
    closing the tunnel of a sleeping session (close frame 1008) wakes it;
    the other tunnel on the connection keeps echoing."""
    from ws_helpers import BLOCK_ENTRY, ws_config
    cfg = ws_config(ws=ws_route(idle_timeout="300s"))
    cfg["listeners"][0]["timeouts"] = {"request_header": "300s", "idle": "300s"}
    s = start_sluice(cfg, workers=1)
    c = H2WSClient(s.port)
    try:
        c.wait_connect_protocol()
        blocked = c.open_ws("/ws", headers=[("x-device-class", "airtame-hub"),
                                            ("x-firmware-version", "3.8.0-b3")])
        other = c.open_ws("/ws", headers=[("x-device-class", "airtame-hub"),
                                          ("x-firmware-version", "3.8.0-b2")])
        assert c.echo(blocked, b"b3") == b"b3" and c.echo(other, b"b2") == b"b2"
        wait_for(lambda: asleep(s) == 1, SLEEP_WAIT_S, what="the session to sleep")
        s.write_config(dict(cfg, blocklist={"firmware": [dict(BLOCK_ENTRY)]}))
        assert s.reload() == 1.0
        f, before = c.expect_close(blocked, 5)
        assert before == [] and f is not None and f.close_code == 1008, (f, before)
        assert "INC-2041" in f.close_reason
        assert c.echo(other, b"still") == b"still"
        assert c.goaway is None and not c.closed
    finally:
        c.close()


@pytest.mark.timeout(60)
def test_asleep_h2_tunnels_drain_on_sigterm(start_sluice):
    """A deploy reaches sleeping tunnels: SIGTERM wakes each connection in
    its turn of the drain spread, its tunnels get the drain's close frame
    (1001) and it gets GOAWAY NO_ERROR; sluice exits 0."""
    import signal
    from test_drain_spread import REASON as DRAIN_REASON
    cfg = tunnel_config()
    cfg["drain_spread"] = "0s"
    s = start_sluice(cfg, workers=1)
    clients = []
    try:
        for _ in range(3):
            c = H2WSClient(s.port)
            c.wait_connect_protocol()
            sid = c.open_ws("/ws", headers=DEVICE_HEADERS)
            assert c.echo(sid, b"hi") == b"hi"
            clients.append((c, sid))
        wait_for(lambda: asleep(s) == 3, SLEEP_WAIT_S, what="three sessions asleep")
        s.send_signal(signal.SIGTERM)
        for c, sid in clients:
            f, before = c.expect_close(sid, 5)
            assert f is not None and f.close_code == 1001 and f.close_reason == DRAIN_REASON, f
            c.pump(0.5)
            assert c.goaway is not None and int(c.goaway.error_code) == 0
        assert s.wait(10) == 0
    finally:
        for c, _ in clients:
            c.close()


# ---- resident memory --------------------------------------------------------

IDLE_TUNNELS = 2000
# Measured (release build, one worker): 3.7 KiB per idle h1 tunnel at
# N=4000 and 3.6 at N=9000 (idle_bench); this test on main (before the
# compaction) 5.6. The bound is the measured
# figure plus 0.8 KiB: the settling itself is tight (16 samples over 4 s
# within N * 8 bytes, idle_bench.settle), what varies is the process's
# baseline (a few hundred KiB: N * 0.15 KiB) and the steps in which the
# slab, libev's descriptor table and the heap's top grow (another few
# hundred KiB). 0.8 KiB is below the 2 KiB arena chunk that is given back,
# so a tunnel that kept it fails.
BOUND_KIB_PER_TUNNEL = 4.5
# Over h2 the tunnel's connection sleeps once idle (front/h2.c h2_sleep:
# its nghttp2 session freed, to be rebuilt by a replay). What this test
# tells apart is two outcomes: asleep, measured 5.7 to 6.1 KiB per tunnel
# when run alone and 7.2 once inside the full suite (the heap's leftovers
# from setting 2,000 sessions up vary with how many were awake at once);
# awake, 14.3 (the session with its frame buffer's pages given back; 18.6
# with them). The bound sits halfway between the asleep figure and the
# awake one, so either side has about 4 KiB of margin: 10 KiB.
BOUND_KIB_PER_H2_TUNNEL = 10.0


@pytest.mark.parametrize("kind,bound", [("ws-h1", BOUND_KIB_PER_TUNNEL),
                                        ("ws-h2", BOUND_KIB_PER_H2_TUNNEL)])
def test_idle_ws_resident_memory_stays_within_bound(tmp_path, upstream, kind, bound):
    """IDLE_TUNNELS WebSocket tunnels (over h1: upgrade answered; over h2:
    RFC 8441 CONNECT answered) held idle by build/bench/idle_client, then
    nothing either way: sluice's resident set grows by at most |bound| KiB
    each, once settled (over 4 s, beyond the 2 s after which an awake h2
    session's frame buffer is given back). The release binary (ASan's
    allocator quarantines freed memory, which is what this measures)."""
    from test_idle import held_resident_kib
    cfg = tunnel_config()
    cfg["access_log"] = "off"
    cfg["listeners"][0]["max_connections"] = IDLE_TUNNELS + 100
    cfg["upstreams"]["identity"]["max_connections"] = IDLE_TUNNELS + 100
    cfg["upstreams"]["identity"]["max_pending"] = IDLE_TUNNELS + 100
    cfg["upstreams"]["identity"]["timeouts"]["idle"] = "300s"

    def all_open(s):
        wait_for(lambda: metric_sum(s.metrics(), "sluice_websocket_tunnels_active", route="ws")
                 == IDLE_TUNNELS, 30, interval=0.25, what="every tunnel open")
        if kind == "ws-h2":  # one connection per tunnel, each asleep once idle
            wait_for(lambda: asleep(s) == IDLE_TUNNELS, 30, interval=0.25,
                     what="every tunnel's session asleep")
    per_tunnel, before, after = held_resident_kib(tmp_path, upstream, cfg, kind,
                                                  IDLE_TUNNELS, all_open)
    print("%s: %.2f KiB resident per idle tunnel (VmRSS %d -> %d KiB)"
          % (kind, per_tunnel, before, after))
    assert per_tunnel <= bound, (
        "%.2f KiB resident per idle %s tunnel (VmRSS %d -> %d KiB)"
        % (per_tunnel, kind, before, after))
