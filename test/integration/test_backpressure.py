"""Back-pressure on proxied responses (SPEC section 4 "Upstream"): a client
that stops reading a large response must not make sluice buffer it. The
upstream is throttled by TCP instead; once the client reads again every
byte arrives intact.

The memory bound: sluice holds a stalled stream in pipes capped at 64 KiB
(+16 KiB of overshoot) per direction, well under 1 MiB; whatever else is
in flight sits in kernel socket buffers (client receive 64 KiB, sluice's
send at most net.ipv4.tcp_wmem's 4 MiB), which RSS does not count. A proxy
that buffered the response would hold at least SIZE minus those, about
60 MiB. RSS is sampled before the request, and again once sluice has
stopped reading its upstream (the state, not a time), and may grow by
GROWTH_BOUND: far above what sluice needs, far below what buffering
costs."""
import hashlib
import socket

import h2.config
import h2.connection
import h2.events

from helpers import base_config, proc_status, wait_for, wait_tcp_stalled

SIZE = 64 << 20  # 64 MiB: far more than socket buffers and sluice's pipes
GROWTH_BOUND = 16 * 1024  # KiB; see above


def wait_upstream_stalled(s_, timeout=10.0):
    """Waits until sluice has stopped reading its upstream (see
    wait_tcp_stalled). A sluice that buffered the response would keep
    draining its socket until the upstream had sent everything. Well within
    the upstream's 5 s response timeout."""
    wait_tcp_stalled(timeout, remote_port=s_.upstream_port,
                     what="sluice to stop reading the upstream")


def expected_sha(n):
    # The upstream's /bytes pattern: byte i is i % 251.
    block = bytes(i % 251 for i in range(251 * 4096))
    h = hashlib.sha256()
    left = n
    while left:
        take = min(left, len(block))
        h.update(block[:take])
        left -= take
    return h.hexdigest()


def test_h1_slow_reader_does_not_grow_memory(start_sluice):
    s_ = start_sluice(base_config(), workers=1)
    c = socket.create_connection(("127.0.0.1", s_.port), timeout=20)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    before = proc_status(s_.pid)["VmRSS"]  # before the transfer begins
    c.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % SIZE)
    wait_upstream_stalled(s_)  # client reads nothing: everything in flight stalls
    after = proc_status(s_.pid)["VmRSS"]
    assert after - before < GROWTH_BOUND, "RSS grew %d KiB while the client did not read" % (
        after - before)
    # Now read it all: intact.
    data = b""
    while b"\r\n\r\n" not in data:
        data += c.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    h = hashlib.sha256(body)
    got = len(body)
    while got < SIZE:
        chunk = c.recv(1 << 20)
        assert chunk, "connection closed after %d bytes" % got
        h.update(chunk)
        got += len(chunk)
    c.close()
    assert got == SIZE
    assert h.hexdigest() == expected_sha(SIZE)


def test_h2_stream_without_window_does_not_grow_memory(start_sluice):
    s_ = start_sluice(base_config(), workers=1)
    sock = socket.create_connection(("127.0.0.1", s_.port), timeout=20)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    before = proc_status(s_.pid)["VmRSS"]  # before the transfer begins
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                            (":path", "/bytes?n=%d" % SIZE)], end_stream=True)
    sock.sendall(conn.data_to_send())
    # Read without acknowledging: the 65535-byte windows fill and stop the
    # stream; sluice must stop reading the upstream.
    received = 0
    sock.settimeout(0.05)

    def pump():
        nonlocal received
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    raise AssertionError("sluice closed the connection")
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.DataReceived):
                        received += len(ev.data)
                sock.sendall(conn.data_to_send())
        except socket.timeout:
            pass
        return received == 65535

    wait_for(pump, 10.0, interval=0.05, what="the stream's window to fill")
    wait_upstream_stalled(s_)
    pump()
    assert received == 65535
    after = proc_status(s_.pid)["VmRSS"]
    assert after - before < GROWTH_BOUND, "RSS grew %d KiB with the stream stalled" % (
        after - before)
    sock.close()
