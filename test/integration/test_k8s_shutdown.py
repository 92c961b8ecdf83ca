"""Pod shutdown in the order Kubernetes uses for a native sidecar (issue 14),
on loopback: clients -> sluice -> the app (upstream.py --graceful-ms).

Kubernetes, when a pod is deleted: (a) removes it from the Service's
endpoints, which the clients learn after a propagation delay D, and at the
same time runs the app's preStop (a sleep of P > D); (b) then SIGTERMs the
app, which finishes its requests in flight and exits; (c) then, the app
having exited, SIGTERMs sluice, which drains. The clients model a load
balancer: after D they open no new connection to the pod, and they keep
using the keep-alive connections they have until the app stops.

The numbers are the chart's scaled down (preStop 5 s -> P, propagation a
few seconds -> D < P); every bound below is derived from them."""

import signal
import subprocess
import threading
import time

import pytest

from helpers import H1Conn, H2Client, Upstream, base_config, h1_once, wait_for

D = 1.0            # endpoint propagation: clients stop opening connections after this
P = 2.0            # the app's preStop sleep (> D, as in the chart: 5 s)
APP_GRACE_MS = 10000   # the app's own shutdown budget (the chart's app.shutdownSeconds)
SLOW_MS = 800      # a request in flight when the app gets SIGTERM
DRAIN_S = 5        # sluice's drain_timeout
PACE = 0.01       # s between a client's requests: about 100/s each
MAX_REQUESTS = 2000    # per client: the load is bounded in count (20 s at PACE)...
MAX_SECONDS = 20.0     # ...and in time


class Load:
    """Client threads sending requests through sluice until told to stop:
    `keep` h1 clients on one keep-alive connection each, `fresh` h1 clients
    opening a new connection per request, one h2 client. Each send is
    counted under the lock that also guards the phase flags, so once stop()
    returns, no request is sent that was not counted."""

    def __init__(self, port, keep=3, fresh=2, h2=1):
        self.port = port
        self.lock = threading.Lock()
        self.no_new_conns = False   # set at T + D
        self.stopped = False        # set when the clients stop sending
        self.sent = 0
        self.answers = []           # (t_sent, t_answered, kind, status)
        self.errors = []            # (t, kind, repr(exception))
        self.conns_opened = []      # (t, kind)
        self.deadline = time.monotonic() + MAX_SECONDS
        self.threads = [threading.Thread(target=self._guard, args=(f,), daemon=True)
                        for f in [self._keep] * keep + [self._fresh] * fresh + [self._h2] * h2]
        for t in self.threads:
            t.start()

    def _may_send(self, new_conn):
        with self.lock:
            if self.stopped or (new_conn and self.no_new_conns) or time.monotonic() > self.deadline:
                return False
            self.sent += 1
            return True

    def _record(self, t0, kind, status):
        with self.lock:
            self.answers.append((t0, time.monotonic(), kind, status))

    def _guard(self, fn):
        try:
            fn()
        except Exception as e:  # recorded: a lost request or connection fails the test
            with self.lock:
                self.errors.append((time.monotonic(), fn.__name__, repr(e)))

    def _opened(self, kind):
        with self.lock:
            self.conns_opened.append((time.monotonic(), kind))

    def _persistent(self, kind, connect, ask):
        """One connection, opened before the first request (a new
        connection: not after T + D), reused for every later one."""
        c = None
        try:
            for _ in range(MAX_REQUESTS):
                if not self._may_send(c is None):
                    return
                if c is None:
                    self._opened(kind)
                    c = connect()
                t0 = time.monotonic()
                self._record(t0, kind, ask(c))
                time.sleep(PACE)
        finally:
            if c is not None:
                c.close()

    def _keep(self):
        self._persistent("h1", lambda: H1Conn(self.port, timeout=10),
                         lambda c: c.request("GET", "/v1/keep").status)

    def _h2(self):
        self._persistent("h2", lambda: H2Client(self.port, timeout=10),
                         lambda c: c.get("/v1/h2").status)

    def _fresh(self):
        for _ in range(MAX_REQUESTS):
            if not self._may_send(True):
                return
            self._opened("h1-new")
            t0 = time.monotonic()
            self._record(t0, "h1-new", h1_once(self.port, "/v1/fresh")[0])
            time.sleep(PACE)

    def stop_new_connections(self):
        with self.lock:
            self.no_new_conns = True

    def stop(self):
        with self.lock:
            self.stopped = True
            return self.sent

    def join(self, timeout):
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, end - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "a client thread is stuck"

    def count(self):
        with self.lock:
            return len(self.answers)


def app_stop(up, timeout):
    """SIGTERM to the app; returns when it has exited (the time it did)."""
    up.proc.send_signal(signal.SIGTERM)
    try:
        up.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("the app did not exit %.1f s after SIGTERM" % timeout)
    return time.monotonic()


