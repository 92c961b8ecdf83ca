#!/usr/bin/python3
"""Herd control, measured (issue 11): the same reconnect storm through sluice
with `reject.retry_after.spread: backlog` and with `spread: window`, side by
side, with the fleet simulator (build/fleetsim) and the stand-in identity API
(build/standin). A measurement, not a test: nothing here asserts.

  python3 test/bench/herd_bench.py                       (10,000 devices, 2 runs per mode)
  python3 test/bench/herd_bench.py --devices 2000 --runs 1

Each run: standin (its capacity model, defaults), sluice (release build,
one worker) with one route whose device-class limit (--rate/s, burst one
second's worth) is the shared key the storm meets, and fleetsim: --devices
WebSocket devices (h1 Upgrade) from their own loopback addresses connect over
--ramp seconds (under the limit), all lose their connection at --storm-at
and reconnect honouring Retry-After (exponential backoff with full jitter
when there is none). The modes alternate (backlog, window, backlog, ...) so
that drift on the shared machine cancels.

Reported per run, from fleetsim's summary and ticks (after the storm):
  time until 99% of the devices are connected again;
  attempts and refusals the storm cost (every refusal is a request sluice
  answered and the device will repeat);
  peak attempts per second (what the herd does to sluice) and peak admitted
  per second (what reaches the API, ≤ the limit by construction);
and from standin's ticks the peak upstream requests per second and its
errors. The table gives the median over --runs and the range.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))

from helpers import reserve_port  # noqa: E402


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def config(sluice_port, admin_port, standin_port, rate, spread):
    return """listeners:
  - name: public
    address: "127.0.0.1:%d"
    timeouts: { request_header: 10s, idle: 600s }
admin:
  address: "127.0.0.1:%d"
upstreams:
  identity:
    address: "127.0.0.1:%d"
    max_connections: 30000           # a tunnel holds its upstream connection
    max_pending: 30000
    timeouts: { connect: 2s, response: 10s, idle: 60s }
identify:
  device_class: { header: "x-device-class" }
routes:
  - name: connect
    match: { path_prefix: "/v1/connect" }
    upstream: identity
    idle_timeout: 600s
    rate_limits:
      - { key: device_class, rate: "%d/s", burst: %d }
reject:
  retry_after: { min: 1s, max: 60s, jitter: 0.5, spread: %s }
