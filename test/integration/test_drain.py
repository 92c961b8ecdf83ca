"""Graceful drain on SIGTERM/SIGINT (SPEC §2): stop accepting, finish
in-flight requests within drain_timeout, /readyz 503 meanwhile, exit 0."""

import signal
import threading
import time

import pytest

from helpers import H1Conn, H2Client, base_config, port_refuses, wait_for


class Background:
    """Runs |fn| in a thread; .result() re-raises its exception."""

    def __init__(self, fn):
        self._res = self._exc = None
        self._t = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._t.start()

    def _run(self, fn):
        try:
            self._res = fn()
        except BaseException as e:  # noqa: B902 - re-raised in result()
            self._exc = e

    def result(self, timeout):
        self._t.join(timeout)
        if self._t.is_alive():
            raise TimeoutError("background request still running after %.1fs" % timeout)
        if self._exc:
            raise self._exc
        return self._res


def slow_h1(port, ms):
    def run():
        with H1Conn(port, timeout=15) as c:
            r = c.request("GET", "/slow?ms=%d" % ms)
            return r, c.wait_closed(3)
    return Background(run)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_inflight_request_completes_during_drain(sluice, upstream, sig):
    bg = slow_h1(sluice.port, 1500)
    wait_for(lambda: upstream.stats()["inflight"] >= 1, 5, what="the slow request at the upstream")
    t0 = time.monotonic()
    sluice.send_signal(sig)
    # /readyz turns 503 (the signal has been handled) while the request is
    # still in flight; the process is alive.
    wait_for(lambda: sluice.admin_get("/readyz", timeout=1)[0] == 503, 2.0, interval=0.02,
             what="/readyz 503 during drain")
    assert upstream.stats()["inflight"] >= 1, "the slow request ended before the drain was seen"
    assert sluice.admin_get("/healthz", timeout=1)[0] == 200

    r, closed = bg.result(10)
    assert r.status == 200
    assert r.json()["path"] == "/slow"
    assert closed, "the connection of a finished request must close during drain"
    rc = sluice.wait(10)
    assert rc == 0
    assert time.monotonic() - t0 < 5, "drain took longer than needed"
    sluice.stop()  # checks stderr


@pytest.mark.timeout(60)
def test_new_connections_refused_during_drain(sluice, upstream):
    """Once draining, the listening sockets are closed: a new connection is
    refused at once (a load balancer retries elsewhere) rather than queued
    unanswered in the backlog until exit."""
    bg = slow_h1(sluice.port, 1500)
    wait_for(lambda: upstream.stats()["inflight"] >= 1, 5, what="the slow request at the upstream")
    sluice.send_signal(signal.SIGTERM)
    wait_for(lambda: port_refuses(sluice.port), 1.0, interval=0.02,
             what="the listener to stop accepting")
    assert sluice.running(), "exited before the in-flight request finished"
    assert bg.result(10)[0].status == 200
    assert sluice.wait(10) == 0
    sluice.stop()


@pytest.mark.timeout(60)
def test_h2_inflight_stream_completes_with_goaway(sluice, upstream):
    c = H2Client(sluice.port, timeout=15)
    try:
        sid = c.start("GET", "/slow?ms=1500")
        wait_for(lambda: upstream.stats()["inflight"] >= 1, 5, what="the slow request at the upstream")
        sluice.send_signal(signal.SIGTERM)
        st = c.wait(sid, timeout=10)
        assert st.status == 200
        assert st.json()["path"] == "/slow"
        deadline = time.monotonic() + 3
        while c.goaway is None and not c.closed and time.monotonic() < deadline:
            c.pump(0.2)
        assert c.goaway is not None, "no GOAWAY during drain"
        assert c.goaway.last_stream_id >= sid
    finally:
        c.close()
    assert sluice.wait(10) == 0
    sluice.stop()


@pytest.mark.timeout(60)
def test_idle_keepalive_connections_do_not_delay_exit(start_sluice):
    cfg = base_config(drain_timeout="10s")
    s = start_sluice(cfg)
    conns = [H1Conn(s.port) for _ in range(5)]
    try:
        for c in conns:
            assert c.request("GET", "/v1/idle").status == 200
        t0 = time.monotonic()
        s.send_signal(signal.SIGTERM)
        assert s.wait(8) == 0
        assert time.monotonic() - t0 < 3, "idle connections held the drain"
        for c in conns:
            assert c.wait_closed(1)
    finally:
        for c in conns:
            c.close()
    s.stop()


@pytest.mark.timeout(60)
def test_drain_timeout_bounds_exit(start_sluice, upstream):
    cfg = base_config(drain_timeout="1s")
    cfg["upstreams"]["identity"]["timeouts"]["response"] = "30s"
    s = start_sluice(cfg)
    bg = slow_h1(s.port, 10000)
    wait_for(lambda: upstream.stats()["inflight"] >= 1, 5, what="the slow request at the upstream")
    t0 = time.monotonic()
    s.send_signal(signal.SIGTERM)
    rc = s.wait(10)
    elapsed = time.monotonic() - t0
    assert rc == 0
    assert 0.8 <= elapsed < 4, "exit %.2fs after SIGTERM with drain_timeout 1s" % elapsed
    try:  # the client sees an answer or a closed connection, never a hang
        bg.result(5)
    except (ConnectionError, AssertionError):
        pass
    s.stop()


@pytest.mark.timeout(60)
def test_sigterm_when_idle_exits_promptly(sluice):
    t0 = time.monotonic()
    assert sluice.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - t0 < 3
