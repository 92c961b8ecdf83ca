#!/usr/bin/python3
"""sluice against nghttpx, nginx and HAProxy: CPU per request, side by side.

One origin (nginx, returning a small JSON body over HTTP/1.1 keep-alive) and
four proxies in front of it, each with one worker thread, all on 127.0.0.1
with free ports:

  sluice   --workers 1
  nghttpx  --workers=1, cleartext frontend (h1 + h2c), HTTP/1.1 backend pool
  nginx    worker_processes 1, proxy_pass to an upstream{} with keepalive
  haproxy  nbthread 1, http-reuse always

Cases (h2load, one client thread):
  h2       h2c prior knowledge, -c 64 -m 10      (all four)
  h1       --h1 -c 64                            (all four)
  h2-429   h2, a path whose limit rejects ~everything (sluice, nginx, haproxy)
  h1-429   the same over HTTP/1.1

Metric: CPU time of the PROXY's process tree only (utime+stime of every
thread of every process, from /proc, ticks / SC_CLK_TCK; schedstat ns as a
finer cross-check), divided by the requests h2load completed. Also req/s and
p50/p99 latency (from h2load's per-request log). Each cell is run --runs
times, proxies alternating (the order rotated each round) to spread the
noise of a shared machine; the median is reported. Nothing here asserts a
time: it is a measurement, printed and written to build/bench/results.json.

  make bench                   (installs what is missing, builds, runs it all)
  make bench BENCH_ARGS="--runs 3 --requests 20000 --cases h2,h1"
  python3 test/bench/proxy_bench.py --sluice ./build/sluice --only sluice,nginx
  ... --sluice-b OTHER_BUILD         (A/B: a second sluice binary beside the first)
  ... --only sluice --cases h2,h1 --perf DIR    (perf record sluice; reports in DIR)
  ... --cases h1 --strace DIR                   (strace -c: syscalls per request)

Every process is started here and stopped by its PID; every load stops by
itself after N requests, and is killed after --timeout seconds.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
JSON_BODY = ('{"device":"hub-0042","session":"2f1c9a7e5b3d4c6a8e0f1a2b3c4d5e6f",'
             '"status":"connected","region":"eu-west-1","expires_in":3600,"features":["ota","ws"]}')
REJECT_BODY = '{"error":"rate_limited","policy":"limited/client_ip","retry_after":60}'
# Shared with storm_bench.py: nginx's and HAProxy's 429 for /limited (a
# limit that refuses all but the first request), sluice's routes for it
# and for the rest, HAProxy's defaults.
NGINX_LIMITED = """    location /limited {
      limit_req zone=limited burst=1 nodelay;
      limit_req_status 429;
      limit_req_log_level warn;
      error_page 429 = @rejected;
      proxy_pass http://origin;
    }
    location @rejected {
      default_type application/json;
      add_header retry-after 60 always;
      return 429 '%(reject)s';
    }
""" % {"reject": REJECT_BODY}
HAPROXY_LIMITED = """  stick-table type ip size 100k expire 1h store http_req_rate(1h)
  acl limited path_beg /limited
  http-request track-sc0 src if limited
  acl over sc_http_req_rate(0) gt 1
  http-request deny deny_status 429 content-type application/json string '%(reject)s' \
hdr retry-after 60 if limited over
""" % {"reject": REJECT_BODY}
SLUICE_ROUTES = """  - name: limited
    match: { path_prefix: "/limited" }
    upstream: origin
    rate_limits:
      - { key: client_ip, rate: "1/h", burst: 1 }
  - name: default
    match: { path_prefix: "/" }
    upstream: origin
access_log: off
mode: enforce
drain_timeout: 2s
"""  # the last routes of sluice.yaml, and the rest
HAPROXY_DEFAULTS = """defaults
  mode http
  option http-keep-alive
  option forwardfor
  http-reuse always
  timeout connect 2s
  timeout client 300s
  timeout server 30s
  timeout http-keep-alive 300s
