#!/usr/bin/env python3
"""How many devices build/fleetsim holds against sluice on this machine, and
what it costs per device (README.md "Fleet simulator").

    python3 test/bench/fleetsim_hold.py --standin build/standin --devices 9500 --mode ws-h1
    python3 test/bench/fleetsim_hold.py --standin build/standin --devices 10000 --mode poll-h1
    python3 test/bench/fleetsim_hold.py --standin build/standin --devices 19000 --direct

Starts build/standin (the stand-in identity API, which holds a WebSocket
tunnel for 1 descriptor), build/sluice in front of it (unless --direct), and
fleetsim with --sources 127.1.0.0/16; prints fleetsim's summary line, the
last tick, and the RSS of each process at the end of the hold. Every
process here is limited by RLIMIT_NOFILE: sluice needs 2 descriptors per
tunnel (client + upstream), fleetsim and standin 1 per device."""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))

import helpers  # noqa: E402


def rss_kib(pid):
    return helpers.proc_status(pid).get("VmRSS", 0)


def listening(port, proc):
    if proc.poll() is not None:
        raise RuntimeError("standin exited %d" % proc.returncode)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--standin", default=os.path.join(ROOT, "build", "standin"))
    ap.add_argument("--fleetsim", default=os.path.join(ROOT, "build", "fleetsim"))
    ap.add_argument("--sluice", default=os.path.join(ROOT, "build", "sluice"))
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--mode", default="ws-h1")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--ramp", type=float, default=2)
    ap.add_argument("--direct", action="store_true", help="fleetsim straight at standin")
    ap.add_argument("--extra", default="", help="more fleetsim flags")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="fleetsim-hold-")
    sport = helpers.reserve_port()
    sport.release()
    standin = subprocess.Popen([a.standin, "--listen", "127.0.0.1:%d" % sport.port,
                                "--workers", "256", "--service-ms", "1",
                                "--fail-queue", "100000", "--stall-queue", "200000",
                                "--duration", str(a.duration + 60)],
                               stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "standin.err"), "w"))
    helpers.wait_for(lambda: listening(sport.port, standin), 10, what="standin listening")
    sl = None
    target = sport.port
    if not a.direct:
        cfg = helpers.base_config()
        cfg["listeners"][0]["timeouts"] = {"request_header": "10s", "idle": "120s"}
        cfg["upstreams"]["identity"]["max_connections"] = 20000
        sl = helpers.Sluice(work, cfg, upstream=sport.port, binary=a.sluice)
        sl.start()
        target = sl.port
    try:
        out = os.path.join(work, "fleetsim.jsonl")
        cmd = [a.fleetsim, "--target", "127.0.0.1:%d" % target, "--devices", str(a.devices),
               "--mode", a.mode, "--sources", "127.1.0.0/16", "--ramp", str(a.ramp),
               "--duration", str(a.duration), "--out", out] + a.extra.split()
        t0 = time.time()
        fs = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        # RSS of the others near the end of the hold (fleetsim reports its own).
        time.sleep(max(0.0, a.duration - 1.0))
        others = {"standin_rss_kib": rss_kib(standin.pid)}
        if sl:
            others["sluice_rss_kib"] = rss_kib(sl.proc.pid)
        err = fs.communicate(timeout=a.duration + 120)[1]
        lines = [json.loads(x) for x in open(out)]
        summary = lines[-1]
        ticks = [x for x in lines if x["type"] == "tick"]
        print(json.dumps({"cmd": " ".join(cmd), "wall_s": round(time.time() - t0, 2), **others}))
        print(json.dumps(ticks[-2] if len(ticks) > 1 else ticks[-1]))
        print(json.dumps(summary))
        d = summary["devices"]
        print("per device: cpu %.1f us/device/s, maxrss %.2f KiB/device (incl. the process base)"
              % (summary["cpu_s"] / d / summary["duration_s"] * 1e6, summary["maxrss_kib"] / d))
        if err.strip():
            print(err.strip(), file=sys.stderr)
    finally:
        if sl:
            sl.stop()
        standin.terminate()
        standin.wait(10)


if __name__ == "__main__":
    main()
