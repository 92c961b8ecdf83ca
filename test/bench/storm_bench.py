#!/usr/bin/python3
"""The storm: CPU per NEW connection, sluice beside nginx, HAProxy, nghttpx.

proxy_bench.py measures keep-alive traffic; this measures what a reconnect
storm costs: every request on a connection of its own. Same origin (nginx,
keep-alive from each proxy), same certificates (one ECDSA P-256, one RSA
2048, made here with openssl), TLS 1.2+ offered by every proxy with the
library's default TLS 1.3 suites and groups (the clients negotiate TLS 1.3),
--workers N (sluice), worker_processes N (nginx), nbthread N (HAProxy),
--workers=N (nghttpx; left out of --workers 2, which the issue sets against
nginx and HAProxy). h2o is not installed here: no column.

Cases (client in brackets):
  h1-new      cleartext HTTP/1.1, Connection: close per request [wrk]
  tls-ecdsa   full TLS 1.3 handshake per connection, ECDSA P-256, one
              HTTP/1.1 request on it [h2load --h1 -c B -n B in batches:
              every client a new connection and a new TLS session]
  tls-rsa     the same with RSA 2048
  tls-resume  TLS 1.3 resumption with a session ticket, ECDSA [wrk https,
              Connection: close: wrk keeps each connection's SSL object and
              SSL_clear()s it, so every reconnection offers the ticket of the
              one before; the proxies' in-process ticket keys, unless
              --ticket-keys. openssl s_time -reuse checks, before the runs,
              that each proxy resumes (the "resumes" line)]
  conn-refuse a connection refused at accept by a connection-rate limit
              [Python client: connect, wait for the close]: sluice
              listeners[].connect_rate, HAProxy tcp-request connection reject
              on a stick-table conn_rate. nginx has no accept-time refusal
              (limit_conn counts concurrent connections and answers 503 after
              the request head), nghttpx none: they are left out.
  h1-429      a new HTTP/1.1 connection whose request is refused with 429 [wrk]
  h2-429      the same over h2c, one request per connection [h2load
              -c B -n B -m 1 in batches: every client one connection, one
              request] (sluice, nginx limit_req, HAProxy http-request deny)
  ws-upgrade  a WebSocket upgrade per connection, closed after the 101
              [Python client; origin test/integration/upstream.py /ws]

Metric: CPU of the proxy's process tree per completed connection: the run
time of every thread (/proc/P/task/T/schedstat, ns; utime+stime in ticks
beside it, coarser), sampled before the load and after the proxy has gone
quiet. Each cell runs --runs times, the proxies interleaved (A B C A B C ..., the
order rotated each round) so that drift cancels; the median and the spread
(min-max) are reported, with connections/s. Syscalls per connection come
from a separate, untimed run per cell under strace -c -f (--no-strace skips
it). Where the CPU goes comes from another untimed run per cell under perf
record (cpu-clock samples by DSO: the kernel, OpenSSL, libc, the rest;
--no-split skips it), with the floor: the least any proxy spent in the
kernel and OpenSSL, against 0.8 x the best other proxy. Nothing asserts a
time.

  make bench                     (proxy_bench, then this with --workers 1,2)
  make bench STORM_ARGS=--quick  (this one as a smoke run)
  python3 test/bench/storm_bench.py --quick           (smoke: 1 short run per cell)
  python3 test/bench/storm_bench.py --cases tls-ecdsa,h1-new --only sluice,nginx
  ... --perf DIR      (perf record -g sluice in tls-ecdsa; reports in DIR)
  ... --ticket-keys FILE  (sluice's TLS listener gets tls.ticket_keys_file: FILE)

Every process is started here and stopped by its PID; every load is bounded
in count or duration, and killed after --timeout seconds.
"""

import argparse
import collections
import errno
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import proxy_bench as pb  # noqa: E402
from proxy_bench import BenchError, Proc, free_port, log, write  # noqa: E402

