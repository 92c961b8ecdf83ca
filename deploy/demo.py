#!/usr/bin/env python3
"""sluice demo: the proxy in front of a stand-in identity API, on loopback.

    /usr/bin/python3 deploy/demo.py --sluice ./build/sluice [--forever]

Steps: validate deploy/examples/sluice.yaml with `sluice check`; start the
test upstream (test/integration/upstream.py) on a free port; write a demo
configuration with the example's routes and policies (ports rewritten, plus a
TLS listener with a fresh self-signed certificate) into a temporary
directory; start sluice; send requests over HTTP/1.1, h2c and TLS (h2 and
http/1.1) with curl, then a burst that meets the connect route's rate limit;
print one line per request and a few metrics; stop everything and exit 0.
Any failed step exits 1 with a message. --forever keeps everything running
until Ctrl-C and prints how to talk to it.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "test", "integration"))

import helpers  # noqa: E402  (the integration-test harness: processes, ports, clients)
from helpers import (MiB, Sluice, Upstream, curl, make_cert, metric_series,  # noqa: E402
                     random_bytes, run_cli, sha256_hex)

EXAMPLE = os.path.join(REPO, "deploy", "examples", "sluice.yaml")
CURL_TIMEOUT = 10


class DemoError(Exception):
    pass


def step(msg):
    print("\n== %s" % msg, flush=True)


def demo_config(cert):
    """deploy/examples/sluice.yaml's routes and policies; addresses are left
    out for Sluice to fill in with free ports and the demo upstream."""
    return {
        "listeners": [
            {"name": "public", "timeouts": {"request_header": "10s", "idle": "60s"}},
            {"name": "public-tls", "tls": {"certificate": cert.cert, "private_key": cert.key}},
        ],
        "admin": {},
        "upstreams": {"identity": {"max_connections": 256, "max_pending": 1024,
                                   "timeouts": {"connect": "1s", "response": "10s", "idle": "60s"}}},
        "routes": [
            {"name": "connect", "match": {"path_prefix": "/v1/connect"}, "upstream": "identity",
             "rate_limits": [{"key": "client_ip", "rate": "5/s", "burst": 10}],
             "concurrency": {"max": 512}, "priority": "high"},
            {"name": "default", "match": {"path_prefix": "/"}, "upstream": "identity"},
        ],
        "mode": "enforce",
        "drain_timeout": "5s",
    }


def show(proto, method, path, r, note=""):
    print("  %-10s %-4s %-28s %3d  %7.1f ms  %s" % (proto, method, path, r.status,
                                                   r.time_total * 1000, note), flush=True)


def expect(cond, msg):
    if not cond:
        raise DemoError(msg)


def run_requests(s, tmp):
    tls = "public-tls"
    step("requests (protocol, method, path, status, latency)")
    body = random_bytes(1 * MiB, seed=42)
    body_file = os.path.join(tmp, "body.bin")
    with open(body_file, "wb") as f:
        f.write(body)

    def go(proto, method, path, *args, listener=None, want=200, note=""):
        r = curl(s.url(path, listener=listener), *args, timeout=CURL_TIMEOUT, check=False)
        expect(r.rc == 0, "%s %s %s: curl failed: %s" % (proto, method, path, r.stderr.strip()))
        show(proto, method, path, r, note)
        expect(r.status == want, "%s %s %s: status %d, expected %d: %r"
               % (proto, method, path, r.status, want, r.body[:200]))
        return r

    r = go("HTTP/1.1", "GET", "/v1/devices/hello", "--http1.1")
    expect(r.json().get("ok") is True, "unexpected body from the upstream: %r" % r.body[:200])
    r = go("HTTP/1.1", "POST", "/sha256", "--http1.1", "--data-binary", "@" + body_file,
           note="1 MiB body, sha256 checked")
    expect(r.json().get("sha256") == sha256_hex(body), "upload corrupted: %r" % r.body[:200])
    r = go("h2c", "GET", "/v1/devices/hello", "--http2-prior-knowledge")
    expect(r.http_version == "2", "h2c answered over HTTP/%s" % r.http_version)
    r = go("h2c", "GET", "/bytes?n=1048576", "--http2-prior-knowledge", note="1 MiB download")
    expect(len(r.body) == MiB, "download truncated: %d bytes" % len(r.body))
    r = go("TLS h2", "GET", "/v1/devices/hello", "-k", "--http2", listener=tls)
    expect(r.http_version == "2", "ALPN did not select h2 (HTTP/%s)" % r.http_version)
    expect(r.json()["headers"].get("x-forwarded-proto") == "https", "x-forwarded-proto not https")
    r = go("TLS h1", "GET", "/v1/devices/hello", "-k", "--http1.1", listener=tls)
    expect(r.http_version == "1.1", "ALPN http/1.1 answered over HTTP/%s" % r.http_version)
    go("HTTP/1.1", "GET", "/status/503", "--http1.1", want=503, note="upstream error, relayed")

    step("a reconnect storm from one client: 20 requests to /v1/connect (5/s, burst 10)")
    statuses = []
    rejected = None
    for i in range(20):
        r = curl(s.url("/v1/connect"), "--http1.1", timeout=CURL_TIMEOUT, check=False)
        expect(r.rc == 0, "curl failed: %s" % r.stderr.strip())
        statuses.append(r.status)
        if r.status == 429 and rejected is None:
            rejected = r
    admitted = statuses.count(200)
    print("  %d admitted, %d rejected with 429" % (admitted, statuses.count(429)))
    expect(set(statuses) <= {200, 429}, "unexpected statuses %r" % statuses)
    expect(rejected is not None, "the rate limit never rejected (statuses %r)" % statuses)
    print("  first rejection: retry-after: %s, content-type: %s\n  body: %s"
          % (rejected.header("retry-after"), rejected.header("content-type"),
             rejected.body.decode(errors="replace").strip()))


def show_metrics(s):
    step("metrics (GET /metrics on the admin listener)")
    m = s.metrics()
    for name in ("sluice_requests_total", "sluice_rejections_total", "sluice_upstream_requests_total",
                 "sluice_connections_active"):
        series = metric_series(m, name)
        if not series:
            print("  %s: (none)" % name)
        for labels, v in sorted(series, key=lambda x: sorted(x[0].items())):
            print("  %s{%s} %g" % (name, ",".join("%s=%s" % kv for kv in sorted(labels.items())), v))


def wait_forever(s, up):
    print("\nsluice is running (Ctrl-C to stop):")
    print("  HTTP/1.1 + h2c  curl %s" % s.url("/v1/devices/hello", listener="public"))
    print("                  curl --http2-prior-knowledge %s" % s.url("/v1/devices/hello",
                                                                       listener="public"))
    print("  TLS (h2)        curl -k %s" % s.url("/v1/devices/hello", listener="public-tls"))
    print("  rate limited    for i in $(seq 20); do curl -s -o /dev/null -w '%%{http_code} ' %s; done"
          % s.url("/v1/connect"))
    print("  admin           curl %s   (/healthz /readyz /config)" % s.admin_url("/metrics"))
    print("  config          %s\n  logs            %s" % (s.config_path, s.stderr_path))
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(1))
    while not stop:
        if not s.running():
            time.sleep(0.5)  # Ctrl-C in a terminal signals sluice too: that is a stop
            if stop:
                break
            raise DemoError("sluice exited unexpectedly with %s; logs:\n%s"
                            % (s.proc.poll(), s.stderr_text()[-3000:]))
        time.sleep(0.2)
    print("\nstopping...")


def main():
    ap = argparse.ArgumentParser(description="sluice demo on loopback")
    ap.add_argument("--sluice", default=os.path.join(REPO, "build", "sluice"), help="binary to run")
    ap.add_argument("--forever", action="store_true", help="keep running until Ctrl-C")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    binary = os.path.abspath(args.sluice)
    for tool in ("curl", "openssl"):
        if not shutil.which(tool):
            print("demo: %s not found (make deps installs it)" % tool, file=sys.stderr)
            return 1
    if not os.access(binary, os.X_OK):
        print("demo: %s is not an executable (run make first)" % binary, file=sys.stderr)
        return 1

    tmp = tempfile.mkdtemp(prefix="sluice-demo-")
    up = s = None
    try:
        step("sluice version; check the example configuration")
        p = run_cli(["version"], binary=binary, timeout=10)
        expect(p.returncode == 0, "sluice version exited %d: %s" % (p.returncode, p.stderr))
        print("  " + (p.stdout.strip() or p.stderr.strip()))
        if os.path.exists(EXAMPLE):
            p = run_cli(["check", "-c", EXAMPLE], binary=binary, timeout=10)
            expect(p.returncode == 0, "sluice check -c %s exited %d:\n%s"
                   % (EXAMPLE, p.returncode, p.stderr))
            print("  %s: valid" % os.path.relpath(EXAMPLE))
        else:
            print("  %s not found; skipping its check" % os.path.relpath(EXAMPLE))

        step("start the upstream (stand-in identity API) and sluice")
        up = Upstream(tmp).start(timeout=10)
        print("  upstream        %s (pid %d)" % (up.url(), up.proc.pid))
        cert = make_cert(os.path.join(tmp, "tls"), "ecdsa")
        s = Sluice(tmp, demo_config(cert), upstream=up, workers=args.workers, binary=binary)
        s.start(timeout=10)
        print("  sluice          pid %d, %d workers, config %s" % (s.pid, args.workers, s.config_path))
        print("  listeners       public %s, public-tls %s, admin %s"
              % (s.url("/", "public"), s.url("/", "public-tls"), s.admin_url("/")))

        run_requests(s, tmp)
        show_metrics(s)
        st = up.stats()
        print("  upstream saw %d requests on %d connections" % (st["total"], st["connections"]))

        if args.forever:
            wait_forever(s, up)

        step("stop (SIGTERM: drain, then exit)")
        rc = s.stop(timeout=15)
        expect(rc == 0, "sluice exited with %d on SIGTERM" % rc)
        print("  sluice exited 0")
        return 0
    except (DemoError, helpers.HarnessError, AssertionError, OSError, ValueError,
            TimeoutError) as e:
        print("\ndemo FAILED: %s" % e, file=sys.stderr)
        if s is not None:
            print("sluice logs (%s):\n%s" % (s.stderr_path, s.stderr_text()[-3000:]), file=sys.stderr)
        return 1
    finally:
        if s is not None:
            s.kill()  # no-op once stopped
        if up is not None:
            up.stop()
        if args.keep:
            print("files kept in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
