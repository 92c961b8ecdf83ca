#!/usr/bin/env python3
"""sluice demo: a reconnect storm against a stand-in identity API, on loopback.

    /usr/bin/python3 deploy/demo.py --sluice ./build/sluice [--forever]

What it does, bounded (about 10 s, never more than 30 s):

 1. `sluice check` the example configuration (deploy/examples/sluice.yaml).
 2. Start the test upstream (test/integration/upstream.py) and sluice on a
    configuration generated from the example: its addresses rewritten to free
    loopback ports, plus `include: demo.d` with a drop-in that adds a TLS
    listener (fresh self-signed certificate) and trusts 127.0.0.0/8 as a proxy,
    so X-Forwarded-For can simulate many client addresses.
 3. One request over each protocol: HTTP/1.1 (with a 1 MiB upload), h2c
    (with a 1 MiB download), TLS h2 and TLS HTTP/1.1 (ALPN).
 4. A reconnect storm (postmortem 000): DEVICES devices of class "homey", each
    from its own address, reconnect at once, while one app stuck in a crash
    loop (postmortem 002) retries from one address at about 100 requests/s.
    The device-class limit (100/s, burst 100) sheds part of the herd with 429,
    a JSON body and a spread retry-after; the shed devices come back when
    their retry-after says and most get in. The crash-looping client is held
    to its per-IP rate (5/s, burst 10) without being locked out.
 5. An emergency firmware block (postmortem 001): an idle keep-alive
    connection from an airtame-hub on 3.8.0-b5 is open; on-call writes
    demo.d/emergency-firmware.yaml, checks it with `sluice check` and
    `sluice explain`; sluice's file watcher reloads by itself. The idle
    connection is closed, firmware 3.8.0-b10 gets 403 JSON (b10 orders after
    b3), 3.8.0-b2 still gets in.
 6. Metrics excerpts, a summary, then SIGTERM (drain) and exit 0.

Any failed step prints why, with sluice's log tail, and exits 1. --forever
keeps everything running until Ctrl-C (make run) and prints how to talk to it.
"""

import argparse
import collections
import concurrent.futures
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "test", "integration"))

import helpers  # noqa: E402  (the integration-test harness: processes, ports, clients)
from helpers import (MiB, H1Conn, Sluice, Upstream, curl, make_cert,  # noqa: E402
                     metric_sum, random_bytes, reserve_port, run_cli, sha256_hex, wait_for)

EXAMPLE = os.path.join(REPO, "deploy", "examples", "sluice.yaml")
CURL_TIMEOUT = 10
HTTP_TIMEOUT = 5.0
CONNECT = "/v1/connect"
CRASH_LOOP_IP = "198.51.100.7"   # TEST-NET-2: the app stuck in a crash loop
CRASH_LOOP_RATE = 100.0          # requests per second it tries to send

# The demo's additions to the example, merged after it (SPEC §3 drop-ins):
# a list item with a new name is appended, maps merge key by key.
DEMO_DROPIN = """\
# demo.d/10-demo.yaml, merged after sluice.yaml (include: demo.d)
listeners:
  - name: public-tls                 # appended: a new name
    address: "127.0.0.1:{tls_port}"
    tls:
      certificate: "{cert}"
      private_key: "{key}"
identify:
  client_ip:
    # appended to the example's 10.0.0.0/8: the demo's clients are all on
    # loopback and say who they are with X-Forwarded-For
    trusted_proxies: ["127.0.0.0/8"]
drain_timeout: 5s
"""

EMERGENCY_DROPIN = """\
# demo.d/emergency-firmware.yaml — on-call, INC-2041: airtame-hub firmware from
# 3.8.0-b3 up to (not including) the fixed 3.8.1 does a full table scan on
# every connect. Remove this file once 3.8.1 is out.
blocklist:
  firmware:
    - name: inc-2041
      class: airtame-hub
      versions: ">=3.8.0-b3 <3.8.1"
      status: 403
      reason: "connect handler full-table-scan, INC-2041"
      expires: "{expires}"
"""


class DemoError(Exception):
    pass


def step(msg):
    print("\n== %s" % msg, flush=True)


def say(msg=""):
    print("  " + msg if msg else "", flush=True)


def expect(cond, msg):
    if not cond:
        raise DemoError(msg)


# ---- configuration -----------------------------------------------------------

