#!/usr/bin/env python3
"""sluice demo: a reconnect storm against a stand-in identity API, on loopback.

    /usr/bin/python3 deploy/demo.py --sluice ./build/sluice [--forever]
        [--devices 10000] [--storm-seconds 80] [--quick] [--out-dir build/demo]

What it does, bounded (about 90 s; --quick about 12 s):

 1. `sluice check` the example configuration (deploy/examples/sluice.yaml).
 2. Start the test upstream (test/integration/upstream.py) and sluice on a
    configuration generated from the example: its addresses rewritten to free
    loopback ports, plus `include: demo.d` with a drop-in that adds a TLS
    listener (fresh self-signed certificate) and trusts 127.0.0.0/8 as a proxy,
    so X-Forwarded-For can simulate many client addresses.
 3. One request over each protocol: HTTP/1.1 (with a 1 MiB upload), h2c
    (with a 1 MiB download), TLS h2 and TLS HTTP/1.1 (ALPN).
 4. An emergency firmware block (postmortem 001): an idle keep-alive
    connection from an airtame-hub on 3.8.0-b5 is open; on-call writes
    demo.d/emergency-firmware.yaml, checks it with `sluice check` and
    `sluice explain`; sluice's file watcher reloads by itself. The idle
    connection is closed, firmware 3.8.0-b10 gets 403 JSON (b10 orders after
    b3), 3.8.0-b2 still gets in.
 5. Metrics excerpts, then SIGTERM (drain). With --forever (make run) it
    keeps sluice running until Ctrl-C instead, prints how to talk to it, and
    plays no storm.
 6. The reconnect storm (postmortem 000), twice side by side: --devices
    devices (build/fleetsim, each from its own loopback address, holding a
    WebSocket, honouring retry-after) connect at once straight at one
    build/standin (a database-bound API of 200 connects/s), and through a
    second sluice (the example's connect limits, plus demo.d/20-storm.yaml:
    room for the tunnels) at another. A table (peak upstream load, upstream
    500s and stalls, time until 99% connected, refusals by reason) and
    OUT_DIR/storm.svg (deploy/demo_svg.py) with the JSON lines beside it.
    Fails if the API behind sluice answered a single 500 or stalled.

Any failed step prints why, with sluice's log tail, and exits 1; bad flags
exit 2.
"""

import argparse
import collections
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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "test", "integration"))

import demo_svg  # noqa: E402  (deploy/demo_svg.py, the picture)
import helpers  # noqa: E402  (the integration-test harness: processes, ports, clients)
from helpers import (MiB, H1Conn, Sluice, Upstream, curl, make_cert,  # noqa: E402
                     metric_sum, random_bytes, reserve_port, run_cli, sha256_hex, wait_for)

EXAMPLE = os.path.join(REPO, "deploy", "examples", "sluice.yaml")
CURL_TIMEOUT = 10
HTTP_TIMEOUT = 5.0
CONNECT = "/v1/connect"

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


# ---- the storm: 10,000 devices, straight at the API and through sluice -------

# The stand-in identity API (build/standin): 8 slots of 40 ms, so it serves
# 200 connects a second; beyond 256 waiting it answers 500, beyond 1024 it
# hangs (the database-bound handler of the postmortems). The example's
# connect route admits 100/s of homey and 50/s of airtame-hub: 150/s, three
# quarters of that capacity.
STANDIN_ARGS = ("--workers", "8", "--service-ms", "40", "--fail-queue", "256",
                "--stall-queue", "1024")
STANDIN_CAPACITY = 8 / 0.040
FLEET_ARGS = ("--mode", "ws-h1", "--class", "homey=70,airtame-hub=30",
              "--firmware", "homey=8.1.2,airtame-hub=3.7.9",
              "--reconnect", "retry-after:1000:30000", "--timeout", "10000")
SOURCES = {"direct": "127.1.0.0/16", "sluice": "127.2.0.0/16"}

