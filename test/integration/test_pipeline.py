"""Upstream HTTP/1.1 pipelining (`upstreams.<name>.pipeline: N`): bodyless
GET/HEAD requests share connections, every client gets its own answer in
order, an abandoned request's answer is discarded, and requests left
unanswered by a failing connection are replayed once elsewhere."""
import json
import threading

from helpers import base_config, h1_once, wait_for


def pipelined_config(depth=8, response="5s", workers_conns=4):
    cfg = base_config()
    cfg["upstreams"]["identity"].update({
        "pipeline": depth,
        "max_connections": workers_conns,
        "timeouts": {"connect": "1s", "response": response, "idle": "60s"},
    })
    return cfg


def origin_connections(stats):
    """Connections sluice opened to the origin, from one /stats answer (the
    queries for /stats are connections of their own, counted apart)."""
    return stats["connections"] - stats["stats_connections"]


def origin_working_on(upstream, path):
    """Waits until the origin has read the request for |path| and is
    answering it: sluice's connection is then busy and pipelines behind."""
    wait_for(lambda: upstream.stats()["paths"].get(path) == 1, 10,
             interval=0.01, what="the origin reading %s" % path)


def origin_holds_unread(upstream, n):
    """Waits until |n| request heads wait, unread, at the origin behind the
    one it answers: sluice has written them on the busy connection."""
    wait_for(lambda: upstream.stats()["heads_buffered"] >= n, 10, interval=0.01,
             what="%d pipelined heads at the origin" % n)


def body_path(st):
    return json.loads(bytes(st.data))["path"]


def test_each_stream_gets_its_own_answer(start_sluice, upstream, h2_client_factory):
    s = start_sluice(pipelined_config(), workers=1)
    c = h2_client_factory(s.port)
    sids = {c.start("GET", "/v1/item/%d" % i): i for i in range(90)}
    for st in c.wait_all(list(sids), timeout=20):
        assert st.status == 200
        assert body_path(st) == "/v1/item/%d" % sids[st.id]
    stats = upstream.stats()
    assert stats["paths"].get("/v1/item/0") == 1
    assert stats["errors"] == 0
    # 90 requests over at most 4 connections: pipelined, not one each.
    assert origin_connections(stats) <= 4


def test_head_and_get_interleaved(start_sluice, h2_client_factory):
    s = start_sluice(pipelined_config(), workers=1)
    c = h2_client_factory(s.port)
    sids = []
    for i in range(40):
        sids.append((c.start("HEAD" if i % 2 else "GET", "/v1/h/%d" % i), i))
    for sid, i in sids:
        st = c.wait(sid, timeout=20)
        assert st.status == 200
        if i % 2:
            assert bytes(st.data) == b""
        else:
            assert body_path(st) == "/v1/h/%d" % i


def test_abandoned_request_answer_is_discarded(start_sluice, upstream, h2_client_factory):
    """A slow head keeps the pipeline busy; streams behind it are reset by
    the client once they reached the origin. Their answers arrive later and
    must not reach anyone else."""
    s = start_sluice(pipelined_config(workers_conns=1), workers=1)
    c = h2_client_factory(s.port)
    slow = c.start("GET", "/slow?ms=600")
    origin_working_on(upstream, "/slow")
    doomed = [c.start("GET", "/v1/doomed/%d" % i) for i in range(3)]
    origin_holds_unread(upstream, 3)
    for sid in doomed:
        c.conn.reset_stream(sid)
    c.flush()
    keep = [c.start("GET", "/v1/keep/%d" % i) for i in range(3)]
    assert c.wait(slow, timeout=10).status == 200
    for i, sid in enumerate(keep):
        st = c.wait(sid, timeout=10)
        assert st.status == 200
        assert body_path(st) == "/v1/keep/%d" % i
    # The same single connection served everything, in order.
    assert origin_connections(upstream.stats()) == 1


def test_connection_failure_replays_unanswered_requests(start_sluice, upstream, h2_client_factory):
    """/close makes the origin drop the connection without answering; the
    pipelined requests behind it are replayed on a new connection."""
    s = start_sluice(pipelined_config(workers_conns=2), workers=1)
    c = h2_client_factory(s.port)
    first = c.start("GET", "/slow?ms=1000")
    origin_working_on(upstream, "/slow")
    dropper = c.start("GET", "/close")
    behind = [c.start("GET", "/v1/after/%d" % i) for i in range(5)]
    origin_holds_unread(upstream, 6)  # all on the connection that will fail
    assert c.wait(first, timeout=10).status == 200
    assert c.wait(dropper, timeout=10).status == 502
    for i, sid in enumerate(behind):
        st = c.wait(sid, timeout=10)
        assert st.status == 200, st.status
        assert body_path(st) == "/v1/after/%d" % i


def test_connection_close_answer_ends_the_pipeline(start_sluice, upstream, h2_client_factory):
    s = start_sluice(pipelined_config(workers_conns=2), workers=1)
    c = h2_client_factory(s.port)
    first = c.start("GET", "/slow?ms=1000&close=1")
    origin_working_on(upstream, "/slow")
    behind = [c.start("GET", "/v1/next/%d" % i) for i in range(5)]
    origin_holds_unread(upstream, 5)  # behind the answer that ends it
    assert c.wait(first, timeout=10).status == 200
    for i, sid in enumerate(behind):
        st = c.wait(sid, timeout=10)
        assert st.status == 200
        assert body_path(st) == "/v1/next/%d" % i


def test_timeout_of_the_head_replays_the_rest(start_sluice, upstream, h2_client_factory):
    s = start_sluice(pipelined_config(workers_conns=2, response="1s"), workers=1)
    c = h2_client_factory(s.port)
    slow = c.start("GET", "/slow?ms=3000")
    origin_working_on(upstream, "/slow")
    behind = [c.start("GET", "/v1/t/%d" % i) for i in range(3)]
    origin_holds_unread(upstream, 3)  # behind the head that times out
    assert c.wait(slow, timeout=10).status == 504
    for i, sid in enumerate(behind):
        st = c.wait(sid, timeout=10)
        assert st.status == 200
        assert body_path(st) == "/v1/t/%d" % i


def test_requests_with_bodies_are_not_pipelined(start_sluice, upstream):
    s = start_sluice(pipelined_config(workers_conns=4), workers=1)
    import socket
    results = []

    def post(i):
        body = b"x" * 1000
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(b"POST /sha256 HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n"
                     b"Connection: close\r\n\r\n" + body)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        results.append(data.split(b" ", 2)[1])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results == [b"200"] * 8
    assert upstream.stats()["max_inflight"] >= 1
    assert h1_once(s.port, "/v1/x")[0] == 200


def test_h1_clients_share_pipelined_connections(start_sluice, upstream):
    s = start_sluice(pipelined_config(workers_conns=2), workers=1)
    out = {}

    def client(i):
        out[i] = h1_once(s.port, "/v1/c/%d" % i)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    for i in range(30):
        status, _, body, _ = out[i]
        assert status == 200
        assert json.loads(body)["path"] == "/v1/c/%d" % i
    assert origin_connections(upstream.stats()) <= 2