def demo_config_text():
    """The example with its three addresses turned into the placeholders
    helpers.Sluice fills in (free ports, the demo upstream), and the include
    directory of the demo's drop-ins."""
    with open(EXAMPLE) as f:
        text = f.read()
    subs = (("127.0.0.1:8080", "127.0.0.1:${PORT}"), ("127.0.0.1:9901", "127.0.0.1:${ADMIN_PORT}"),
            ("127.0.0.1:8081", "127.0.0.1:${UPSTREAM_PORT}"))
    for old, new in subs:
        expect(text.count('"%s"' % old) == 1,
               "%s: expected exactly one \"%s\" to rewrite" % (os.path.relpath(EXAMPLE), old))
        text = text.replace('"%s"' % old, '"%s"' % new)
    return text + "\ninclude: demo.d                      # added by deploy/demo.py\n"


def write_file(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # atomic, like a ConfigMap's ..data swap


# ---- clients -------------------------------------------------------------------

Result = collections.namedtuple("Result", "status retry_after body t")


def get(port, path, headers, timeout=HTTP_TIMEOUT):
    """One request on a new connection (a device reconnecting)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read()
        ra = r.getheader("retry-after")
        return Result(r.status, int(ra) if ra else None, body, time.monotonic())
    finally:
        c.close()


def device_headers(i, cls="homey", firmware="8.1.2"):
    return {"X-Forwarded-For": "100.64.%d.%d" % (i // 250, i % 250 + 1),  # RFC 6598 space
            "X-Device-Class": cls, "X-Firmware-Version": firmware, "X-Device-Id": "dev-%05d" % i}


class CrashLoop(threading.Thread):
    """One client retrying as fast as a crashing app does, until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.results = []
        self.stop_ev = threading.Event()
        self.error = None

    def run(self):
        hdrs = {"X-Forwarded-For": CRASH_LOOP_IP, "User-Agent": "wallet-app/3.1 (crash loop)"}
        self.t0 = time.monotonic()
        n = 0
        try:
            while not self.stop_ev.is_set():
                self.results.append(get(self.port, CONNECT, hdrs))
                n += 1
                pause = self.t0 + n / CRASH_LOOP_RATE - time.monotonic()
                if pause > 0:
                    self.stop_ev.wait(pause)
        except Exception as e:  # reported by the main thread
            self.error = e
        self.t1 = time.monotonic()


def histogram(values, width=40):
    c = collections.Counter(values)
    top = max(c.values()) if c else 1
    for v in sorted(c):
        say("  retry-after %3d s: %4d  %s" % (v, c[v], "#" * max(1, round(c[v] * width / top))))


# ---- steps -----------------------------------------------------------------------

def run_protocols(s, tls_port, tmp):
    step("one request per protocol (protocol, method, path, status, latency)")
    body = random_bytes(1 * MiB, seed=42)
    body_file = os.path.join(tmp, "body.bin")
    with open(body_file, "wb") as f:
        f.write(body)

    def go(proto, method, path, *args, port=None, want=200, note=""):
        scheme = "https" if port == tls_port else "http"
        url = "%s://127.0.0.1:%d%s" % (scheme, port or s.port, path)
        r = curl(url, *args, timeout=CURL_TIMEOUT, check=False)
        expect(r.rc == 0, "%s %s %s: curl failed: %s" % (proto, method, path, r.stderr.strip()))
        say("%-9s %-4s %-22s %3d %6.1f ms  %s" % (proto, method, path, r.status,
                                                 r.time_total * 1000, note))
        expect(r.status == want, "%s %s %s: status %d, expected %d: %r"
               % (proto, method, path, r.status, want, r.body[:200]))
        return r

    r = go("HTTP/1.1", "GET", "/v1/devices/hello", "--http1.1")
    expect(r.json().get("ok") is True, "unexpected body from the upstream: %r" % r.body[:200])
    r = go("HTTP/1.1", "POST", "/sha256", "--http1.1", "--data-binary", "@" + body_file,
           note="1 MiB upload, sha256 matches")
    expect(r.json().get("sha256") == sha256_hex(body), "upload corrupted: %r" % r.body[:200])
    r = go("h2c", "GET", "/v1/devices/hello", "--http2-prior-knowledge")
    expect(r.http_version == "2", "h2c answered over HTTP/%s" % r.http_version)
    r = go("h2c", "GET", "/bytes?n=1048576", "--http2-prior-knowledge", note="1 MiB download")
    expect(len(r.body) == MiB, "download truncated: %d bytes" % len(r.body))
    r = go("TLS h2", "GET", "/v1/devices/hello", "-k", "--http2", port=tls_port,
           note="ALPN h2, x-forwarded-proto: https")
    expect(r.http_version == "2", "ALPN did not select h2 (HTTP/%s)" % r.http_version)
    expect(r.json()["headers"].get("x-forwarded-proto") == "https", "x-forwarded-proto not https")
    r = go("TLS h1", "GET", "/v1/devices/hello", "-k", "--http1.1", port=tls_port,
           note="ALPN http/1.1")
    expect(r.http_version == "1.1", "ALPN http/1.1 answered over HTTP/%s" % r.http_version)
    go("HTTP/1.1", "GET", "/status/503", "--http1.1", want=503, note="upstream's own 503, relayed")


def run_storm(s, up, n_devices):
    step("reconnect storm: %d devices reconnect at once, plus one app in a crash loop"
         % n_devices)
    say("connect route: per client_ip 5/s (burst 10), per device_class 100/s (burst 100);")
    say("every device has its own address (X-Forwarded-For from the trusted loopback proxy)")
    up.reset_stats()
    crash = CrashLoop(s.port)
    crash.start()
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=48) as pool:
        wave1 = list(pool.map(lambda i: get(s.port, CONNECT, device_headers(i)), range(n_devices)))
    t_wave1 = time.monotonic() - t0
    admitted1 = [i for i, r in enumerate(wave1) if r.status == 200]
    shed = [i for i, r in enumerate(wave1) if r.status == 429]
    expect(len(admitted1) + len(shed) == n_devices,
           "unexpected statuses in the storm: %r" % collections.Counter(r.status for r in wave1))
    expect(shed, "the device-class limit shed nothing: is the example's connect route changed?")
    say()
    say("wave 1 (%.2f s): %d admitted, %d shed with 429" % (t_wave1, len(admitted1), len(shed)))
    first = wave1[shed[0]]
    body = json.loads(first.body)
    expect(body.get("error") == "rate_limited" and body.get("policy") == "connect/device_class",
           "unexpected rejection body %r" % first.body)
    say("a shed device reads: retry-after: %d" % first.retry_after)
    say("                     %s" % first.body.decode().strip())
    say("retry-after of the %d shed devices, spread so they do not return together:" % len(shed))
    histogram([wave1[i].retry_after for i in shed])

    # Each shed device honours its own retry-after, counted from its rejection.
    due = sorted((wave1[i].t + wave1[i].retry_after, i) for i in shed)
    wave2 = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=48) as pool:
        futs = []
        for when, i in due:
            pause = when - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            futs.append((i, pool.submit(get, s.port, CONNECT, device_headers(i))))
        for i, f in futs:
            wave2[i] = f.result()
    admitted2 = sum(1 for r in wave2.values() if r.status == 200)
    say()
    say("wave 2 (%.1f s after the storm began): the %d shed devices retry when told: "
        "%d admitted, %d shed again" % (time.monotonic() - t0, len(shed), admitted2,
                                         len(shed) - admitted2))
    crash.stop_ev.set()
    crash.join(10)
    expect(crash.error is None, "crash-loop client failed: %r" % crash.error)
    cr = crash.results
    ok = sum(1 for r in cr if r.status == 200)
    dur = crash.t1 - crash.t0
    expect(ok and ok < len(cr), "crash loop: %d of %d admitted" % (ok, len(cr)))
    bad = [r for r in cr if r.status == 429][0]
    expect(json.loads(bad.body).get("policy") == "connect/client_ip",
           "crash loop rejected by %r" % bad.body)
    say()
    say("crash loop (%s): %d requests in %.1f s (%.0f/s): %d admitted, %d shed"
        % (CRASH_LOOP_IP, len(cr), dur, len(cr) / dur, ok, len(cr) - ok))
    say("  admitted ~ burst 10 + 5/s x %.1f s = %.0f: limited, never locked out, because a"
        % (dur, 10 + 5 * dur))
    say("  refused request consumes no quota; it reads %s" % bad.body.decode().strip())

    total_ok = len(admitted1) + admitted2 + ok
    seen = up.seen(CONNECT)
    say()
    say("the identity API saw %d %s requests: exactly the %d admitted; nothing shed reached it"
        % (seen, CONNECT, total_ok))
    expect(seen == total_ok, "upstream saw %d, sluice admitted %d" % (seen, total_ok))
    return {"devices": n_devices, "wave1_ok": len(admitted1), "shed": len(shed),
            "ra": sorted(set(wave1[i].retry_after for i in shed)), "wave2_ok": admitted2,
            "crash_n": len(cr), "crash_ok": ok, "crash_rate": len(cr) / dur, "seen": seen}


