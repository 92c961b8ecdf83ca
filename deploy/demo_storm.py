#!/usr/bin/env python3
"""The storm of make demo: the same reconnect storm twice, straight at the
stand-in identity API (build/standin) and through sluice with the example
policy, driven by build/fleetsim (test/tools/fleetsim/, the contract in
/work/notes/fleetsim-contract.md). Prints the comparison table and writes
the picture (deploy/demo_svg.py) to build/demo/storm.svg.

    /usr/bin/python3 deploy/demo_storm.py [--sluice build/sluice] [--devices 10000]
                                          [--duration 40] [--quick]

Not yet called by deploy/demo.py (see /work/notes/demo.md): it was written
against the fleetsim contract before build/fleetsim existed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "test", "integration"))
sys.path.insert(0, HERE)

import demo_svg  # noqa: E402
from helpers import Sluice, metric_series, read_text, reserve_port, wait_for  # noqa: E402

STANDIN = os.path.join(REPO, "build", "standin")
FLEETSIM = os.path.join(REPO, "build", "fleetsim")
EXAMPLE = os.path.join(REPO, "deploy", "examples", "sluice.yaml")

# The stand-in's capacity, like the connect handlers of postmortem 000: 16
# database connections of 10 ms each is 1,600 connects/s at best; 256
# waiting and it answers 500, 1,024 and it stops answering.
STANDIN_ARGS = ["--workers", "16", "--service-ms", "10", "--fail-queue", "256",
                "--stall-queue", "1024", "--report-interval", "1000"]

# Each device binds its own loopback source address, so the example's
# per-client_ip limit (5/s) sees one device per address, as in production.
FLEET_ARGS = ["--mode", "ws-h1", "--sources", "127.1.0.0/16",
              "--class", "homey=70,airtame-hub=30",
              "--firmware", "homey=8.1.2,airtame-hub=3.8.0-b2",
              "--reconnect", "retry-after:500:8000", "--timeout", "5000",
              "--report-interval", "1000", "--seed", "13"]

STORM_DROPIN = """\
# demo.d/20-storm.yaml, merged after sluice.yaml: the storm run of make demo.
drain_timeout: 5s
"""


class StormError(Exception):
    pass


def read_jsonl(path):
    out = []
    for line in read_text(path).splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out


def start_standin(workdir, name, duration):
    res = reserve_port()
    port = res.port
    res.release()
    stats = os.path.join(workdir, name + "-standin.jsonl")
    err = open(os.path.join(workdir, name + "-standin.err"), "wb")
    proc = subprocess.Popen([STANDIN, "--listen", "127.0.0.1:%d" % port, "--stats", stats,
                             "--duration", str(duration + 30)] + STANDIN_ARGS,
                            stdout=subprocess.DEVNULL, stderr=err)
    wait_for(lambda: "listening" in read_text(err.name) or proc.poll() is not None, 10,
             what="standin to listen")
    if proc.poll() is not None:
        raise StormError("standin exited: " + read_text(err.name))
    return proc, port, stats, err


def stop_standin(proc, err):
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)
    err.close()
    if proc.returncode != 0:
        raise StormError("standin exited %d: %s" % (proc.returncode, read_text(err.name)))


def run_fleet(workdir, name, port, devices, duration):
    """The fleet connects at t=0, then at a third of the run every tunnel
    drops at once (the storm); time_to_99pct_s is measured from that drop."""
    out = os.path.join(workdir, name + "-fleet.jsonl")
    cmd = [FLEETSIM, "--target", "127.0.0.1:%d" % port, "--devices", str(devices),
           "--duration", str(duration), "--storm-at", str(max(1, duration // 3)),
           "--out", out] + FLEET_ARGS
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=duration + 60)
    if p.returncode != 0:
        raise StormError("fleetsim exited %d: %s" % (p.returncode, p.stderr.decode()[-2000:]))
    lines = read_jsonl(out)
    ticks = [x for x in lines if x.get("type") == "tick"]
    summary = [x for x in lines if x.get("type") == "summary"]
    if not summary:
        raise StormError("fleetsim wrote no summary line to %s" % out)
    return ticks, summary[-1]


def run_result(name, fleet_ticks, summary, standin_ticks):
    peak = 0.0
    prev = 0.0
    for t in standin_ticks:
        dt = t["t"] - prev
        prev = t["t"]
        if dt > 1e-3:
            peak = max(peak, t["requests"] / dt)
    ttc = None
    for s in summary.get("storms", []):
        ttc = s.get("time_to_99pct_s")
    return {"name": name, "peak_rps": peak,
            "errors_500": sum(t["errors_500"] for t in standin_ticks),
            "stalled": sum(t["stalled"] for t in standin_ticks),
            "time_to_99": ttc, "refused_by": summary.get("refused_by", {}),
            "errors_by": summary.get("errors_by", {}),
            "connected": summary.get("connected"), "devices": summary.get("devices"),
            "series": demo_svg.series_from_streams(fleet_ticks, standin_ticks)}


def table(results):
    rows = [("", [r["name"] for r in results]),
            ("peak upstream load (req/s)", ["%.0f" % r["peak_rps"] for r in results]),
            ("upstream 500s + stalls", ["%d + %d" % (r["errors_500"], r["stalled"])
                                        for r in results]),
            ("time to 99%% connected (s)", ["%.1f" % r["time_to_99"] if r["time_to_99"] is not None
                                            else "never" for r in results]),
            ("connected at the end", ["%s of %s" % (r["connected"], r["devices"])
                                      for r in results])]
    reasons = sorted({k for r in results for k in r["refused_by"]})
    for k in reasons:
        rows.append(("refused: " + k, [str(r["refused_by"].get(k, 0)) for r in results]))
    w0 = max(len(r[0]) for r in rows)
    w = [max(len(r[1][i]) for r in rows) for i in range(len(results))]
    lines = []
    for label, cells in rows:
        lines.append("  %-*s  %s" % (w0, label.replace("%%", "%"),
                                      "  ".join("%*s" % (w[i], c) for i, c in enumerate(cells))))
    return "\n".join(lines)


def storm_pair(sluice_bin, workdir, devices, duration, config_text):
    """Both runs; returns their results (the table and picture inputs)."""
    for b in (STANDIN, FLEETSIM):
        if not os.access(b, os.X_OK):
            raise StormError("%s missing: make tools" % b)
    results = []
    proc, port, stats, err = start_standin(workdir, "direct", duration)
    try:
        ticks, summary = run_fleet(workdir, "direct", port, devices, duration)
    finally:
        stop_standin(proc, err)
    results.append(run_result("direct to the API", ticks, summary, read_jsonl(stats)))

    proc, port, stats, err = start_standin(workdir, "sluice", duration)
    s = None
    try:
        sdir = os.path.join(workdir, "sluice")
        os.makedirs(os.path.join(sdir, "demo.d"))
        with open(os.path.join(sdir, "demo.d", "20-storm.yaml"), "w") as f:
            f.write(STORM_DROPIN)
        s = Sluice(sdir, config_text, upstream=port, workers=2, binary=sluice_bin)
        s.start(timeout=10)
        ticks, summary = run_fleet(workdir, "sluice", s.port, devices, duration)
        m = s.metrics()
        rc = s.stop(timeout=15)
        if rc != 0:
            raise StormError("sluice exited %d on SIGTERM" % rc)
    finally:
        if s is not None:
            s.kill()
        stop_standin(proc, err)
    r = run_result("through sluice", ticks, summary, read_jsonl(stats))
    by_reason = {}
    for labels, v in metric_series(m, "sluice_rejections_total"):
        reason = labels.get("reason", "?")
        by_reason[reason] = by_reason.get(reason, 0) + v
    r["rejections"] = by_reason  # sluice's own count, beside fleetsim's refused_by
    results.append(r)
    return results


def write_picture(results, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    svg = demo_svg.storm_svg([(r["name"], r["series"]) for r in results],
                             "reconnect storm of %s devices" % results[0]["devices"])
    with open(path, "w") as f:
        f.write(svg)


def main():
    ap = argparse.ArgumentParser(description="make demo's storm, twice")
    ap.add_argument("--sluice", default=os.path.join(REPO, "build", "sluice"))
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--duration", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="300 devices, 8 s per run")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "demo", "storm.svg"))
    args = ap.parse_args()
    if args.quick:
        args.devices, args.duration = 300, 8
    sys.path.insert(0, HERE)
    import demo  # the example rewritten to free ports + include: demo.d
    with tempfile.TemporaryDirectory(prefix="sluice-storm-") as tmp:
        try:
            results = storm_pair(os.path.abspath(args.sluice), tmp, args.devices,
                                 args.duration, demo.demo_config_text())
        except StormError as e:
            print("storm FAILED: %s" % e, file=sys.stderr)
            return 1
    print(table(results))
    write_picture(results, args.out)
    print("picture: %s" % os.path.relpath(args.out, REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
