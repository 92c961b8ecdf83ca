#!/usr/bin/python3
"""The cost of a fleet-wide limit: CPU per request of sluice with a
`scope: global` rate limit that never triggers, against the same limit
local, in the same run; and the Redis commands it sends per 1,000 requests.

One origin (nginx, as proxy_bench.py), one redis-server of our own, and two
sluice processes (--workers 1) that differ only in the limit's scope:

  local    rate_limits: [{key: device_class, rate: R, burst: B}]
  global   the same with scope: global (global.redis: our redis-server,
           expected_replicas 1, lease 100ms)

R (200000/s) is far above what one worker serves here, so no request is
refused: the figure is the price of the lease bookkeeping, not of 429s.

Load: h2load --h1 -c C -n N on /, header X-Device-Class: sensor (one key).
Metric: CPU of each sluice's process tree (sum of /proc/P/task/T/schedstat
run times, ns) per completed request; Redis: calls of EVALSHA (INFO
commandstats) before and after each global run, per 1,000 requests. Runs
interleaved (local, global, then global, local, ...) so drift cancels;
medians and spread (min-max) printed and written to --out. Nothing here
asserts a time.

  make bench                              (runs this after proxy_bench)
  python3 test/bench/global_bench.py --sluice ./build/sluice --runs 5

Redis counts the commands a script runs (TIME, GET, SET) in commandstats
too: "redis cmds" is every command Redis executed, EVALSHA the round trips.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_bench as pb  # noqa: E402
from proxy_bench import BenchError, Proc, free_port, log, write  # noqa: E402

RATE, BURST = "200000/s", 20000


def start_redis(d):
    port = free_port()
    return Proc("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no"], d, {"redis": port})


def redis_info(port, section):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", section], stdout=subprocess.PIPE,
                         text=True, timeout=10).stdout
    return dict(l.strip().split(":", 1) for l in out.splitlines() if ":" in l and l[0] != "#")


def evalsha_calls(port):
    st = redis_info(port, "commandstats").get("cmdstat_evalsha", "calls=0")
    return int(st.split(",")[0].split("=")[1])


def all_calls(port):
    return sum(int(v.split(",")[0].split("=")[1])
               for k, v in redis_info(port, "commandstats").items() if k.startswith("cmdstat_"))


def start_sluice(d, binary, origin, scope, redis_port):
    d = os.path.join(d, scope)
    os.makedirs(d, exist_ok=True)
    extra = "identify:\n  device_class: { header: x-device-class }\n"
    if scope == "global":
        extra += ('global:\n  redis: "127.0.0.1:%d"\n  expected_replicas: 1\n  lease: 100ms\n'
                  % redis_port)
    routes = """  - name: default
    match: { path_prefix: "/" }
    upstream: origin
    rate_limits:
      - { key: device_class, rate: "%s", burst: %d, scope: %s }
