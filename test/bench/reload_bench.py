#!/usr/bin/python3
"""What a hot reload costs: reload wall time on a large configuration, and
request latency with and without a reload every 100 ms.

The configuration: 200 routes (each with a client_ip rate limit, so every
reload matches 200 limiter states), a catch-all route, and 2,000 firmware
blocklist entries. The origin is nginx returning a small JSON body (the
test harness's upstream.py when nginx is missing, which makes the latency
figures mostly Python's). sluice is the release binary, one worker.

--rounds pairs of h2load runs of --duration seconds each (h2c, -c 10
-m 10, URIs spread over the routes, first and last ones included), the
order alternating from round to round:

  quiet     no reloads
  reloading a thread alternates two configurations (they differ in one
            blocklist entry, the emergency-block case) and POSTs /reload
            every 100 ms

Figures: requests/s, latency p50/p99/p99.9/max from h2load's per-request
log, failed requests; reload wall time as the POST /reload round trip
seen by the client and as sluice's own "duration_ms" in its log line (load,
validate, prepare listeners, publish; the round trip adds the admin
exchange and any reload queued ahead, e.g. the watcher's own for the same
write).

A measurement, not a test: nothing is asserted, figures are printed.

  make build/sluice && python3 test/bench/reload_bench.py [--sluice build/sluice]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
UPSTREAM_PY = os.path.join(REPO, "test", "integration", "upstream.py")
N_ROUTES = 200
N_BLOCKS = 2000
BODY = '{"device":"hub-0042","status":"connected","expires_in":3600}'


class BenchError(Exception):
    pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Proc:
    """A server we started; stopped by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self, name, cmd, workdir, port, stdout=None):
        self.name = name
        self.log_path = os.path.join(workdir, name + ".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=stdout or self._log, stderr=self._log,
                                     stdin=subprocess.DEVNULL, cwd=workdir)
        if port and not wait_port(port, self.proc):
            self.stop()
            raise BenchError("%s did not listen on %d:\n%s" % (name, port, self.output()))

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def start_origin(d):
    port = free_port()
    if shutil.which("nginx"):
        conf = os.path.join(d, "origin.conf")
        with open(conf, "w") as f:
            f.write("""
worker_processes 1;
daemon off;
pid %(d)s/origin.pid;
error_log %(d)s/origin.err error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %(d)s/o_body;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:%(port)d;
    location / { default_type application/json; return 200 '%(body)s'; }
  }
}
""" % {"d": d, "port": port, "body": BODY})
        return Proc("origin", ["nginx", "-p", d, "-e", d + "/origin.err", "-c", conf], d, port), \
            port, "nginx"
    p = Proc("origin", [sys.executable, UPSTREAM_PY, "--host", "127.0.0.1", "--port", str(port)],
             d, port, stdout=subprocess.DEVNULL)
    return p, port, "upstream.py"


def config_text(port, admin, origin, variant):
    """200 routes with a rate limit each, a catch-all, 2,000 blocklist
    entries; |variant| 0 or 1 changes one entry's version range."""
    out = ["listeners:",
           '  - name: public',
           '    address: "127.0.0.1:%d"' % port,
           "    timeouts: { request_header: 10s, idle: 300s }",
           "admin:",
           '  address: "127.0.0.1:%d"' % admin,
           "upstreams:",
           "  origin:",
           '    address: "127.0.0.1:%d"' % origin,
           "    max_connections: 64",
           "    max_pending: 100000",
           "    timeouts: { connect: 2s, response: 30s, idle: 300s }",
           "identify:",
           '  device_class: { header: "x-device-class" }',
           '  firmware: { header: "x-firmware-version" }',
           "routes:"]
    for i in range(N_ROUTES):
        out += ["  - name: r%03d" % i,
                '    match: { path_prefix: "/r%03d/" }' % i,
                "    upstream: origin",
                "    rate_limits:",
                '      - { key: client_ip, rate: "100000/s", burst: 100000 }']
    out += ["  - name: default", '    match: { path_prefix: "/" }', "    upstream: origin",
            "blocklist:", "  firmware:"]
    for i in range(N_BLOCKS):
        major, minor = i // 100, i % 100
        if i == 0 and variant:
            minor = 99
        out += ["    - name: b%04d" % i,
                "      class: class-%02d" % (i % 50),
                '      versions: ">=%d.%d.0 <%d.%d.1"' % (major, minor, major, minor),
                '      reason: "bench entry %d"' % i]
    out += ["access_log: off", "drain_timeout: 2s", ""]
    return "\n".join(out)


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def h2load(port, duration, log_path, clients, streams):
    uris = ["http://127.0.0.1:%d/r%03d/x" % (port, i) for i in (0, 50, 100, 150, 199)]
    uris.append("http://127.0.0.1:%d/other" % port)  # the catch-all, after 200 routes
    cmd = ["h2load", "-t", "1", "-c", str(clients), "-m", str(streams), "-D", str(duration),
           "--log-file", log_path] + uris
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, timeout=duration + 60)
    out = p.stdout.decode(errors="replace")
    res = {"output": out}
    import re
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if not m:
        raise BenchError("cannot parse h2load output:\n" + out)
    res["done"], res["succeeded"], res["failed"] = int(m.group(3)), int(m.group(4)), int(m.group(5))
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    res["rps"] = float(m.group(3)) if m else float("nan")
    lat = []
    with open(log_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000.0)  # microseconds -> ms
    lat.sort()
    res["lat"] = {k: percentile(lat, q) for k, q in (("p50", 50), ("p99", 99), ("p99.9", 99.9))}
    res["lat"]["max"] = lat[-1] if lat else float("nan")
    return res