def explain(binary, config, firmware):
    p = run_cli(["explain", "-c", config, "--ip", "100.64.200.1",
                 "--header", "X-Device-Class: airtame-hub",
                 "--header", "X-Firmware-Version: " + firmware, CONNECT], binary=binary)
    expect(p.returncode == 0, "sluice explain exited %d: %s" % (p.returncode, p.stderr))
    return json.loads(p.stdout)


def show_verdict(firmware, e):
    v = e["verdict"]
    if v["admit"]:
        say("  firmware %-10s -> admit" % firmware)
    else:
        why = next((p["why"] for p in e["policies"] if p["verdict"] == "deny"), "")
        say("  firmware %-10s -> %d %s by %s (%s)" % (firmware, v["status"], v["error"],
                                                     v["policy"], why))


def run_firmware_block(s, binary, demo_dir):
    step("emergency firmware block (postmortem 001): a drop-in, picked up by the file watcher")
    hub = lambda fw: {"X-Forwarded-For": "100.64.200.1", "X-Device-Class": "airtame-hub",
                      "X-Firmware-Version": fw}
    idle = H1Conn(s.port, timeout=HTTP_TIMEOUT)
    r = idle.request("GET", CONNECT, list(hub("3.8.0-b5").items()))
    expect(r.status == 200, "airtame-hub 3.8.0-b5 before the block: %d" % r.status)
    say("an airtame-hub on 3.8.0-b5 connected (200) and keeps its connection open, idle")

    say("before: sluice explain -c sluice.yaml --ip 100.64.200.1 "
        "--header 'X-Device-Class: airtame-hub' --header 'X-Firmware-Version: V' %s" % CONNECT)
    for fw in ("3.8.0-b10", "3.8.0-b2"):
        e = explain(binary, s.config_path, fw)
        show_verdict(fw, e)
        expect(e["verdict"]["admit"], "firmware %s refused before the block" % fw)

    gen_before = int(metric_sum(s.metrics(), "sluice_config_generation"))
    expires = (datetime.datetime.now(datetime.timezone.utc)
               + datetime.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = os.path.join(demo_dir, "emergency-firmware.yaml")
    write_file(path, EMERGENCY_DROPIN.format(expires=expires))
    say("on-call writes demo.d/emergency-firmware.yaml:")
    for line in EMERGENCY_DROPIN.format(expires=expires).splitlines():
        if not line.startswith("#"):
            say("  | " + line)
    p = run_cli(["check", "-c", s.config_path], binary=binary)
    expect(p.returncode == 0, "sluice check after the drop-in: %s" % p.stderr)
    say("sluice check: %s" % p.stderr.strip().replace(s.workdir + "/", ""))
    say("after (sluice explain reads the files on disk):")
    verdicts = {}
    for fw in ("3.8.0-b10", "3.8.0-b2"):
        verdicts[fw] = explain(binary, s.config_path, fw)
        show_verdict(fw, verdicts[fw])
    expect(not verdicts["3.8.0-b10"]["verdict"]["admit"], "3.8.0-b10 not refused by the drop-in")
    expect(verdicts["3.8.0-b2"]["verdict"]["admit"], "3.8.0-b2 refused by the drop-in")

    # sluice watches its files: the drop-in is picked up by itself (SIGHUP and
    # POST /reload do the same on demand).
    t0 = time.monotonic()
    wait_for(lambda: metric_sum(s.metrics(), "sluice_config_generation") >= gen_before + 1,
             5.0, interval=0.05, what="the file watcher to reload")
    took = time.monotonic() - t0
    line = s.wait_log(lambda l: l.get("msg") == "configuration reloaded"
                      and l.get("generation") == gen_before + 1, 3.0, "the reload log line")
    say("sluice reloaded by itself %.1f s after the write: generation %d, trigger %s, %s"
        % (took, gen_before + 1, line.get("trigger"), line.get("summary", "")))
    closed = idle.wait_closed(3.0)
    idle.close()
    say("the idle connection of the 3.8.0-b5 hub: %s" % ("closed by sluice" if closed
                                                          else "STILL OPEN"))
    expect(closed, "the idle keep-alive connection of a newly blocked device stayed open")
    r = get(s.port, CONNECT, hub("3.8.0-b10"))
    say("airtame-hub 3.8.0-b10 -> %d, retry-after: %s, %s" % (r.status, r.retry_after,
                                                             r.body.decode().strip()))
    expect(r.status == 403 and json.loads(r.body).get("error") == "blocked",
           "blocked firmware got %d %r" % (r.status, r.body))
    r2 = get(s.port, CONNECT, hub("3.8.0-b2"))
    say("airtame-hub 3.8.0-b2  -> %d (before the regression: still admitted)" % r2.status)
    expect(r2.status == 200, "3.8.0-b2 got %d" % r2.status)
    q = ("/explain?ip=100.64.200.1&path=/v1/connect&header=X-Device-Class:airtame-hub"
         "&header=X-Firmware-Version:3.8.0-b10")
    status, _, body = s.admin_get(q)
    live = json.loads(body)
    say("GET %s\n    -> verdict %s" % (q, json.dumps(live["verdict"])))
    expect(not live["verdict"]["admit"], "live /explain admits the blocked firmware")
    return {"expires": expires, "reload_s": took}


METRICS_SHOWN = ("sluice_requests_total", "sluice_rejections_total", "sluice_limiter_keys",
                 "sluice_upstream_requests_total", "sluice_circuit_breaker_state",
                 "sluice_config_generation", "sluice_config_last_reload_successful",
                 "sluice_config_reloads_total")


def show_metrics(s):
    step("metrics excerpts (GET /metrics on the admin listener)")
    text = s.metrics_text()
    for line in text.splitlines():
        name = re.split(r"[{ ]", line, 1)[0]
        if name in METRICS_SHOWN:
            say(line)
    return helpers.parse_prometheus(text)


def wait_forever(s, tls_port):
    url = "http://127.0.0.1:%d" % s.port
    print("\nsluice is still running (Ctrl-C to stop):")
    print("  h1 / h2c      curl %s/v1/devices/hello" % url)
    print("                curl --http2-prior-knowledge %s/v1/devices/hello" % url)
    print("  TLS h2        curl -k https://127.0.0.1:%d/v1/devices/hello" % tls_port)
    print("  storm         for i in $(seq 150); do curl -s -o /dev/null -w '%%{http_code} ' "
          "-H \"X-Forwarded-For: 100.64.9.$i\" -H 'X-Device-Class: homey' %s%s; done"
          % (url, CONNECT))
    print("  blocked       curl -i -H 'X-Device-Class: airtame-hub' "
          "-H 'X-Firmware-Version: 3.8.0-b10' %s%s" % (url, CONNECT))
    print("  admin         curl %s   (/healthz /readyz /config /explain; "
          "curl -X POST .../reload)" % s.admin_url("/metrics"))
    print("  config        %s (+ demo.d/)\n  logs          %s" % (s.config_path, s.stderr_path))
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
    ap = argparse.ArgumentParser(description="sluice reconnect-storm demo on loopback")
    ap.add_argument("--sluice", default=os.path.join(REPO, "build", "sluice"), help="binary to run")
    ap.add_argument("--forever", action="store_true", help="keep running until Ctrl-C")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--devices", type=int, default=300, help="devices in the reconnect storm")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--storm", action="store_true",
                    help="then the fleetsim storm twice, direct and through sluice "
                         "(deploy/demo_storm.py; needs make tools)")
    ap.add_argument("--storm-devices", type=int, default=10000)
    ap.add_argument("--storm-duration", type=int, default=40, help="seconds per run")
    args = ap.parse_args()

    binary = os.path.abspath(args.sluice)
    for tool in ("curl", "openssl"):
        if not shutil.which(tool):
            print("demo: %s not found (make deps installs it)" % tool, file=sys.stderr)
            return 1
    if not os.access(binary, os.X_OK):
        print("demo: %s is not an executable (run make first)" % binary, file=sys.stderr)
        return 1
    expect(150 <= args.devices <= 5000, "--devices wants 150..5000")

    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="sluice-demo-")
    up = s = tls_res = None
    try:
        step("sluice version; check the example configuration")
        p = run_cli(["version"], binary=binary, timeout=10)
        expect(p.returncode == 0, "sluice version exited %d: %s" % (p.returncode, p.stderr))
        say(p.stdout.strip())
        p = run_cli(["check", "-c", EXAMPLE], binary=binary, timeout=10)
        expect(p.returncode == 0, "sluice check -c %s exited %d:\n%s"
               % (EXAMPLE, p.returncode, p.stderr))
        say("sluice check -c %s: ok" % os.path.relpath(EXAMPLE, REPO))

        step("start the upstream (stand-in identity API) and sluice")
        up = Upstream(tmp).start(timeout=10)
        say("upstream     %s (pid %d)" % (up.url(), up.proc.pid))
        cert = make_cert(os.path.join(tmp, "tls"), "ecdsa")
        demo_dir = os.path.join(tmp, "demo.d")
        os.makedirs(demo_dir)
        tls_res = reserve_port()
        tls_port = tls_res.port
        write_file(os.path.join(demo_dir, "10-demo.yaml"),
                   DEMO_DROPIN.format(tls_port=tls_port, cert=cert.cert, key=cert.key))
        s = Sluice(tmp, demo_config_text(), upstream=up, workers=args.workers, binary=binary)
        p = run_cli(["check", "-c", s.config_path], binary=binary, timeout=10)
        expect(p.returncode == 0, "generated configuration invalid:\n%s" % p.stderr)
        tls_res.release()
        tls_res = None
        s.start(timeout=10)
        say("sluice       pid %d, %d workers" % (s.pid, args.workers))
        say("config       %s = the example + include: demo.d" % s.config_path)
        say("listeners    public http://127.0.0.1:%d (h1, h2c), public-tls https://127.0.0.1:%d, "
            "admin http://127.0.0.1:%d" % (s.port, tls_port, s.admin_port))

        run_protocols(s, tls_port, tmp)
        storm = run_storm(s, up, args.devices)
        block = run_firmware_block(s, binary, demo_dir)
        m = show_metrics(s)
        expect(metric_sum(m, "sluice_rejections_total", reason="blocklist") >= 1,
               "no blocklist rejection in the metrics")
        expect(metric_sum(m, "sluice_config_last_reload_successful") == 1, "last reload failed")

        step("summary")
        say("protocols        HTTP/1.1, h2c, TLS h2, TLS HTTP/1.1: ok (uploads, downloads, "
            "x-forwarded-proto)")
        say("reconnect storm  %d devices at once: %d admitted, %d shed with 429 and retry-after "
            "%s s" % (storm["devices"], storm["wave1_ok"], storm["shed"],
                      "-".join(str(x) for x in (storm["ra"][0], storm["ra"][-1]))
                      if len(storm["ra"]) > 1 else storm["ra"][0]))
        say("                 their retries, spread: %d of %d admitted"
            % (storm["wave2_ok"], storm["shed"]))
        say("crash loop       %d requests at %.0f/s from one address: %d admitted (its 5/s), "
            "the rest 429" % (storm["crash_n"], storm["crash_rate"], storm["crash_ok"]))
        say("firmware block   drop-in picked up in %.1f s: 3.8.0-b10 -> 403 JSON, 3.8.0-b2 -> 200, "
            "idle connection of a blocked hub closed" % block["reload_s"])
        say("identity API     saw %d connects, exactly those admitted" % storm["seen"])

        if args.forever:
            wait_forever(s, tls_port)

        step("stop (SIGTERM: drain, then exit)")
        rc = s.stop(timeout=15)
        expect(rc == 0, "sluice exited with %d on SIGTERM" % rc)
        say("sluice exited 0; demo took %.1f s" % (time.monotonic() - started))
        if args.storm:
            import demo_storm  # noqa: E402  (deploy/, beside this file)
            step("the storm twice: %d devices straight at the stand-in API, then through sluice"
                 % args.storm_devices)
            try:
                results = demo_storm.storm_pair(binary, tmp, args.storm_devices,
                                                args.storm_duration, demo_config_text())
            except demo_storm.StormError as e:
                raise DemoError(str(e))
            print(demo_storm.table(results), flush=True)
            out = os.path.join(REPO, "build", "demo", "storm.svg")
            demo_storm.write_picture(results, out)
            say("picture: %s" % os.path.relpath(out, REPO))
        return 0
    except (DemoError, helpers.HarnessError, AssertionError, OSError, ValueError, KeyError,
            TimeoutError, subprocess.SubprocessError) as e:
        print("\ndemo FAILED: %s" % e, file=sys.stderr)
        if s is not None:
            print("sluice logs (%s):\n%s" % (s.stderr_path, s.stderr_text()[-3000:]),
                  file=sys.stderr)
        return 1
    finally:
        if tls_res is not None:
            tls_res.release()
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
