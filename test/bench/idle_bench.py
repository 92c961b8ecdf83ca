#!/usr/bin/python3
"""Memory of idle connections: resident set per held connection, sluice
beside HAProxy, nghttpx and nginx configured alike (a measurement, not a
test; nothing here asserts).

  make bench                                   (part of it, IDLE_ARGS passed on)
  python3 test/bench/idle_bench.py --sluice ./build/sluice --n 10000
  python3 test/bench/idle_bench.py --n 10000,100000 --kinds h2c,h1ka --only sluice,haproxy

For each N, each kind and each proxy, a fresh proxy process (one worker:
sluice --workers 1, haproxy nbthread 1, nghttpx --workers=1, nginx
worker_processes 1) is started in front of one upstream
(test/integration/upstream.py: answers any GET, /ws is a WebSocket echo).
Its resident set is read once it has settled, then build/bench/idle_client
opens N connections of the kind from --sources loopback addresses
(127.1.X.Y) and holds them (see idle_client.c for what each kind sends);
once every connection is held and the proxy's resident set has settled
again, the growth divided by N is the cost of one idle connection.

Kinds: h1 (before its first request), h1ka (keep-alive after one request),
h2c (preface and SETTINGS exchanged), h2ka (h2c, then one GET answered:
an h2 device that polled once), tls-h1 (handshake + one request),
tls-h2 (handshake + SETTINGS), ws-h1 and ws-h2 (a WebSocket tunnel over an
HTTP/1.1 upgrade or an RFC 8441 extended CONNECT: client side idle,
upstream side held open). nginx 1.22 has no RFC 8441: ws-h2 is n/a there.

Settle: VmRSS of the process tree sampled every 250 ms; settled when the
last 16 samples (4 s) differ by less than N * 8 bytes (so the figure per
connection moves by less than 8 bytes), bounded by --timeout. 4 s covers
sluice's 2 s before an idle h2 session sleeps plus its 1 s heap trim, so
a plateau before them is not taken for the end.

RLIMIT_NOFILE: this script raises its own soft and hard limits to
--nofile (default 1048576, the kernel's fs.nr_open; raising the hard limit
needs root or CAP_SYS_RESOURCE), which every process it starts inherits:
a proxy holds two sockets per tunnel. The kernel must also accept N
connections: net.core.somaxconn matters only for the burst (the client
keeps --inflight setups at once).

Every process is started here and stopped by its PID; every phase is
bounded by --timeout.
"""

import argparse
import json
import os
import resource
import select
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "test", "integration"))

import helpers  # noqa: E402
from proxy_bench import BenchError, Proc, free_port, log, tree_pids, write  # noqa: E402

KINDS = ("h1", "h1ka", "h2c", "h2ka", "tls-h1", "tls-h2", "ws-h1", "ws-h2")
PROXIES = ("sluice", "haproxy", "nghttpx", "nginx")
UNSUPPORTED = {("nginx", "ws-h2")}  # nginx 1.22: no RFC 8441
IDLE = "600s"


def kind_port(ports, kind):
    if kind.startswith("tls-"):
        return ports["tls"]
    if kind in ("h2c", "h2ka", "ws-h2"):
        return ports["h2"]
    return ports["h1"]


def kind_path(kind):
    if kind == "h2ka":
        return "/204"  # a body-less answer: the whole exchange fits the client's buffer
    return "/ws" if kind.startswith("ws-") else "/"


# ---- proxies, configured alike: one worker, long idle timeouts, limits
# above N, TLS with ALPN h2 and http/1.1 on a second port ------------------