"""
ALL_PROXIES = ("sluice", "nghttpx", "nginx", "haproxy")
CASES = {
    # name: (protocol, path, proxies that take part)
    "h2": ("h2", "/", ALL_PROXIES),
    "h1": ("h1", "/", ALL_PROXIES),
    "h2-429": ("h2", "/limited", ("sluice", "nginx", "haproxy")),
    "h1-429": ("h1", "/limited", ("sluice", "nginx", "haproxy")),
}
RATIOS = [  # (case, numerator, denominator)
    ("h2", "sluice", "nghttpx"), ("h2", "sluice", "nginx"), ("h2", "sluice", "haproxy"),
    ("h1", "sluice", "nginx"), ("h1", "sluice", "nghttpx"), ("h1", "sluice", "haproxy"),
    ("h2-429", "sluice", "haproxy"), ("h2-429", "sluice", "nginx"),
    ("h1-429", "sluice", "haproxy"), ("h1-429", "sluice", "nginx"),
]
UPSTREAM_CONNS = 1024  # per proxy, so that no proxy queues on its pool


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- ports -------------------------------------------------------------------

def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_taken = set()


def free_port():
    """A port below the ephemeral range (so no outgoing connection of the
    load or of a proxy can take it) that binds now on 127.0.0.1."""
    hi = _ephemeral_low() - 1
    for _ in range(200):
        port = random.randint(20000, hi)
        if port in _taken:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _taken.add(port)
        return port
    raise BenchError("no free port")


def wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# ---- CPU accounting ----------------------------------------------------------

def _children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def tree_pids(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def cpu_sample(pid):
    """(ticks, ns) of CPU used so far by |pid|'s process tree: utime+stime
    from /proc/P/stat (which covers all of P's threads), and the sum of
    /proc/P/task/T/schedstat run times (ns, finer grained)."""
    ticks, ns = 0, 0
    for p in tree_pids(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
            for tid in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/schedstat" % (p, tid)) as f:
                    ns += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return ticks, ns


# ---- processes ---------------------------------------------------------------

class Proc:
    """One server we started; stopped by its PID."""

    def __init__(self, name, cmd, workdir, ports, env=None):
        self.name, self.cmd, self.workdir, self.ports = name, cmd, workdir, ports
        self.log_path = os.path.join(workdir, name + ".out")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=workdir, env=env,
                                     start_new_session=True)
        self.pid = self.proc.pid
        for p in ports.values():
            if not wait_port(p, self.proc):
                self.stop()
                raise BenchError("%s did not listen on %d:\n%s" % (name, p, self.output()))

    def output(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self, timeout=10.0):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # The tree we started, by PID: the leader then its children.
                for p in reversed(tree_pids(self.pid)):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(5)
        self._log.close()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def start_origin(d):
    port = free_port()
    conf = write(os.path.join(d, "origin.conf"), """
worker_processes 2;
daemon off;
pid %(d)s/origin.pid;
error_log %(d)s/origin.err error;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  client_body_temp_path %(d)s/o_body;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:%(port)d reuseport backlog=4096;
    location / { default_type application/json; return 200 '%(body)s'; }
  }
}
""" % {"d": d, "port": port, "body": JSON_BODY})
    return Proc("origin", ["nginx", "-p", d, "-e", d + "/origin.err", "-c", conf], d,
                {"http": port})


def start_sluice(d, binary, origin, name="sluice", pipeline=1, routes=SLUICE_ROUTES, extra=""):
    """sluice (--workers 1) in front of |origin|; |routes| ends sluice.yaml,
    |extra| (top-level YAML) comes before it."""
    ports = {"h1": free_port(), "admin": free_port()}
    ports["h2"] = ports["h1"]  # one cleartext listener: HTTP/1.1 and h2c
    conf = write(os.path.join(d, "sluice.yaml"), """
listeners:
  - name: public
    address: "127.0.0.1:%(h1)d"
    max_connections: 50000
    timeouts: { request_header: 10s, idle: 300s }
    limits: { h2_streams: 100 }
admin:
  address: "127.0.0.1:%(admin)d"