access_log: off
mode: enforce
drain_timeout: 2s
""" % (RATE, BURST, scope)
    p, ports = pb.start_sluice(d, binary, origin, "sluice-" + scope, routes=routes, extra=extra)
    return {"name": scope, "proc": p, "ports": ports}


def metric(admin_port, name):
    import urllib.request
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port, timeout=5).read()
    return sum(float(l.split()[-1]) for l in body.decode().splitlines()
               if l.startswith(name) and not l.startswith("#"))


def one_run(px, args, workdir, tag, redis_port):
    url = "http://127.0.0.1:%d/" % px["ports"]["h1"]
    cmd = ["h2load", "--h1", "-t", "1", "-c", str(args.connections), "-n", str(args.requests),
           "-H", "X-Device-Class: sensor", url]
    pid = px["proc"].pid
    c0 = evalsha_calls(redis_port)
    a0 = all_calls(redis_port)
    _, ns0 = pb.cpu_sample(pid)
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=args.timeout).stdout
    _, ns1 = pb.cpu_sample(pid)
    r = pb.parse_h2load(out)
    done = r.get("done", 0)
    if not done:
        raise BenchError("h2load against %s completed nothing:\n%s" % (px["name"], out[-2000:]))
    ok = r.get("2xx", 0)
    # INFO is a command too, counted once it has run: a1 - a0 includes the
    # INFO of a0 itself and that of c1, never the load's
    c1, a1 = evalsha_calls(redis_port), all_calls(redis_port)
    return {"requests": done, "ok": ok, "cpu_us_per_req": (ns1 - ns0) / 1e3 / done,
            "rps": r.get("rps"), "evalsha_per_1000": (c1 - c0) * 1000.0 / done,
            "redis_cmds_per_1000": (a1 - a0 - 2) * 1000.0 / done}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", default="build/sluice")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("--out", default="build/bench/global.json")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="sluice-global-bench-")
    procs = []
    try:
        origin = pb.start_origin(workdir)
        procs.append(origin)
        redis = start_redis(workdir)
        procs.append(redis)
        rport = redis.ports["redis"]
        pxs = [start_sluice(workdir, args.sluice, origin.ports["http"], s, rport)
               for s in ("local", "global")]
        procs += [p["proc"] for p in pxs]
        deadline = time.monotonic() + 10
        while metric(pxs[1]["ports"]["admin"], "sluice_global_backend_up") != 1:
            if time.monotonic() > deadline:
                raise BenchError("the global sluice did not connect to redis")
            time.sleep(0.05)
        for px in pxs:  # warm-up: connections to the origin, the lease
            one_run(px, argparse.Namespace(**dict(vars(args), requests=2000)), workdir, "w", rport)
        runs = {"local": [], "global": []}
        for i in range(args.runs):
            order = pxs if i % 2 == 0 else pxs[::-1]
            for px in order:
                r = one_run(px, args, workdir, "%s-%d" % (px["name"], i), rport)
                runs[px["name"]].append(r)
                log("run %d %-6s %.2f us/req  %s req/s  evalsha/1000 %.2f  ok %d/%d" % (
                    i, px["name"], r["cpu_us_per_req"], r["rps"], r["evalsha_per_1000"],
                    r["ok"], r["requests"]))
        res = {}
        for name, rs in runs.items():
            us = [r["cpu_us_per_req"] for r in rs]
            res[name] = {"cpu_us_per_req": pb.median(us), "spread": [min(us), max(us)],
                         "rps": pb.median(r["rps"] for r in rs),
                         "evalsha_per_1000": pb.median(r["evalsha_per_1000"] for r in rs),
                         "redis_cmds_per_1000": pb.median(r["redis_cmds_per_1000"] for r in rs),
                         "refused": sum(r["requests"] - r["ok"] for r in rs)}
        # ratio per round (adjacent runs), then its median: drift cancels
        ratios = [g["cpu_us_per_req"] / l["cpu_us_per_req"]
                  for l, g in zip(runs["local"], runs["global"])]
        res["ratio_global_over_local"] = pb.median(ratios)
        res["ratio_spread"] = [min(ratios), max(ratios)]
        res["params"] = {"rate": RATE, "burst": BURST, "requests": args.requests,
                         "connections": args.connections, "runs": args.runs}
        print("scope   cpu us/req (median, min-max)   req/s    EVALSHA/1000  redis cmds/1000")
        for name in ("local", "global"):
            r = res[name]
            print("%-7s %6.2f (%.2f-%.2f)             %8.0f  %8.2f      %8.2f" % (
                name, r["cpu_us_per_req"], r["spread"][0], r["spread"][1], r["rps"],
                r["evalsha_per_1000"], r["redis_cmds_per_1000"]))
        print("global/local CPU per request: %.3fx (per-round min-max %.3f-%.3f)" % (
            res["ratio_global_over_local"], *res["ratio_spread"]))
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log("error: %s" % e)
        sys.exit(1)