def start_sluice(d, binary, up, cert, n):
    ports = {"h1": free_port(), "tls": free_port(), "admin": free_port()}
    ports["h2"] = ports["h1"]
    limit = 2 * n + 1000
    conf = write(os.path.join(d, "sluice.yaml"), """
listeners:
  - name: plain
    address: "127.0.0.1:%(h1)d"
    max_connections: %(limit)d
    timeouts: { request_header: %(idle)s, idle: %(idle)s }
  - name: tls
    address: "127.0.0.1:%(tls)d"
    tls: { certificate: "%(cert)s", private_key: "%(key)s" }
    max_connections: %(limit)d
    timeouts: { request_header: %(idle)s, idle: %(idle)s }
admin:
  address: "127.0.0.1:%(admin)d"
upstreams:
  origin:
    address: "127.0.0.1:%(up)d"
    max_connections: %(limit)d
    max_pending: %(limit)d
    timeouts: { connect: 5s, response: 30s, idle: %(idle)s }
routes:
  - name: ws
    match: { path_prefix: "/ws", websocket: true }
    upstream: origin
    idle_timeout: %(idle)s
  - name: default
    match: { path_prefix: "/" }
    upstream: origin
access_log: off
drain_timeout: 2s
""" % dict(ports, up=up, limit=limit, idle=IDLE, cert=cert.cert, key=cert.key))
    return Proc("sluice", [os.path.abspath(binary), "run", "-c", conf, "--workers", "1",
                           "--log-level", "warn"], d, {"h1": ports["h1"]}), ports


def start_haproxy(d, up, cert, n):
    # maxconn counts client connections; HAProxy sizes its descriptor limit
    # to about twice it (a server side each) and refuses to start above the
    # hard RLIMIT_NOFILE, so N plus a margin, not more.
    ports = {"h1": free_port(), "h2": free_port(), "tls": free_port()}
    pem = write(os.path.join(d, "haproxy.pem"), open(cert.cert).read() + open(cert.key).read())
    conf = write(os.path.join(d, "haproxy.cfg"), """
global
  nbthread 1
  maxconn %(limit)d

defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client %(idle)s
  timeout server 30s
  timeout http-request %(idle)s
  timeout http-keep-alive %(idle)s
  timeout tunnel %(idle)s

frontend fe
  maxconn %(limit)d
  bind 127.0.0.1:%(h1)d
  bind 127.0.0.1:%(h2)d proto h2
  bind 127.0.0.1:%(tls)d ssl crt %(pem)s alpn h2,http/1.1
  default_backend be

backend be
  server up 127.0.0.1:%(up)d maxconn %(limit)d
""" % dict(ports, up=up, limit=n + 400, idle=IDLE, pem=pem))
    return Proc("haproxy", ["haproxy", "-db", "-f", conf], d, dict(ports)), ports


def start_nghttpx(d, up, cert, n):
    ports = {"h1": free_port(), "tls": free_port()}
    ports["h2"] = ports["h1"]
    cmd = ["nghttpx", "--conf=" + write(os.path.join(d, "nghttpx.conf"), ""), "--workers=1",
           "--frontend=127.0.0.1,%d;no-tls" % ports["h1"],
           "--frontend=127.0.0.1,%d" % ports["tls"],
           "--backend=127.0.0.1,%d;;proto=http/1.1" % up,
           "--worker-frontend-connections=%d" % (2 * n + 1000),
           "--backend-connections-per-host=%d" % (2 * n + 1000),
           "--frontend-read-timeout=" + IDLE, "--frontend-keep-alive-timeout=" + IDLE,
           "--frontend-http2-read-timeout=" + IDLE, "--backend-read-timeout=" + IDLE,
           "--backend-keep-alive-timeout=" + IDLE,
           "--no-via", "--no-ocsp",
           "--errorlog-file=" + os.path.join(d, "nghttpx.err"),
           "--pid-file=" + os.path.join(d, "nghttpx.pid"), cert.key, cert.cert]
    return Proc("nghttpx", cmd, d, {"h1": ports["h1"]}), ports