upstreams:
  origin:
    address: "127.0.0.1:%(origin)d"
    max_connections: %(conns)d
    max_pending: 100000%(pipeline_line)s
    timeouts: { connect: 2s, response: 30s, idle: 300s }
%(extra)sroutes:
%(routes)s""" % dict(ports, origin=origin, conns=UPSTREAM_CONNS, routes=routes, extra=extra,
           pipeline_line="\n    pipeline: %d" % pipeline if pipeline > 1 else ""))
    binary = os.path.abspath(binary)
    return Proc(name, [binary, "run", "-c", conf, "--workers", "1", "--log-level", "warn"],
                d, {"h1": ports["h1"], "admin": ports["admin"]}), ports


def start_nghttpx(d, origin):
    port = free_port()
    conf = write(os.path.join(d, "nghttpx.conf"), "")
    cmd = ["nghttpx", "--conf=" + conf, "--workers=1",
           "--frontend=127.0.0.1,%d;no-tls" % port,
           "--backend=127.0.0.1,%d;;proto=http/1.1" % origin,
           "--backend-connections-per-host=%d" % UPSTREAM_CONNS,
           "--backend-keep-alive-timeout=300s", "--frontend-keep-alive-timeout=300s",
           "--frontend-http2-max-concurrent-streams=100",
           "--add-x-forwarded-for", "--no-via", "--no-ocsp",
           "--errorlog-file=" + os.path.join(d, "nghttpx.err"),
           "--pid-file=" + os.path.join(d, "nghttpx.pid")]
    return Proc("nghttpx", cmd, d, {"h1": port}), {"h1": port, "h2": port}


def nginx_head(d, workers):
    """The start of an nginx.conf (shared with storm_bench.py): |workers|
    processes, in the foreground, files under |d|, no access log, the
    opening of http {."""
    return """worker_processes %(workers)d;
daemon off;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx.err error;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path %(d)s/n_body;
  proxy_temp_path %(d)s/n_proxy;
""" % {"d": d, "workers": workers}


def start_nginx(d, origin):
    ports = {"h1": free_port(), "h2": free_port()}
    conf = write(os.path.join(d, "nginx.conf"), """
%(head)s  keepalive_requests 100000000;
  keepalive_timeout 300s;
  http2_max_concurrent_streams 100;
  limit_req_zone $binary_remote_addr zone=limited:10m rate=1r/m;
  upstream origin {
    server 127.0.0.1:%(origin)d;
    keepalive %(conns)d;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:%(h1)d reuseport backlog=4096;
    listen 127.0.0.1:%(h2)d http2 reuseport backlog=4096;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    location / { proxy_pass http://origin; }
%(limited)s  }
}
""" % dict(ports, origin=origin, conns=UPSTREAM_CONNS, routes=SLUICE_ROUTES, limited=NGINX_LIMITED,
           head=nginx_head(d, 1)))
    return Proc("nginx", ["nginx", "-p", d, "-e", d + "/nginx.err", "-c", conf], d, ports), ports


def start_haproxy(d, origin):
    ports = {"h1": free_port(), "h2": free_port()}
    conf = write(os.path.join(d, "haproxy.cfg"), """
global
  nbthread 1
  maxconn 8000

%(defaults)s
frontend fe
  bind 127.0.0.1:%(h1)d
  bind 127.0.0.1:%(h2)d proto h2
%(limited)s  default_backend be

backend be
  server origin 127.0.0.1:%(origin)d maxconn %(conns)d
""" % dict(ports, origin=origin, conns=UPSTREAM_CONNS, routes=SLUICE_ROUTES, defaults=HAPROXY_DEFAULTS,
           limited=HAPROXY_LIMITED))
    return Proc("haproxy", ["haproxy", "-db", "-f", conf], d, ports), ports


# ---- load --------------------------------------------------------------------

def parse_h2load(text):
    r = {}
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    if m:
        r["elapsed_s"] = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
        r["rps"] = float(m.group(3))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    if m:
        (r["total"], r["started"], r["done"], r["succeeded"], r["failed"], r["errored"],
         r["timeout"]) = map(int, m.groups())
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        r["2xx"], r["3xx"], r["4xx"], r["5xx"] = map(int, m.groups())
    return r


def percentiles(log_path):
    durs = []
    try:
        with open(log_path) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    durs.append(int(parts[2]))
    except (OSError, ValueError):
        return None, None
    if not durs:
        return None, None
    durs.sort()

    def pct(q):
        return durs[min(len(durs) - 1, int(q * len(durs)))] / 1000.0  # ms
    return pct(0.50), pct(0.99)


def h2load_cmd(proto, url, n, conns, streams, log_file):
    cmd = ["h2load", "-t", "1", "-c", str(conns), "-n", str(n), "--log-file", log_file]
    if proto == "h1":
        cmd += ["--h1"]
    else:
        cmd += ["-m", str(streams)]
    return cmd + [url]


def run_load(proxy, proto, path, n, args, workdir, tag):
    """Runs one h2load against |proxy|; returns the measurement."""
    port = proxy["ports"][proto]
    url = "http://127.0.0.1:%d%s" % (port, path)
    log_file = os.path.join(workdir, "h2load-%s.log" % tag)
    cmd = h2load_cmd(proto, url, n, args.connections, args.streams, log_file)
    pid = proxy["proc"].pid
    t0, ns0 = cpu_sample(pid)
    w0 = time.monotonic()
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=args.timeout, text=True).stdout
    except subprocess.TimeoutExpired:
        raise BenchError("h2load timed out after %ds: %s" % (args.timeout, " ".join(cmd)))
    wall = time.monotonic() - w0
    t1, ns1 = cpu_sample(pid)
    r = parse_h2load(out)
    if "done" not in r or r["done"] == 0:
        raise BenchError("h2load against %s completed nothing:\n%s" % (proxy["name"], out[-2000:]))
    p50, p99 = percentiles(log_file)
    try:
        os.unlink(log_file)
    except OSError:
        pass
    done = r["done"]
    return {
        "requests": done,
        "cpu_us_per_req": (t1 - t0) * 1e6 / CLK_TCK / done,
        "cpu_us_per_req_schedstat": (ns1 - ns0) / 1e3 / done if ns1 > ns0 else None,
        "cpu_s": (t1 - t0) / CLK_TCK,
        "rps": r.get("rps"),
        "p50_ms": p50,
        "p99_ms": p99,
        "wall_s": wall,
        "status": {k: r.get(k, 0) for k in ("2xx", "3xx", "4xx", "5xx")},
        "errors": {k: r.get(k, 0) for k in ("failed", "errored", "timeout")},
    }


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---- profiling helpers (by hand) --------------------------------------

def interrupt(proc, timeout):
    """SIGINT to a profiler we started (it writes its report), then SIGKILL
    after |timeout| s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def perf_attach(pid, data, freq, call_graph):
    """perf record (cpu-clock) of |pid| (or a comma-separated list of
    pids) into |data|, with call graphs unless |call_graph| is None;
    returns the perf process once it has had time to attach."""
    graph = ["--call-graph", call_graph] if call_graph else []
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(freq)] + graph +
                            ["-o", data, "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    return perf


def perf_detach(perf, data, prefix):
    """Stops |perf| (perf_attach) and writes PREFIX.self.txt and
    PREFIX.children.txt (perf report by symbol and DSO)."""
    interrupt(perf, 120)
    for kind, extra in (("self", ["--no-children"]), ("children", ["--children"])):
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none",
                              "--percent-limit", "0.3", "--sort", "symbol,dso"] + extra,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             timeout=600).stdout
        write("%s.%s.txt" % (prefix, kind), rep)