def slow_request(port, ms):
    """A request that is in flight at the app when it gets SIGTERM."""
    out = {}

    def run():
        with H1Conn(port, timeout=15) as c:
            out["r"] = c.request("GET", "/slow?ms=%d" % ms)
            out["t"] = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def start_pod(start_sluice, tmp_path, admin=None):
    up = Upstream(str(tmp_path), args=["--graceful-ms", str(APP_GRACE_MS)]).start()
    cfg = base_config(drain_timeout="%ds" % DRAIN_S, admin=admin or {})
    return up, start_sluice(cfg, upstream=up)


@pytest.mark.timeout(90)
def test_sigterm_in_kubernetes_order_gives_no_5xx(start_sluice, tmp_path):
    up, s = start_pod(start_sluice, tmp_path)
    try:
        load = Load(s.port)
        wait_for(lambda: load.count() >= 50, 10, what="the load to get going")

        # (a) The pod is deleted: endpoints drop it (the clients learn it
        # after D) while the app's preStop sleeps P; sluice keeps proxying.
        t_delete = time.monotonic()
        time.sleep(D)                       # the modelled propagation delay
        load.stop_new_connections()
        t_d = time.monotonic()
        time.sleep(max(0.0, t_delete + P - time.monotonic()))   # the modelled preStop
        t_p = time.monotonic()

        # (b) The preStop is over: the app gets SIGTERM with a request in
        # flight. The clients stop at the same instant; every request they
        # sent has reached the app first (its count), so none is in the air.
        slow, slow_out = slow_request(s.port, SLOW_MS)
        wait_for(lambda: up.stats()["inflight"] >= 1, 5, what="the slow request at the app")
        sent = load.stop()
        wait_for(lambda: up.stats()["total"] >= sent + 1, 5,
                 what="every request sent to have reached the app")
        t_app_exit = app_stop(up, APP_GRACE_MS / 1000.0 + 2)
        slow.join(5)
        assert slow_out["r"].status == 200, slow_out["r"]
        assert slow_out["t"] <= t_app_exit, "the app exited before its request in flight"

        # (c) The app has exited: sluice gets SIGTERM and drains.
        load.join(10)
        t0 = time.monotonic()
        s.send_signal(signal.SIGTERM)
        rc = s.wait(DRAIN_S + 5)
        took = time.monotonic() - t0
        assert rc == 0
        # The drain ends by drain_timeout (open connections are cut then);
        # 1 s on top for the process to exit under ASan.
        assert took <= DRAIN_S + 1.0, "drain took %.2f s" % took
        s.stop()  # checks stderr

        answers = load.answers
        assert not load.errors, load.errors[:5]
        assert len(answers) == load.sent, "%d sent, %d answered" % (load.sent, len(answers))
        bad = [a for a in answers if a[3] >= 500]
        assert not bad, "%d answers 5xx, first %r" % (len(bad), bad[:3])
        assert all(a[3] == 200 for a in answers)
        # The model held: no connection opened after T + D, and sluice kept
        # serving the keep-alive ones through the rest of the preStop.
        late = [c for c in load.conns_opened if c[0] > t_d]
        assert not late, late
        kinds = {a[2] for a in answers if t_d < a[0] < t_p}
        assert {"h1", "h2"} <= kinds, kinds
        assert {"h1", "h1-new", "h2"} <= {a[2] for a in answers}
    finally:
        up.stop()


@pytest.mark.timeout(90)
def test_app_stopped_first_gives_502_and_readyz_503(start_sluice, tmp_path):
    """The failure mode the issue saw: no preStop, so the app stops while
    the clients still send (they have not learnt of the endpoint change
    yet): their requests get 502. With `admin.readiness: upstreams`,
    /readyz turns 503 once the app stops, so a real kubelet stops routing."""
    up, s = start_pod(start_sluice, tmp_path, admin={"readiness": "upstreams"})
    try:
        load = Load(s.port)
        wait_for(lambda: load.count() >= 50, 10, what="the load to get going")
        assert s.admin_get("/readyz", timeout=2)[0] == 200
        t_app_exit = app_stop(up, APP_GRACE_MS / 1000.0 + 2)   # no preStop
        # The probe runs once a second and allows each connect 1 s: 503 is
        # due within 2 s of the app's exit.
        wait_for(lambda: s.admin_get("/readyz", timeout=1)[0] == 503, 2.0, interval=0.02,
                 what="/readyz 503 after the app stopped")
        t_ready = time.monotonic()
        assert t_ready - t_app_exit <= 2.0
        # Requests sent after the app exited, before the clients learn of it.
        assert h1_once(s.port, "/v1/after")[0] == 502
        with H2Client(s.port, timeout=5) as c:
            assert c.get("/v1/after").status == 502
        load.stop()
        load.join(10)
        after = [a for a in load.answers if a[0] > t_app_exit]
        assert after and all(a[3] == 502 for a in after), after[:5]
        assert s.wait_log(lambda l: l.get("msg") == "upstream unreachable: /readyz answers 503",
                          what="the unreachable log line")
    finally:
        up.stop()