def start_nginx(d, up, cert, n):
    ports = {"h1": free_port(), "h2": free_port(), "tls": free_port()}
    conf = write(os.path.join(d, "nginx.conf"), """
worker_processes 1;
worker_rlimit_nofile %(nofile)d;
daemon off;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx.err error;
events { worker_connections %(limit)d; }
http {
  access_log off;
  client_body_temp_path %(d)s/n_body;
  proxy_temp_path %(d)s/n_proxy;
  keepalive_timeout %(idle)s;
  client_header_timeout %(idle)s;
  http2_idle_timeout %(idle)s;
  upstream origin { server 127.0.0.1:%(up)d; keepalive 64; }
  server {
    listen 127.0.0.1:%(h1)d;
    listen 127.0.0.1:%(h2)d http2;
    listen 127.0.0.1:%(tls)d ssl http2;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    proxy_http_version 1.1;
    location / { proxy_set_header Connection ""; proxy_pass http://origin; }
    location /ws {
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout %(idle)s;
      proxy_pass http://origin;
    }
  }
}
""" % dict(ports, d=d, up=up, limit=2 * n + 1000,
           nofile=min(4 * n + 1000, resource.getrlimit(resource.RLIMIT_NOFILE)[1]), idle=IDLE,
           cert=cert.cert, key=cert.key))
    return Proc("nginx", ["nginx", "-p", d, "-e", d + "/nginx.err", "-c", conf], d,
                {"h1": ports["h1"]}), ports


# ---- measurement -----------------------------------------------------------

def rss_kib(pid):
    """(VmRSS, RssAnon) in KiB, summed over |pid|'s process tree."""
    vm = anon = 0
    for p in tree_pids(pid):
        st = helpers.proc_status(p)
        vm += st.get("VmRSS", 0)
        anon += st.get("RssAnon", 0)
    return vm, anon