def profile_perf(proxies, args, workdir, cases):
    """perf record (cpu-clock, call graphs) of sluice under one load per
    case; writes self and children reports beside the data."""
    out_dir = os.path.abspath(args.perf)
    os.makedirs(out_dir, exist_ok=True)
    if "sluice" not in proxies:
        raise BenchError("--perf profiles sluice: include it in --only")
    sl = proxies["sluice"]
    for case in cases:
        proto, path, _ = CASES[case]
        data = os.path.join(out_dir, "perf-%s.data" % case)
        perf = perf_attach(sl["proc"].pid, data, args.perf_freq, args.call_graph)
        m = run_load(sl, proto, path, args.requests, args, workdir, "perf-" + case)
        log("perf %s: %d requests, %.1f us/req under perf" % (case, m["requests"],
                                                               m["cpu_us_per_req"]))
        perf_detach(perf, data, os.path.join(out_dir, "perf-" + case))
        log("perf %s: reports in %s" % (case, out_dir))


def strace_attach(pid, summary):
    """strace -c -f on every thread of |pid|'s tree, its summary to the file
    |summary|; returns the strace process once it has had time to attach."""
    cmd = ["strace", "-c", "-f", "-o", summary]
    for p in tree_pids(pid):
        for t in os.listdir("/proc/%d/task" % p):
            cmd += ["-p", t]
    st = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    return st


