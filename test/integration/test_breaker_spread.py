"""The crowd an open breaker refuses is one queue (issue 11): with
`reject.retry_after.spread: backlog` each refusal takes the next slot of
the rate the upstream served before the breaker opened, from the time it
half-opens, instead of every client being told "when it half-opens".
Over HTTP/1.1 (one keep-alive connection) and HTTP/2 (one connection)."""
import collections

import pytest

from admission_helpers import KeepAlive, admission_config
from helpers import H2Client

BREAKER = {"consecutive_failures": 3, "open_for": "2s", "half_open_probes": 1,
           "recovery_ramp": "0s", "window": "10s"}
SUCCESSES = 30
CROWD = 60


def opened(start_sluice, spread):
    cfg = admission_config(breaker=BREAKER)
    cfg["reject"] = {"retry_after": {"min": "1s", "max": "120s", "jitter": 0.5,
                                     "spread": spread}}
    s = start_sluice(cfg)
    with KeepAlive(s.port) as ka:
        for _ in range(SUCCESSES):
            assert ka.request("/v1/ok").status == 200
        for _ in range(3):
            assert ka.request("/status/500").status == 500
    return s


def refused_values(s, proto):
    """Retry-After of CROWD requests refused by the open breaker."""
    if proto == "h1":
        with KeepAlive(s.port) as ka:
            answers = [ka.request("/v1/crowd") for _ in range(CROWD)]
        pairs = [(r.status, r.header("retry-after")) for r in answers]
    else:
        with H2Client(s.port) as c:
            pairs = []
            for _ in range(CROWD):
                r = c.get("/v1/crowd")
                pairs.append((r.status, r.header("retry-after")))
    assert all(st == 503 for st, _ in pairs), pairs
    return collections.Counter(int(ra) for _, ra in pairs)


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_backlog_spreads_the_crowd_at_the_served_rate(start_sluice, proto):
    s = opened(start_sluice, "backlog")
    told = refused_values(s, proto)
    # The breaker saw 30 successes over its window of 10 slots of 1 s: the
    # 9 whole ones and part of the current one, 9 to 10 s, so it learnt
    # one success every P in [0.3, 0.334] s. The crowd of 60 takes slots of
    # P from the half-open time (within 2 s): the last starts 59 P >= 17.7 s
    # after the first, so someone is told at least 18 s (Retry-After rounds
    # up, the first slot starts after 1 s at least: the requests take far
    # less than a second); and a whole second holds at most
    # ceil(1 s / P) + 1 = 5 slots.
    assert max(told) >= 18, told
    assert max(told.values()) <= 5, told
    assert min(told) >= 1


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_window_tells_everyone_the_half_open_time(start_sluice, proto):
    s = opened(start_sluice, "window")
    told = refused_values(s, proto)
    # Base: the wait until half-open, at most 2 s; window: + round(2 x 0.5).
    assert max(told) <= 3, told