ALL = ("sluice", "nginx", "haproxy", "nghttpx")
CASES = collections.OrderedDict([
    # name: (client, listener, path, proxies)
    ("h1-new", ("wrk", "h1", "/", ALL)),
    ("tls-ecdsa", ("h2load-h1", "tls", "/", ALL)),
    ("tls-rsa", ("h2load-h1", "tls", "/", ALL)),
    ("tls-resume", ("wrk", "tls", "/", ALL)),
    ("conn-refuse", ("refuse", "crate", "/", ("sluice", "haproxy"))),
    ("h1-429", ("wrk", "h1", "/limited", ("sluice", "nginx", "haproxy"))),
    ("h2-429", ("h2load", "h2", "/limited", ("sluice", "nginx", "haproxy"))),
    ("ws-upgrade", ("ws", "h1", "/ws", ALL)),
])
ANCHORS = {  # the figures (their harness), us per connection, one worker
    "h1-new": {"sluice": 39.0, "nginx": 30.2, "haproxy": 35.1},
    "h1-429": {"sluice": 7.6, "nginx": 6.6},
    "tls-ecdsa": {"sluice": (520, 594), "nginx": (569, 636), "haproxy": (638, 688)},
}
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
SLUICE_LISTENER = """  - name: %s
    address: "127.0.0.1:%d"
    max_connections: 50000
    timeouts: { request_header: 10s, idle: 300s }
"""


# ---- configurations ----------------------------------------------------------

def start_sluice(d, binary, origin, ws, cert, workers, ticket_keys=None):
    ports = {"h1": free_port(), "tls": free_port(), "crate": free_port(), "admin": free_port()}
    ports["h2"] = ports["h1"]
    listeners = "".join(SLUICE_LISTENER % (name, ports[key]) + extra for name, key, extra in (
        ("public", "h1", "    limits: { h2_streams: 100 }\n"),
        ("tls", "tls", "    tls: { certificate: %s, private_key: %s%s }\n" % (
            cert[0], cert[1], ", ticket_keys_file: %s" % ticket_keys if ticket_keys else "")),
        ("crate", "crate", '    connect_rate: { per_ip: "1/h", burst: 1 }\n')))
    conf = write(os.path.join(d, "sluice.yaml"), """
listeners:
%(listeners)sadmin:
  address: "127.0.0.1:%(admin)d"
upstreams:
  origin:
    address: "127.0.0.1:%(origin)d"
    max_connections: 1024
    max_pending: 100000
    timeouts: { connect: 2s, response: 30s, idle: 300s }
  ws:
    address: "127.0.0.1:%(ws)d"
    max_connections: 4096
    max_pending: 100000
    timeouts: { connect: 2s, response: 30s, idle: 300s }
routes:
  - name: ws
    match: { path_prefix: "/ws", websocket: true }
    upstream: ws
%(routes)s""" % dict(ports, origin=origin, ws=ws, listeners=listeners, routes=pb.SLUICE_ROUTES))
    proc = Proc("sluice", [os.path.abspath(binary), "run", "-c", conf, "--workers",
                           str(workers), "--log-level", "warn"], d,
                {k: v for k, v in ports.items() if k != "h2"})
    return proc, ports


def start_nginx(d, origin, ws, cert, workers):
    ports = {"h1": free_port(), "h2": free_port(), "tls": free_port()}
    conf = write(os.path.join(d, "nginx.conf"), """
%(head)s  keepalive_timeout 300s;
  limit_req_zone $binary_remote_addr zone=limited:10m rate=1r/m;
  upstream origin { server 127.0.0.1:%(origin)d; keepalive 1024; keepalive_timeout 300s; }
  upstream ws { server 127.0.0.1:%(ws)d; }
  server {
    listen 127.0.0.1:%(h1)d reuseport backlog=4096;
    listen 127.0.0.1:%(h2)d http2 reuseport backlog=4096;
    listen 127.0.0.1:%(tls)d ssl reuseport backlog=4096;
    ssl_certificate %(crt)s;
    ssl_certificate_key %(key)s;
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    location / { proxy_pass http://origin; }
    location /ws {
      proxy_pass http://ws;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
    }
%(limited)s  }
}
""" % dict(ports, origin=origin, ws=ws, crt=cert[0], key=cert[1],
           limited=pb.NGINX_LIMITED, head=pb.nginx_head(d, workers)))
    return Proc("nginx", ["nginx", "-p", d, "-e", d + "/nginx.err", "-c", conf], d, ports), ports


