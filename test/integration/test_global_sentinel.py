"""Fleet-wide limits behind Redis Sentinel (issue 10, second round): the
`global.sentinel` backend. Real processes on loopback: a redis-server
primary, one replica of it, one sentinel monitoring it (quorum 1,
down-after-milliseconds 500, failover-timeout 2000).

  failover   requests admitted through the global limit (leases from the
             primary the sentinel names); the primary killed: requests keep
             being answered at once (fallback), the sentinel promotes the
             replica, the client rediscovers it (backend_up back to 1, the
             log names the new primary) and tokens are granted by it.
  announced  SENTINEL FAILOVER with the primary alive: the workers, subscribed
             to +switch-master, move to the new primary without any traffic.
  check      `sluice check` refuses `redis` with `sentinel`, and a sentinel
             section without master_name, at FILE:LINE:COL.
"""
import os
import subprocess
import time

import pytest
import yaml

from helpers import reserve_port, run_cli, wait_for
from test_global_limit import REDIS, Redis, get_status, global_config

pytestmark = pytest.mark.skipif(not os.access(REDIS, os.X_OK),
                                reason="redis-server not installed (scripts/deps.sh)")


def free_port():
    r = reserve_port()
    p = r.port
    r.release()
    return p


class Follower(Redis):
    """A redis-server of our own that follows the primary at |primary_port|:
    cmd() gives its command line, kind names its log."""

    kind = "follower"

    def __init__(self, workdir, primary_port):
        super().__init__(workdir)
        self.primary_port = primary_port

    def start(self):
        log = open(os.path.join(self.workdir, "%s-%d.log" % (self.kind, self.port)), "ab")
        self.proc = subprocess.Popen(self.cmd(), stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        wait_for(lambda: self.ping(), 10, what="%s to answer PING" % self.kind)
        return self


class Replica(Follower):
    """A replica of the primary."""

    kind = "replica"

    def cmd(self):
        return [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--replicaof", "127.0.0.1", str(self.primary_port)]


class Sentinel(Follower):
    """A sentinel monitoring master `m` at the primary."""

    kind = "sentinel"

    def cmd(self):
        conf = os.path.join(self.workdir, "sentinel-%d.conf" % self.port)
        with open(conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                    "sentinel monitor m 127.0.0.1 %d 1\n"
                    "sentinel down-after-milliseconds m 500\n"
                    "sentinel failover-timeout m 2000\n"
                    % (self.port, self.workdir, self.primary_port))
        return [REDIS, conf, "--sentinel"]

    def master_port(self):
        a = self.call("SENTINEL", "get-master-addr-by-name", "m")
        return int(a[1]) if a else None


def sentinel_config(sentinel_port, **kw):
    cfg = global_config(0, **kw)
    g = cfg["global"]
    del g["redis"]
    # the live sentinel by name: looked up off the loop at each attempt
    g["sentinel"] = {"addresses": ["127.0.0.1:%d" % free_port(), "localhost:%d" % sentinel_port],
                     "master_name": "m"}
    return cfg


class Monitored:
    """A primary, its replica in sync, and a sentinel that knows both (a
    failover needs the sentinel to know the replica: from the primary's
    INFO, its first poll); stopped on exit."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.started = []

    def __enter__(self):
        try:
            primary = Redis(self.tmp_path).start()
            self.started.append(primary)
            replica = Replica(self.tmp_path, primary.port).start()
            self.started.append(replica)
            wait_for(lambda: replica.info("replication").get("master_link_status") == "up", 15,
                     what="replica in sync")
            sentinel = Sentinel(self.tmp_path, primary.port).start()
            self.started.append(sentinel)
            wait_for(lambda: len(sentinel.call("SENTINEL", "replicas", "m")) == 1, 15,
                     what="sentinel to see the replica")
        except BaseException:
            self.__exit__()
            raise
        return primary, replica, sentinel

    def __exit__(self, *exc):
        for r in reversed(self.started):
            r.stop()


def connected_sluice(start_sluice, sentinel, primary):
    """sluice (2 workers) on the sentinel's primary, 10 requests admitted
    through the global limit, leases taken from the primary."""
    s = start_sluice(sentinel_config(sentinel.port, rate="100/s", burst=20, replicas=4),
                     workers=2)
    wait_for(lambda: s.metric("sluice_global_backend_up") == 1, 15, what="connected")
    st, _ = get_status(s.port, 10)
    assert st == [200] * 10
    wait_for(lambda: primary.evalsha_calls() >= 1, 5, what="leases from the primary")
    return s


@pytest.mark.timeout(120)
def test_sentinel_failover(tmp_path, start_sluice):
    """The first sentinel listed is not running: discovery rotates to the
    second. Kill the primary: fallback answers at once meanwhile; after the
    promotion, leases come from the former replica."""
    with Monitored(tmp_path) as (primary, replica, sentinel):
        s = connected_sluice(start_sluice, sentinel, primary)
        granted = s.metric("sluice_global_tokens_granted_total")
        assert granted >= 1
        ups = [l for l in s.logs() if l.get("msg") == "global backend up"]
        assert ups and ups[0].get("redis") == "127.0.0.1:%d" % primary.port

        primary.kill()
        wait_for(lambda: s.metric("sluice_global_backend_up") == 0, 5, what="backend down")
        # until the new primary is up, every batch is answered at once:
        # each request is decided locally (lease or fallback), never waits
        # on Redis; 1 s is ten command timeouts.
        deadline = time.monotonic() + 30
        slowest = 0.0
        while s.metric("sluice_global_backend_up") != 1:
            assert time.monotonic() < deadline, "no failover within 30 s"
            st, secs = get_status(s.port, 5)
            slowest = max(slowest, secs)
            assert set(st) <= {200, 429}
            time.sleep(0.05)  # pacing of the load, not a synchronisation
        assert slowest < 1.0
        assert sentinel.master_port() == replica.port
        assert replica.info("replication").get("role") == "master"
        ups = [l for l in s.logs() if l.get("msg") == "global backend up"]
        assert ups[-1].get("redis") == "127.0.0.1:%d" % replica.port
        before = s.metric("sluice_global_tokens_granted_total")
        fb = s.metric("sluice_global_fallback_total")
        assert fb >= 1  # the outage was bridged by the fallback
        wait_for(lambda: (get_status(s.port, 5),
                          s.metric("sluice_global_tokens_granted_total") > before)[1], 10,
                 what="tokens granted by the new primary")
        assert replica.evalsha_calls() >= 1


def test_check_sentinel_errors(tmp_path):
    base = ("listeners:\n  - {name: p, address: \"127.0.0.1:1\"}\n"
            "upstreams:\n  u: {address: \"127.0.0.1:2\"}\n"
            "routes:\n  - name: r\n    upstream: u\n"
            "    rate_limits:\n      - {key: route, rate: 10/s, scope: global}\n")
    both = tmp_path / "both.yaml"
    both.write_text(base + "global:\n  redis: \"127.0.0.1:6379\"\n"
                    "  sentinel: {addresses: [\"127.0.0.1:26379\"], master_name: m}\n")
    r = run_cli(["check", "-c", str(both)])
    assert r.returncode != 0
    assert "both.yaml:12:13: global: 'redis' and 'sentinel' both given" in r.stderr
    noname = tmp_path / "noname.yaml"
    noname.write_text(base + "global:\n  sentinel:\n    addresses: [\"127.0.0.1:bad\"]\n")
    r = run_cli(["check", "-c", str(noname)])
    assert r.returncode != 0
    assert "noname.yaml:12:5: global.sentinel: missing 'master_name'" in r.stderr
    assert "noname.yaml:12:17: global.sentinel.addresses:" in r.stderr
    good = tmp_path / "good.yaml"
    good.write_text(base + "global:\n  sentinel:\n    addresses: [\"127.0.0.1:26379\"]\n"
                    "    master_name: m\n")
    r = run_cli(["check", "-c", str(good), "--print"])
    assert r.returncode == 0, r.stderr
    # the normalised form names the sentinels, and is itself a valid config
    g = yaml.safe_load(r.stdout)["global"]
    assert g["sentinel"] == {"addresses": ["127.0.0.1:26379"], "master_name": "m"}
    assert "redis" not in g
    printed = tmp_path / "printed.yaml"
    printed.write_text(r.stdout)
    r = run_cli(["check", "-c", str(printed)])
    assert r.returncode == 0, r.stderr


@pytest.mark.timeout(120)
def test_announced_failover_switches_without_traffic(tmp_path, start_sluice):
    """SENTINEL FAILOVER while the primary stays alive (as when it is cut
    off from the sentinels): the sentinel publishes +switch-master, and
    each worker, subscribed to it, leaves the old primary and discovers
    the new one at once: no request has to hit the old one first (its
    -READONLY would only come after the demotion, and only to a worker
    that asks). No request is sent after the failover here."""
    with Monitored(tmp_path) as (primary, replica, sentinel):
        s = connected_sluice(start_sluice, sentinel, primary)
        # both workers subscribed, one connection each
        wait_for(lambda: sentinel.call("CLIENT", "LIST").count("cmd=subscribe") == 2, 5,
                 what="the workers' subscriptions")
        t0 = time.monotonic()
        assert sentinel.call("SENTINEL", "FAILOVER", "m") == "OK"
        switched = s.wait_log(lambda l: l.get("msg") == "sentinel announced a failover: "
                              "switching primary", timeout=30, what="the announcement")
        assert switched["from"] == "127.0.0.1:%d" % primary.port
        assert switched["to"] == "127.0.0.1:%d" % replica.port
        wait_for(lambda: [l for l in s.logs() if l.get("msg") == "global backend up"][-1]
                 .get("redis") == "127.0.0.1:%d" % replica.port, 15,
                 what="the workers on the new primary")
        wait_for(lambda: s.metric("sluice_global_backend_up") == 1, 15, what="up again")
        print("announced failover: workers up on the new primary %.2f s after SENTINEL FAILOVER"
              % (time.monotonic() - t0))
        # no request touched the old primary after the switch: no -READONLY
        assert s.metric("sluice_global_backend_errors_total", kind="error") == 0
        assert replica.info("replication").get("role") == "master"