def post_reload(admin):
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    try:
        t = time.monotonic()
        c.request("POST", "/reload")
        r = c.getresponse()
        body = r.read()
        return (time.monotonic() - t) * 1000.0, r.status, json.loads(body)
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", default=os.path.join(REPO, "build", "sluice"))
    ap.add_argument("--duration", type=int, default=10, help="seconds per h2load run")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between reloads")
    ap.add_argument("--rounds", type=int, default=3, help="quiet/reloading run pairs")
    args = ap.parse_args()
    if not shutil.which("h2load"):
        raise BenchError("h2load not found (apt-get install nghttp2-client)")
    d = tempfile.mkdtemp(prefix="sluice-reload-bench-")
    origin, sluice = None, None
    try:
        origin, oport, oname = start_origin(d)
        port, admin = free_port(), free_port()
        texts = [config_text(port, admin, oport, v) for v in (0, 1)]
        conf = os.path.join(d, "sluice.yaml")
        with open(conf, "w") as f:
            f.write(texts[0])
        sluice = Proc("sluice", [os.path.abspath(args.sluice), "run", "-c", conf, "--workers", "1"],
                      d, port)
        if not wait_port(admin, sluice.proc):
            raise BenchError("admin listener did not come up:\n" + sluice.output())

        # Reload time alone (no load): 20 reloads alternating the two files.
        idle_ms = []
        for i in range(20):
            with open(conf + ".tmp", "w") as f:
                f.write(texts[(i + 1) % 2])
            os.replace(conf + ".tmp", conf)
            ms, status, doc = post_reload(admin)
            if status != 200:
                raise BenchError("reload failed: %r" % doc)
            idle_ms.append(ms)

        stop = threading.Event()
        during_ms, failures = [], []

        def reloader():
            i = 0
            while not stop.is_set():
                i += 1
                with open(conf + ".tmp", "w") as f:
                    f.write(texts[i % 2])
                os.replace(conf + ".tmp", conf)
                ms, status, doc = post_reload(admin)
                (during_ms if status == 200 else failures).append(ms if status == 200 else doc)
                stop.wait(args.interval)

        # Rounds alternate which run goes first, to spread the noise of a
        # shared machine over both.
        runs = {"quiet": [], "reloading": []}
        for rnd in range(args.rounds):
            order = ("quiet", "reloading") if rnd % 2 == 0 else ("reloading", "quiet")
            for name in order:
                log = os.path.join(d, "%s-%d.log" % (name, rnd))
                if name == "quiet":
                    runs[name].append(h2load(port, args.duration, log, args.clients, args.streams))
                    continue
                stop.clear()
                th = threading.Thread(target=reloader)
                th.start()
                try:
                    runs[name].append(h2load(port, args.duration, log, args.clients,
                                             args.streams))
                finally:
                    stop.set()
                    th.join(30)

        # sluice's own figure, from its log lines: the first 20 reloads
        # were the idle ones. Reloads the file watcher started on its own
        # (it sees every write; when the POST comes later than the 150 ms
        # debounce, both reload) are counted apart.
        server_ms, by_watcher = [], 0
        for line in sluice.output().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("msg") != "configuration reloaded":
                continue
            if obj.get("trigger") == "admin":
                server_ms.append(float(obj["duration_ms"]))
            else:
                by_watcher += 1
    finally:
        if sluice:
            sluice.stop()
        if origin:
            origin.stop()

    def stats(vals):
        v = sorted(vals)
        return "p50 %.2f  p99 %.2f  max %.2f  (n=%d)" % (percentile(v, 50), percentile(v, 99),
                                                          v[-1], len(v))

    print("configuration: %d routes (a rate limit each) + catch-all, %d blocklist entries; "
          "origin %s; sluice %s --workers 1" % (N_ROUTES, N_BLOCKS, oname, args.sluice))
    print("reload wall time, ms (POST /reload round trip, idle):     " + stats(idle_ms))
    print("reload wall time, ms (POST /reload round trip, under load): " + stats(during_ms))
    print("reload wall time, ms (sluice's duration_ms, idle):           " + stats(server_ms[:20]))
    print("reload wall time, ms (sluice's duration_ms, under load):     " + stats(server_ms[20:]))
    print("reloads started by the file watcher as well: %d" % by_watcher)
    print("reload failures during the run: %d" % len(failures))
    print("%-10s %5s %10s %9s %9s %9s %9s %8s %7s" % ("run", "round", "req/s", "p50 ms", "p99 ms",
                                                    "p99.9 ms", "max ms", "done", "failed"))
    for name in ("quiet", "reloading"):
        for rnd, r in enumerate(runs[name]):
            print("%-10s %5d %10.0f %9.3f %9.3f %9.3f %9.3f %8d %7d" % (
                name, rnd, r["rps"], r["lat"]["p50"], r["lat"]["p99"], r["lat"]["p99.9"],
                r["lat"]["max"], r["done"], r["failed"]))
    for name in ("quiet", "reloading"):
        rs = runs[name]
        print("%-10s median of rounds: req/s %.0f, p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms; "
              "failed %d" % (name, statistics.median(r["rps"] for r in rs),
                             statistics.median(r["lat"]["p50"] for r in rs),
                             statistics.median(r["lat"]["p99"] for r in rs),
                             statistics.median(r["lat"]["p99.9"] for r in rs),
                             sum(r["failed"] for r in rs)))
    print("reloads during the reloading runs: %d (one every %.0f ms asked)"
          % (len(during_ms), args.interval * 1000))
    shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print("reload_bench: %s" % e, file=sys.stderr)
        sys.exit(2)