def start_haproxy(d, origin, ws, cert, workers):
    ports = {"h1": free_port(), "h2": free_port(), "tls": free_port(), "crate": free_port()}
    pem = write(os.path.join(d, "cert.pem"), open(cert[0]).read() + open(cert[1]).read())
    conf = write(os.path.join(d, "haproxy.cfg"), """
global
  nbthread %(workers)d
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2

%(defaults)s  timeout tunnel 300s

frontend fe
  bind 127.0.0.1:%(h1)d
  bind 127.0.0.1:%(h2)d proto h2
  bind 127.0.0.1:%(tls)d ssl crt %(pem)s
%(limited)s  use_backend ws if { path_beg /ws }
  default_backend be

frontend crate
  bind 127.0.0.1:%(crate)d
  stick-table type ip size 100k expire 1h store conn_rate(1h)
  tcp-request connection track-sc0 src
  tcp-request connection reject if { sc_conn_rate(0) gt 1 }
  default_backend be

backend be
  server origin 127.0.0.1:%(origin)d maxconn 1024

backend ws
  server ws 127.0.0.1:%(ws)d
""" % dict(ports, origin=origin, ws=ws, pem=pem, workers=workers,
           defaults=pb.HAPROXY_DEFAULTS, limited=pb.HAPROXY_LIMITED))
    return Proc("haproxy", ["haproxy", "-db", "-f", conf], d, ports), ports


def start_nghttpx(d, origin, ws, cert, workers):
    ports = {"h1": free_port(), "tls": free_port()}
    ports["h2"] = ports["h1"]
    conf = write(os.path.join(d, "nghttpx.conf"), "")
    cmd = ["nghttpx", "--conf=" + conf, "--workers=%d" % workers,
           "--frontend=127.0.0.1,%d;no-tls" % ports["h1"],
           "--frontend=127.0.0.1,%d" % ports["tls"],
           "--backend=127.0.0.1,%d;;proto=http/1.1" % origin,
           "--backend=127.0.0.1,%d;/ws;proto=http/1.1" % ws,
           "--backend-connections-per-host=1024", "--tls-min-proto-version=TLSv1.2",
           "--backend-keep-alive-timeout=300s", "--frontend-keep-alive-timeout=300s",
           "--add-x-forwarded-for", "--no-via", "--no-ocsp",
           "--errorlog-file=" + os.path.join(d, "nghttpx.err"),
           "--pid-file=" + os.path.join(d, "nghttpx.pid"), cert[1], cert[0]]
    return Proc("nghttpx", cmd, d, {"h1": ports["h1"], "tls": ports["tls"]}), ports


def start_ws_origin(d):
    """test/integration/upstream.py: its /ws answers the upgrade (101)."""
    import helpers
    up = helpers.Upstream(workdir=d).start()
    return up


# ---- clients -----------------------------------------------------------------

def run_cmd(cmd, timeout):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, text=True).stdout
    except subprocess.TimeoutExpired:
        raise BenchError("timed out after %ds: %s" % (timeout, " ".join(cmd)))