def strace_detach(st, summary):
    """Stops |st| (strace_attach) and reads its summary: (text, total calls,
    {syscall: calls})."""
    interrupt(st, 60)
    with open(summary) as f:
        text = f.read()
    calls, per = 0, {}
    for line in text.splitlines():
        mm = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if mm and mm.group(2) != "total":
            calls += int(mm.group(1))
            per[mm.group(2)] = int(mm.group(1))
    return text, calls, per


def profile_strace(proxies, args, workdir, cases):
    """Attaches strace -c -f to each warmed-up proxy for one load per case
    and prints its syscalls per request (start-up excluded)."""
    out_dir = os.path.abspath(args.strace)
    os.makedirs(out_dir, exist_ok=True)
    for (case, name) in [(c, n) for c in cases for n in CASES[c][2] if n in proxies]:
        sl = proxies[name]
        proto, path, _ = CASES[case]
        summary = os.path.join(out_dir, "strace-%s-%s.txt" % (case, name))
        st = strace_attach(sl["proc"].pid, summary)
        m = run_load(sl, proto, path, args.strace_requests, args, workdir, "strace-" + case)
        text, calls, per = strace_detach(st, summary)
        n = max(1, m["requests"])
        detail = "  ".join("%s %.3f" % (k, v / n) for k, v in
                           sorted(per.items(), key=lambda kv: -kv[1]))
        write(summary, text + "\nrequests: %d  syscalls/request: %.3f\n%s\n" %
              (m["requests"], calls / n, detail))
        print("strace %-7s %-8s %.3f syscalls/request (%d requests): %s" % (
            case, name, calls / n, m["requests"], detail))


# ---- main --------------------------------------------------------------------

