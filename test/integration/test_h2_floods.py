"""HTTP/2 flood guards (SPEC section 4: rapid reset and CONTINUATION floods
refused, libnghttp2's own guards switched on): raw frames from a hostile
client end its connection with GOAWAY, and sluice keeps serving others."""
import socket
import struct
import time

import hpack
import pytest
from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame, PingFrame,
                              PriorityFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from helpers import base_config, h1_once, wait_for

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(PREFACE + SettingsFrame(0).serialize())
    return s


def request_block(enc, path):
    return enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                       (":path", path)])


def read_until_goaway(s, deadline):
    """Reads frames until GOAWAY or EOF; returns the GOAWAY error code, or
    None if the connection simply closed."""
    buf = b""
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return None
        except socket.timeout:
            continue
        if not chunk:
            return None
        buf += chunk
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            ftype = buf[3]
            if len(buf) < 9 + length:
                break
            payload = buf[9:9 + length]
            buf = buf[9 + length:]
            if ftype == 0x7:  # GOAWAY
                return struct.unpack(">I", payload[4:8])[0]
    raise AssertionError("no GOAWAY and no close within the deadline")


# sluice's misbehaviour budget per connection (proxy/front/h2.c, H2_GLITCH_*):
# a burst of BURST tokens, refilled at RATE per second; one token per client
# RST_STREAM, per reset the client provokes, per empty DATA without
# END_STREAM, per PRIORITY, PING or SETTINGS frame.
GLITCH_BURST = 1000
GLITCH_RATE = 33
ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1


def budget_allows(elapsed):
    """Tokens a connection can spend within |elapsed| seconds: the burst,
    plus the refill of every whole second that may start in that time
    (integer-second refill, so one more than the elapsed seconds)."""
    return GLITCH_BURST + GLITCH_RATE * (int(elapsed) + 1)


def read_frames(s, buf, deadline, stop):
    """Reads frames into |stop|(type, flags, sid, payload) until it returns
    a true value (returned). Returns ("goaway", code) on GOAWAY, ("eof",)
    on close or reset. |buf| is a bytearray of unparsed bytes, kept across
    calls."""
    while time.monotonic() < deadline:
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(buf[9:9 + length])
            del buf[:9 + length]
            if ftype == 0x7:
                return ("goaway", struct.unpack(">I", payload[4:8])[0])
            r = stop(ftype, flags, sid, payload)
            if r:
                return r
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return ("eof",)
        except socket.timeout:
            continue
        if not chunk:
            return ("eof",)
        buf += chunk
    raise AssertionError("no answer within the deadline")


def paced_flood(s, batches, timeout=60, after=None):
    """Sends each byte string of |batches| followed by a PING, and waits for
    that PING's ACK before the next batch (a paced flood: everything sluice
    reads, it reads before it could end the connection, so its GOAWAY is not
    lost to a reset). Returns (result, batches sent, seconds): result is
    ("goaway", code), ("eof",) or ("open",) if every batch was answered.
    |after|(i), if given, runs once batch |i| was answered."""
    buf = bytearray()
    t0 = time.monotonic()
    deadline = t0 + timeout
    n = 0
    for i, batch in enumerate(batches):
        opaque = struct.pack(">Q", i + 1)
        try:
            s.sendall(batch + PingFrame(0, opaque_data=opaque).serialize())
        except (BrokenPipeError, ConnectionResetError):
            return ("eof",), n, time.monotonic() - t0
        n += 1

        def acked(ftype, flags, sid, payload):
            return ftype == 0x6 and flags & 0x1 and payload == opaque
        r = read_frames(s, buf, deadline, acked)
        if r is not True:
            return r, n, time.monotonic() - t0
        if after:
            after(i)
    return ("open",), n, time.monotonic() - t0