""" % (sluice_port, admin_port, standin_port, rate, rate, spread)


def wait_line(path, needle, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                if needle in f.read():
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise RuntimeError("%s: no %r within %.0f s" % (path, needle, timeout))


def wait_port(port, timeout):
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d not listening within %.0f s" % (port, timeout))


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def read_jsonl(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
    return out


def one_run(args, spread, d):
    sp, ap, up = reserve_port(), reserve_port(), reserve_port()
    for r in (sp, ap, up):
        r.release()
    standin_stats = os.path.join(d, "standin-%s.jsonl" % spread)
    sim_out = os.path.join(d, "fleetsim-%s.jsonl" % spread)
    cfg = os.path.join(d, "sluice-%s.yaml" % spread)
    with open(cfg, "w") as f:
        f.write(config(sp.port, ap.port, up.port, args.rate, spread))
    procs = []
    try:
        st = subprocess.Popen([args.standin, "--listen", "127.0.0.1:%d" % up.port,
                               "--stats", standin_stats, "--duration", str(args.duration + 30)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=raise_nofile)
        procs.append(st)
        wait_port(up.port, 10)
        sl = subprocess.Popen([args.sluice, "run", "-c", cfg, "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=raise_nofile)
        procs.append(sl)
        wait_port(sp.port, 10)
        sim = subprocess.run(
            [args.fleetsim, "--target", "127.0.0.1:%d" % sp.port, "--devices", str(args.devices),
             "--mode", "ws-h1", "--class", "homey=100", "--sources", "127.1.0.0/16",
             "--ramp", str(args.ramp), "--storm-at", str(args.storm_at),
             "--reconnect", "retry-after:500:30000", "--duration", str(args.duration),
             "--out", sim_out, "--seed", str(args.seed)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            timeout=args.duration + 60, preexec_fn=raise_nofile)
        if sim.returncode != 0:
            raise RuntimeError("fleetsim exited %d: %s" % (sim.returncode, sim.stderr[-500:]))
    finally:
        for p in reversed(procs):
            stop(p)
    lines = read_jsonl(sim_out)
    summary = [x for x in lines if x.get("type") == "summary"][-1]
    ticks = [x for x in lines if x.get("type") == "tick" and x["t"] > args.storm_at]
    up_ticks = [x for x in read_jsonl(standin_stats) if x.get("type") == "tick"]
    interval = ticks[1]["t"] - ticks[0]["t"] if len(ticks) > 1 else 1.0
    storm = summary["storms"][0] if summary.get("storms") else {}
    up_interval = (up_ticks[1]["t"] - up_ticks[0]["t"]) if len(up_ticks) > 1 else 1.0
    return {
        "spread": spread,
        "time_to_99pct_s": storm.get("time_to_99pct_s"),
        "attempts": sum(x["attempts"] for x in ticks),
        "refused": sum(x["refused"] for x in ticks),
        "errors": sum(x["errors"] for x in ticks),
        "peak_attempts_per_s": max((x["attempts"] for x in ticks), default=0) / interval,
        "peak_admitted_per_s": max((x["admitted"] for x in ticks), default=0) / interval,
        "peak_upstream_per_s": max((x["requests"] for x in up_ticks), default=0) / up_interval,
        "upstream_errors": sum(x.get("errors_500", 0) + x.get("stalled", 0) for x in up_ticks),
    }


FIELDS = [("time_to_99pct_s", "time to 99% connected (s)"),
          ("attempts", "attempts after the storm"),
          ("refused", "refused"),
          ("errors", "errors"),
          ("peak_attempts_per_s", "peak attempts/s"),
          ("peak_admitted_per_s", "peak admitted/s"),
          ("peak_upstream_per_s", "peak upstream requests/s"),
          ("upstream_errors", "upstream errors (500 + stalled)")]


def cell(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    fmt = "%.1f" if isinstance(m, float) and m != int(m) else "%d"
    if len(vals) == 1:
        return fmt % m
    return (fmt + " (%s-%s)") % (m, fmt % min(vals), fmt % max(vals))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", default=os.path.join(REPO, "build", "sluice"))
    ap.add_argument("--fleetsim", default=os.path.join(REPO, "build", "fleetsim"))
    ap.add_argument("--standin", default=os.path.join(REPO, "build", "standin"))
    ap.add_argument("--devices", type=int, default=None,
                    help="default 10,000, or what the open-files limit allows (sluice holds "
                         "two descriptors per tunnel)")
    ap.add_argument("--rate", type=int, default=500, help="the device-class limit, per second")
    ap.add_argument("--ramp", type=float, default=None,
                    help="initial connect spread (default: devices / (0.8 x rate) s)")
    ap.add_argument("--storm-at", type=float, default=None)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON of every run")
    args = ap.parse_args()
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    room = (hard - 1000) // 2 if hard != resource.RLIM_INFINITY else 10000
    if args.devices is None:
        args.devices = min(10000, room)
        if args.devices < 10000:
            print("herd_bench: %d devices (the hard open-files limit %d holds two descriptors "
                  "per tunnel in sluice for that many)" % (args.devices, hard), flush=True)
    elif args.devices > room:
        sys.exit("herd_bench: --devices %d needs a hard open-files limit of %d (it is %d)"
                 % (args.devices, 2 * args.devices + 1000, hard))
    if args.ramp is None:
        args.ramp = args.devices / (0.8 * args.rate)
    if args.storm_at is None:
        args.storm_at = args.ramp + 5
    if args.duration is None:
        # The backlog alone takes devices / rate s; give the window mode 3x.
        args.duration = args.storm_at + 3 * args.devices / args.rate + 10
    results = []
    with tempfile.TemporaryDirectory(prefix="herd-") as d:
        for i in range(args.runs):
            for spread in (("backlog", "window") if i % 2 == 0 else ("window", "backlog")):
                r = one_run(args, spread, d)
                print(json.dumps(r), flush=True)
                results.append(r)
    print("\n%d devices, device-class limit %d/s burst %d, storm at %.0f s, %d run(s) per mode"
          % (args.devices, args.rate, args.rate, args.storm_at, args.runs))
    print("| | spread: backlog | spread: window |")
    print("|---|---|---|")
    for key, label in FIELDS:
        row = [cell([r[key] for r in results if r["spread"] == s]) for s in ("backlog", "window")]
        print("| %s | %s | %s |" % (label, row[0], row[1]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