def wrk_client(url, seconds, conns, timeout):
    """wrk, Connection: close: every request on a new connection (over
    https each one resumes the session of the one before: wrk reuses its
    SSL object with SSL_clear, which keeps the session; checked against
    nginx's $ssl_session_reused, 875 of 883 connections resumed)."""
    out = run_cmd(["wrk", "-t", "1", "-c", str(conns), "-d", "%ds" % seconds, "--timeout", "5s",
                   "-H", "Connection: close", url], timeout)
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise BenchError("wrk said:\n%s" % out[-2000:])
    n = int(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    status = {"2xx": n - (int(non2xx.group(1)) if non2xx else 0),
              "other": int(non2xx.group(1)) if non2xx else 0}
    if errs:
        status["errors"] = sum(map(int, errs.groups()))
    return n, status


def s_time_resumes(port, timeout):
    """Does the proxy resume TLS sessions? openssl s_time -reuse for a
    second (one connection at a time; after the first, each offers the
    first one's ticket): (connections, resumed)."""
    out = run_cmd(["openssl", "s_time", "-connect", "127.0.0.1:%d" % port, "-www", "/",
                   "-time", "1", "-reuse"], timeout)
    m = re.findall(r"(\d+) connections in (\d+) real seconds", out)
    marks = "".join(re.findall(r"^[r*.]+$", out.split("session id reuse", 1)[-1], re.M))
    return (int(m[-1][0]) if m else 0), marks.count("r")  # r: resumed, *: full


def h2load_client(url, total, batch, timeout, h1=False):
    """h2load -c B -n B -m 1, repeated: every client opens one connection
    (over https with a TLS session of its own: a full handshake) and sends
    one request on it."""
    done, st = 0, collections.Counter()
    deadline = time.monotonic() + timeout
    while done < total and time.monotonic() < deadline:
        b = min(batch, total - done)
        out = run_cmd(["h2load", "-t", "1", "-c", str(b), "-n", str(b), "-m", "1"] +
                      (["--h1"] if h1 else []) + [url], max(5, int(deadline - time.monotonic())))
        r = pb.parse_h2load(out)
        if not r.get("done"):
            raise BenchError("h2load completed nothing:\n%s" % out[-2000:])
        done += r["done"]
        for k in ("2xx", "4xx", "5xx", "errored", "timeout"):
            st[k] += r.get(k, 0)
    return done, dict(st)


def socket_client(port, total, conc, request, timeout, conn_timeout=3.0):
    """|total| connections, |conc| at a time: connect, send |request| (if
    any), read up to the end of the response head (b"" request: up to the
    close), then close. Returns (completed, {"101": n, "closed": n, ...})."""
    sel = selectors.DefaultSelector()
    st = collections.Counter()
    started = finished = 0
    deadline = time.monotonic() + timeout
    live = {}

    def start_one():
        nonlocal finished
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex(("127.0.0.1", port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            st["connect_error"] += 1
            finished += 1
            return
        c = {"s": s, "out": request, "in": b"", "t": time.monotonic()}
        live[s.fileno()] = c
        sel.register(s, selectors.EVENT_WRITE if request else selectors.EVENT_READ, c)

    def finish(c, what):
        nonlocal finished
        sel.unregister(c["s"])
        del live[c["s"].fileno()]
        c["s"].close()
        st[what] += 1
        finished += 1

    last_scan = time.monotonic()
    while (finished < total or live) and time.monotonic() < deadline:
        while started < total and len(live) < conc:
            started += 1
            start_one()
        for key, ev in sel.select(0.2):
            c = key.data
            try:
                if c["out"]:
                    c["out"] = c["out"][c["s"].send(c["out"]):]
                    if not c["out"]:
                        sel.modify(c["s"], selectors.EVENT_READ, c)
                    continue
                data = c["s"].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                finish(c, "closed" if not c["in"] else "reset")
                continue
            if not data:
                finish(c, "closed" if not c["in"] else status_of(c["in"]))
                continue
            c["in"] += data
            if b"\r\n\r\n" in c["in"]:
                finish(c, status_of(c["in"]))
        now = time.monotonic()
        if now - last_scan > 0.2:
            last_scan = now
            for c in [c for c in live.values() if now - c["t"] > conn_timeout]:
                finish(c, "timeout")
    for c in list(live.values()):
        finish(c, "unfinished")
    sel.close()
    return finished, dict(st)


def status_of(head):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return m.group(1).decode() if m else "garbage"


WS_REQUEST = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
              % WS_KEY).encode()


# ---- one measurement ---------------------------------------------------------

def quiet_sample(pid, limit=2.0):
    """cpu_sample once the proxy has stopped using CPU (two samples 50 ms
    apart agree; at most |limit| s): the closes of the last connections of a
    load are counted with it."""
    prev = pb.cpu_sample(pid)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        time.sleep(0.05)
        cur = pb.cpu_sample(pid)
        if cur[0] == prev[0]:
            return cur
        prev = cur
    return prev


def load(case, proxy, args, size):
    """Runs |case|'s client against |proxy| once; (connections, status)."""
    client, listener, path, _ = CASES[case]
    port = proxy["ports"][listener]
    if client == "wrk":
        scheme = "https" if listener == "tls" else "http"
        return wrk_client("%s://127.0.0.1:%d%s" % (scheme, port, path), size["seconds"],
                          args.connections, args.timeout)
    if client.startswith("h2load"):
        scheme = "https" if listener == "tls" else "http"
        return h2load_client("%s://127.0.0.1:%d%s" % (scheme, port, path), size["count"],
                             args.batch, args.timeout, h1=client == "h2load-h1")
    request = WS_REQUEST if client == "ws" else b""
    n = size["count"] if client == "refuse" else size["ws_count"]
    return socket_client(port, n, args.connections, request, args.timeout)


def measure(case, proxy, args, size):
    pid = proxy["proc"].pid
    t0, ns0 = quiet_sample(pid)
    w0 = time.monotonic()
    n, status = load(case, proxy, args, size)
    wall = time.monotonic() - w0
    t1, ns1 = quiet_sample(pid)
    if n == 0:
        raise BenchError("%s against %s completed no connection" % (case, proxy["name"]))
    # schedstat run time (ns) is the figure: utime+stime counts in ticks
    # (10 ms), too coarse for a run of a few thousand connections.
    return {"connections": n, "cpu_us_per_conn": (ns1 - ns0) / 1e3 / n,
            "cpu_us_per_conn_ticks": (t1 - t0) * 1e6 / pb.CLK_TCK / n, "conn_per_s": n / wall,
            "status": status}


def expected_ok(case, status, n):
    """Did the run do what the case says (else a note beside the figure)?"""
    want = {"h1-new": "2xx", "tls-ecdsa": "2xx", "tls-rsa": "2xx", "tls-resume": "2xx",
            "conn-refuse": "closed", "h1-429": "other", "h2-429": "4xx", "ws-upgrade": "101"}
    got = status.get(want[case], 0)
    return got >= 0.99 * n


def strace_cell(case, proxy, args, size, out_dir):
    summary = os.path.join(out_dir, "strace-%s-%s.txt" % (case, proxy["name"]))
    st = pb.strace_attach(proxy["proc"].pid, summary)
    n, _ = load(case, proxy, args, size)
    quiet_sample(proxy["proc"].pid)  # the last closes
    text, calls, per = pb.strace_detach(st, summary)
    n = max(1, n)
    top = sorted(per.items(), key=lambda kv: -kv[1])[:8]
    write(summary, text + "\nconnections: %d  syscalls/connection: %.2f\n" % (n, calls / n))
    return calls / n, {k: round(v / n, 2) for k, v in top}


def split_cell(case, proxy, args, size, out_dir):
    """Where the proxy's CPU goes in |case|: an untimed run under perf
    record (cpu-clock samples of every thread of its process tree, no call
    graphs), reported by DSO (and by symbol beside it, for reading). Returns {dso: share}, the kernel as
    "kernel". The samples count what schedstat counts (the softirq work the
    proxy's own sends and closes run in its context included), so
    share x us/conn is that DSO's us per connection."""
    data = os.path.join(out_dir, "split-%s-%s.data" % (case, proxy["name"]))
    pids = ",".join(str(p) for p in pb.tree_pids(proxy["proc"].pid))
    perf = pb.perf_attach(pids, data, args.split_freq, None)
    load(case, proxy, args, size)
    quiet_sample(proxy["proc"].pid)  # the last closes
    pb.interrupt(perf, 120)
    if not os.path.exists(data):
        log("perf record wrote nothing for %s/%s (%s): no split" % (
            case, proxy["name"], perf.stderr.read().decode(errors="replace").strip()[-300:]))
        return {}
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "-q", "--sort", "dso"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         timeout=600).stdout
    write(data[:-len(".data")] + ".txt", rep)
    write(data[:-len(".data")] + ".sym.txt", subprocess.run(
        ["perf", "report", "-i", data, "--stdio", "-q", "--sort", "dso,sym", "--percent-limit",
         "0.5"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        timeout=600).stdout)
    os.unlink(data)
    shares = collections.Counter()
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
        if not m:
            continue
        dso = m.group(2)
        dso = "kernel" if dso.startswith("[kernel") else re.sub(r"\.so[.\d]*$", "", dso)
        shares[dso] += float(m.group(1)) / 100
    return dict(shares)


def split_text(s):
    """The kernel's share of a cell and its us per connection ("71%/17.1"),
    or "-"."""
    k = s.get("split", {}).get("kernel")
    return "-" if k is None else "%.0f%%/%.1f" % (100 * k, s["kernel_us_per_conn"])


# ---- main --------------------------------------------------------------------

def spread(xs):
    return (min(xs), max(xs)) if xs else (None, None)


def anchor_of(case, name):
    a = ANCHORS.get(case, {}).get(name)
    if isinstance(a, tuple):
        return "%g-%g" % a
    return "%g" % a if a else "-"


def run_set(variant, cases, workers, args, size, workdir, ws_port, origin_port, certs):
    """Starts every proxy for |variant| (its certificate), runs |cases|
    interleaved, stops them. Returns {case: {proxy: summary}}."""
    wanted = [p for p in args.only.split(",") if p]
    if workers > 1:
        wanted = [p for p in wanted if p != "nghttpx"]  # the issue: against nginx, HAProxy
    cert = certs[variant]
    started, proxies = [], {}
    starters = {
        "sluice": lambda d: start_sluice(d, args.sluice, origin_port, ws_port, cert, workers,
                                         args.ticket_keys),
        "nginx": lambda d: start_nginx(d, origin_port, ws_port, cert, workers),
        "haproxy": lambda d: start_haproxy(d, origin_port, ws_port, cert, workers),
        "nghttpx": lambda d: start_nghttpx(d, origin_port, ws_port, cert, workers),
    }
    try:
        for name in wanted:
            d = os.path.join(workdir, "%s-%s-w%d" % (name, variant, workers))
            os.makedirs(d)
            proc, ports = starters[name](d)
            started.append(proc)
            proxies[name] = {"name": name, "proc": proc, "ports": ports}
        warm = {"seconds": 1, "count": 200, "ws_count": 100}
        for case in cases:  # pools filled, the limiters' one token spent
            for name in CASES[case][3]:
                if name in proxies:
                    load(case, proxies[name], args, warm)
        resumes = {}
        if "tls-resume" in cases:
            for name, px in proxies.items():
                resumes[name] = s_time_resumes(px["ports"]["tls"], args.timeout)
                log("w%d %s resumes %d of %d s_time -reuse connections" % (
                    workers, name, resumes[name][1], resumes[name][0]))
        results = {c: {p: [] for p in CASES[c][3] if p in proxies} for c in cases}
        for rnd in range(args.runs):
            for case in cases:
                order = list(results[case])
                k = rnd % max(1, len(order))
                for name in order[k:] + order[:k]:
                    m = measure(case, proxies[name], args, size)
                    results[case][name].append(m)
                    log("w%d run %d %-11s %-8s %8.1f us/conn %8.0f conn/s  %s" % (
                        workers, rnd + 1, case, name, m["cpu_us_per_conn"], m["conn_per_s"],
                        m["status"]))
        summary = {}
        for case, per in results.items():
            summary[case] = {}
            for name, runs in per.items():
                us = [r["cpu_us_per_conn"] for r in runs]
                s = {"cpu_us_per_conn": pb.median(us), "spread": spread(us),
                     "cpu_us_per_conn_ticks": pb.median(
                         r["cpu_us_per_conn_ticks"] for r in runs),
                     "conn_per_s": pb.median(r["conn_per_s"] for r in runs),
                     "ok": all(expected_ok(case, r["status"], r["connections"]) for r in runs),
                     "runs": runs}
                if case == "tls-resume":
                    s["s_time_reuse"] = {"connections": resumes[name][0],
                                         "resumed": resumes[name][1]}
                    s["ok"] = s["ok"] and resumes[name][1] >= 0.99 * resumes[name][0] > 0
                if args.strace:
                    s["syscalls_per_conn"], s["syscalls_top"] = strace_cell(
                        case, proxies[name], args, args.strace_size, args.strace)
                if args.split:
                    split = split_cell(case, proxies[name], args, size, args.split_dir)
                    if split:
                        s["split"] = split
                        s["kernel_us_per_conn"] = split.get("kernel", 0) * s["cpu_us_per_conn"]
                summary[case][name] = s
        if args.perf and "sluice" in proxies and variant == "ecdsa":
            os.makedirs(args.perf, exist_ok=True)
            data = os.path.join(args.perf, "perf-tls-ecdsa-w%d.data" % workers)
            perf = pb.perf_attach(proxies["sluice"]["proc"].pid, data, args.perf_freq,
                                  args.call_graph)
            load("tls-ecdsa", proxies["sluice"], args, size)
            pb.perf_detach(perf, data, os.path.join(args.perf, "perf-tls-ecdsa-w%d" % workers))
            log("perf: reports in %s" % args.perf)
        return summary
    finally:
        for p in reversed(started):
            if p.proc.poll() is not None:
                log("%s exited early (status %s):\n%s" % (p.name, p.proc.returncode, p.output()))
            p.stop()


def print_table(workers, summary, cases):
    print()
    print("--workers %d: CPU of the proxy per new connection, us (median of the runs, "
          "spread min-max)" % workers)
    print("%-11s %-8s %9s %17s %11s %9s %7s %9s %11s  %s" % (
        "case", "proxy", "us/conn", "spread", "(ticks)", "conn/s", "/best", "syscalls",
        "kernel/us", "anchor us"))
    for case in cases:
        per = summary.get(case, {})
        best = min((s["cpu_us_per_conn"] for s in per.values() if s["cpu_us_per_conn"]),
                   default=None)
        for name, s in per.items():
            lo, hi = s["spread"]
            note = "" if s["ok"] else "  (NOT what the case says: see the runs' status)"
            print("%-11s %-8s %9.1f %17s %11.1f %9.0f %7s %9s %11s  %s%s" % (
                case, name, s["cpu_us_per_conn"], "%.1f-%.1f" % (lo, hi),
                s["cpu_us_per_conn_ticks"], s["conn_per_s"],
                "%.2f" % (s["cpu_us_per_conn"] / best) if best else "-",
                "%.1f" % s["syscalls_per_conn"] if "syscalls_per_conn" in s else "-",
                split_text(s), anchor_of(case, name) if workers == 1 else "-", note))


def openssl_us(s):
    """A cell's us per connection in libcrypto and libssl (its split)."""
    return (s["split"].get("libcrypto", 0) + s["split"].get("libssl", 0)) * s["cpu_us_per_conn"]


def print_split(workers, summary, cases):
    """Where each cell's CPU goes (the --split runs), in us per connection:
    the kernel (the TCP handshake and teardown, the system calls and the
    softirq work they run in the proxy's context), OpenSSL's libraries,
    libc (mostly OpenSSL's and nghttp2's allocations) and the rest (the
    proxy's own code, nghttp2, libev). The floor: the least any proxy spent
    in the kernel and OpenSSL together (the same kernel and the same
    library doing the same handshakes for all of them), against 0.8 x the
    best other proxy's total: a floor above it means sluice could not meet
    0.8 x the best here even if the rest of its work cost nothing."""
    print()
    print("--workers %d: where the CPU goes, us per connection (perf record by DSO)" % workers)
    print("%-11s %-8s %8s %8s %8s %8s %8s   %s" % (
        "case", "proxy", "total", "kernel", "openssl", "libc", "rest", "floor / 0.8 x best"))
    for case in cases:
        per = {n: s for n, s in summary.get(case, {}).items() if "split" in s}
        if not per:
            continue
        others = [s["cpu_us_per_conn"] for n, s in per.items() if n != "sluice"]
        best = min(others) if others else None
        floor = min(s["kernel_us_per_conn"] + openssl_us(s) for s in per.values())
        for i, (name, s) in enumerate(per.items()):
            us, sp = s["cpu_us_per_conn"], s["split"]
            k = s["kernel_us_per_conn"]
            ossl = openssl_us(s)
            libc = sp.get("libc", 0) * us
            print("%-11s %-8s %8.1f %8.1f %8.1f %8.1f %8.1f   %s" % (
                case, name, us, k, ossl, libc, us - k - ossl - libc,
                "%.1f / %.1f" % (floor, 0.8 * best) if i == 0 and best else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sluice", default="./build/sluice")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--only", default=",".join(ALL), help="proxies to run")
    ap.add_argument("--workers", default="1,2", help="worker counts, each a full set of runs")
    ap.add_argument("--runs", type=int, default=5, help="runs per cell (median reported)")
    ap.add_argument("--seconds", type=int, default=4, help="seconds per wrk run")
    ap.add_argument("--count", type=int, default=8000,
                    help="connections per h2load / refusal run")
    ap.add_argument("--ws-count", type=int, default=3000, help="upgrades per WebSocket run")
    ap.add_argument("--connections", type=int, default=32, help="connections in flight")
    ap.add_argument("--batch", type=int, default=200,
                    help="connections per h2load batch (tls-ecdsa, tls-rsa, h2-429)")
    ap.add_argument("--quick", action="store_true", help="1 run per cell, few connections")
    ap.add_argument("--no-strace", dest="strace", action="store_false",
                    help="skip the strace -c -f runs (syscalls per connection)")
    ap.add_argument("--ticket-keys", metavar="FILE",
                    help="sluice's TLS listener gets tls.ticket_keys_file: FILE (once it exists)")
    ap.add_argument("--no-split", dest="split", action="store_false",
                    help="skip the perf record runs that split each cell's CPU by DSO "
                         "(the kernel column)")
    ap.add_argument("--split-freq", type=int, default=4999)
    ap.add_argument("--perf", metavar="DIR", help="also perf record -g sluice under tls-ecdsa")
    ap.add_argument("--perf-freq", type=int, default=2999)
    ap.add_argument("--call-graph", default="dwarf,16384")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per client run")
    ap.add_argument("--out", default="build/bench/storm.json")
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    for c in cases:
        if c not in CASES:
            ap.error("unknown case %r" % c)
    for p in args.only.split(","):
        if p and p not in ALL:
            ap.error("unknown proxy %r" % p)
    workers = [int(w) for w in args.workers.split(",") if w]
    if args.quick:
        args.runs, args.seconds, args.count, args.ws_count = 1, 1, 1000, 1000
    size = {"seconds": args.seconds, "count": args.count, "ws_count": args.ws_count}
    args.strace_size = {"seconds": 1, "count": min(args.count, 1000),
                        "ws_count": min(args.ws_count, 300)}
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    need = ["wrk", "h2load", "openssl", "nginx"] + [p for p in args.only.split(",")
                                                     if p in ("haproxy", "nghttpx")]
    need += ["strace"] if args.strace else []
    need += ["perf"] if args.perf or args.split else []
    missing = [t for t in need if not shutil.which(t)]
    if missing:
        print("storm_bench: missing %s; run scripts/deps.sh --bench (skipped)" % ", ".join(missing))
        return 0
    if not os.access(args.sluice, os.X_OK):
        raise BenchError("no sluice binary at %s (make build/sluice)" % args.sluice)
    if args.strace:
        args.strace = tempfile.mkdtemp(prefix="sluice-storm-strace-")
    if args.perf:
        args.perf = os.path.abspath(args.perf)
    if args.split:
        args.split_dir = tempfile.mkdtemp(prefix="sluice-storm-split-")
    import helpers
    workdir = tempfile.mkdtemp(prefix="sluice-storm-")
    origin = ws = None
    ok = False
    try:
        certs = {k: (c.cert, c.key) for k, c in
                 ((k, helpers.make_cert(os.path.join(workdir, "certs"), k))
                  for k in ("ecdsa", "rsa"))}
        origin = pb.start_origin(workdir)
        ws = start_ws_origin(workdir)
        results = {}
        for w in workers:
            res = {}
            for variant in ("ecdsa", "rsa"):
                vc = [c for c in cases if (c == "tls-rsa") == (variant == "rsa")]
                if vc:
                    res.update(run_set(variant, vc, w, args, size, workdir, ws.port,
                                       origin.ports["http"], certs))
            results["workers-%d" % w] = {c: res[c] for c in cases if c in res}
            print_table(w, res, cases)
            if args.split:
                print_split(w, res, cases)
        out = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "host": {"nproc": os.cpu_count(), "loadavg": os.getloadavg(),
                        "clk_tck": pb.CLK_TCK},
               "params": {"runs": args.runs, "seconds": args.seconds, "count": args.count,
                          "ws_count": args.ws_count, "connections": args.connections,
                          "ticket_keys": args.ticket_keys},
               "versions": dict(pb.versions(args.sluice),
                                wrk=pb.first_line(["wrk", "-v"]),
                                openssl=pb.first_line(["openssl", "version"])),
               "anchors_us_per_conn": ANCHORS, "results": results}
        print("\nversions: " + "; ".join("%s %s" % kv for kv in out["versions"].items()))
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        write(args.out, json.dumps(out, indent=2) + "\n")
        print("written %s%s%s" % (args.out, "; strace summaries in " + args.strace
                                  if args.strace else "",
                                  "; perf reports by DSO in " + args.split_dir
                                  if args.split else ""))
        ok = True
        return 0
    finally:
        if ws:
            ws.stop()
        if origin:
            origin.stop()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log("storm_bench: logs kept in %s" % workdir)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print("storm_bench: %s" % e, file=sys.stderr)
        sys.exit(2)