def test_rapid_reset_flood_gets_enhance_your_calm(start_sluice, upstream):
    """CVE-2023-44487: HEADERS then RST_STREAM, 3,000 times. The budget
    ends the connection with ENHANCE_YOUR_CALM, and no more requests reach
    the origin than the budget lets through."""
    s_ = start_sluice(base_config())
    s = connect(s_.port)
    enc = hpack.Encoder()
    pairs, per_batch = 3000, 50

    def batches():
        for b in range(pairs // per_batch):
            out = b""
            for i in range(per_batch):
                sid = 1 + 2 * (b * per_batch + i)
                out += HeadersFrame(sid, request_block(enc, "/v1/x"),
                                    flags=["END_HEADERS", "END_STREAM"]).serialize()
                out += RstStreamFrame(sid, error_code=8).serialize()
            yield out
    r, n, secs = paced_flood(s, batches())
    s.close()
    assert r == ("goaway", ENHANCE_YOUR_CALM), r
    allowed = budget_allows(secs)
    # Each batch costs per_batch resets and one PING: the connection ended
    # in the batch that overdrew the budget.
    assert (n - 1) * (per_batch + 1) < allowed, (n, secs)
    # A request reaches the origin only if its HEADERS came before the
    # budget ran out.
    print("rapid reset: %s after %d batches, %.2fs, origin saw %d"
          % (r, n, secs, upstream.seen("/v1/x")))
    assert upstream.seen("/v1/x") <= allowed, (upstream.seen("/v1/x"), secs)
    assert h1_once(s_.port, "/v1/after")[0] == 200


def test_made_you_reset_flood_gets_enhance_your_calm(start_sluice, upstream):
    """MadeYouReset (CVE-2025-8671): each request is dispatched and reaches
    the origin, then its DATA contradicts its content-length, so sluice
    resets it (PROTOCOL_ERROR, RFC 9113 §8.1.1). Those resets count against
    the same budget: the connection ends with ENHANCE_YOUR_CALM, and the
    origin sees at most the budget plus one batch of requests (a reset is
    charged when it is sent, after the batch that provoked it was read)."""
    s_ = start_sluice(base_config())
    s = connect(s_.port)
    enc = hpack.Encoder()
    n_batches, per_batch = 300, 10

    def sids(b):
        return [1 + 2 * (b * per_batch + i) for i in range(per_batch)]

    def batches():
        # Batch b opens its streams and breaks those of batch b-1, which
        # the origin has seen by then.
        for b in range(n_batches + 1):
            out = b""
            for sid in sids(b) if b < n_batches else []:
                block = enc.encode([(":method", "POST"), (":scheme", "http"),
                                    (":authority", "a"), (":path", "/v1/myr"),
                                    ("content-length", "10")])
                out += HeadersFrame(sid, block, flags=["END_HEADERS"]).serialize()
            for sid in sids(b - 1) if b > 0 else []:
                out += DataFrame(sid, b"x", flags=["END_STREAM"]).serialize()
            yield out

    def origin_saw_batch(b):
        # Bounded: once the budget is spent sluice ignores new HEADERS, and
        # the next batch then meets the GOAWAY.
        want, deadline = per_batch * (b + 1), time.monotonic() + 2
        while upstream.seen("/v1/myr") < want and time.monotonic() < deadline:
            time.sleep(0.005)
    r, n, secs = paced_flood(s, batches(), after=origin_saw_batch)
    s.close()
    stats = upstream.stats()
    seen = stats["paths"].get("/v1/myr", 0)
    print("made you reset: %s after %d batches, %.2fs, origin saw %d requests on %d connections"
          % (r, n, secs, seen, stats["connections"]))
    assert r == ("goaway", ENHANCE_YOUR_CALM), (r, n, seen)
    allowed = budget_allows(secs)
    # A batch costs per_batch resets (charged a batch late) and one PING.
    assert (n - 2) * (per_batch + 1) < allowed, (n, secs)
    assert seen <= allowed + per_batch, (seen, secs)
    assert h1_once(s_.port, "/v1/after")[0] == 200


@pytest.mark.parametrize("kind", ["empty_data", "padding_only_data", "ping", "priority",
                                  "settings"])
def test_no_progress_frame_flood_gets_enhance_your_calm(start_sluice, upstream, kind):
    """Frames that cost work and move nothing forward (zero-length DATA
    without END_STREAM on an open stream, PING, PRIORITY, SETTINGS) are
    charged to the same budget."""
    s_ = start_sluice(base_config())
    s = connect(s_.port)
    enc = hpack.Encoder()
    block = enc.encode([(":method", "POST"), (":scheme", "http"), (":authority", "a"),
                        (":path", "/slow?ms=5000")])
    s.sendall(HeadersFrame(1, block, flags=["END_HEADERS"]).serialize())
    frames, per_batch = 3000, 100
    one = {
        "empty_data": DataFrame(1, b"").serialize(),
        "padding_only_data": DataFrame(1, b"", flags=["PADDED"], pad_length=8).serialize(),
        "ping": PingFrame(0, opaque_data=b"\xff" * 8).serialize(),
        "priority": PriorityFrame(3, depends_on=0, stream_weight=16).serialize(),
        "settings": SettingsFrame(0, settings={SettingsFrame.MAX_FRAME_SIZE: 16384}).serialize(),
    }[kind]
    r, n, secs = paced_flood(s, (one * per_batch for _ in range(frames // per_batch)))
    s.close()
    print("%s flood: %s after %d batches, %.2fs" % (kind, r, n, secs))
    assert r == ("goaway", ENHANCE_YOUR_CALM), (r, n)
    # The initial SETTINGS and each batch's PING are charged too.
    assert (n - 1) * (per_batch + 1) < budget_allows(secs), (n, secs)
    assert h1_once(s_.port, "/v1/after")[0] == 200


@pytest.mark.parametrize("prioritised", [False, True])
def test_headers_on_a_lower_never_opened_stream_is_a_connection_error(start_sluice, upstream,
                                                                       prioritised):
    """RFC 9113 §5.1.1 (h2spec 5.1.1/2): opening stream 5 closes the idle
    streams below it; HEADERS on stream 3 then is PROTOCOL_ERROR, also when
    a PRIORITY frame made stream 3 known (idle) to libnghttp2 before."""
    s_ = start_sluice(base_config())
    s = connect(s_.port)
    enc = hpack.Encoder()
    if prioritised:
        s.sendall(PriorityFrame(3, depends_on=0, stream_weight=16).serialize())
    s.sendall(HeadersFrame(5, request_block(enc, "/v1/five"),
                           flags=["END_HEADERS", "END_STREAM"]).serialize())
    s.sendall(HeadersFrame(3, request_block(enc, "/v1/three"),
                           flags=["END_HEADERS", "END_STREAM"]).serialize())
    r = read_frames(s, bytearray(), time.monotonic() + 5, lambda *f: False)
    s.close()
    assert r == ("goaway", PROTOCOL_ERROR), r
    assert upstream.seen("/v1/three") == 0


def test_trailers_on_an_older_open_stream_are_accepted(start_sluice, upstream):
    """The other side of §5.1.1: a stream opened before a newer one is still
    open, and its trailers (HEADERS with END_STREAM) complete it."""
    s_ = start_sluice(base_config())
    s = connect(s_.port)
    enc = hpack.Encoder()
    block = enc.encode([(":method", "POST"), (":scheme", "http"), (":authority", "a"),
                        (":path", "/echo")])
    s.sendall(HeadersFrame(1, block, flags=["END_HEADERS"]).serialize()
              + DataFrame(1, b"abc").serialize()
              + HeadersFrame(3, request_block(enc, "/v1/three"),
                             flags=["END_HEADERS", "END_STREAM"]).serialize()
              + HeadersFrame(1, enc.encode([("x-trailer", "1")]),
                             flags=["END_HEADERS", "END_STREAM"]).serialize())
    ended = set()

    def both_done(ftype, flags, sid, payload):
        if ftype in (0x0, 0x1) and flags & 0x1:
            ended.add(sid)
        if ftype == 0x3:
            return ("rst", sid)
        return ended >= {1, 3}
    r = read_frames(s, bytearray(), time.monotonic() + 10, both_done)
    s.close()
    assert r is True, r


def test_continuation_flood_is_refused(start_sluice):
    s_ = start_sluice(base_config())
    s = connect(s_.port)
    enc = hpack.Encoder()
    block = request_block(enc, "/v1/x")
    out = HeadersFrame(1, block, flags=["END_STREAM"]).serialize()  # no END_HEADERS
    # An endless header block in tiny CONTINUATION frames: CVE-2024-27316 class.
    filler = hpack.Encoder().encode([("x-pad", "a" * 20)])
    for _ in range(200):
        out += ContinuationFrame(1, filler).serialize()
    try:
        s.sendall(out)
    except (BrokenPipeError, ConnectionResetError):
        pass
    code = read_until_goaway(s, time.monotonic() + 10)
    s.close()
    # A valid block that never ends: nghttp2 stops after 8 CONTINUATION
    # frames (its max_continuations) with an error GOAWAY.
    assert code is None or code != 0, code
    assert h1_once(s_.port, "/v1/after")[0] == 200


def test_window_update_overflow_is_a_connection_error(start_sluice):
    s_ = start_sluice(base_config())
    s = connect(s_.port)
    # Two increments that overflow the 2^31-1 window (RFC 9113 §6.9.1).
    s.sendall(WindowUpdateFrame(0, window_increment=0x7FFFFFFF).serialize() * 2)
    code = read_until_goaway(s, time.monotonic() + 10)
    s.close()
    assert code in (None, 0x3), code  # FLOW_CONTROL_ERROR
    assert h1_once(s_.port, "/v1/after")[0] == 200


@pytest.mark.parametrize("sid", [2147483645, 2147483647])
def test_teardown_with_a_stream_at_a_huge_id_is_prompt(start_sluice, upstream, sid):
    """Closing a connection frees its live streams from its own list: a
    stream id near 2^31 must not make the worker walk (or, at 2^31-1,
    overflow) a range of ids. One worker, so a stuck worker is the one
    the next client meets."""
    s_ = start_sluice(base_config(), workers=1)
    s = connect(s_.port)
    enc = hpack.Encoder()
    # /slow holds the upstream answer, so the stream is live at close.
    s.sendall(HeadersFrame(sid, request_block(enc, "/slow?ms=3000"),
                           flags=["END_HEADERS", "END_STREAM"]).serialize())
    wait_for(lambda: upstream.seen("/slow") == 1, 5, what="the stream reaching the upstream")
    s.close()
    status, _, _, secs = h1_once(s_.port, "/v1/after", timeout=5)
    assert status == 200
    assert secs < 1.0, secs
    # Deaf-to-SIGTERM was the failure at 2^31-1: the drain must end in time.
    assert s_.stop(timeout=5) == 0


STALL_S = 2.0  # the test listener's idle timeout, which is also the stall timeout
CANCEL = 0x8


def stall_config():
    cfg = base_config()
    cfg["listeners"][0]["timeouts"] = {"request_header": "1s", "idle": "%ds" % STALL_S}
    return cfg


def test_streams_that_never_open_their_window_are_reset_and_released(start_sluice, upstream):
    """A client that announces SETTINGS_INITIAL_WINDOW_SIZE=0 and never
    opens a window gets the response heads, then RST_STREAM CANCEL on each
    stream once it made no write progress for the idle timeout; the origin
    connections are released then, and the connection itself ends after
    one more idle timeout (only stalled streams do not keep it open)."""
    s_ = start_sluice(stall_config())
    s = socket.create_connection(("127.0.0.1", s_.port), timeout=1)
    s.sendall(PREFACE + SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
              .serialize())
    enc = hpack.Encoder()
    n = 20
    sids = [1 + 2 * i for i in range(n)]
    t0 = time.monotonic()
    s.sendall(b"".join(HeadersFrame(sid, request_block(enc, "/bytes?n=200000"),
                                    flags=["END_HEADERS", "END_STREAM"]).serialize()
                       for sid in sids))
    heads, resets, data = set(), {}, 0
    buf = bytearray()

    def watch(ftype, flags, sid, payload):
        nonlocal data
        if ftype == 0x1:
            heads.add(sid)
        elif ftype == 0x0:
            data += len(payload)
        elif ftype == 0x3:
            resets[sid] = (struct.unpack(">I", payload)[0], time.monotonic() - t0)
        return len(resets) == n
    r = read_frames(s, buf, t0 + STALL_S + 5, watch)
    assert r is True, (r, heads, resets)
    assert heads == set(sids)
    assert data == 0
    assert {code for code, _ in resets.values()} == {CANCEL}
    # No earlier than the stall timeout, and not much later (the lazy
    # timer may fire once early, then re-arms for the exact deadline).
    assert min(t for _, t in resets.values()) >= STALL_S - 0.1, resets
    assert max(t for _, t in resets.values()) < STALL_S + 1.5, resets
    # The origin connections were given up with the streams (only the
    # stats request's own connection is open).
    wait_for(lambda: upstream.stats()["open_connections"] == 1, 2,
             what="origin connections released")
    # Then the connection is idle: GOAWAY and close within one more timeout.
    r = read_frames(s, buf, time.monotonic() + STALL_S + 2, lambda *f: False)
    assert r in (("goaway", 0), ("eof",)), r
    assert time.monotonic() - t0 < 2 * STALL_S + 2
    s.close()
    assert h1_once(s_.port, "/v1/after")[0] == 200


def test_a_client_that_reads_nothing_is_released(start_sluice, upstream):
    """A client that stops reading the socket: the response fills the
    socket buffers and sluice's output queue, its stream makes no write
    progress, and after the stall timeout the origin connection is
    released and, the connection being left with stalled streams only,
    closed after one more idle timeout even though nothing can be flushed
    to it."""
    s_ = start_sluice(stall_config())
    s = socket.create_connection(("127.0.0.1", s_.port), timeout=1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(PREFACE + SettingsFrame(0).serialize()
              + WindowUpdateFrame(0, window_increment=64 * 1024 * 1024).serialize())
    enc = hpack.Encoder()
    t0 = time.monotonic()
    s.sendall(HeadersFrame(1, request_block(enc, "/bytes?n=67108864"),
                           flags=["END_HEADERS", "END_STREAM"]).serialize())
    wait_for(lambda: upstream.seen("/bytes") == 1, 5, what="the request at the origin")
    wait_for(lambda: upstream.stats()["open_connections"] == 1, STALL_S + 3,
             what="origin connection released")
    released = time.monotonic() - t0
    assert released >= STALL_S - 0.1, released
    # Closed by sluice: reading now drains the buffered bytes, then EOF.
    s.settimeout(0.5)
    deadline = t0 + 2 * STALL_S + 3
    closed = False
    while time.monotonic() < deadline and not closed:
        try:
            closed = s.recv(1 << 20) == b""
        except socket.timeout:
            continue
        except ConnectionResetError:
            closed = True
    assert closed, "connection still open %.1fs after the stall" % (time.monotonic() - t0)
    s.close()
    assert h1_once(s_.port, "/v1/after")[0] == 200


def test_streams_reset_mid_upload_give_back_the_connection_window(start_sluice, upstream):
    """Body bytes sluice buffered for a stream (queued for the one upstream
    connection) and never forwarded, because the client reset the stream,
    count as consumed: the connection window comes back. Without that,
    about 17 such streams shrink the 1 MiB connection window to nothing
    and every later upload on the connection stalls."""
    cfg = base_config()
    cfg["upstreams"]["identity"]["max_connections"] = 1
    s_ = start_sluice(cfg, workers=1)
    s = connect(s_.port)
    enc = hpack.Encoder()
    # The one upstream connection is busy for the whole test.
    s.sendall(HeadersFrame(1, request_block(enc, "/slow?ms=8000"),
                           flags=["END_HEADERS", "END_STREAM"]).serialize())
    wait_for(lambda: upstream.seen("/slow") == 1, 5, what="the slow request at the origin")
    n, body = 20, 60000
    increments = []
    buf = bytearray()
    for i in range(n):
        sid = 3 + 2 * i
        block = enc.encode([(":method", "POST"), (":scheme", "http"), (":authority", "a"),
                            (":path", "/echo"), ("content-length", str(body))])
        out = HeadersFrame(sid, block, flags=["END_HEADERS"]).serialize()
        for off in range(0, body, 15000):
            out += DataFrame(sid, b"x" * min(15000, body - off)).serialize()
        out += RstStreamFrame(sid, error_code=CANCEL).serialize()
        s.sendall(out + PingFrame(0, opaque_data=struct.pack(">Q", i + 1)).serialize())
        opaque = struct.pack(">Q", i + 1)

        def ack(ftype, flags, sid_, payload):
            if ftype == 0x8 and sid_ == 0:
                increments.append(struct.unpack(">I", payload)[0] & 0x7FFFFFFF)
            return ftype == 0x6 and flags & 0x1 and payload == opaque
        assert read_frames(s, buf, time.monotonic() + 5, ack) is True
    s.close()
    # The first connection WINDOW_UPDATE raises 65,535 to 1 MiB; nghttp2
    # then returns consumed bytes once half the window is consumed.
    initial = (1 << 20) - 65535
    returned = sum(increments) - initial
    assert returned >= n * body - (1 << 19), (increments, returned)