# The example's connect route, restated so that a drop-in can give it room
# for a fleet that holds tunnels (a drop-in entry with the same name
# replaces the example's in place, SPEC §3). The example's
# `concurrency: {max: 512}` counts every open tunnel, and every tunnel holds
# one of the upstream's 256 connections: right for polling devices, 512
# tunnels for a fleet of 10,000. The limits are the example's, checked
# against it at start.
EXAMPLE_LIMITS = """\
      - { key: client_ip, rate: "5/s", burst: 10 }
      - { key: device_class, rate: "100/s", burst: 100,
          override: { airtame-hub: "50/s" } }
"""
STORM_DROPIN = """\
# demo.d/20-storm.yaml, merged after sluice.yaml: room for 10,000 tunnels
upstreams:
  identity:
    max_connections: 30000           # a tunnel holds its upstream connection
routes:
  - name: connect                    # replaces the example's route in place
    match: { path_prefix: "/v1/connect" }
    upstream: identity
    rate_limits:
""" + EXAMPLE_LIMITS + """\
    concurrency: { max: 30000 }      # the example: 512, tunnels included
    priority: high
    idle_timeout: 10m                # the listener's idle (60s) would close quiet tunnels
"""


FD_SPARE = 200  # listeners, the admin, the loop, logs, the demo's own