def settle(pid, n, timeout):
    """Samples until the tree's VmRSS stops moving (see the module's
    docstring); returns (VmRSS, RssAnon) in KiB."""
    window, tol_kib = 16, max(64, n * 8 // 1024)
    samples, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        samples.append(rss_kib(pid))
        last = [s[0] for s in samples[-window:]]
        if len(last) == window and max(last) - min(last) < tol_kib:
            return samples[-1]
        time.sleep(0.25)
    raise BenchError("resident set of %d did not settle within %.0f s: %s"
                     % (pid, timeout, [s[0] for s in samples[-window:]]))


class IdleClient:
    """build/bench/idle_client holding |n| connections of |kind|; stopped
    by closing its stdin (then by its PID)."""

    def __init__(self, binary, kind, port, n, sources, timeout):
        self.proc = subprocess.Popen(
            [binary, "--kind", kind, "--port", str(port), "-n", str(n), "--sources",
             str(sources), "--path", kind_path(kind), "--timeout", str(timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = b""

    def line(self, timeout):
        """The client's next line of output, or None after |timeout|."""
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                return None
            data = os.read(self.proc.stdout.fileno(), 4096)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def wait_held(self, timeout):
        line = self.line(timeout)
        if not line or not line.startswith("HELD "):
            err = self.proc.stderr.read1(2000) if self.proc.poll() is not None else b""
            raise BenchError("idle_client: %r %s" % (line, err.decode(errors="replace")))
        return int(line.split()[1])

    def stop(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def measure(proxy, kind, n, args, workdir, up_port, cert):
    d = tempfile.mkdtemp(prefix="%s-%s-%d-" % (proxy, kind, n), dir=workdir)
    starters = {
        "sluice": lambda: start_sluice(d, args.sluice, up_port, cert, n),
        "haproxy": lambda: start_haproxy(d, up_port, cert, n),
        "nghttpx": lambda: start_nghttpx(d, up_port, cert, n),
        "nginx": lambda: start_nginx(d, up_port, cert, n),
    }
    proc, ports = starters[proxy]()
    client = None
    try:
        before = settle(proc.pid, n, args.timeout)
        t0 = time.monotonic()
        client = IdleClient(args.client, kind, kind_port(ports, kind), n, args.sources,
                            args.timeout)
        held = client.wait_held(args.timeout)
        setup_s = time.monotonic() - t0
        after = settle(proc.pid, n, args.timeout)
        return {"proxy": proxy, "kind": kind, "n": n, "held": held,
                "setup_s": round(setup_s, 2),
                "rss_before_kib": before[0], "rss_after_kib": after[0],
                "anon_before_kib": before[1], "anon_after_kib": after[1],
                "kib_per_conn": round((after[0] - before[0]) / n, 2),
                "anon_kib_per_conn": round((after[1] - before[1]) / n, 2)}
    finally:
        if client:
            client.stop()
        proc.stop()


def raise_nofile(want):
    """Soft and hard RLIMIT_NOFILE to |want| if allowed, else the soft
    limit to the hard one; returns the soft limit now in force."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fds_needed(kind, n):
    """Descriptors the proxy process needs: one per connection, two per
    tunnel (its upstream side), and a margin for listeners, the upstream
    pool and the process's own files."""
    return (2 * n if kind.startswith("ws-") else n) + 200


def target(row_kib, anchors):
    """The issue's target: 0.8x the best anchor, or 2 KiB, the larger."""
    best = min(anchors) if anchors else None
    return None if best is None else max(0.8 * best, 2.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", default=os.path.join(REPO, "build", "sluice"))
    ap.add_argument("--client", default=os.path.join(REPO, "build", "bench", "idle_client"))
    ap.add_argument("--n", default="9000", help="comma-separated connection counts")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--only", default=",".join(PROXIES))
    ap.add_argument("--sources", type=int, default=64)
    ap.add_argument("--nofile", type=int, default=1048576)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench", "idle.json"))
    args = ap.parse_args()
    nofile = raise_nofile(args.nofile)
    kinds = [k for k in args.kinds.split(",") if k]
    proxies = [p for p in args.only.split(",") if p]
    for k in kinds:
        if k not in KINDS:
            raise SystemExit("unknown kind %r" % k)
    ns = [int(x) for x in args.n.split(",")]
    rows = []
    for n in ns:
        for k in kinds:
            if fds_needed(k, n) > nofile:
                raise SystemExit("N=%d of %s needs %d descriptors in one process, and "
                                 "RLIMIT_NOFILE is %d: raise the hard limit (ulimit -Hn, "
                                 "as root with CAP_SYS_RESOURCE) or lower --n"
                                 % (n, k, fds_needed(k, n), nofile))
    with tempfile.TemporaryDirectory(prefix="idle-bench-") as workdir:
        cert = helpers.make_cert(workdir, "ecdsa")
        up = free_port()
        upstream = Proc("upstream", [helpers.PYTHON, helpers.UPSTREAM_PY, "--host", "127.0.0.1",
                                     "--port", str(up)], workdir, {"http": up})
        try:
            for n in ns:
                for kind in kinds:
                    for proxy in proxies:
                        if (proxy, kind) in UNSUPPORTED:
                            continue
                        try:
                            row = measure(proxy, kind, n, args, workdir, up, cert)
                        except BenchError as e:
                            log("%s %s N=%d: %s" % (proxy, kind, n, e))
                            row = {"proxy": proxy, "kind": kind, "n": n, "error": str(e)[:300]}
                        rows.append(row)
                        log("%-8s %-7s N=%-6d %s" % (proxy, kind, n, row.get(
                            "kib_per_conn", row.get("error"))))
        finally:
            upstream.stop()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print_table(rows, ns, kinds, proxies)


def print_table(rows, ns, kinds, proxies):
    cell = {(r["proxy"], r["kind"], r["n"]): r.get("kib_per_conn") for r in rows}
    print("KiB of resident memory per idle connection (VmRSS growth / N)")
    print("| kind | N | " + " | ".join(proxies) + " | target |")
    print("|---|---|" + "---|" * (len(proxies) + 1))
    for n in ns:
        for k in kinds:
            vals = [cell.get((p, k, n)) for p in proxies]
            anchors = [v for p, v in zip(proxies, vals) if p != "sluice" and v is not None]
            t = target(None, anchors)
            print("| %s | %d | %s | %s |" % (
                k, n, " | ".join("n/a" if v is None else "%.1f" % v for v in vals),
                "n/a" if t is None else "%.1f" % t))


if __name__ == "__main__":
    main()