def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sluice", default="./build/sluice")
    ap.add_argument("--requests", type=int, default=60000, help="requests per run")
    ap.add_argument("--runs", type=int, default=5, help="runs per cell (median reported)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--streams", type=int, default=10, help="h2 streams per connection")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per h2load run")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--only", default=",".join(ALL_PROXIES), help="proxies to run")
    ap.add_argument("--pipeline", type=int, default=0, metavar="N",
                    help="also run sluice with upstream pipelining depth N, as 'sluice-pN'")
    ap.add_argument("--sluice-b", metavar="BIN",
                    help="a second sluice build, run as 'sluice-b' wherever sluice runs (A/B)")
    ap.add_argument("--out", default="build/bench/results.json")
    ap.add_argument("--perf", metavar="DIR", help="perf record sluice under each case instead")
    ap.add_argument("--call-graph", default="dwarf,8192", help="perf --call-graph mode")
    ap.add_argument("--perf-freq", type=int, default=4999, help="perf samples/s (cpu-clock)")
    ap.add_argument("--strace", metavar="DIR", help="strace -c each proxy under each case instead")
    ap.add_argument("--strace-requests", type=int, default=20000)
    args = ap.parse_args()

    cases = [c for c in args.cases.split(",") if c]
    for c in cases:
        if c not in CASES:
            ap.error("unknown case %r" % c)
    wanted = [p for p in args.only.split(",") if p]
    for p in wanted:
        if p not in ALL_PROXIES:
            ap.error("unknown proxy %r" % p)
    if args.sluice_b:
        if not os.access(args.sluice_b, os.X_OK):
            ap.error("no sluice binary at %s" % args.sluice_b)
        for name, (proto, path, members) in list(CASES.items()):
            if "sluice" in members:
                CASES[name] = (proto, path, members + ("sluice-b",))
        RATIOS.extend((c, "sluice-b", "sluice") for c in CASES)
        wanted.append("sluice-b")
    pname = "sluice-p%d" % args.pipeline
    if args.pipeline > 1:
        for name, (proto, path, members) in list(CASES.items()):
            if "sluice" in members:
                CASES[name] = (proto, path, members + (pname,))
        others = {"h2": "nghttpx", "h1": "nginx", "h2-429": "haproxy", "h1-429": "haproxy"}
        RATIOS.extend((c, pname, others[c]) for c in CASES if c in others)
        wanted.append(pname)
    tools = {"h2load": "h2load", "nginx": "nginx", "nghttpx": "nghttpx", "haproxy": "haproxy"}
    need = {"h2load", "nginx"} | {p for p in wanted if not p.startswith("sluice")}
    if args.perf:
        need.add("perf")
        tools["perf"] = "perf"
    if args.strace:
        need.add("strace")
        tools["strace"] = "strace"
    missing = sorted(t for t in need if not shutil.which(tools[t], path=os.environ.get(
        "PATH", "") + ":/usr/sbin:/sbin"))
    if missing:
        print("proxy_bench: missing %s; run scripts/deps.sh --bench (skipped)" % ", ".join(missing))
        return 0
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    if not os.access(args.sluice, os.X_OK):
        raise BenchError("no sluice binary at %s (make build/sluice)" % args.sluice)

    workdir = tempfile.mkdtemp(prefix="sluice-bench-")
    started = []
    ok = False
    try:
        origin = start_origin(workdir)
        started.append(origin)
        oport = origin.ports["http"]
        starters = {
            "sluice": lambda d: start_sluice(d, args.sluice, oport),
            "sluice-b": lambda d: start_sluice(d, args.sluice_b, oport, name="sluice-b"),
            pname: lambda d: start_sluice(d, args.sluice, oport, name=pname,
                                          pipeline=max(args.pipeline, 1)),
            "nghttpx": lambda d: start_nghttpx(d, oport),
            "nginx": lambda d: start_nginx(d, oport),
            "haproxy": lambda d: start_haproxy(d, oport),
        }
        proxies = {}
        for name in wanted:
            d = os.path.join(workdir, name)
            os.makedirs(d)
            proc, ports = starters[name](d)
            started.append(proc)
            proxies[name] = {"name": name, "proc": proc, "ports": ports}
        # Warm up: upstream pools filled, limiters' one token spent.
        for case in cases:
            proto, path, members = CASES[case]
            for name in members:
                if name in proxies:
                    run_load(proxies[name], proto, path, min(args.requests, 5000), args,
                             workdir, "warm")
        if args.perf:
            profile_perf(proxies, args, workdir, cases)
            return 0
        if args.strace:
            profile_strace(proxies, args, workdir, cases)
            return 0

        results = {c: {p: [] for p in CASES[c][2] if p in proxies} for c in cases}
        for rnd in range(args.runs):
            for case in cases:
                order = list(results[case])
                k = rnd % len(order)
                order = order[k:] + order[:k]
                for name in order:
                    m = run_load(proxies[name], CASES[case][0], CASES[case][1], args.requests,
                                 args, workdir, "%s-%s-%d" % (case, name, rnd))
                    results[case][name].append(m)
                    log("run %d %-7s %-8s %7.1f us/req  %8.0f req/s  p99 %s ms  %s" % (
                        rnd + 1, case, name, m["cpu_us_per_req"], m["rps"] or 0,
                        fmt(m["p99_ms"], ".2f"), m["status"]))

        summary = {}
        for case, per in results.items():
            summary[case] = {}
            for name, runs in per.items():
                summary[case][name] = {
                    "cpu_us_per_req": median(r["cpu_us_per_req"] for r in runs),
                    "cpu_us_per_req_schedstat": median(r["cpu_us_per_req_schedstat"]
                                                       for r in runs),
                    "rps": median(r["rps"] for r in runs),
                    "p50_ms": median(r["p50_ms"] for r in runs),
                    "p99_ms": median(r["p99_ms"] for r in runs),
                    "status": runs[-1]["status"],
                    "errors": runs[-1]["errors"],
                    "runs": runs,
                }

        print()
        print("CPU of the proxy process per request (median of %d runs, %d requests each; "
              "h2: -c %d -m %d, h1: -c %d)" % (args.runs, args.requests, args.connections,
                                                 args.streams, args.connections))
        print("%-7s %-8s %12s %14s %10s %9s %9s  %s" % (
            "case", "proxy", "cpu us/req", "(schedstat)", "req/s", "p50 ms", "p99 ms",
            "status (last run)"))
        for case in cases:
            for name, s in summary[case].items():
                st = s["status"]
                note = "2xx %d 4xx %d 5xx %d" % (st["2xx"], st["4xx"], st["5xx"])
                # h2load counts 4xx/5xx responses as "failed"; report the rest.
                e = s["errors"]
                bad = e["errored"] + e["timeout"] + max(0, e["failed"] - st["4xx"] - st["5xx"])
                if bad:
                    note += " errors %s" % e
                if case.endswith("-429"):
                    done = sum(st.values()) or 1
                    if st["4xx"] < 0.99 * done:
                        note += "  (NOT a reject run: <99% 4xx)"
                print("%-7s %-8s %12s %14s %10s %9s %9s  %s" % (
                    case, name, fmt(s["cpu_us_per_req"], ".2f"),
                    fmt(s["cpu_us_per_req_schedstat"], ".2f"), fmt(s["rps"], ".0f"),
                    fmt(s["p50_ms"], ".2f"), fmt(s["p99_ms"], ".2f"), note))
        ratios = {}
        print()
        print("ratios of CPU per request (lower is better for sluice):")
        for case, a, b in RATIOS:
            sa, sb = summary.get(case, {}).get(a), summary.get(case, {}).get(b)
            if sa and sb and sa["cpu_us_per_req"] and sb["cpu_us_per_req"]:
                r = sa["cpu_us_per_req"] / sb["cpu_us_per_req"]
                ratios["%s %s/%s" % (case, a, b)] = r
                print("  %-7s %s/%s = %.2f" % (case, a, b, r))

        out = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": {"nproc": os.cpu_count(), "loadavg": os.getloadavg(), "clk_tck": CLK_TCK},
            "params": {"requests": args.requests, "runs": args.runs,
                       "connections": args.connections, "streams": args.streams,
                       "upstream_conns": UPSTREAM_CONNS, "body_bytes": len(JSON_BODY)},
            "versions": versions(args.sluice),
            "results": summary,
            "ratios": ratios,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        write(args.out, json.dumps(out, indent=2) + "\n")
        print("\nwritten %s" % args.out)
        ok = True
        return 0
    finally:
        for p in reversed(started):
            if p.proc.poll() is not None:
                log("%s exited early (status %s):\n%s" % (p.name, p.proc.returncode, p.output()))
                ok = False
            p.stop()
        if ok or args.perf or args.strace:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log("proxy_bench: logs kept in %s" % workdir)


def first_line(cmd):
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=10)
        return r.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def versions(sluice):
    return {
        "sluice": first_line([os.path.abspath(sluice), "version"]),
        "nghttpx": first_line(["nghttpx", "--version"]),
        "nginx": first_line(["nginx", "-v"]),
        "haproxy": first_line(["haproxy", "-v"]),
        "h2load": first_line(["h2load", "--version"]),
    }

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print("proxy_bench: %s" % e, file=sys.stderr)
        sys.exit(2)