def raise_fd_limit(need):
    """Children inherit it: sluice holds two descriptors per tunnel."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
        except (ValueError, OSError):
            pass
    top = need if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
    return top


def read_jsonl(path):
    out = []
    for line in helpers.read_text(path).splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out


def start_standin(tmp, name, duration):
    return helpers.Standin(tmp, [*STANDIN_ARGS, "--duration", "%g" % duration],
                           name="%s-standin" % name).start()


def start_fleet(tmp, name, port, devices, duration):
    out = os.path.join(tmp, "%s-fleet.jsonl" % name)
    err = open(os.path.join(tmp, "%s-fleet.stderr" % name), "wb")
    cmd = [os.path.join(REPO, "build", "fleetsim"), "--target", "127.0.0.1:%d" % port,
           "--devices", str(devices), "--sources", SOURCES[name], *FLEET_ARGS,
           "--duration", "%g" % duration, "--out", out]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    p.out, p.err, p.cmd, p.t0 = out, err.name, cmd, time.monotonic()
    return p


def time_to_99(fleet_ticks, devices):
    for tk in fleet_ticks:
        if tk["connected"] >= 0.99 * devices:
            return tk["t"]
    return None


def summarize(name, fleet, standin, devices, standin_lead):
    ticks = [t for t in fleet if t["type"] == "tick"]
    summary = [t for t in fleet if t["type"] == "summary"]
    expect(summary, "%s: fleetsim wrote no summary" % name)
    up = [dict(t, t=t["t"] - standin_lead) for t in standin if t["type"] == "tick"]
    up = [t for t in up if t["t"] > 0]
    up_total = [t for t in standin if t["type"] == "summary"]
    expect(up_total, "%s: standin wrote no summary" % name)
    prev, peak = 0.0, 0.0
    for t in up:
        if t["t"] > prev:
            peak = max(peak, t["requests"] / (t["t"] - prev))
        prev = t["t"]
    return {"name": name, "ticks": ticks, "standin": up, "summary": summary[-1],
            "upstream": up_total[-1], "peak_rps": peak, "t99": time_to_99(ticks, devices)}


def refusals_text(summary):
    parts = ["%s %d" % (k, v) for k, v in sorted(summary["refused_by"].items(),
                                                    key=lambda kv: -kv[1])]
    parts += ["%s %d" % (k, v) for k, v in sorted(summary["errors_by"].items(),
                                                     key=lambda kv: -kv[1])]
    return ", ".join(parts) or "none"


def print_table(runs, devices, duration):
    cols = ("straight at the API", "through sluice")
    rows = [
        ("peak upstream load", ["%.0f req/s" % r["peak_rps"] for r in runs]),
        ("upstream errors (500 + stalled)",
         ["%d + %d" % (r["upstream"]["errors_500"], r["upstream"]["stalled"]) for r in runs]),
        ("time until 99%% of %d connected" % devices,
         ["%.0f s" % r["t99"] if r["t99"] is not None else "not in %g s" % duration
          for r in runs]),
        ("connected at the end", ["%d" % r["summary"]["connected"] for r in runs]),
        ("device attempts", ["%d" % r["summary"]["attempts"] for r in runs]),
    ]
    w0 = max(len(r[0]) for r in rows) + 2
    w = max(len(c) for c in cols) + 4
    say("%-*s%-*s%s" % (w0, "", w, cols[0], cols[1]))
    for label, vals in rows:
        say("%-*s%-*s%s" % (w0, label, w, vals[0], vals[1]))
    say("refusals and errors by reason, as the devices saw them:")
    for col, r in zip(cols, runs):
        say("  %-21s %s" % (col + ":", refusals_text(r["summary"])))


def run_storm(binary, tmp, out_dir, devices, duration, workers):
    step("reconnect storm: %d devices connect at once, twice side by side: straight at the "
         "stand-in identity API, and through sluice with the example policy" % devices)
    for tool in ("standin", "fleetsim"):
        expect(os.access(os.path.join(REPO, "build", tool), os.X_OK),
               "build/%s missing: make tools" % tool)
    with open(EXAMPLE) as f:
        expect(EXAMPLE_LIMITS in f.read(), "%s: the connect route's rate limits changed; "
               "update EXAMPLE_LIMITS in deploy/demo.py" % os.path.relpath(EXAMPLE, REPO))
    # sluice holds two descriptors per tunnel (the device's and the
    # upstream's), fleetsim and standin one; children inherit the limit.
    got = raise_fd_limit(2 * devices + FD_SPARE)
    if got < 2 * devices + FD_SPARE:
        fit = (got - FD_SPARE) // 2
        expect(fit >= 100, "the open-files limit is %d: too low for a storm" % got)
        say("note: the open-files limit is %d (ulimit -Hn) and sluice holds two descriptors a "
            "tunnel: %d devices instead of %d (raise the limit to %d for all of them)"
            % (got, fit, devices, 2 * devices + FD_SPARE))
        devices = fit
    say("stand-in identity API: build/standin %s (%.0f connects/s at most)"
        % (" ".join(STANDIN_ARGS), STANDIN_CAPACITY))
    say("devices: build/fleetsim --devices %d %s --duration %g"
        % (devices, " ".join(FLEET_ARGS), duration))
    say("         each from its own loopback address (--sources %s, %s)"
        % (SOURCES["direct"], SOURCES["sluice"]))
    sd = os.path.join(tmp, "storm")
    os.makedirs(os.path.join(sd, "demo.d"))
    procs = []
    s = None
    try:
        st_direct = start_standin(tmp, "direct", duration + 10)
        st_sluice = start_standin(tmp, "sluice", duration + 10)
        procs += [st_direct, st_sluice]
        write_file(os.path.join(sd, "demo.d", "20-storm.yaml"), STORM_DROPIN)
        s = Sluice(sd, demo_config_text(), upstream=st_sluice.port, workers=workers,
                   binary=binary)
        p = run_cli(["check", "-c", s.config_path], binary=binary, timeout=10)
        expect(p.returncode == 0, "storm configuration invalid:\n%s" % p.stderr)
        s.start(timeout=10)
        say("sluice pid %d on 127.0.0.1:%d, the example + demo.d/20-storm.yaml:"
            % (s.pid, s.port))
        for line in STORM_DROPIN.splitlines()[1:]:
            say("  | " + line)
        fl_direct = start_fleet(tmp, "direct", st_direct.port, devices, duration)
        fl_sluice = start_fleet(tmp, "sluice", s.port, devices, duration)
        procs += [fl_direct, fl_sluice]
        say("running for %g s..." % duration)
        # sluice's own view while the storm runs, once a second (what the
        # runbook deploy/runbooks/rehearse-a-storm.md says to watch).
        tunnels = breaker = 0
        deadline = time.monotonic() + duration + 30
        while any(fl.poll() is None for fl in (fl_direct, fl_sluice)):
            expect(time.monotonic() < deadline, "fleetsim did not end after --duration %g"
                   % duration)
            m = s.metrics()
            tunnels = max(tunnels, metric_sum(m, "sluice_websocket_tunnels_active"))
            breaker = max(breaker, metric_sum(m, "sluice_circuit_breaker_state"))
            time.sleep(1.0)
        for fl in (fl_direct, fl_sluice):
            expect(fl.returncode == 0, "fleetsim exited %d: %s"
                   % (fl.returncode, helpers.read_text(fl.err)[-500:]))
        rejected = metric_sum(s.metrics(), "sluice_rejections_total")
        for st in (st_direct, st_sluice):
            st.stop()
        runs = []
        for name, st, fl in (("direct", st_direct, fl_direct), ("sluice", st_sluice, fl_sluice)):
            runs.append(summarize(name, read_jsonl(fl.out), st.lines(), devices,
                                  fl.t0 - st.t0))
        rc = s.stop(timeout=30)
        expect(rc == 0, "storm sluice exited with %d on SIGTERM" % rc)
        s = None
    finally:
        for p in procs:
            if isinstance(p, helpers.Standin):
                p.stop()
            elif p.poll() is None:
                helpers._stop_pid(p)
        if s is not None:
            s.kill()
    say()
    print_table(runs, devices, duration)
    say("sluice during the storm: at most %d tunnels open (sluice_websocket_tunnels_active), "
        "%d refusals (sluice_rejections_total), breaker state at most %d (0 closed)"
        % (tunnels, rejected, breaker))
    os.makedirs(out_dir, exist_ok=True)
    for name in ("direct", "sluice"):
        for kind in ("fleet", "standin"):
            shutil.copy(os.path.join(tmp, "%s-%s.jsonl" % (name, kind)),
                        os.path.join(out_dir, "%s-%s.jsonl" % (name, kind)))
    svg = os.path.join(out_dir, "storm.svg")
    demo_svg.render([{"title": "straight at the identity API (%d devices)" % devices,
                      "fleet": runs[0]["ticks"], "standin": runs[0]["standin"]},
                     {"title": "through sluice, example policy (%d devices)" % devices,
                      "fleet": runs[1]["ticks"], "standin": runs[1]["standin"]}], svg)
    shown = os.path.relpath(out_dir, REPO)
    shown = out_dir if shown.startswith("..") else shown
    say("picture: %s (data: %s/*.jsonl)" % (os.path.join(shown, "storm.svg"), shown))
    expect(runs[1]["upstream"]["stalled"] == 0 and runs[1]["upstream"]["errors_500"] == 0,
           "the identity API failed behind sluice: %d 500s, %d stalls"
           % (runs[1]["upstream"]["errors_500"], runs[1]["upstream"]["stalled"]))
    return runs, devices

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
    ap.add_argument("--devices", type=int, default=10000, help="devices in the reconnect storm")
    ap.add_argument("--storm-seconds", type=float, default=80,
                    help="how long each storm runs (both run side by side)")
    ap.add_argument("--quick", action="store_true",
                    help="a small storm for tests: 500 devices for 10 s")
    ap.add_argument("--out-dir", default=os.path.join(REPO, "build", "demo"),
                    help="where the picture and the storm data go")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if args.quick:
        args.devices, args.storm_seconds = 500, 10

    binary = os.path.abspath(args.sluice)
    for tool in ("curl", "openssl"):
        if not shutil.which(tool):
            print("demo: %s not found (make deps installs it)" % tool, file=sys.stderr)
            return 1
    if not os.access(binary, os.X_OK):
        print("demo: %s is not an executable (run make first)" % binary, file=sys.stderr)
        return 1
    if not 100 <= args.devices <= 50000 or not 2 <= args.storm_seconds <= 600:
        print("demo: --devices wants 100..50000, --storm-seconds 2..600", file=sys.stderr)
        return 2

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
        block = run_firmware_block(s, binary, demo_dir)
        m = show_metrics(s)
        expect(metric_sum(m, "sluice_rejections_total", reason="blocklist") >= 1,
               "no blocklist rejection in the metrics")
        expect(metric_sum(m, "sluice_config_last_reload_successful") == 1, "last reload failed")

        if args.forever:
            wait_forever(s, tls_port)

        step("stop (SIGTERM: drain, then exit)")
        rc = s.stop(timeout=15)
        expect(rc == 0, "sluice exited with %d on SIGTERM" % rc)
        say("sluice exited 0")
        if args.forever:
            return 0

        runs, devices = run_storm(binary, tmp, os.path.abspath(args.out_dir), args.devices,
                         args.storm_seconds, args.workers)

        step("summary")
        say("protocols        HTTP/1.1, h2c, TLS h2, TLS HTTP/1.1: ok (uploads, downloads, "
            "x-forwarded-proto)")
        say("firmware block   drop-in picked up in %.1f s: 3.8.0-b10 -> 403 JSON, 3.8.0-b2 -> 200, "
            "idle connection of a blocked hub closed" % block["reload_s"])
        d, t = runs
        say("storm            %d devices: straight at the API %d 500s and %d stalls, peak %.0f "
            "req/s on a %.0f/s API;" % (devices, d["upstream"]["errors_500"],
                                       d["upstream"]["stalled"], d["peak_rps"], STANDIN_CAPACITY))
        say("                 through sluice %d 500s and %d stalls, peak %.0f req/s"
            % (t["upstream"]["errors_500"], t["upstream"]["stalled"], t["peak_rps"]))
        say("demo took %.1f s" % (time.monotonic() - started))
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
