"""Priority reaches the upstream queue (issue 11): when the queue towards an
upstream is full, a request of higher priority takes the place of the newest
waiter of the lowest priority below its own, which is refused 503
upstream_queue_full with a retry-after; waiters are served high first.

The order of arrival is made by the protocol, not by sleeping: HTTP/2
requests sent in one write reach sluice in stream order, and with one
upstream connection the origin's x-upstream-request numbers are the order in
which sluice served the waiters."""
import collections
import json

import pytest

from helpers import H2Client, H2Stream, base_config


def priority_config(max_pending):
    cfg = base_config()
    cfg["upstreams"]["identity"].update({"max_connections": 1, "max_pending": max_pending})
    cfg["routes"] = [
        {"name": "hi", "match": {"path_prefix": "/hi"}, "upstream": "identity",
         "priority": "high"},
        {"name": "lo", "match": {"path_prefix": "/lo"}, "upstream": "identity",
         "priority": "low"},
        {"name": "default", "match": {"path_prefix": "/"}, "upstream": "identity"},
    ]
    return cfg


def send_in_one_write(c, paths):
    sids = []
    for path in paths:
        sid = c.conn.get_next_available_stream_id()
        c.streams[sid] = H2Stream(sid)
        c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                  (":authority", "a"), (":path", path)], end_stream=True)
        sids.append(sid)
    c.flush()
    return sids


def queue_up(s, requests):
    """Warms the pool's one connection, then sends |requests| (name, path)
    in one write; {name: answer}."""
    with H2Client(s.port) as c:
        assert c.get("/warm").status == 200  # opens the one connection, left idle
        names = [n for n, _ in requests]
        answers = c.wait_all(send_in_one_write(c, [p for _, p in requests]), timeout=15)
    return dict(zip(names, answers))


def shed(st):
    return st.status == 503 and json.loads(st.body)["error"] == "upstream_queue_full"


def test_high_takes_the_place_of_the_newest_lower_waiter(start_sluice):
    # One connection, three places. The hold occupies the connection; the
    # queue fills with normal1, low1, low2. Each high request then takes
    # the place of the newest waiter of the lowest priority: low2, low1,
    # then normal1; the fourth finds only high waiters and is shed itself.
    s = start_sluice(priority_config(3), workers=1)
    got = queue_up(s, [
        ("hold", "/lo/slow?ms=800"),
        ("normal1", "/n1"),
        ("low1", "/lo/1"),
        ("low2", "/lo/2"),
        ("high1", "/hi/1"),
        ("high2", "/hi/2"),
        ("high3", "/hi/3"),
        ("high4", "/hi/4"),
    ])
    for n in ("low2", "low1", "normal1", "high4"):
        assert shed(got[n]), (n, got[n].status, bytes(got[n].data))
        # The queue has not drained yet (its rate is unknown): the reject
        # minimum (1 s) with its jitter window (0.5 x 1 s, at least 1 s).
        assert got[n].header("retry-after") in ("1", "2")
    for n in ("hold", "high1", "high2", "high3"):
        assert got[n].status == 200, (n, got[n].status)
    order = sorted(("high1", "high2", "high3"),
                   key=lambda n: int(got[n].header("x-upstream-request")))
    assert order == ["high1", "high2", "high3"]
    assert int(got["high1"].header("x-upstream-request")) == \
        int(got["hold"].header("x-upstream-request")) + 1
    assert s.metric("sluice_rejections_total", route="lo", reason="queue_full") == 2
    assert s.metric("sluice_rejections_total", route="default", reason="queue_full") == 1
    assert s.metric("sluice_rejections_total", route="hi", reason="queue_full") == 1


def test_waiters_are_served_high_first(start_sluice):
    # The queue has room for all: low1, normal1, high1 arrive in that order
    # behind the hold and are served high1, normal1, low1.
    s = start_sluice(priority_config(8), workers=1)
    got = queue_up(s, [
        ("hold", "/slow?ms=500"),
        ("low1", "/lo/1"),
        ("normal1", "/n1"),
        ("high1", "/hi/1"),
    ])
    assert all(st.status == 200 for st in got.values()), {n: st.status for n, st in got.items()}
    served = sorted(got, key=lambda n: int(got[n].header("x-upstream-request")))
    assert served == ["hold", "high1", "normal1", "low1"]
    assert s.metric("sluice_rejections_total", reason="queue_full") == 0


def test_low_does_not_displace_anyone(start_sluice):
    # A full queue of normal waiters: a low request is shed, nobody else.
    s = start_sluice(priority_config(2), workers=1)
    got = queue_up(s, [
        ("hold", "/slow?ms=500"),
        ("normal1", "/n1"),
        ("normal2", "/n2"),
        ("low1", "/lo/1"),
    ])
    assert shed(got["low1"])
    assert [got[n].status for n in ("hold", "normal1", "normal2")] == [200, 200, 200]


@pytest.mark.parametrize("spread", ["backlog", "window"])
def test_a_shed_crowd_is_spread_at_the_rate_the_queue_drains(start_sluice, spread):
    # One connection, two places; every request takes 100 ms upstream.
    cfg = priority_config(2)
    cfg["reject"] = {"retry_after": {"min": "1s", "max": "120s", "jitter": 0.5, "spread": spread}}
    s = start_sluice(cfg, workers=1)
    with H2Client(s.port) as c:
        # Learn: one served, two waiting; the second waiter is handed the
        # connection one service time (>= 100 ms) after the first, with
        # the queue not empty in between: the drain period, >= 100 ms.
        learn = c.wait_all(send_in_one_write(c, ["/slow?ms=100"] * 3), timeout=15)
        assert [r.status for r in learn] == [200] * 3
        # A crowd: three fill the connection and the queue, 60 are shed.
        got = c.wait_all(send_in_one_write(c, ["/slow?ms=100"] * 63), timeout=30)
    shed_ra = [int(r.header("retry-after")) for r in got if shed(r)]
    assert len(shed_ra) == 60, [r.status for r in got]
    told = collections.Counter(shed_ra)
    if spread == "window":
        # The reject minimum's window over a wait of one drain period.
        assert set(told) <= {1, 2}, told
        return
    # Each shed request takes the next slot of one drain period P >= 100 ms:
    # the 60th slot starts at 60 P >= 6 s, and a whole second holds at most
    # ceil(1 s / P) + 1 <= 11 slots, as many as the queue takes in.
    assert max(told) >= 6, told
    assert max(told.values()) <= 11, told
