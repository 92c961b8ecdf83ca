"""Fleet-wide rate limits on Redis (issue 10): a rate limit with
`scope: global` holds for every replica together. Real redis-server
processes on loopback ports, several sluice processes as replicas.

  accuracy     8 replicas share 1000/s (burst 100) on one key under uneven
               load (one replica gets half of it): admitted over 10 s within
               5% of 10,000 + burst, and never above the bound of the lease
               maths; the busy replica holds most of the share.
  failure      Redis killed: requests keep being answered at once, the
               fallback (local share: rate / expected_replicas) decides and is
               counted, the transition logged once; Redis back: global
               accounting resumes. A Redis stalled by DEBUG SLEEP does not
               slow requests. A reload keeps the connection and the leases.
"""
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from helpers import H1Conn, Sluice, Standin, build_request, reserve_port, run_cli, wait_for
from admission_helpers import admission_config, route

REDIS = "/usr/bin/redis-server"

pytestmark = pytest.mark.skipif(not os.access(REDIS, os.X_OK),
                                reason="redis-server not installed (scripts/deps.sh)")


class Redis:
    """A redis-server of our own on a reserved loopback port, no persistence."""

    def __init__(self, workdir, port=None):
        self.workdir = str(workdir)
        if port is None:
            r = reserve_port()
            port = r.port
            r.release()
        self.port = port
        self.proc = None

    def start(self):
        log = open(os.path.join(self.workdir, "redis-%d.log" % self.port), "ab")
        self.proc = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no",
                                      "--enable-debug-command", "local"],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_for(lambda: self.ping(), 10, what="redis-server to answer PING")
        return self

    def ping(self):
        try:
            return self.call("PING", timeout=0.5) == "PONG"
        except OSError:
            return False

    def call(self, *args, timeout=5.0):
        """One command over RESP; the reply (str, int, list) or raises."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return _resp(f)

    def info(self, section):
        return dict(line.split(":", 1) for line in self.call("INFO", section).splitlines()
                    if ":" in line and not line.startswith("#"))

    def evalsha_calls(self):
        st = self.info("commandstats").get("cmdstat_evalsha", "calls=0")
        return int(st.split(",")[0].split("=")[1])

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _resp(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise RuntimeError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode("latin-1")
    if t == b"*":
        n = int(rest)
        return [_resp(f) for _ in range(max(n, 0))]
    raise RuntimeError("bad RESP line %r" % line)


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path).start()
    yield r
    r.stop()


def global_config(redis_port, rate="1000/s", burst=100, replicas=8, fallback="local", **g):
    top = {"redis": "127.0.0.1:%d" % redis_port, "expected_replicas": replicas,
           "fallback": fallback, "command_timeout": "100ms", "connect_timeout": "200ms"}
    top.update(g)
    rl = {"key": "device_class", "rate": rate, "burst": burst, "scope": "global"}
    return admission_config(routes=[route(rate_limits=[rl])], **{"global": top},
                            rejection_log_per_sec=0)


REQ = build_request("GET", "/v1/x", [("X-Device-Class", "sensor")])


class Load(threading.Thread):
    """Paced keep-alive HTTP/1.1 load on one replica: |rate| requests per
    second for |seconds|, sent in pipelined batches every 10 ms so that a
    Python client keeps up; counts statuses and the slowest batch."""

    def __init__(self, port, rate, seconds, start_at):
        super().__init__(daemon=True)
        self.port, self.rate, self.seconds, self.start_at = port, rate, seconds, start_at
        self.status = {}
        self.slowest = 0.0
        self.sent = 0
        self.error = None

    def run(self):
        try:
            with H1Conn(self.port, timeout=10) as c:
                while time.monotonic() < self.start_at:
                    time.sleep(0.001)
                t0 = time.monotonic()
                tick = 0
                while True:
                    tick += 1
                    due = int(self.rate * min(tick * 0.01, self.seconds)) - self.sent
                    if due > 0:
                        b0 = time.monotonic()
                        c.send(REQ * due)
                        for _ in range(due):
                            r = c.read_response()
                            self.status[r.status] = self.status.get(r.status, 0) + 1
                        self.slowest = max(self.slowest, time.monotonic() - b0)
                        self.sent += due
                    if tick * 0.01 >= self.seconds:
                        break
                    pause = t0 + tick * 0.01 - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                self.elapsed = time.monotonic() - t0
        except Exception as e:  # reported by the test
            self.error = e


def start_replicas(tmp_path, upstream, sluice_bin, cfg, n):
    out = []
    try:
        for i in range(n):
            s = Sluice(os.path.join(str(tmp_path), "r%d" % i), cfg, upstream=upstream, workers=1,
                       binary=sluice_bin)
            out.append(s)
            s.start()
    except Exception:
        for s in out:
            s.kill()
        raise
    return out


def stop_replicas(replicas):
    problems = []
    for s in replicas:
        try:
            if s.running():
                rc = s.stop()
                if rc != 0:
                    problems.append("replica exited %s" % rc)
        except AssertionError as e:
            problems.append(str(e))
        finally:
            s.kill()
    assert not problems, problems


@pytest.mark.timeout(180)
def test_accuracy_uneven_fleet(tmp_path, redis, upstream, sluice_bin):
    """8 replicas, 1000/s burst 100 fleet-wide on one key; offered 2000/s,
    half of it to replica 0. Redis's bucket grants at most rate x T + burst
    over T; each replica also admits at most its provisional bucket
    (burst / 8 = 12) as debt before a lease arrives, so the fleet admits at
    most 1000 x T + 100 + 8 x 12, where T is the longest load's measured
    duration plus one lease period (a grant taken just before the end is
    spent after it: 100 ms x 1000/s). At least 95% of 10,000 + burst (the
    issue's criterion): what replicas hold unspent at the end is at most
    one grant each."""
    cfg = global_config(redis.port)
    replicas = start_replicas(tmp_path, upstream, sluice_bin, cfg, 8)
    try:
        for s in replicas:
            wait_for(lambda: s.metric("sluice_global_backend_up") == 1, 10,
                     what="every replica connected to Redis")
        start_at = time.monotonic() + 0.5
        loads = [Load(replicas[0].port, 1000, 10.0, start_at)]
        loads += [Load(s.port, 1000 / 7, 10.0, start_at) for s in replicas[1:]]
        for ld in loads:
            ld.start()
        for ld in loads:
            ld.join(60)
        for ld in loads:
            assert ld.error is None, ld.error
        admitted = [ld.status.get(200, 0) for ld in loads]
        refused = [ld.status.get(429, 0) for ld in loads]
        assert sum(admitted) + sum(refused) == sum(ld.sent for ld in loads)
        total = sum(admitted)
        T = max(ld.elapsed for ld in loads) + 0.1
        upper = 1000 * T + 100 + 8 * 12
        print("admitted %d of %d sent (bound %.0f); per replica %s; busy share %.3f; "
              "evalsha %d (%.1f per 1000 admitted)"
              % (total, sum(ld.sent for ld in loads), upper, admitted, admitted[0] / total,
                 redis.evalsha_calls(), redis.evalsha_calls() * 1000.0 / total))
        assert total <= upper
        assert abs(total - 10100) <= 0.05 * 10100
        # The busy replica sees half the demand (7x any other's) and holds
        # most of the share. A split in proportion to demand gives it 50% (7x
        # the mean of the others); the poll floor (lease / 32) and this
        # harness's 10 ms batches cap how often it can poll, and 11 runs on
        # the shared 2-core machine (main before and after batching) gave
        # 37% to 60%. An even split gives 1x, which neither check lets pass:
        # at least 3x the mean of the others and 2x the largest of them.
        others = admitted[1:]
        assert admitted[0] >= 3 * sum(others) / len(others)
        assert admitted[0] > 2 * max(others)
        # No request fell back: Redis was up throughout.
        assert sum(s.metric("sluice_global_fallback_total") for s in replicas) == 0
    finally:
        stop_replicas(replicas)


def get_status(port, n=1):
    """|n| pipelined requests on a fresh connection: (statuses, seconds)."""
    t0 = time.monotonic()
    with H1Conn(port, timeout=10) as c:
        c.send(REQ * n)
        st = [c.read_response().status for _ in range(n)]
    return st, time.monotonic() - t0


@pytest.mark.timeout(120)
def test_redis_killed_falls_back_then_recovers(tmp_path, start_sluice, upstream):
    """Redis killed: the replica notices (a lost connection), logs it once,
    answers every request at once from its local share (rate /
    expected_replicas: 100/s / 4 = 25/s, burst 20 / 4 = 5), counts the
    fallback; Redis restarted on the same port: backend_up comes back
    (reconnection with backoff) and leases flow again."""
    redis = Redis(tmp_path).start()
    try:
        s = start_sluice(global_config(redis.port, rate="100/s", burst=20, replicas=4), workers=1)
        wait_for(lambda: s.metric("sluice_global_backend_up") == 1, 10, what="connected")
        st, _ = get_status(s.port, 10)
        assert st == [200] * 10  # 20 tokens in the bucket
        calls = redis.evalsha_calls()
        assert calls >= 1
        redis.kill()
        wait_for(lambda: s.metric("sluice_global_backend_up") == 0, 5, what="backend down")
        # 60 requests at once: the tokens still leased are spent first (at
        # most one grant, at most the burst of 20: they came from Redis),
        # then the fallback's local bucket (5) and what 25/s earns while
        # they are answered (well under a second: at most 25 more); all
        # answered at once, none after a timeout.
        st, secs = get_status(s.port, 60)
        assert secs < 1.0
        assert 5 <= st.count(200) <= 20 + 5 + 25
        assert st.count(429) == 60 - st.count(200)
        assert s.metric("sluice_global_fallback_total") >= 60 - 20
        downs = [l for l in s.logs() if l.get("msg", "").startswith("global backend down")]
        assert len(downs) == 1
        redis = Redis(tmp_path, port=redis.port).start()
        wait_for(lambda: s.metric("sluice_global_backend_up") == 1, 15, what="backend up again")
        before = s.metric("sluice_global_fallback_total")
        st, _ = get_status(s.port, 10)
        assert 200 in st
        assert s.metric("sluice_global_fallback_total") == before
        wait_for(lambda: redis.evalsha_calls() >= 1, 5, what="leases from the new Redis")
        ups = [l for l in s.logs() if l.get("msg") == "global backend up"]
        assert len(ups) == 2  # start-up, recovery
    finally:
        redis.stop()


@pytest.mark.timeout(60)
def test_redis_by_host_name(tmp_path, start_sluice, redis):
    """`redis: "localhost:PORT"`: the name is looked up off the loop at
    connect time (on Debian localhost may also be ::1, where this Redis
    does not listen: the next attempt takes the next address), the backend
    comes up with the address it found, and leases flow."""
    cfg = global_config(redis.port, rate="100/s", burst=20, replicas=1,
                        redis="localhost:%d" % redis.port)
    s = start_sluice(cfg, workers=2)
    wait_for(lambda: s.metric("sluice_global_backend_up") == 1, 10, what="connected by name")
    up = s.wait_log(lambda l: l.get("msg") == "global backend up", what="the up line")
    assert up["redis"] == "localhost:%d" % redis.port
    assert up["address"] in ("127.0.0.1:%d" % redis.port, "[::1]:%d" % redis.port)
    st, _ = get_status(s.port, 10)
    assert st == [200] * 10
    wait_for(lambda: redis.evalsha_calls() >= 1, 5, what="a lease asked by name")
    assert s.metric("sluice_global_fallback_total") == 0


@pytest.mark.timeout(60)
def test_unresolvable_redis_name_falls_back(tmp_path, start_sluice):
    """A name that does not resolve (.invalid never does, RFC 6761): the
    lookup runs off the loop, so requests are answered at once by the
    fallback (local: 100/s / 4 = 25/s, burst 5) and counted; lookups are
    retried with backoff (each counted as an error) and logged once."""
    cfg = global_config(1, rate="100/s", burst=20, replicas=4, redis="no-such-redis.invalid:6379")
    s = start_sluice(cfg, workers=2)
    wait_for(lambda: s.metric("sluice_global_backend_errors_total", kind="error") >= 4, 10,
             what="lookups retried")
    st, secs = get_status(s.port, 20)
    assert secs < 1.0
    assert 5 <= st.count(200) <= 5 + 25  # the local bucket and what 25/s earns meanwhile
    assert st.count(429) == 20 - st.count(200)
    assert s.metric("sluice_global_fallback_total") == 20
    assert s.metric("sluice_global_backend_up") == 0
    lines = [l for l in s.logs() if l.get("msg", "").startswith("global backend: host name lookup")]
    assert len(lines) == 1, lines
    assert lines[0]["host"] == "no-such-redis.invalid"
    assert lines[0]["error"]


@pytest.mark.timeout(120)
def test_slow_redis_does_not_slow_requests(tmp_path, start_sluice, redis):
    """DEBUG SLEEP 2 stalls Redis for 2 s. A request never waits on Redis:
    the slowest batch of requests during the stall must take far less than
    the stall (we allow a quarter of it, 0.5 s, which is five command
    timeouts); the stalled lease times out after command_timeout (100 ms),
    the backend counts down and the fallback decides meanwhile."""
    s = start_sluice(global_config(redis.port, rate="200/s", burst=50, replicas=2), workers=1)
    wait_for(lambda: s.metric("sluice_global_backend_up") == 1, 10, what="connected")
    sleeper = threading.Thread(target=lambda: redis.call("DEBUG", "SLEEP", "2", timeout=10),
                               daemon=True)
    ld = Load(s.port, 200, 2.0, time.monotonic() + 0.2)
    sleeper.start()
    ld.start()
    wait_for(lambda: s.metric("sluice_global_backend_up") == 0, 3, what="the stall noticed")
    ld.join(30)
    sleeper.join(30)
    assert ld.error is None, ld.error
    assert ld.slowest < 0.5, "a batch took %.3f s while Redis slept 2 s" % ld.slowest
    assert s.metric("sluice_global_backend_errors_total", kind="timeout") >= 1
    assert s.metric("sluice_global_fallback_total") >= 1
    wait_for(lambda: s.metric("sluice_global_backend_up") == 1, 15, what="back after the stall")


@pytest.mark.timeout(120)
def test_reload_keeps_connection_and_leases(tmp_path, start_sluice, redis):
    """A reload that leaves the backend and the limit alone keeps the
    workers' Redis connections (same client ids) and the keys' leases
    (sluice_global_keys stays), under load."""
    cfg = global_config(redis.port, rate="500/s", burst=100, replicas=1)
    s = start_sluice(cfg, workers=2)
    wait_for(lambda: s.metric("sluice_global_backend_up") == 1, 10, what="connected")
    get_status(s.port, 20)
    ids = sorted(l.split()[0] for l in redis.call("CLIENT", "LIST").splitlines()
                 if "cmd=evalsha" in l or "cmd=script" in l)
    assert len(ids) == 2  # one connection per worker
    ld = Load(s.port, 300, 2.0, time.monotonic() + 0.1)
    ld.start()
    cfg2 = dict(cfg, rejection_log_per_sec=5)
    s.write_config(cfg2)
    assert s.reload() == 1.0
    ld.join(30)
    assert ld.error is None, ld.error
    assert ld.status.get(200, 0) > 0
    after = sorted(l.split()[0] for l in redis.call("CLIENT", "LIST").splitlines()
                   if "cmd=evalsha" in l or "cmd=script" in l)
    assert after == ids
    assert s.metric("sluice_global_backend_up") == 1
    assert s.metric("sluice_global_backend_errors_total", kind="disconnect") == 0
    assert s.metric("sluice_global_keys") >= 1


_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


def keyed_load(port, ids, conns=128, window=8, timeout=120):
    """One GET per device id of |ids|, over |conns| keep-alive connections
    multiplexed in this thread, each pipelining |window| requests at a time
    (devices come over many connections; one connection's pipeline is
    served one request after the other): {status: count}. Statuses are
    counted straight from the byte stream (a Python response parser would
    be the bottleneck at this volume; the stand-in's bodies carry no
    status line)."""
    import selectors
    counts = {}
    sel = selectors.DefaultSelector()
    socks = []
    try:
        for i in range(conns):
            sk = socket.create_connection(("127.0.0.1", port), timeout=10)
            sk.setblocking(False)
            st = {"ids": ids[i::conns], "at": 0, "want": 0, "tail": b""}
            socks.append(sk)
            sel.register(sk, selectors.EVENT_READ, st)

        def send_window(sk, st):
            chunk = st["ids"][st["at"]:st["at"] + window]
            st["at"] += len(chunk)
            st["want"] = len(chunk)
            if chunk:
                sk.setblocking(True)
                sk.sendall(b"".join(b"GET /v1/x HTTP/1.1\r\nHost: t\r\n"
                                    b"X-Device-Id: %s\r\n\r\n" % i for i in chunk))
                sk.setblocking(False)
        open_ = 0
        for key in list(sel.get_map().values()):
            send_window(key.fileobj, key.data)
            open_ += key.data["want"] > 0
        deadline = time.monotonic() + timeout
        while open_:
            if time.monotonic() > deadline:
                raise TimeoutError("keyed load did not finish in %d s" % timeout)
            for key, _ in sel.select(1.0):
                sk, st = key.fileobj, key.data
                data = sk.recv(1 << 16)
                if not data:
                    raise ConnectionError("closed with %d responses due" % st["want"])
                buf = st["tail"] + data
                end = 0
                for m in _STATUS.finditer(buf):
                    counts[m.group(1)] = counts.get(m.group(1), 0) + 1
                    st["want"] -= 1
                    end = m.end()
                st["tail"] = buf[max(end, len(buf) - 16):]
                if st["want"] == 0:
                    send_window(sk, st)
                    if st["want"] == 0:
                        open_ -= 1
    finally:
        for sk in socks:
            sk.close()
        sel.close()
    return counts


def redis_cpu(redis):
    """Seconds of CPU Redis has used (user + system)."""
    i = redis.info("cpu")
    return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])


def redis_calls(redis):
    """Commands Redis ran, by command (scripts' own GET/SET/TIME included)."""
    return {k[len("cmdstat_"):]: int(v.split(",")[0].split("=")[1])
            for k, v in redis.info("commandstats").items()}


@pytest.mark.timeout(240)
def test_many_keys_commands_and_memory_bounded(tmp_path, start_sluice, redis):
    """100,000 devices, each limited to 10/min fleet-wide (key device_id,
    burst 2), each sending two requests (two rounds over all of them), on
    2 workers against the C stand-in upstream. Every request is admitted
    (none exceeds its key's burst). Redis accounts for all of them
    (tokens granted >= requests admitted: a request admitted before its
    key's first grant is debt that the grant pays). The asks of one loop
    iteration travel as one EVALSHA, so the command rate follows the
    loop, not the keys: at least 8 keys per EVALSHA on average (today's
    pipelined windows carry ~100 new keys per read; one EVALSHA per key
    would fail this). Redis memory is bounded by the TTLs: every bucket
    key carries one (a grant of g tokens sets PX = g x 6 s + 1 ms, at most
    the burst's 12 s), and DBSIZE is back to 0 once the longest has passed."""
    n = 100000
    standin = Standin(str(tmp_path), ["--workers", "4096", "--service-ms", "0"]).start()
    try:
        rl = {"key": "device_id", "rate": "10/m", "burst": 2, "scope": "global"}
        top = {"redis": "127.0.0.1:%d" % redis.port, "expected_replicas": 1,
               "command_timeout": "500ms", "connect_timeout": "200ms"}
        cfg = admission_config(routes=[route(rate_limits=[rl])], **{"global": top},
                               rejection_log_per_sec=0)
        s = start_sluice(cfg, upstream=standin.port, workers=2)
        wait_for(lambda: s.metric("sluice_global_backend_up") == 1, 10, what="connected")
        base_calls, base_mem = redis_calls(redis), int(redis.info("memory")["used_memory"])
        base_cpu = redis_cpu(redis)
        ids = [b"dev-%06d" % i for i in range(n)]
        status = {}
        t0 = time.monotonic()
        for rnd in range(2):
            for k, v in keyed_load(s.port, ids).items():
                status[k] = status.get(k, 0) + v
            if rnd == 0:
                peak_keys = int(redis.call("DBSIZE"))
                keyspace = redis.info("keyspace").get("db0", "")
                peak_mem = int(redis.info("memory")["used_memory"])
        elapsed = time.monotonic() - t0
        admitted = status.get(b"200", 0)
        assert admitted == 2 * n, status
        # every ask answered: the granted tokens stop moving
        def settled():
            a = s.metric("sluice_global_tokens_granted_total")
            time.sleep(0.2)
            return a == s.metric("sluice_global_tokens_granted_total") and a
        granted = wait_for(settled, 10, what="the last grants")
        asks = s.metric("sluice_global_asks_total")
        evalsha = s.metric("sluice_global_commands_total")
        calls = redis_calls(redis)
        cpu = redis_cpu(redis) - base_cpu
        redis_cmds = sum(calls.values()) - sum(base_calls.values())
        print("%d keys, %d admitted in %.1f s; asks %d, EVALSHA %d (%.1f per 1000 admitted, "
              "%.1f keys each), Redis commands %d (%.1f per 1000 admitted, scripts' own included); "
              "after round 1: DBSIZE %d (%s), used_memory +%.1f MiB (%.0f B per key); "
              "granted %d; Redis CPU %.2f s (%.1f us per admitted request)"
              % (n, admitted, elapsed, asks, evalsha, evalsha * 1000.0 / admitted, asks / evalsha,
                 redis_cmds, redis_cmds * 1000.0 / admitted, peak_keys, keyspace,
                 (peak_mem - base_mem) / 1048576.0, (peak_mem - base_mem) / max(peak_keys, 1),
                 granted, cpu, cpu * 1e6 / admitted))
        assert granted >= admitted
        assert asks >= n  # each new key asked at least once
        assert evalsha * 8 <= asks
        assert s.metric("sluice_global_fallback_total") == 0
        # Every bucket key expires: keys=K,expires=K.
        m = re.match(r"keys=(\d+),expires=(\d+)", keyspace)
        assert m and m.group(1) == m.group(2), keyspace
        assert peak_keys > 0
        # Bounded by the TTLs: the longest (12 s) after the last grant, the
        # bucket keys are gone (Redis expires keys actively, within ~1 s).
        wait_for(lambda: int(redis.call("DBSIZE")) == 0, 12 + 10,
                 what="every bucket key to expire")
    finally:
        standin.stop()


def test_check_and_explain(tmp_path, redis):
    """`sluice check` refuses a global limit without a backend at
    FILE:LINE:COL, and explains a global limit with the replica's share."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners:\n  - {name: p, address: \"127.0.0.1:1\"}\n"
                   "upstreams:\n  u: {address: \"127.0.0.1:2\"}\n"
                   "routes:\n  - name: r\n    upstream: u\n"
                   "    rate_limits:\n      - {key: route, rate: 10/s, scope: global}\n")
    r = run_cli(["check", "-c", str(bad)])
    assert r.returncode != 0
    assert "bad.yaml:9:41: rate limit: scope: global needs the top-level 'global'" in r.stderr
